"""The MPI communicator (mpi4py): non-blocking MPI calls polled against a deadline.

Plain MPI has no timeouts, and a blocking call waits forever for a rank that is dead or busy
elsewhere. So every operation here is started non-blocking (``Iallreduce``, ``Ibcast`` ...) and
waited on by polling ``Test`` until a deadline. While it waits, a rank also watches a second
communicator (a ``Dup`` of the world) for control messages:

- ``FAULT``: another rank hit an uncaught exception; raise an error naming it and stop.
- ``QUERY``: a rank whose wait timed out asks what everyone is doing; answer with our state.

When a wait passes its deadline (or the launcher signals that a process died: MPICH's hydra
sends SIGUSR1 under ``-disable-auto-cleanup``), the rank asks every other rank for its state
for a short grace period; ranks that do not answer are named in the error as dead or stuck
outside ``chainrule.distributed``. An uncaught exception in any rank (``sys.excepthook``) sends
``FAULT`` to the others, waits until each has printed why it stops and answered ``STOPPING``
(at most three grace periods, for a rank busy outside ``chainrule.distributed``), and then
every rank exits with the error's code; a rank that never answered is ended with
``MPI_Abort``. Either way the launcher exits non-zero and no rank is left, as PyTorch's
watchdog takes a job down. (``MPI_Abort`` is kept for that case only: MPICH's launcher drops
output that a rank has written but the launcher has not yet forwarded when an abort tears the
job down, which cut a rank's traceback off in about one job in ten on a loaded machine.)

Argument checks (every rank passes the same collective, dtype and shape) go through a small
shared-memory window when every rank is on one node (``_Board``), else an ``Iallgather``.

Only this module imports mpi4py (lazily, when a process group is created).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from .comm import Communicator, DistributedError, ReduceOp, SharedBuckets, Work

_FAULT, _QUERY, _REPLY, _STOPPING = 1, 2, 3, 4
_SPIN_S = 0.02  # poll Test back to back this long (as a blocking MPI call would), then back off
_MAX_SLEEP_S = 1e-3
_SHM_BUCKETS_MAX = 256 << 20  # bytes per rank (two copies of every bucket) in shared memory
_yield = getattr(os, "sched_yield", lambda: None)


def load_mpi():
    """mpi4py's MPI module, or an ImportError that names the extra to install."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("chainrule.distributed's 'mpi' backend needs mpi4py and an MPI "
                          "library: pip install 'chainrule[dist]' (mpi4py and the mpich "
                          f"wheel, which brings mpiexec) ({e})") from None
    return MPI


