"""Checkpoints as safetensors files: ``save(obj, path)`` and ``load(path)``. Never pickle.

What can be saved: chainrule tensors, NumPy arrays, and any nesting of dicts, lists and tuples
over them, Python ``None``/``bool``/``int``/``float``/``str`` (NumPy scalars are stored as the
equivalent Python number). That covers a model's ``state_dict()``, an optimizer's
``state_dict()`` (param groups with lists, floats and tuples; per-parameter state dicts keyed by
int) and a training checkpoint that holds both plus an epoch counter and RNG state.

File layout
-----------
A standard safetensors file (8-byte little-endian header length, JSON header, raw
little-endian tensor bytes). Every tensor and array in ``obj`` is one safetensors tensor; its
name is its path in ``obj`` with components joined by ``"."`` (dict keys as ``str(key)``,
list/tuple positions as numbers): a state_dict ``{"fc.weight": w}`` stores ``w`` under
``"fc.weight"``, so ``safetensors.numpy.load_file(path)`` (or ``safetensors.torch``) reads the
weights by their names directly; ``{"model": sd, "step": 3}`` stores ``"model.fc.weight"``.
A top-level tensor is named ``"tensor"``. Where two paths give the same name, later ones
get ``"~1"``, ``"~2"``... appended. Everything else goes into the header's ``__metadata__``
(a str -> str map):

- ``"chainrule.format"``: the layout version, ``"1"``.
- ``"chainrule.tree"``: ``obj`` as JSON, with these nodes::

      null, true, false, 12, 0.5, "text"       None, bool, int, float (finite), str
      [node, ...]                              list
      {"tuple": [node, ...]}                   tuple
      {"dict": [[key, value], ...]}            dict, insertion order kept; keys are nodes too
                                               (str, int, float, bool, None or tuples of them)
      {"float": "nan" | "inf" | "-inf"}        non-finite float
      {"tensor": "<name>"}                     chainrule Tensor stored under <name>
      {"ndarray": "<name>"}                    NumPy array stored under <name>

- ``"chainrule.crc32"``: CRC-32 (8 hex digits) of the bytes of all tensors concatenated in
  sorted-name order, checked on load, so a damaged file is refused rather than loaded wrong.

A safetensors file without ``chainrule.format`` (written by another program) loads as a dict
of tensors by name.

Safety and atomicity: loading parses JSON and raw numbers only, so a file cannot run code. Saving
writes a temporary file in the target's folder (``.<name>.<pid>.<random>.tmp``), flushes and
fsyncs it, renames it over the target (``os.replace``, atomic on POSIX and Windows), then fsyncs
the folder where the system allows it; if anything fails the temporary file is removed and the
previous checkpoint is left untouched. A save first removes the temporary files that killed
saves of the same target left behind (those whose writer pid no longer runs). The header's keys
are sorted, so the same state gives the same file, byte for byte.

Example:
    >>> import os, tempfile, chainrule
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.safetensors")
    >>> state = {"w": chainrule.ones(2, 3), "step": 7, "betas": (0.9, 0.999)}
    >>> chainrule.io.save(state, path)
    >>> back = chainrule.io.load(path)
    >>> back["w"].shape, back["step"], back["betas"]
    ((2, 3), 7, (0.9, 0.999))
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import zlib
from typing import Any, BinaryIO

import numpy as np
import safetensors.numpy as _st

from ..backend import Device, as_device, from_numpy_dtype
from ..tensor import Tensor, _wrap

__all__ = ["CheckpointError", "FORMAT_VERSION", "load", "save"]

FORMAT_VERSION = "1"
_KEY_FORMAT = "chainrule.format"
_KEY_TREE = "chainrule.tree"
_KEY_CRC = "chainrule.crc32"
_RESERVED = "__metadata__"  # the safetensors header key for metadata: never a tensor name


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: truncated, corrupt, not safetensors, or written
    by a newer format version. The message names the file.

    Example:
        >>> import chainrule
        >>> issubclass(chainrule.io.CheckpointError, ValueError)
        True
    """


