"""First-order update rules: 20 float64 steps against a direct NumPy transcription of each
published rule, and against PyTorch where it is installed (1e-10 relative)."""

import math

import numpy as np
import pytest

import chainrule
from chainrule import optim

SHAPES = [(3, 4), (5,)]
STEPS = 20


def _init_params(seed=0):
    rng = np.random.default_rng(seed)
    # away from zero so that relative comparisons are meaningful
    return [rng.uniform(0.5, 1.5, s) * rng.choice([-1.0, 1.0], s) for s in SHAPES]


def _grads(params, t, seed=1):
    """A gradient that depends on the parameters (so errors propagate) and on the step."""
    rng = np.random.default_rng(seed + 1000 * t)
    return [rng.normal(size=p.shape) + 0.3 * p for p in params]


# ---------------------------------------------------------------- NumPy transcriptions
def ref_sgd(p, g, s, h, t):
    lr, mu, tau, wd = h.get("lr", 1e-3), h.get("momentum", 0), h.get("dampening", 0), \
        h.get("weight_decay", 0)
    g = -g if h.get("maximize") else g
    g = g + wd * p
    if mu != 0:
        s["momentum_buffer"] = g.copy() if t == 1 else mu * s["momentum_buffer"] + (1 - tau) * g
        g = g + mu * s["momentum_buffer"] if h.get("nesterov") else s["momentum_buffer"]
    return p - lr * g


def ref_adam(p, g, s, h, t, decoupled=False):
    lr, (b1, b2), eps, wd = h.get("lr", 1e-3), h.get("betas", (0.9, 0.999)), \
        h.get("eps", 1e-8), h.get("weight_decay", 1e-2 if decoupled else 0)
    decoupled = decoupled or h.get("decoupled_weight_decay", False)
    g = -g if h.get("maximize") else g
    if decoupled:
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    if t == 1:
        s.update(exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p),
                 max_exp_avg_sq=np.zeros_like(p))
    s["exp_avg"] = b1 * s["exp_avg"] + (1 - b1) * g
    s["exp_avg_sq"] = b2 * s["exp_avg_sq"] + (1 - b2) * g**2
    v = s["exp_avg_sq"]
    if h.get("amsgrad"):
        s["max_exp_avg_sq"] = np.maximum(s["max_exp_avg_sq"], v)
        v = s["max_exp_avg_sq"]
    mhat = s["exp_avg"] / (1 - b1**t)
    vhat = v / (1 - b2**t)
    return p - lr * mhat / (np.sqrt(vhat) + eps)


def ref_adamw(p, g, s, h, t):
    return ref_adam(p, g, s, h, t, decoupled=True)


def ref_rmsprop(p, g, s, h, t):
    lr, alpha, eps, wd, mu = h.get("lr", 1e-2), h.get("alpha", 0.99), h.get("eps", 1e-8), \
        h.get("weight_decay", 0), h.get("momentum", 0)
    g = -g if h.get("maximize") else g
    g = g + wd * p
    if t == 1:
        s.update(square_avg=np.zeros_like(p), grad_avg=np.zeros_like(p),
                 momentum_buffer=np.zeros_like(p))
    s["square_avg"] = alpha * s["square_avg"] + (1 - alpha) * g**2
    if h.get("centered"):
        s["grad_avg"] = alpha * s["grad_avg"] + (1 - alpha) * g
        denom = np.sqrt(s["square_avg"] - s["grad_avg"] ** 2) + eps
    else:
        denom = np.sqrt(s["square_avg"]) + eps
    if mu > 0:
        s["momentum_buffer"] = mu * s["momentum_buffer"] + g / denom
        return p - lr * s["momentum_buffer"]
    return p - lr * g / denom


def ref_adagrad(p, g, s, h, t):
    lr, decay, wd, init, eps = h.get("lr", 1e-2), h.get("lr_decay", 0), \
        h.get("weight_decay", 0), h.get("initial_accumulator_value", 0), h.get("eps", 1e-10)
    g = -g if h.get("maximize") else g
    g = g + wd * p
    if t == 1:
        s["sum"] = np.full_like(p, init)
    s["sum"] = s["sum"] + g**2
    clr = lr / (1 + (t - 1) * decay)
    return p - clr * g / (np.sqrt(s["sum"]) + eps)


