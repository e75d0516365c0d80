"""Backend c's ``linear``, ``kernel.linear_relu`` and ``kernel.linear_add`` split over OpenMP's
threads while NumPy's OpenBLAS is held at one thread (``jit/cgemm.py``; one pool with the C
loops, as ``cblas``'s ``matmul``): a block of output rows (direct arm, ``linear_add``) or
of output features (transposed arm) per thread, each one single-thread ``cblas_?gemm`` with
the bias, ReLU and residual applied by the thread owning the block.

Cut along the first dimension of the ``gemm`` call, each block keeps the whole K loop of
the unsplit call: on the transformer's and the MLP's shapes the results are the unsplit
call's bits (tested, float32 and float64, every layout of the operands). OpenBLAS may take
other kernels for a small or odd block than for the whole (K = 61; a float64 block cut along
the second dimension, where the first is shorter than two tiles): compared within rounding
there. Small products (below ``cblas.SPLIT_MACS``)
and OpenBLAS on its own threads are not split (the split counter, ``TAKEN["split"]``,
says which calls were)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from test_cblas_split import held_on_two_threads
from test_cgemm import _wrappers

from chainrule.jit import cbackend, cblas, cconv, cgemm, kcache, render_c
from chainrule.primitives import REGISTRY

pytestmark = [
    pytest.mark.skipif(cbackend.unavailable() is not None, reason=str(cbackend.unavailable())),
    pytest.mark.skipif(not cconv.gemm_pointers() or cconv.blas_threads() is None,
                       reason="NumPy's bundled OpenBLAS not found"),
]


@pytest.fixture
def split(monkeypatch):
    """``run(name, arm, on, *args)``: cgemm's wrapper ``name`` on the arm ``arm`` under a
    one-thread hold of OpenBLAS, every product big enough to split when ``on`` (else none),
    and how many calls were split."""
    fns = _wrappers(cgemm)
    before = cgemm.LAYOUT[0]

    def run(name, arm, on, *args):
        cgemm.LAYOUT[0] = arm
        monkeypatch.setattr(cblas, "SPLIT_MACS", 0 if on else 1 << 62)
        s0 = cgemm.TAKEN["split"]
        with cconv.one_blas_thread():
            out = fns[name](*args)
        return out, cgemm.TAKEN["split"] - s0

    yield run
    cgemm.LAYOUT[0] = before


def _omp_threads() -> int:
    """OpenMP's thread count in cgemm's compiled module."""
    decl, src = cgemm.source()
    mod, _ = kcache.load(decl, render_c.PRELUDE + src)
    return mod.lib.cgemm_max_threads()


needs_two = pytest.mark.skipif(not cbackend.unavailable() and _omp_threads() < 2,
                               reason="OpenMP has one thread here")


def _data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _operands(m, k, n, dtype, layout, bias, seed):
    """x (m, k), w (n, k), b, r as ``layout`` says: "c" (C-contiguous), "xt" (x the transpose
    of a C array), "wt" (w too), "strided" (x a strided view: copied by the wrapper)."""
    x, w = _data((m, k), dtype, seed), _data((n, k), dtype, seed + 1)
    if layout in ("xt", "wt"):
        x = np.ascontiguousarray(x.T).T
    if layout == "wt":
        w = np.ascontiguousarray(w.T).T
    if layout == "strided":
        x = _data((m, 2 * k), dtype, seed)[:, ::2]
    b = _data((n,), dtype, seed + 2) if bias else None
    return x, w, b, _data((m, n), dtype, seed + 3)


# (m, k, n): the transformer's and the MLP's (bitwise: every block whole tiles), then rows
# not a multiple of the block (16), features not either, K odd, a short first dimension
# (the cut falls on the other)
BITWISE = [(1024, 128, 384), (1024, 512, 128), (128, 784, 512), (67, 129, 65)]
SHAPES = BITWISE + [(517, 61, 35), (35, 61, 517), (17, 40, 300)]
@needs_two
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mkn", SHAPES)
def test_split_products_match_the_unsplit_call(split, dtype, mkn):
    m, k, n = mkn
    for arm in ("direct", "transposed"):
        bitwise = mkn in BITWISE
        for layout in ("c", "xt", "wt", "strided"):
            for bias in (True, False):
                x, w, b, r = _operands(m, k, n, dtype, layout, bias, m + n + k)
                for name, args in (("linear", (np, x, w, b)), ("kernel.linear_relu", (x, w, b)),
                                   ("kernel.linear_add", (x, w, b, r))):
                    if name == "kernel.linear_add" and arm == "transposed":
                        continue  # linear_add has the direct arm only
                    got, n_split = split(name, arm, True, *args)
                    want, n_plain = split(name, arm, False, *args)
                    assert (n_split, n_plain) == (1, 0), (name, arm)
                    assert got.shape == want.shape == (m, n) and got.dtype == want.dtype
                    if bitwise:
                        np.testing.assert_array_equal(got, want, err_msg=f"{name} {arm}")
                    else:
                        tol = 1e-5 if dtype == "float32" else 1e-12
                        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
                    ref = _unfused(name, args)
                    tol = 1e-4 if dtype == "float32" else 1e-11
                    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


def _unfused(name, args):
    lin, relu = REGISTRY["linear"].impl, REGISTRY["relu"].impl
    if name == "linear":
        return lin(*args)
    if name == "kernel.linear_relu":
        return relu(np, lin(np, *args))
    x, w, b, r = args
    return r + lin(np, x, w, b)


@needs_two
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_3d_input_and_nan_inf_split(split, dtype):
    x, w, b = _data((4, 70, 24), dtype, 1), _data((40, 24), dtype, 2), _data((40,), dtype, 3)
    x[0, 3, 2], x[2, 69, 0], w[7, 5], b[9] = np.nan, np.inf, -np.inf, np.nan
    r = _data((4, 70, 40), dtype, 4)
    for arm in ("direct", "transposed"):
        for name, args in (("linear", (np, x, w, b)), ("kernel.linear_relu", (x, w, b)),
                           ("kernel.linear_add", (x, w, b, r))):
            got, n_split = split(name, arm, True, *args)
            want, _ = split(name, arm, False, *args)
            assert n_split == 1 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


@needs_two
def test_what_is_not_split(monkeypatch):
    """Below SPLIT_MACS, both dims shorter than two blocks, OpenBLAS on its own threads, a
    call falling back to the impl: no split."""
    fns = _wrappers(cgemm)
    x, w, b = _data((200, 64), "float32", 1), _data((300, 64), "float32", 2), None
    monkeypatch.setattr(cblas, "SPLIT_MACS", 1 << 22)
    s0 = cgemm.TAKEN["split"]
    with cconv.one_blas_thread():
        fns["linear"](np, x, w, b)  # 3.8 M multiply-adds: below 2^22
        monkeypatch.setattr(cblas, "SPLIT_MACS", 0)
        fns["linear"](np, x[:31], w[:31], b)  # neither dim two blocks of 16
        fns["linear"](np, x.astype("float16"), w.astype("float16"), b)  # the impl
    assert cgemm.TAKEN["split"] == s0
    get, put = cconv.blas_threads()
    was = get()
    put(2)
    try:
        if get() == 2:  # OpenBLAS's own threads make the product
            fns["linear"](np, x, w, b)
            assert cgemm.TAKEN["split"] == s0
    finally:
        put(was)
    with cconv.one_blas_thread():
        fns["linear"](np, x, w, b)
    assert cgemm.TAKEN["split"] == s0 + 1


_STEPS = textwrap.dedent("""
    import numpy as np
    import chainrule as cr
    from chainrule.jit import cgemm
    F = cr.nn.functional

    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((256, 64)).astype("float32"))
    y = cr.tensor(rng.integers(0, 10, 256))
    runs = []
    for jitted in (False, True):
        cr.manual_seed(0)
        l1, l2, l3 = cr.nn.Linear(64, 256), cr.nn.Linear(256, 64), cr.nn.Linear(64, 10)
        params = [*l1.parameters(), *l2.parameters(), *l3.parameters()]
        opt = cr.optim.Adam(params, lr=1e-3)

        def step():
            opt.zero_grad()
            h = x + l2(F.relu(l1(x)))  # linear_relu, then a residual add of a product
            loss = F.cross_entropy(l3(h), y)
            loss.backward()
            opt.step()
            return loss.detach()

        f = cr.jit(step, fullgraph=True, backend="c") if jitted else step
        losses = [float(f().numpy()) for _ in range(30)]
        runs.append((losses, [p.detach().numpy().copy() for p in params]))
    (l0, p0), (l1_, p1) = runs
    np.testing.assert_allclose(l1_, l0, rtol=1e-4, atol=1e-6)
    for a, b in zip(p1, p0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert l1_[-1] < l1_[0]
    print("split", cgemm.TAKEN["split"], "relu", cgemm.TAKEN["linear_relu"],
          "add", cgemm.TAKEN["linear_add"])
""")


def test_a_jitted_step_on_two_threads_splits_and_matches_eager():
    """30 Adam steps of a residual MLP on backend c, OMP_NUM_THREADS=2, OpenBLAS held at one
    thread (CHAINRULE_JIT_BLAS=one): its products (2^22 multiply-adds, cblas.SPLIT_MACS) are
    split, and losses and parameters stay within 1e-4 of eager's."""
    counts, out = held_on_two_threads(_STEPS)
    assert int(counts["split"]) > 0 and int(counts["relu"]) > 0, out
    assert int(counts["add"]) > 0, out
