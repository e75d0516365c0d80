"""The communicator interface that every backend implements, the work handle, the reduce ops.

A :class:`Communicator` moves contiguous arrays between the processes of one job. It knows
nothing of Tensors or autograd: the public functions in ``chainrule.distributed`` check their
arguments, lay tensors out as contiguous arrays, call the communicator and write the results
back. Every call is non-blocking and returns a :class:`Work`; the blocking forms are
``start(...).wait()``. One implementation exists today (``MPICommunicator``, over mpi4py, for
CPU arrays); an NCCL one (through CuPy, for GPU arrays) fits the same methods.

Every wait ends, one way or another, within the communicator's timeout: plain MPI has none, so
the MPI implementation polls its requests against a deadline (see ``mpi.py``).

Example:
    >>> from chainrule.distributed.comm import ReduceOp
    >>> ReduceOp.AVG, ReduceOp("max")
    (<ReduceOp.AVG: 'avg'>, <ReduceOp.MAX: 'max'>)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any


class DistributedError(RuntimeError):
    """A collective that cannot complete: another rank failed or died, a timeout, tensors that
    differ across ranks, a call before ``init_process_group``. The message names the ranks."""


class ReduceOp(enum.Enum):
    """Reductions for ``all_reduce`` and ``reduce_scatter`` (PyTorch's names).

    ``AVG`` is for floating-point tensors; the bitwise ops for integer and bool tensors.
    """

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"

    # members are singletons: hash them by identity, not by Enum's Python-level __hash__
    # (looked up on every collective)
    __hash__ = object.__hash__


class Work:
    """A collective in flight (PyTorch's ``Work``): ``wait()`` blocks until it is done (or
    raises :class:`DistributedError`), ``is_completed()`` asks without blocking.

    ``wait_fn(timeout)`` and ``test_fn()`` come from the communicator; ``finish`` runs once,
    after completion (the public layer copies results back into tensors there).
    """

    def __init__(self, wait_fn: Callable[[float | None], None], test_fn: Callable[[], bool],
                 finish: Callable[[], Any] | None = None):
        self._wait_fn, self._test_fn, self._finish = wait_fn, test_fn, finish
        self._done = False
        self._result = None

    def then(self, finish: Callable[[], Any]) -> Work:
        """A Work that runs ``finish`` after this one's own finisher."""
        first = self._finish

        def both():
            if first is not None:
                first()
            return finish()

        return Work(self._wait_fn, self._test_fn, both)

    def _complete(self) -> None:
        if not self._done:
            self._done = True
            if self._finish is not None:
                self._result = self._finish()

    def wait(self, timeout=None) -> bool:
        """Block until the operation is done. ``timeout`` (a ``timedelta`` or seconds)
        overrides the process group's for this wait. Returns True."""
        if not self._done:
            if timeout is not None and hasattr(timeout, "total_seconds"):
                timeout = timeout.total_seconds()
            self._wait_fn(timeout)
            self._complete()
        return True

    def is_completed(self) -> bool:
        """True once the operation has finished (never blocks)."""
        if not self._done and self._test_fn():
            self._complete()
        return self._done

    def result(self):
        """What the operation produced (for ``recv``: the sender's rank), after ``wait()``."""
        self.wait()
        return self._result


class Communicator:
    """The interface a backend implements. Arrays are C-contiguous and on the backend's
    device; every method starts the operation and returns a :class:`Work`.

    ``op`` is a :class:`ReduceOp` other than ``AVG`` (the caller divides), already checked
    against the dtype. ``allgather`` fills ``recv`` of shape ``(size, *send.shape)``;
    ``reduce_scatter`` reduces ``send`` of ``size * recv.size`` elements and leaves block
    ``rank`` in ``recv``.
    """

    backend: str = ""
    rank: int = 0
    size: int = 1
    timeout: float = 1800.0

    def allreduce(self, buf, op: ReduceOp) -> Work:
        raise NotImplementedError

    def allreduce_wait(self, buf, op: ReduceOp) -> None:
        """``allreduce(buf, op).wait()``; a backend may do it with less work per call (the
        blocking ``all_reduce`` of a training loop is the hot path)."""
        self.allreduce(buf, op).wait()

    def shared_buckets(self, sizes: list, dtypes: list):
        """Where this backend can sum fixed buckets over the ranks more cheaply than
        :meth:`allreduce` (``DistributedDataParallel``'s gradient buckets: the same sizes
        every step), a :class:`SharedBuckets`; else None (the caller uses ``allreduce``).
        Collective: every rank calls it with the same arguments and gets the same answer."""
        return None

    def broadcast(self, buf, src: int) -> Work:
        raise NotImplementedError

    def allgather(self, send, recv) -> Work:
        raise NotImplementedError

    def reduce_scatter(self, send, recv, op: ReduceOp) -> Work:
        raise NotImplementedError

    def send(self, buf, dst: int, tag: int) -> Work:
        raise NotImplementedError

    def recv(self, buf, src: int | None, tag: int) -> Work:
        raise NotImplementedError

    def barrier(self) -> Work:
        raise NotImplementedError

    def allgather_object(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order; blocking."""
        raise NotImplementedError

    def check_same(self, what: str, desc: tuple, mismatch: Callable[[Any], str]) -> None:
        """Raise :class:`DistributedError` on every rank unless all ranks pass the same
        ``desc`` (small ints, a tuple or an int64 array: the collective, dtype, shape ...);
        blocking. The message is ``mismatch(table)``, ``table`` holding every rank's ``desc``
        as a row.

        The check must end before the operation it guards starts: MPICH, given an
        ``Iallreduce`` of 300,000 floats on one rank and of 300,007 (or an ``Ibcast``) on the
        other, crashed with a segmentation fault, even with the operations abandoned after the
        check failed.
        """
        raise NotImplementedError

    def abort(self, reason: str, code: int = 1) -> None:
        """Tell the other ranks why, then end the whole job (every rank, non-zero exit)."""
        raise NotImplementedError

    def close(self, free_windows: bool = False) -> None:
        """Leave the group. ``free_windows``: every rank is closing it
        (``destroy_process_group``), so collective clean-up (shared memory) may run."""
        raise NotImplementedError


class SharedBuckets:
    """Sums of fixed-size buckets over the ranks (``Communicator.shared_buckets``): write a
    bucket into ``slot(i)``, call ``start(i, out)`` (a :class:`Work`; ``is_completed()`` lets
    it progress); once it is waited on, ``out`` holds the sum. Each bucket's reductions
    complete in the order they started, on every rank."""

    def slot(self, i: int):
        raise NotImplementedError

    def start(self, i: int, out) -> Work:
        raise NotImplementedError

    def free(self) -> None:
        """Release the buckets' memory (collective; ``slot`` and ``start`` raise after)."""
        raise NotImplementedError
