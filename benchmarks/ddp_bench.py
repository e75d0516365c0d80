"""Data-parallel benchmarks: DDP scaling, allreduce throughput, overlap with backward.

    python benchmarks/ddp_bench.py                  # everything, 3 rounds
    python benchmarks/ddp_bench.py --rounds 5 --steps 30
    python benchmarks/ddp_bench.py --only scaling --bucket-cap-mb 0.1
    python benchmarks/ddp_bench.py --only scaling --jit     # the steps under chainrule.jit
    python benchmarks/ddp_bench.py --only scaling --global-batch 512 --models mlp
    python benchmarks/ddp_bench.py --only phases --global-batch 512 --models mlp [--jit]
    python benchmarks/ddp_bench.py --only sums --models mlp --steps 200

Every configuration runs in its own fresh process(es), and the configurations take turns
round by round (single, ddp, single, ddp, ...):

- scaling (``--global-batch`` to change the batch, ``--models`` to pick the workloads): one
  process with 1 BLAS thread training on the global batch, against
  ``mpiexec -n 2`` with 1 thread per rank, DistributedDataParallel, half the batch per rank;
  and, as the bounds that free communication would reach, one process on half the batch (a
  step's fixed costs, the optimiser's and Python's, do not halve with the batch) and two such
  processes at once, independent (they share the cores' caches and memory bandwidth).
  samples/s = global batch / median step time (forward, backward with the allreduce,
  optimiser step). Workloads: the MLP step of bench.py (784-512-512-10, batch 128) and LeNet-5
  (32x32 inputs, batch 64). The first bound is also given in CPU time per step
  (``time.process_time``), which a busy machine disturbs much less than wall time.
- allreduce: ``chainrule.distributed.all_reduce`` (with its argument check and timeout polling)
  against plain mpi4py ``Allreduce(IN_PLACE)`` on the same float32 buffers, interleaved rep by
  rep in one 2-rank job (``--steps`` calls per size from 4 MB, more below: 320 at 0.25 MB).
- phases: one 2-rank job per round in which the plain step (no DDP, half the batch per
  rank), DDP summing its buckets with ``Iallreduce`` and DDP summing them in shared memory
  (the default on one node) take turns step by step: median wall and CPU time per step (the
  slower rank's), DDP's CPU time over the plain step and, eager, its wait after backward.
  Then DDP's own CPU time per step by phase, per rank (medians over the steps; timers on the
  reducer's and the communicator's methods, each phase's time exclusive of the others
  nested in it): ``copy`` (the hooks: each gradient, pre-divided, into its bucket, and the
  Python around it; under the jit the recorded start's copy), ``start`` (posting a bucket,
  or starting its ``Iallreduce``), ``sum`` (the shared-memory sums and copies out), ``mpi``
  (``Test`` calls: where MPICH moves and sums an ``Iallreduce``), ``wait`` (polling for the
  other rank: its imbalance, and the load), ``grads`` (the ``.grad`` views after the wait).
- sums: the end of a DDP step on the shared-memory path (the rank's gradients of the model's
  shapes reduced over 2 ranks into a new buffer, in DDP's own window) done several ways by
  turns in one 2-rank job: the hooks' divided copy then a + b, a 2-rank reduce-scatter (two
  posts), the same dividing after the sum, and what is left when backward has written the
  gradients, divided, into the slot (DDP's path now for linear layers' weights); medians of
  wall and CPU time per sum, per rank, and whether the bits are equal.
- phases: also ``ddp_shm_copy``, the shared-memory path with every gradient copied into the
  slot by the hooks (``CHAINRULE_DDP_INTO_SLOT=0``), against ``ddp_shm`` (a world size
  that is a power of two: backward writes the linear layers' weight gradients, divided,
  straight into the slot).
- overlap: in the DDP runs, the time backward left to wait for the allreduces once the last
  gradient was ready (``comm_stats["wait_s"]``), against the time the same buckets take to
  allreduce alone after backward: overlap = 1 - wait / alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import set_threads  # noqa: E402
from run import host_info  # noqa: E402

GLOBAL_BATCH = {"mlp": 128, "lenet": 64}
# the DDP variants of --only phases: buckets summed by Iallreduce; in shared memory as DDP does
# on one node (2 ranks: backward writes the linear weights' gradients into the slot); in
# shared memory with every gradient copied into the slot by the hooks
# (CHAINRULE_DDP_INTO_SLOT=0)
DDP_VARIANTS = ("ddp_iallreduce", "ddp_shm", "ddp_shm_copy")


def _model(name: str):
    from chainrule import nn

    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def _batch(name: str, n: int, rank: int, world: int):
    import numpy as np

    import chainrule as cr

    rng = np.random.default_rng(0)
    shape = (n, 784) if name == "mlp" else (n, 1, 32, 32)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, n)
    per = n // world
    return cr.from_numpy(x[rank * per:(rank + 1) * per]), cr.from_numpy(y[rank * per:
                                                                            (rank + 1) * per])


def worker_step(name: str, steps: int, ddp: bool, bucket_cap_mb: float = 25.0,
                batch: int | None = None, jit: bool = False) -> dict:
    """One configuration: time ``steps`` training steps; rank 0 returns the figures.
    ``batch``: the global batch (default the workload's); ``jit``: the step under
    ``chainrule.jit`` (DDP's allreduces replayed as recorded effects)."""
    import numpy as np

    import chainrule as cr
    from chainrule import optim
    from chainrule.nn import functional as F

    rank, world = 0, 1
    if ddp:
        import chainrule.distributed as dist
        from chainrule.nn.parallel import DistributedDataParallel

        dist.init_process_group("mpi")
        rank, world = dist.get_rank(), dist.get_world_size()
    cr.manual_seed(0)
    model = _model(name)
    if ddp:
        model = DistributedDataParallel(model, bucket_cap_mb=bucket_cap_mb)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _batch(name, batch or GLOBAL_BATCH[name], rank, world)
    times, waits = [], []

    def train_step(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    step = cr.jit(train_step, fullgraph=True) if jit else train_step
    cpu = []
    for i in range(steps + 3):
        t0, c0 = time.perf_counter(), time.process_time()
        step(x, y)
        if i >= 3:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if ddp and not jit:  # a replay does not time its wait
                waits.append(model.comm_stats["wait_s"])
    out = {"step_s": statistics.median(times), "cpu_s": statistics.median(cpu)}
    if jit:
        out["jit_backend"] = step.backend
    if ddp:
        # the same buckets allreduced alone, after backward: what there was to hide
        red = model._reducer
        alone = []
        for _ in range(steps):
            t0 = time.perf_counter()
            if red.shared is None:
                works = [red.comm.allreduce(b.buf, dist.ReduceOp.SUM) for b in red.buckets]
            else:  # DDP's buckets summed in shared memory (all ranks on this node)
                works = [red.shared.start(i, np.empty(b.size, b.dtype))
                         for i, b in enumerate(red.buckets)]
            for w in works:
                w.wait()
            alone.append(time.perf_counter() - t0)
        out.update(wait_s=statistics.median(waits) if waits else float("nan"),
                   alone_s=statistics.median(alone), buckets=len(red.buckets),
                   sums="Iallreduce" if red.shared is None else "shared-memory sums")
        dist.destroy_process_group()
    return out if rank == 0 else {}


def worker_phases(name: str, steps: int, batch: int | None, jit: bool) -> dict:
    """In one 2-rank job, steps taken by turns: the plain step on this rank's half of the
    batch (no DDP), the DDP step with the buckets summed by ``Iallreduce``
    (``CHAINRULE_SHM_REDUCE=0``) and the DDP step with them summed in shared memory (the
    default on one node). Per step, wall and CPU time, and for eager DDP the wait after
    backward; medians over the steps, the slower rank's."""
    import numpy as np

    import chainrule as cr
    import chainrule.distributed as dist
    from chainrule import optim
    from chainrule.nn import functional as F
    from chainrule.nn.parallel import DistributedDataParallel

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = _batch(name, batch or GLOBAL_BATCH[name], rank, world)
    variants, raw = {}, {}
    for v in ("plain", *DDP_VARIANTS):
        cr.manual_seed(0)
        model = _model(name)
        if v != "plain":
            os.environ["CHAINRULE_SHM_REDUCE"] = "0" if v == "ddp_iallreduce" else "1"
            os.environ["CHAINRULE_DDP_INTO_SLOT"] = "0" if v == "ddp_shm_copy" else "1"
            model = DistributedDataParallel(model)
            os.environ.pop("CHAINRULE_SHM_REDUCE")
            os.environ.pop("CHAINRULE_DDP_INTO_SLOT")
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def train_step(x, y, model=model, opt=opt):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

        variants[v] = (model, cr_jit(train_step, jit), {"wall": [], "cpu": [], "wait": []})
        raw[v] = train_step
    for i in range(steps + 3):
        for v, (model, step, rec) in variants.items():
            dist.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            step(x, y)
            if i >= 3:
                rec["wall"].append(time.perf_counter() - t0)
                rec["cpu"].append(time.process_time() - c0)
                if v != "plain" and not jit:
                    rec["wait"].append(model.comm_stats["wait_s"])
    # each DDP variant's bucket sums alone, both ranks ready (barrier): the communication
    # that the step pays, hidden or not (as DDP does it: Iallreduce on the buckets, or the
    # shared-memory sum and the copy out into a new buffer)
    for _ in range(steps):
        for v in DDP_VARIANTS:
            model, _, rec = variants[v]
            red = model._reducer
            dist.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            bufs = [np.empty(b.size, b.dtype) for b in red.buckets]
            if red.shared is None:
                works = [red.comm.allreduce(a, dist.ReduceOp.SUM) for a in bufs]
            else:
                works = [red.shared.start(i, a) for i, a in enumerate(bufs)]
            for w in works:
                w.wait()
            rec.setdefault("alone_wall", []).append(time.perf_counter() - t0)
            rec.setdefault("alone_cpu", []).append(time.process_time() - c0)
    mine = {v: {k: statistics.median(xs) if xs else float("nan") for k, xs in rec.items()}
            for v, (_, _, rec) in variants.items()}
    breakdown = _phase_breakdown(raw, x, y, steps, jit)
    every = [None] * world
    dist.all_gather_object(every, (mine, breakdown))
    dist.destroy_process_group()
    if rank:
        return {}
    res = {v: {k: max(e[0][v][k] for e in every) for k in mine[v]} for v in mine}
    res["phases"] = [e[1] for e in every]
    return res


def _phase_breakdown(raw, x, y, steps: int, jit: bool) -> dict:
    """DDP's CPU time per step by phase, on this rank, for each DDP variant: the reducer's and
    the communicator's methods wrapped with timers (each phase exclusive of those nested in
    it), the variants taking turns step by step; medians over ``steps`` steps."""
    import chainrule.distributed as dist
    from chainrule.distributed import mpi
    from chainrule.nn.parallel import distributed as ddp

    acc: dict = {}
    stack: list = []
    clock = time.process_time

    def timed(phase, f):
        def g(*a, **k):
            stack.append(0.0)
            t0 = clock()
            try:
                return f(*a, **k)
            finally:
                dt = clock() - t0
                acc[phase] = acc.get(phase, 0.0) + dt - stack.pop()
                if stack:
                    stack[-1] += dt
        return g

    def timed_start(f):  # the jit's recorded start: a closure made at trace time
        return lambda self, bi: timed("copy", f(self, bi))

    patches = [(ddp._Reducer, "_ready", timed("copy", ddp._Reducer._ready)),
               (ddp._Reducer, "_finish", timed("grads", ddp._Reducer._finish)),
               (ddp._Reducer, "_jit_start", timed_start(ddp._Reducer._jit_start)),
               (mpi._ShmBuckets, "start", timed("start", mpi._ShmBuckets.start)),
               (mpi._ShmBuckets, "_progress", timed("sum", mpi._ShmBuckets._progress)),
               (mpi.MPICommunicator, "allreduce",
                timed("start", mpi.MPICommunicator.allreduce)),
               (mpi.MPICommunicator, "test", timed("mpi", mpi.MPICommunicator.test)),
               (mpi.MPICommunicator, "wait", timed("wait", mpi.MPICommunicator.wait))]
    saved = [(cls, name, cls.__dict__[name]) for cls, name, _ in patches]
    for cls, name, f in patches:
        setattr(cls, name, f)
    out: dict = {}
    try:
        # the same models and steps (a new trace under the timed methods)
        fresh = {v: cr_jit(raw[v], jit) for v in DDP_VARIANTS}
        for i in range(steps + 3):
            for v, step in fresh.items():
                dist.barrier()
                acc.clear()
                step(x, y)
                if i >= 3:
                    for k, t in acc.items():
                        out.setdefault(v, {}).setdefault(k, []).append(t)
    finally:
        for cls, name, f in saved:
            setattr(cls, name, f)
    return {v: {k: statistics.median(ts) for k, ts in d.items()} for v, d in out.items()}


def cr_jit(step, jit: bool):
    import chainrule as cr

    return cr.jit(step, fullgraph=True) if jit else step


def worker_sums(name: str, steps: int) -> dict:
    """In one 2-rank job, the end of a DDP step on the shared-memory path, three ways by
    turns (medians over ``steps`` rounds, per rank): the rank's gradients (the model's shapes,
    rewritten before each round, as backward leaves them) reduced over the 2 ranks into a new
    buffer in DDP's own window (``MPICommunicator.shared_buckets``, one bucket):

    - ``prediv``: DDP's hooks' path: each gradient, pre-divided, into this rank's slot;
      post; both slots summed into the result (``_ShmBuckets.start`` + ``wait``);
    - ``rs``: a reduce-scatter: only the half the peer sums goes into the slot (pre-divided),
      this rank's own half straight into the result; after the peer's post this rank adds the
      peer's half to its own, copies that sum into its slot and posts again; after the peer's
      second post it copies the peer's summed half out (the same bits as ``prediv``);
    - ``rs_half``: the same with the division after the sum, ``(a + b) * 0.5`` (the raw half
      into the slot, the sum in the slot, halved on the way out: equal to ``a/2 + b/2`` except
      for subnormals and overflow);
    - ``in_slot``: what is left when backward has written the gradients, divided, straight
      into the slot (they are put there untimed): post, sum both slots (DDP's path now for
      linear layers' weights, when the world size is a power of two).
    """
    import numpy as np

    import chainrule.distributed as dist

    dist.init_process_group("mpi")
    rank = dist.get_rank()
    if dist.get_world_size() != 2:
        raise SystemExit("--only sums runs on 2 ranks")
    peer = 1 - rank
    shapes = [p.shape for p in _model(name).parameters()]
    sizes = [int(np.prod(sh)) for sh in shapes]
    n = sum(sizes)
    offs = [sum(sizes[:k]) for k in range(len(sizes))]
    from chainrule.distributed.group import current

    comm = current("sums", None)
    sh = comm.shared_buckets([n], [np.float32])
    if sh is None:
        raise SystemExit("--only sums needs DDP's shared-memory buckets (every rank on one node)")
    ints, win = sh.ints, sh.win
    posted, summed = sh.posted[0], sh.summed[0]
    half = n // 2
    lo, hi = (0, half) if rank == 0 else (half, n)
    plo, phi = (half, n) if rank == 0 else (0, half)
    rng = np.random.default_rng(rank)
    base = [rng.standard_normal(shp).astype(np.float32) for shp in shapes]
    grads = [np.empty(shp, np.float32) for shp in shapes]

    def pieces(a, b):  # (gradient, its flat range, bucket offset) inside [a, b) of the bucket
        out = []
        for g, o, z in zip(grads, offs, sizes):
            x, y = max(a, o), min(b, o + z)
            if x < y:
                out.append((g.reshape(-1), x - o, y - o, x))
        return out

    mine, theirs = pieces(lo, hi), pieces(plo, phi)

    def post(flags, s):
        win.Sync()  # the bytes before the number
        ints[flags[rank]] = s

    def await_(flags, s):  # polled as DDP's waits are (yields, deadline)
        def arrived(_=None):
            win.Sync()
            return ints[flags[peer]] >= s

        if not arrived():
            comm.wait((), "sums", test=arrived)
        win.Sync()

    def prediv():
        slot = sh.slot(0)
        for g, o, z in zip(grads, offs, sizes):
            np.multiply(g.reshape(-1), 0.5, out=slot[o:o + z])
        out = np.empty(n, np.float32)
        sh.start(0, out).wait()
        return out

    def turn():
        s = sh.steps[0] = sh.steps[0] + 1
        t = sh.slots[0][s & 1]
        return s, t[rank], t[peer]

    def rs():
        s, slot, other = turn()
        out = np.empty(n, np.float32)
        for g, a, b, o in theirs:
            np.multiply(g[a:b], 0.5, out=slot[o:o + b - a])
        post(posted, s)
        for g, a, b, o in mine:
            np.multiply(g[a:b], 0.5, out=out[o:o + b - a])
        await_(posted, s)
        np.add(out[lo:hi], other[lo:hi], out=out[lo:hi])
        slot[lo:hi] = out[lo:hi]
        post(summed, s)
        await_(summed, s)
        out[plo:phi] = other[plo:phi]
        return out

    def rs_half():
        s, slot, other = turn()
        out = np.empty(n, np.float32)
        for g, a, b, o in theirs:
            slot[o:o + b - a] = g[a:b]
        post(posted, s)
        await_(posted, s)
        for g, a, b, o in mine:
            np.add(g[a:b], other[o:o + b - a], out=slot[o:o + b - a])
        post(summed, s)
        np.multiply(slot[lo:hi], 0.5, out=out[lo:hi])
        await_(summed, s)
        np.multiply(other[plo:phi], 0.5, out=out[plo:phi])
        return out

    def in_slot():  # as if backward had written the divided gradients there (untimed)
        out = np.empty(n, np.float32)
        sh.start(0, out).wait()
        return out

    variants = {"prediv": prediv, "rs": rs, "rs_half": rs_half, "in_slot": in_slot}
    rec = {v: ([], []) for v in variants}
    same = {v: True for v in variants}
    for i in range(steps + 3):
        for v, f in variants.items():
            for g, b in zip(grads, base):
                np.multiply(b, 1.0 + 1e-3 * i, out=g)
            if v == "in_slot":
                slot = sh.slot(0)
                for g, o, z in zip(grads, offs, sizes):
                    np.multiply(g.reshape(-1), 0.5, out=slot[o:o + z])
            dist.barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            out = f()
            if i >= 3:
                rec[v][0].append(time.perf_counter() - t0)
                rec[v][1].append(time.process_time() - c0)
            if v == "prediv":
                ref = out
            else:
                same[v] = same[v] and bool(np.array_equal(out, ref))
    mine_ = {v: {"wall": statistics.median(w), "cpu": statistics.median(c), "same": same[v]}
             for v, (w, c) in rec.items()}
    every = [None] * 2
    dist.all_gather_object(every, mine_)
    dist.destroy_process_group()
    return {"ranks": every, "bytes": 4 * n} if rank == 0 else {}


def worker_allreduce(sizes_mb: list, reps: int) -> dict:
    import numpy as np
    from mpi4py import MPI

    import chainrule as cr
    import chainrule.distributed as dist

    dist.init_process_group("mpi")
    comm = MPI.COMM_WORLD
    res = {}
    for mb in sizes_mb:
        n = int(mb * (1 << 20)) // 4
        a = np.ones(n, np.float32)
        t = cr.from_numpy(np.ones(n, np.float32))
        ours, plain = [], []
        for _ in range(2):  # warm-up
            comm.Allreduce(MPI.IN_PLACE, a)
            dist.all_reduce(t)
        # small messages vary most from call to call: more calls for them (320 at 0.25 MB
        # with the default 20 steps), so that the medians compare the typical call
        for _ in range(max(reps, min(400, int(reps * 4 / mb)))):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, a)
            plain.append(time.perf_counter() - t0)
            comm.Barrier()
            t0 = time.perf_counter()
            dist.all_reduce(t)
            ours.append(time.perf_counter() - t0)
        res[mb] = {"chainrule_s": statistics.median(ours), "mpi4py_s": statistics.median(plain)}
    rank = dist.get_rank()
    dist.destroy_process_group()
    return res if rank == 0 else {}


def _launch(args: list, nproc: int, together: int = 1) -> dict:
    """Run a worker (under mpiexec when ``nproc`` > 1); ``together`` > 1 starts that many
    independent copies at once and returns the slowest one's figures."""
    from chainrule.distributed.launch import mpiexec_command

    cmd = [sys.executable, os.path.abspath(__file__), *args]
    if nproc > 1:
        cmd = mpiexec_command(nproc, cmd)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(together)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{out}\n{err}")
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        results.append(json.loads(lines[-1]))
    return max(results, key=lambda r: r.get("step_s", 0.0))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0,
                    help="DistributedDataParallel's bucket size (default 25)")
    ap.add_argument("--only", choices=["scaling", "allreduce", "phases", "sums"], default=None)
    ap.add_argument("--worker", choices=["single", "ddp", "allreduce", "phases", "sums"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--model", choices=sorted(GLOBAL_BATCH), default="mlp",
                    help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jit", action="store_true",
                    help="scaling with the step under chainrule.jit (backend 'auto': 'c' "
                         "where cffi and a C compiler are, else 'numpy'), for every "
                         "configuration: 1 rank, 2 ranks and the two bounds")
    ap.add_argument("--global-batch", type=int, default=None,
                    help="the global batch of the scaling runs, for both models (default: "
                         "MLP 128, LeNet 64)")
    ap.add_argument("--models", default=",".join(GLOBAL_BATCH),
                    help="the scaling workloads, comma-separated (default: mlp,lenet)")
    args = ap.parse_args(argv)
    if args.worker:
        set_threads(1)
        if args.worker == "phases":
            out = worker_phases(args.model, args.steps, args.batch, args.jit)
        elif args.worker == "sums":
            out = worker_sums(args.model, args.steps)
        elif args.worker == "allreduce":
            out = worker_allreduce([0.25, 1, 4, 16, 64], reps=max(5, args.steps))
        else:
            out = worker_step(args.model, args.steps, args.worker == "ddp", args.bucket_cap_mb,
                              args.batch, args.jit)
        if out:
            print(json.dumps(out))
        return

    import numpy

    import chainrule

    h = host_info()
    print(f"host: {h['cpu']}, {h['cores']} cores; python {sys.version.split()[0]}, numpy "
          f"{numpy.__version__}, chainrule {chainrule.__version__} (commit {h.get('commit', '?')})"
          f"; 1 BLAS thread per process; load average {os.getloadavg()[0]:.2f}")
    steps = ["--steps", str(args.steps), *(["--jit"] if args.jit else [])]
    ddp_args = [*steps, "--bucket-cap-mb", str(args.bucket_cap_mb)]
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in GLOBAL_BATCH:
            ap.error(f"--models: unknown workload {m!r} (use {', '.join(GLOBAL_BATCH)})")
    if args.global_batch is not None and (args.global_batch < 2 or args.global_batch % 2):
        ap.error(f"--global-batch must be an even number >= 2, got {args.global_batch}")
    if args.only == "sums":
        for name in models:
            for _ in range(args.rounds):
                res = _launch(["--worker", "sums", "--model", name, *steps], 2)
                print(f"{name} gradients ({res['bytes'] / 1e6:.2f} MB) summed over 2 ranks in "
                      "shared memory, ms per sum (rank 0 / rank 1), wall / CPU: " + "; ".join(
                          f"{v} " + " / ".join(f"{1e3 * e[v]['wall']:.3f}" for e in res["ranks"])
                          + ", " + " / ".join(f"{1e3 * e[v]['cpu']:.3f}" for e in res["ranks"])
                          + ("" if v == "prediv" else " (the same bits)" if all(
                              e[v]["same"] for e in res["ranks"]) else " (OTHER BITS)")
                          for v in res["ranks"][0]))
        return
    if args.only == "phases":
        for name in models:
            b = args.global_batch or GLOBAL_BATCH[name]
            for _ in range(args.rounds):
                res = _launch(["--worker", "phases", "--model", name, "--batch", str(b),
                               *steps], 2)
                plain = res["plain"]
                line = ", ".join(
                    f"{v} {1e3 * r['wall']:.2f} ms wall / {1e3 * r['cpu']:.2f} ms CPU"
                    + ("" if v == "plain" else
                       f" (+{1e3 * (r['cpu'] - plain['cpu']):.2f} CPU"
                       + ("" if args.jit else f", wait {1e3 * r['wait']:.3f}")
                       + f"; sums alone {1e3 * r['alone_wall']:.3f} ms wall / "
                       f"{1e3 * r['alone_cpu']:.3f} ms CPU)")
                    for v, r in res.items() if v != "phases")
                print(f"{name} batch {b // 2} per rank{' (jit)' if args.jit else ''}: {line}")
                for v in DDP_VARIANTS:
                    print(f"  {v} CPU per step by phase, ms (rank 0 / rank 1): " + ", ".join(
                        f"{k} " + " / ".join(f"{1e3 * ph[v].get(k, 0.0):.3f}"
                                             for ph in res["phases"])
                        for k in ("copy", "start", "sum", "mpi", "wait", "grads")))
        return
    for name in models if args.only != "allreduce" else ():
        b = args.global_batch or GLOBAL_BATCH[name]
        single, half, pair, ddp = [], [], [], []
        half_args = ["--worker", "single", "--model", name, "--batch", str(b // 2), *steps]
        for _ in range(args.rounds):
            single.append(_launch(["--worker", "single", "--model", name, "--batch", str(b),
                                   *steps], 1))
            half.append(_launch(half_args, 1))
            pair.append(_launch(half_args, 1, together=2))
            ddp.append(_launch(["--worker", "ddp", "--model", name, "--batch", str(b),
                                *ddp_args], 2))
        s1 = statistics.median(r["step_s"] for r in single)
        sh = statistics.median(r["step_s"] for r in half)
        sp = statistics.median(r["step_s"] for r in pair)
        s2 = statistics.median(r["step_s"] for r in ddp)
        wait = statistics.median(r["wait_s"] for r in ddp)
        alone = statistics.median(r["alone_s"] for r in ddp)
        overlap = ("not timed in a jit replay" if args.jit else
                   f"left to wait after backward {1e3 * wait:.3f} ms: overlap "
                   f"{100 * max(0.0, 1 - wait / alone):.0f}%")
        jit = f" (jit, backend {ddp[0]['jit_backend']})" if args.jit else ""
        print(f"{name:6s} batch {b}{jit}: 1 rank {b / s1:8.0f} "
              f"samples/s ({1e3 * s1:.2f} ms/step), 2 ranks {b / s2:8.0f} samples/s "
              f"({1e3 * s2:.2f} ms/step): {s1 / s2:.2f}x; {ddp[0]['buckets']} bucket(s) "
              f"({ddp[0]['sums']}), alone {1e3 * alone:.3f} ms, {overlap}")
        # what 2 ranks could reach with free communication: one process's step on half the
        # batch alone, and two such processes at once (sharing the machine, not talking)
        print(f"{'':6s} bounds: 1 process on batch {b // 2} {1e3 * sh:.2f} ms/step ({s1 / sh:.2f}x"
              f"), 2 independent processes on batch {b // 2} at once {1e3 * sp:.2f} ms/step "
              f"({s1 / sp:.2f}x); DDP's cost over the latter {1e3 * (s2 - sp):.2f} ms/step")
        # the first bound in CPU time, which a busy machine disturbs much less than wall time
        c1 = statistics.median(r["cpu_s"] for r in single)
        ch = statistics.median(r["cpu_s"] for r in half)
        print(f"{'':6s} CPU time per step, 1 process: batch {b} {1e3 * c1:.2f} ms, batch {b // 2} "
              f"{1e3 * ch:.2f} ms: {c1 / ch:.2f}x")
    if args.only == "scaling":
        return
    rounds = [_launch(["--worker", "allreduce", *steps], 2) for _ in range(args.rounds)]
    for mb in rounds[0]:
        ours = statistics.median(r[mb]["chainrule_s"] for r in rounds)
        plain = statistics.median(r[mb]["mpi4py_s"] for r in rounds)
        nbytes = float(mb) * (1 << 20)
        print(f"allreduce {float(mb):6.2f} MB float32: chainrule {nbytes / ours / 1e9:6.2f} GB/s "
              f"({1e3 * ours:.3f} ms), mpi4py {nbytes / plain / 1e9:6.2f} GB/s "
              f"({1e3 * plain:.3f} ms): {100 * plain / ours:.0f}%")


if __name__ == "__main__":
    main()