class MPICommunicator(Communicator):
    """The world of an ``mpiexec`` launch as a :class:`Communicator`."""

    backend = "mpi"

    def __init__(self, timeout: float):
        MPI = load_mpi()
        self.MPI = MPI
        world = MPI.COMM_WORLD
        self.world = world
        self.comm = world.Dup()
        self.ctl = world.Dup()
        for c in (self.comm, self.ctl):
            c.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank = world.Get_rank()
        self.size = world.Get_size()
        self.timeout = float(timeout)
        self.grace = min(1.0, max(0.2, self.timeout / 4))
        self.seq = 0  # collectives started so far (the same count on every rank)
        self.state = "idle"  # what this rank waits in, for other ranks' queries
        self.peer_died = False  # the launcher signalled that a process died
        self.peers_ended = 0  # how many times it did (every exit, under -disable-auto-cleanup)
        self.peer_failed = False  # another rank told us it failed
        self.failed_ranks: list = []  # the ranks whose FAULT we received
        self.closed = False
        self._sends: list = []  # control messages in flight (their buffers must stay alive)
        self._replies: dict = {}
        self._in_place = MPI.IN_PLACE
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN,
                     ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND, ReduceOp.BOR: MPI.BOR,
                     ReduceOp.BXOR: MPI.BXOR}
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR1, self._on_peer_death)
        self.checks = 0  # argument checks so far (the same count on every rank)
        self.windows: list = []  # the shared-memory windows made since (freed by close(True))
        self.board = _open_board(MPI, world) \
            if os.environ.get("CHAINRULE_SHM_CHECK", "1") != "0" else None

    # -------------------------------------------------------------- operations
    def _start(self, what: str, reqs: list, collective: bool = True) -> Work:
        if collective:
            self.seq += 1
        label = (what, self.seq) if collective else what  # worded only when needed
        return Work(lambda t: self.wait(reqs, label, t), lambda: self.test(reqs))

    def _mpi_op(self, op: ReduceOp, buf):
        if buf.dtype.kind == "b":  # MPI reduces no C bool: reduce the bytes instead
            op = {ReduceOp.SUM: ReduceOp.BOR, ReduceOp.MAX: ReduceOp.BOR,
                  ReduceOp.PRODUCT: ReduceOp.BAND, ReduceOp.MIN: ReduceOp.BAND}.get(op, op)
            buf = buf.view(np.uint8)
        return self._ops[op], buf

    def allreduce(self, buf, op: ReduceOp) -> Work:
        mop, b = self._mpi_op(op, buf)
        return self._start("all_reduce", [self.comm.Iallreduce(self._in_place, b, mop)])

    def allreduce_wait(self, buf, op: ReduceOp) -> None:
        # the blocking form without a Work and its closures: a training loop's hot path.
        # Small messages are often done by the first Test; only the others enter the polling
        # loop, with its deadline and control messages
        mop, b = self._mpi_op(op, buf)
        self.seq += 1
        req = self.comm.Iallreduce(self._in_place, b, mop)
        try:
            if req.Test():
                return
        except self.MPI.Exception as e:
            raise self._mpi_error(_label(("all_reduce", self.seq)), e, [req], None) from None
        self.wait([req], ("all_reduce", self.seq))

    def shared_buckets(self, sizes: list, dtypes: list) -> _ShmBuckets | None:
        """When every rank is on this node: the buckets in an MPI shared-memory window
        (:class:`_ShmBuckets`), summed there without a message; else None. Off with
        ``CHAINRULE_SHM_REDUCE=0``; None too beyond 256 MB per rank (two copies of the
        buckets) or when /dev/shm lacks the room (the decision is the same on every rank)."""
        MPI = self.MPI
        if self.size < 2 or not sizes:
            return None
        layout, nbytes = _ShmBuckets.layout(self.size, sizes, dtypes)
        ok = (os.environ.get("CHAINRULE_SHM_REDUCE", "1") != "0"
              and nbytes <= _SHM_BUCKETS_MAX * self.size and _shm_room(nbytes))
        node = self.world.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        ok = ok and node.Get_size() == self.size
        if not all(self.allgather_object(ok)):
            return None
        win = None
        try:
            win = MPI.Win.Allocate_shared(nbytes if node.Get_rank() == 0 else 0, 8, comm=node)
            buf, _ = win.Shared_query(0)
            win.Lock_all(MPI.MODE_NOCHECK)
        except MPI.Exception:
            buf = None
        if not all(self.allgather_object(buf is not None)):
            return None
        shared = _ShmBuckets(self, win, node, buf, layout, sizes, dtypes)
        self.windows.append(shared)
        return shared

    def broadcast(self, buf, src: int) -> Work:
        return self._start("broadcast", [self.comm.Ibcast(_bytes(buf), root=src)])

    def allgather(self, send, recv) -> Work:
        return self._start("all_gather", [self.comm.Iallgather(_bytes(send), _bytes(recv))])

    def reduce_scatter(self, send, recv, op: ReduceOp) -> Work:
        mop, s = self._mpi_op(op, send)
        _, r = self._mpi_op(op, recv)
        return self._start("reduce_scatter", [self.comm.Ireduce_scatter_block(s, r, mop)])

    def send(self, buf, dst: int, tag: int) -> Work:
        return self._start(f"send to rank {dst}",
                           [self.comm.Isend(_bytes(buf), dest=dst, tag=tag)], collective=False)

    def recv(self, buf, src: int | None, tag: int) -> Work:
        MPI = self.MPI
        status = MPI.Status()
        b = _bytes(buf)
        src_ = MPI.ANY_SOURCE if src is None else src
        req = self.comm.Irecv(b, source=src_, tag=tag)
        who = "any rank" if src is None else f"rank {src}"
        label = f"recv from {who}"

        def wait(t):
            self.wait([req], label, t, status)
            n = status.Get_count(MPI.BYTE)
            if n != b.size:
                raise DistributedError(
                    f"recv: rank {status.Get_source()} sent {n} bytes, but the receiving tensor "
                    f"holds {b.size} bytes ({buf.dtype}, {buf.size} elements): send and recv "
                    "need tensors of the same shape and dtype")

        work = Work(wait, lambda: self.test([req]), lambda: status.Get_source())
        return work

    def barrier(self) -> Work:
        return self._start("barrier", [self.comm.Ibarrier()])

    def allgather_object(self, obj: Any) -> list:
        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        sizes = np.empty(self.size, dtype=np.int64)
        self._start("all_gather_object",
                    [self.comm.Iallgather(np.array([data.size], np.int64), sizes)]).wait()
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        self._start("all_gather_object",
                    [self.comm.Iallgatherv(data, [out, sizes])]).wait()
        ends = np.cumsum(sizes)
        return [pickle.loads(out[e - n:e].tobytes()) for e, n in zip(ends, sizes)]

    def check_same(self, what: str, desc: tuple, mismatch) -> None:
        label = (what, self.seq + 1)  # counted with its data call
        self.checks += 1
        board = self.board
        if board is not None and len(desc) < _BOARD_WIDTH:
            # every rank on this node: post the descriptor on the shared board and compare
            # with the others' there (no message round trip), polled like a request
            k = self.checks
            row = board.row(desc)
            board.post(self.rank, k, row)
            if not board.arrived(k):
                self.wait((), label, test=lambda _: board.arrived(k))
            if board.same(k, row):
                return
            table = board.read(k)
        else:
            mine = np.asarray(desc, dtype=np.int64)
            table = np.empty((self.size, mine.size), dtype=np.int64)
            self.wait([self.comm.Iallgather(mine, table)], label)
            if table.tobytes() == mine.tobytes() * self.size:  # bytes: 20x faster than ==
                return
        raise DistributedError(mismatch(table))

    # -------------------------------------------------------------- waiting
    def test(self, reqs: list) -> bool:
        try:
            return self.MPI.Request.Testall(reqs)
        except self.MPI.Exception as e:
            raise DistributedError(f"rank {self.rank}: MPI error: {e.Get_error_string()}") \
                from None

    def wait(self, reqs: list, what, timeout: float | None = None, status=None,
             test=None) -> None:
        """Poll ``reqs`` until they complete; raise on a fault, a dead peer or the deadline.
        ``what`` names the operation: a string, or (name, collective number). ``test``: what
        is polled as ``test(reqs)`` instead of ``MPI.Request.Testall``."""
        MPI = self.MPI
        if test is None and status is None:
            test = MPI.Request.Testall
        if status is None and not self.closed:
            try:  # done already (often, for small messages): skip the set-up below
                if test(reqs):
                    return
            except MPI.Exception as e:
                raise self._mpi_error(_label(what), e, reqs, status) from None
        what = _label(what)
        if self.closed:
            raise DistributedError(f"{what}: the process group was destroyed")
        timeout = self.timeout if timeout is None else float(timeout)
        start = time.monotonic()
        deadline = start + timeout
        sleep = 0.0
        spins = 0
        self.state = what
        try:
            while True:
                try:
                    if status is None:
                        if test(reqs):
                            return
                    elif reqs[0].Test(status):
                        return
                except MPI.Exception as e:
                    raise self._mpi_error(what, e, reqs, status) from None
                spins += 1
                if spins > 64:  # as MPICH's blocking calls: let a peer on this core run
                    _yield()
                    # a yield on a loaded machine can last a scheduler tick (ms): look at
                    # the clock and the control messages every 16 of them, not every 256
                    # (256 yields took long enough at load 5 that a peer's FAULT went
                    # unanswered until it aborted the job)
                    if spins & 15 and sleep == 0.0:
                        continue
                elif spins & 255 and sleep == 0.0:
                    continue
                now = time.monotonic()
                self._service(what)
                if self.peer_died or now > deadline:
                    self._diagnose(what, timeout, timed_out=now > deadline)
                if now - start > _SPIN_S:
                    sleep = min(_MAX_SLEEP_S, max(sleep * 2, 2e-5))
                    time.sleep(sleep)
        finally:
            self.state = "idle"

    def _mpi_error(self, what, e, reqs, status) -> DistributedError:
        cls = e.Get_error_class()
        if cls == self.MPI.ERR_TRUNCATE and status is not None:
            return DistributedError(
                f"{what}: the message is larger than the receiving tensor: send and recv need "
                "tensors of the same shape and dtype")
        return DistributedError(f"{what} failed on rank {self.rank}: MPI error: "
                                f"{e.Get_error_string().splitlines()[0]}")

    def _on_peer_death(self, signum, frame) -> None:
        self.peer_died = True
        self.peers_ended += 1

    def _post(self, obj, dest: int, tag: int) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        self._sends.append(self.ctl.isend(obj, dest=dest, tag=tag))

    def _service(self, what: str) -> None:
        """Handle the control messages that have arrived."""
        MPI = self.MPI
        st = MPI.Status()
        while self.ctl.Iprobe(source=MPI.ANY_SOURCE, tag=MPI.ANY_TAG, status=st):
            src, tag = st.Get_source(), st.Get_tag()
            msg = self.ctl.recv(source=src, tag=tag)
            if tag == _FAULT:
                self.peer_failed = True
                self.failed_ranks.append(src)
                raise DistributedError(
                    f"rank {src} failed ({msg}); rank {self.rank} stops too, in {what}")
            if tag == _QUERY:
                self._post(self.state, src, _REPLY)
            elif tag == _REPLY:
                self._replies[src] = msg

    def _diagnose(self, what: str, timeout: float, timed_out: bool) -> None:
        """Ask every other rank what it is doing; raise an error naming the silent ones."""
        self._replies = {}
        others = [r for r in range(self.size) if r != self.rank]
        for r in others:
            self._post(None, r, _QUERY)
        end = time.monotonic() + self.grace
        while time.monotonic() < end and len(self._replies) < len(others):
            self._service(what)
            time.sleep(1e-3)
        silent = [r for r in others if r not in self._replies]
        if timed_out:
            msg = f"{what} timed out after {timeout:g} s on rank {self.rank}"
        else:
            msg = f"{what} stopped on rank {self.rank}: the launcher reported a dead process"
        if silent:
            names = ", ".join(str(r) for r in silent)
            msg += (f"; rank{'s' if len(silent) > 1 else ''} {names} never joined it and "
                    f"{'do' if len(silent) > 1 else 'does'} not answer (dead, or busy outside "
                    "chainrule.distributed)")
        busy = [f"rank {r} is in {s}" for r, s in sorted(self._replies.items()) if s != what]
        if busy:
            msg += "; " + "; ".join(busy)
        raise DistributedError(msg)

    # -------------------------------------------------------------- ending
    def abort(self, reason: str, code: int = 1) -> None:
        """End this rank, and with it the job, after an uncaught exception (``sys.excepthook``).

        The rank that failed first tells the others (``FAULT``) and waits for each to answer
        ``STOPPING``, which a rank sends after printing its own error; a rank that received
        the ``FAULT`` answers and exits. When every rank has answered, each exits with
        ``code`` (the failed rank last, so that the launcher's clean-up of a failed job never
        kills a rank that is still writing); otherwise the silent ranks are ended with
        ``MPI_Abort``."""
        print(f"chainrule.distributed: rank {self.rank} ends the job: {reason}",
              file=sys.stderr, flush=True)
        told = False
        with contextlib.suppress(Exception):
            if self.peer_failed:
                # tell the failed rank that this one has said why it stops; it ends the job
                for r in self.failed_ranks:
                    self._post(None, r, _STOPPING)
                told = self._sent(self.grace)
            else:
                for r in range(self.size):
                    if r != self.rank:
                        self._post(f"{reason}", r, _FAULT)
                told = self._await_stopping()
                if told:
                    self._await_exits()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        if told:
            os._exit(code)
        self.world.Abort(code)

    def _sent(self, within: float) -> bool:
        """Whether the control messages in flight were delivered within ``within`` seconds."""
        end = time.monotonic() + within
        while self._sends:
            self._sends = [r for r in self._sends if not r.Test()]
            if time.monotonic() > end:
                return False
            time.sleep(1e-3)
        return True

    def _await_stopping(self) -> bool:
        """After a FAULT: let the other ranks say why they stop before the job ends. Each
        that gets the FAULT prints its error, then answers STOPPING from its own abort; wait
        for every answer, or at most 3 graces for a rank that is busy outside
        chainrule.distributed and cannot answer (a fixed grace lost a busy rank's last lines
        when it took longer to print them). True when every rank answered."""
        MPI = self.MPI
        waiting = {r for r in range(self.size) if r != self.rank}
        end = time.monotonic() + 3 * self.grace
        st = MPI.Status()
        while waiting and time.monotonic() < end:
            while self.ctl.Iprobe(source=MPI.ANY_SOURCE, tag=_STOPPING, status=st):
                src = st.Get_source()
                self.ctl.recv(source=src, tag=_STOPPING)
                waiting.discard(src)
            time.sleep(1e-3)
        return not waiting

    def _await_exits(self) -> None:
        """Give the ranks that answered STOPPING a moment to exit before this one does: the
        launcher (without -disable-auto-cleanup) kills what is left of a job once a rank
        exits non-zero. Under -disable-auto-cleanup it signals each exit, so the wait ends as
        soon as every other rank is gone; else after one grace."""
        end = time.monotonic() + self.grace
        while self.peers_ended < self.size - 1 and time.monotonic() < end:
            time.sleep(1e-3)

    def close(self, free_windows: bool = False) -> None:
        """Leave the group. ``free_windows`` (``destroy_process_group``, which every rank
        calls): first a barrier, polled like any collective (a rank that never comes is a
        timeout error naming it, and nothing is freed), then free the shared-memory windows
        (the argument board, DDP's buckets): ``MPI_Win_free`` is collective and would wait
        forever for a rank that never calls it. Without (at exit, after a fault), the windows
        stay until ``MPI_Finalize`` or the abort releases them."""
        if self.closed:
            return
        if free_windows and (self.windows or self.board is not None):
            self._start("destroy_process_group", [self.comm.Ibarrier()]).wait()
            # every rank is here: free in the same order everywhere (creation order)
            for w in self.windows:
                w.free()
            self.windows = []
            if self.board is not None:
                self.board.free()
                self.board = None
        self.closed = True
        # the SIGUSR1 handler stays: hydra (under -disable-auto-cleanup) signals every exit of
        # a rank, and the default action would kill this process while it finalizes
        for c in (self.comm, self.ctl):
            with contextlib.suppress(Exception):
                c.Free()


