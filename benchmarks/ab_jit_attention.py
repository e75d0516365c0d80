"""A/B in one process: backend "c"'s attention loop (``creduce``) skipping the tiles that
cannot change a result (B: the causal mask's -inf tiles in the forward, the zero weights'
tiles in the backward) against running every tile (A: the same C source with the loop's
``skip`` argument ignored), and PyTorch eager.

Steps take turns in rounds of 5; medians in ms per step, wall clock and process CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \\
        python ab_jit_attention.py transformer 25 1

Per op: ``python ab_jit_profile.py ab_jit_attention transformer 20``.
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step, traced_patched

from chainrule.jit import creduce

_SKIP = "double scale, int par, int skip)\n{\n"
_NO_SKIP = "double scale, int par, int skip_)\n{\n    int skip = 0 * skip_;\n"


def _every_tile(source):
    """creduce's (declarations, source) with the attention loop running every tile."""
    decl, src = source()
    if _SKIP not in src:
        raise RuntimeError("ab_jit_attention: creduce's attention loop changed; update _SKIP")
    return decl, src.replace(_SKIP, _NO_SKIP)


def build(workload: str, new: bool):
    """The workload's jitted step on backend c, skipping tiles (``new``) or not."""
    source = creduce.source
    return traced_patched(workload, {} if new else {
        (creduce, "source"): lambda: _every_tile(source)})


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (every tile)": build(workload, False),
                              "B (tiles skipped)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
