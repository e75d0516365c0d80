"""A/B in one process: backend "c" with the row-wise reductions in C (B: ``jit/creduce.py``:
softmax, log-softmax, layer norm and its raw backward recorded as one op, ``sum_to`` of bias
gradients, the attention's softmax over the keys and its fused backward recorded as one op)
against without them (A: the NumPy impls, the layer-norm and attention backward kernels
recorded op by op, as before). Steps of the two take turns in rounds of 5; medians in ms per
step, with the load average, and the first traced call (trace and compile, warm kernel cache)
of each.

    cd benchmarks && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=../src \
        python ab_jit_creduce.py transformer 25
"""

from __future__ import annotations

import sys

from ab_jit_lstm import interleave, traced

from chainrule.jit import cbackend
from chainrule.primitives import fast
from chainrule.primitives.attention import _self_attention_vjp_np
from chainrule.primitives.reduce import _ln_vjp_rows


def build(workload: str, with_c: bool):
    """The workload's jitted step (after its first traced call) and that call's time."""
    full, ln, att = (cbackend._OP_MODULES, fast.K.layer_norm_vjp_rows,
                     fast.K.self_attention_vjp)
    if not with_c:
        cbackend._OP_MODULES = tuple(m for m in full if m.__name__ != "chainrule.jit.creduce")
        fast.K.layer_norm_vjp_rows = _ln_vjp_rows  # the kernels themselves: op by op
        fast.K.self_attention_vjp = _self_attention_vjp_np
    try:
        return traced(workload)
    finally:
        cbackend._OP_MODULES, fast.K.layer_norm_vjp_rows = full, ln
        fast.K.self_attention_vjp = att


def main(workload: str, rounds: int) -> None:
    interleave(workload, {"A (NumPy reductions)": build(workload, False),
                          "B (C reductions)": build(workload, True)}, rounds)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "transformer",
         int(sys.argv[2]) if len(sys.argv) > 2 else 15)
