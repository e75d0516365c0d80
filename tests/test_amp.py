"""chainrule.autocast and chainrule.amp.GradScaler against torch.autocast and
torch.amp.GradScaler (CPU): the same op lists, nesting and backward; the same scale sequence,
skipped steps and state_dict on the same gradient sequence."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this module")
pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")

import chainrule  # noqa: E402
import chainrule.nn.functional as F  # noqa: E402
from chainrule import nn  # noqa: E402

TF = torch.nn.functional
BF16_TOL = 2 * 2.0 ** -8  # a few bfloat16 roundings on values of order 1


def _pair(rng, *shape, low=-1.0, high=1.0):
    a = rng.uniform(low, high, shape).astype(np.float32)
    return chainrule.tensor(a), torch.from_numpy(a.copy())


def _cases(rng):
    """(name, chainrule thunk, torch thunk) over float32 inputs (plus a few others)."""
    x, tx = _pair(rng, 4, 8)
    w, tw = _pair(rng, 6, 8)
    b, tb = _pair(rng, 6)
    img, timg = _pair(rng, 2, 3, 7, 7)
    k, tk = _pair(rng, 4, 3, 3, 3)
    q, tq = _pair(rng, 2, 5, 8)
    v1, tv1 = _pair(rng, 8)
    p, tp = _pair(rng, 4, 8, low=0.1, high=0.9)
    y = rng.integers(0, 8, 4)
    cy, ty = chainrule.tensor(y), torch.from_numpy(y)
    xb, txb = x.bfloat16(), tx.bfloat16()
    x64, tx64 = x.double(), tx.double()
    return [
        ("matmul", lambda: x @ w.mT, lambda: tx @ tw.mT),
        ("mm", lambda: chainrule.mm(x, w.mT), lambda: torch.mm(tx, tw.mT)),
        ("bmm", lambda: chainrule.bmm(q, q.mT), lambda: torch.bmm(tq, tq.mT)),
        ("einsum", lambda: chainrule.einsum("ij,kj->ik", x, w),
         lambda: torch.einsum("ij,kj->ik", tx, tw)),
        ("linear", lambda: F.linear(x, w, b), lambda: TF.linear(tx, tw, tb)),
        ("conv2d", lambda: F.conv2d(img, k, padding=1), lambda: TF.conv2d(timg, tk, padding=1)),
        ("conv1d", lambda: F.conv1d(img[:, :, 0], k[:, :, 0]),
         lambda: TF.conv1d(timg[:, :, 0], tk[:, :, 0])),
        ("conv_transpose2d", lambda: F.conv_transpose2d(img, k.transpose(0, 1)),
         lambda: TF.conv_transpose2d(timg, tk.transpose(0, 1))),
        ("sdpa", lambda: F.scaled_dot_product_attention(q, q, q),
         lambda: TF.scaled_dot_product_attention(tq, tq, tq)),
        ("prod", lambda: xb.prod(), lambda: txb.prod()),
        ("cross_entropy", lambda: F.cross_entropy(xb, cy), lambda: TF.cross_entropy(txb, ty)),
        ("nll_loss", lambda: F.nll_loss(xb, cy), lambda: TF.nll_loss(txb, ty)),
        ("mse_loss", lambda: F.mse_loss(xb, x), lambda: TF.mse_loss(txb, tx)),
        ("l1_loss", lambda: F.l1_loss(xb, x), lambda: TF.l1_loss(txb, tx)),
        ("smooth_l1_loss", lambda: F.smooth_l1_loss(xb, x), lambda: TF.smooth_l1_loss(txb, tx)),
        ("huber_loss", lambda: F.huber_loss(xb, x), lambda: TF.huber_loss(txb, tx)),
        ("bce_with_logits", lambda: F.binary_cross_entropy_with_logits(xb, p),
         lambda: TF.binary_cross_entropy_with_logits(txb, tp)),
        ("bce", lambda: F.binary_cross_entropy(p.bfloat16(), p),
         lambda: TF.binary_cross_entropy(tp.bfloat16(), tp)),
        ("kl_div", lambda: F.kl_div(xb, p, reduction="batchmean"),
         lambda: TF.kl_div(txb, tp, reduction="batchmean")),
        # not on the lists: the inputs' dtype
        ("softmax_f32", lambda: chainrule.softmax(x, 1), lambda: torch.softmax(tx, 1)),
        ("softmax_bf16", lambda: chainrule.softmax(xb, 1), lambda: torch.softmax(txb, 1)),
        ("log_softmax_bf16", lambda: chainrule.log_softmax(xb, 1),
         lambda: torch.log_softmax(txb, 1)),
        ("layer_norm_bf16", lambda: F.layer_norm(xb, (8,)), lambda: TF.layer_norm(txb, (8,))),
        ("sum_bf16", lambda: xb.sum(), lambda: txb.sum()),
        ("relu_bf16", lambda: F.relu(xb), lambda: TF.relu(txb)),
        ("dot", lambda: chainrule.dot(v1, v1), lambda: torch.dot(tv1, tv1)),
        ("outer", lambda: chainrule.outer(v1, v1), lambda: torch.outer(tv1, tv1)),
        ("add_mixed", lambda: xb + x, lambda: txb + tx),
        ("max_pool2d", lambda: F.max_pool2d(img, 2), lambda: TF.max_pool2d(timg, 2)),
        ("matmul_float64", lambda: x64 @ x64.mT, lambda: tx64 @ tx64.mT),
    ]


def _check(ours, theirs, name):
    assert ours.dtype.name == str(theirs.dtype).removeprefix("torch."), \
        f"{name}: {ours.dtype.name}, PyTorch {theirs.dtype}"
    a = ours.detach().to(chainrule.float64).numpy()
    b = theirs.detach().double().numpy()
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=BF16_TOL, atol=BF16_TOL * scale, err_msg=name)


def test_op_lists_match_torch_autocast():
    cases = _cases(np.random.default_rng(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = {n: t() for n, _, t in cases}
    with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
        ours = {n: c() for n, c, _ in cases}
    for n, _, _ in cases:
        _check(ours[n], theirs[n], n)
    # and outside the region everything is back to float32
    x = chainrule.ones(2, 2)
    assert (x @ x).dtype is chainrule.float32


def test_float16_autocast():
    rng = np.random.default_rng(1)
    x, tx = _pair(rng, 3, 5)
    with torch.autocast("cpu", dtype=torch.float16):
        t = tx @ tx.mT
    with chainrule.autocast("cpu", dtype=chainrule.float16):
        o = x @ x.mT
    assert o.dtype is chainrule.float16 and t.dtype == torch.float16
    np.testing.assert_allclose(o.float().numpy(), t.float().numpy(), rtol=2e-3, atol=2e-3)


def test_nesting_disabling_and_decorator():
    x = chainrule.ones(2, 2)
    assert not chainrule.amp.is_autocast_enabled("cpu")
    with chainrule.autocast("cpu"):
        assert chainrule.amp.is_autocast_enabled("cpu")
        assert (x @ x).dtype is chainrule.bfloat16
        with chainrule.autocast("cpu", enabled=False):
            assert not chainrule.amp.is_autocast_enabled("cpu")
            assert (x @ x).dtype is chainrule.float32
        with chainrule.amp.autocast("cpu", dtype=chainrule.float16):
            assert (x @ x).dtype is chainrule.float16
            assert chainrule.amp.get_autocast_dtype("cpu") is chainrule.float16
        assert (x @ x).dtype is chainrule.bfloat16
    assert (x @ x).dtype is chainrule.float32
    assert not chainrule.amp.is_autocast_enabled("cpu")
    with pytest.raises(ZeroDivisionError), chainrule.autocast("cpu"):
        1 / 0  # an exception inside restores the state too
    assert not chainrule.amp.is_autocast_enabled("cpu")

    @chainrule.autocast("cpu")
    def f(a):
        return a @ a

    assert f(x).dtype is chainrule.bfloat16 and (x @ x).dtype is chainrule.float32
    # "cuda" autocast leaves CPU tensors alone, as torch's does
    with chainrule.autocast("cuda"):
        assert (x @ x).dtype is chainrule.float32


def test_autocast_composes_with_backward_like_torch():
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    tnet = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    cnet = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    cnet.load_state_dict({k: chainrule.tensor(v.numpy()) for k, v in tnet.state_dict().items()})
    x = rng.standard_normal((5, 8)).astype(np.float32)
    y = rng.integers(0, 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tl = TF.cross_entropy(tnet(torch.from_numpy(x)), torch.from_numpy(y))
    with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
        cl = F.cross_entropy(cnet(chainrule.tensor(x)), chainrule.tensor(y))
    assert cl.dtype is chainrule.float32 and tl.dtype == torch.float32
    tl.backward()
    cl.backward()
    np.testing.assert_allclose(float(cl), float(tl.detach()), rtol=1e-2)
    for (name, tp), cp in zip(tnet.named_parameters(), cnet.parameters()):
        assert cp.grad.dtype is chainrule.float32, name
        g, tg = cp.grad.numpy(), tp.grad.numpy()
        np.testing.assert_allclose(g, tg, rtol=0.05, atol=0.02 * np.abs(tg).max(), err_msg=name)


def test_weight_casts_are_cached_within_a_region():
    lin = nn.Linear(3, 3)
    x = chainrule.ones(2, 3)
    with chainrule.autocast("cpu"):
        a = lin(x)
        b = lin(x)
        w1 = chainrule.ops._amp.STATE.cache[id(lin.weight)][1]
    assert a.dtype is chainrule.bfloat16 and b.dtype is chainrule.bfloat16
    assert w1.dtype is chainrule.bfloat16
    assert chainrule.ops._amp.STATE.cache is None  # dropped when the outermost region ends
    (a.float().sum() + b.float().sum()).backward()
    assert lin.weight.grad.dtype is chainrule.float32
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.full((3, 3), 4.0))


def test_autocast_bad_arguments():
    with pytest.raises(ValueError, match="device_type"):
        chainrule.autocast("tpu")
    with pytest.raises(ValueError, match=r"bfloat16 or chainrule\.float16"):
        chainrule.autocast("cpu", dtype=chainrule.float32)


# ---------------------------------------------------------------- GradScaler
def _grad_sequence():
    inf, nan = math.inf, math.nan
    return [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [1.0, inf, 0.0], [2.0, 1.0, 1.0],
            [nan, 1.0, 1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [3.0, -2.0, 1.0],
            [-inf, 0.0, 0.0], [0.25, 0.5, 0.75], [1.0, 2.0, 1.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("kwargs", [
    dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=2),
    dict(init_scale=3.0, growth_factor=1.5, backoff_factor=0.25, growth_interval=3),
    dict(init_scale=2.0 ** 126, growth_factor=4.0, backoff_factor=0.5, growth_interval=1),
])
def test_grad_scaler_matches_torch_on_a_gradient_sequence(kwargs):
    init = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    tp = torch.nn.Parameter(torch.from_numpy(init.copy()))
    cp = nn.Parameter(chainrule.tensor(init))
    topt = torch.optim.SGD([tp], lr=0.1)
    copt = chainrule.optim.SGD([cp], lr=0.1)
    ts = torch.amp.GradScaler("cpu", **kwargs)
    cs = chainrule.amp.GradScaler("cpu", **kwargs)
    for k, g in enumerate(_grad_sequence()):
        gt = torch.tensor(g)
        gc = chainrule.tensor(g)
        topt.zero_grad()
        copt.zero_grad()
        ts.scale((tp * gt).sum()).backward()
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is what is tested
            cs.scale((cp * gc).sum()).backward()
        if k % 3 == 1:  # unscale first (to clip, say), then step
            ts.unscale_(topt)
            cs.unscale_(copt)
            np.testing.assert_array_equal(cp.grad.numpy(), tp.grad.numpy())
        rt = ts.step(topt)
        rc = cs.step(copt)
        assert rt is None and rc is None
        ts.update()
        cs.update()
        assert cs.get_scale() == ts.get_scale(), k
        assert cs.state_dict() == ts.state_dict(), k
        np.testing.assert_array_equal(cp.detach().numpy(), tp.detach().numpy(), err_msg=str(k))


def test_grad_scaler_scale_matches_torch_shape_and_dtype():
    ts, cs = torch.amp.GradScaler("cpu"), chainrule.amp.GradScaler("cpu")
    t = ts.scale(torch.tensor(1.5, dtype=torch.bfloat16))
    c = cs.scale(chainrule.tensor(1.5, dtype=chainrule.bfloat16))
    assert tuple(c.shape) == tuple(t.shape) and c.dtype.name == str(t.dtype)[6:]
    assert c.item() == t.item()
    lst = cs.scale([chainrule.tensor(1.0), (chainrule.tensor(2.0),)])
    assert lst[0].item() == 65536.0 and lst[1][0].item() == 131072.0


def test_grad_scaler_state_dict_round_trip_and_torch_interchange():
    ts = torch.amp.GradScaler("cpu", init_scale=128.0, growth_interval=7)
    cs = chainrule.amp.GradScaler("cpu")
    cs.load_state_dict(ts.state_dict())
    assert cs.state_dict() == ts.state_dict()
    other = chainrule.amp.GradScaler("cpu")
    other.load_state_dict(cs.state_dict())
    assert other.get_scale() == 128.0 and other.get_growth_interval() == 7
    with pytest.raises(RuntimeError, match="empty"):
        other.load_state_dict({})
    off = chainrule.amp.GradScaler("cpu", enabled=False)
    assert off.state_dict() == {} and off.get_scale() == 1.0
    x = chainrule.tensor(2.0)
    assert off.scale(x) is x


def test_grad_scaler_misuse_errors_as_torch():
    p = nn.Parameter(chainrule.ones(2))
    opt = chainrule.optim.SGD([p], lr=0.1)
    s = chainrule.amp.GradScaler("cpu")
    s.scale((p * 2).sum()).backward()
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called since the last update"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: 0)
    s.update()
    q = nn.Parameter(chainrule.ones(2, dtype=chainrule.float16))
    q.grad = chainrule.ones(2, dtype=chainrule.float16)
    with pytest.raises(ValueError, match="FP16"):
        s.unscale_(chainrule.optim.SGD([q], lr=0.1))
    fresh = chainrule.amp.GradScaler("cpu")
    with pytest.raises(RuntimeError, match="scale"):
        fresh.step(opt)
    with pytest.raises(ValueError, match="growth_factor"):
        chainrule.amp.GradScaler("cpu", growth_factor=0.5)


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_recurrent_modules_under_autocast_like_torch(name):
    """PyTorch's CPU autocast lists lstm, rnn_tanh and rnn_relu as low-precision ops (input,
    states and weights cast; outputs and final states bfloat16, and equal to running the
    whole module in bfloat16); gru is not listed (outputs float32; only its products run in
    bfloat16). Both directions, two layers, given initial states; backward reaches the
    float32 weights in float32."""
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    kw = dict(num_layers=2, batch_first=True, bidirectional=True)
    tm = getattr(torch.nn, name)(4, 6, **kw)
    cm = getattr(nn, name)(4, 6, **kw)
    cm.load_state_dict({k: chainrule.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    xn = rng.standard_normal((3, 5, 4)).astype(np.float32)
    hn = rng.standard_normal((4, 3, 6)).astype(np.float32) * 0.5
    t_state = (torch.tensor(hn), torch.tensor(hn)) if name == "LSTM" else torch.tensor(hn)
    c_state = ((chainrule.tensor(hn), chainrule.tensor(hn)) if name == "LSTM"
               else chainrule.tensor(hn))
    tx, cx = torch.tensor(xn, requires_grad=True), chainrule.tensor(xn, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ty, th = tm(tx, t_state)
    with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
        cy, ch = cm(cx, c_state)
    th = th if isinstance(th, tuple) else (th,)
    ch = ch if isinstance(ch, tuple) else (ch,)
    for ours, theirs, what in ((cy, ty, "output"), *((c, t, "state") for c, t in zip(ch, th))):
        _check(ours, theirs, f"{name} {what}")
    low = name != "GRU"
    assert (cy.dtype is chainrule.bfloat16) == low
    with chainrule.no_grad():
        f32 = cm(cx, c_state)[0]
        bf16 = copy.deepcopy(cm).to(chainrule.bfloat16)(
            cx.to(chainrule.bfloat16),
            tuple(s.to(chainrule.bfloat16) for s in c_state) if name == "LSTM"
            else c_state.to(chainrule.bfloat16))[0]
    if low:  # the op ran in bfloat16, as a bfloat16 module does
        np.testing.assert_array_equal(cy.detach().float().numpy(), bf16.float().numpy())
    else:  # float32 recurrence, bfloat16 products: neither the float32 nor the bf16 result
        assert not np.array_equal(cy.detach().numpy(), f32.numpy())
    (ty.float() ** 2).sum().backward()
    (cy.float() ** 2).sum().backward()
    assert cx.grad.dtype is chainrule.float32
    _check(cx.grad, tx.grad, f"{name} input grad")
    for (pname, tp), cp in zip(tm.named_parameters(), cm.parameters()):
        assert cp.grad.dtype is chainrule.float32, pname
        g, tg = cp.grad.numpy(), tp.grad.numpy()
        np.testing.assert_allclose(g, tg, rtol=0.05, atol=0.03 * np.abs(tg).max(),
                                   err_msg=f"{name} {pname}")


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_recurrent_cells_under_autocast_like_torch(name):
    """Cells are not on the lists: their products run in bfloat16; LSTMCell and GRUCell mix
    them with float32 states (float32 out), RNNCell's tanh of two bfloat16 products stays
    bfloat16, as in PyTorch."""
    torch.manual_seed(4)
    tm, cm = getattr(torch.nn, name)(4, 6), getattr(nn, name)(4, 6)
    cm.load_state_dict({k: chainrule.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    xn = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = tm(torch.tensor(xn))
    with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
        c = cm(chainrule.tensor(xn))
    for ours, theirs in zip(c if isinstance(c, tuple) else (c,),
                            t if isinstance(t, tuple) else (t,)):
        _check(ours, theirs, name)