_BOARD_WIDTH = 16  # int64 per rank and slot: the check number, then the descriptor


def _open_board(MPI, world) -> _Board | None:
    """The check board of the world's ranks; None (on every rank) where they span several
    nodes or the window cannot be made: checks then go through ``Iallgather``."""
    array = None
    node = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.Get_rank())
    size = world.Get_size()
    if node.Get_size() == size:
        try:
            nbytes = size * 2 * _BOARD_WIDTH * 8
            win = MPI.Win.Allocate_shared(nbytes if node.Get_rank() == 0 else 0, 8, comm=node)
            buf, _ = win.Shared_query(0)
            array = np.ndarray((size, 2, _BOARD_WIDTH), dtype=np.int64, buffer=buf)
            if node.Get_rank() == 0:
                array[...] = 0
            win.Lock_all(MPI.MODE_NOCHECK)
        except MPI.Exception:  # no shared window here: checks go by message
            array = None
    # every rank must take the same path
    if not world.allreduce(array is not None, op=MPI.LAND):
        return None
    win.Sync()
    node.Barrier()
    win.Sync()
    return _Board(win, node, array)


class _Board:
    """A shared-memory window where the ranks of one node post each argument check: per rank,
    two slots (checks alternate between them) of ``_BOARD_WIDTH`` int64, the check's number
    first. A rank cannot reach check k + 2 before every rank has read check k (check k + 1
    needs them all), so two slots suffice. Made by :func:`_open_board`.

    The board is read and written through flat memoryviews (Python ints and byte strings, no
    NumPy scalars): a check is on every collective, and these are a few hundred nanoseconds
    each."""

    def __init__(self, win, node, array):
        self.win = win
        self.node = node  # the node's communicator, kept with its window
        self.array = array
        raw = memoryview(array).cast("B")
        self.bytes = raw
        self.ints = raw.cast("q")
        w = _BOARD_WIDTH
        # per slot parity: each rank's slot (its first int64) and its descriptor's bytes
        self.heads = [[(r * 2 + s) * w for r in range(array.shape[0])] for s in (0, 1)]
        self.spans = [[(8 * (h + 1), 8 * (h + w)) for h in hs] for hs in self.heads]
        self._rows: dict = {}

    def row(self, desc) -> bytes:
        """``desc`` as the bytes of a slot after its number: int64, padded with -2 (so that
        descriptors of other lengths differ too). An immutable one (a tuple, a read-only
        array: the collectives pass the same few cached ones on every step) is remembered by
        identity, kept alive with its row."""
        hit = self._rows.get(id(desc))
        if hit is not None and hit[0] is desc:
            return hit[1]
        padded = np.full(_BOARD_WIDTH - 1, -2, dtype=np.int64)
        padded[:len(desc)] = desc
        row = padded.tobytes()
        if type(desc) is tuple or (isinstance(desc, np.ndarray) and not desc.flags.writeable):
            if len(self._rows) >= 512:
                self._rows.clear()
            self._rows[id(desc)] = (desc, row)
        return row

    def post(self, rank: int, k: int, row: bytes) -> None:
        head = self.heads[k & 1][rank]
        self.bytes[8 * (head + 1):8 * (head + _BOARD_WIDTH)] = row
        self.win.Sync()  # the descriptor is visible before its number
        self.ints[head] = k

    def arrived(self, k: int) -> bool:
        ints = self.ints
        for head in self.heads[k & 1]:
            if ints[head] != k:
                self.win.Sync()  # see the others' writes on the next test
                return False
        self.win.Sync()
        return True

    def same(self, k: int, row: bytes) -> bool:
        """Whether every rank posted ``row`` for check ``k`` (which has arrived)."""
        b = self.bytes
        for lo, hi in self.spans[k & 1]:
            if b[lo:hi].tobytes() != row:  # tobytes: 2x faster than comparing the view
                return False
        return True

    def read(self, k: int):
        return self.array[:, k & 1, 1:].copy()

    def free(self) -> None:
        """Release the window (collective over the node; no view of it may be used after)."""
        self.array = self.bytes = self.ints = None
        _free_window(self.win, self.node)


