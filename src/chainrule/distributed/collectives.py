"""Collectives on tensors, with PyTorch's names and semantics (in place where PyTorch is).

Each function checks its tensors, checks that every rank passes the same kind of call with
the same dtype and shape (a small descriptor compared across ranks, through shared memory when
they share a node, so a mismatch is an error on every rank instead of a hang, a crash or
garbage), lays the tensors out as contiguous arrays and starts
the communicator's non-blocking operation. ``async_op=True`` returns the :class:`Work`;
otherwise the call waits and returns None.

Example (run under ``mpiexec -n 2``)::

    import chainrule as cr, chainrule.distributed as dist
    dist.init_process_group("mpi")
    t = cr.tensor([1.0, 2.0]) * (dist.get_rank() + 1)
    dist.all_reduce(t)                       # t is now [3., 6.] on both ranks
    w = dist.all_reduce(t, op=dist.ReduceOp.MAX, async_op=True); w.wait()
"""

from __future__ import annotations

import functools

import numpy as np

from ..backend import get_array_module
from ..tensor import Tensor
from .comm import DistributedError, ReduceOp, Work
from .group import current

_KINDS = {"all_reduce": 1, "broadcast": 2, "all_gather": 3, "reduce_scatter": 4, "barrier": 5}
_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64",
           "bfloat16")  # bfloat16 (ml_dtypes): moved as bytes, not reduced (MPI has no such type)
_MAX_DIMS = 8
_OP_INDEX = {op: i for i, op in enumerate(ReduceOp)}
_DESC_CACHE: dict = {}
_OP_FINE: set = set()  # (ReduceOp, dtype kind) pairs that passed _op's checks


def _tensor(t, what: str, name: str = "tensor") -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: {name} must be a chainrule Tensor, got {type(t).__name__}")
    if t.is_cuda:
        raise DistributedError(f"{what}: {name} is on {t.device}; the 'mpi' backend moves CPU "
                               "tensors (NCCL for GPU tensors comes with the GPU backend)")
    return t


def _op(op, what: str, dtype) -> ReduceOp:
    if type(op) is ReduceOp and (op, dtype.kind) in _OP_FINE:  # the same few every step
        return op
    if not isinstance(op, ReduceOp):
        try:
            op = ReduceOp(str(op).lower())
        except ValueError:
            raise ValueError(f"{what}: unknown op {op!r}; use a chainrule.distributed.ReduceOp "
                             f"({', '.join(o.name for o in ReduceOp)})") from None
    kind = dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{what}: the 'mpi' backend cannot reduce {dtype.name} tensors (MPI has "
                        f"no {dtype.name} type); cast to float32 first (broadcast and all_gather "
                        "move them as they are)")
    if op is ReduceOp.AVG and kind != "f":
        raise TypeError(f"{what}: ReduceOp.AVG needs a floating-point tensor, got {dtype}; use "
                        "SUM and divide")
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and kind not in "iub":
        raise TypeError(f"{what}: ReduceOp.{op.name} needs an integer or bool tensor, got "
                        f"{dtype}")
    _OP_FINE.add((op, kind))
    return op


def _describe(what: str, arr, extra: int = 0):
    """The call as a row of int64 (kind, dtype, op/src, ndim, dims), cached: it is built on
    every collective, and a training loop repeats the same few."""
    key = (what, arr.dtype.num, arr.shape, extra)  # num: hashes faster than the dtype
    desc = _DESC_CACHE.get(key)
    if desc is None:
        if arr.dtype.name not in _DTYPES:
            raise TypeError(f"{what}: the 'mpi' backend does not move {arr.dtype.name} tensors "
                            f"(it moves {', '.join(_DTYPES)})")
        shape = arr.shape
        if len(shape) > _MAX_DIMS:
            shape = (arr.size,)
        dims = list(shape) + [-1] * (_MAX_DIMS - len(shape))
        desc = np.array([_KINDS[what], _DTYPES.index(arr.dtype.name), extra, len(shape), *dims],
                        dtype=np.int64)
        desc.flags.writeable = False
        if len(_DESC_CACHE) >= 512:
            _DESC_CACHE.clear()
        _DESC_CACHE[key] = desc
    return desc


