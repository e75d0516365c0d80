"""DistributedDataParallel: one model replica per rank, gradients averaged during backward.

At wrap time every rank's model is checked against rank 0's (names, shapes, dtypes of the
parameters and buffers: a mismatch is an error on every rank before any training) and rank 0's
values are broadcast, so every replica starts identical.

During backward, gradients are averaged in buckets (``bucket_cap_mb``, 25 MB by default; the
first bucket 1 MB, so communication starts early). Parameters go into buckets in reverse
registration order, roughly the order backward produces their gradients. A post-accumulate-grad
hook on each parameter copies its gradient, divided by the world size (as PyTorch's default
allreduce hook does), into its bucket's flat buffer; when the bucket is full, its sum over the
ranks starts while the rest of backward runs: in an MPI shared-memory window when every rank is
on one node (``Communicator.shared_buckets``), else with a non-blocking MPI call
(``Iallreduce``); each later hook also tests the sums in flight, which is what lets them
progress. In shared memory with a world size that is a power of two, backward writes the
linear layers' weight gradients, divided, straight into the bucket (``_linear_weight_into``,
through ``autograd.post_hooks.DESTS``), and their hooks have nothing to copy. When the last
bucket has started, the reducer waits for all of them; the summed buffer is the average, and
each ``.grad`` becomes a view of its part (no copy back; every synced backward sums into a
new buffer, so gradients held from an earlier step never change).
After ``backward()`` returns, every rank holds the same averaged gradients, so the same
optimiser step keeps the replicas identical.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time

from ...autograd import post_hooks as _post
from ...autograd.grad_mode import is_grad_enabled
from ...autograd.graph import Node
from ...backend import get_array_module
from ...distributed.comm import DistributedError, ReduceOp
from ...distributed.group import current
from ...tensor import Tensor, _wrap
from ..module import Module

_FIRST_BUCKET_BYTES = 1 << 20


class DistributedDataParallel(Module):
    """Data parallelism over the ranks of ``chainrule.distributed`` (PyTorch's DDP).

    Args:
        module: the model; wrapped as ``self.module``, so ``state_dict`` keys start with
            ``"module."`` as in PyTorch.
        broadcast_buffers: copy rank 0's buffers (BatchNorm statistics ...) to every rank at
            the start of each forward in training mode.
        bucket_cap_mb: bucket size for the gradient allreduce, in MB (default 25).
        find_unused_parameters: walk the autograd graph after each forward and count the
            parameters it does not reach as ready (otherwise every trainable parameter must
            get a gradient in every backward, and a missing one is reported at the next
            forward).
        device_ids, output_device: for GPU replicas; must be None on the CPU.

    Example (under ``mpiexec -n 2``)::

        dist.init_process_group("mpi")
        model = DistributedDataParallel(nn.Linear(4, 2))
        loss = model(x_local).square().mean()
        loss.backward()          # .grad is now averaged over the ranks
        with model.no_sync():    # accumulate locally, reduce on the next synced backward
            model(x2).sum().backward()
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None,
                 bucket_cap_mb: float = 25.0, find_unused_parameters: bool = False):
        super().__init__()
        comm = current("DistributedDataParallel", process_group)
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a chainrule.nn.Module, "
                            f"got {type(module).__name__}")
        if device_ids is not None or output_device is not None:
            raise ValueError("DistributedDataParallel: device_ids/output_device are for GPU "
                             "replicas; leave them None for CPU modules")
        if dim != 0:
            raise ValueError(f"DistributedDataParallel: dim={dim}: inputs are split by the "
                             "DataLoader/DistributedSampler, so only dim=0 is meaningful")
        if not isinstance(bucket_cap_mb, (int, float)) or not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive "
                             f"number, got {bucket_cap_mb!r}")
        self.module = module
        self.broadcast_buffers = bool(broadcast_buffers)
        self.find_unused_parameters = bool(find_unused_parameters)
        self.bucket_cap_mb = bucket_cap_mb
        self.require_backward_grad_sync = True
        self._comm = comm
        for p in module.parameters():
            if p.is_cuda:
                raise ValueError("DistributedDataParallel: the module has GPU parameters; the "
                                 "'mpi' backend reduces CPU tensors")
        _check_same_model(comm, module)
        _broadcast_state(comm, module)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._reducer = _Reducer(comm, named, int(bucket_cap_mb * (1 << 20)), self)

    def forward(self, *inputs, **kwargs):
        if getattr(self._comm, "closed", False):
            raise DistributedError("DistributedDataParallel: the process group was destroyed "
                                   "(destroy_process_group); wrap the model again after "
                                   "init_process_group")
        self._reducer.check_previous()
        if self.broadcast_buffers and self.training:
            bufs = [b for b in self.module.buffers() if b is not None]
            if bufs:
                if _jit().tracing():
                    _jit().graph_break(
                        "DistributedDataParallel broadcasts the module's buffers from rank 0 "
                        "in each training forward, which chainrule.jit does not replay yet; "
                        "pass broadcast_buffers=False to jit the step")
                _broadcast_tensors(self._comm, bufs)
        out = self.module(*inputs, **kwargs)
        if self.require_backward_grad_sync and is_grad_enabled():
            self._reducer.armed = True
            if self.find_unused_parameters:
                self._reducer.mark_unused(out)
        return out

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates gradients locally without communicating; the first
        backward after it averages everything accumulated."""
        prev = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = prev

    @property
    def bucket_sizes(self) -> list[int]:
        """Number of parameters in each bucket, in the order they are reduced."""
        return [len(b.params) for b in self._reducer.buckets]

    @property
    def comm_stats(self) -> dict:
        """The last synced backward: ``buckets_before_last`` (buckets started before the last
        gradient arrived), ``wait_s`` (time blocked waiting for the allreduces once backward
        had produced every gradient) and ``written_by_backward`` (gradients that backward
        wrote straight into the shared-memory buckets: with 2 ranks on one node, the weights
        of linear layers)."""
        return dict(self._reducer.stats)


class _Bucket:
    __slots__ = ("buf", "dtype", "offsets", "out", "params", "parts", "pending", "size",
                 "views", "work")

    def __init__(self, params):
        self.params = params
        self.dtype = params[0]._data.dtype
        self.offsets = []
        n = 0
        for p in params:
            self.offsets.append(n)
            n += p._data.size
        self.size = n
        self.buf = None  # a new one for each synced backward (at its first gradient)
        self.views = None  # buf's flat part for each parameter
        self.parts = None  # the gradients gathered so far, under chainrule.jit
        self.pending = len(params)
        self.work = None
        self.out = None  # where a shared-memory sum lands (this step's own buffer)


class _Reducer:
    """Buckets, the hooks that fill them, and the non-blocking allreduces."""

    def __init__(self, comm, named, cap_bytes: int, ddp):
        self.comm = comm
        self.names = {id(p): n for n, p in named}
        self.ddp_ref = ddp
        params = [p for _, p in reversed(named)]
        self.buckets = _make_buckets(params, cap_bytes)
        self.xp = get_array_module(params[0]._data) if params else None
        self.inv = 1.0 / comm.size
        self.where = {}
        for bi, b in enumerate(self.buckets):
            for k, p in enumerate(b.params):
                self.where[id(p)] = (bi, k)
        self.ready: set = set()
        self.launched = 0
        self.armed = False  # a forward through the wrapper expects one synced backward
        self.stats = {"buckets_before_last": 0, "wait_s": 0.0, "written_by_backward": 0}
        # the buckets in shared memory where the backend can sum them there (every rank on
        # one node): the hooks write the gradients straight into them; else None (Iallreduce)
        self.shared = comm.shared_buckets([b.size for b in self.buckets],
                                          [b.dtype for b in self.buckets])
        # on the shared path, with a world size that is a power of two, backward writes the
        # linear layers' weight gradients, divided (exactly: a power of two), straight into
        # the slot (autograd.post_hooks.DESTS): no copy in the hook. CHAINRULE_DDP_INTO_SLOT=0:
        # the hooks copy them (the same bits, barring underflow)
        self.into = (self.shared is not None and math.frexp(self.inv)[0] == 0.5
                     and os.environ.get("CHAINRULE_DDP_INTO_SLOT", "1") != "0")
        self.given: dict = {}  # id(parameter) -> the slot part handed to backward this step
        self.in_slot = 0  # gradients that backward wrote into the slot, this backward
        self.jit_works: dict = {}  # bucket -> its allreduce in flight, in a jit replay
        self.jit_started: list = []  # the buckets started so far, while a trace records
        self.in_flight: list = []  # this backward's bucket sums started so far (eager)
        self.slot_views: dict = {}  # (bucket, id(slot)) -> (slot, its per-parameter views)

        def hook(p):
            self._on_grad(p)

        hook.jit_traceable = True  # under chainrule.jit it records its allreduces (_traced)
        for p in params:
            p.register_post_accumulate_grad_hook(hook)
            if self.into:
                _post.register_destination(p, self._dest)

    def _reset(self):
        self.armed = False
        self.given.clear()
        self.in_slot = 0
        self.ready.clear()
        self.launched = 0
        self.in_flight.clear()
        self.jit_started.clear()
        for b in self.buckets:
            b.pending = len(b.params)
            b.work = None

    def check_previous(self):
        if self.ready:
            missing = [self.names[id(p)] for b in self.buckets for p in b.params
                       if id(p) not in self.ready]
            self._reset()
            raise DistributedError(
                "DistributedDataParallel: the previous backward produced no gradient for "
                f"parameter(s) {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}, "
                "so their allreduce never ran. Pass find_unused_parameters=True when some "
                "parameters do not take part in the loss, or make every rank use them")

    def mark_unused(self, out):
        reached = _reachable_leaves(out)
        if reached is None:
            return
        for b in self.buckets:
            for p in b.params:
                if id(p) not in reached:
                    self._ready(p, None)

    def _on_grad(self, p):
        if not self.ddp_ref.require_backward_grad_sync:
            if _jit().tracing():
                _jit().graph_break("DistributedDataParallel.no_sync() inside chainrule.jit: the "
                                   "replay could not tell a synced step from an unsynced one")
            return
        if not self.armed:
            raise DistributedError(
                f"DistributedDataParallel: parameter {self.names[id(p)]} got a gradient from a "
                "backward that did not follow a forward through the wrapper (each synced "
                "backward needs its own forward: call the DistributedDataParallel module, not "
                ".module; use no_sync() for backward passes that only accumulate)")
        self._ready(p, p._grad)

    def _slot_views(self, bi):
        """This step's shared slot of bucket ``bi`` and its per-parameter flat views (made
        once per slot: two, used by turns)."""
        slot = self.shared.slot(bi)
        hit = self.slot_views.get((bi, id(slot)))
        if hit is None or hit[0] is not slot:
            hit = self.slot_views[(bi, id(slot))] = (slot, _flat_views(slot, self.buckets[bi]))
        return hit

    def _dest(self, p):
        """Where backward may write ``p``'s gradient and by what to scale it
        (autograd.post_hooks.DESTS): its part of this step's shared slot, divided by the world
        size, in a synced eager backward; else None."""
        if not self.armed or not self.ddp_ref.require_backward_grad_sync or _jit().tracing():
            return None
        bi, k = self.where[id(p)]
        d = self._slot_views(bi)[1][k].reshape(p._data.shape)
        self.given[id(p)] = d
        return d, self.inv

    def _ready(self, p, grad):
        bi, k = self.where[id(p)]
        b = self.buckets[bi]
        self.ready.add(id(p))
        if _jit().tracing():
            self._traced(b, bi, k, grad)
            return
        if b.pending == len(b.params):
            # the averaged .grad of the last synced backward are views of that step's own
            # buffer (the Iallreduce bucket, or the shared sum's result), and whoever still
            # holds them keeps them unchanged: a new one every step; the shared slot (one of
            # two, by turns) is reused, with its per-parameter views made once
            if self.shared is None:
                b.buf = self.xp.empty(b.size, dtype=b.dtype)
                b.views = _flat_views(b.buf, b)
            else:
                b.buf, b.views = self._slot_views(bi)
        if grad is None:
            b.views[k][...] = 0
        elif self.given and grad._data is self.given.pop(id(p), None):
            self.in_slot += 1  # backward wrote it into the slot, divided
        else:  # pre-divided (as PyTorch's default allreduce hook): the sum is the average
            self.xp.multiply(grad._data.reshape(-1), self.inv, out=b.views[k])
        b.pending -= 1
        if b.pending == 0:
            if self.shared is None:
                b.work = self.comm.allreduce(b.buf, ReduceOp.SUM)
            else:  # summed out of the shared slots into this step's own buffer
                b.out = self.xp.empty(b.size, dtype=b.dtype)
                b.work = self.shared.start(bi, b.out)
            self.launched += 1
            self.in_flight.append(b.work)
        for w in self.in_flight:  # let MPI progress what is in flight
            w.is_completed()
        if self.launched == len(self.buckets):
            self._finish()

    def _finish(self):
        self.stats["buckets_before_last"] = self.launched - 1
        self.stats["written_by_backward"] = self.in_slot
        t0 = time.perf_counter()
        for b in self.buckets:
            b.work.wait()
        self.stats["wait_s"] = time.perf_counter() - t0
        for b in self.buckets:
            if self.shared is not None:
                b.buf, b.out = b.out, None
            buf = b.buf
            for p, off in zip(b.params, b.offsets):
                # the averaged gradient is a view of the bucket: no copy back (the next
                # synced backward fills a new buffer)
                p._grad = _wrap(buf[off:off + p._data.size].reshape(p._data.shape))
        self._reset()

    # ------------------------------------------------------------ under chainrule.jit
    # A trace records array operations only: the bucket's result buffer is a recorded
    # ``np.empty``, and its allreduce is started, tested and waited on through
    # chainrule.jit.effects.host_effect (ops that write the bucket, so a replay makes the same
    # MPI calls at the same points: the start where the bucket fills during backward, a test
    # in each later hook, the wait after the last gradient). The start reads the bucket's
    # gradients and writes each, pre-divided, straight into its part of the buffer that is
    # summed (the shared slot, or the Iallreduce buffer): one pass, no recorded concatenate.
    # Each .grad is a recorded view of the result.
    def _traced(self, b, bi, k, grad):
        b.parts = b.parts or [None] * len(b.params)
        b.parts[k] = grad
        b.pending -= 1
        if b.pending == 0:
            grads = [None if g is None else g._data.reshape(-1) for g in b.parts]
            b.parts = None
            if not any(isinstance(g, _jit().trace_array()) for g in grads):
                _jit().graph_break("DistributedDataParallel: no parameter of a gradient "
                                   "bucket got a gradient inside chainrule.jit")
            flat = self.xp.empty(b.size, dtype=b.dtype)  # recorded: a new one each replay
            b.buf = _jit().host_effect("dist.all_reduce.start", self._jit_start(bi), flat,
                                       *grads)
            self.launched += 1
            self.jit_started.append(bi)
        for j in self.jit_started:  # as eager: each later hook lets MPI progress them
            b = self.buckets[j]
            b.buf = _jit().host_effect("dist.all_reduce.test", self._jit_test(j), b.buf)
        if self.launched == len(self.buckets):
            for bi, b in enumerate(self.buckets):
                b.buf = _jit().host_effect("dist.all_reduce.wait", self._jit_wait(bi), b.buf)
                for p, off in zip(b.params, b.offsets):
                    p._grad = _wrap(b.buf[off:off + p._data.size].reshape(p._data.shape))
            self.stats["buckets_before_last"] = len(self.buckets) - 1
            self._reset()

    def _jit_start(self, bi):
        b = self.buckets[bi]
        xp, inv = self.xp, self.inv

        def start(a, *grads):
            if not self.ddp_ref.require_backward_grad_sync:
                raise DistributedError(
                    "DistributedDataParallel: a chainrule.jit step traced with gradient "
                    "synchronisation ran inside no_sync(); jit the no_sync step as a separate "
                    "function (a trace inside no_sync runs eagerly)")
            # the shared path: pre-divided into the slot, the sum lands in a; Iallreduce: in a
            dst = a if self.shared is None else self.shared.slot(bi)
            for g, off, p in zip(grads, b.offsets, b.params):
                part = dst[off:off + p._data.size]
                if g is None:
                    part[...] = 0
                else:  # divided (a replay writes every gradient here itself)
                    xp.multiply(g, inv, out=part)
            if self.shared is None:
                self.jit_works[bi] = self.comm.allreduce(a, ReduceOp.SUM)
            else:
                self.jit_works[bi] = self.shared.start(bi, a)

        return start

    def _jit_test(self, bi):
        def test(a):
            self.jit_works[bi].is_completed()

        return test

    def _jit_wait(self, bi):
        def wait(a):
            self.jit_works.pop(bi).wait()

        return wait


@functools.cache
def _jit():
    """chainrule.jit's effects module (imported late: chainrule.jit imports nn)."""
    from ...jit import effects  # noqa: PLC0415

    return effects


