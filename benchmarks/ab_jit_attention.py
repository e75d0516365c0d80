"""A/B in one process: backend "c"'s attention loop (``creduce``) skipping the tiles that
cannot change a result (``creduce.SKIP_TILES``: the causal mask's -inf tiles in the forward,
the zero weights' tiles in the backward) against running every tile, on the same jitted step
(the flag is read at each call), and PyTorch eager.

Steps take turns in rounds of 5; medians in ms per step, wall clock and process CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \\
        python ab_jit_attention.py transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step
from ab_jit_lstm import traced

from chainrule.jit import creduce


class _Flagged:
    """The jitted step with ``creduce.SKIP_TILES`` set to ``value`` for each call."""

    def __init__(self, step, value):
        self.step, self.value = step, value

    def __call__(self):
        creduce.SKIP_TILES = self.value
        try:
            return self.step()
        finally:
            creduce.SKIP_TILES = 1

    def graph(self) -> str:
        return self.step.graph()


def main(workload: str, rounds: int, threads) -> None:
    step, check, first = traced(workload)
    cpu_interleave(workload, {"A (every tile)": (_Flagged(step, 0), check, first),
                              "B (tiles skipped)": (_Flagged(step, 1), check, first),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