CASES = [
    ("SGD", ref_sgd, dict(lr=0.1)),
    ("SGD", ref_sgd, dict(lr=0.1, momentum=0.9)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("SGD", ref_sgd, dict(lr=0.05, momentum=0.5, maximize=True, weight_decay=0.1)),
    ("Adam", ref_adam, dict(lr=0.01)),
    ("Adam", ref_adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("Adam", ref_adam, dict(lr=0.01, betas=(0.5, 0.9), maximize=True)),
    ("Adam", ref_adam, dict(lr=0.01, betas=(0.3, 0.99), eps=1e-3)),
    ("Adam", ref_adam, dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", ref_adamw, dict(lr=0.01)),
    ("AdamW", ref_adamw, dict(lr=0.01, amsgrad=True, weight_decay=0.1, maximize=True)),
    ("RMSprop", ref_rmsprop, dict()),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, momentum=0.9)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, centered=True)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, alpha=0.3, centered=True, eps=1e-4)),
    ("RMSprop", ref_rmsprop, dict(lr=0.01, maximize=True)),
    ("Adagrad", ref_adagrad, dict()),
    ("Adagrad", ref_adagrad, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    ("Adagrad", ref_adagrad, dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", ref_adagrad, dict(lr=0.1, maximize=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, _, kw in CASES]


def run_chainrule(name, kw, steps=STEPS, dtype=chainrule.float64):
    params = [chainrule.tensor(a, dtype=dtype, requires_grad=True) for a in _init_params()]
    opt = getattr(optim, name)(params, **kw)
    for t in range(1, steps + 1):
        for p, g in zip(params, _grads([p.detach().numpy() for p in params], t)):
            p.grad = chainrule.tensor(g, dtype=dtype)
        opt.step()
    return [p.detach().numpy().copy() for p in params], opt


def run_reference(ref, kw, steps=STEPS):
    params = _init_params()
    states = [{} for _ in params]
    for t in range(1, steps + 1):
        grads = _grads(params, t)
        params = [ref(p, g, s, kw, t) for p, g, s in zip(params, grads, states)]
    return params, states


def run_torch(name, kw, steps=STEPS, dtype="float64"):
    torch = pytest.importorskip("torch")
    dt = getattr(torch, dtype)
    params = [torch.tensor(a, dtype=dt, requires_grad=True) for a in _init_params()]
    opt = getattr(torch.optim, name)(params, **kw)
    for t in range(1, steps + 1):
        for p, g in zip(params, _grads([p.detach().double().numpy() for p in params], t)):
            p.grad = torch.tensor(g, dtype=dt)
        opt.step()
    return [p.detach().double().numpy() for p in params], opt


@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_against_numpy_transcription(name, ref, kw):
    got, opt = run_chainrule(name, kw)
    want, states = run_reference(ref, kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=0)
    # the state buffers follow the same recurrences
    for p, s in zip(opt.param_groups[0]["params"], states):
        st = opt.state[p]
        for key, val in st.items():
            if key == "step":
                assert val == STEPS and isinstance(val, int)
            elif key in s:
                np.testing.assert_allclose(val.numpy(), s[key], rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize("name,ref,kw", CASES, ids=IDS)
def test_against_torch(name, ref, kw):
    want, topt = run_torch(name, kw)
    got, opt = run_chainrule(name, kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=0)
    for p, tp in zip(opt.param_groups[0]["params"], topt.param_groups[0]["params"]):
        tstate = topt.state[tp]
        for key, val in opt.state[p].items():
            tval = tstate[key]
            if key == "step":
                assert val == float(tval)
            else:
                np.testing.assert_allclose(val.numpy(), tval.double().numpy(), rtol=1e-10,
                                           atol=1e-300)


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("Adam", dict(lr=0.01, amsgrad=True)),
                                     ("AdamW", dict(lr=0.01)),
                                     ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
                                     ("Adagrad", dict(lr=0.1))])
def test_float32_against_torch(name, kw):
    want, _ = run_torch(name, kw, dtype="float32")
    got, opt = run_chainrule(name, kw, dtype=chainrule.float32)
    for p in opt.param_groups[0]["params"]:
        assert p.dtype == chainrule.float32
        for v in opt.state[p].values():
            if isinstance(v, chainrule.Tensor):
                assert v.dtype == chainrule.float32
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,ref,kw", [c for c in CASES if c[2].get("lr")][::3])
def test_hyperparameters_can_change_between_steps(name, ref, kw):
    """Schedulers write group['lr'] between steps; every step reads it afresh."""
    params = [chainrule.tensor(a, dtype=chainrule.float64, requires_grad=True)
              for a in _init_params()]
    opt = getattr(optim, name)(params, **kw)
    ref_params, states = _init_params(), [{}, {}]
    for t in range(1, STEPS + 1):
        lr = kw["lr"] * (0.5 + 0.5 * math.cos(t))
        opt.param_groups[0]["lr"] = lr
        hk = dict(kw, lr=lr)
        for p, g in zip(params, _grads([p.detach().numpy() for p in params], t)):
            p.grad = chainrule.tensor(g, dtype=chainrule.float64)
        opt.step()
        ref_params = [ref(p, g, s, hk, t) for p, g, s in
                      zip(ref_params, _grads(ref_params, t), states)]
    for p, r in zip(params, ref_params):
        np.testing.assert_allclose(p.detach().numpy(), r, rtol=1e-10, atol=0)


def test_param_groups_use_their_own_hyperparameters():
    a0, b0 = _init_params()
    a = chainrule.tensor(a0, dtype=chainrule.float64, requires_grad=True)
    b = chainrule.tensor(b0, dtype=chainrule.float64, requires_grad=True)
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.1, "amsgrad": True}], lr=0.01)
    ra, rb, sa, sb = a0, b0, {}, {}
    for t in range(1, 6):
        ga, gb = _grads([a.detach().numpy(), b.detach().numpy()], t)
        a.grad, b.grad = chainrule.tensor(ga), chainrule.tensor(gb)
        opt.step()
        ra = ref_adam(ra, ga, sa, dict(lr=0.01), t)
        rb = ref_adam(rb, gb, sb, dict(lr=0.1, amsgrad=True), t)
    np.testing.assert_allclose(a.detach().numpy(), ra, rtol=1e-10)
    np.testing.assert_allclose(b.detach().numpy(), rb, rtol=1e-10)


