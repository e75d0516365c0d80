"""Learning-rate schedulers: values against PyTorch over many steps, closed forms without it,
state_dict round trips and errors."""

import math

import numpy as np
import pytest

import chainrule
from chainrule import optim
from chainrule.optim import lr_scheduler as S


def make_opt(cls=optim.SGD, lrs=(0.1, 0.03), **kw):
    groups = [{"params": [chainrule.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs]
    return cls(groups, **kw)


def run(sched, opt, n, metric=None):
    """lrs (and momenta) seen at each step, stepping the optimizer first as PyTorch asks."""
    out = []
    for i in range(n):
        out.append([g["lr"] for g in opt.param_groups]
                   + [g.get("momentum", g.get("betas", (None,))[0]) for g in opt.param_groups])
        opt.step()
        if metric is None:
            sched.step()
        else:
            sched.step(metric[i])
    return np.array(out, dtype=float)


# name -> (optimizer kwargs, scheduler factory(S-module, opt), steps, metric sequence or None)
def _seq_factory(m, opt):
    warm = m.LinearLR(opt, start_factor=0.1, total_iters=5)
    cos = m.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)
    step = m.StepLR(opt, step_size=4, gamma=0.5)
    return m.SequentialLR(opt, [warm, cos, step], milestones=[5, 25])


def _plateau_metric(n=120, seed=0):
    rng = np.random.default_rng(seed)
    base = np.concatenate([np.linspace(1, 0.5, 20), np.full(40, 0.5), np.linspace(0.5, 0.4, 20),
                           np.full(40, 0.4)])
    return (base + 1e-5 * rng.normal(size=n)).tolist()


SPECS = {
    "LambdaLR": (dict(), lambda m, o: m.LambdaLR(o, [lambda e: 0.95**e, lambda e: 1 / (1 + e)]),
                 50, None),
    "StepLR": (dict(), lambda m, o: m.StepLR(o, step_size=7, gamma=0.3), 60, None),
    "MultiStepLR": (dict(), lambda m, o: m.MultiStepLR(o, [3, 10, 10, 25], gamma=0.5), 40, None),
    "ExponentialLR": (dict(), lambda m, o: m.ExponentialLR(o, gamma=0.9), 60, None),
    "CosineAnnealingLR": (dict(), lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
                          30, None),
    "CosineAnnealingLR-long": (dict(), lambda m, o: m.CosineAnnealingLR(o, T_max=7), 100, None),
    "LinearLR": (dict(), lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9,
                                                 total_iters=12), 30, None),
    "OneCycleLR-cos": (dict(momentum=0.9), lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5],
                                                                     total_steps=50), 50, None),
    "OneCycleLR-linear-3phase": (
        dict(momentum=0.9),
        lambda m, o: m.OneCycleLR(o, max_lr=0.8, epochs=4, steps_per_epoch=10,
                                  anneal_strategy="linear", three_phase=True, pct_start=0.25),
        40, None),
    "OneCycleLR-adam": ("adam", lambda m, o: m.OneCycleLR(o, max_lr=0.01, total_steps=30,
                                                          base_momentum=0.8,
                                                          max_momentum=[0.9, 0.95]), 30, None),
    "OneCycleLR-no-momentum": (dict(), lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=20,
                                                                 cycle_momentum=False), 20, None),
    "ReduceLROnPlateau-min-rel": (dict(), lambda m, o: m.ReduceLROnPlateau(
        o, patience=5, factor=0.5, cooldown=3, min_lr=[0.0, 0.01]), 120, _plateau_metric()),
    "ReduceLROnPlateau-max-abs": (dict(), lambda m, o: m.ReduceLROnPlateau(
        o, mode="max", threshold=0.01, threshold_mode="abs", patience=2, factor=0.3),
        120, [-v for v in _plateau_metric(seed=1)]),
    "ReduceLROnPlateau-eps": (dict(), lambda m, o: m.ReduceLROnPlateau(
        o, patience=0, factor=0.5, eps=1e-3), 40, [1.0] * 40),
    "SequentialLR": (dict(), _seq_factory, 45, None),
}


def _build(lib, spec_name):
    okw, factory, n, metric = SPECS[spec_name]
    if lib == "torch":
        torch = pytest.importorskip("torch")
        cls = torch.optim.Adam if okw == "adam" else torch.optim.SGD
        groups = [{"params": [torch.zeros(2, requires_grad=True)], "lr": lr}
                  for lr in (0.1, 0.03)]
        opt = cls(groups, **({} if okw == "adam" else okw))
        mod = torch.optim.lr_scheduler
    else:
        opt = make_opt(optim.Adam if okw == "adam" else optim.SGD,
                       **({} if okw == "adam" else okw))
        mod = S
    return opt, factory(mod, opt), n, metric


