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
before anything runs. The legacy (pre-1.6, non-zip) format is read too: the same pickle after
pickles of a magic number, protocol version and system info, followed by the storage keys and
each storage's element count and bytes; its plain records allow no globals at all.

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
    """(key, numel, NumPy dtype, cell) of one storage; ``cell[0]`` holds its flat array once
    read (at once from a zip entry; after the pickle in the legacy format)."""

    __slots__ = ()
    key = property(lambda self: self[0])
    numel = property(lambda self: self[1])
    dtype = property(lambda self: self[2])
    array = property(lambda self: self[3][0])


class _Loaded(_Sealed):
    """(storage, offset, size, stride, requires_grad) of one rebuilt tensor; becomes a
    chainrule Tensor (its values copied out of the storage) at the end."""

    __slots__ = ()


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """Our ``torch._utils._rebuild_tensor_v2``: a strided view of a storage, checked against
    the storage's length now and copied out at the end (so tensors that shared a storage in
    PyTorch are independent here, with the same bits)."""
    if type(storage) is not _Storage:
        raise CheckpointError("load_pytorch: a tensor in data.pkl is not built on a storage")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    (offset,) = _ints((storage_offset,), "storage offset")
    if len(size) != len(stride):
        raise CheckpointError(f"load_pytorch: tensor size {size} and stride {stride} differ "
                              "in length")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise CheckpointError(f"load_pytorch: a tensor of size {size}, stride {stride} at "
                                  f"offset {offset} reaches past the end of storage "
                                  f"{storage.key!r} ({storage.numel} elements)")
    return _Loaded((storage, offset, size, stride, False))


def _materialize(t: _Loaded):
    storage, offset, size, stride, requires_grad = t
    np = backend.np
    flat = storage.array
    if flat is None:
        raise CheckpointError(f"load_pytorch: storage {storage.key!r} has no data in the file")
    if 0 in size:
        arr = np.zeros(size, dtype=flat.dtype)
    else:
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False)
        arr = np.array(view, copy=True, order="C")
    out = _wrap(arr)
    if requires_grad and out.dtype.is_floating_point:
        out.requires_grad_(True)
    return out


def _rebuild_tensor_old(storage, storage_offset, size, stride):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, *_ignored):
    """Our ``torch._utils._rebuild_parameter``: the tensor, requiring grad as saved."""
    if type(data) is not _Loaded:
        raise CheckpointError("load_pytorch: a parameter in data.pkl is not built on a tensor")
    return _Loaded((*data[:4], bool(requires_grad)))


def _decode(raw: bytes, dt, order: str):
    """Raw storage bytes in the file's byte order as a flat array of ``dt``."""
    np = backend.np
    if dt.itemsize > 1:  # raw words in the file's byte order, then our dtype
        word = np.dtype(f"u{dt.itemsize}").newbyteorder("<" if order == "little" else ">")
        return np.frombuffer(raw, dtype=word).astype(f"=u{dt.itemsize}").view(dt)
    return np.frombuffer(raw, dtype=dt).copy()


def _storage_dtype(storage_type, key):
    try:
        return as_dtype(storage_type.dtype_name).np
    except TypeError as e:
        raise CheckpointError(f"load_pytorch: storage {key!r} is {storage_type.dtype_name}: "
                              f"{e}") from None


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
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("load_pytorch: storage views of the pre-0.4 format are not "
                                  "supported")
        dt = _storage_dtype(storage_type, key)
        got = self._storages.get(key)
        if got is None:
            got = self._storages[key] = _Storage((key, numel, dt, [self._read_storage(
                key, storage_type, numel, dt)]))
        elif got.dtype != dt:
            raise CheckpointError(f"load_pytorch: storage {key!r} is used with two dtypes")
        return got


