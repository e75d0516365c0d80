"""Recurrent layers: RNN, LSTM, GRU and their cells.

Checked against an independent NumPy reference (loops over time with PyTorch's formulas),
hand-computed tiny cases, the composite cells (the oracle of the fused scans), finite
differences (first and second order, both modes) and, where installed, PyTorch itself:
PyTorch's state_dict loads one to one and gives the same outputs and gradients.
"""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.errors import ShapeError
from chainrule.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell
from chainrule.ops import recurrent as R
from chainrule.primitives import RAW, TENSOR
from chainrule.primitives import recurrent as PR
from chainrule.tensor import _wrap
from chainrule.testing import gradcheck, gradgradcheck

try:
    import torch
except ImportError:  # the oracle tests skip, everything else runs
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle of this test")

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def make(mode: str, *args, **kwargs) -> RNNBase:
    """The chainrule module for ``mode``."""
    if mode.startswith("RNN"):
        return RNN(*args, nonlinearity="tanh" if mode == "RNN_TANH" else "relu", **kwargs)
    return {"LSTM": LSTM, "GRU": GRU}[mode](*args, **kwargs)


def make_torch(mode: str, *args, **kwargs):
    if mode.startswith("RNN"):
        return torch.nn.RNN(*args, nonlinearity="tanh" if mode == "RNN_TANH" else "relu",
                            **kwargs)
    return {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[mode](*args, **kwargs)


def arr(t) -> np.ndarray:
    return t.detach().numpy()


# ---------------------------------------------------------------- NumPy reference
def _sig(x):
    return 1 / (1 + np.exp(-x))


def np_cell(mode, x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One step with PyTorch's formulas, written independently of chainrule."""
    gi = x @ w_ih.T + (0 if b_ih is None else b_ih)
    gh = h @ w_hh.T + (0 if b_hh is None else b_hh)
    if mode == "RNN_TANH":
        return np.tanh(gi + gh), None
    if mode == "RNN_RELU":
        return np.maximum(gi + gh, 0), None
    if mode == "LSTM":
        i, f, g, o = np.split(gi + gh, 4, axis=-1)
        c1 = _sig(f) * c + _sig(i) * np.tanh(g)
        return _sig(o) * np.tanh(c1), c1
    ir, iz, in_ = np.split(gi, 3, axis=-1)
    hr, hz, hn = np.split(gh, 3, axis=-1)
    r, z = _sig(ir + hr), _sig(iz + hz)
    n = np.tanh(in_ + r * hn)
    return (1 - z) * n + z * h, None


def np_rnn(mode, x, sd, num_layers, bidirectional, h0=None, c0=None):
    """Whole multi-layer (bi)directional network on time-major x (L, B, I)."""
    L, B, _ = x.shape
    D = 2 if bidirectional else 1
    H = sd["weight_hh_l0"].shape[1]
    hn, cn = [], []
    inp = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = sd["weight_ih" + sfx], sd["weight_hh" + sfx]
            b_ih, b_hh = sd.get("bias_ih" + sfx), sd.get("bias_hh" + sfx)
            k = layer * D + d
            h = np.zeros((B, H)) if h0 is None else h0[k]
            c = np.zeros((B, H)) if c0 is None else c0[k]
            seq = [None] * L
            for t in (range(L - 1, -1, -1) if d else range(L)):
                h, c = np_cell(mode, inp[t], h, c, w_ih, w_hh, b_ih, b_hh)
                seq[t] = h
            outs.append(np.stack(seq))
            hn.append(h)
            cn.append(c)
        inp = np.concatenate(outs, axis=-1)
    return inp, np.stack(hn), (np.stack(cn) if mode == "LSTM" else None)


def state(module) -> dict:
    return {k: arr(v).astype(np.float64) for k, v in module.state_dict().items()}


def run(module, x, hx=None):
    """Forward; returns (output, h_n, c_n or None)."""
    out, hid = module(x, hx)
    if isinstance(hid, tuple):
        return out, hid[0], hid[1]
    return out, hid, None


# ---------------------------------------------------------------- forward vs NumPy reference
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_forward_matches_numpy_reference(mode, batch_first, bidirectional):
    L, B, n_in, H = 5, 3, 4, 6
    m = make(mode, n_in, H, num_layers=2, batch_first=batch_first, bidirectional=bidirectional,
             dtype=cr.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((L, B, n_in))
    D = 2 if bidirectional else 1
    h0 = rng.standard_normal((2 * D, B, H))
    c0 = rng.standard_normal((2 * D, B, H))
    ref_out, ref_h, ref_c = np_rnn(mode, x, state(m), 2, bidirectional, h0, c0)
    xin = x.transpose(1, 0, 2) if batch_first else x
    hx = (cr.tensor(h0), cr.tensor(c0)) if mode == "LSTM" else cr.tensor(h0)
    out, h, c = run(m, cr.tensor(xin), hx)
    got = arr(out).transpose(1, 0, 2) if batch_first else arr(out)
    np.testing.assert_allclose(got, ref_out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(arr(h), ref_h, rtol=1e-12, atol=1e-12)
    if mode == "LSTM":
        np.testing.assert_allclose(arr(c), ref_c, rtol=1e-12, atol=1e-12)
    # the output's last step is the last layer's final state (forward direction)
    np.testing.assert_allclose(ref_out[-1, :, :H], ref_h[-D], rtol=0, atol=0)


@pytest.mark.parametrize("mode", MODES)
def test_forward_without_bias_and_float32(mode):
    m = make(mode, 3, 5, bias=False)
    assert [n for n, _ in m.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    x = np.random.default_rng(2).standard_normal((4, 2, 3)).astype(np.float32)
    out, h, _ = run(m, cr.tensor(x))
    ref_out, ref_h, _ = np_rnn(mode, x.astype(np.float64), state(m), 1, False)
    assert out.dtype == cr.float32
    np.testing.assert_allclose(arr(out), ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arr(h), ref_h, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- hand-checked tiny cases
def test_lstm_zero_weights_by_hand():
    # every gate pre-activation is 0: i = f = o = 1/2, g = 0, so c_t = c_{t-1} / 2 and
    # h_t = tanh(c_t) / 2, in both directions
    m = LSTM(1, 2, bidirectional=True, dtype=cr.float64)
    for p in m.parameters():
        p.detach()._data[...] = 0
    c0 = np.array([[1.0, -2.0]])
    hx = (cr.zeros(2, 1, 2, dtype=cr.float64), cr.tensor(np.stack([c0, 4 * c0])))
    out, (h, c) = m(cr.ones(3, 1, 1, dtype=cr.float64), hx)
    fwd_c = [c0 / 2, c0 / 4, c0 / 8]
    bwd_c = [4 * c0 / 8, 4 * c0 / 4, 4 * c0 / 2]  # the reverse direction starts at t = 2
    for t in range(3):
        np.testing.assert_allclose(arr(out)[t, :, :2], np.tanh(fwd_c[t]) / 2, rtol=1e-15)
        np.testing.assert_allclose(arr(out)[t, :, 2:], np.tanh(bwd_c[t]) / 2, rtol=1e-15)
    np.testing.assert_allclose(arr(c), np.stack([fwd_c[2], bwd_c[0]]), rtol=1e-15)
    np.testing.assert_allclose(arr(h), np.tanh(np.stack([fwd_c[2], bwd_c[0]])) / 2, rtol=1e-15)


def test_gru_and_rnn_cells_by_hand():
    # GRU, zero weights: r = z = 1/2, n = 0, so h' = h / 2
    cell = GRUCell(2, 3, dtype=cr.float64)
    for p in cell.parameters():
        p.detach()._data[...] = 0
    h = cr.tensor([1.0, -4.0, 8.0], dtype=cr.float64)
    np.testing.assert_allclose(arr(cell(cr.ones(2, dtype=cr.float64), h)), [0.5, -2.0, 4.0])
    # ReLU RNN: h' = relu(W_ih x + b_ih + W_hh h + b_hh), worked out by hand
    rnn = RNNCell(2, 2, nonlinearity="relu", dtype=cr.float64)
    rnn.load_state_dict({"weight_ih": cr.tensor([[1.0, 2.0], [-1.0, 0.0]]),
                         "weight_hh": cr.tensor([[0.5, 0.0], [0.0, 3.0]]),
                         "bias_ih": cr.tensor([0.1, 0.2]), "bias_hh": cr.tensor([0.0, -0.2])})
    f64 = cr.float64
    out = rnn(cr.tensor([1.0, 1.0], dtype=f64), cr.tensor([2.0, 1.0], dtype=f64))
    np.testing.assert_allclose(arr(out), [1 + 2 + 0.1 + 1.0, max(-1 + 0.2 + 3 - 0.2, 0)])
    out = rnn(cr.tensor([5.0, 0.0], dtype=f64), cr.tensor([0.0, 0.0], dtype=f64))
    np.testing.assert_allclose(arr(out), [5.1, 0.0])  # relu cuts -5 + 0.2 - 0.2


# ---------------------------------------------------------------- fused scans vs composite cells
def _cell_loop(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """The per-step composite: a loop over chainrule's cell functions (time-major x)."""
    L = x.shape[0]
    h, c = h0, c0
    seq = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        if mode == "LSTM":
            h, c = R.lstm_cell(x[t], (h, c), w_ih, w_hh, b_ih, b_hh)
        elif mode == "GRU":
            h = R.gru_cell(x[t], h, w_ih, w_hh, b_ih, b_hh)
        else:
            fn = R.rnn_tanh_cell if mode == "RNN_TANH" else R.rnn_relu_cell
            h = fn(x[t], h, w_ih, w_hh, b_ih, b_hh)
        seq[t] = h
    return cr.stack(seq), h, c


def _layer(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_first):
    if mode == "LSTM":
        out, (h, c) = R.lstm_layer(x, (h0, c0), w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                   batch_first=batch_first)
        return out, h, c
    if mode == "GRU":
        out, h = R.gru_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                             batch_first=batch_first)
        return out, h, None
    out, h = R.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                         nonlinearity="tanh" if mode == "RNN_TANH" else "relu",
                         batch_first=batch_first)
    return out, h, None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_scan_matches_composite_cells(mode, reverse, batch_first):
    L, B, n_in, H = 4, 3, 2, 5
    G = GATES[mode] * H
    rng = np.random.default_rng(3)

    def leaf(*shape):
        return cr.tensor(rng.standard_normal(shape) * 0.6, dtype=cr.float64,
                         requires_grad=True)

    x, h0, c0 = leaf(L, B, n_in), leaf(B, H), leaf(B, H)
    w_ih, w_hh, b_ih, b_hh = leaf(G, n_in), leaf(G, H), leaf(G), leaf(G)
    leaves = [x, h0, w_ih, w_hh, b_ih, b_hh] + ([c0] if mode == "LSTM" else [])
    out_c, h_c, c_c = _cell_loop(mode, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse)
    xin = x.permute(1, 0, 2) if batch_first else x
    out_s, h_s, c_s = _layer(mode, xin, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, batch_first)
    if batch_first:
        out_s = out_s.permute(1, 0, 2)
    np.testing.assert_allclose(arr(out_s), arr(out_c), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(arr(h_s), arr(h_c), rtol=1e-12, atol=1e-13)
    v_out, v_h = rng.standard_normal(out_c.shape), rng.standard_normal(h_c.shape)

    def loss(out, h, c):
        total = (out * cr.tensor(v_out)).sum() + (h * cr.tensor(v_h)).sum()
        return total + (c * c).sum() if c is not None else total

    g_c = cr.autograd.grad(loss(out_c, h_c, c_c), leaves)
    g_s = cr.autograd.grad(loss(out_s, h_s, c_s), leaves)
    for a, b in zip(g_s, g_c):
        np.testing.assert_allclose(arr(a), arr(b), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- derivatives: cells
def _f64(rng, *shape, scale=0.7):
    return cr.tensor(rng.standard_normal(shape) * scale, dtype=cr.float64, requires_grad=True)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu", "lstm", "gru"])
def test_cell_gradcheck_and_gradgradcheck(cell):
    rng = np.random.default_rng(4)
    B, n_in, H = 2, 3, 2
    G = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell] * H
    args = [_f64(rng, B, n_in), _f64(rng, B, H), _f64(rng, G, n_in), _f64(rng, G, H), _f64(rng, G),
            _f64(rng, G)]
    if cell == "lstm":
        args.append(_f64(rng, B, H))

        def fn(x, h, w_ih, w_hh, b_ih, b_hh, c):
            return R.lstm_cell(x, (h, c), w_ih, w_hh, b_ih, b_hh)
    else:
        fn = {"rnn_tanh": R.rnn_tanh_cell, "rnn_relu": R.rnn_relu_cell,
              "gru": R.gru_cell}[cell]
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


# ---------------------------------------------------------------- derivatives: scans
def _scan_case(name, rng, L=3, B=2, H=2, reverse=False):
    """(primitive call, float64 inputs) for a fused scan with tiny sizes."""
    if name == "lstm":
        args = [_f64(rng, L, B, 4 * H), _f64(rng, 4 * H, H), _f64(rng, B, H), _f64(rng, B, H)]
        return (lambda *a: PR.lstm_scan(*a, reverse=reverse)), args
    if name == "gru":
        args = [_f64(rng, L, B, 3 * H), _f64(rng, 3 * H, H), _f64(rng, 3 * H), _f64(rng, B, H)]
        return (lambda *a: PR.gru_scan(*a, reverse=reverse)), args
    nl = name.split("_")[1]
    args = [_f64(rng, L, B, H), _f64(rng, H, H), _f64(rng, B, H)]
    return (lambda *a: PR.rnn_scan(*a, nonlinearity=nl, reverse=reverse)), args


SCANS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


def _total(out):
    """A scalar from every output of a scan (one or several outputs), each weighted apart."""
    outs = out if isinstance(out, tuple) else (out,)
    return sum(((k + 1) * o).sum() for k, o in enumerate(outs))


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradcheck_and_gradgradcheck(name, reverse):
    # random cotangents on every output (h, c, gates ...), not only on h
    fn, args = _scan_case(name, np.random.default_rng(5), reverse=reverse)
    assert gradcheck(fn, args, n_directions=3)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("name", SCANS)
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_jvp_rules_match_finite_differences(name, reverse):
    rng = np.random.default_rng(6)
    _, args = _scan_case(name, rng, reverse=reverse)
    prim = {"lstm": PR.lstm_scan, "gru": PR.gru_scan}.get(name, PR.rnn_scan)
    params = {"reverse": reverse}
    if name.startswith("rnn"):
        params["nonlinearity"] = name.split("_")[1]
    xs = [a._data for a in args]

    def run(*a):
        res = prim.impl(np, *a, **params)
        return res if prim.multi else (res,)

    def wrapped(res):
        return tuple(_wrap(o) for o in res) if prim.multi else _wrap(res[0])

    out = run(*xs)
    eps = 1e-6
    # one input's tangent at a time (the others None), then all of them together
    for ks in [[k] for k in range(len(xs))] + [list(range(len(xs)))]:
        ts = [rng.standard_normal(x.shape) if k in ks else None for k, x in enumerate(xs)]
        plus = [x if t is None else x + eps * t for x, t in zip(xs, ts)]
        minus = [x if t is None else x - eps * t for x, t in zip(xs, ts)]
        fds = [(p - m) / (2 * eps) for p, m in zip(run(*plus), run(*minus))]
        raw = prim.jvp_all(RAW, ts, *xs, out if prim.multi else out[0], **params)
        recorded = prim.jvp_all(TENSOR, [None if t is None else _wrap(t) for t in ts],
                                *[_wrap(x) for x in xs], wrapped(out), **params)
        if not prim.multi:
            raw, recorded = (raw,), (recorded,)
        assert len(raw) == len(fds) == len(recorded)
        for r, fd, rec in zip(raw, fds, recorded):
            np.testing.assert_allclose(r, fd, rtol=1e-6, atol=1e-8)
            np.testing.assert_allclose(rec._data, r, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cotangent", ["all", "h only", "c only"])
def test_raw_kernel_matches_rule_language(name, reverse, cotangent):
    # the hand-fused first-order backward and the rule-language text compute the same thing
    rng = np.random.default_rng(7)
    L, B, H = 4, 3, 2
    if name == "lstm":
        xs = [rng.standard_normal(s) for s in [(L, B, 4 * H), (4 * H, H), (B, H), (B, H)]]
        out = PR._lstm_impl(np, *xs, reverse)
        fast, slow = PR._lstm_backward_raw, PR._lstm_backward
    else:
        xs = [rng.standard_normal(s) for s in [(L, B, 3 * H), (3 * H, H), (3 * H,), (B, H)]]
        out = PR._gru_impl(np, *xs, reverse)
        fast, slow = PR._gru_backward_raw, PR._gru_backward
    gs = [rng.standard_normal(o.shape) for o in out]
    # None marks an output that no gradient reached: the kernel skips its terms, the rule
    # text adds zeros; both must also equal the all-outputs result with zeros there
    keep = {"all": (0, 1, 2), "h only": (0,), "c only": (1,)}[cotangent]
    partial = [g if k in keep else None for k, g in enumerate(gs)]
    zeroed = [g if k in keep else np.zeros_like(g) for k, g in enumerate(gs)]
    want = slow(RAW, zeroed, *xs, out, reverse)
    for got in (fast(partial, *xs, out, reverse), slow(RAW, partial, *xs, out, reverse),
                fast(zeroed, *xs, out, reverse)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_module_gradcheck(mode):
    # whole module, 2 layers, bidirectional, float64: input and initial state
    m = make(mode, 2, 2, num_layers=2, bidirectional=True, dtype=cr.float64)
    rng = np.random.default_rng(8)
    x, h0 = _f64(rng, 3, 2, 2), _f64(rng, 4, 2, 2)
    if mode == "LSTM":
        c0 = _f64(rng, 4, 2, 2)

        def fn(x, h0, c0):
            out, (h, c) = m(x, (h0, c0))
            return out, h, c
        assert gradcheck(fn, (x, h0, c0))
    else:
        assert gradcheck(lambda x, h0: m(x, h0), (x, h0))


# ---------------------------------------------------------------- the shared backward pass
def test_shared_backward_two_nodes_one_cotangent():
    # add passes one cotangent object to both scans: each node must still get its own
    rng = np.random.default_rng(9)
    fn, a1 = _scan_case("lstm", rng)
    _, a2 = _scan_case("lstm", rng)
    g1 = cr.autograd.grad(fn(*a1)[0].sum(), a1)
    g2 = cr.autograd.grad(fn(*a2)[0].sum(), a2)
    both = cr.autograd.grad((fn(*a1)[0] + fn(*a2)[0]).sum(), a1 + a2)
    for a, b in zip(both, g1 + g2):
        np.testing.assert_allclose(arr(a), arr(b), rtol=1e-12)


def test_shared_backward_repeated_and_partial():
    rng = np.random.default_rng(10)
    fn, args = _scan_case("gru", rng, reverse=True)
    y = fn(*args)
    v = tuple(cr.tensor(rng.standard_normal(o.shape)) for o in y)
    full = cr.autograd.grad(y, args, grad_outputs=v, retain_graph=True)
    # one input at a time, same cotangent object, graph retained
    for k in range(len(args)):
        (gk,) = cr.autograd.grad(y, args[k], grad_outputs=v, retain_graph=True)
        np.testing.assert_allclose(arr(gk), arr(full[k]), rtol=1e-12)
    # accumulation over two backward passes doubles every gradient
    cr.autograd.backward(y, v, retain_graph=True)
    cr.autograd.backward(y, v)
    for a, f in zip(args, full):
        np.testing.assert_allclose(arr(a.grad), 2 * arr(f), rtol=1e-12)


@pytest.mark.parametrize("name,kernel", [("lstm", "lstm_backward"), ("gru", "gru_backward")])
def test_one_backward_recurrence_per_node(monkeypatch, name, kernel):
    """The scans' single vjp rule runs the backward recurrence once for all four inputs."""
    from chainrule.primitives.fast import K

    calls = []
    real = getattr(K, kernel)
    monkeypatch.setattr(K, kernel, lambda *a: calls.append(1) or real(*a))
    fn, args = _scan_case(name, np.random.default_rng(11))
    _total(fn(*args)).backward()
    assert calls == [1] and all(a.grad is not None for a in args)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_unused_outputs_get_none_and_one_output_alone(name):
    """Only the hidden states used: the rule gets None for the other outputs, and the
    gradients equal those of the same loss with zero cotangents passed for them."""
    seen = []
    prim = {"lstm": PR.lstm_scan, "gru": PR.gru_scan}[name]
    real = prim.vjp_all

    def spy(F, gs, *a, **p):
        seen.append(tuple(g is None for g in gs))
        return real(F, gs, *a, **p)

    fn, args = _scan_case(name, np.random.default_rng(12))
    prim.vjp_all = spy
    try:
        g_h = cr.autograd.grad(fn(*args)[0].sum(), args)
        y = fn(*args)
        zeros = (cr.ones(*y[0].shape, dtype=cr.float64),) + tuple(
            cr.zeros(*o.shape, dtype=cr.float64) for o in y[1:])
        g_all = cr.autograd.grad(y, args, grad_outputs=zeros)
    finally:
        prim.vjp_all = real
    assert seen == [(False, True, True), (False, False, False)]
    for a, b in zip(g_h, g_all):
        np.testing.assert_allclose(arr(a), arr(b), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- module behaviour
def test_state_dict_names_shapes_and_order():
    m = LSTM(3, 4, num_layers=2, bidirectional=True)
    names = [f"{k}_l{layer}{s}" for layer in range(2) for s in ("", "_reverse")
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    sd = m.state_dict()
    assert list(sd) == names
    assert sd["weight_ih_l0"].shape == (16, 3) and sd["weight_ih_l1"].shape == (16, 8)
    assert sd["weight_hh_l1_reverse"].shape == (16, 4) and sd["bias_hh_l0"].shape == (16,)
    assert [len(ws) for ws in m.all_weights] == [4, 4, 4, 4]
    assert GRU(3, 4, bias=False).state_dict()["weight_hh_l0"].shape == (12, 4)
    cell = LSTMCell(3, 4)
    assert [(k, v.shape) for k, v in cell.state_dict().items()] == [
        ("weight_ih", (16, 3)), ("weight_hh", (16, 4)), ("bias_ih", (16,)), ("bias_hh", (16,))]
    assert list(RNNCell(3, 4, bias=False).state_dict()) == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN, LSTMCell, GRUCell, RNNCell])
def test_init_is_uniform_in_one_over_sqrt_hidden(cls):
    m = cls(50, 400)
    bound = 1 / math.sqrt(400)
    for p in m.parameters():
        a = arr(p)
        assert np.abs(a).max() <= bound
        if a.size >= 10_000:  # U(-b, b) has std b / sqrt(3)
            assert abs(a.std() - bound / math.sqrt(3)) < 0.02 * bound


def test_reset_parameters_redraws():
    m = GRU(3, 4)
    before = arr(m.weight_hh_l0).copy()
    m.reset_parameters()
    assert not np.array_equal(before, arr(m.weight_hh_l0))


@pytest.mark.parametrize("mode", MODES)
def test_dropout_between_layers(mode):
    # p = 1 zeroes the first layer's output, so the second layer sees zeros; the last layer's
    # output itself is never dropped; eval mode turns dropout off
    m = make(mode, 3, 4, num_layers=2, dropout=1.0, dtype=cr.float64)
    x = cr.randn(5, 2, 3, dtype=cr.float64)
    out, *_ = run(m, x)
    zeros = cr.zeros(5, 2, 4, dtype=cr.float64)
    w = [getattr(m, n) for n in m._all_weights[1]]
    expect, _, _ = _layer(mode, zeros, None, None, *w, reverse=False, batch_first=False)
    np.testing.assert_allclose(arr(out), arr(expect), rtol=1e-14)
    assert np.abs(arr(out)).max() > 0
    m.eval()
    out_eval, *_ = run(m, x)
    m2 = make(mode, 3, 4, num_layers=2, dtype=cr.float64)
    m2.load_state_dict(m.state_dict())
    np.testing.assert_allclose(arr(out_eval), arr(run(m2, x)[0]), rtol=1e-14)


def test_dropout_in_training_is_functional_dropout_on_layer_outputs():
    m = RNN(1, 200, num_layers=2, dropout=0.5, nonlinearity="relu", bias=False)
    x = cr.ones(1, 1, 1)
    layer1 = [getattr(m, n) for n in m._all_weights[0]]
    layer2 = [getattr(m, n) for n in m._all_weights[1]]
    h1, _ = R.rnn_layer(x, None, *layer1, nonlinearity="relu")
    cr.manual_seed(123)  # not the init's seed: its uniform draws would mirror the mask
    out = m(x)[0]
    cr.manual_seed(123)
    kept = cr.nn.functional.dropout(h1, 0.5, True)
    expect, _ = R.rnn_layer(kept, None, *layer2, nonlinearity="relu")
    np.testing.assert_allclose(arr(out), arr(expect), rtol=1e-6)
    on = arr(h1) != 0
    assert 0.3 < (arr(kept)[on] == 0).mean() < 0.7
    np.testing.assert_allclose(arr(kept)[arr(kept) != 0], 2 * arr(h1)[arr(kept) != 0],
                               rtol=1e-6)


def test_dropout_warning_and_repr():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        LSTM(2, 3, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTM(2, 3, num_layers=2, dropout=0.5)
    assert repr(LSTM(3, 4)) == "LSTM(3, 4)"
    assert (repr(RNN(3, 4, 2, nonlinearity="relu", bias=False, batch_first=True, dropout=0.1,
                     bidirectional=True))
            == "RNN(3, 4, num_layers=2, bias=False, batch_first=True, dropout=0.1, "
               "bidirectional=True)")
    assert repr(RNNCell(3, 4, bias=False, nonlinearity="relu")) == \
        "RNNCell(3, 4, bias=False, nonlinearity=relu)"
    assert repr(GRUCell(3, 4)) == "GRUCell(3, 4)"


@pytest.mark.parametrize("mode", MODES)
def test_unbatched_input(mode):
    m = make(mode, 3, 4, num_layers=2, bidirectional=True, dtype=cr.float64)
    x = cr.randn(5, 3, dtype=cr.float64)
    h0 = cr.randn(4, 4, dtype=cr.float64)
    hx = (h0, cr.randn(4, 4, dtype=cr.float64)) if mode == "LSTM" else h0
    out, h, c = run(m, x, hx)
    assert out.shape == (5, 8) and h.shape == (4, 4)
    hx_b = (hx[0].unsqueeze(1), hx[1].unsqueeze(1)) if mode == "LSTM" else h0.unsqueeze(1)
    out_b, h_b, c_b = run(m, x.unsqueeze(1), hx_b)
    np.testing.assert_allclose(arr(out), arr(out_b)[:, 0], rtol=1e-14)
    np.testing.assert_allclose(arr(h), arr(h_b)[:, 0], rtol=1e-14)
    if mode == "LSTM":
        np.testing.assert_allclose(arr(c), arr(c_b)[:, 0], rtol=1e-14)


def test_zero_batch_and_dtype_conversion():
    m = LSTM(3, 4, num_layers=2)
    out, (h, _) = m(cr.randn(5, 0, 3, requires_grad=True))
    assert out.shape == (5, 0, 4) and h.shape == (2, 0, 4)
    out.sum().backward()
    assert float(m.weight_hh_l0.grad.abs().sum()) == 0.0
    m.double()
    assert m(cr.randn(2, 1, 3, dtype=cr.float64))[0].dtype == cr.float64
    m.flatten_parameters()


def test_cells_batched_unbatched_and_default_state():
    rng = np.random.default_rng(12)
    for cell in (RNNCell(3, 4, dtype=cr.float64), GRUCell(3, 4, dtype=cr.float64),
                 LSTMCell(3, 4, dtype=cr.float64)):
        x = cr.tensor(rng.standard_normal(3))
        out = cell(x)
        out_b = cell(x.unsqueeze(0), None)
        zero = cr.zeros(4, dtype=cr.float64)
        out_z = cell(x, (zero, zero) if isinstance(cell, LSTMCell) else zero)
        if isinstance(cell, LSTMCell):
            assert out[0].shape == (4,) and out[1].shape == (4,)
            np.testing.assert_allclose(arr(out[0]), arr(out_b[0])[0], rtol=1e-14)
            np.testing.assert_allclose(arr(out[1]), arr(out_z[1]), rtol=1e-14)
        else:
            assert out.shape == (4,)
            np.testing.assert_allclose(arr(out), arr(out_b)[0], rtol=1e-14)
            np.testing.assert_allclose(arr(out), arr(out_z), rtol=1e-14)


# ---------------------------------------------------------------- errors
def test_constructor_errors():
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        LSTM(2, 3, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        GRU(2, 0)
    with pytest.raises(ValueError, match="num_layers must be greater than zero"):
        RNN(2, 3, num_layers=0)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        LSTM(2, 3.5)
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        RNNCell(2, 3, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="unrecognized RNN mode"):
        RNNBase("LSTMX", 2, 3)


def test_forward_errors():
    m = LSTM(3, 4, num_layers=2)
    with pytest.raises(ShapeError, match="Expected input to be 2D or 3D, got 4D"):
        m(cr.randn(1, 2, 3, 4))
    with pytest.raises(ShapeError, match=r"input.size\(-1\) must be equal to input_size. "
                                         r"Expected 3, got 5"):
        m(cr.randn(2, 3, 5))
    with pytest.raises(ShapeError, match=r"Expected hidden\[0\] size \(2, 3, 4\), got "
                                         r"\(1, 3, 4\)"):
        m(cr.randn(2, 3, 3), (cr.randn(1, 3, 4), cr.randn(2, 3, 4)))
    with pytest.raises(ShapeError, match="For unbatched 2-D input, hx should also be 2-D"):
        m(cr.randn(2, 3), (cr.randn(2, 1, 4), cr.randn(2, 1, 4)))
    with pytest.raises(ShapeError, match="For batched 3-D input, hx should also be 3-D"):
        m(cr.randn(2, 1, 3), (cr.randn(2, 4), cr.randn(2, 4)))
    with pytest.raises(TypeError, match="input dtype \\(float64\\) does not match weight dtype "
                                        "\\(float32\\)"):
        m(cr.randn(2, 3, 3, dtype=cr.float64))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        m(cr.randn(2, 3, 3), cr.randn(2, 3, 4))
    with pytest.raises(TypeError, match="both h_0 and c_0"):
        m(cr.randn(2, 3, 3), (cr.randn(2, 3, 4), None))
    with pytest.raises(ShapeError, match="Expected hidden size"):
        GRU(3, 4)(cr.randn(2, 3, 3), cr.randn(1, 2, 4))
    with pytest.raises(ShapeError, match="sequence length to be larger than 0"):
        GRU(3, 4)(cr.randn(0, 3, 3))
    with pytest.raises(TypeError, match="input must be a Tensor"):
        GRU(3, 4)(np.zeros((2, 3, 3)))


def test_cell_and_functional_errors():
    cell = LSTMCell(3, 4)
    with pytest.raises(ShapeError, match="Expected input to be 1D or 2D, got 3D"):
        cell(cr.randn(2, 3, 3))
    with pytest.raises(ShapeError, match="inconsistent input_size: got 5 expected 3"):
        cell(cr.randn(2, 5))
    with pytest.raises(ShapeError, match=r"h must have shape \(2, 4\)"):
        cell(cr.randn(2, 3), (cr.randn(3, 4), cr.randn(3, 4)))
    with pytest.raises(ShapeError, match="Expected hidden to be 1D like the input"):
        GRUCell(3, 4)(cr.randn(3), cr.randn(1, 4))
    with pytest.raises(TypeError, match="hx must be a tuple"):
        cell(cr.randn(2, 3), cr.randn(2, 4))
    w_ih, w_hh = cr.randn(8, 3), cr.randn(8, 2)
    with pytest.raises(ShapeError, match=r"weight_hh must have shape \(4 \* hidden_size"):
        R.lstm_cell(cr.randn(3), (cr.randn(2), cr.randn(2)), w_ih, cr.randn(8, 3))
    with pytest.raises(ShapeError, match="bias_ih must have shape"):
        R.gru_cell(cr.randn(3), cr.randn(2), cr.randn(6, 3), cr.randn(6, 2), cr.randn(5))
    with pytest.raises(TypeError, match="weight_hh has dtype float64 but input has float32"):
        R.rnn_tanh_cell(cr.randn(3), cr.randn(2), cr.randn(2, 3),
                        cr.randn(2, 2, dtype=cr.float64))
    with pytest.raises(ShapeError, match=r"input must be 3-D \(seq, batch, feature\)"):
        R.lstm_layer(cr.randn(3, 3), None, w_ih, w_hh)
    with pytest.raises(ShapeError, match=r"expected h0 of shape \(4, 2\)"):
        R.lstm_layer(cr.randn(5, 4, 3), (cr.randn(3, 2), None), w_ih, w_hh)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        R.rnn_layer(cr.randn(5, 4, 3), None, cr.randn(2, 3), cr.randn(2, 2), nonlinearity="gelu")


# ---------------------------------------------------------------- PyTorch oracle
def _torch_state(tm) -> dict:
    return {k: cr.tensor(v.detach().numpy().copy()) for k, v in tm.state_dict().items()}


@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_torch(mode, batch_first, bidirectional, with_state):
    L, B, n_in, H, layers = 5, 3, 4, 6, 2
    D = 2 if bidirectional else 1
    torch.manual_seed(0)
    tm = make_torch(mode, n_in, H, num_layers=layers, batch_first=batch_first,
                    bidirectional=bidirectional).double()
    m = make(mode, n_in, H, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional,
             dtype=cr.float64)
    assert list(m.state_dict()) == list(tm.state_dict())
    assert str(m.load_state_dict(_torch_state(tm))) == "<All keys matched successfully>"
    shape = (B, L, n_in) if batch_first else (L, B, n_in)
    xt = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    x = cr.tensor(xt.detach().numpy(), requires_grad=True)
    hx_t = hx = None
    if with_state:
        states_t = [torch.randn(layers * D, B, H, dtype=torch.float64, requires_grad=True)
                    for _ in range(2 if mode == "LSTM" else 1)]
        states = [cr.tensor(s.detach().numpy(), requires_grad=True) for s in states_t]
        hx_t = tuple(states_t) if mode == "LSTM" else states_t[0]
        hx = tuple(states) if mode == "LSTM" else states[0]
    out_t, h_t, c_t = run(tm, xt, hx_t)
    out, h, c = run(m, x, hx)
    np.testing.assert_allclose(arr(out), arr(out_t), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(arr(h), arr(h_t), rtol=1e-10, atol=1e-12)
    if mode == "LSTM":
        np.testing.assert_allclose(arr(c), arr(c_t), rtol=1e-10, atol=1e-12)
    # a loss that reads the output, h_n and c_n; compare every gradient
    v = np.random.default_rng(13).standard_normal(out.shape)
    loss_t = (out_t * torch.from_numpy(v)).sum() + (h_t ** 2).sum()
    loss = (out * cr.tensor(v)).sum() + (h ** 2).sum()
    if mode == "LSTM":
        loss_t = loss_t + (c_t * h_t).sum()
        loss = loss + (c * h).sum()
    loss_t.backward()
    loss.backward()
    params = dict(m.named_parameters())
    for name, p in tm.named_parameters():
        np.testing.assert_allclose(arr(params[name].grad), p.grad.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=name)
    np.testing.assert_allclose(arr(x.grad), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    if with_state:
        for s, s_t in zip(states, states_t):
            np.testing.assert_allclose(arr(s.grad), s_t.grad.numpy(), rtol=1e-9, atol=1e-11)


@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch_float32_unbatched_no_bias(mode):
    torch.manual_seed(1)
    tm = make_torch(mode, 3, 5, bias=False)
    m = make(mode, 3, 5, bias=False)
    m.load_state_dict(_torch_state(tm))
    xt = torch.randn(7, 3)
    out_t, h_t, _ = run(tm, xt)
    out, h, _ = run(m, cr.tensor(xt.numpy()))
    assert out.dtype == cr.float32 and out.shape == tuple(out_t.shape)
    np.testing.assert_allclose(arr(out), arr(out_t), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arr(h), arr(h_t), rtol=1e-5, atol=1e-6)


@needs_torch
def test_eval_with_dropout_matches_torch():
    torch.manual_seed(2)
    tm = torch.nn.LSTM(3, 4, num_layers=3, dropout=0.3).double().eval()
    m = LSTM(3, 4, num_layers=3, dropout=0.3, dtype=cr.float64).eval()
    m.load_state_dict(_torch_state(tm))
    xt = torch.randn(4, 2, 3, dtype=torch.float64)
    np.testing.assert_allclose(arr(m(cr.tensor(xt.numpy()))[0]), arr(tm(xt)[0]), rtol=1e-12)


@needs_torch
@pytest.mark.parametrize("kind", ["RNNCell_tanh", "RNNCell_relu", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(kind, batched):
    torch.manual_seed(3)
    name, _, nl = kind.partition("_")
    kw = {"nonlinearity": nl} if nl else {}
    tm = getattr(torch.nn, name)(4, 5, **kw).double()
    m = {"RNNCell": RNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}[name](
        4, 5, dtype=cr.float64, **kw)
    assert list(m.state_dict()) == list(tm.state_dict())
    m.load_state_dict(_torch_state(tm))
    lead = (3,) if batched else ()
    xt = torch.randn(*lead, 4, dtype=torch.float64, requires_grad=True)
    ht = torch.randn(*lead, 5, dtype=torch.float64, requires_grad=True)
    ct = torch.randn(*lead, 5, dtype=torch.float64, requires_grad=True)
    x, h, c = (cr.tensor(t.detach().numpy(), requires_grad=True) for t in (xt, ht, ct))
    if name == "LSTMCell":
        out_t, out = tm(xt, (ht, ct)), m(x, (h, c))
        loss_t = (out_t[0] ** 2).sum() + (out_t[1] * 3).sum()
        loss = (out[0] ** 2).sum() + (out[1] * 3).sum()
        np.testing.assert_allclose(arr(out[1]), arr(out_t[1]), rtol=1e-12)
        out, out_t = out[0], out_t[0]
        leaves = ((x, xt), (h, ht), (c, ct))
    else:
        out_t, out = tm(xt, ht), m(x, h)
        loss_t, loss = (out_t ** 2).sum(), (out ** 2).sum()
        leaves = ((x, xt), (h, ht))
    np.testing.assert_allclose(arr(out), arr(out_t), rtol=1e-12)
    loss_t.backward()
    loss.backward()
    for a, b in leaves:
        np.testing.assert_allclose(arr(a.grad), b.grad.numpy(), rtol=1e-10, atol=1e-12)
    params = dict(m.named_parameters())
    for pname, p in tm.named_parameters():
        np.testing.assert_allclose(arr(params[pname].grad), p.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
    # no state given: zeros, as in PyTorch
    np.testing.assert_allclose(
        arr(m(x)[0] if name == "LSTMCell" else m(x)),
        arr(tm(xt)[0] if name == "LSTMCell" else tm(xt)), rtol=1e-12)


@needs_torch
def test_repr_matches_torch():
    for args, kw in [((3, 4), {}), ((3, 4, 2), {"batch_first": True, "dropout": 0.2}),
                     ((3, 4), {"bias": False, "bidirectional": True})]:
        for cls in (LSTM, GRU, RNN):
            tcls = getattr(torch.nn, cls.__name__)
            assert repr(cls(*args, **kw)) == repr(tcls(*args, **kw))
    assert repr(RNNCell(3, 4, nonlinearity="relu")) == repr(
        torch.nn.RNNCell(3, 4, nonlinearity="relu"))


# ---------------------------------------------------------------- docstrings
@pytest.mark.parametrize("name", ["primitives", "ops", "nn"])
def test_doctests(name):
    import chainrule.nn.recurrent as NR

    if name == "nn" and not hasattr(cr.nn, "LSTM"):
        pytest.skip("the examples use nn.LSTM & co., exported from chainrule.nn by the lead")
    mod = {"primitives": PR, "ops": R, "nn": NR}[name]
    res = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0