# ---------------------------------------------------------------------------- encoding
class _Encoder:
    """Walk ``obj`` once: collect the arrays under unique names and build the JSON tree."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._active: set[int] = set()  # containers on the current path (cycle check)

    def _name(self, path: tuple) -> str:
        base = ".".join(path) if path else "tensor"
        name, k = base, 0
        while name in self.arrays or name == _RESERVED:
            k += 1
            name = f"{base}~{k}"
        return name

    def _array(self, a: np.ndarray, path: tuple, where: str) -> str:
        if a.dtype.kind not in "biuf":
            raise TypeError(f"save: the array at {where} has dtype {a.dtype}, which cannot be "
                            "stored; use bool, integer or float arrays")
        if not a.dtype.isnative and a.dtype.itemsize > 1:
            a = a.astype(a.dtype.newbyteorder("="))
        name = self._name(path)
        # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
        self.arrays[name] = a if a.flags.c_contiguous else np.ascontiguousarray(a)
        return name

    def encode(self, x: Any, path: tuple = (), where: str = "obj") -> Any:
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, Tensor):
            return {"tensor": self._array(x._host(), path, where)}
        if isinstance(x, np.ndarray):
            return {"ndarray": self._array(x, path, where)}
        if isinstance(x, np.generic) and x.dtype.kind in "biufV":
            x = x.item()
            if isinstance(x, bool):
                return x
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            x = float(x)
            if math.isfinite(x):
                return x
            return {"float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
        if isinstance(x, (dict, list, tuple)):
            if id(x) in self._active:
                raise ValueError(f"save: {where} contains itself (a reference cycle); "
                                 "checkpoints must be trees")
            self._active.add(id(x))
            try:
                if isinstance(x, dict):
                    items = []
                    for k, v in x.items():
                        key = self._key(k, where)
                        items.append([key, self.encode(v, (*path, str(k)), f"{where}[{k!r}]")])
                    return {"dict": items}
                nodes = [self.encode(v, (*path, str(i)), f"{where}[{i}]")
                         for i, v in enumerate(x)]
                return {"tuple": nodes} if isinstance(x, tuple) else nodes
            finally:
                self._active.discard(id(x))
        hint = (" (save its state_dict() instead)" if hasattr(x, "state_dict") else "")
        raise TypeError(f"save: cannot store {type(x).__module__}.{type(x).__name__} at {where}"
                        f"{hint}; checkpoints hold tensors, numpy arrays, dicts, lists, tuples, "
                        "str, int, float, bool and None")

    def _key(self, k: Any, where: str) -> Any:
        if k is None or isinstance(k, (bool, str, int, float, np.generic)):
            return self.encode(k, (), where)
        if isinstance(k, tuple):
            return {"tuple": [self._key(v, where) for v in k]}
        raise TypeError(f"save: dict key {k!r} in {where} has type {type(k).__name__}; keys "
                        "must be str, int, float, bool, None or tuples of them")


def _crc(arrays: dict[str, np.ndarray]) -> str:
    c = 0
    for name in sorted(arrays):
        a = arrays[name]
        if a.size:
            c = zlib.crc32(memoryview(a.reshape(-1)).cast("B"), c)
    return f"{c & 0xFFFFFFFF:08x}"


def _serialize(arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with the header's keys sorted, so that the same state gives the same
    file byte for byte (the safetensors library writes its header maps in a random order)."""
    data = _st.save(arrays, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False).encode()
    header += b" " * (-len(header) % 8)  # the tensor data stays 8-byte aligned
    return len(header).to_bytes(8, "little") + header + data[8 + n:]


