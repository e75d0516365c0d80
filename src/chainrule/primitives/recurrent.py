"""Fused recurrent scans: ``rnn_scan``, ``lstm_scan`` and ``gru_scan``.

Each primitive runs one layer of a recurrent network in one direction over a whole sequence.
Its input ``xg`` is the input projection of every time step (biases included), computed
beforehand in one call (``chainrule.ops.recurrent``), so a step only does the hidden-to-hidden
product and the cell's pointwise work, on raw arrays, with no graph node per step.

Why fused (measured on the lstm workload of benchmarks/): built from per-step primitives an LSTM
records about a dozen nodes per time step, and slicing one step out of a batched projection
costs a full-size scatter per step in backward (the LSTMCell loop's figure against PyTorch
eager is in BENCHMARKS.md, "Measurements behind the code"); the scan records one node per
layer and direction.

Layouts (every per-step block is contiguous, so a step writes its gates with one matrix
product straight into place):

* ``rnn_scan(xg, w, h0, *, nonlinearity, reverse)``: ``xg (L, B, H)`` (``x_t W_ih^T`` plus
  both biases), ``w (H, H)``, ``h0 (B, H)`` -> ``(L, B, H)``, the hidden states
  (``nonlinearity`` "tanh" or "relu").
* ``lstm_scan(xg, w, h0, c0, *, reverse)``: ``xg (L, B, 4H)`` (plus both biases),
  ``w (4H, H)``, ``h0, c0 (B, H)`` -> three outputs (``multiple_results``): the hidden states
  ``hs (L, B, H)``, the cell states ``cs (L, B, H)`` and the activated gates
  ``gates (L, B, 4H)``, i, f, g, o in PyTorch's order (sigmoid, sigmoid, tanh, sigmoid).
* ``gru_scan(xg, w, b, h0, *, reverse)``: ``xg (L, B, 3H)`` (plus ``b_ih``), ``w (3H, H)``,
  ``b (3H,)`` (``b_hh``: it must stay inside ``r * (h W_hn^T + b_hn)``), ``h0 (B, H)`` ->
  three outputs: ``hs (L, B, H)``, ``hg (L, B, 3H)`` holding ``r_t, z_t`` (activated) and
  ``hn_t = h_{t-1} W_hn^T + b_hn``, and the candidates ``ns (L, B, H)``.

The outputs hold everything the rules need (nothing else is saved). Each is a true output
with its own cotangent; the one vjp rule gets the cotangents of all three, None for the ones
no gradient reached (the gates, and the cell states when ``c_n`` is unused, almost always),
and skips their terms. ``reverse=True`` runs from the last step to the first (the
backward direction of a bidirectional layer); outputs stay indexed by time.

Rules. The vjp is the backward recurrence and the jvp the forward tangent recurrence, both in
the rule language (operators, indexing, ``F.<primitive>``), so under ``create_graph=True`` they
are recorded and differentiable again. A first-order backward (``F`` is ``RAW``) of the LSTM
and GRU (their raw-vjp slot, ``vjp_raw``) runs the same recurrence as a hand-fused fast-path
kernel instead (in-place updates of
preallocated per-step blocks): the rule-language text allocates a new array per operator and
joins the steps at the end, which made the whole LSTM training step measurably slower. The
tests check both against finite differences and against each other. Each scan has one vjp rule
for all its inputs and outputs, which the engine calls once per node: every input cotangent
comes out of the one backward recurrence; likewise one jvp rule gives every output's tangent
from all the input tangents in one forward tangent recurrence.
The per-step oracle is the composite cells in ``chainrule.ops.recurrent``.

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import REGISTRY
    >>> xg, w, h0 = np.zeros((3, 2, 4)), np.zeros((4, 4)), np.zeros((2, 4))
    >>> REGISTRY["rnn_scan"].impl(np, xg, w, h0, nonlinearity="tanh", reverse=False).shape
    (3, 2, 4)
"""

from __future__ import annotations

from functools import partial

from ..backend import get_array_module
from .core import Aval, Primitive
from .fast import K, kernel


