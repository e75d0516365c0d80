"""float16 and bfloat16: the primitives that accumulate (reductions, products, convolutions,
the fused normalisation/softmax/attention/recurrent kernels) run on float32 copies of their
16-bit float inputs and round their float outputs once, as PyTorch does on CPU.

Why: NumPy sums bfloat16 in bfloat16 (1000 ones add up to 256) and ml_dtypes' bfloat16 matrix
product returns float32; NumPy has no 16-bit BLAS at all. Elementwise primitives need nothing:
NumPy/ml_dtypes compute each element in float32 and round it, the same as PyTorch's kernels.

The wrapper costs one dtype test per call of a listed primitive for other dtypes.

Example:
    >>> import chainrule
    >>> x = chainrule.ones(1000, dtype=chainrule.float16)
    >>> float(x.sum())
    1000.0
"""

from __future__ import annotations

from . import attention, conv, linalg, movement, recurrent, reduce  # noqa: F401 - registers
from .core import REGISTRY

#: Primitives whose 16-bit float inputs are computed in float32.
ACCUMULATING = (
    "sum", "sum_to", "prod", "cumsum", "matmul", "linear", "einsum", "conv", "conv_transpose",
    "conv_weight", "window_sum", "window_sum_t", "softmax", "log_softmax", "layer_norm",
    "self_attention", "lstm_scan", "gru_scan", "rnn_scan", "scatter_add", "scatter_to",
)


def _is_low(a) -> bool:
    d = getattr(a, "dtype", None)
    return d is not None and d.itemsize == 2 and d.kind in "fV"


def _down(out, low):
    if isinstance(out, tuple):
        return tuple(_down(o, low) for o in out)
    if isinstance(out, list):
        return [_down(o, low) for o in out]
    d = getattr(out, "dtype", None)
    if d is not None and d.kind == "f" and d.itemsize == 4:
        return out.astype(low)
    return out


def in_float32(impl):
    """``impl`` run on float32 copies of 16-bit float inputs, float outputs rounded back."""

    def run(xp, *arrays, **params):
        for a in arrays:
            if _is_low(a):
                low = a.dtype
                break
        else:
            return impl(xp, *arrays, **params)
        up = [a.astype(xp.float32) if _is_low(a) else a for a in arrays]
        return _down(impl(xp, *up, **params), low)

    run.__name__ = getattr(impl, "__name__", "impl")
    run.__wrapped__ = impl
    return run


for _name in ACCUMULATING:
    _prim = REGISTRY[_name]
    _prim.impl = in_float32(_prim.impl)
