"""Backend "c"'s row-wise reductions in C (``jit/creduce.py``: softmax, log-softmax, layer norm
and its raw backward, ``sum_to`` over leading axes) against the impls and, through the jit,
against the unfused numpy-backend program.

Tolerances: the elementwise steps are the impls' own, but row sums are accumulated in another
order (vector partial sums against NumPy's pairwise sums and BLAS's products) and exp/log are
the C library's, so results are compared at relative 1e-5 with absolute 1e-6 (float32) and
relative 1e-12 with absolute 1e-13 (float64); gradients through the jit at 1e-4 / 1e-10 (they
pass through matrix products and several rounded steps). A column sum adds the rows in NumPy's
order for ``x.sum(axis=0)`` (two or more columns): compared bitwise with that.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cbackend import _run_both

import chainrule as cr
from chainrule.jit import cbackend, creduce, kcache, render_c
from chainrule.primitives import REGISTRY
from chainrule.primitives.reduce import _ln_vjp_rows

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")

ROWS = (1, 3, 65, 1000)
WIDTHS = (1, 7, 128)


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)


_LIB: list = []


def _lib():
    if not _LIB:
        decl, src = creduce.source()
        mod, _ = kcache.load(decl, render_c.PRELUDE + src)
        _LIB.append(creduce.wrappers(mod.lib, mod.ffi))
    return _LIB[0]


def _data(shape, dtype, seed=0):
    return (3 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def _close(got, want, dtype):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_rows_match_the_impl(name, dtype):
    for rows in ROWS:
        for n in WIDTHS:
            x = _data((rows, n), dtype, seed=rows * n)
            _close(_lib()[name](np, x, axis=-1), REGISTRY[name].impl(np, x, axis=-1), dtype)
    x = _data((4, 5, 33), dtype)  # 3-d, the last axis named positively
    _close(_lib()[name](np, x, axis=2), REGISTRY[name].impl(np, x, axis=2), dtype)
    # arguments of exp around the loops' cutoff (below it exp is taken as 0) and far below
    x = np.array([[0.0, -1.0, -50.0, -79.5, -80.5, -86.0, -90.0, -699.0, -701.0, -800.0,
                   -1e30, -np.inf]] * 3, dtype) + np.array([[0.0], [5.0], [-300.0]], dtype)
    _close(_lib()[name](np, x, axis=-1), REGISTRY[name].impl(np, x, axis=-1), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layer_norm_rows_and_backward_match_the_impl(dtype):
    for rows in ROWS:
        for n in WIDTHS:
            x = _data((rows, n), dtype, seed=rows + n)
            want = REGISTRY["layer_norm"].impl(np, x, axes=(1,), eps=1e-5)
            _close(_lib()["layer_norm"](np, x, axes=(1,), eps=1e-5), want, dtype)
            v = _data((rows, n), dtype, seed=rows * n + 1)
            _close(_lib()["kernel.layer_norm_vjp_rows"](v, x, want, (1,), 1e-5),
                   _ln_vjp_rows(v, x, want, (1,), 1e-5), dtype)
    x = _data((3, 4, 5, 6), dtype)  # over two trailing axes, named negatively
    want = REGISTRY["layer_norm"].impl(np, x, axes=(2, 3), eps=1e-3)
    _close(_lib()["layer_norm"](np, x, axes=(-2, -1), eps=1e-3), want, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_sums_are_numpys_sum_over_axis_0(dtype):
    for rows in ROWS:
        for n in WIDTHS + (33, 512, 1000):
            x = _data((rows, n), dtype, seed=rows + 2 * n)
            got = _lib()["sum_to"](np, x, shape=(n,))
            assert got.dtype == x.dtype and got.shape == (n,)
            # one column: the impl (NumPy sums a contiguous run pairwise)
            np.testing.assert_array_equal(
                got, x.sum(axis=0) if n > 1 else REGISTRY["sum_to"].impl(np, x, shape=(n,)))
            # and within the bound of a sequential sum of the exact (float64) one
            bound = rows * np.finfo(dtype).eps * np.abs(x).astype("float64").sum(axis=0)
            assert (np.abs(got - x.astype("float64").sum(axis=0)) <= bound).all()
    x = _data((4, 6, 5, 3), dtype)  # several leading axes; a trailing (5, 3) block kept
    np.testing.assert_array_equal(_lib()["sum_to"](np, x, shape=(5, 3)),
                                  x.reshape(24, 15).sum(axis=0).reshape(5, 3))
    np.testing.assert_array_equal(_lib()["sum_to"](np, x[0, 0, 0], shape=()),
                                  x[0, 0, 0].sum(axis=0))


def test_non_contiguous_inputs():
    lib = _lib()
    x = _data((40, 66), "float64")[:, ::2]  # strided rows
    xt = _data((33, 40), "float64").T  # transposed
    for a in (x, xt):
        for name in ("softmax", "log_softmax"):
            _close(lib[name](np, a, axis=-1), REGISTRY[name].impl(np, a, axis=-1), "float64")
        want = REGISTRY["layer_norm"].impl(np, a, axes=(1,), eps=1e-5)
        _close(lib["layer_norm"](np, a, axes=(1,), eps=1e-5), want, "float64")
        v = np.asfortranarray(_data(a.shape, "float64", seed=3))
        _close(lib["kernel.layer_norm_vjp_rows"](v, a, want, (1,), 1e-5),
               _ln_vjp_rows(v, a, want, (1,), 1e-5), "float64")
        np.testing.assert_array_equal(lib["sum_to"](np, a, shape=(33,)),
                                      np.ascontiguousarray(a).sum(axis=0))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_inf_propagate_as_in_numpy(dtype):
    lib = _lib()
    x = _data((6, 9), dtype)
    x[1, 4] = np.nan  # a NaN row: all NaN
    x[2, :] = -np.inf  # softmax's max is -inf: NaN, as NumPy gives
    x[3, 2] = np.inf  # inf - inf
    x[4, 0] = -np.inf  # one -inf: exp gives 0 there, the row stays finite
    x[5, 8] = np.nan  # the NaN last (the vector loop's remainder)
    with np.errstate(all="ignore"):
        for name in ("softmax", "log_softmax"):
            got, want = lib[name](np, x, axis=-1), REGISTRY[name].impl(np, x, axis=-1)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            assert np.isnan(got[[1, 2, 3, 5]]).all(), name
            fin = np.isfinite(want)
            np.testing.assert_allclose(got[fin], want[fin], **_tol(dtype))
            assert (got[~fin & ~np.isnan(want)] == want[~fin & ~np.isnan(want)]).all()
        want = REGISTRY["layer_norm"].impl(np, x, axes=(1,), eps=1e-5)
        got = lib["layer_norm"](np, x, axes=(1,), eps=1e-5)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(got[[1, 2, 3, 4, 5]]).all() and np.isfinite(got[0]).all()
        np.testing.assert_array_equal(lib["sum_to"](np, x, shape=(9,)), x.sum(axis=0))


def test_calls_the_loops_do_not_cover_run_the_impl():
    lib = _lib()
    x = _data((5, 7), "float32")
    for name in ("softmax", "log_softmax"):  # not the last axis
        np.testing.assert_array_equal(lib[name](np, x, axis=0),
                                      REGISTRY[name].impl(np, x, axis=0))
    h = x.astype("float16")  # float16: the impl (float32 inside)
    for name in ("softmax", "log_softmax"):
        got = lib[name](np, h, axis=-1)
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, REGISTRY[name].impl(np, h, axis=-1))
    np.testing.assert_array_equal(lib["layer_norm"](np, h, axes=(1,), eps=1e-5),
                                  REGISTRY["layer_norm"].impl(np, h, axes=(1,), eps=1e-5))
    np.testing.assert_array_equal(lib["layer_norm"](np, x, axes=(0,), eps=1e-5),
                                  REGISTRY["layer_norm"].impl(np, x, axes=(0,), eps=1e-5))
    y = _data((4, 5, 7), "float64")
    for shape in ((5, 1), (4, 5, 7), (1, 7)):  # middle axes summed, nothing to do, kept dims
        np.testing.assert_array_equal(lib["sum_to"](np, y, shape=shape),
                                      REGISTRY["sum_to"].impl(np, y, shape=shape))
    assert lib["sum_to"](np, np.zeros((0, 3)), shape=(3,)).tolist() == [0.0, 0.0, 0.0]


def _jit_matches(fn, arrays, dtype, names):
    """``fn``'s values and gradients on backend "c" match the numpy backend's, and the
    program calls the C versions of the ops ``names``."""
    want, got, f = _run_both(fn, *arrays)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, **tol)
    used = {op.name for op in f._program(-1).graph.ops
            if getattr(op.fn, "__module__", "") == creduce.__name__}
    assert names <= used, f.kernel_graph()


def _blocks(x, w, b, g, beta):
    """Softmax, log-softmax, layer norm and bias gradients (``sum_to``) in one function."""
    F = cr.nn.functional
    h = F.layer_norm(x @ w + b, (w.shape[1],), g, beta)
    return F.softmax(h, -1) * 2.0 + F.log_softmax(h * 0.5, dim=-1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 3, 65])
def test_through_the_jit_values_and_gradients_match_the_unfused_program(rows, dtype):
    n = 9
    arrays = [_data((rows, 6), dtype, 1), _data((6, n), dtype, 2) / 3, _data((n,), dtype, 3),
              _data((n,), dtype, 4), _data((n,), dtype, 5)]
    # the program calls the C versions (the softmaxes, the layer norm forward and backward,
    # the backward fused with its affine step's and, here, with the bias gradients' column
    # sums: test_creduce_ln_affine.py)
    _jit_matches(_blocks, arrays, dtype, {"softmax", "log_softmax", "layer_norm",
                                          "kernel.layer_norm_affine_vjp"})


def test_through_the_jit_broadcast_bias_gradients():
    def fn(x, b):
        return (x + b).tanh() * cr.nn.functional.softmax(x * b, -1)

    arrays = [_data((4, 5, 33), "float64"), _data((33,), "float64", 1)]
    want, got, f = _run_both(fn, *arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # the bias gradient's column sum: creduce's C sum_to, or made in the kernel's pass
    # (fuse._fold_colsums); never NumPy's
    ops = f._program(-1).graph.ops
    src = "".join(c.kernels.source for c in f._compiles if c.kernels is not None)
    assert all(op.fn.__module__ == creduce.__name__ for op in ops if op.name == "sum_to")
    assert any(op.name == "sum_to" for op in ops) or "[j] += t" in src


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_layer_norm_backward_is_one_op_with_nothing_recorded_inside(backend):
    """The raw layer-norm backward is recorded as one op; the arrays it creates inside (its
    1/n weights, with NumPy's ``full``) are not traced, so no op of its body (an in-place
    write on such an array, which dead-code elimination keeps) is left in the program."""
    F = cr.nn.functional

    def fn(x):
        x = x.detach().requires_grad_()
        y = F.layer_norm(x, (8,))
        return cr.autograd.grad((y * y).sum(), [x])[0]

    x = cr.tensor(_data((4, 8), "float32"))
    want = fn(x).numpy()
    f = cr.jit(fn, fullgraph=True, backend=backend)
    for _ in range(3):
        got = f(x).numpy()
    np.testing.assert_allclose(got, want, **_tol("float32"))
    text = f.graph()
    assert text.count("kernel.layer_norm_vjp_rows") == 1 and "writes" not in text, text
    assert "[4,1]" not in text, text  # no per-row statistic left over from the kernel's body


# ---------------------------------------------------------------- the attention's softmax
def _attention_args(dtype, N=3, L=5, E=12, seed=11):
    qkv = _data((N, L, 3 * E), dtype, seed)
    causal = np.triu(np.full((L, L), -np.inf, dtype), 1)
    return qkv, causal


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bias", ["none", "causal", "causal4d", "per_sample"])
@pytest.mark.parametrize("seq_first", [False, True])
def test_attention_softmax_in_c_matches_the_impl(bias, dtype, seq_first):
    from chainrule.primitives import attention

    qkv, causal = _attention_args(dtype)
    if seq_first:
        qkv = qkv.swapaxes(0, 1)  # (L, N, 3E), not contiguous
    b = {"none": None, "causal": causal, "causal4d": causal[None, None],
         "per_sample": _data((3, 1, 5, 5), dtype, 12)}[bias]  # the last runs NumPy's step
    want = attention._self_attention(np, qkv, b, None, 2, 0.3, seq_first)
    got = _lib()["self_attention"](np, qkv, b, None, heads=2, scale=0.3, seq_first=seq_first)
    for a, w in zip(got, want):
        _close(a, w, dtype)
    g = _data(want[0].shape, dtype, 13)
    gp = _data(want[1].shape, dtype, 14)
    for gpt in (None, gp):
        _close(_lib()["kernel.self_attention_vjp"](np, g, gpt, qkv, None, want, 2, 0.3,
                                                    seq_first),
               attention._self_attention_vjp_np(np, g, gpt, qkv, None, want, 2, 0.3,
                                                seq_first), dtype)


def test_attention_softmax_nan_and_masked_rows():
    """A NaN score makes its query's weights NaN (the max propagates it, as NumPy's does);
    a query whose keys are all masked (-inf) gets NaN weights, as in NumPy."""
    from chainrule.primitives import attention

    qkv, causal = _attention_args("float64")
    qkv[1, 2, 0] = np.nan  # a query feature of sample 1, position 2
    causal[3, :] = -np.inf  # query 3 sees no key (bias rows are queries)
    with np.errstate(all="ignore"):
        want = attention._self_attention(np, qkv, causal, None, 2, 0.3, False)
        got = _lib()["self_attention"](np, qkv, causal, None, heads=2, scale=0.3,
                                       seq_first=False)
    for a, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(w))
        fin = ~np.isnan(w)
        np.testing.assert_allclose(a[fin], w[fin], **_tol("float64"))
    assert np.isnan(got[1][1, 0, :, 2]).all() and np.isnan(got[1][:, :, :, 3]).all()


def test_attention_in_c_falls_back_for_long_sequences(monkeypatch):
    """Past ``_MAX_QUERIES`` (its rows are on the C stack) NumPy's step runs: bitwise."""
    from chainrule.primitives import attention

    monkeypatch.setattr(creduce, "_MAX_QUERIES", 4)
    qkv, causal = _attention_args("float32")  # 5 queries
    want = attention._self_attention(np, qkv, causal, None, 2, 0.3, False)
    got = _lib()["self_attention"](np, qkv, causal, None, heads=2, scale=0.3, seq_first=False)
    g = _data(want[0].shape, "float32", 13)
    for a, w in zip(got, want):
        np.testing.assert_array_equal(a, w)
    np.testing.assert_array_equal(
        _lib()["kernel.self_attention_vjp"](np, g, None, qkv, None, want, 2, 0.3, False),
        attention._self_attention_vjp_np(np, g, None, qkv, None, want, 2, 0.3, False))