# ---------------------------------------------------------------- shared helpers
def _steps(L: int, reverse: bool) -> range:
    """Time indices in the order the recurrence visits them."""
    return range(L - 1, -1, -1) if reverse else range(L)


def _prev(t: int, reverse: bool) -> int:
    return t + 1 if reverse else t - 1


def _is_first(t: int, L: int, reverse: bool) -> bool:
    return t == (L - 1 if reverse else 0)


def _tr(F, x):
    """The transpose of a matrix in namespace ``F``."""
    return F.permute(x, axes=(1, 0))


def _shifted(F, hs, h0, reverse: bool):
    """The previous state of every step along axis 0 of ``hs``: h0 first (last if reverse)."""
    first = F.reshape(h0, shape=(1, *h0.shape))
    L = hs.shape[0]
    if L == 1:
        return first
    if reverse:
        return F.concatenate(hs[1:], first, axis=0)
    return F.concatenate(first, hs[:L - 1], axis=0)


def _stack(F, parts, shape, axis=0):
    """Per-step arrays of equal shape, in time order, joined along ``axis``, reshaped."""
    return F.reshape(F.concatenate(*parts, axis=axis), shape=shape)


def _or_zeros(F, gs, outs):
    """Cotangents (or tangents) with zeros in place of the None of an unused output."""
    return [F.zeros_like(o) if g is None else g for g, o in zip(gs, outs)]


def _stacks(F, rows, outs):
    """Per-step tuples of blocks, in time order, joined into one array per output."""
    return tuple(_stack(F, [F.reshape(r[k], shape=(1, *r[k].shape)) for r in rows], o.shape)
                 for k, o in enumerate(outs))


def _weight_grad(F, dpre, hs, h0, reverse):
    """sum_t dpre_t^T h_{t-1} for dpre (L, B, G) and hs (L, B, H): one matrix product over
    all steps, (L B, G)^T @ (L B, H) -> (G, H)."""
    L, B, G = dpre.shape
    H = hs.shape[-1]
    hprev = _shifted(F, hs, h0, reverse)
    return F.matmul(_tr(F, F.reshape(dpre, shape=(L * B, G))), F.reshape(hprev, shape=(L * B, H)))


# ---------------------------------------------------------------- rnn_scan
def _rnn_impl(xp, xg, w, h0, nonlinearity, reverse):
    L, B, H = xg.shape
    out = xp.empty((L, B, H), dtype=xg.dtype)
    w_t = xp.ascontiguousarray(w.T)
    h = h0
    for t in _steps(L, reverse):
        ht = out[t]
        xp.dot(h, w_t, out=ht)
        ht += xg[t]
        if nonlinearity == "tanh":
            xp.tanh(ht, out=ht)
        else:
            xp.maximum(ht, 0, out=ht)
        h = ht
    return out


def _rnn_act_grad(h, nonlinearity):
    """d act / d pre-activation, from the activation's output (as relu's own rule)."""
    return 1 - h * h if nonlinearity == "tanh" else (h > 0)


def _rnn_backward(F, g, xg, w, h0, out, nonlinearity, reverse):
    L = xg.shape[0]
    dh = None
    dpre = [None] * L
    for t in reversed(_steps(L, reverse)):
        dht = g[t] if dh is None else dh + g[t]
        d = dht * _rnn_act_grad(out[t], nonlinearity)
        dpre[t] = d
        dh = F.matmul(d, w)
    return _stack(F, dpre, xg.shape), dh


def _rnn_vjp(F, g, xg, w, h0, out, needs, nonlinearity, reverse):
    dxg, dh0 = _rnn_backward(F, g, xg, w, h0, out, nonlinearity, reverse)
    dw = _weight_grad(F, dxg, out, h0, reverse) if needs[1] else None
    return dxg, dw, dh0


