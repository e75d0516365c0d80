"""Thread settings of a compiled step (``chainrule.jit``, backend "c"), in one process.

The fused C kernels run on OpenMP's pool (libgomp) and the matrix products on OpenBLAS's; on
few cores the two can spin against each other. This script runs one workload's jitted step
under every combination of kernel threads (OpenMP) and BLAS threads given, taking turns every
few steps (``common.interleaved``), and prints the median
per variant; ``--pool`` and ``--products`` switch backend c's pooling loops
(``jit/cpool.py``) and its split products (``jit/cblas.py``) on and off. Run it with
``CHAINRULE_JIT_BLAS=own`` so that cblas's trial leaves the BLAS setting to the script.
Set ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` in the environment to compare wait
policies (libgomp reads them once, at load).

    python benchmarks/ab_jit_threads.py mlp --omp 1 2 --blas 1 2
    python benchmarks/ab_jit_threads.py lenet --blas 1 --pool c numpy
    python benchmarks/ab_jit_threads.py lstm --blas 1 2 --products split numpy
    OMP_WAIT_POLICY=passive python benchmarks/ab_jit_threads.py transformer
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=("tiny", "mlp", "lenet", "transformer", "lstm"))
    ap.add_argument("--omp", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--blas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pool", nargs="+", default=["c"], choices=("c", "numpy"),
                    help="max pooling and its backward as C loops (jit/cpool.py) or the impls")
    ap.add_argument("--products", nargs="+", default=["split"], choices=("split", "numpy"),
                    help="big matmuls split over OpenMP's threads while OpenBLAS is on one "
                         "thread (jit/cblas.py), or NumPy's matmul")
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    # normalised: the jit tells library frames from user frames by their file path
    sys.path.insert(0, os.path.normpath(os.path.join(here, "..", "src")))
    import libs
    import threadpoolctl
    import workloads
    from common import interleaved

    from chainrule.jit import cblas, cpool

    step = workloads.build(args.workload, libs.load("chainrule-jit-c"))[0]["main"]
    step()
    step()  # compiled: the kernels' module (and libgomp) is loaded now
    ctl = threadpoolctl.ThreadpoolController()
    blas = [c for c in ctl.lib_controllers if c.user_api == "blas"]
    omp = [c for c in ctl.lib_controllers if c.user_api == "openmp"]
    if not omp:
        raise SystemExit("no OpenMP runtime loaded: did the step compile any kernel?")
    variants = list(itertools.product(args.omp, args.blas, args.pool, args.products))
    split_macs = cblas.SPLIT_MACS

    def setter(o, b, pool, products):
        def s():
            cpool.LOOPS = pool == "c"
            cblas.SPLIT_MACS = split_macs if products == "split" else 1 << 62
            for c in omp:
                c.set_num_threads(o)
            for c in blas:
                c.set_num_threads(b)
        return s

    meds = interleaved(step, [setter(*v) for v in variants], rounds=args.rounds, warmup=2)
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"{args.workload}, OMP_WAIT_POLICY={policy}, load {os.getloadavg()[0]:.1f}:")
    for (o, b, pool, products), m in zip(variants, meds):
        print(f"  kernels {o} thread(s), BLAS {b}, pooling {pool:5s}, products {products:5s}: "
              f"{m * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