def _linear_weight_into(g, x, w, b, out, dest, scale):
    """``linear``'s weight cotangent (``primitives.linalg._linear_dw``: g^T x over the
    flattened leading dims) times ``scale``, computed into ``dest`` as (g scale)^T x: with a
    power of two, the bits of the product scaled after (scaling by a power of two commutes
    with every rounding of the product unless it underflows), for the price of scaling g,
    which is smaller than the weight in the usual layers (tested against the ordinary
    backward in tests/distributed/test_grad_destination.py); None (declined) for other dtypes
    or shapes."""
    if not (g.dtype == x.dtype == dest.dtype) or dest.shape != w.shape:
        return None
    xp = get_array_module(g)
    g2 = g.reshape(-1, g.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    return xp.matmul(xp.multiply(g2, g2.dtype.type(scale)).T, x2, out=dest)


_post.INTO.setdefault("linear", {})[1] = _linear_weight_into


def _flat_views(buf, b):
    """The flat part of ``buf`` for each parameter of bucket ``b``."""
    return [buf[off:off + p._data.size] for p, off in zip(b.params, b.offsets)]


def _make_buckets(params, cap_bytes):
    """As PyTorch's: a bucket closes once it holds at least the cap (the first one 1 MB), or
    before a parameter of another dtype."""
    buckets, cur, size = [], [], 0
    cap = min(cap_bytes, _FIRST_BUCKET_BYTES)
    for p in params:
        if cur and p._data.dtype != cur[0]._data.dtype:
            buckets.append(cur)
            cur, size = [], 0
        cur.append(p)
        size += p._data.nbytes
        if size >= cap:
            buckets.append(cur)
            cur, size, cap = [], 0, cap_bytes
    if cur:
        buckets.append(cur)
    return [_Bucket(ps) for ps in buckets]


def _reachable_leaves(out):
    """ids of the leaf tensors that the autograd graph of ``out`` reaches (None: no graph)."""
    roots = []
    stack = [out]
    while stack:
        o = stack.pop()
        if isinstance(o, Tensor):
            if o._node is not None:
                roots.append(o._node)
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
    if not roots:
        return None
    seen, leaves = set(), set()
    while roots:
        n = roots.pop()
        if n in seen:
            continue
        seen.add(n)
        for e in n.edges:
            if type(e) is Node:
                roots.append(e)
            elif e is not None:
                leaves.add(id(e))
    return leaves


def _signature(module: Module) -> list:
    return ([("parameter", n, tuple(p.shape), p.dtype.name) for n, p in
             module.named_parameters()] +
            [("buffer", n, tuple(b.shape), b.dtype.name) for n, b in module.named_buffers()
             if b is not None])


def _check_same_model(comm, module: Module) -> None:
    """Every rank's model must have rank 0's parameters and buffers (names, shapes, dtypes)."""
    sigs = comm.allgather_object(_signature(module))
    ref = sigs[0]
    for r, sig in enumerate(sigs):
        if sig == ref:
            continue
        if len(sig) != len(ref):
            diff = (f"rank {r} has {sum(s[0] == 'parameter' for s in sig)} parameters and "
                    f"{sum(s[0] == 'buffer' for s in sig)} buffers, rank 0 has "
                    f"{sum(s[0] == 'parameter' for s in ref)} and "
                    f"{sum(s[0] == 'buffer' for s in ref)}")
        else:
            a, b = next((a, b) for a, b in zip(sig, ref) if a != b)
            diff = (f"rank {r} has {a[0]} {a[1]!r} of shape {a[2]} {a[3]} where rank 0 has "
                    f"{b[0]} {b[1]!r} of shape {b[2]} {b[3]}")
        raise DistributedError(f"DistributedDataParallel: the model differs across ranks: {diff}"
                               "; every rank must build the same model")


def _broadcast_tensors(comm, tensors) -> None:
    works = []
    for t in tensors:
        a = t._data
        if not a.flags.c_contiguous:
            t._data = a = get_array_module(a).ascontiguousarray(a)
        works.append(comm.broadcast(a, 0))
    for w, t in zip(works, tensors):
        w.wait()
        t._bump()


def _broadcast_state(comm, module: Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    _broadcast_tensors(comm, [*module.parameters(),
                              *(b for b in module.buffers() if b is not None)])