def test_attention_in_c_falls_back_for_other_dtypes_and_modules():
    from chainrule.primitives import attention

    qkv, causal = _attention_args("float16")
    want = REGISTRY["self_attention"].impl(np, qkv, causal, None, heads=2, scale=0.3,
                                           seq_first=False)
    got = _lib()["self_attention"](np, qkv, causal, None, heads=2, scale=0.3, seq_first=False)
    for a, w in zip(got, want):
        assert a.dtype == np.float16
        np.testing.assert_array_equal(a, w)
    qkv, causal = _attention_args("float32")
    out = attention._self_attention(np, qkv, causal, None, 2, 0.3, False)
    g = np.ones(out[0].shape, "float64")  # a cotangent of another dtype: declined
    assert _lib()["kernel.self_attention_vjp"](np, g, None, qkv, None, out, 2, 0.3,
                                               False) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_attention_through_the_jit_matches_the_unfused_program(dtype):
    from chainrule.ops.attention import packed_self_attention

    L = 6
    causal = np.triu(np.full((L, L), -np.inf, dtype), 1)

    def fn(x, w):
        return packed_self_attention(x @ w, 2, bias=cr.tensor(causal)).tanh()

    arrays = [_data((3, L, 8), dtype, 15), _data((8, 24), dtype, 16) / 3]
    _jit_matches(fn, arrays, dtype, {"self_attention", "kernel.self_attention_vjp"})