def test_real_gradients_from_backward_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    w0, x0, y0 = rng.normal(size=(4, 3)), rng.normal(size=(8, 4)), rng.normal(size=(8, 3))
    w = chainrule.tensor(w0, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)
    opt = optim.Adam([w], lr=0.05, weight_decay=0.01)
    topt = torch.optim.Adam([tw], lr=0.05, weight_decay=0.01)
    x, y, tx, ty = chainrule.tensor(x0), chainrule.tensor(y0), torch.tensor(x0), torch.tensor(y0)
    for _ in range(20):
        opt.zero_grad()
        ((x @ w - y) ** 2).mean().backward()
        opt.step()
        topt.zero_grad()
        ((tx @ tw - ty) ** 2).mean().backward()
        topt.step()
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=1e-10)


@pytest.mark.gpu
def test_cupy_parameters_match_numpy():
    cupy = pytest.importorskip("cupy")
    if not chainrule.backend.cuda_available():
        pytest.skip("no CUDA device")
    for name, _, kw in CASES:
        cpu, _ = run_chainrule(name, kw, steps=5)
        params = [chainrule.tensor(a, dtype=chainrule.float64, device="cuda",
                                   requires_grad=True) for a in _init_params()]
        opt = getattr(optim, name)(params, **kw)
        for t in range(1, 6):
            host = [cupy.asnumpy(p._data) for p in params]
            for p, g in zip(params, _grads(host, t)):
                p.grad = chainrule.tensor(g, dtype=chainrule.float64, device="cuda")
            opt.step()
        for a, p in zip(cpu, params):
            np.testing.assert_allclose(cupy.asnumpy(p._data), a, rtol=1e-10)