def _check(comm, what: str, arr, extra: int = 0) -> None:
    """Every rank must make the same call with the same dtype and shape: a mismatch is an
    error on every rank, naming every rank's arguments. Call it before starting the data
    operation (``Communicator.check_same`` says why)."""
    comm.check_same(what, _describe(what, arr, extra), _MISMATCH[what])


_EXTRA_NAMES = {"all_reduce": "op", "reduce_scatter": "op", "broadcast": "src"}


def _mismatch_message(what: str, table) -> str:
    names = {v: k for k, v in _KINDS.items()}
    rows = []
    for r, row in enumerate(table.tolist()):
        kind, dt, extra, nd, *dims = row
        desc = f"rank {r}: {names.get(kind, '?')}"
        if kind != _KINDS["barrier"]:
            desc += f" on shape {tuple(dims[:nd])} {_DTYPES[dt]}"
            extra_name = _EXTRA_NAMES.get(names.get(kind))  # each rank's own call's argument
            if extra_name == "op":
                desc += f", op={list(ReduceOp)[extra].name}"
            elif extra_name:
                desc += f", {extra_name}={extra}"
        rows.append(desc)
    return (f"{what}: the ranks passed different arguments (every rank must call the same "
            f"collective with tensors of the same shape and dtype): {'; '.join(rows)}")


_MISMATCH = {what: functools.partial(_mismatch_message, what) for what in _KINDS}


def _contiguous(t: Tensor):
    """The tensor's array when it is C-contiguous, else a contiguous copy (written back)."""
    a = t._data
    if a.flags.c_contiguous:
        return a, False
    return get_array_module(a).ascontiguousarray(a), True


def _finish(work: Work, async_op: bool):
    if async_op:
        return work
    work.wait()
    return None


def _write_back(t: Tensor, buf, copied: bool, scale=None):
    def finish():
        if scale is not None:
            buf[...] = buf / scale if buf.dtype.kind == "f" else buf
        if copied:
            t._data[...] = buf
        t._bump()

    return finish


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce ``tensor`` over all ranks, in place: afterwards every rank holds the result.

    ``op``: ``ReduceOp.SUM`` (default), ``AVG`` (floats), ``PRODUCT``, ``MIN``, ``MAX``,
    ``BAND``/``BOR``/``BXOR`` (integers, bool). See the module example.
    """
    comm = current("all_reduce", group)
    t = _tensor(tensor, "all_reduce")
    buf, copied = _contiguous(t)
    op = _op(op, "all_reduce", buf.dtype)
    avg = op is ReduceOp.AVG
    base = ReduceOp.SUM if avg else op
    _check(comm, "all_reduce", buf, _OP_INDEX[op])
    if async_op:
        return comm.allreduce(buf, base).then(
            _write_back(t, buf, copied, comm.size if avg else None))
    # the blocking form, the hot path: no Work, no closures
    comm.allreduce_wait(buf, base)
    if avg or copied:
        _write_back(t, buf, copied, comm.size if avg else None)()
    else:
        t._bump()
    return None


def broadcast(tensor: Tensor, src: int, group=None, async_op: bool = False):
    """Copy rank ``src``'s ``tensor`` into ``tensor`` on every other rank (in place)."""
    comm = current("broadcast", group)
    t = _tensor(tensor, "broadcast")
    _rank_arg(src, "src", "broadcast", comm.size)
    buf, copied = _contiguous(t)
    _check(comm, "broadcast", buf, src)
    return _finish(comm.broadcast(buf, src).then(_write_back(t, buf, copied)), async_op)


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """Fill ``tensor_list[r]`` with rank ``r``'s ``tensor`` (every list tensor has its shape)."""
    comm = current("all_gather", group)
    t = _tensor(tensor, "all_gather")
    _tensor_list(tensor_list, t, comm.size, "all_gather", "tensor_list")
    send, _ = _contiguous(t)
    xp = get_array_module(send)
    recv = xp.empty((comm.size, *send.shape), dtype=send.dtype)

    def finish():
        for o, part in zip(tensor_list, recv):
            o._data[...] = part
            o._bump()

    _check(comm, "all_gather", send)
    return _finish(comm.allgather(send, recv).then(finish), async_op)


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None,
                           async_op: bool = False):
    """Concatenate every rank's ``input_tensor`` along dim 0 into ``output_tensor`` (whose
    size is world_size times the input's)."""
    comm = current("all_gather_into_tensor", group)
    o = _tensor(output_tensor, "all_gather_into_tensor", "output_tensor")
    i = _tensor(input_tensor, "all_gather_into_tensor", "input_tensor")
    _sized(o, i, comm.size, "all_gather_into_tensor", "output_tensor", "input_tensor")
    send, _ = _contiguous(i)
    recv, copied = _contiguous(o)
    _check(comm, "all_gather", send)
    work = comm.allgather(send, recv.reshape(comm.size, *send.shape))
    return _finish(work.then(_write_back(o, recv, copied)), async_op)