# ---------------------------------------------------------------------------- writing
def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every system (e.g. Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _open_temp(folder: str, base: str) -> tuple[int, str]:
    # the writer's pid is in the name, so that a later save can tell a killed writer's
    # leftover from a concurrent writer's file (see _remove_stale_temps)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".{base}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp  # 0o666 minus the umask, like open()
        except FileExistsError:
            continue


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def _remove_stale_temps(folder: str, base: str) -> None:
    """Remove the temporary files of saves to ``base`` whose writer process is gone (killed
    mid-save). A live writer's file, or one whose pid was reused, is left alone."""
    pattern = re.compile(r"\." + re.escape(base) + r"\.(\d+)\.[0-9a-f]{12}\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.fullmatch(name)
        if m is None or int(m.group(1)) == os.getpid() or _pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
        except OSError:
            pass


def probe_writable(folder: str) -> None:
    """Raise the ``OSError`` that saving into ``folder`` would meet (read-only file system, no
    permission, no space for a file), by creating and removing a small file there: checked
    before a long run instead of after it. ``os.access`` alone is not enough (root passes it).

    Example:
        >>> import tempfile
        >>> from chainrule.io.checkpoint import probe_writable
        >>> probe_writable(tempfile.mkdtemp())  # nothing happens where saving can work
    """
    fd, tmp = _open_temp(folder, "probe")
    try:
        os.write(fd, b"\0")
    finally:
        os.close(fd)
        os.unlink(tmp)


def _atomic_write(path: str, arrays: dict, metadata: dict) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save: the folder {folder!r} for {path!r} does not exist")
    _remove_stale_temps(folder, os.path.basename(path))
    fd, tmp = _open_temp(folder, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_serialize(arrays, metadata))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def save(obj: Any, f: str | os.PathLike | BinaryIO) -> None:
    """Save tensors, state_dicts and nested containers of them to a safetensors file.

    Args:
        obj: what to save (see the module docstring for what is allowed).
        f: a path, written atomically (temporary file, fsync, rename), or a binary file
            object opened for writing (written in place, not atomic).

    Example:
        >>> import os, tempfile, chainrule
        >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> chainrule.io.save({"weight": chainrule.eye(2)}, path)
        >>> import safetensors.numpy
        >>> safetensors.numpy.load_file(path)["weight"].tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """
    enc = _Encoder()
    tree = enc.encode(obj)
    metadata = {_KEY_FORMAT: FORMAT_VERSION,
                _KEY_TREE: json.dumps(tree, allow_nan=False, separators=(",", ":")),
                _KEY_CRC: _crc(enc.arrays)}
    if hasattr(f, "write"):
        f.write(_serialize(enc.arrays, metadata))
        return
    _atomic_write(os.fspath(f), enc.arrays, metadata)


# ---------------------------------------------------------------------------- reading
class _Decoder:
    def __init__(self, tensors: dict, name: str, device: Device | None):
        self.tensors = tensors
        self.file = name
        self.device = device

    def fail(self, msg: str) -> CheckpointError:
        return CheckpointError(f"{self.file}: corrupt chainrule checkpoint: {msg}")

    def ref(self, name: Any) -> np.ndarray:
        if not isinstance(name, str) or name not in self.tensors:
            raise self.fail(f"the structure refers to a tensor {name!r} that is not in the file")
        return self.tensors[name]

    def tensor(self, a: np.ndarray) -> Tensor:
        try:
            from_numpy_dtype(a.dtype)
        except TypeError as e:
            raise CheckpointError(f"{self.file}: {e}") from None
        t = _wrap(a)
        if self.device is not None and self.device.type != "cpu":
            t = t.to(self.device)
        return t

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or len(node) != 1:
            raise self.fail(f"unexpected node {str(node)[:80]!r}")
        (tag, value), = node.items()
        if tag == "tensor":
            return self.tensor(self.ref(value))
        if tag == "ndarray":
            return self.ref(value)
        if tag == "tuple" and isinstance(value, list):
            return tuple(self.decode(v) for v in value)
        if tag == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not isinstance(item, list) or len(item) != 2:
                    raise self.fail(f"a dict entry is not a [key, value] pair: {str(item)[:80]}")
                key, value = self.decode(item[0]), self.decode(item[1])
                try:
                    out[key] = value
                except TypeError:
                    raise self.fail(f"unhashable dict key {str(key)[:80]}") from None
            return out
        raise self.fail(f"unexpected node {str(node)[:80]!r}")


def _read(f) -> tuple[bytes, str]:
    if hasattr(f, "read"):
        return f.read(), str(getattr(f, "name", "<file object>"))
    path = os.fspath(f)
    try:
        with open(path, "rb") as fh:
            return fh.read(), path
    except FileNotFoundError:
        raise FileNotFoundError(2, f"load: no checkpoint file at {path!r}", path) from None


def _header(data: bytes, name: str) -> dict:
    """Parse and sanity-check the safetensors header, for errors that say what is wrong."""
    if len(data) < 8:
        raise CheckpointError(f"{name}: not a safetensors checkpoint: the file has only "
                              f"{len(data)} bytes (truncated or empty)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise CheckpointError(f"{name}: truncated or not a safetensors file: the header claims "
                              f"{n} bytes but only {len(data) - 8} follow")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{name}: corrupt or not a safetensors file: its header is not "
                              "valid JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: corrupt safetensors header (not a JSON object)")
    return header


def load(f: str | os.PathLike | BinaryIO, map_location: str | Device | None = None) -> Any:
    """Load what :func:`save` wrote (or any safetensors file, as a dict of tensors).

    Tensors come back as chainrule tensors that do not require grad, with their dtype and
    shape, bit for bit; NumPy arrays as NumPy arrays.

    Args:
        f: a path or a binary file object opened for reading.
        map_location: None or "cpu" keeps tensors on the CPU; "cuda"/"cuda:N" (or a Device)
            moves them to that GPU.

    Raises:
        FileNotFoundError: no file at the path.
        CheckpointError: the file is truncated, corrupt, or not a safetensors checkpoint.

    Example:
        >>> import io, chainrule
        >>> buf = io.BytesIO(); chainrule.io.save([chainrule.arange(3), None], buf)
        >>> _ = buf.seek(0); chainrule.io.load(buf)
        [tensor([0, 1, 2]), None]
    """
    device = as_device(map_location) if map_location is not None else None
    data, name = _read(f)
    meta = _header(data, name).get(_RESERVED) or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name}: corrupt safetensors header (bad __metadata__)")
    try:
        arrays = _st.load(data)
    except Exception as e:  # safetensors raises its own error types for damaged data
        raise CheckpointError(f"{name}: corrupt or truncated safetensors file "
                              f"({type(e).__name__}: {e})") from None
    for k, a in arrays.items():
        if not a.flags.writeable:
            arrays[k] = a.copy()
    dec = _Decoder(arrays, name, device)
    if _KEY_FORMAT not in meta:  # a plain safetensors file from elsewhere
        return {k: dec.tensor(a) for k, a in arrays.items()}
    if meta[_KEY_FORMAT] != FORMAT_VERSION:
        raise CheckpointError(f"{name}: checkpoint format version {meta[_KEY_FORMAT]!r} is not "
                              f"supported by this chainrule (it reads version {FORMAT_VERSION}); "
                              "upgrade chainrule")
    crc = meta.get(_KEY_CRC)
    if crc is not None and crc != _crc(arrays):
        raise CheckpointError(f"{name}: corrupt checkpoint: the tensor data does not match its "
                              f"checksum (crc32 {_crc(arrays)}, expected {crc})")
    try:
        tree = json.loads(meta.get(_KEY_TREE, ""))
    except (ValueError, RecursionError):
        raise dec.fail("the structure (chainrule.tree) is not valid JSON") from None
    try:
        return dec.decode(tree)
    except RecursionError:
        raise dec.fail("the structure is nested too deeply") from None
