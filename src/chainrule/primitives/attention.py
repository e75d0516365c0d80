"""The transformer block's fused kernels: ``self_attention`` (multi-head attention over a
packed q|k|v projection) and the exact GELU (``gelu``, ``gelu_backward``). Each earned its
place by measurement on the transformer LM benchmark (benchmarks/, workload transformer); the
composites they replace stay as their test oracles.

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
    which NumPy vectorises (a max over a contiguous last axis of 64 runs ~3x slower), and
    every batched product has a C-contiguous right operand (OpenBLAS's small batched
    products run ~2x slower on a transposed one).

``gelu(x)`` and ``gelu_backward(g, x, y)``
    The exact GELU, x Phi(x), and its vjp g (Phi(x) + x phi(x)) (``y = gelu(x)`` is passed
    in so that Phi = y / x is not recomputed; it carries no derivative of its own). float32
    on NumPy runs block by block in cache-sized, in-place passes, with Phi = (1 + tanh(u))/2
    and u a polynomial fitted for this file (absolute error of Phi below 1.7e-7, the order of
    float32 rounding of PyTorch's 1 + erf); the composite
    (SciPy's erf at ~11 ns per float32 element, then eight full-size passes in backward) made
    GELU a third of the transformer step. Other dtypes use SciPy's ndtr (or erf) exactly.

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import RAW
    >>> RAW.gelu(np.array([-100.0, 0.0, 1.0], dtype=np.float32)).tolist()
    [-0.0, 0.0, 0.8413447141647339]
"""


from __future__ import annotations

import math

from ..backend import get_array_module, threads
from ..errors import ShapeError
from .core import RAW, Aval, Primitive
from .shapes import elementwise, promoted, same_dtype

# ---------------------------------------------------------------- threads
# The kernels below split their work over the shared pool (chainrule.backend.threads).
_MIN_WORK = threads.MIN_WORK


def _parallel(fn, n: int, min_per_thread: int) -> None:
    threads.parallel(fn, n, min_per_thread)


# ---------------------------------------------------------------- GELU
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# Phi(x) = (1 + tanh(u)) / 2 with u = atanh(2 Phi(x) - 1) = h S(h^2), h = x / 2, S a
# polynomial (coefficients low to high) fitted for this file: weighted least squares on
# |x| <= 6.5 with Lawson reweighting towards the minimax fit of the error in Phi (so the fit
# may be loose where tanh is flat), and u pushed up past 10 by |x| = 5.501, where NumPy's
# float32 tanh returns exactly 1. Evaluated in float32 the absolute error of Phi stays below
# 1.7e-7 (checked in the tests); past 5.501 GELU's tails are exactly -0 and x. S is
# increasing on x >= 0, so no clamp is needed (x^2 overflowing to inf gives tanh = +-1).
# 18 elementwise passes against 27 for the rational Phi this replaced (0.99 against 1.39 ms
# for 1024x512 float32, one thread).
_S = (1.59577214717865, 0.29062190651893616, -0.0008419185178354383,
      -0.0074310870841145515, 0.002293175086379051, -0.0003549647517502308,
      2.3677443095948547e-05)
_BLOCK = 1 << 16  # elements per block: its buffers stay in L2 (~8% faster than 1 << 15)
# below |x| = 1e-18 (x^2 < _TINY2, still a normal float32) the backward takes Phi(x) as
# 1/2, which it is to float32 precision there (y / x is unreliable for tiny x, nan at 0)
_TINY2 = 1e-36


def _blocks(np, lo, hi):
    for s in range(lo, hi, _BLOCK):
        yield s, min(s + _BLOCK, hi)


def _gelu_f32(np, xs, r, h, w):
    """GELU(xs) into r for one float32 block (h, w: scratch of the block's size)."""
    f = np.float32
    s = [f(c) for c in _S]
    np.multiply(xs, f(0.5), out=h)
    np.multiply(h, h, out=w)
    np.multiply(w, s[-1], out=r)
    for c in s[-2:0:-1]:
        r += c
        r *= w
    r += s[0]
    r *= h  # u
    np.tanh(r, out=r)
    r += f(1.0)
    r *= h


