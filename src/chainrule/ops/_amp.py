"""Autocast state and the two op policies that read it (``chainrule.amp.autocast`` sets it).

PyTorch's CPU autocast lists, for the ops chainrule has:

* ``lower``: run in the autocast dtype (bfloat16 or float16): matmul, mm, bmm, einsum, linear,
  conv1d/2d/3d, conv_transpose1d/2d/3d, scaled_dot_product_attention, and the recurrent layers
  lstm, rnn_tanh, rnn_relu (``nn.LSTM``/``nn.RNN``: input, states and weights cast, outputs
  and final states in the low dtype, the same values as a module converted to it; gru is not
  on the list: ``nn.GRU`` returns float32, its input projection a bfloat16 product and its
  recurrence, including the hidden-to-hidden product, in float32, where PyTorch's runs that
  product in bfloat16 too; the cells are not on the list and follow their ops);
* ``fp32``: run in float32: prod, the losses (mse, l1, smooth_l1, huber, nll, cross_entropy,
  binary_cross_entropy (with logits), kl_div), max_pool3d, avg_pool3d, adaptive_avg_pool3d.

Everything else runs in the dtype of its inputs, as in PyTorch on CPU (softmax, layer_norm and
sum of a bfloat16 tensor stay bfloat16; they compute in float32 inside, see
``chainrule.primitives.lowp``). Only floating tensors other than float64 are cast, and only on
the autocast device type. Casts of leaf tensors that require grad (the weights) are cached for
the outermost autocast region, as PyTorch does.

Example (``chainrule.autocast`` switches it on):
    >>> from chainrule.ops._amp import STATE
    >>> STATE.enabled
    False
"""

from __future__ import annotations

import functools

from ..tensor import Tensor


class _State:
    __slots__ = ("cache", "device_type", "dtype", "enabled")

    def __init__(self):
        self.enabled = False
        self.device_type = "cpu"
        self.dtype = None  # chainrule DType while enabled
        self.cache: dict | None = None  # id(leaf) -> (leaf, cast) in the outermost region


STATE = _State()


def _cast_arg(a, dtype, device_type):
    if not isinstance(a, Tensor):
        if isinstance(a, (list, tuple)):
            return type(a)(_cast_arg(x, dtype, device_type) for x in a)
        return a
    d = a._data.dtype
    if d.kind not in "fV" or d == dtype.np or d.itemsize == 8 or \
            a.device.type != device_type:
        return a
    cache = STATE.cache
    if cache is not None and a._node is None and a._rg:
        hit = cache.get(id(a))
        if hit is not None and hit[0] is a and hit[1].dtype is dtype:
            return hit[1]
        from ._util import cast  # noqa: PLC0415

        out = cast(a, dtype)
        cache[id(a)] = (a, out)
        return out
    from ._util import cast  # noqa: PLC0415

    return cast(a, dtype)


def _policy(fn, target):
    def run(*args, **kwargs):
        st = STATE
        if not st.enabled:
            return fn(*args, **kwargs)
        from ..backend import float32  # noqa: PLC0415

        dtype = st.dtype if target is None else float32
        dev = st.device_type
        args = [_cast_arg(a, dtype, dev) for a in args]
        kwargs = {k: _cast_arg(v, dtype, dev) for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    return functools.update_wrapper(run, fn)


def autocast_lower(fn):
    """Under autocast, ``fn``'s floating tensor arguments are cast to the autocast dtype."""
    return _policy(fn, None)


def autocast_fp32(fn):
    """Under autocast, ``fn``'s floating tensor arguments are cast to float32."""
    return _policy(fn, "float32")
