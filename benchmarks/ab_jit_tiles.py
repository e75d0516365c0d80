"""A/B in one process: backend "c" with its fused kernels that call a math function among a
chain of arithmetic rendered in tiles (``render_c.SPLIT_STMTS``: one loop per run of
statements between the calls and one per call, over tiles of ``render_c.TILE`` elements), B,
against every kernel as one loop (A), and PyTorch eager (the same workload's step). Steps
take turns in rounds of 5; medians in ms per step, wall clock and process CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_tiles.py transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step
from ab_jit_lstm import traced

from chainrule.jit import render_c


def build(workload: str, tiles: bool):
    """The workload's jitted step on backend c, with or without the tiled kernels."""
    split = render_c.SPLIT_STMTS
    if not tiles:
        render_c.SPLIT_STMTS = 1 << 30
    try:
        return traced(workload)
    finally:
        render_c.SPLIT_STMTS = split


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (one loop per kernel)": build(workload, False),
                              "B (tiled kernels)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