def reduce_scatter(output: Tensor, input_list: list, op: ReduceOp = ReduceOp.SUM, group=None,
                   async_op: bool = False):
    """Reduce ``input_list[r]`` over all ranks into ``output`` on rank ``r``."""
    comm = current("reduce_scatter", group)
    o = _tensor(output, "reduce_scatter", "output")
    _tensor_list(input_list, o, comm.size, "reduce_scatter", "input_list")
    xp = get_array_module(o._data)
    send = xp.stack([x._data for x in input_list]) if input_list else None
    return _reduce_scatter(comm, o, send, op, async_op, "reduce_scatter")


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM,
                          group=None, async_op: bool = False):
    """Reduce ``input`` (world_size blocks along dim 0) over all ranks; rank ``r`` gets block
    ``r`` of the result in ``output``."""
    comm = current("reduce_scatter_tensor", group)
    o = _tensor(output, "reduce_scatter_tensor", "output")
    i = _tensor(input, "reduce_scatter_tensor", "input")
    _sized(i, o, comm.size, "reduce_scatter_tensor", "input", "output")
    send, _ = _contiguous(i)
    return _reduce_scatter(comm, o, send, op, async_op, "reduce_scatter_tensor")


def _reduce_scatter(comm, o, send, op, async_op, what):
    recv, copied = _contiguous(o)
    op = _op(op, what, recv.dtype)
    base = ReduceOp.SUM if op is ReduceOp.AVG else op
    scale = comm.size if op is ReduceOp.AVG else None
    _check(comm, "reduce_scatter", recv, _OP_INDEX[op])
    work = comm.reduce_scatter(send, recv, base)
    return _finish(work.then(_write_back(o, recv, copied, scale)), async_op)


def barrier(group=None, async_op: bool = False):
    """Wait until every rank has reached the barrier."""
    comm = current("barrier", group)
    return _finish(comm.barrier(), async_op)


def send(tensor: Tensor, dst: int, group=None, tag: int = 0) -> None:
    """Send ``tensor`` to rank ``dst`` (blocks until the buffer may be reused)."""
    isend(tensor, dst, group, tag).wait()


def recv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0) -> int:
    """Receive into ``tensor`` (in place) from rank ``src`` (any rank when None); returns the
    sender's rank."""
    return irecv(tensor, src, group, tag).result()