def _scratch(np, n, k):
    m = min(n, _BLOCK)
    return [np.empty(m, dtype=np.float32) for _ in range(k)]


def _exact_phi(xp, x):
    """Phi(x) to the dtype's precision (float64 paths, CuPy)."""
    if xp.__name__ != "numpy":
        import cupyx.scipy.special as cps  # noqa: PLC0415

        return cps.ndtr(x)
    try:
        from scipy.special import ndtr  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised where SciPy is absent
        from ..backend.special import erf  # noqa: PLC0415

        return (erf(xp, x * (1.0 / math.sqrt(2.0))) + 1.0) * 0.5
    return ndtr(x).astype(x.dtype, copy=False)


def _fast(xp, *arrays) -> bool:
    return xp.__name__ == "numpy" and all(a.dtype == xp.float32 for a in arrays)


def _gelu(xp, x):
    if not _fast(xp, x):
        return x * _exact_phi(xp, x)
    src = xp.ascontiguousarray(x).reshape(-1)
    out = xp.empty(src.shape, dtype=xp.float32)

    def part(lo, hi):
        h, w = _scratch(xp, hi - lo, 2)
        for a, b in _blocks(xp, lo, hi):
            k = b - a
            _gelu_f32(xp, src[a:b], out[a:b], h[:k], w[:k])

    _parallel(part, src.size, _MIN_WORK)
    return out.reshape(x.shape)


def _gelu_backward(xp, g, x, y):
    """g * GELU'(x) = g * (Phi(x) + x phi(x)); ``y`` = GELU(x) gives Phi = y / x."""
    if not _fast(xp, g, x, y) or g.shape != x.shape:
        return g * (_exact_phi(xp, x) + x * (xp.exp(x * x * -0.5) * _INV_SQRT_2PI))
    f = xp.float32
    gs, xs_all, ys = (xp.ascontiguousarray(a).reshape(-1) for a in (g, x, y))
    out = xp.empty(xs_all.shape, dtype=xp.float32)

    def part(lo, hi):
        (w,) = _scratch(xp, hi - lo, 1)
        with xp.errstate(divide="ignore", invalid="ignore"):
            for a, b in _blocks(xp, lo, hi):
                r, xs, ww = out[a:b], xs_all[a:b], w[:b - a]
                xp.divide(ys[a:b], xs, out=r)  # Phi
                xp.multiply(xs, xs, out=ww)
                if not ww.min() >= f(_TINY2):  # rare (or a NaN): one extra pass only then
                    xp.copyto(r, f(0.5), where=ww < f(_TINY2))
                ww *= f(-0.5)
                xp.exp(ww, out=ww)
                ww *= xs
                ww *= f(_INV_SQRT_2PI)
                r += ww
                r *= gs[a:b]

    _parallel(part, xs_all.size, _MIN_WORK)
    return out.reshape(x.shape)


def _gelu_second(F, g, x):
    """g * GELU''(x) = g * phi(x) (2 - x^2)."""
    return g * (F.exp(x * x * -0.5) * _INV_SQRT_2PI) * (2.0 - x * x)


gelu = Primitive(
    "gelu", _gelu, save="in,out",
    vjp=[lambda F, g, x, out: F.gelu_backward(g, x, out)],
    jvp=[lambda F, t, x, out: F.gelu_backward(t, x, out)], kind="elementwise",
    shape=elementwise(None, same_dtype()))

