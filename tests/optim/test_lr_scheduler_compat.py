"""ConstantLR, MultiplicativeLR, PolynomialLR, CosineAnnealingWarmRestarts and
ChainedScheduler (issue 14) follow PyTorch's learning rates step by step."""

import math

import pytest

import chainrule
from chainrule.optim import SGD, lr_scheduler

torch = pytest.importorskip("torch")

CASES = [
    ("ConstantLR", dict(factor=0.5, total_iters=4)),
    ("ConstantLR", dict()),
    ("MultiplicativeLR", dict(lr_lambda=lambda e: 0.95)),
    ("PolynomialLR", dict(total_iters=6, power=2.0)),
    ("PolynomialLR", dict()),
    ("CosineAnnealingWarmRestarts", dict(T_0=3)),
    ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=2, eta_min=0.01)),
]


def _lrs(lib, name, kw, steps=15):
    if lib is torch:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        sched = getattr(torch.optim.lr_scheduler, name)(opt, **kw)
    else:
        opt = SGD([chainrule.zeros(1, requires_grad=True)], lr=0.5)
        sched = getattr(lr_scheduler, name)(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{sorted(k)}" for n, k in CASES])
def test_schedule_matches_torch(name, kw):
    for a, b in zip(_lrs(chainrule, name, kw), _lrs(torch, name, kw)):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def test_warm_restarts_with_fractional_epochs_match_torch():
    def run(lib, sched_mod, sgd):
        p = lib.zeros(1, requires_grad=True)
        opt = sgd([p], lr=1.0)
        s = sched_mod.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
        out = []
        for e in (0.5, 1.0, 2.5, 5.25, 9.0):
            s.step(e)
            out.append(s.get_last_lr()[0])
        return out
    ours = run(chainrule, lr_scheduler, SGD)
    theirs = run(torch, torch.optim.lr_scheduler, torch.optim.SGD)
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_chained_scheduler_matches_torch():
    def run(lib, mod, sgd):
        opt = sgd([lib.zeros(1, requires_grad=True)], lr=1.0)
        s = mod.ChainedScheduler([mod.ConstantLR(opt, factor=0.1, total_iters=2),
                                  mod.ExponentialLR(opt, gamma=0.9)])
        out = []
        for _ in range(5):
            out.append(s.get_last_lr()[0])
            opt.step()
            s.step()
        return out
    assert run(chainrule, lr_scheduler, SGD) == pytest.approx(
        run(torch, torch.optim.lr_scheduler, torch.optim.SGD), rel=1e-12)


def test_bad_arguments_are_named():
    opt = SGD([chainrule.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match="ConstantLR: factor"):
        lr_scheduler.ConstantLR(opt, factor=2.0)
    with pytest.raises(ValueError, match="T_0 must be a positive integer"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="negative epoch"):
        lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=2).step(-1)
