"""``chainrule.save`` / ``chainrule.load`` as PyTorch programs call them (issue 14).

Tensors, state_dicts and containers of them are saved as safetensors checkpoints
(:mod:`chainrule.io.checkpoint`), the default and the recommended way; ``chainrule.io.save``
and ``chainrule.io.load`` are that format only, and refuse anything else. A PyTorch program may
also save a whole object, ``torch.save(model, path)``; chainrule then does what PyTorch does,
it pickles, with a warning that says so, and loading such a file needs the same explicit
consent PyTorch (2.6 and later) asks for: ``load(path, weights_only=False)``, because
unpickling runs code named in the file. ``weights_only=True`` (the default) loads
safetensors checkpoints only, or pickles whose every class is on the allow-list of
:mod:`chainrule.serialization` (``add_safe_globals``, ``safe_globals``), as in PyTorch.
A file that real PyTorch wrote (``torch.save``'s zip or legacy format) is read by
:func:`chainrule.io.load_pytorch`, which runs no code from it.

Example:
    >>> import io, warnings, chainrule
    >>> buf = io.BytesIO()
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     chainrule.save(chainrule.nn.Linear(2, 1), buf)
    >>> _ = buf.seek(0)
    >>> chainrule.load(buf, weights_only=False)
    Linear(in_features=2, out_features=1, bias=True)
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import warnings
from typing import Any, BinaryIO

from ..backend import np as _np
from ..tensor import Tensor
from . import checkpoint as _ckpt
from .pytorch import is_torch_file, load_pytorch

__all__ = ["add_safe_globals", "clear_safe_globals", "get_safe_globals", "load",
           "safe_globals", "save"]

MAGIC = b"CHAINRULE-PICKLE-1\n"  # a pickled object file starts with this line
_SAFE: list = []  # user allow-list for weights_only loads of pickles


def _storable(obj, depth=0) -> bool:
    """True when ``obj`` is what a safetensors checkpoint holds (tensors, arrays, numbers,
    strings, None, and dicts/lists/tuples of them)."""
    if depth > 200:
        return True  # let the checkpoint encoder report the nesting
    if obj is None or isinstance(obj, (bool, int, float, str, Tensor, _np.ndarray,
                                       _np.generic)):
        return True
    if type(obj) in (dict, collections.OrderedDict):
        return all(_storable(k, depth + 1) and _storable(v, depth + 1) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return all(_storable(v, depth + 1) for v in obj)
    return False


def save(obj: Any, f: str | os.PathLike | BinaryIO, pickle_module=None,
         pickle_protocol: int = 2, **kwargs) -> None:
    """Save ``obj`` to ``f`` (a path or binary file object).

    Tensors, state_dicts and containers of them become a safetensors checkpoint (no pickle).
    Anything else (a whole Module, an optimizer object, a custom class) is pickled, as
    ``torch.save`` does, with a warning: such a file loads only with
    ``load(f, weights_only=False)``, which runs the code the file names. Save
    ``model.state_dict()`` instead where you can.

    Example:
        >>> import io, chainrule
        >>> buf = io.BytesIO(); chainrule.save({"w": chainrule.ones(2)}, buf)
        >>> _ = buf.seek(0); chainrule.load(buf)
        {'w': tensor([1., 1.])}
    """
    if _storable(obj):
        _ckpt.save(obj, f)
        return
    what = f"{type(obj).__module__}.{type(obj).__qualname__}"
    warnings.warn(f"save: {what} is not a tensor container, so it is pickled (as torch.save "
                  "does); loading the file runs code from it and needs load(..., "
                  "weights_only=False). Save its state_dict() for a safetensors checkpoint.",
                  UserWarning, stacklevel=2)
    try:
        data = MAGIC + (pickle_module or pickle).dumps(obj, protocol=max(pickle_protocol, 2))
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise TypeError(f"save: cannot pickle {what} ({e}); save its state_dict() "
                        "instead") from None
    if hasattr(f, "write"):
        f.write(data)
        return
    path = os.fspath(f)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


class _AllowListUnpickler(pickle.Unpickler):
    """Unpickles only tensors, NumPy arrays, plain containers and allow-listed classes."""

    _BUILTIN = {("chainrule.tensor", "_rebuild_tensor"), ("collections", "OrderedDict"),
                ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                ("numpy", "dtype"), ("builtins", "set"), ("builtins", "frozenset"),
                ("builtins", "slice"), ("builtins", "complex"),
                ("chainrule.nn.parameter", "Parameter"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def __init__(self, file, name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module, name):
        for g in _SAFE:
            obj = g[0] if isinstance(g, tuple) else g
            label = g[1] if isinstance(g, tuple) else f"{obj.__module__}.{obj.__qualname__}"
            if label == f"{module}.{name}":
                return obj
        if module == "__builtin__":  # protocol 2 spells builtins the Python 2 way
            module = "builtins"
        if (module, name) in self._BUILTIN or (module.startswith("numpy") and
                                               name.endswith("dtype")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"load: weights-only load of {self.name} refused the global {module}.{name}: the "
            "file is a pickled object (saved with save(obj) for a non-tensor obj), and "
            "unpickling it could run arbitrary code. If you trust the file, pass "
            f"weights_only=False, or allow the class with "
            f"chainrule.serialization.add_safe_globals([{name}]) (or the safe_globals context "
            "manager); better, save and load a state_dict")


def load(f: str | os.PathLike | BinaryIO, map_location=None, pickle_module=None, *,
         weights_only: bool | None = None, mmap=None, **pickle_load_args) -> Any:
    """Load what :func:`save` wrote (a safetensors checkpoint, or a pickled object).

    Args:
        f: a path or a binary file object opened for reading.
        map_location: None/"cpu" or "cuda[:N]" (a Device) for the tensors.
        weights_only: True (the default, as in PyTorch 2.6+) loads checkpoints, and pickled
            files only when every class in them is allow-listed; False also unpickles whole
            objects, which runs code from the file: only for files you trust.

    Example:
        >>> import io, chainrule
        >>> buf = io.BytesIO(); chainrule.save([chainrule.arange(2)], buf)
        >>> _ = buf.seek(0); chainrule.load(buf, map_location="cpu")
        [tensor([0, 1])]
    """
    if hasattr(f, "read"):
        data, name = f.read(), str(getattr(f, "name", "<file object>"))
    else:
        name = os.fspath(f)
        try:
            with open(name, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise FileNotFoundError(2, f"load: no checkpoint file at {name!r}", name) from None
    if not data.startswith(MAGIC):
        if not hasattr(f, "read") and is_torch_file(data[:9]):
            # a PyTorch program loading a file real PyTorch wrote: read without running code
            obj = load_pytorch(name)
            return obj if map_location is None else _move(obj, map_location)
        buf = io.BytesIO(data)
        buf.name = name
        return _ckpt.load(buf, map_location=map_location)
    body = io.BytesIO(data[len(MAGIC):])
    if weights_only is False:
        obj = (pickle_module or pickle).load(body, **pickle_load_args)
    else:
        obj = _AllowListUnpickler(body, name).load()
    if map_location is not None:
        obj = _move(obj, map_location)
    return obj


def _move(obj, device):
    """Tensors (and Module parameters) of a loaded object moved to ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if hasattr(obj, "to") and hasattr(obj, "parameters"):
        return obj.to(device)
    if isinstance(obj, dict):
        return type(obj)((k, _move(v, device)) for k, v in obj.items())
    if type(obj) in (list, tuple):
        return type(obj)(_move(v, device) for v in obj)
    return obj