# ``y`` must be gelu(x): it only saves the impl recomputing Phi, so it carries no derivative
gelu_backward = Primitive(
    "gelu_backward", _gelu_backward, save="in",
    vjp=[lambda F, g2, g, x, y, out: F.gelu_backward(g2, x, y),
         lambda F, g2, g, x, y, out: _gelu_second(F, g2 * g, x),
         None],
    jvp=[lambda F, t, g, x, y, out: F.gelu_backward(t, x, y),
         lambda F, t, g, x, y, out: _gelu_second(F, t * g, x),
         None], kind="elementwise",
    shape=elementwise(None, promoted))


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
    _parallel(part, N, max(1, _MIN_WORK // (heads * L * max(L, D))))


def _self_attention(xp, qkv, bias, dmask, heads, scale, seq_first):
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
        if bt is not None:
            pt += _rows(bt, lo, hi)
        pt -= pt.max(axis=2, keepdims=True)
        xp.exp(pt, out=pt)
        # the sums over the keys (axis 2) as a BLAS product: ~5x faster than NumPy's
        # reduction over a middle axis
        pt *= 1 / xp.matmul(ones, pt)
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


def _self_attention_vjp(F, gs, qkv, bias, dmask, out, needs, heads, scale, seq_first):
    """The one vjp rule: the qkv cotangent (a fused NumPy kernel on a first-order backward)
    and, when the bias wants one, the bias cotangent."""
    dqkv = dbias = None
    if needs[0]:
        g_o = gs[0]
        if F is RAW and g_o is not None and get_array_module(g_o).__name__ == "numpy" \
                and g_o.dtype == qkv.dtype == out[0].dtype:
            dqkv = _self_attention_vjp_np(get_array_module(g_o), g_o, gs[1], qkv, dmask,
                                          out[1], heads, scale, seq_first)
        else:
            dqkv = _self_attention_vjp_rule(F, gs, qkv, bias, dmask, out, heads, scale,
                                            seq_first)
    if needs[1]:
        dst, _ = _dscores_t(F, gs, qkv, bias, dmask, out, heads, seq_first)
        dbias = _swap_last(F, dst)
    return dqkv, dbias, None


def _self_attention_vjp_np(np, g_o, gpt_all, qkv, dmask, pt_all, heads, scale, seq_first):
    """The qkv cotangent on NumPy, fused: the same arithmetic as the rule below, written
    in place per batch slice, each product straight into its block of the (N, L, 3, H, D)
    result (the rule's head transposes, concatenation and temporaries cost ~2x the time on
    the transformer benchmark)."""
    (N, L, E, D), X5 = _packed(np, qkv, heads, seq_first)
    g = g_o
    go_all = _heads_view(g_o, N, L, heads, D, seq_first)
    mt = None if dmask is None else dmask.swapaxes(-1, -2)
    dx = np.empty((L, N, 3, heads, D) if seq_first else (N, L, 3, heads, D), dtype=g.dtype)
    dx5 = dx.swapaxes(0, 1) if seq_first else dx

    def block(i, lo, hi):  # block i (q, k or v) of the operand / result as (m, H, L, D)
        return X5[lo:hi, :, i].transpose(0, 2, 1, 3), dx5[lo:hi, :, i].transpose(0, 2, 1, 3)

    ones = np.ones((1, L), dtype=g.dtype)  # (1, keys)

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
        w = dst * pt
        dst -= np.matmul(ones, w)  # sums over the keys, as in the forward
        dst *= pt
        dst *= dst.dtype.type(scale)
        np.matmul(dst.swapaxes(-1, -2), k, out=dq)
        np.matmul(dst, q, out=dk)

    _split_batch(part, N, heads, L, D)
    return dx.reshape(dx.shape[:2] + (3 * E,))


def _self_attention_vjp_rule(F, gs, qkv, bias, dmask, out, heads, scale, seq_first):
    dst, (q, k, _, go, pt, dm) = _dscores_t(F, gs, qkv, bias, dmask, out, heads, seq_first)
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
    vjp=_self_attention_vjp, jvp=_self_attention_jvp, kind="fused",
    shape=_attention_shape)
