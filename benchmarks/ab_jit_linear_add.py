"""A/B in one process: backend "c" with residual adds folded into the product before them
(``cgemm.fold_residual_adds``: ``r + linear(x, w, b)`` as one ``kernel.linear_add``, the
product added to ``r + b`` by the BLAS call with ``beta = 1``), B, against without that pass
(A), and PyTorch eager (the same workload's step). Steps take turns in rounds of 5; medians
in ms per step, wall clock and process CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_linear_add.py transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step, traced_patched

from chainrule.jit import cgemm


def build(workload: str, fold: bool):
    """The workload's jitted step on backend c, with or without the folded residual adds."""
    return traced_patched(workload, {} if fold else {(cgemm, "fold_residual_adds"): lambda g: g})


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (separate adds)": build(workload, False),
                              "B (adds folded into the products)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