def _free_window(win, node) -> None:
    win.Unlock_all()
    win.Free()
    node.Free()


def _shm_room(nbytes: int) -> bool:
    """Whether /dev/shm (where MPICH maps shared windows) has room for ``nbytes`` with a
    margin (touching a mapping beyond it would end the process with SIGBUS)."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return True  # no /dev/shm: the library maps its windows elsewhere
    return st.f_bavail * st.f_frsize >= 2 * nbytes


class _ShmBuckets(SharedBuckets):
    """Fixed buckets summed over the ranks of one node in an MPI shared-memory window
    (``MPICommunicator.shared_buckets``), for DistributedDataParallel's gradients.

    Each rank writes its bucket into its own slot (two per bucket, used by turns: a rank
    writes step s + 2's slot only after every rank has finished reading step s's) and
    posts the step's number. With 2 ranks, once both have posted, each sums the two slots
    into its result buffer (both compute the same a + b: ``MPI_SUM``'s bits). With more,
    each rank sums its own chunk (1 / world size of the bucket) over every slot, in rank
    order, into its slot, and posts again; each rank copies every summed chunk into its
    result buffer as soon as it sees it posted (a rank that waits for another's chunk copies
    the others meanwhile), so every rank gets the same bits. No message and no library
    buffer between the slots and the result. The work happens where the caller tests or
    waits; a wait is polled like a request (deadline, control messages, dead ranks:
    ``MPICommunicator.wait``)."""

    @staticmethod
    def layout(n: int, sizes: list, dtypes: list):
        """Byte offsets: the flags (per rank, a 64-byte aligned row of (posted, summed) per
        bucket), then per bucket, turn and rank a 64-byte aligned slot; and the total."""
        row = -(-16 * len(sizes) // 64) * 64
        off = n * row
        slots = []
        for size, dt in zip(sizes, dtypes):
            nb = -(-size * np.dtype(dt).itemsize // 64) * 64
            slots.append([[off + (t * n + q) * nb for q in range(n)] for t in (0, 1)])
            off += 2 * n * nb
        return (row, slots), max(off, 64)

    def __init__(self, comm, win, node, buf, layout, sizes, dtypes):
        self.comm = comm
        self.win = win
        self.node = node  # the node's communicator, kept with its window
        n, r = comm.size, comm.rank
        row, offs = layout
        self.ints = memoryview(buf).cast("B").cast("q")
        # flag index of (rank q, bucket i, 0 posted / 1 summed)
        self.row = row // 8
        nb = len(sizes)
        self.posted = [[q * self.row + 2 * i for q in range(n)] for i in range(nb)]
        self.summed = [[q * self.row + 2 * i + 1 for q in range(n)] for i in range(nb)]
        if node.Get_rank() == 0:
            for k in range(n * self.row):
                self.ints[k] = 0
        self.slots = [[[np.ndarray(size, dtype=dt, buffer=buf, offset=o) for o in turn]
                       for turn in o_i] for size, dt, o_i in zip(sizes, dtypes, offs)]
        self.chunks = [[(q * size // n, (q + 1) * size // n) for q in range(n)]
                       for size in sizes]
        self.steps = [0] * nb  # reductions started so far, per bucket
        self.done = [0] * nb  # the last step whose chunk this rank has summed
        self.rank = r
        win.Sync()
        node.Barrier()  # the flags are zero before anyone posts
        win.Sync()

    def slot(self, i: int):
        """This rank's slot for bucket ``i``'s next reduction (write the bucket here)."""
        if self.slots is None:
            raise DistributedError("DistributedDataParallel: the process group was destroyed "
                                   "(its shared-memory buckets with it); wrap the model again "
                                   "after init_process_group")
        return self.slots[i][(self.steps[i] + 1) & 1][self.rank]

    def free(self) -> None:
        """Release the window (collective over the node, in ``destroy_process_group``); the
        slots' views are dropped first, and ``slot``/``start`` raise from then on."""
        self.slots = self.ints = None
        _free_window(self.win, self.node)

    def start(self, i: int, out) -> Work:
        """Post this rank's slot of bucket ``i`` and start summing it over the ranks into
        ``out``; ``wait()`` returns once ``out`` holds the whole sum."""
        self.slot(i)  # raises once the window is freed
        comm = self.comm
        s = self.steps[i] = self.steps[i] + 1
        comm.seq += 1
        self.win.Sync()  # the slot's bytes are visible before its number
        self.ints[self.posted[i][self.rank]] = s
        label = ("all_reduce", comm.seq)
        todo = list(range(comm.size))  # the chunks not yet copied into out

        def test(_=None):
            return self._progress(i, s, out, todo)

        def wait(timeout):
            if not test():
                comm.wait((), label, timeout, test=test)

        return Work(wait, test)

    def _progress(self, i: int, s: int, out, todo: list) -> bool:
        """Sum this rank's chunk once every rank has posted; copy every summed chunk into
        ``out`` as soon as it is (so a rank that waits for another copies meanwhile)."""
        ints, turn, chunks = self.ints, self.slots[i][s & 1], self.chunks[i]
        if len(turn) == 2:  # 2 ranks: each sums the whole bucket (one round, no second post)
            if not todo:
                return True
            for k in self.posted[i]:
                if ints[k] < s:
                    self.win.Sync()  # see the others' writes on the next test
                    return False
            self.win.Sync()
            np.add(turn[0], turn[1], out=out)
            todo.clear()
            return True
        if self.done[i] < s:
            for k in self.posted[i]:
                if ints[k] < s:
                    self.win.Sync()  # see the others' writes on the next test
                    return False
            self.win.Sync()
            lo, hi = chunks[self.rank]
            mine = turn[self.rank][lo:hi]
            acc = turn[0][lo:hi] + turn[1][lo:hi]
            for q in range(2, len(turn)):
                acc += turn[q][lo:hi]
            mine[...] = acc
            self.win.Sync()
            ints[self.summed[i][self.rank]] = s
            self.done[i] = s
        synced = False
        for q in tuple(todo):
            if ints[self.summed[i][q]] >= s:
                if not synced:  # the chunk's bytes after its number
                    self.win.Sync()
                    synced = True
                lo, hi = chunks[q]
                out[lo:hi] = turn[q][lo:hi]
                todo.remove(q)
        if todo:
            self.win.Sync()
            return False
        return True


def _label(what) -> str:
    """An operation's name: ``what``, or (name, collective number) worded."""
    return f"{what[0]} (collective #{what[1]})" if type(what) is tuple else what


def _bytes(buf):
    """A C-contiguous array as a flat byte view (moving data needs no MPI datatype)."""
    return buf.reshape(-1).view(np.uint8)


def under_mpiexec() -> bool:
    """True when this process was started by an MPI launcher (hydra, Open MPI, Slurm's PMI)."""
    return any(k in os.environ for k in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK",
                                         "PMI_SIZE"))
