"""``MultiheadAttention``, with PyTorch's parameters, state_dict keys, masks and numerics.

Self-attention (``query is key is value``) with ``need_weights=False`` runs on one fused
primitive over the packed in-projection (``ops.attention.packed_self_attention``); every
other case (cross-attention, ``need_weights``, ``add_bias_kv``, ``add_zero_attn``, separate
``kdim``/``vdim``, fully masked rows) runs on the composite attention. Both give the same
numbers.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = chainrule.randn(3, 5, 8)
    >>> out, w = mha(x, x, x)
    >>> out.shape, w.shape, list(mha.state_dict())
    ((3, 5, 8), (3, 5, 5), ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias'])
"""

from __future__ import annotations

from .. import backend, ops
from ..autograd.grad_mode import STATE
from ..errors import ShapeError
from ..ops import attention as A
from ..tensor import Tensor, _wrap
from . import functional as F
from . import init
from .linear import Linear
from .module import Module
from .parameter import Parameter

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """Multi-head attention (PyTorch's ``torch.nn.MultiheadAttention``):
    concat_h(softmax(q W_q^h (k W_k^h)^T / sqrt(d) + mask) v W_v^h) W_o + b_o.

    Args:
        embed_dim: model width E; num_heads: H (E must be divisible by H).
        dropout: dropout on the attention weights (training only).
        bias: in- and out-projection biases.
        add_bias_kv: learnt ``bias_k``/``bias_v`` appended to the keys and values.
        add_zero_attn: a zero key and value appended (after the heads split).
        kdim, vdim: key/value widths (default E); when they differ from E the projections
            are ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` instead of
            ``in_proj_weight`` (3E, E).
        batch_first: inputs and output are (N, L, E) instead of (L, N, E).

    Parameters are initialised as in PyTorch: ``xavier_uniform_`` on the in-projection,
    zero biases, ``xavier_normal_`` on ``bias_k``/``bias_v``, and ``out_proj`` keeps
    ``Linear``'s initialisation of its weight.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> mha = nn.MultiheadAttention(4, 2)
        >>> q = chainrule.randn(3, 2, 4)  # (L, N, E)
        >>> out, w = mha(q, q, q, average_attn_weights=False)
        >>> out.shape, w.shape
        ((3, 2, 4), (2, 2, 3, 3))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        if not isinstance(embed_dim, int) or embed_dim <= 0 or not isinstance(num_heads, int) \
                or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive ints, "
                             f"got embed_dim={embed_dim!r} and num_heads={num_heads!r}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        kw = {"device": device, "dtype": dtype}
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(ops.empty(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(ops.empty(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(ops.empty(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(ops.empty(3 * embed_dim, embed_dim, **kw))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(ops.empty(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(ops.empty(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(ops.empty(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            init.xavier_uniform_(self.q_proj_weight)
            init.xavier_uniform_(self.k_proj_weight)
            init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")

    # ------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: (L, N, E), or (N, L, E) with ``batch_first``, or unbatched (L, E).
            key, value: (S, N, kdim/vdim) likewise.
            key_padding_mask: (N, S) (or (S,) unbatched); bool True = that key is padding
                and ignored; float = added to the scores.
            need_weights: also return the attention weights (then the composite path runs).
            attn_mask: (L, S) or (N * num_heads, L, S); bool True = NOT allowed to attend;
                float = added to the scores.
            average_attn_weights: average the returned weights over heads.
            is_causal: a hint that ``attn_mask`` is the causal mask (it must be given, as in
                PyTorch); without a key_padding_mask and with need_weights=False, the
                causal mask is then used directly.

        Returns:
            ``(attn_output, attn_weights)``: the output in the query's layout; the weights
            (N, L, S) (or (N, H, L, S) unaveraged; without N when unbatched) or None.
            Query rows that may attend to nothing give zero outputs (PyTorch gives zeros
            without weights and NaN with them).
        """
        batched = self._check_shapes(query, key, value, key_padding_mask, attn_mask)
        self_attn = query is key and key is value
        kv_same = key is value
        if not batched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
            seq_first = False
        else:
            seq_first = not self.batch_first
        if seq_first:
            L, N = query.shape[0], query.shape[1]
            S = key.shape[0]
        else:
            N, L = query.shape[0], query.shape[1]
            S = key.shape[1]
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: need attn_mask if specifying the is_causal "
                               "hint (nn.Transformer.generate_square_subsequent_mask makes one)")
        dtype = query.dtype
        if is_causal and key_padding_mask is None and not need_weights:
            bias = A.causal_bias(L, S, query._data.dtype, backend.get_array_module(query._data))
        else:
            bias = self._merge_masks(attn_mask, key_padding_mask, N, L, S, dtype)
        dropout_p = self.dropout if self.training else 0.0
        W, b = self.in_proj_weight, self.in_proj_bias
        E = self.embed_dim
        if (self_attn and self._qkv_same_embed_dim and not need_weights and self.bias_k is None
                and not self.add_zero_attn
                and (bias is None or (not isinstance(bias, Tensor) and not A.dead_rows(bias)))):
            qkv = F.linear(query, W, b)
            out = A.packed_self_attention(qkv, self.num_heads, bias, dropout_p,
                                          seq_first=seq_first)
            out = self.out_proj(out)
            return (out if batched else out.squeeze(0)), None
        # ---- composite path: in-projection
        if self._qkv_same_embed_dim:
            if self_attn:
                q, k, v = ops.chunk(F.linear(query, W, b), 3, -1)
            elif kv_same:
                bq, bkv = (None, None) if b is None else (b[:E], b[E:])
                q = F.linear(query, W[:E], bq)
                k, v = ops.chunk(F.linear(key, W[E:], bkv), 2, -1)
            else:
                bs = (None,) * 3 if b is None else ops.chunk(b, 3)
                q, k, v = (F.linear(x, W[i * E:(i + 1) * E], bs[i])
                           for i, x in enumerate((query, key, value)))
        else:
            bs = (None,) * 3 if b is None else ops.chunk(b, 3)
            q = F.linear(query, self.q_proj_weight, bs[0])
            k = F.linear(key, self.k_proj_weight, bs[1])
            v = F.linear(value, self.v_proj_weight, bs[2])
        if seq_first:  # batch-first views from here on
            q, k, v = (t.transpose(0, 1) for t in (q, k, v))
        extra = 0
        if self.bias_k is not None:
            k = ops.cat([k, self.bias_k.expand(N, 1, E)], 1)
            v = ops.cat([v, self.bias_v.expand(N, 1, E)], 1)
            extra += 1
        H, D = self.num_heads, self.head_dim
        q, k, v = (t.reshape(N, t.shape[1], H, D).permute(0, 2, 1, 3) for t in (q, k, v))
        if self.add_zero_attn:
            z = ops.zeros(N, H, 1, D, dtype=k.dtype, device=k.device)
            k, v = ops.cat([k, z], 2), ops.cat([v, z], 2)
            extra += 1
        if extra and bias is not None:
            bias = _pad_last(bias, extra)
        out, w = A.attention(q, k, v, bias, dropout_p, None, need_weights)
        if seq_first:
            out = out.permute(2, 0, 1, 3).reshape(L, N, E)
        else:
            out = out.permute(0, 2, 1, 3).reshape(N, L, E)
        out = self.out_proj(out)
        if w is not None and average_attn_weights:
            w = w.mean(1)
        if not batched:
            out = out.squeeze(0)
            w = None if w is None else w.squeeze(0)
        return out, w

    # ------------------------------------------------------------------ checks and masks
    def _check_shapes(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        op = "MultiheadAttention"
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        nd = query.ndim
        if nd not in (2, 3):
            raise ShapeError(f"{op}: query should be unbatched 2D or batched 3D tensor but "
                             f"received {nd}-D query tensor")
        if key.ndim != nd or value.ndim != nd:
            raise ShapeError(f"{op}: for {'batched' if nd == 3 else 'unbatched'} {nd}-D query, "
                             f"key and value should be {nd}-D but received {key.ndim}-D and "
                             f"{value.ndim}-D tensors")
        if query.shape[-1] != self.embed_dim:
            raise ShapeError(f"{op}: expected query features {self.embed_dim}, got shape "
                             f"{tuple(query.shape)}")
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise ShapeError(f"{op}: expected key/value features ({self.kdim}, {self.vdim}), got "
                             f"shapes {tuple(key.shape)} and {tuple(value.shape)}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ShapeError(f"{op}: key shape {tuple(key.shape)} does not match value shape "
                             f"{tuple(value.shape)}")
        if nd == 3:
            bdim = 0 if self.batch_first else 1
            if query.shape[bdim] != key.shape[bdim]:
                raise ShapeError(f"{op}: query {tuple(query.shape)} and key {tuple(key.shape)} "
                                 f"differ in the batch dim ({bdim})")
        if key_padding_mask is not None and key_padding_mask.ndim != nd - 1:
            raise ShapeError(f"{op}: for a {nd}-D query, key_padding_mask should be "
                             f"{nd - 1}-D, got shape {tuple(key_padding_mask.shape)}")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise ShapeError(f"{op}: attn_mask should be 2D or 3D, got shape "
                             f"{tuple(attn_mask.shape)}")
        return nd == 3

    def _merge_masks(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """attn_mask and key_padding_mask as one additive bias broadcastable to (N, H, L, S):
        a raw array, or a Tensor when a float mask requires grad; None without masks."""
        op = "MultiheadAttention"
        H = self.num_heads
        bias = None
        if attn_mask is not None:
            am = A.mask_to_bias(attn_mask, dtype, op, masked_value=True)
            shp = tuple(am.shape)
            if len(shp) == 2:
                if shp != (L, S):
                    raise ShapeError(f"{op}: the shape of the 2D attn_mask is {shp}, but should "
                                     f"be {(L, S)}")
            elif shp != (N * H, L, S):
                raise ShapeError(f"{op}: the shape of the 3D attn_mask is {shp}, but should be "
                                 f"{(N * H, L, S)}")
            else:
                am = am.reshape(N, H, L, S)
            bias = am
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ShapeError(f"{op}: expected key_padding_mask of shape {(N, S)}, got "
                                 f"{tuple(key_padding_mask.shape)}")
            kb = A.mask_to_bias(key_padding_mask, dtype, op, masked_value=True)
            kb = kb.reshape(N, 1, 1, S)
            bias = kb if bias is None else _add(bias, kb)
        if isinstance(bias, Tensor) and not (bias._rg and STATE.enabled):
            bias = bias._data
        return bias


def _add(a, b):
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (a if isinstance(a, Tensor) else _wrap(a)) + (b if isinstance(b, Tensor)
                                                             else _wrap(b))
    return a + b


def _pad_last(bias, n: int):
    """``bias`` with ``n`` zero columns appended on its last (key) axis."""
    if isinstance(bias, Tensor):
        return ops.pad(bias, (0, n))
    widths = [(0, 0)] * (bias.ndim - 1) + [(0, n)]
    xp = backend.get_array_module(bias)
    return xp.pad(bias, widths)

