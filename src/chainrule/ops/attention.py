"""Attention: ``scaled_dot_product_attention`` (a composite of primitives), the packed
multi-head self-attention that ``nn.MultiheadAttention`` uses when it can (one fused
primitive, ``primitives.attention.self_attention``), and the mask helpers they share; also
``gelu``, the same function as ``nn.functional.gelu`` (the exact form on its fused primitive).

softmax(q k^T * scale + bias) v, where the bias comes from a mask (bool: True = the position
takes part; float: added to the scores) or from ``is_causal``. Query rows in which every key
is masked give zeros (output and gradient), as PyTorch's ``scaled_dot_product_attention``
does, never NaN.

Example:
    >>> import chainrule
    >>> import chainrule.nn.functional as F
    >>> q = chainrule.randn(2, 4, 5, 8)
    >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    (2, 4, 5, 8)
"""

from __future__ import annotations

import math

from .. import backend
from ..errors import ShapeError
from ..primitives import attention as PA
from ..random import _draw
from ..tensor import Tensor, _wrap
from ._amp import autocast_lower
from .elementwise import where
from .linalg import matmul
from .nn import dropout as _dropout
from .nn import gelu  # the exact GELU (fused primitive), exported here too
from .reduce import softmax
from .shape import broadcast_to, reshape, transpose

__all__ = ["gelu", "scaled_dot_product_attention"]

_CAUSAL: dict = {}


# ---------------------------------------------------------------- masks
def causal_bias(L: int, S: int, dtype, xp) -> object:
    """The additive mask of causal attention as a read-only ``(L, S)`` array: 0 where key
    ``j <= i`` (query ``i``), -inf above the diagonal (top-left aligned, as PyTorch's
    ``is_causal``). Cached per size, dtype and array module.

    Example:
        >>> import numpy as np
        >>> causal_bias(2, 3, np.dtype(np.float32), np).tolist()
        [[0.0, -inf, -inf], [0.0, 0.0, -inf]]
    """
    key = (L, S, str(dtype), xp.__name__)
    b = _CAUSAL.get(key)
    if b is None:
        if len(_CAUSAL) > 64:
            _CAUSAL.clear()
        b = xp.triu(xp.full((L, S), -xp.inf, dtype=dtype), 1)
        if xp.__name__ == "numpy":
            b.flags.writeable = False
        _CAUSAL[key] = b
    return b


def mask_to_bias(mask: Tensor, dtype, op: str, masked_value: bool = False):
    """A mask as an additive float bias: a bool mask gives -inf where it equals
    ``masked_value`` (False for ``scaled_dot_product_attention``, where True means "takes
    part"; True for ``MultiheadAttention``'s masks) and 0 elsewhere, as a raw array; a float
    mask is returned as a Tensor of ``dtype`` (so one that requires grad keeps it).

    Example:
        >>> import chainrule
        >>> mask_to_bias(chainrule.tensor([True, False]), chainrule.float32, "sdpa").tolist()
        [0.0, -inf]
    """
    if not isinstance(mask, Tensor):
        raise TypeError(f"{op}: masks must be Tensors, got {type(mask).__name__}")
    kind = mask._data.dtype.kind
    npd = backend.as_dtype(dtype).np
    if kind == "b":
        xp = backend.get_array_module(mask._data)
        hit = mask._data if masked_value else ~mask._data
        return xp.where(hit, npd.type(-xp.inf), npd.type(0))
    if kind not in "fV":
        raise TypeError(f"{op}: masks must be bool or floating point, got {mask.dtype.name}")
    if mask._data.dtype != npd:
        mask = mask.to(dtype)
    return mask


def _check_qkv(query, key, value, op: str):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t._data.ndim < 2:
            raise ShapeError(f"{op}: {name} must have at least 2 dims (..., seq, features), got "
                             f"shape {tuple(t.shape)}")
        if t._data.dtype.kind not in "fV":
            raise TypeError(f"{op}: {name} must be floating point, got {t.dtype.name}")
    if not query._data.dtype == key._data.dtype == value._data.dtype:
        raise TypeError(f"{op}: query, key and value must have one dtype, got "
                        f"{query.dtype.name}, {key.dtype.name} and {value.dtype.name}")
    if query._data.shape[-1] != key._data.shape[-1]:
        raise ShapeError(f"{op}: query of shape {tuple(query.shape)} and key of shape "
                         f"{tuple(key.shape)} differ in their last (feature) dim")
    if key._data.shape[-2] != value._data.shape[-2]:
        raise ShapeError(f"{op}: key of shape {tuple(key.shape)} and value of shape "
                         f"{tuple(value.shape)} differ in their sequence dim (-2)")


