"""Backend "c"'s LSTM and GRU scans split over OpenMP threads (jit/crnn.py): over batch rows,
and (the LSTM's) over blocks of hidden units; and their step products in calls of a few rows.

Split over rows, each thread runs its band of rows through the whole sequence: its rows'
product (the same ``cblas_?gemm`` on fewer rows) and its rows' gates, the same operations per
row as the one-thread scan; over units, each thread makes its units' gate columns per step and
waits for the others at a barrier. A wrong band, block or call of rows gives wrong values in
the outputs or gradients compared here (checked by breaking the weight copy's offset, the
backward product's column offset and the row calls' offset: each failed these tests). The
products are not always bitwise those of the whole batch: OpenBLAS's
SkylakeX kernels (picked on this AMD EPYC too) take a "small matrix" path, summing in another
order, below about 10^6 multiply-adds per call, so a band can take it where the whole batch
does not (a 16-row batch with H 128 in two 8-row bands: the backward's (8, 512) @ (512, 128)
products differ in the last bits; the benchmark's 32 rows in 16-row bands, H 128, L 50, came
out bitwise in float32 and float64, as did 33 and 64 rows). So the split scans are
compared with the one-thread scan, and with the NumPy versions, at float rounding: relative
2e-5 / absolute 1e-6 (float32), 1e-12 / 1e-13 (float64), as tests/jit/test_cbackend.py's LSTM
tests (tanh is the C library's there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_cbackend import _lstm_args as _args  # (dtype, L, B, H, seed): xg, w, h0, c0
from test_cbackend import _tol

from chainrule.jit import cbackend, cconv, crnn, kcache, render_c
from chainrule.primitives import REGISTRY
from chainrule.primitives.recurrent import (
    _gru_backward_raw,
    _gru_impl,
    _lstm_backward_raw,
    _lstm_impl,
)

pytestmark = [
    pytest.mark.skipif(cbackend.unavailable() is not None, reason=str(cbackend.unavailable())),
    pytest.mark.skipif(not cconv.gemm_pointers() or crnn.blas_threads() is None,
                       reason="NumPy's bundled OpenBLAS not found: the scans are not in C"),
]


@pytest.fixture(scope="module")
def lib():
    decl, src = crnn.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return crnn.wrappers(mod.lib, mod.ffi)


@pytest.fixture
def threads(monkeypatch):
    """Set the scans' thread count (the threshold off, so small sizes split too) and, with
    a second argument, the LSTM's split ("rows" or "units")."""
    monkeypatch.setattr(crnn, "_PARALLEL_MACS", 0)

    def use(n, split="units"):
        monkeypatch.setattr(crnn, "THREADS", [n])
        monkeypatch.setattr(crnn, "SPLIT", [split])

    return use


def _ran(key, n, split, B, H):
    """Assert the last ``key`` scan ran on the threads and the split asked for."""
    most = B if split == "rows" else H
    assert crnn.LAST_THREADS[key] == min(n, most)  # the split really ran
    assert crnn.SPLITS[key] == (split if min(n, most) > 1 else "none")