# ---------------------------------------------------------------- allow-list (PyTorch's API)
def add_safe_globals(safe_globals: list) -> None:
    """Allow these classes/functions (or ``(obj, "module.name")`` pairs) in weights-only loads
    of pickled files.

    Example:
        >>> import chainrule
        >>> chainrule.serialization.add_safe_globals([chainrule.nn.Linear])
        >>> chainrule.nn.Linear in chainrule.serialization.get_safe_globals()
        True
        >>> chainrule.serialization.clear_safe_globals()
    """
    _SAFE.extend(safe_globals)


def get_safe_globals() -> list:
    """The user allow-list (see :func:`add_safe_globals`)."""
    return list(_SAFE)


def clear_safe_globals() -> None:
    """Empty the user allow-list."""
    _SAFE.clear()


@contextlib.contextmanager
def safe_globals(safe_globals: list):
    """Allow ``safe_globals`` in weights-only loads inside the ``with`` block only.

    Example:
        >>> import chainrule
        >>> with chainrule.serialization.safe_globals([chainrule.nn.ReLU]):
        ...     chainrule.nn.ReLU in chainrule.serialization.get_safe_globals()
        True
    """
    n = len(_SAFE)
    _SAFE.extend(safe_globals)
    try:
        yield
    finally:
        del _SAFE[n:]