def _rnn_tangent(F, txg, tw, th0, xg, w, h0, out, nonlinearity, reverse):
    L = xg.shape[0]
    w_t, tw_t = _tr(F, w), _tr(F, tw)
    dh = th0
    parts = [None] * L
    for t in _steps(L, reverse):
        h_prev = h0 if _is_first(t, L, reverse) else out[_prev(t, reverse)]
        dpre = txg[t] + F.matmul(dh, w_t) + F.matmul(h_prev, tw_t)
        dh = dpre * _rnn_act_grad(out[t], nonlinearity)
        parts[t] = dh
    return _stack(F, parts, out.shape)


def _tangent_rule(tangent):
    """The one jvp rule: the tangent recurrence, inputs without a tangent taking zeros."""
    def rule(F, tangents, *args, **params):
        ins = args[:-1]
        return tangent(F, *_or_zeros(F, tangents, ins), *args, **params)
    return rule


def _scan_shape(xg, h0, widths) -> tuple:
    """One (L, B, k H) Aval per output, for the block widths ``k`` of the outputs."""
    L, B = xg.shape[:2]
    H = h0.shape[1]
    return tuple(Aval((L, B, k * H), xg.dtype) for k in widths)


rnn_scan = Primitive(
    "rnn_scan", _rnn_impl, save="in,out",
    vjp=_rnn_vjp,
    jvp=_tangent_rule(_rnn_tangent), kind="fused",
    shape=lambda xg, w, h0, **p: Aval(xg.shape, xg.dtype))


# ---------------------------------------------------------------- lstm_scan
def _lstm_impl(xp, xg, w, h0, c0, reverse):
    L, B, G = xg.shape
    H = G // 4
    hs = xp.empty((L, B, H), dtype=xg.dtype)
    cs = xp.empty((L, B, H), dtype=xg.dtype)
    gates = xp.empty((L, B, G), dtype=xg.dtype)
    # i, f, o: sigmoid(x) = 0.5 * tanh(x / 2) + 0.5, so the four gates take one tanh
    scale = xp.full((G,), 0.5, dtype=xg.dtype)
    scale[2 * H:3 * H] = 1
    shift = 1 - scale
    w_t = xp.ascontiguousarray(w.T)
    ig = xp.empty((B, H), dtype=xg.dtype)
    h, c = h0, c0
    for t in _steps(L, reverse):
        hn, cn, a = hs[t], cs[t], gates[t]
        xp.dot(h, w_t, out=a)
        a += xg[t]
        a *= scale
        xp.tanh(a, out=a)
        a *= scale
        a += shift
        xp.multiply(a[:, H:2 * H], c, out=cn)
        xp.multiply(a[:, :H], a[:, 2 * H:3 * H], out=ig)
        cn += ig
        xp.tanh(cn, out=hn)
        hn *= a[:, 3 * H:]
        h, c = hn, cn
    return hs, cs, gates


def _g_gate(F, w, H):
    """(4H,) constant: 1 on the g gate (tanh), 0 on i, f, o (sigmoid)."""
    col = w[:, 0]
    return F.concatenate(F.zeros_like(col[:2 * H]), F.ones_like(col[:H]),
                         F.zeros_like(col[:H]), axis=0)


def _lstm_act_grad(a, on_g):
    """Derivative of the activated gates with respect to their pre-activations, from the
    activations: a (1 - a) for the sigmoid gates, 1 - a^2 = (1 + a)(1 - a) for g."""
    return (a + on_g) * (1 - a)


