"""A/B in one process: backend "c" with this session's transformer kernels (B) against without
them (A), and PyTorch eager (the same workload's step):

- fused kernels that call a math function among a chain of arithmetic rendered in tiles
  (``render_c.SPLIT_STMTS``: one loop per run of statements between the calls and one per
  call, over tiles of ``render_c.TILE`` elements); A: every kernel one loop;
- the attention loop (``creduce``) writing ``q^T`` and a copy of ``go^T`` in order and making
  the backward's ``v @ go^T`` an NN product on that copy; A: the loop as it was (strided
  writes, OpenBLAS's NT product), its C source rebuilt from the current one by ``_old``.

Steps take turns in rounds of 5; medians in ms per step, wall clock and process CPU time.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_tiles.py transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step, traced_patched

from chainrule.jit import creduce, render_c

_NEW_QT = """                for (ptrdiff_t d = 0; d < D; d++)
                    for (ptrdiff_t l = 0; l < L; l++)
                        w[d * L + l] = q[l * rs + d] * sc;"""
_OLD_QT = """                for (ptrdiff_t l = 0; l < L; l++)
                    for (ptrdiff_t d = 0; d < D; d++)
                        w[d * L + l] = q[l * rs + d] * sc;"""
_NEW_NT = """            T *gt = w + L * L;
            for (ptrdiff_t d = 0; d < D; d++)
                for (ptrdiff_t l = 0; l < L; l++)
                    gt[d * L + l] = go[l * ors + d];
            gemm(101, 111, 111, L, L, D, (T)1, v, rs, gt, L, (T)0, w, L);"""
_OLD_NT = "            gemm(101, 111, 112, L, L, D, (T)1, v, rs, go, ors, (T)0, w, L);"


def _old(source):
    """creduce's (declarations, source) with the attention loop as it was before."""
    decl, src = source()
    for new, old in ((_NEW_QT, _OLD_QT), (_NEW_NT, _OLD_NT)):
        if new not in src:
            raise RuntimeError("ab_jit_tiles: creduce's attention loop changed; update _old")
        src = src.replace(new, old)
    return decl, src


def build(workload: str, new: bool):
    """The workload's jitted step on backend c, with or without the new kernels."""
    source = creduce.source
    return traced_patched(workload, {} if new else {
        (render_c, "SPLIT_STMTS"): 1 << 30, (creduce, "source"): lambda: _old(source)})


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (before)": build(workload, False),
                              "B (tiled kernels, attention copies)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