class _NoGlobals(pickle.Unpickler):
    """For the legacy format's plain records (magic number, versions, storage keys)."""

    def find_class(self, module, name):
        raise CheckpointError(f"load_pytorch: the file asks for {module}.{name} where plain "
                              "data belongs; refused")


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(f, name):
    """PyTorch's pre-1.6 format: pickles of the magic number, protocol version and system
    info, then the object, then the list of storage keys, then each storage as an 8-byte
    element count and its raw bytes."""
    records = _NoGlobals(f)
    if records.load() != _LEGACY_MAGIC or records.load() != 1001:
        raise CheckpointError(f"load_pytorch: {name!r} is a pickle but not a torch.save file")
    info = records.load()
    order = "little" if not isinstance(info, dict) or info.get("little_endian", True) \
        else "big"
    unpickler = _Unpickler(f, lambda *args: None)
    obj = unpickler.load()
    keys = _NoGlobals(f).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"load_pytorch: {name!r}: bad storage key list")
    for key in keys:
        st = unpickler._storages.get(key)
        if st is None:
            raise CheckpointError(f"load_pytorch: {name!r} has data for an unknown storage "
                                  f"{key!r}")
        head = f.read(8)
        if len(head) != 8 or int.from_bytes(head, order) != st.numel:
            raise CheckpointError(f"load_pytorch: {name!r} is truncated or corrupt (storage "
                                  f"{key!r} should hold {st.numel} elements)")
        n = st.numel * st.dtype.itemsize
        raw = f.read(n)
        if len(raw) != n:
            raise CheckpointError(f"load_pytorch: {name!r} is truncated (storage {key!r} has "
                                  f"{len(raw)} of {n} bytes)")
        st[3][0] = _decode(raw, st.dtype, order)
    return obj


def _archive_prefix(zf: zipfile.ZipFile, path) -> str:
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise CheckpointError(f"load_pytorch: {os.fspath(path)!r} is a zip file but not one that "
                              "torch.save wrote (no <name>/data.pkl entry)")
    return pkl[0][: -len("data.pkl")]


def _convert(obj):
    """Rebuilt tensors become chainrule tensors, OrderedDicts dicts (order kept)."""
    if type(obj) is _Loaded:
        return _materialize(obj)
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

    Reads the zip format and the legacy (pre-1.6) one. Raises CheckpointError for a file that
    is neither, is truncated or
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
    if head[:2] != b"PK" and head[:1] != b"\x80":
        raise CheckpointError(f"load_pytorch: {name!r} is not a torch.save file (neither a "
                              "zip archive nor a legacy pickle)")
    try:
        if head[:2] != b"PK":
            with open(name, "rb") as f:
                return _convert(_load_legacy(f, name))
        with zipfile.ZipFile(name) as zf:
            prefix = _archive_prefix(zf, name)
            entries = set(zf.namelist())
            order = "little"
            if prefix + "byteorder" in entries:
                order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if order not in ("little", "big"):
                    raise CheckpointError(f"load_pytorch: unknown byteorder {order!r}")

            def read_storage(key, storage_type, numel, dt):
                entry = f"{prefix}data/{key}"
                if entry not in entries:
                    raise CheckpointError(f"load_pytorch: storage {key!r} is missing from "
                                          f"{name!r} (no {entry})")
                raw = zf.read(entry)
                if len(raw) != numel * dt.itemsize:
                    raise CheckpointError(
                        f"load_pytorch: storage {key!r} holds {len(raw)} bytes, expected "
                        f"{numel} x {dt.itemsize} for {storage_type.name}")
                return _decode(raw, dt, order)

            with zf.open(prefix + "data.pkl") as f:
                obj = _Unpickler(f, read_storage).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, ValueError,
            TypeError, IndexError, KeyError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"load_pytorch: {name!r} is truncated or corrupt "
                              f"({type(e).__name__}: {e})") from None
    return _convert(obj)


def is_torch_file(head: bytes) -> bool:
    """Whether a file's first 9 bytes are those of a ``torch.save`` file: a zip archive or a
    protocol-2 pickle. A safetensors file starts with its 8-byte header length, then ``{``;
    byte 8 of a zip's local header is its compression method, never ``{``.

    Example:
        >>> from chainrule.io.pytorch import is_torch_file
        >>> is_torch_file(b"PK" + bytes(7)), is_torch_file(b"PK" + bytes(6) + b"{")
        (True, False)
    """
    return head[:2] in (b"PK", b"\x80\x02") and head[8:9] != b"{"


def load_weights(path: str | os.PathLike) -> dict:
    """A state_dict from a file of any kind chainrule reads: ``torch.save``'s formats (via
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
        head = f.read(9)
    obj = load_pytorch(name) if is_torch_file(head) else load(name)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "meta" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"load_weights: {name!r} holds a {type(obj).__name__}, not a "
                              "state_dict (a dict of named tensors)")
    return obj