def test_attention_backward_is_one_op_and_its_replay_splits_the_batch_as_eager(monkeypatch):
    """On the numpy backend too: the fused attention backward is recorded as one op, and its
    replay splits the batch over the pool as eager code does (bitwise eager)."""
    from chainrule.backend import threads
    from chainrule.ops.attention import packed_self_attention
    from chainrule.primitives import attention

    monkeypatch.delenv("CHAINRULE_JIT_VERIFY", raising=False)  # a verified call runs eager too
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(attention, "_MIN_WORK", 1)  # split even this small batch
    split = []
    real = threads.parallel
    monkeypatch.setattr(threads, "parallel", lambda fn, n, m: (split.append(n // m),
                                                               real(fn, n, m))[1])

    def fn(x):
        x = x.detach().requires_grad_()
        return cr.autograd.grad((packed_self_attention(x, 2) ** 2).sum(), [x])[0]

    x = cr.tensor(_data((4, 5, 12), "float32"))
    f = cr.jit(fn, fullgraph=True, backend="numpy")
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), fn(x).numpy())
    text = f.graph()
    assert text.count("kernel.self_attention_vjp") == 1 and "np.matmul" not in text, text
    split.clear()
    f(x)  # the replay: the forward impl and the backward kernel each split the batch
    assert len(split) == 2 and min(split) >= 2, split