def _lstm_backward(F, gs, xg, w, h0, c0, out, reverse):
    """The backward recurrence in the rule language: (d xg, d h0, d c0)."""
    L, B, G = xg.shape
    H = G // 4
    _, cs, gates = out
    g_h, g_c, g_a = _or_zeros(F, gs, out)
    on_g = _g_gate(F, w, H)
    dh = dc = None
    dpre = [None] * L
    for t in reversed(_steps(L, reverse)):
        a = gates[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c_prev = c0 if _is_first(t, L, reverse) else cs[_prev(t, reverse)]
        dht = g_h[t] if dh is None else dh + g_h[t]
        tc = F.tanh(cs[t])
        dct = g_c[t] + dht * o * (1 - tc * tc)
        if dc is not None:
            dct = dct + dc
        da = F.concatenate(dct * gg, dct * c_prev, dct * i, dht * tc, axis=1) + g_a[t]
        d = da * _lstm_act_grad(a, on_g)
        dpre[t] = F.reshape(d, shape=(1, B, G))
        dh = F.matmul(d, w)
        dc = dct * f
    return _stack(F, dpre, (L, B, G)), dh, dc


@kernel("lstm_backward", whole=True)
def _lstm_backward_raw(gs, xg, w, h0, c0, out, reverse):
    """The same recurrence as :func:`_lstm_backward`, fused by hand on raw arrays: in-place
    updates of preallocated per-step blocks; the terms of an output without a cotangent
    (None in ``gs``) are skipped."""
    _, cs, gates = out
    xp = get_array_module(gates)
    L, B, G = xg.shape
    H = G // 4
    dt = gates.dtype
    g_h, g_c, g_a = gs
    on_g = xp.zeros((G,), dtype=dt)
    on_g[2 * H:3 * H] = 1
    dxg = xp.empty((L, B, G), dtype=dt)
    dh = xp.zeros((B, H), dtype=dt)
    dc = xp.zeros((B, H), dtype=dt)
    tc = xp.empty((B, H), dtype=dt)
    dact = xp.empty((B, G), dtype=dt)
    one_minus_a = xp.empty((B, G), dtype=dt)
    for t in reversed(_steps(L, reverse)):
        a, d = gates[t], dxg[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c_prev = c0 if _is_first(t, L, reverse) else cs[_prev(t, reverse)]
        if g_h is not None:
            dh += g_h[t]
        xp.tanh(cs[t], out=tc)
        xp.multiply(dh, tc, out=d[:, 3 * H:])               # d o
        xp.multiply(tc, tc, out=tc)                         # dc += dh o (1 - tanh(c)^2) + g_c
        xp.subtract(1, tc, out=tc)
        tc *= o
        tc *= dh
        dc += tc
        if g_c is not None:
            dc += g_c[t]
        xp.multiply(dc, gg, out=d[:, :H])                   # d i
        xp.multiply(dc, c_prev, out=d[:, H:2 * H])          # d f
        xp.multiply(dc, i, out=d[:, 2 * H:3 * H])           # d g
        if g_a is not None:
            d += g_a[t]
        xp.add(a, on_g, out=dact)                           # through the activations
        xp.subtract(1, a, out=one_minus_a)
        dact *= one_minus_a
        d *= dact
        dc *= f
        xp.dot(d, w, out=dh)
    return dxg, dh, dc


def _lstm_vjp(F, gs, xg, w, h0, c0, out, needs, reverse, raw=False):
    r = K.lstm_backward(gs, xg, w, h0, c0, out, reverse) if raw else None
    dxg, dh0, dc0 = _lstm_backward(F, gs, xg, w, h0, c0, out, reverse) if r is None else r
    dw = _weight_grad(F, dxg, out[0], h0, reverse) if needs[1] else None
    return dxg, dw, dh0, dc0


def _lstm_tangent(F, txg, tw, th0, tc0, xg, w, h0, c0, out, reverse):
    L, _, G = xg.shape
    H = G // 4
    hs, cs, gates = out
    on_g = _g_gate(F, w, H)
    w_t, tw_t = _tr(F, w), _tr(F, tw)
    dh, dc = th0, tc0
    rows = [None] * L
    for t in _steps(L, reverse):
        first = _is_first(t, L, reverse)
        h_prev = h0 if first else hs[_prev(t, reverse)]
        c_prev = c0 if first else cs[_prev(t, reverse)]
        a = gates[t]
        i, f, gg, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        da = (txg[t] + F.matmul(dh, w_t) + F.matmul(h_prev, tw_t)) * _lstm_act_grad(a, on_g)
        dc = (da[:, H:2 * H] * c_prev + f * dc + da[:, :H] * gg + i * da[:, 2 * H:3 * H])
        tc = F.tanh(cs[t])
        dh = da[:, 3 * H:] * tc + o * (1 - tc * tc) * dc
        rows[t] = (dh, dc, da)
    return _stacks(F, rows, out)


lstm_scan = Primitive(
    "lstm_scan", _lstm_impl, save="in,out", multiple_results=True,
    vjp=_lstm_vjp, vjp_raw=partial(_lstm_vjp, raw=True),
    jvp=_tangent_rule(_lstm_tangent), kind="fused",
    shape=lambda xg, w, h0, c0, **p: _scan_shape(xg, h0, (1, 1, 4)))


# ---------------------------------------------------------------- gru_scan
def _gru_impl(xp, xg, w, b, h0, reverse):
    L, B, G = xg.shape
    H = G // 3
    hs = xp.empty((L, B, H), dtype=xg.dtype)
    hgs = xp.empty((L, B, G), dtype=xg.dtype)  # [r, z, hn] per row: W_h h + b, r, z in place
    ns = xp.empty((L, B, H), dtype=xg.dtype)
    w_t = xp.ascontiguousarray(w.T)
    h = h0
    for t in _steps(L, reverse):
        h_new, hg, ng = hs[t], hgs[t], ns[t]
        rz, hn = hg[:, :2 * H], hg[:, 2 * H:]
        x = xg[t]
        xp.dot(h, w_t, out=hg)
        hg += b
        rz += x[:, :2 * H]
        rz *= 0.5                           # sigmoid(x) = 0.5 * tanh(x / 2) + 0.5
        xp.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        xp.multiply(rz[:, :H], hn, out=ng)
        ng += x[:, 2 * H:]
        xp.tanh(ng, out=ng)
        xp.subtract(h, ng, out=h_new)       # h' = (1 - z) n + z h = n + z (h - n)
        h_new *= rz[:, H:]
        h_new += ng
        h = h_new
    return hs, hgs, ns


def _gru_backward(F, gs, xg, w, b, h0, out, reverse):
    """The backward recurrence in the rule language: (d xg, d hg, d h0), where hg is the
    hidden side's pre-activation ``h W_h^T + b`` of every step, (L, B, 3H)."""
    L, B, G = xg.shape
    H = G // 3
    hs, hgs, ns = out
    g_h, g_hg, g_n = _or_zeros(F, gs, out)
    dh = None
    dx, dhg = [None] * L, [None] * L
    for t in reversed(_steps(L, reverse)):
        hg, ng, ghg = hgs[t], ns[t], g_hg[t]
        rz, hn = hg[:, :2 * H], hg[:, 2 * H:]
        r, z = rz[:, :H], rz[:, H:]
        h_prev = h0 if _is_first(t, L, reverse) else hs[_prev(t, reverse)]
        dht = g_h[t] if dh is None else dh + g_h[t]
        dnp = (dht * (1 - z) + g_n[t]) * (1 - ng * ng)
        drz = ((F.concatenate(dnp * hn, dht * (h_prev - ng), axis=1) + ghg[:, :2 * H])
               * (rz * (1 - rz)))
        dhg_t = F.concatenate(drz, dnp * r + ghg[:, 2 * H:], axis=1)
        dx[t] = F.reshape(F.concatenate(drz, dnp, axis=1), shape=(1, B, G))
        dhg[t] = F.reshape(dhg_t, shape=(1, B, G))
        dh = dht * z + F.matmul(dhg_t, w)
    return _stack(F, dx, (L, B, G)), _stack(F, dhg, (L, B, G)), dh


@kernel("gru_backward", whole=True)
def _gru_backward_raw(gs, xg, w, b, h0, out, reverse):
    """The same recurrence as :func:`_gru_backward`, fused by hand on raw arrays (the terms
    of an output without a cotangent skipped)."""
    hs, hgs, ns = out
    xp = get_array_module(hs)
    L, B, G = xg.shape
    H = G // 3
    dt = hs.dtype
    g_h, g_hg, g_n = gs
    dx = xp.empty((L, B, G), dtype=dt)
    dhg = xp.empty((L, B, G), dtype=dt)
    dh = xp.zeros((B, H), dtype=dt)
    dh_new = xp.empty((B, H), dtype=dt)
    tmp = xp.empty((B, H), dtype=dt)
    dnp = xp.empty((B, H), dtype=dt)
    dact = xp.empty((B, 2 * H), dtype=dt)
    for t in reversed(_steps(L, reverse)):
        hg, ng, d = hgs[t], ns[t], dhg[t]                # d: [d r_pre, d z_pre, d hn]
        rz, hn = hg[:, :2 * H], hg[:, 2 * H:]
        r, z = rz[:, :H], rz[:, H:]
        h_prev = h0 if _is_first(t, L, reverse) else hs[_prev(t, reverse)]
        if g_h is not None:
            dh += g_h[t]
        xp.subtract(1, z, out=dnp)                      # d n = dh (1 - z) + g_n
        dnp *= dh
        if g_n is not None:
            dnp += g_n[t]
        xp.multiply(ng, ng, out=tmp)                    # through tanh
        xp.subtract(1, tmp, out=tmp)
        dnp *= tmp
        xp.multiply(dnp, hn, out=d[:, :H])              # d r
        xp.subtract(h_prev, ng, out=d[:, H:2 * H])      # d z
        d[:, H:2 * H] *= dh
        xp.multiply(dnp, r, out=d[:, 2 * H:])           # d hn
        if g_hg is not None:
            d += g_hg[t]
        xp.subtract(1, rz, out=dact)                    # through the sigmoids
        dact *= rz
        d[:, :2 * H] *= dact
        dxt = dx[t]
        dxt[:, :2 * H] = d[:, :2 * H]
        dxt[:, 2 * H:] = dnp
        xp.dot(d, w, out=dh_new)
        dh *= z
        dh += dh_new
    return dx, dhg, dh


def _gru_vjp(F, gs, xg, w, b, h0, out, needs, reverse, raw=False):
    r = K.gru_backward(gs, xg, w, b, h0, out, reverse) if raw else None
    dx, dhg, dh0 = _gru_backward(F, gs, xg, w, b, h0, out, reverse) if r is None else r
    dw = db = None
    if needs[1]:
        dw = _weight_grad(F, dhg, out[0], h0, reverse)
    if needs[2]:
        db = F.sum(dhg, axes=(0, 1), keepdims=False)
    return dx, dw, db, dh0


def _gru_tangent(F, txg, tw, tb, th0, xg, w, b, h0, out, reverse):
    L, _, G = xg.shape
    H = G // 3
    hs, hgs, ns = out
    w_t, tw_t = _tr(F, w), _tr(F, tw)
    dh = th0
    rows = [None] * L
    for t in _steps(L, reverse):
        h_prev = h0 if _is_first(t, L, reverse) else hs[_prev(t, reverse)]
        hg, ng = hgs[t], ns[t]
        rz, hn = hg[:, :2 * H], hg[:, 2 * H:]
        r, z = rz[:, :H], rz[:, H:]
        tx = txg[t]
        dhg = F.matmul(dh, w_t) + F.matmul(h_prev, tw_t) + tb
        drz = (tx[:, :2 * H] + dhg[:, :2 * H]) * (rz * (1 - rz))
        dr, dz = drz[:, :H], drz[:, H:]
        dhn = dhg[:, 2 * H:]
        dn = (tx[:, 2 * H:] + dr * hn + r * dhn) * (1 - ng * ng)
        dh = dn + dz * (h_prev - ng) + z * (dh - dn)
        rows[t] = (dh, F.concatenate(drz, dhn, axis=1), dn)
    return _stacks(F, rows, out)


gru_scan = Primitive(
    "gru_scan", _gru_impl, save="in,out", multiple_results=True,
    vjp=_gru_vjp, vjp_raw=partial(_gru_vjp, raw=True),
    jvp=_tangent_rule(_gru_tangent), kind="fused",
    shape=lambda xg, w, b, h0, **p: _scan_shape(xg, h0, (1, 3, 1)))