@pytest.mark.parametrize("spec", list(SPECS))
def test_matches_torch(spec):
    topt, tsched, n, metric = _build("torch", spec)
    want = run(tsched, topt, n, metric)
    opt, sched, n, metric = _build("chainrule", spec)
    got = run(sched, opt, n, metric)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-13)


# ---------------------------------------------------------------- without torch
def test_closed_forms():
    opt = make_opt()
    s = S.StepLR(opt, step_size=3, gamma=0.5)
    got = run(s, opt, 12)[:, :2]
    want = [[b * 0.5 ** (e // 3) for b in (0.1, 0.03)] for e in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-15)

    opt = make_opt()
    s = S.MultiStepLR(opt, milestones=[2, 5, 5], gamma=0.1)
    got = run(s, opt, 8)[:, 0]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.01, 1e-4, 1e-4, 1e-4], rtol=1e-12)

    opt = make_opt()
    got = run(S.ExponentialLR(opt, gamma=0.7), opt, 10)[:, 1]
    np.testing.assert_allclose(got, 0.03 * 0.7 ** np.arange(10), rtol=1e-13)

    opt = make_opt()
    got = run(S.LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=4), opt, 8)[:, 0]
    np.testing.assert_allclose(got, 0.1 * np.array([0.5, 0.625, 0.75, 0.875, 1, 1, 1, 1]),
                               rtol=1e-13)

    opt = make_opt()
    got = run(S.LambdaLR(opt, lambda e: e + 1), opt, 4)[:, 1]
    np.testing.assert_allclose(got, [0.03, 0.06, 0.09, 0.12], rtol=1e-13)


def test_cosine_recursive_form_matches_closed_form_within_a_period():
    opt = make_opt()
    T, lo = 30, 1e-3
    got = run(S.CosineAnnealingLR(opt, T_max=T, eta_min=lo), opt, T + 1)[:, :2]
    e = np.arange(T + 1)[:, None]
    want = lo + (np.array([0.1, 0.03]) - lo) * (1 + np.cos(np.pi * e / T)) / 2
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_onecycle_endpoints_and_momentum():
    opt = make_opt(momentum=0.9)
    s = S.OneCycleLR(opt, max_lr=1.0, total_steps=100, div_factor=10, final_div_factor=100)
    vals = run(s, opt, 100)
    assert vals[0, 0] == pytest.approx(0.1) and vals[0, 2] == pytest.approx(0.95)
    peak = int(np.argmax(vals[:, 0]))
    assert peak == 29 and vals[peak, 0] == pytest.approx(1.0)
    assert vals[peak, 2] == pytest.approx(0.85)
    assert vals[-1, 0] == pytest.approx(0.1 / 100)
    assert vals[-1, 2] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="tried to step 101 times"):
        s.step()


def test_onecycle_cycles_adam_beta1():
    opt = make_opt(optim.Adam)
    s = S.OneCycleLR(opt, max_lr=0.01, total_steps=10)
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    for _ in range(2):
        s.step()
    assert opt.param_groups[0]["betas"][0] < 0.95 and opt.param_groups[0]["betas"][1] == 0.999


def test_plateau_by_hand():
    opt = make_opt()
    s = S.ReduceLROnPlateau(opt, patience=2, factor=0.5, cooldown=1, min_lr=0.02)
    lrs = []
    for m in [5, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3]:
        s.step(m)
        lrs.append(s.get_last_lr()[0])
    # the 3rd bad step after the best reduces; the cooldown step after a reduction doesn't count
    assert lrs == [0.1] * 4 + [0.05] * 7 + [0.025] * 3
    assert s.get_last_lr()[1] == 0.02  # 0.03 -> 0.015 -> clipped at min_lr
    s.step(chainrule.tensor(1.0))  # a one-element tensor works as the metric
    assert s.best == 1.0


def test_sequential_by_hand():
    opt = make_opt()
    a = S.ExponentialLR(opt, gamma=0.5)
    b = S.LambdaLR(opt, lambda e: 10.0 * (e + 1))
    s = S.SequentialLR(opt, [a, b], milestones=[3])
    got = run(s, opt, 6)[:, 0]
    np.testing.assert_allclose(got, [0.1, 0.05, 0.025, 1.0, 2.0, 3.0], rtol=1e-13)


def test_schedulers_compose():
    opt = make_opt()
    a = S.ExponentialLR(opt, gamma=0.5)
    b = S.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(4):
        a.step()
        b.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4 * 0.1**2)


