"""The transformer block's fused attention kernel: ``self_attention`` (multi-head attention
over a packed q|k|v projection; the exact GELU is in ``primitives/activation.py``). It earned
its place by measurement on the transformer LM benchmark (benchmarks/, workload transformer); the
composite it replaces stays as its test oracle.

``self_attention(qkv, bias, dmask; heads, scale, seq_first)``
    ``qkv`` is the output of the in-projection, (N, L, 3E) (or (L, N, 3E) with
    ``seq_first``): q, k and v side by side, each split into ``heads`` heads of E/heads
    features. ``bias`` (float, -inf masks; broadcastable to (N, H, L, L)) and ``dmask``
    (attention dropout: 0 or 1/(1-p), shape (N, H, L, L)) may be None. Two outputs
    (``multiple_results``): O = (P * dmask) v per head, token-major (N, L, E) (or (L, N, E)),
    and the attention weights P = softmax(q k^T * scale + bias) transposed to
    (N, H, L_keys, L_queries), which the rules read instead of recomputing them (a true
    output with its own cotangent, None in the vjp rule unless the weights were used). No
    head split or merge is copied in forward, and the gradient comes back as one (N, L, 3E)
    array for the in-projection's backward (no scatter of three slices).

    Measured against the composite (matmul, add, softmax, matmul over head views): the
    scores are kept transposed, (keys, queries), so that the softmax reduces over axis -2,
    which NumPy vectorises (a max over a contiguous short last axis is slower), and every
    batched product has a C-contiguous right operand (OpenBLAS's small batched products are
    slower on a transposed one); the figures are in BENCHMARKS.md, "Measurements behind the
    code".

Example:
    >>> from chainrule.primitives import REGISTRY, Aval
    >>> # O as (N, L, E) and the weights P^T as (N, H, L, L)
    >>> REGISTRY["self_attention"].abstract_eval(Aval((2, 4, 12), "float32"), None, None,
    ...                                          heads=2, scale=0.5, seq_first=False)
    (Aval(shape=(2, 4, 4), dtype=float32), Aval(shape=(2, 2, 4, 4), dtype=float32))
"""

from __future__ import annotations

import functools

from ..backend import get_array_module, threads
from ..errors import ShapeError
from .core import Aval, Primitive
from .fast import K, kernel

# ---------------------------------------------------------------- threads
# The kernels below split their work over the shared pool (chainrule.backend.threads).
_MIN_WORK = threads.MIN_WORK


# ---------------------------------------------------------------- packed self-attention
def _sizes(qkv_shape, heads, seq_first):
    """(N, L, E, D) from the shape of the packed projection."""
    a, b, e3 = qkv_shape
    N, L = (b, a) if seq_first else (a, b)
    E = e3 // 3
    return N, L, E, E // heads