# ------------------------------------------ the attention loop's skipped tiles (SKIP_TILES)
def _both_ways(qkv, bias, g, heads=2, scale=0.3, seq_first=False):
    """(forward (o, pt), dqkv) of the C loop and of the impl, and TAKEN's tile counts."""
    from chainrule.primitives import attention

    with np.errstate(all="ignore"):
        want = attention._self_attention(np, qkv, bias, None, heads, scale, seq_first)
        dwant = attention._self_attention_vjp_np(np, g, None, qkv, None, want, heads, scale,
                                                 seq_first)
        creduce.TAKEN.clear()
        got = _lib()["self_attention"](np, qkv, bias, None, heads=heads, scale=scale,
                                       seq_first=seq_first)
        dgot = _lib()["kernel.self_attention_vjp"](np, g, None, qkv, None, got, heads, scale,
                                                   seq_first)
    tiles = (creduce.TAKEN["attention_tiles"], creduce.TAKEN["attention_vjp_tiles"])
    return (*got, dgot), (*want, dwant), tiles


def _same_nans_close(got, want, dtype):
    """Equal NaNs, and the rest close at ``_tol`` with its absolute part scaled by the
    array's largest finite value (sums of products of another order: a small result is a
    cancellation of large terms)."""
    for a, w in zip(got, want):
        assert a.dtype == w.dtype and a.shape == w.shape
        np.testing.assert_array_equal(np.isnan(a), np.isnan(w))
        fin = ~np.isnan(w)
        tol = _tol(dtype)
        big = np.abs(w[fin & np.isfinite(w)]).max(initial=1.0)
        np.testing.assert_allclose(a[fin], w[fin], rtol=tol["rtol"], atol=tol["atol"] * big)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("L", [5, 37, 70])