# ---------------------------------------------------------------- state_dict and resuming
@pytest.mark.parametrize("spec", [s for s in SPECS if s != "LambdaLR"])
def test_state_dict_resume(spec):
    opt, sched, n, metric = _build("chainrule", spec)
    straight = run(sched, opt, n, metric)

    opt, sched, n, metric = _build("chainrule", spec)
    k = n // 2
    first = run(sched, opt, k, metric)
    sd = sched.state_dict()
    osd = opt.state_dict()
    assert "optimizer" not in sd
    opt2, sched2, _, _ = _build("chainrule", spec)
    sched2.load_state_dict(sd)
    opt2.load_state_dict(osd)
    rest = run(sched2, opt2, n - k, None if metric is None else metric[k:])
    np.testing.assert_array_equal(np.concatenate([first, rest]), straight)


def test_lambda_state_dict_saves_callable_objects_only():
    class Scale:
        def __init__(self, f):
            self.f = f

        def __call__(self, e):
            return self.f * e

    opt = make_opt()
    s = S.LambdaLR(opt, [lambda e: 1.0, Scale(2.0)])
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [None, {"f": 2.0}]
    t = S.LambdaLR(make_opt(), [lambda e: 1.0, Scale(5.0)])
    t.load_state_dict(sd)
    assert t.lr_lambdas[1].f == 2.0


def test_multistep_state_dict_is_plain():
    opt = make_opt()
    s = S.MultiStepLR(opt, [2, 2, 5])
    sd = s.state_dict()
    assert type(sd["milestones"]) is dict and sd["milestones"] == {2: 2, 5: 1}


def test_resume_with_last_epoch_needs_initial_lr():
    opt = make_opt()
    with pytest.raises(KeyError, match=r"initial_lr' is not specified in param_groups\[0\]"):
        S.StepLR(opt, step_size=2, last_epoch=4)
    S.StepLR(opt, step_size=2)
    s = S.StepLR(opt, step_size=2, last_epoch=4)
    assert s.last_epoch == 5 and s.base_lrs == [0.1, 0.03]


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("build,exc,msg", [
    (lambda o: S.StepLR(object(), 2), TypeError, "object is not an Optimizer"),
    (lambda o: S.StepLR(o, 0), ValueError, "step_size must be a positive integer"),
    (lambda o: S.LambdaLR(o, [lambda e: 1]), ValueError, "one value per parameter group"),
    (lambda o: S.LambdaLR(o, 3), TypeError, "not callable"),
    (lambda o: S.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be positive"),
    (lambda o: S.LinearLR(o, start_factor=0), ValueError, "start_factor"),
    (lambda o: S.LinearLR(o, end_factor=2), ValueError, "end_factor"),
    (lambda o: S.OneCycleLR(o, 1.0), ValueError, "either total_steps"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=0), ValueError, "positive integer total_steps"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=5, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: S.OneCycleLR(o, 1.0, total_steps=5, anneal_strategy="exp"), ValueError,
     "anneal_strategy"),
    (lambda o: S.OneCycleLR(make_opt(optim.Adagrad), 1.0, total_steps=5), ValueError,
     "Adagrad has no momentum or betas"),
    (lambda o: S.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor must be < 1.0"),
    (lambda o: S.ReduceLROnPlateau(o, mode="up"), ValueError, "mode must be"),
    (lambda o: S.ReduceLROnPlateau(o, threshold_mode="x"), ValueError, "threshold_mode"),
    (lambda o: S.ReduceLROnPlateau(o, min_lr=[0.1]), ValueError, "one value per parameter"),
    (lambda o: S.SequentialLR(o, [], []), ValueError, "at least one scheduler"),
    (lambda o: S.SequentialLR(o, [S.StepLR(o, 2), S.StepLR(o, 3)], []), ValueError,
     "one milestone fewer"),
    (lambda o: S.SequentialLR(o, [S.ReduceLROnPlateau(o)], []), ValueError,
     "does not support ReduceLROnPlateau"),
    (lambda o: S.SequentialLR(o, [S.StepLR(make_opt(), 2)], []), ValueError,
     "belongs to another optimizer"),
])
def test_errors(build, exc, msg):
    with pytest.raises(exc, match=msg):
        build(make_opt())


def test_subclass_must_define_get_lr():
    class Bad(S.LRScheduler):
        pass

    with pytest.raises(TypeError, match=r"Bad must define get_lr\(\)"):
        Bad(make_opt())


def test_cosine_many_steps_stays_finite():
    opt = make_opt()
    vals = run(S.CosineAnnealingLR(opt, T_max=5, eta_min=0.01), opt, 200)[:, :2]
    assert np.all(np.isfinite(vals)) and vals.min() >= 0.01 - 1e-12
    assert vals.max() <= 0.1 + 1e-12 and not math.isnan(vals.sum())