def isend(tensor: Tensor, dst: int, group=None, tag: int = 0) -> Work:
    """Start sending ``tensor`` to rank ``dst``; returns a Work (keep the tensor unchanged
    until ``wait()``)."""
    comm = current("isend", group)
    t = _tensor(tensor, "send")
    _rank_arg(dst, "dst", "send", comm.size)
    if dst == comm.rank:
        raise ValueError(f"send: dst={dst} is this rank; send to another rank")
    buf, _ = _contiguous(t)
    return comm.send(buf, dst, _tag(tag, "send"))


def irecv(tensor: Tensor, src: int | None = None, group=None, tag: int = 0) -> Work:
    """Start receiving into ``tensor``; ``wait()`` fills it, ``result()`` is the sender."""
    comm = current("irecv", group)
    t = _tensor(tensor, "recv")
    if src is not None:
        _rank_arg(src, "src", "recv", comm.size)
        if src == comm.rank:
            raise ValueError(f"recv: src={src} is this rank; receive from another rank")
    buf, copied = _contiguous(t)
    work = comm.recv(buf, src, _tag(tag, "recv"))
    sender = work._finish

    def finish():
        _write_back(t, buf, copied)()
        return sender()

    return Work(work._wait_fn, work._test_fn, finish)


def all_gather_object(object_list: list, obj, group=None) -> None:
    """Fill ``object_list`` (of world_size items) with every rank's picklable ``obj``."""
    comm = current("all_gather_object", group)
    if not isinstance(object_list, list) or len(object_list) != comm.size:
        raise ValueError(f"all_gather_object: object_list must be a list of world_size "
                         f"({comm.size}) items, got {_count(object_list)}")
    object_list[:] = comm.allgather_object(obj)


def broadcast_object_list(object_list: list, src: int = 0, group=None) -> None:
    """Replace ``object_list``'s items with rank ``src``'s (picklable objects)."""
    comm = current("broadcast_object_list", group)
    _rank_arg(src, "src", "broadcast_object_list", comm.size)
    if not isinstance(object_list, list):
        raise TypeError("broadcast_object_list: object_list must be a list")
    everyone = comm.allgather_object(object_list if comm.rank == src else None)
    object_list[:] = everyone[src]


# ------------------------------------------------------------------ argument checks
def _rank_arg(r, name: str, what: str, size: int) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < size:
        raise ValueError(f"{what}: {name}={r!r} is not a rank of this group (0 .. {size - 1})")


def _tag(tag, what: str) -> int:
    if isinstance(tag, bool) or not isinstance(tag, int) or not 0 <= tag < 32768:
        raise ValueError(f"{what}: tag must be an int in [0, 32767], got {tag!r}")
    return tag


def _count(x) -> str:
    return f"{len(x)} items" if isinstance(x, (list, tuple)) else type(x).__name__


def _tensor_list(lst, t: Tensor, size: int, what: str, name: str) -> None:
    """``lst`` must be a list of world_size tensors with ``t``'s shape and dtype."""
    if not isinstance(lst, list) or len(lst) != size:
        raise ValueError(f"{what}: {name} must be a list of world_size ({size}) tensors, got "
                         f"{_count(lst)}")
    for i, o in enumerate(lst):
        _tensor(o, what, f"{name}[{i}]")
        if o.shape != t.shape or o.dtype != t.dtype:
            raise ValueError(f"{what}: {name}[{i}] has shape {tuple(o.shape)} and dtype "
                             f"{o.dtype.name}, but the tensor has shape {tuple(t.shape)} and "
                             f"dtype {t.dtype.name}")


def _sized(big: Tensor, small: Tensor, n: int, what: str, big_name: str, small_name: str):
    if big.dtype != small.dtype:
        raise TypeError(f"{what}: {big_name} is {big.dtype.name}, {small_name} is "
                        f"{small.dtype.name}; they must match")
    if big.numel() != n * small.numel() or (big.ndim and small.ndim and
                                             big.shape[1:] != small.shape[1:]):
        raise ValueError(f"{what}: {big_name} of shape {tuple(big.shape)} must hold world_size "
                         f"({n}) times {small_name} of shape {tuple(small.shape)} along dim 0")