def _heads(F, X, heads, seq_first):
    """q, k, v as (N, H, L, D) views of the packed projection."""
    if seq_first:
        X = F.permute(X, axes=(1, 0, 2))
    N, L, E3 = X.shape
    X5 = F.reshape(X, shape=(N, L, 3, heads, E3 // (3 * heads)))
    return tuple(F.permute(F.getitem(X5, index=(slice(None), slice(None), i)),
                           axes=(0, 2, 1, 3)) for i in range(3))


def _o_heads(F, o, heads, seq_first):
    """An O-shaped (N, L, E) (or (L, N, E)) array as (N, H, L, D) (views)."""
    a, b, E = o.shape
    o = F.reshape(o, shape=(a, b, heads, E // heads))
    return F.permute(o, axes=(1, 2, 0, 3) if seq_first else (0, 2, 1, 3))


def _swap_last(F, b):
    n = len(b.shape)
    return F.permute(b, axes=(*range(n - 2), n - 1, n - 2))


def _token_major(F, o, seq_first):
    """(N, H, L, D) heads as the O output's layout, (N, L, E) (or (L, N, E))."""
    o = F.permute(o, axes=(2, 0, 1, 3) if seq_first else (0, 2, 1, 3))
    s = o.shape
    return F.reshape(o, shape=(s[0], s[1], s[2] * s[3]))


def _packed(xp, qkv, heads, seq_first):
    """(N, L, E, D) and the packed projection as an (N, L, 3, H, D) view (a copy only when
    its last axis is strided)."""
    N, L, E, D = _sizes(qkv.shape, heads, seq_first)
    X = qkv.swapaxes(0, 1) if seq_first else qkv
    if X.strides[-1] != X.itemsize:
        X = xp.ascontiguousarray(X)
    return (N, L, E, D), X.reshape(N, L, 3, heads, D)


def _heads_view(o, N, L, heads, D, seq_first):
    """An O-shaped array (output or cotangent) as (N, H, L, D) (a view)."""
    if seq_first:
        return o.reshape(L, N, heads, D).transpose(1, 2, 0, 3)
    return o.reshape(N, L, heads, D).transpose(0, 2, 1, 3)


def _rows(b, lo, hi):
    """The samples lo:hi of a mask broadcastable to (N, H, L, L)."""
    if b is None or b.ndim < 4 or b.shape[0] == 1:
        return b
    return b[lo:hi]


def _split_batch(part, N, heads, L, D):
    threads.parallel(part, N, max(1, _MIN_WORK // (heads * L * max(L, D))))


def _softmax_keys(xp, pt, bias, ones):
    """``pt`` (m, H, keys, queries) := the softmax over the keys (axis 2) of ``pt + bias``,
    in place (``ones``: (1, keys))."""
    if bias is not None:
        pt += bias
    pt -= pt.max(axis=2, keepdims=True)
    xp.exp(pt, out=pt)
    # the sums over the keys (axis 2) as a BLAS product: ~5x faster than NumPy's
    # reduction over a middle axis
    pt *= 1 / xp.matmul(ones, pt)


def _softmax_keys_vjp(xp, dst, pt, scale, ones):
    """``dst`` (m, H, keys, queries) := ``pt * (dst - sum over the keys of dst * pt) *
    scale``, in place: the cotangent of the scores from that of the weights ``pt``."""
    w = dst * pt
    dst -= xp.matmul(ones, w)  # sums over the keys, as in the forward
    dst *= pt
    dst *= dst.dtype.type(scale)


def _self_attention(xp, qkv, bias, dmask, heads, scale, seq_first,
                    softmax_keys=_softmax_keys):
    """The impl (``softmax_keys``: the softmax step, :func:`_softmax_keys` or a backend's
    version of it with its signature)."""
    (N, L, E, D), X5 = _packed(xp, qkv, heads, seq_first)
    o = xp.empty((L, N, E) if seq_first else (N, L, E), dtype=X5.dtype)
    pt_all = xp.empty((N, heads, L, L), dtype=X5.dtype)  # softmax over the keys, transposed
    o_all = _heads_view(o, N, L, heads, D, seq_first)
    bt = None if bias is None else bias.swapaxes(-1, -2)
    mt = None if dmask is None else dmask.swapaxes(-1, -2)
    ones = xp.ones((1, L), dtype=X5.dtype)  # (1, keys)

    def part(lo, hi):
        q, k, v = (X5[lo:hi, :, i].transpose(0, 2, 1, 3) for i in range(3))
        pt = pt_all[lo:hi]
        qt = xp.ascontiguousarray(q.transpose(0, 1, 3, 2))
        qt *= qt.dtype.type(scale)
        xp.matmul(k, qt, out=pt)
        softmax_keys(xp, pt, None if bt is None else _rows(bt, lo, hi), ones)
        pd = pt if mt is None else pt * _rows(mt, lo, hi)
        xp.matmul(pd.swapaxes(-1, -2), v, out=o_all[lo:hi])

    _split_batch(part, N, heads, L, D)
    return o, pt_all


def _dscores_t(F, gs, qkv, bias, dmask, out, heads, seq_first):
    """d loss / d scores, transposed (N, H, L_keys, L_queries), and the pieces around it."""
    q, k, v = _heads(F, qkv, heads, seq_first)
    g_o, gpt = gs
    pt = out[1]
    go = _o_heads(F, F.zeros_like(out[0]) if g_o is None else g_o, heads, seq_first)
    dm = None if dmask is None else _swap_last(F, dmask)
    dpt = F.matmul(v, F.copy(F.permute(go, axes=(0, 1, 3, 2))))  # (N, H, S, L)
    if dm is not None:
        dpt = dpt * dm
    if gpt is not None:  # the weights get a cotangent only if they were used
        dpt = dpt + gpt
    dst = pt * (dpt - F.sum(dpt * pt, axes=(2,), keepdims=True))
    return dst, (q, k, v, go, pt, dm)


def _self_attention_cotangents(F, gs, qkv, bias, dmask, out, needs, heads, scale, seq_first,
                               fast=False):
    """The one vjp rule: the qkv cotangent and, when the bias wants one, the bias cotangent
    (d scores itself, so both come from one :func:`_dscores_t`). ``fast`` (the raw-vjp slot,
    a first-order backward) tries the fused kernel for qkv."""
    dqkv = dbias = scores = None
    if needs[0] and fast and gs[0] is not None:
        dqkv = K.self_attention_vjp(get_array_module(gs[0]), gs[0], gs[1], qkv, dmask, out,
                                    heads, scale, seq_first)
    if needs[1] or (needs[0] and dqkv is None):
        scores = _dscores_t(F, gs, qkv, bias, dmask, out, heads, seq_first)
    if needs[0] and dqkv is None:
        dqkv = _self_attention_vjp_rule(F, gs, qkv, bias, dmask, out, heads, scale, seq_first,
                                        scores)
    if needs[1]:
        dbias = _swap_last(F, scores[0])
    return dqkv, dbias, None


_self_attention_vjp = functools.partial(_self_attention_cotangents, fast=False)
_self_attention_vjp_raw = functools.partial(_self_attention_cotangents, fast=True)


@kernel("self_attention_vjp", whole=True)
def _self_attention_vjp_np(np, g_o, gpt_all, qkv, dmask, out, heads, scale, seq_first,
                           softmax_keys_vjp=_softmax_keys_vjp):
    """The qkv cotangent on NumPy, fused: the same arithmetic as the rule below, written
    in place per batch slice, each product straight into its block of the (N, L, 3, H, D)
    result (the rule's head transposes, concatenation and temporaries cost ~2x the time on
    the transformer benchmark). None (declined) off NumPy or for mixed dtypes. Under
    chainrule.jit it is recorded as one op (``whole``), so a replay splits its batch over
    the pool as eager code does; ``softmax_keys_vjp``: the softmax step's backward,
    :func:`_softmax_keys_vjp` or a backend's version of it."""
    if np.__name__ != "numpy" or not g_o.dtype == qkv.dtype == out[0].dtype:
        return None
    pt_all = out[1]
    (N, L, E, D), X5 = _packed(np, qkv, heads, seq_first)
    go_all = _heads_view(g_o, N, L, heads, D, seq_first)
    mt = None if dmask is None else dmask.swapaxes(-1, -2)
    dx = np.empty((L, N, 3, heads, D) if seq_first else (N, L, 3, heads, D), dtype=g_o.dtype)
    dx5 = dx.swapaxes(0, 1) if seq_first else dx

    def block(i, lo, hi):  # block i (q, k or v) of the operand / result as (m, H, L, D)
        return X5[lo:hi, :, i].transpose(0, 2, 1, 3), dx5[lo:hi, :, i].transpose(0, 2, 1, 3)

    ones = np.ones((1, L), dtype=g_o.dtype)  # (1, keys)

    def part(lo, hi):
        (q, dq), (k, dk), (v, dv) = (block(i, lo, hi) for i in range(3))
        go, pt = go_all[lo:hi], pt_all[lo:hi]
        dst = np.matmul(v, np.ascontiguousarray(go.transpose(0, 1, 3, 2)))  # (m, H, S, L)
        ptd = pt
        if mt is not None:
            dst *= _rows(mt, lo, hi)
            ptd = pt * _rows(mt, lo, hi)
        if gpt_all is not None:
            dst += gpt_all[lo:hi]
        np.matmul(ptd, go, out=dv)
        softmax_keys_vjp(np, dst, pt, scale, ones)
        np.matmul(dst.swapaxes(-1, -2), k, out=dq)
        np.matmul(dst, q, out=dk)

    _split_batch(part, N, heads, L, D)
    return dx.reshape(dx.shape[:2] + (3 * E,))


def _self_attention_vjp_rule(F, gs, qkv, bias, dmask, out, heads, scale, seq_first,
                             scores=None):
    """The qkv cotangent in the rule language (``scores``: :func:`_dscores_t`'s result when
    the caller has it already)."""
    if scores is None:
        scores = _dscores_t(F, gs, qkv, bias, dmask, out, heads, seq_first)
    dst, (q, k, _, go, pt, dm) = scores
    dv = F.matmul(pt if dm is None else pt * dm, go)  # (N, H, S, D)
    dst = dst * scale
    dq = F.matmul(F.permute(dst, axes=(0, 1, 3, 2)), k)
    dk = F.matmul(dst, q)
    parts = [F.reshape(F.permute(d, axes=(0, 2, 1, 3)), shape=(d.shape[0], d.shape[2], 1,
                                                               d.shape[1], d.shape[3]))
             for d in (dq, dk, dv)]
    N, L = parts[0].shape[:2]
    x = F.reshape(F.concatenate(*parts, axis=2), shape=(N, L, 3 * heads * q.shape[-1]))
    return F.permute(x, axes=(1, 0, 2)) if seq_first else x


def _self_attention_jvp(F, tangents, qkv, bias, dmask, out, heads, scale, seq_first):
    """The one jvp rule: the tangents of O and of the weights from those of qkv and bias."""
    t_qkv, t_bias = tangents[0], tangents[1]
    q, k, v = _heads(F, qkv, heads, seq_first)
    pt = out[1]
    dst = tv = None
    if t_qkv is not None:
        tq, tk, tv = _heads(F, t_qkv, heads, seq_first)
        dst = (F.matmul(tk, F.permute(q, axes=(0, 1, 3, 2))) +
               F.matmul(k, F.permute(tq, axes=(0, 1, 3, 2)))) * scale
    if t_bias is not None:
        tb = _swap_last(F, t_bias)
        dst = tb if dst is None else dst + tb
    dpt = pt * (dst - F.sum(dst * pt, axes=(2,), keepdims=True))
    ptd, dptd = pt, dpt
    if dmask is not None:
        dm = _swap_last(F, dmask)
        ptd, dptd = pt * dm, dpt * dm
    do = F.matmul(F.permute(dptd, axes=(0, 1, 3, 2)), v)
    if tv is not None:
        do = do + F.matmul(F.permute(ptd, axes=(0, 1, 3, 2)), tv)
    return _token_major(F, do, seq_first), dpt


def _attention_shape(qkv, bias, dmask, heads, scale, seq_first):
    """O, (N, L, E) (or (L, N, E)), and the attention weights, (N, H, L, L)."""
    if len(qkv.shape) != 3 or qkv.shape[2] % (3 * heads):
        raise ShapeError(f"self_attention: qkv of shape {tuple(qkv.shape)} is not (N, L, 3E) "
                         f"with E divisible by heads={heads}")
    N, L, E, _ = _sizes(qkv.shape, heads, seq_first)
    o = (L, N, E) if seq_first else (N, L, E)
    return Aval(o, qkv.dtype), Aval((N, heads, L, L), qkv.dtype)


self_attention = Primitive(
    "self_attention", _self_attention, save="in,out", multiple_results=True,
    vjp=_self_attention_vjp, vjp_raw=_self_attention_vjp_raw, jvp=_self_attention_jvp,
    kind="fused", shape=_attention_shape)