@pytest.mark.parametrize("seq_first", [False, True])
def test_attention_tiles_skipped_under_a_causal_mask_match_the_impl(L, dtype, seq_first):
    """The causal mask's -inf tiles (forward) and the zero weights' tiles (backward) are
    skipped in every block (sizes that are not whole tiles), with the impl's results."""
    qkv = _data((3, L, 24), dtype, 21)
    if seq_first:
        qkv = qkv.swapaxes(0, 1)
    causal = np.triu(np.full((L, L), -np.inf, dtype), 1)
    g = _data((L, 3, 8) if seq_first else (3, L, 8), dtype, 22)
    got, want, tiles = _both_ways(qkv, causal, g, seq_first=seq_first)
    _same_nans_close(got, want, dtype)
    # 3 samples x 2 heads, both ways; 5 positions are one tile, none dead: every tile runs
    assert tiles == ((6, 6) if L > 32 else (0, 0))
    # and the same results with every tile run
    old = creduce.SKIP_TILES
    creduce.SKIP_TILES = 0
    try:
        full, _, none = _both_ways(qkv, causal, g, seq_first=seq_first)
    finally:
        creduce.SKIP_TILES = old
    assert none == (0, 0)
    _same_nans_close(got, full, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_attention_tiles_with_another_mask_and_a_query_that_sees_no_key(dtype):
    """A banded mask (dead tiles in both corners) and a query whose keys are
    all masked (NaN weights, as the impl gives)."""
    L = 70  # 3 tiles each way in the forward (32), 3 in the backward
    i = np.arange(L)
    band = np.where(np.abs(i[:, None] - i[None, :]) <= 5, 0.0, -np.inf).astype(dtype)
    qkv, g = _data((2, L, 24), dtype, 23), _data((2, L, 8), dtype, 24)
    got, want, tiles = _both_ways(qkv, band, g)
    _same_nans_close(got, want, dtype)
    assert tiles == (4, 4)
    band[7] = -np.inf  # query 7 sees no key: its weights are NaN in the forward
    got, want, tiles = _both_ways(qkv, band, g)
    _same_nans_close(got, want, dtype)
    assert np.isnan(got[1][:, :, :, 7]).all() and tiles[1] == 0  # NaN weights: every tile


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("where", ["v", "k", "q_huge", "go"])
def test_attention_tiles_not_skipped_where_a_masked_term_is_not_zero(where, dtype):
    """An inf or NaN (or scores that overflow) in a block make its masked terms NaN in the
    impl (0 * inf, -inf + inf): that block runs every tile and gives the impl's NaNs; the
    other blocks still skip."""
    L, E = 37, 12
    qkv = _data((3, L, 3 * E), dtype, 25)
    g = _data((3, L, E), dtype, 26)
    causal = np.triu(np.full((L, L), -np.inf, dtype), 1)
    big = np.finfo(dtype).max / 4
    if where == "v":
        qkv[1, L - 1, 2 * E] = np.inf  # the last key's value: weight 0 for all but one query
    elif where == "k":
        qkv[1, L - 1, E] = np.nan  # the last key: masked for all but the last query
    elif where == "q_huge":
        qkv[1, 0, :6] = big  # the first query's scores overflow: inf + -inf
        qkv[1, L - 1, E:E + 6] = big
    else:
        g[1, 0, 0] = np.inf  # the first query's cotangent: weight 0 for all keys but one
    got, want, tiles = _both_ways(qkv, causal, g)
    _same_nans_close(got, want, dtype)
    assert np.isnan(got[2][1]).any() or np.isnan(got[0][1]).any()  # the NaNs reached
    blocks = 6 - 1  # head 0 of sample 1 runs every tile
    assert tiles == ((6, blocks) if where == "go" else (blocks, blocks))


def test_attention_tiles_on_the_pool_threads():
    """The transformer benchmark's shapes (16 samples, 4 heads, 64 positions: the blocks go
    to OpenMP's threads), causal, one block with an inf in its values."""
    L = 64
    qkv = _data((16, L, 384), "float32", 27)
    qkv[3, 10, 300] = np.inf  # sample 3's values, head 1
    causal = np.triu(np.full((L, L), -np.inf, "float32"), 1)
    g = _data((16, L, 128), "float32", 28)
    got, want, tiles = _both_ways(qkv, causal, g, heads=4, scale=32 ** -0.5)
    _same_nans_close(got, want, "float32")
    assert tiles == (63, 63)


def test_attention_without_dead_tiles_runs_every_tile():
    """No bias, or a finite one: nothing to skip, the loop as before (no tile path)."""
    L = 70
    qkv, g = _data((2, L, 24), "float64", 29), _data((2, L, 8), "float64", 30)
    for bias in (None, _data((L, L), "float64", 31)):
        got, want, tiles = _both_ways(qkv, bias, g)
        _same_nans_close(got, want, "float64")
        assert tiles == (0, 0)
