"""Read the files ``torch.save`` writes, without PyTorch and without running code from the file.

The format (PyTorch >= 1.6, ``_use_new_zipfile_serialization=True``, the default): a zip archive
whose entries sit under one folder named after the file (``<name>/``):

- ``data.pkl``: a pickle of the saved object, in which each tensor is a call
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, ...)``
  and each storage is a *persistent id* ``("storage", torch.FloatStorage, key, location, numel)``;
- ``data/<key>``: the raw bytes of storage ``key`` (``numel`` elements);
- ``byteorder`` (``little`` or ``big``; absent in old files: little) and ``version``.

The pickle is read by an allowlist unpickler in the spirit of ``torch.load(weights_only=True)``:
:data:`ALLOWED` names every global a state_dict needs, each mapped to chainrule's own code (no
module outside this file is imported by name from the pickle, nothing else is called); any other
global (``os.system``, ``builtins.eval``, a model class) is refused with an error naming it,
before anything runs. The legacy (pre-1.6, non-zip) format is not read.

Example:
    >>> import os, tempfile, chainrule
    >>> path = os.path.join(tempfile.mkdtemp(), "missing.pt")
    >>> try:
    ...     chainrule.io.load_pytorch(path)
    ... except FileNotFoundError as e:
    ...     print("missing.pt" in str(e))
    True
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
import zlib
from typing import Any

from .. import backend
from ..backend import as_dtype
from ..tensor import _wrap
from .checkpoint import CheckpointError

__all__ = ["ALLOWED", "load_pytorch", "load_weights"]

# torch.<Name>Storage -> chainrule dtype name
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class _StorageType:
    """What ``torch.<Name>Storage`` unpickles to: a dtype marker, never called."""

    __slots__ = ("dtype_name", "name")

    def __init__(self, name: str):
        self.name = name
        self.dtype_name = _STORAGE_DTYPES[name]


def _ints(value, what: str) -> tuple:
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise CheckpointError(f"load_pytorch: bad tensor {what} {value!r} in data.pkl")
    return tuple(value)


class _Sealed(tuple):
    """Values the unpickler hands back to the pickle: tuples with read-only fields, so that a
    BUILD opcode in a crafted file cannot set attributes on them."""

    __slots__ = ()


class _Storage(_Sealed):
    """(key, flat array) of one storage."""

    __slots__ = ()
    key = property(lambda self: self[0])
    array = property(lambda self: self[1])


class _Loaded(_Sealed):
    """(array, requires_grad) of one rebuilt tensor; becomes a chainrule Tensor at the end."""

    __slots__ = ()


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Our ``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied out (so
    tensors that shared a storage in PyTorch are independent here, with the same bits)."""
    if type(storage) is not _Storage:
        raise CheckpointError("load_pytorch: a tensor in data.pkl is not built on a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    (offset,) = _ints((storage_offset,), "storage offset")
    if len(size) != len(stride):
        raise CheckpointError(f"load_pytorch: tensor size {size} and stride {stride} differ "
                              "in length")
    flat = storage.array
    np = backend.np
    if 0 in size:
        return _Loaded((np.zeros(size, dtype=flat.dtype), False))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= flat.shape[0]:
        raise CheckpointError(f"load_pytorch: a tensor of size {size}, stride {stride} at offset "
                              f"{offset} reaches past the end of storage {storage.key!r} "
                              f"({flat.shape[0]} elements)")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
    return _Loaded((np.array(view, copy=True, order="C"), False))


def _rebuild_tensor_old(storage, storage_offset, size, stride):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, *_ignored):
    """Our ``torch._utils._rebuild_parameter``: the tensor, requiring grad as saved."""
    if type(data) is not _Loaded:
        raise CheckpointError("load_pytorch: a parameter in data.pkl is not built on a tensor")
    return _Loaded((data[0], bool(requires_grad)))


#: The only globals a file may name, and what each becomes here.
ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_old,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, read_storage):
        super().__init__(file)
        self._read_storage = read_storage
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            if module == "torch" and name.endswith("Storage"):
                raise CheckpointError(
                    f"load_pytorch: the file holds a {name[:-len('Storage')]} tensor "
                    f"(torch.{name}); chainrule reads the dtypes "
                    f"{', '.join(sorted(set(_STORAGE_DTYPES.values())))}") from None
            if (module, name) == ("torch._utils", "_rebuild_tensor_v3"):
                raise CheckpointError(
                    "load_pytorch: the file holds a tensor of a dtype without a storage class "
                    "(uint16/32/64, float8 ...), which chainrule does not support") from None
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in ALLOWED if not n.endswith(
                "Storage"))) + ", torch.<Type>Storage"
            module = "builtins" if module == "__builtin__" else module  # pickle protocol 2
            raise CheckpointError(
                f"load_pytorch: the file asks for {module}.{name}, which is not on the allowlist "
                f"of a state_dict ({allowed}); refused without running anything. Files that "
                "pickle whole models or arbitrary objects need torch.load(weights_only=False) "
                "from a source you trust") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"load_pytorch: unknown persistent id {pid!r:.80} in data.pkl")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"load_pytorch: storage {key!r} has an unknown type "
                                  f"{storage_type!r:.60}")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"load_pytorch: bad storage record {pid!r:.80}")
        got = self._storages.get(key)
        if got is None:
            got = self._storages[key] = _Storage((key, self._read_storage(key, storage_type,
                                                                          numel)))
        elif got.array.dtype != as_dtype(storage_type.dtype_name).np:
            raise CheckpointError(f"load_pytorch: storage {key!r} is used with two dtypes")
        return got


