"""A/B of chainrule's thread settings on a whole training step, in one process.

In-process on purpose: both variants are chainrule's own, so they can share a process (and
take turns every few steps). To compare libraries use ``benchmarks/run.py`` (one process per
library).

Variant A and variant B alternate every few steps (so drift on a shared machine hits both
alike); the medians and their ratio are printed. The toggles:

* ``pool``: chainrule's kernel thread pool (``backend/threads.py``) as configured (A) against
  one thread (B);
* ``blas``: OpenBLAS on 2 threads (A) against 1 (B); needs ``threadpoolctl``;
* ``fast``: the fast-path kernels on (A) against the general code alone (B,
  ``chainrule.primitives.set_fast_paths(False)``): what the kernels buy on a whole step.

    python benchmarks/ab_threads.py pool transformer
    python benchmarks/ab_threads.py blas lenet
    python benchmarks/ab_threads.py fast transformer
"""

from __future__ import annotations

import argparse
import os
import sys


def ab(step, set_a, set_b, rounds: int = 40, reps: int = 5) -> tuple:
    """Median seconds per step of variant A and variant B, interleaved."""
    from common import interleaved

    return tuple(interleaved(step, [set_a, set_b], rounds=rounds, reps=reps))


def _step(workload: str):
    import libs
    import workloads

    return workloads.build(workload, libs.load("chainrule"))[0]["main"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("toggle", choices=("pool", "blas", "fast"))
    ap.add_argument("workload", choices=("transformer", "lenet", "lstm", "mlp"))
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import numpy  # noqa: F401 - loads OpenBLAS for threadpoolctl

    from chainrule.backend import threads
    from chainrule.primitives import set_fast_paths

    if args.toggle == "fast":
        def set_a():
            set_fast_paths(True)

        def set_b():
            set_fast_paths(False)
    elif args.toggle == "pool":
        configured = threads.num_threads

        def set_a():
            threads.num_threads = configured

        def set_b():
            threads.num_threads = lambda: 1
    else:
        try:
            import threadpoolctl
        except ImportError:
            raise SystemExit("the blas toggle needs threadpoolctl "
                             "(pip install threadpoolctl)") from None
        blas = next(c for c in threadpoolctl.ThreadpoolController().lib_controllers
                    if c.internal_api == "openblas")

        def set_a():
            blas.set_num_threads(2)

        def set_b():
            blas.set_num_threads(1)

    a, b = ab(_step(args.workload), set_a, set_b, rounds=args.rounds)
    print(f"{args.workload}, {args.toggle}: A {a * 1e3:.2f} ms  B {b * 1e3:.2f} ms  "
          f"B/A {b / a:.3f}")


if __name__ == "__main__":
    main()
