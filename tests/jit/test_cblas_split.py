"""Backend c's products on OpenMP's threads (``cblas.wrappers``' ``matmul``): while NumPy's
OpenBLAS is held at one thread, a big 2-d product is cut into blocks of rows or columns, one
``cblas_?gemm`` call per thread. Against NumPy's ``matmul`` (float rounding: OpenBLAS may
take another kernel for a block than for the whole), transposed operands, odd sizes, NaN and
inf, the calls it leaves to the impl; and 50 jitted LeNet and LSTM training steps on two
threads against eager."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from chainrule.jit import cbackend, cblas, cconv, kcache, render_c

pytestmark = [
    pytest.mark.skipif(cbackend.unavailable() is not None, reason=str(cbackend.unavailable())),
    pytest.mark.skipif(not cconv.gemm_pointers() or cconv.blas_threads() is None,
                       reason="NumPy's bundled OpenBLAS not found"),
]


@pytest.fixture(scope="module")
def built():
    decl, src = cblas.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return cblas.wrappers(mod.lib, mod.ffi)["matmul"], mod.lib


def _close(got, want, dtype):
    assert got.dtype == want.dtype and got.shape == want.shape
    scale = max(float(np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)))), 1.0)
    rtol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


SHAPES = [  # (M, K, N), a transposed?, b transposed?
    ((1600, 33, 512), False, True),  # the LSTM's input projection
    ((512, 1600, 128), True, False),  # its hidden weights' gradient
    ((33, 1600, 512), True, False),  # its input weights' gradient (split by columns)
    ((517, 61, 35), False, False),  # odd rows, the last block short
    ((35, 61, 517), True, True),  # odd columns
    ((33, 7, 33), False, False),  # a block of 16 and one of 17
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("mkn", "ta", "tb"), SHAPES)
def test_split_product_is_numpys(built, monkeypatch, mkn, ta, tb, dtype):
    mm, lib = built
    if lib.cblas_max_threads() < 2:
        pytest.skip("OpenMP has one thread here")
    monkeypatch.setattr(cblas, "SPLIT_MACS", 0)
    m, k, n = mkn
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    a, b = (a.T if ta else a), (b.T if tb else b)
    with cconv.one_blas_thread():
        before = cblas.SPLITS[0]
        got = mm(np, a, b)
        assert cblas.SPLITS[0] == before + 1  # the split ran
        again = mm(np, a, b)
    _close(got, np.matmul(a, b), dtype)
    np.testing.assert_array_equal(got, again)  # the same bits call to call


def test_nan_and_inf_propagate_as_numpys(built, monkeypatch):
    mm, lib = built
    if lib.cblas_max_threads() < 2:
        pytest.skip("OpenMP has one thread here")
    monkeypatch.setattr(cblas, "SPLIT_MACS", 0)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((70, 40)).astype("float32")
    b = rng.standard_normal((40, 50)).astype("float32")
    a[3, 5], a[60, 0], b[7, 49] = np.nan, np.inf, -np.inf
    with cconv.one_blas_thread():
        got = mm(np, a, b)
    want = np.matmul(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    _close(got[fin], want[fin], "float32")


def test_calls_left_to_the_impl(built, monkeypatch):
    """Small products, short dims, other dtypes, batched operands, and OpenBLAS on its own
    threads run NumPy's matmul."""
    mm, _ = built
    rng = np.random.default_rng(2)
    big = rng.standard_normal((300, 300)).astype("float32")
    before = cblas.SPLITS[0]
    with cconv.one_blas_thread():
        mm(np, big[:10], big[:, :10])  # below SPLIT_MACS
        mm(np, big.astype("float16"), big.astype("float16"))  # another dtype
        mm(np, big, big.astype("float64"))  # mixed dtypes
        mm(np, np.stack([big, big]), big)  # batched
        monkeypatch.setattr(cblas, "SPLIT_MACS", 0)
        mm(np, big[:31, :5], big[:5, :31])  # neither dim two tiles long
    get, put = cconv.blas_threads()
    was = get()
    put(2)
    try:
        if get() == 2:
            np.testing.assert_array_equal(mm(np, big, big), np.matmul(big, big))
    finally:
        put(was)
    assert cblas.SPLITS[0] == before


_STEPS = textwrap.dedent("""
    import numpy as np
    import chainrule as cr
    from chainrule.jit import cblas, cpool, crnn
    F = cr.nn.functional

    def lenet():
        rng = np.random.default_rng(0)
        x = cr.tensor(rng.standard_normal((32, 1, 28, 28)).astype("float32"))
        y = cr.tensor(rng.integers(0, 10, 32))
        cr.manual_seed(0)
        net = cr.nn.Sequential(
            cr.nn.Conv2d(1, 6, 5, padding=2), cr.nn.ReLU(), cr.nn.MaxPool2d(2),
            cr.nn.Conv2d(6, 16, 5), cr.nn.ReLU(), cr.nn.MaxPool2d(2), cr.nn.Flatten(),
            cr.nn.Linear(400, 120), cr.nn.ReLU(), cr.nn.Linear(120, 84), cr.nn.ReLU(),
            cr.nn.Linear(84, 10))
        return net, lambda: F.cross_entropy(net(x), y)

    def lstm():
        rng = np.random.default_rng(1)
        x = cr.tensor(rng.standard_normal((50, 32, 32)).astype("float32"))
        y = cr.tensor(rng.standard_normal((32, 128)).astype("float32"))
        cr.manual_seed(0)
        net = cr.nn.LSTM(32, 128)
        return net, lambda: F.mse_loss(net(x)[1][0][-1], y)

    for name, make in (("lenet", lenet), ("lstm", lstm)):
        runs = []
        for jitted in (False, True):
            net, loss_fn = make()
            opt = cr.optim.SGD(net.parameters(), lr=0.05)

            def step():
                opt.zero_grad()
                loss = loss_fn()
                loss.backward()
                opt.step()
                return loss.detach()

            f = cr.jit(step, fullgraph=True, backend="c") if jitted else step
            losses = [float(f().numpy()) for _ in range(50)]
            runs.append((losses, [p.detach().numpy().copy() for p in net.parameters()]))
        (l0, p0), (l1, p1) = runs
        np.testing.assert_allclose(l1, l0, rtol=1e-4, atol=1e-6)
        for a, b in zip(p1, p0):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        assert l1[-1] < l1[0], name  # it trained
    print("splits", cblas.SPLITS[0], "pools", cpool.TAKEN["max_pool"],
          "scans", crnn.SPLITS.get("lstm_scan"))
""")


def held_on_two_threads(script: str) -> tuple[dict, str]:
    """Runs ``script`` in a fresh process with OMP_NUM_THREADS=2 and OpenBLAS held at one
    thread (CHAINRULE_JIT_BLAS=one); asserts it succeeded; returns the ``name value`` pairs
    it printed, and its output."""
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2",
               CHAINRULE_JIT_BLAS="one")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    words = r.stdout.split()
    return dict(zip(words[::2], words[1::2])), r.stdout


def test_fifty_lenet_and_lstm_steps_on_two_threads_match_eager():
    """50 SGD steps of a LeNet and an LSTM on backend c, OMP_NUM_THREADS=2 and OpenBLAS held
    at one thread (CHAINRULE_JIT_BLAS=one): the products split, the pooling loops and the
    scans' row split ran, and losses and parameters stay within 1e-4 of eager's."""
    counts, out = held_on_two_threads(_STEPS)
    assert int(counts["splits"]) > 0 and int(counts["pools"]) > 0, out
    assert counts["scans"] == "rows", out
