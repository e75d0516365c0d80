"""LeNet-5 kernels, chainrule vs PyTorch eager, side by side in one process.

In-process on purpose, for A/B work on chainrule's own convolution and pooling kernels: the
figures here are biased by the two libraries sharing one process (PyTorch's OpenMP pool and
NumPy's OpenBLAS pool compete for the cores; see BENCHMARKS.md). Compare libraries with
``python benchmarks/run.py --workloads lenet`` (one process per library) instead.

Times forward + backward of each convolution / pooling call of the LeNet-5 step in the
issue (batch 64 of 1x28x28: conv 1->6 5x5 pad 2, max-pool 2, conv 6->16 5x5, max-pool 2),
and the whole step (the ``lenet`` workload of ``workloads.py``), float32. Libraries alternate
in blocks of calls, so drift on a shared machine hits both alike; the table holds medians and
minima (microseconds) and the ratios chainrule / torch.

    python benchmarks/lenet_kernels.py              # 2 threads (the default here)
    python benchmarks/lenet_kernels.py --threads 1  # one BLAS / torch thread

``--ab-c`` instead times the whole step jitted on backend "c" (no torch) in three variants
taking turns in one process: only the forward convolution in C (``jit/cconv.py`` as it was
before its backward loops), the backward convolutions in C as well but OpenBLAS left as it is
set while the loops spread images over threads, and everything (OpenBLAS held at one thread
inside the loops); medians in ms per step, with the load average:

    python benchmarks/lenet_kernels.py --ab-c --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import interleaved, set_threads


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    f = np.float32

    def r(*s):
        return (rng.standard_normal(s) * 0.1).astype(f)

    return dict(
        x1=r(64, 1, 28, 28), w1=r(6, 1, 5, 5), b1=r(6), g1=r(64, 6, 28, 28),
        xp1=r(64, 6, 28, 28), gp1=r(64, 6, 14, 14),
        x2=r(64, 6, 14, 14), w2=r(16, 6, 5, 5), b2=r(16), g2=r(64, 16, 10, 10),
        xp2=r(64, 16, 10, 10), gp2=r(64, 16, 5, 5),
    )


def _kernels(lib, d):
    """name -> zero-argument callable doing forward + backward with library ``lib``."""
    import libs
    import workloads

    if lib == "torch":
        import torch
        import torch.nn.functional as F

        K = F  # where the conv / pool kernels live

        def T(a, rg=False):
            return torch.from_numpy(a.copy()).requires_grad_(rg)
    else:
        import chainrule
        from chainrule.ops import conv as C

        K = C

        def T(a, rg=False):
            return chainrule.tensor(a.copy(), requires_grad=rg)

    x1, w1, b1, g1 = T(d["x1"]), T(d["w1"], True), T(d["b1"], True), T(d["g1"])
    xp1, gp1 = T(d["xp1"], True), T(d["gp1"])
    x2, w2, b2, g2 = T(d["x2"], True), T(d["w2"], True), T(d["b2"], True), T(d["g2"])
    xp2, gp2 = T(d["xp2"], True), T(d["gp2"])
    step = workloads.build("lenet", libs.load(lib))[0]["main"]

    def clear(*ts):
        for t in ts:
            t.grad = None

    def conv1():
        K.conv2d(x1, w1, b1, padding=2).backward(g1)
        clear(w1, b1)

    def pool1():
        K.max_pool2d(xp1, 2).backward(gp1)
        clear(xp1)

    def conv2():
        K.conv2d(x2, w2, b2).backward(g2)
        clear(x2, w2, b2)

    def pool2():
        K.max_pool2d(xp2, 2).backward(gp2)
        clear(xp2)

    return {
        "conv1 64x1x28x28*6x1x5x5 pad 2, fwd+bwd": conv1,
        "max_pool2d 64x6x28x28 k2, fwd+bwd": pool1,
        "conv2 64x6x14x14*16x6x5x5, fwd+bwd": conv2,
        "max_pool2d 64x16x10x10 k2, fwd+bwd": pool2,
        "LeNet-5 SGD step, batch 64": step,
    }


def ab_c(rounds: int) -> None:
    """The ``--ab-c`` comparison (see the module's docstring)."""
    import libs
    import numpy as np
    import workloads

    from chainrule.jit import cconv

    def build(prims, blas):
        saved = cconv.PRIMS, cconv.blas_threads
        cconv.PRIMS = prims
        if not blas:
            cconv.blas_threads = lambda: None
        try:
            steps, check = workloads.build("lenet", libs.load("chainrule-jit-c", None))
            step = steps["main"]
            step()  # the jit's eager warm-up call
            step()  # traced and compiled
        finally:
            cconv.PRIMS, cconv.blas_threads = saved
        return step, check

    variants = {"forward conv only in C (before)": build(("conv",), False),
                "+ backward convs in C, BLAS threads as set": build(cconv.PRIMS, False),
                "+ backward convs in C, BLAS held at 1 inside": build(cconv.PRIMS, True)}
    current = [None]
    setters = [lambda s=s: current.__setitem__(0, s) for s, _ in variants.values()]
    load = os.getloadavg()
    med = interleaved(lambda: current[0](), setters, rounds=rounds)
    print(f"lenet on backend c, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}"
          f", OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, "
          f"numpy {np.__version__}, load {load[0]:.2f} -> {os.getloadavg()[0]:.2f}")
    for (k, (step, check)), m in zip(variants.items(), med):
        print(f"  {k:46s} {m * 1e3:6.2f} ms per step, loss {check(step())}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=200, help="timed calls per kernel and library")
    ap.add_argument("--block", type=int, default=20, help="consecutive calls per library")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the thread's CPU clock instead of the wall clock (with "
                         "--threads 1: robust to other processes on a shared machine)")
    ap.add_argument("--ab-c", action="store_true",
                    help="A/B of backend c's convolution loops on the jitted step (no torch)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    # run from a checkout without installing: the package lives in ../src
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    if args.ab_c:
        ab_c(max(1, args.rounds // 5))
        return
    import numpy as np
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.cpu_time and args.threads != 1:
        ap.error("--cpu-time needs --threads 1 (other threads' work would not be counted)")
    clock = time.thread_time if args.cpu_time else time.perf_counter
    d = _data()
    libs = {"chainrule": _kernels("chainrule", d), "torch": _kernels("torch", d)}
    names = list(libs["torch"])
    times = {(lib, n): [] for lib in libs for n in names}
    for n in names:
        for lib in libs:
            for _ in range(5):  # warm-up
                libs[lib][n]()
    # blocks of calls per library: interleaving single calls makes torch's OpenMP workers
    # spin-wait while NumPy runs, which slows both down by up to 10x on 2 cores
    for _ in range(max(1, args.rounds // args.block)):
        for n in names:
            for lib in libs:
                fn = libs[lib][n]
                fn()  # re-warm after the other library ran
                for _ in range(args.block):
                    t0 = clock()
                    fn()
                    times[(lib, n)].append(clock() - t0)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}, rounds {args.rounds}, "
          f"{'thread CPU time' if args.cpu_time else 'wall time'}")
    print("medians (and minima) in microseconds; ratio = chainrule / torch")
    print(f"{'kernel':46s} {'chainrule':>15s} {'torch':>15s} {'ratio':>6s} {'(min)':>6s}")
    for n in names:
        a, b = times[("chainrule", n)], times[("torch", n)]
        am, bm = statistics.median(a) * 1e6, statistics.median(b) * 1e6
        a0, b0 = min(a) * 1e6, min(b) * 1e6
        print(f"{n:46s} {am:7.0f} ({a0:5.0f}) {bm:7.0f} ({b0:5.0f}) {am / bm:6.2f} "
              f"{a0 / b0:6.2f}")


if __name__ == "__main__":
    main()