def _archive_prefix(zf: zipfile.ZipFile, path) -> str:
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError(f"load_pytorch: {os.fspath(path)!r} is a zip file but not one that "
                              "torch.save wrote (no <name>/data.pkl entry)")
    return pkl[0][: -len("data.pkl")]


def _convert(obj):
    """Rebuilt tensors become chainrule tensors, OrderedDicts dicts (order kept)."""
    if type(obj) is _Loaded:
        t = _wrap(obj[0])
        if obj[1] and t.dtype.is_floating_point:
            t.requires_grad_(True)
        return t
    if type(obj) is _Storage:
        raise CheckpointError("load_pytorch: the file holds a bare storage, not a tensor")
    if isinstance(obj, dict):
        return {k: _convert(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_convert(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_convert(v) for v in obj)
    return obj


def load_pytorch(path: str | os.PathLike) -> Any:
    """Load a file written by ``torch.save`` (a state_dict, or nested dicts/lists of tensors and
    numbers) as chainrule tensors on the CPU, without PyTorch and without running code from the
    file. Values are bit-exact; dtypes float32/float64/float16/bfloat16 (the ``bf16`` extra),
    int8/16/32/64, uint8 and bool.

    Raises CheckpointError for a file that is not torch.save's zip format, is truncated or
    corrupt, or names anything outside :data:`ALLOWED` (the error names it). Nothing is returned
    half-loaded: either the whole object or an error.

    Example (the file would come from ``torch.save(model.state_dict(), path)``):
        >>> import os, tempfile, zipfile, chainrule
        >>> path = os.path.join(tempfile.mkdtemp(), "not_torch.zip")
        >>> with zipfile.ZipFile(path, "w") as z:
        ...     z.writestr("readme.txt", "hello")
        >>> try:
        ...     chainrule.io.load_pytorch(path)
        ... except chainrule.io.CheckpointError as e:
        ...     print("not one that torch.save wrote" in str(e))
        True
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":
        if head[:1] == b"\x80":
            raise CheckpointError(f"load_pytorch: {name!r} is in PyTorch's legacy (pre-1.6, "
                                  "non-zip) format, which chainrule does not read; re-save it "
                                  "with a current torch.save")
        raise CheckpointError(f"load_pytorch: {name!r} is not a torch.save file (not a zip "
                              "archive)")
    try:
        with zipfile.ZipFile(name) as zf:
            prefix = _archive_prefix(zf, name)
            entries = set(zf.namelist())
            order = "little"
            if prefix + "byteorder" in entries:
                order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if order not in ("little", "big"):
                    raise CheckpointError(f"load_pytorch: unknown byteorder {order!r}")

            def read_storage(key, storage_type, numel):
                entry = f"{prefix}data/{key}"
                if entry not in entries:
                    raise CheckpointError(f"load_pytorch: storage {key!r} is missing from "
                                          f"{name!r} (no {entry})")
                try:
                    dt = as_dtype(storage_type.dtype_name).np
                except TypeError as e:
                    raise CheckpointError(f"load_pytorch: storage {key!r} of {name!r} is "
                                          f"{storage_type.dtype_name}: {e}") from None
                raw = zf.read(entry)
                if len(raw) != numel * dt.itemsize:
                    raise CheckpointError(
                        f"load_pytorch: storage {key!r} holds {len(raw)} bytes, expected "
                        f"{numel} x {dt.itemsize} for {storage_type.name}")
                np = backend.np
                if dt.itemsize > 1:  # raw words in the file's byte order, then our dtype
                    word = np.dtype(f"u{dt.itemsize}").newbyteorder("<" if order == "little"
                                                                    else ">")
                    return np.frombuffer(raw, dtype=word).astype(f"=u{dt.itemsize}").view(dt)
                return np.frombuffer(raw, dtype=dt).copy()

            with zf.open(prefix + "data.pkl") as f:
                obj = _Unpickler(f, read_storage).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, ValueError,
            TypeError, IndexError, KeyError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"load_pytorch: {name!r} is truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None
    return _convert(obj)


def load_weights(path: str | os.PathLike) -> dict:
    """A state_dict from a file of any kind chainrule reads: ``torch.save``'s zip format (via
    :func:`load_pytorch`) or a safetensors file (chainrule's own checkpoints included: a
    ``chainrule train`` checkpoint gives its ``"model"`` entry). For ``--init-from``.

    Example:
        >>> import os, tempfile, chainrule
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> chainrule.io.save({"model": {"0.weight": chainrule.ones(1)}, "meta": "{}"}, path)
        >>> chainrule.io.load_weights(path)
        {'0.weight': tensor([1.])}
    """
    from .checkpoint import load  # noqa: PLC0415

    name = os.fspath(path)
    with open(name, "rb") as f:
        zipped = f.read(2) == b"PK"
    obj = load_pytorch(name) if zipped else load(name)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "meta" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"load_weights: {name!r} holds a {type(obj).__name__}, not a "
                              "state_dict (a dict of named tensors)")
    return obj