@pytest.mark.parametrize("split", ["rows", "units"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("B", "H"), [(1, 20), (3, 20), (33, 20), (2, 7), (3, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_split_scans_match_the_one_thread_scans(lib, threads, dtype, B, H, reverse, split):
    xg, w, h0, c0 = _args(dtype, 6, B, H, seed=B + H)
    results = {}
    for n in (1, 2, 3):
        threads(n, split)
        out = lib["lstm_scan"](np, xg, w, h0, c0, reverse)
        _ran("lstm_scan", n, split, B, H)
        gs = tuple(np.random.default_rng(2).standard_normal(o.shape).astype(dtype)
                   for o in out)
        back = lib["kernel.lstm_backward"](gs, xg, w, h0, c0, out, reverse)
        _ran("lstm_backward", n, split, B, H)
        results[n] = out + back
    for n in (2, 3):
        for name, a, b in zip(("hs", "cs", "gates", "dxg", "dh0", "dc0"), results[n],
                              results[1]):
            np.testing.assert_allclose(a, b, err_msg=f"{name}, {n} threads", **_tol(dtype))
    # and the NumPy versions' values and gradients
    want = _lstm_impl(np, xg, w, h0, c0, reverse)
    gs = tuple(np.random.default_rng(2).standard_normal(o.shape).astype(dtype) for o in want)
    want = want + _lstm_backward_raw(gs, xg, w, h0, c0, want, reverse)
    for name, a, b in zip(("hs", "cs", "gates", "dxg", "dh0", "dc0"), results[2], want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, err_msg=name, **_tol(dtype))


@pytest.mark.parametrize("which", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 0, 0)],
                         ids=lambda w: "g{}{}{}".format(*w))
@pytest.mark.parametrize("cell", ["lstm", "lstm-rows", "gru"])
def test_split_backward_with_missing_cotangents(lib, threads, cell, which):
    cell, _, split = cell.partition("-")
    make, impl, raw = {"lstm": (_args, _lstm_impl, _lstm_backward_raw),
                       "gru": (_gru_args, _gru_impl, _gru_backward_raw)}[cell]
    args = make("float64", 5, 7, 9, seed=3)
    out = impl(np, *args, False)
    rng = np.random.default_rng(4)
    gs = tuple(rng.standard_normal(o.shape) if on else None for on, o in zip(which, out))
    want = raw(gs, *args, out, False)
    for n in (1, 2):
        threads(n, split or "units")
        got = lib[f"kernel.{cell}_backward"](gs, *args, out, False)
        assert crnn.LAST_THREADS[f"{cell}_backward"] == n
        for a, e in zip(got, want):
            np.testing.assert_allclose(a, e, err_msg=f"{n} threads", **_tol("float64"))


@pytest.mark.parametrize("split", ["rows", "units"])
@pytest.mark.parametrize("rows", [1, 3, 5, 16])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_products_in_calls_of_few_rows(lib, threads, monkeypatch, cell, rows, split):
    """The scans' step products in calls of ``rows`` rows (the last call shorter), on one
    thread and split, match the NumPy versions: a call's rows or offsets wrong would not."""
    make, impl, raw = {"lstm": (_args, _lstm_impl, _lstm_backward_raw),
                       "gru": (_gru_args, _gru_impl, _gru_backward_raw)}[cell]
    args = make("float64", 4, 11, 6, seed=rows)
    want = impl(np, *args, True)
    gs = tuple(np.random.default_rng(5).standard_normal(o.shape) for o in want)
    want = want + raw(gs, *args, want, True)
    monkeypatch.setattr(crnn, "ROWS", [rows])
    for n in (1, 2):
        threads(n, split)
        with cconv.one_blas_thread():  # (on its own threads, OpenBLAS gets whole products)
            out = lib[f"{cell}_scan"](np, *args, True)
            got = out + lib[f"kernel.{cell}_backward"](gs, *args, out, True)
        assert crnn.LAST_ROWS[f"{cell}_scan"] == crnn.LAST_ROWS[f"{cell}_backward"] == rows
        assert crnn.LAST_THREADS[f"{cell}_scan"] == n
        for a, e in zip(got, want):
            np.testing.assert_allclose(a, e, err_msg=f"{n} threads", **_tol("float64"))


def test_rows_per_call_trial(monkeypatch):
    monkeypatch.setattr(crnn, "_PICKED", {})
    f32 = np.dtype("float32")
    assert crnn._rows_per_call(f32, 32, 512, 128, whole=True) == 32  # OpenBLAS threads it
    assert crnn._rows_per_call(f32, 8, 512, 128, whole=False) == 8  # too few rows to split
    picked = crnn._rows_per_call(f32, 32, 512, 128, whole=False)
    assert picked in (32, *crnn._TRY_ROWS) and crnn._PICKED == {(f32, 32, 512, 128): picked}


def test_split_from_the_environment(lib, monkeypatch):
    monkeypatch.setattr(crnn, "_PARALLEL_MACS", 0)
    monkeypatch.setattr(crnn, "THREADS", [2])
    xg, w, h0, c0 = _args("float32", 3, 4, 8, seed=8)
    for how in ("rows", "units", " Units "):
        monkeypatch.setenv("CHAINRULE_JIT_LSTM_SPLIT", how)
        lib["lstm_scan"](np, xg, w, h0, c0, False)
        assert crnn.SPLITS["lstm_scan"] == how.strip().lower()
    monkeypatch.delenv("CHAINRULE_JIT_LSTM_SPLIT")
    assert crnn.lstm_split() == "rows"
    monkeypatch.setenv("CHAINRULE_JIT_LSTM_SPLIT", "columns")
    with pytest.raises(ValueError, match="CHAINRULE_JIT_LSTM_SPLIT='columns'"):
        lib["lstm_scan"](np, xg, w, h0, c0, False)


def test_threshold_keeps_small_scans_on_one_thread(lib, monkeypatch):
    monkeypatch.setattr(crnn, "THREADS", [2])
    xg, w, h0, c0 = _args("float32", 2, 4, 8, seed=5)  # 2*4*4*8*8 multiply-adds: one thread
    lib["lstm_scan"](np, xg, w, h0, c0, False)
    assert crnn.LAST_THREADS["lstm_scan"] == 1
    xg, w, h0, c0 = _args("float32", 4, 16, 128, seed=5)  # 4.2M: over 1 << 22
    lib["lstm_scan"](np, xg, w, h0, c0, False)
    assert crnn.LAST_THREADS["lstm_scan"] == 2


@pytest.fixture
def blas2():
    """OpenBLAS on 2 threads for the test (skipped where it will not take 2), then as before."""
    get, put = crnn.blas_threads()
    before = get()
    put(2)
    try:
        if get() != 2:
            pytest.skip("OpenBLAS does not take 2 threads here")
        yield get
    finally:
        put(before)


def test_blas_is_one_thread_inside_the_split_and_restored(lib, threads, blas2, monkeypatch):
    get, seen = blas2, []
    threads(2)
    real = crnn._in_region

    def spy(call, n):
        return real(lambda: (seen.append(get()), call())[1], n)

    monkeypatch.setattr(crnn, "_in_region", spy)
    xg, w, h0, c0 = _args("float32", 3, 4, 8, seed=6)
    lib["lstm_scan"](np, xg, w, h0, c0, False)
    assert seen == [1] and get() == 2


@pytest.mark.parametrize("cell", ["LSTM", "LSTM-units", "GRU"])
def test_jitted_step_on_two_threads_matches_eager(cell):
    """The whole path: a jitted LSTM (GRU) training step on backend "c" with
    OMP_NUM_THREADS=2 (a child process, so OpenMP reads it) under backend c's one-thread
    OpenBLAS setting (CHAINRULE_JIT_BLAS=one) splits both scans (the LSTM's over hidden
    units with CHAINRULE_JIT_LSTM_SPLIT=units, else over batch rows) and matches eager."""
    cell, _, split = cell.partition("-")
    code = textwrap.dedent(f"""
        import numpy as np
        import chainrule as cr
        from chainrule.jit import crnn
        rng = np.random.default_rng(0)
        x = cr.tensor(rng.standard_normal((20, 33, 16)).astype("float32"))
        cr.manual_seed(0)
        rnn = cr.nn.{cell}(16, 128)
        name = "{cell.lower()}"

        def step():
            for p in rnn.parameters():
                p.grad = None
            y, _ = rnn(x)
            (y * y).mean().backward()
            return [p.grad for p in rnn.parameters()]

        want = [g.numpy().copy() for g in step()]
        f = cr.jit(step, fullgraph=True, backend="c")
        for _ in range(3):
            got = [g.numpy().copy() for g in f()]
        used = crnn.LAST_THREADS[name + "_scan"], crnn.LAST_THREADS[name + "_backward"]
        assert used == (2, 2), crnn.LAST_THREADS
        split = "{split or 'rows'}"
        assert crnn.SPLITS[name + "_scan"] == crnn.SPLITS[name + "_backward"] == split
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        print("ok")
    """)
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2",
               CHAINRULE_JIT_BLAS="one", CHAINRULE_JIT_LSTM_SPLIT=split or "rows")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
    assert "OpenBLAS Warning" not in r.stderr


# ---------------------------------------------------------------- GRU
def _gru_args(dtype, L, B, H, seed):
    rng = np.random.default_rng(seed)
    xg = rng.standard_normal((L, B, 3 * H)).astype(dtype)
    w = (0.3 * rng.standard_normal((3 * H, H))).astype(dtype)
    b = rng.standard_normal(3 * H).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    return xg, w, b, h0


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("B", [1, 3, 33])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gru_scans_in_c_match_the_numpy_versions(lib, threads, dtype, B, reverse):
    xg, w, b, h0 = _gru_args(dtype, 6, B, 20, seed=B + 1)
    want = _gru_impl(np, xg, w, b, h0, reverse)
    gs = tuple(np.random.default_rng(3).standard_normal(o.shape).astype(dtype) for o in want)
    want = want + _gru_backward_raw(gs, xg, w, b, h0, want, reverse)
    names = ("hs", "hgs", "ns", "dx", "dhg", "dh0")
    for n in (1, 2, 3):
        threads(n)
        # non-contiguous inputs: a Fortran-order weight, strided initial state
        out = lib["gru_scan"](np, xg, np.asfortranarray(w), b,
                              np.repeat(h0, 2, axis=1)[:, ::2], reverse)
        assert crnn.LAST_THREADS["gru_scan"] == min(n, B)
        back = lib["kernel.gru_backward"](gs, xg, w, b, h0, out, reverse)
        assert crnn.LAST_THREADS["gru_backward"] == min(n, B)
        for name, a, e in zip(names, out + back, want):
            assert a.dtype == e.dtype and a.shape == e.shape
            np.testing.assert_allclose(a, e, err_msg=f"{name}, {n} threads", **_tol(dtype))


def test_gru_in_c_falls_back_where_it_does_not_apply(lib):
    xg, w, b, h0 = _gru_args("float16", 3, 2, 4, seed=6)
    got = lib["gru_scan"](np, xg, w, b, h0, False)  # float16: the impl (its float32 inside)
    want = REGISTRY["gru_scan"].impl(np, xg, w, b, h0, reverse=False)
    for a, e in zip(got, want):
        assert a.dtype == np.float16
        np.testing.assert_array_equal(a, e)
    xg, w, b, h0 = _gru_args("float32", 3, 2, 4, seed=6)
    out = _gru_impl(np, xg, w, b, h0, False)
    gs = (np.ones(out[0].shape, "float64"), None, None)  # a cotangent of another dtype
    for a, e in zip(lib["kernel.gru_backward"](gs, xg, w, b, h0, out, False),
                    _gru_backward_raw(gs, xg, w, b, h0, out, False)):
        np.testing.assert_array_equal(a, e)


def test_blas_count_comes_back_after_scans_in_several_python_threads(lib, threads, blas2):
    import concurrent.futures

    threads(2)
    xg, w, h0, c0 = _args("float32", 20, 8, 32, seed=7)
    want = lib["lstm_scan"](np, xg, w, h0, c0, False)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: lib["lstm_scan"](np, xg, w, h0, c0, False), range(16)))
    assert blas2() == 2 and cconv._BLAS_HELD[0] == 0
    for out in outs:
        for a, e in zip(out, want):
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("shape", [(0, 3, 4), (3, 0, 4), (3, 2, 0)], ids=["L0", "B0", "H0"])
def test_empty_scans(lib, shape):
    L, B, H = shape
    for cell, width in (("lstm", 4), ("gru", 3)):
        xg = np.ones((L, B, width * H), "float32")
        w = np.ones((width * H, H), "float32")
        h0 = np.ones((B, H), "float32")
        args = (xg, w, h0, h0) if cell == "lstm" else (xg, w, np.ones(width * H, "float32"),
                                                       h0)
        want = REGISTRY[f"{cell}_scan"].impl(np, *args, reverse=False)
        out = lib[f"{cell}_scan"](np, *args, reverse=False)
        for a, e in zip(out, want):
            assert a.shape == e.shape and a.dtype == e.dtype
        gs = (np.ones_like(out[0]), None, None)
        raw = {"lstm": _lstm_backward_raw, "gru": _gru_backward_raw}[cell]
        for a, e in zip(lib[f"kernel.{cell}_backward"](gs, *args, out, False),
                        raw(gs, *args, out, False)):
            assert a.shape == e.shape
            np.testing.assert_array_equal(a, e)
