"""Shortened runs of the issue-4 examples (examples/ddpm.py, lenet_digits.py, lstm_adding.py,
char_transformer.py) with fixed seeds: each must train, i.e. its loss must fall well below
where it started, and reach a figure that an untrained model cannot.

Each shortened run takes 1-4 s of CPU with one BLAS thread. Where OpenBLAS runs two threads
on a machine busy with other work, the small matrix products of these models can run 10-100
times slower (measured on the shared development VM), so when threadpoolctl is installed the
training tests run with one BLAS thread (``_one_blas_thread``); the results do not depend on
it, only the time does."""

from __future__ import annotations

import doctest
import importlib.util
import math
import pathlib
import sys

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def _one_blas_thread():
    """One BLAS thread for the duration of a test, where threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _load(name: str):
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    key = f"_examples_issue4_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[key] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["ddpm", "lenet_digits", "lstm_adding", "char_transformer"])
def test_docstring_examples(name):
    mod = _load(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def _fell(losses, start: int = 5, end: int = 20, ratio: float = 0.6) -> tuple[float, float]:
    """Mean of the first ``start`` and last ``end`` losses; asserts last < ratio * first."""
    first, last = float(np.mean(losses[:start])), float(np.mean(losses[-end:]))
    assert np.isfinite(losses).all()
    assert last < ratio * first, f"loss fell only from {first:.4f} to {last:.4f}"
    return first, last


# ------------------------------------------------------------------ DDPM


def test_ddpm_distances_are_calibrated():
    ddpm = _load("ddpm")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    assert abs(ddpm.energy_distance(a, b)) < 0.02
    assert ddpm.energy_distance(a, b + 1.0) > 0.3
    assert ddpm.sliced_wasserstein(a, b) < 0.1
    # a shift by 1 along x: W1 of each projection is |cos theta|, mean 2/pi
    assert ddpm.sliced_wasserstein(a, a + [1.0, 0.0], n_proj=2000) == pytest.approx(
        2 / math.pi, abs=0.03)
    with pytest.raises(ValueError, match="equal sample sizes"):
        ddpm.sliced_wasserstein(a, b[:10])


def test_ddpm_schedule():
    ddpm = _load("ddpm")
    for kind in ("linear", "cosine"):
        s = ddpm.make_schedule(50, kind)
        assert s["betas"].shape == (50,)
        assert np.all(np.diff(s["abar"]) < 0) and s["abar"][-1] < 0.01
        np.testing.assert_allclose(s["sqrt_abar"] ** 2 + s["sqrt_1m_abar"] ** 2, 1.0)
        assert s["post_var"][0] == 0.0  # x_0 is drawn without added noise
    with pytest.raises(ValueError, match="unknown schedule"):
        ddpm.make_schedule(10, "quadratic")
    with pytest.raises(ValueError, match="at least 2"):
        ddpm.make_schedule(1)


@pytest.mark.slow
@pytest.mark.usefixtures("_one_blas_thread")
def test_ddpm_trains_and_beats_noise():
    ddpm = _load("ddpm")
    model, sched, losses = ddpm.train(steps=800, hidden=64, blocks=2, T=50, n_train=2000,
                                      seed=0, verbose=False)
    _fell(losses, start=10, end=50)
    r = ddpm.evaluate(model, sched, "moons", n=500, seed=0)
    e, w = r["energy"], r["sliced_w1"]
    assert r["samples"].shape == (500, 2) and np.isfinite(r["samples"]).all()
    assert e["model"] < 0.25 * e["noise"], e
    assert w["model"] < 0.5 * w["noise"], w


# ------------------------------------------------------------------ LeNet


@pytest.mark.usefixtures("_one_blas_thread")
def test_lenet_trains():
    lenet = _load("lenet_digits")
    from chainrule.data import digits_split

    train_set, test_set = digits_split(test_fraction=0.2, seed=0)
    model, losses = lenet.train(epochs=4, c1=8, c2=16, hidden=64, seed=0, train_set=train_set,
                                verbose=False)
    assert len(losses) == 4 * math.ceil(len(train_set) / 64)
    _fell(losses, start=3, end=10, ratio=0.4)
    assert lenet.accuracy(model, test_set) > 0.85


def test_lenet_main_prints_accuracy(capsys):
    lenet = _load("lenet_digits")
    r = lenet.main(["--epochs", "1", "--channels", "4", "8", "--hidden", "16"])
    out = capsys.readouterr().out
    line = [s for s in out.splitlines() if s.startswith("test accuracy: ")]
    assert line and line[0] == f"test accuracy: {100 * r['test_accuracy']:.1f}%"


# ------------------------------------------------------------------ LSTM


def test_adding_batch():
    lstm = _load("lstm_adding")
    x, y = lstm.adding_batch(np.random.default_rng(0), 200, 20)
    marks = x[..., 1]
    assert (marks.sum(1) == 2).all()
    assert (marks[:, :10].sum(1) == 1).all()  # one marker in each half
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(1), rtol=1e-6)
    with pytest.raises(ValueError, match="seq_len"):
        lstm.adding_batch(np.random.default_rng(0), 2, 1)


@pytest.mark.usefixtures("_one_blas_thread")
def test_lstm_adding_trains_below_baseline():
    lstm = _load("lstm_adding")
    model, losses = lstm.train(steps=600, seq_len=20, hidden=32, lr=1e-2, seed=0,
                               verbose=False)
    _fell(losses)
    x, y = lstm.adding_batch(np.random.default_rng(1), 500, 20)
    mse = lstm.evaluate(model, x, y)
    assert mse < 0.25 * lstm.BASELINE_MSE, mse


# ------------------------------------------------------------------ character transformer


def test_char_corpus_is_the_stdlib():
    ct = _load("char_transformer")
    text = ct.load_corpus(20_000)
    assert len(text) == 20_000 and "def " in text and "import " in text
    with pytest.raises(ValueError, match="fewer than"):
        ct.load_corpus(10, files=())


def test_char_transformer_is_causal():
    import chainrule as cr

    ct = _load("char_transformer")
    cr.manual_seed(0)
    net = ct.CharTransformer(vocab_size=11, block_size=8, d_model=16, nhead=2, layers=2)
    a = np.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    b = a.copy()
    b[0, 5:] = [9, 10, 0]
    with cr.no_grad():
        la, lb = net(cr.from_numpy(a)).numpy(), net(cr.from_numpy(b)).numpy()
    np.testing.assert_allclose(la[0, :5], lb[0, :5], rtol=1e-5, atol=1e-6)
    assert not np.allclose(la[0, 5:], lb[0, 5:])
    with pytest.raises(ValueError, match="block_size"):
        net(cr.zeros(1, 9, dtype=cr.int64))


@pytest.mark.slow
@pytest.mark.usefixtures("_one_blas_thread")
def test_char_transformer_trains():
    ct = _load("char_transformer")
    model, vocab, _, val_ids, losses = ct.train(
        steps=150, n_chars=60_000, block=32, batch_size=16, d_model=64, nhead=2, layers=2,
        lr=3e-3, warmup=20, seed=0, verbose=False)
    _fell(losses, start=3)
    bpc = ct.bits_per_char(model, val_ids, 32, max_chars=3000)
    assert bpc < 0.6 * math.log2(len(vocab)), bpc  # far below a uniform guess
    sample = ct.generate(model, np.array([vocab.index("d")]), 20, seed=0)
    assert sample.shape == (20,) and 0 <= sample.min() and sample.max() < len(vocab)


# --- jit=True against jit=False (issue 12): the same losses and weights to float32 rounding ---

_JIT_RUNS = {  # a tiny configuration of each example, a few steps (lenet: one epoch, 23 steps,
    # its last batch of 30 a second shape, so a second compile)
    "lenet_digits": dict(epochs=1, c1=4, c2=8, hidden=16),
    "char_transformer": dict(steps=8, n_chars=5000, block=16, d_model=16, nhead=2, layers=1),
    "lstm_adding": dict(steps=8, seq_len=6, hidden=8),
    "ddpm": dict(steps=8, batch_size=32, hidden=16, blocks=1, n_train=500),
}
# Parameters whose gradient is zero in exact arithmetic, so only rounding noise, which Adam
# turns into steps of about lr in a random direction, eager and jit alike: a convolution's
# bias before BatchNorm (which subtracts the channel mean) and attention's key bias (it adds
# the same q.b_k to every score of a row, which softmax ignores). Not compared, nor the
# BatchNorm running means that average those convolutions' outputs, bias included.
_ROUNDING_NOISE = {
    "lenet_digits": {f"{m}{i}.{k}": slice(None) for i in (1, 2)
                     for m, k in (("conv", "bias"), ("bn", "running_mean"))},
    "char_transformer": {"blocks.layers.0.self_attn.in_proj_bias": slice(16, 32)},  # b_k
}


@pytest.mark.usefixtures("_one_blas_thread")
@pytest.mark.parametrize("name", sorted(_JIT_RUNS))
def test_jit_trains_as_eager(name, monkeypatch):
    import re

    import chainrule as cr
    from chainrule.jit.api import VERIFY_TOL

    mod = _load(name)
    made = []
    real_jit = cr.jit

    def spy(fn=None, **kw):  # records the jitted step, so that we can ask it what it did
        made.append(real_jit(fn, **kw))
        return made[-1]

    monkeypatch.setattr(cr, "jit", spy)
    eager = mod.train(**_JIT_RUNS[name], verbose=False)
    assert made == []
    jitted = mod.train(**_JIT_RUNS[name], verbose=False, jit=True)
    assert len(made) == 1
    report = made[0].explain()
    assert "graph break" not in report, report
    steps = len(eager[-1])
    compiles = 2 if name == "lenet_digits" else 1
    assert f"{compiles} compile(s)" in report, report
    # one warm-up call, one traced call per compile; every other call a replay
    assert sum(map(int, re.findall(r"cache hits (\d+)", report))) == steps - 1 - compiles, report
    tol = VERIFY_TOL.get(made[0].backend, dict(rtol=0, atol=0))
    np.testing.assert_allclose(jitted[-1], eager[-1], **tol)
    sd_e, sd_j = eager[0].state_dict(), jitted[0].state_dict()
    assert sd_e.keys() == sd_j.keys()
    noise = _ROUNDING_NOISE.get(name, {})
    for k in sd_e:
        j, e = sd_j[k].numpy().copy(), sd_e[k].numpy().copy()
        if k in noise:
            j[noise[k]] = e[noise[k]] = 0
        np.testing.assert_allclose(j, e, err_msg=k, **tol)