def dead_rows(bias) -> bool:
    """True when some query row of the additive ``bias`` (array or Tensor) is -inf
    throughout (a query that may attend to nothing).

    Example:
        >>> import numpy as np
        >>> dead_rows(np.array([[0.0, -np.inf], [-np.inf, -np.inf]]))
        True
    """
    b = bias._data if isinstance(bias, Tensor) else bias
    xp = backend.get_array_module(b)
    return bool(xp.isneginf(b).all(axis=-1).any())


# ---------------------------------------------------------------- the attention core
def attention(query: Tensor, key: Tensor, value: Tensor, bias=None, dropout_p: float = 0.0,
              scale: float | None = None, need_weights: bool = False,
              generator=None) -> tuple[Tensor, Tensor | None]:
    """The attention core on checked inputs: softmax(q k^T * scale + bias) v, composed of
    primitives (so every derivative order works).

    ``bias`` is None, a raw array (no gradient) or a Tensor, broadcastable to the scores
    (..., L, S); -inf entries mask, and rows masked entirely give zero weights. Returns the
    output and, when ``need_weights``, the attention weights (after dropout, as PyTorch's
    ``MultiheadAttention`` returns them).

    Example:
        >>> import chainrule
        >>> q = chainrule.ones(1, 2, 4)
        >>> out, w = attention(q, q, q, need_weights=True)
        >>> w.tolist()
        [[[0.5, 0.5], [0.5, 0.5]]]
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query._data.shape[-1])
    q = query * scale if scale != 1.0 else query
    s = matmul(q, transpose(key, -2, -1))
    alive = None
    if bias is not None:
        b = bias._data if isinstance(bias, Tensor) else bias
        xp = backend.get_array_module(b)
        dead = xp.isneginf(b).all(axis=-1, keepdims=True)
        if bool(dead.any()):  # rows with nothing to attend to: weights 0, not NaN
            alive = _wrap((~dead).astype(s._data.dtype))
            if isinstance(bias, Tensor):
                bias = where(_wrap(dead), 0.0, bias)
            else:
                bias = xp.where(dead, b.dtype.type(0), b)
        s = s + (bias if isinstance(bias, Tensor) else _wrap(bias))
    p = softmax(s, -1)
    if alive is not None:
        p = p * alive
    if dropout_p > 0.0:
        p = _dropout(p, dropout_p, True, generator=generator)
    out = matmul(p, value)
    return out, (p if need_weights else None)


@autocast_lower
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query key^T * scale + mask) value, over the last two dims (PyTorch's
    ``torch.nn.functional.scaled_dot_product_attention``).

    Args:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev). Batch dims broadcast.
        attn_mask: bool (True = the query may attend to that key) or float (added to the
            scores), broadcastable to (..., L, S).
        dropout_p: dropout on the attention weights, applied whenever it is > 0 (pass 0.0
            in evaluation, as PyTorch's modules do).
        is_causal: query i attends to keys j <= i (top-left aligned); not with attn_mask.
        scale: multiplies the scores; default 1 / sqrt(E).
        enable_gqa: grouped-query attention: key and value may have fewer heads (dim -3)
            than query, a divisor of them; each key/value head serves consecutive query heads.

    Returns:
        (..., L, Ev). Query rows with every key masked give zeros (and zero gradients).

    Example:
        >>> import chainrule
        >>> import chainrule.nn.functional as F
        >>> q = chainrule.ones(1, 3, 4)
        >>> v = chainrule.arange(12.0).reshape(1, 3, 4)
        >>> F.scaled_dot_product_attention(q, q, v, is_causal=True)[0, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    op = "scaled_dot_product_attention"
    _check_qkv(query, key, value, op)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1], got {dropout_p}")
    L, S = query._data.shape[-2], key._data.shape[-2]
    if enable_gqa:
        key, value = _repeat_kv(query, key, value, op)
    bias = None
    if is_causal:
        if attn_mask is not None:
            raise ValueError(f"{op}: pass either attn_mask or is_causal=True, not both")
        bias = causal_bias(L, S, query._data.dtype, backend.get_array_module(query._data))
    elif attn_mask is not None:
        bias = mask_to_bias(attn_mask, query.dtype, op)
        bshape = tuple(bias.shape)
        try:
            batch = backend.np.broadcast_shapes(query._data.shape[:-2], key._data.shape[:-2])
        except ValueError:
            raise ShapeError(f"{op}: the batch dims of query {tuple(query.shape)} and key "
                             f"{tuple(key.shape)} do not broadcast") from None
        try:
            backend.np.broadcast_shapes(bshape, (*batch, L, S))
            if len(bshape) > len(batch) + 2:
                raise ValueError
        except ValueError:
            raise ShapeError(f"{op}: attn_mask of shape {bshape} does not broadcast to the "
                             f"attention scores of shape {(*batch, L, S)}") from None
        if isinstance(bias, Tensor) and not bias._rg:
            bias = bias._data
    out, _ = attention(query, key, value, bias, dropout_p, scale)
    return out


def _repeat_kv(query, key, value, op):
    if query._data.ndim < 3 or key._data.ndim < 3 or value._data.ndim < 3:
        raise ShapeError(f"{op}: enable_gqa needs a head dim (-3) in query, key and value, got "
                         f"shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                         f"{tuple(value.shape)}")
    hq, hk, hv = query._data.shape[-3], key._data.shape[-3], value._data.shape[-3]
    if hk != hv or hq % hk:
        raise ShapeError(f"{op}: enable_gqa needs key and value heads ({hk}, {hv}) equal and "
                         f"dividing the query heads ({hq})")
    g = hq // hk
    if g == 1:
        return key, value
    out = []
    for t in (key, value):
        shp = t._data.shape
        t = reshape(t, (*shp[:-3], hk, 1, *shp[-2:]))
        t = broadcast_to(t, (*shp[:-3], hk, g, *shp[-2:]))
        out.append(reshape(t, (*shp[:-3], hq, *shp[-2:])))
    return out[0], out[1]


# ---------------------------------------------------------------- packed self-attention
def packed_self_attention(qkv: Tensor, num_heads: int, bias=None, dropout_p: float = 0.0,
                          seq_first: bool = False, generator=None) -> Tensor:
    """Multi-head self-attention over a packed in-projection ``qkv`` of shape (N, L, 3E)
    (or (L, N, 3E) with ``seq_first``), through the fused ``self_attention`` primitive.
    Returns (N, L, E) (or (L, N, E)): the heads' outputs side by side, ready for the
    out-projection. ``bias`` is None or a raw float array broadcastable to (N, H, L, L) with
    no row masked entirely (use :func:`attention` otherwise).

    Example:
        >>> import chainrule
        >>> qkv = chainrule.randn(2, 5, 3 * 8)
        >>> packed_self_attention(qkv, num_heads=2).shape
        (2, 5, 8)
    """
    e3 = qkv._data.shape[-1]
    if qkv._data.ndim != 3 or e3 % (3 * num_heads):
        raise ShapeError(f"packed_self_attention: qkv must be (N, L, 3E) with E divisible by "
                         f"{num_heads} heads, got shape {tuple(qkv.shape)}")
    head_dim = e3 // (3 * num_heads)
    dmask = None
    if dropout_p > 0.0:
        n, length = qkv._data.shape[:2] if not seq_first else qkv._data.shape[1::-1]
        shape = (n, num_heads, length, length)
        keep = _draw(generator, "random", size=shape) >= dropout_p
        xp = backend.get_array_module(qkv._data)
        dt = qkv._data.dtype
        keep_scale = 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0
        dmask = xp.asarray(keep).astype(dt) * dt.type(keep_scale)
    # constants enter as tensors that need no grad, so forward mode and grad-of-grad see them
    bias = None if bias is None else (bias if isinstance(bias, Tensor) else _wrap(bias))
    dmask = None if dmask is None else _wrap(dmask)
    out, _ = PA.self_attention(qkv, bias, dmask, heads=num_heads,
                               scale=1.0 / math.sqrt(head_dim), seq_first=seq_first)
    return out
