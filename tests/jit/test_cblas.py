"""Backend c's OpenBLAS thread setting per compiled step (chainrule.jit.cblas): the trial, the
pick, the environment override, and that a step gives the same values either way."""

from __future__ import annotations

import time

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cbackend, cblas, cconv
from chainrule.jit.numpy_backend import GuardFailed

pytestmark = pytest.mark.skipif(cconv.blas_threads() is None,
                                reason="NumPy's bundled OpenBLAS not found")


def _count():
    return cconv.blas_threads()[0]()


@pytest.fixture
def two_blas_threads():
    get, put = cconv.blas_threads()
    before = get()
    put(2)
    if get() != 2:
        put(before)
        pytest.skip("OpenBLAS will not take 2 threads here")
    yield
    put(before)


def _run(one_s, own_s, seen):
    """A fake program: sleeps ``one_s`` when OpenBLAS is on one thread, else ``own_s``."""
    def run(x):
        n = _count()
        seen.append(n)
        time.sleep(one_s if n == 1 else own_s)
        return x
    return run


@pytest.mark.parametrize("faster, pick", [("one", "one"), ("own", "own"), ("same", "one")])
def test_trial_picks_the_faster_setting(monkeypatch, two_blas_threads, faster, pick):
    monkeypatch.setattr(cblas, "SETTLE", 0.0)
    one_s, own_s = {"one": (0.001, 0.004), "own": (0.004, 0.001), "same": (0.002, 0.002)}[faster]
    seen = []
    t = cblas.Tuned(_run(one_s, own_s, seen), "auto")
    calls = 0
    while t.pick is None:
        assert t(calls) == calls
        calls += 1
        assert calls < 100
    assert t.pick == pick and "tried" in t.note
    assert calls == 2 * cblas.ROUNDS * (cblas.BLOCK + cblas.SKIP)
    assert 1 in seen and 2 in seen  # both settings ran
    seen.clear()
    t(0)
    assert seen == [1 if pick == "one" else 2]
    assert _count() == 2  # set back after the held call


def test_guard_failures_are_not_counted(monkeypatch, two_blas_threads):
    monkeypatch.setattr(cblas, "SETTLE", 0.0)
    t = cblas.Tuned(lambda: GuardFailed(0, "arg 0 shape"), "auto")
    for _ in range(50):
        assert isinstance(t(), GuardFailed)
    assert t.pick is None and t.times == {"own": [], "one": []}


def test_environment_sets_the_mode(monkeypatch, two_blas_threads):
    monkeypatch.setenv("CHAINRULE_JIT_BLAS", "one")
    seen = []
    t = cblas.tuned(_run(0, 0, seen))
    t(1)
    assert seen == [1] and t.note.endswith("(CHAINRULE_JIT_BLAS=one)")
    monkeypatch.setenv("CHAINRULE_JIT_BLAS", "own")
    seen.clear()
    cblas.tuned(_run(0, 0, seen))(1)
    assert seen == [2]
    monkeypatch.setenv("CHAINRULE_JIT_BLAS", "two")
    with pytest.raises(ValueError, match="CHAINRULE_JIT_BLAS='two'"):
        cblas.tuned(len)


def test_one_thread_openblas_is_not_tried(monkeypatch):
    get, put = cconv.blas_threads()
    before = get()
    put(1)
    try:
        assert cblas.tuned(len) is len
    finally:
        put(before)


@pytest.mark.skipif(cbackend.unavailable() is not None, reason="no C backend here")
def test_a_jitted_conv_step_is_the_same_either_way(monkeypatch, two_blas_threads):
    def trained(mode):
        monkeypatch.setenv("CHAINRULE_JIT_BLAS", mode)
        cr.manual_seed(0)
        net = cr.nn.Sequential(cr.nn.Conv2d(2, 4, 3), cr.nn.ReLU(), cr.nn.Flatten(),
                               cr.nn.Linear(4 * 14 * 14, 3))
        opt = cr.optim.SGD(net.parameters(), lr=0.1)
        x = cr.tensor(np.random.default_rng(1).standard_normal((9, 2, 16, 16)).astype("f4"))
        y = cr.tensor(np.arange(9) % 3)

        @cr.jit(backend="c")
        def step(x, y):
            opt.zero_grad()
            loss = cr.nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss

        losses = [float(step(x, y)) for _ in range(6)]
        return losses, [p.detach().numpy() for p in net.parameters()], step.explain()

    own, one = trained("own"), trained("one")
    np.testing.assert_allclose(own[0], one[0], rtol=1e-5)
    for a, b in zip(own[1], one[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert "OpenBLAS threads: one (CHAINRULE_JIT_BLAS=one)" in one[2]
    assert "OpenBLAS threads: its own (CHAINRULE_JIT_BLAS=own)" in own[2]


def test_trial_is_made_again_after_recheck_calls(monkeypatch, two_blas_threads):
    """A pick made in a slow spell does not stand for the whole run: after RECHECK calls the
    trial runs again (then after twice as many), and a changed host changes the pick."""
    monkeypatch.setattr(cblas, "SETTLE", 0.0)
    monkeypatch.setattr(cblas, "RECHECK", 5)
    trial = 2 * cblas.ROUNDS * (cblas.BLOCK + cblas.SKIP)
    speed = {"one": 0.001, "own": 0.004}  # first one thread is faster

    def run(x):
        time.sleep(speed["one"] if _count() == 1 else speed["own"])
        return x

    t = cblas.Tuned(run, "auto")
    for i in range(trial):
        t(i)
    assert t.pick == "one" and t.trials == 1 and "trial 1" in t.note
    speed.update(one=0.004, own=0.001)  # the host changes
    for i in range(5):
        t(i)
        assert t.pick == "one"  # the pick stands for RECHECK calls
    t(0)
    assert t.pick is None  # the second trial has begun
    for i in range(trial - 1):
        t(i)
    assert t.pick == "own" and t.trials == 2 and "after 10 calls" in t.note
