"""A/B in one process: backend "c" with one of its IR passes before the fusion groups (B)
against without it (A), and PyTorch eager (the same workload's step):
``fold_residual_adds`` (``cgemm``: ``r + linear(x, w, b)`` as one ``kernel.linear_add``) or
``fuse_layer_norm`` (``creduce``). Steps take turns in rounds of 5; medians in ms per step,
wall clock and process CPU time. ``ab_jit_profile.py ab_jit_passes:NAME`` compares the two per op.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_passes.py fold_residual_adds transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step, traced_patched

from chainrule.jit import cgemm, creduce

PASSES = {"fold_residual_adds": cgemm, "fuse_layer_norm": creduce}


def builder(name: str):
    """``build(workload, with_pass)``: the workload's jitted step on backend c, with or
    without pass ``name``."""
    if name not in PASSES:
        raise SystemExit(f"ab_jit_passes: pass {name!r} is not one of {sorted(PASSES)}")

    def build(workload: str, with_pass: bool):
        return traced_patched(workload, {} if with_pass else {
            (PASSES[name], name): lambda g: g})

    return build


def main(name: str, workload: str, rounds: int, threads) -> None:
    build = builder(name)
    cpu_interleave(workload, {f"A (without {name})": build(workload, False),
                              f"B (with {name})": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "transformer",
         int(sys.argv[3]) if len(sys.argv) > 3 else 15,
         int(sys.argv[4]) if len(sys.argv) > 4 else None)
