"""A/B in one process: backend "c" with each layer norm's backward fused with its affine
step's (``creduce.fuse_layer_norm``: ``dx``, the weight's and bias's column sums, the gradient
``dx`` is added to and the column sum of that in one C call), B, against without that pass
(A), and PyTorch eager (the same workload's step). Steps take
turns in rounds of 5; medians in ms per step, wall clock and process CPU time (at one thread
the CPU time is the work itself, steadier on a loaded machine).

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_fused_ln.py transformer 25 1
"""

from __future__ import annotations

import sys

from ab_jit_cgemm import cpu_interleave, torch_step, traced_patched

from chainrule.jit import creduce


def build(workload: str, with_new: bool):
    """The workload's jitted step on backend c, with or without the fused layer-norm
    backwards."""
    return traced_patched(workload, {} if with_new else {
        (creduce, "fuse_layer_norm"): lambda g: g})


def main(workload: str, rounds: int, threads) -> None:
    cpu_interleave(workload, {"A (unfused layer-norm backward)": build(workload, False),
                              "B (fused layer-norm backward)": build(workload, True),
                              "torch eager": torch_step(workload, threads)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15,
         int(sys.argv[3]) if len(sys.argv) > 3 else None)
