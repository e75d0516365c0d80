"""NumPy fast paths against the general code they stand in for (same inputs, same result)."""

import numpy as np
import pytest

from chainrule.primitives import RAW
from chainrule.primitives import attention as PA
from chainrule.primitives import movement as PM


@pytest.mark.parametrize("shape,rows,neg", [((65, 128), (16, 64), False), ((7, 3, 2), (40,), True),
                                            ((5, 4), (8, 6), True)])
def test_rows_add_matches_add_at(shape, rows, neg):
    r = np.random.default_rng(0)
    idx = r.integers(-shape[0] if neg else 0, shape[0], rows)
    vals = r.standard_normal(rows + shape[1:])
    ref = np.zeros(shape)
    np.add.at(ref, (idx,), vals)
    out = np.zeros(shape)
    assert PM._rows_add(np, out, (idx,), vals)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # through the primitive: the embedding backward
    got = RAW.scatter_to(vals, idx, shape=shape, index=(PM.IndexArg(0),))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_rows_add_declines_what_it_does_not_cover():
    out = np.zeros((4, 3))
    idx = np.arange(40) % 4
    assert not PM._rows_add(np, out, (idx,), np.ones(3))  # broadcast values
    assert not PM._rows_add(np, out, (idx[:5],), np.ones((5, 3)))  # few rows: add.at
    assert not PM._rows_add(np, out, (idx, idx % 3), np.ones(40))  # two index arrays
    bad = idx.copy()
    bad[7] = 4
    assert not PM._rows_add(np, out, (bad,), np.ones((40, 3)))
    with pytest.raises(IndexError):
        RAW.scatter_to(np.ones((40, 3)), bad, shape=(4, 3), index=(PM.IndexArg(0),))
    assert not out.any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seq_first", [False, True])
@pytest.mark.parametrize("bias_kind", [None, "causal", "per-sample"])
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("weights_cotangent", [False, True])
def test_self_attention_vjp_fast_path_matches_rule(dtype, seq_first, bias_kind, dropout,
                                                    weights_cotangent):
    r = np.random.default_rng(1)
    N, L, H, D = 3, 5, 2, 4
    shape = (L, N, 3 * H * D) if seq_first else (N, L, 3 * H * D)
    qkv = r.standard_normal(shape).astype(dtype)
    bias = {None: None, "causal": np.triu(np.full((L, L), -np.inf), 1),
            "per-sample": r.standard_normal((N, 1, L, L))}[bias_kind]
    bias = None if bias is None else bias.astype(dtype)
    dmask = ((r.random((N, H, L, L)) > 0.3) * 1.4).astype(dtype) if dropout else None
    p = dict(heads=H, scale=0.3, seq_first=seq_first)
    out = PA._self_attention(np, qkv, bias, dmask, **p)
    gs = [r.standard_normal(o.shape).astype(dtype) for o in out]
    if not weights_cotangent:
        gs[1] = None  # no gradient reached the attention weights
    fast = PA._self_attention_vjp_raw(RAW, gs, qkv, bias, dmask, out, (True, False, False), **p)[0]
    rule = PA._self_attention_vjp_rule(RAW, gs, qkv, bias, dmask, out, **p)
    assert fast.shape == rule.shape == qkv.shape and fast.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(fast, rule, **tol)


@pytest.mark.parametrize("shape,axes", [((4, 6, 8), (2,)), ((3, 5, 4), (1, 2)), ((7, 9), (1,))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_layer_norm_rows_match_the_formula(shape, axes, dtype):
    from chainrule.primitives import reduce as PR

    r = np.random.default_rng(2)
    x = (r.standard_normal(shape) * 3 + 5).astype(dtype)
    v = r.standard_normal(shape).astype(dtype)
    assert PR._ln_rows(np, x, axes) is not None  # the fast path is the one under test
    y = RAW.layer_norm(x, axes=axes, eps=1e-5)
    x64, v64 = x.astype(np.float64), v.astype(np.float64)
    d = x64 - x64.mean(axis=axes, keepdims=True)
    rstd = 1 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + 1e-5)
    y64 = d * rstd
    vjp64 = (v64 - v64.mean(axis=axes, keepdims=True)
             - y64 * (v64 * y64).mean(axis=axes, keepdims=True)) * rstd
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, y64, **tol)
    g = PR._ln_vjp_raw(RAW, v, x, y, axes, 1e-5)
    assert g.dtype == dtype and g.shape == shape
    np.testing.assert_allclose(g, vjp64, **tol)
    # a non-trailing axis takes the general code, with the same result
    assert PR._ln_rows(np, x, (0,)) is None


def _ref_conv(x, w, padding, dilation, groups):
    """Stride-1 N-d cross-correlation by brute force over kernel offsets (float64)."""
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0)] + list(padding))
    o, cg = w.shape[:2]
    og = o // groups
    out = tuple(xp.shape[2 + d] - dilation[d] * (w.shape[2 + d] - 1) for d in range(nd))
    y = np.zeros((x.shape[0], o) + out)
    for off in np.ndindex(*w.shape[2:]):
        sl = tuple(slice(i * d, i * d + n) for i, d, n in zip(off, dilation, out))
        patch = xp[(slice(None), slice(None)) + sl]
        for g in range(groups):
            wg = w[(slice(g * og, (g + 1) * og), slice(None)) + off]  # (og, cg)
            y[:, g * og:(g + 1) * og] += np.einsum("oc,nc...->no...", wg,
                                                    patch[:, g * cg:(g + 1) * cg])
    return y


@pytest.mark.parametrize("xs,ws,padding,dilation,groups", [
    ((2, 4, 5, 6, 7), (6, 2, 2, 3, 2), ((1, 0), (0, 2), (1, 1)), (1, 2, 1), 2),  # 3-D
    ((3, 6, 14, 14), (16, 6, 5, 5), ((0, 0), (0, 0)), (1, 1), 1),  # LeNet's conv2
    ((2, 1, 9, 8), (3, 1, 3, 3), ((2, 2), (2, 2)), (2, 1), 1),
])
def test_conv_flat_layout_matches_brute_force(xs, ws, padding, dilation, groups):
    r = np.random.default_rng(3)
    x, w, b = r.standard_normal(xs), r.standard_normal(ws), r.standard_normal(ws[0])
    nd = len(xs) - 2
    p = dict(stride=(1,) * nd, padding=padding, dilation=dilation, groups=groups)
    ref = _ref_conv(x, w, padding, dilation, groups) + b.reshape((1, -1) + (1,) * nd)
    y = RAW.conv(x, w, b, **p)
    assert y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    xt = np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)  # non-contiguous input
    np.testing.assert_allclose(RAW.conv(xt, w, None, **p), ref - b.reshape((1, -1) + (1,) * nd),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,axes", [((64, 16, 10, 10), (0, 2, 3)), ((16, 64, 128), (0, 1)),
                                        ((1024, 130), (1,)), ((8, 9, 70), (0,)),
                                        ((5, 6, 7, 20), (2, 3))])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blas_sum_matches_numpy(shape, axes, dtype):
    from chainrule.primitives.reduce import blas_sum

    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    r = blas_sum(np, x, axes)
    assert r is not None and r.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(r, x.sum(axis=axes), **tol)
    kd = RAW.sum(x, axes=axes, keepdims=True)
    assert kd.shape == x.sum(axis=axes, keepdims=True).shape


def test_blas_sum_declines():
    from chainrule.primitives.reduce import blas_sum

    x = np.ones((64, 16, 10, 10))
    assert blas_sum(np, x, (1,)) is None  # a middle axis
    assert blas_sum(np, x, (0, 1, 2, 3)) is None  # everything: NumPy's pairwise sum
    assert blas_sum(np, x[..., ::2], (0,)) is None  # not contiguous
    assert blas_sum(np, x.astype(np.int64), (0,)) is None
    assert blas_sum(np, np.ones((3, 5000)), (1,)) is None  # long rows: pairwise
    assert blas_sum(np, np.ones((4, 4)), (0,)) is None  # small


def test_fast_paths_leave_edge_cases_to_the_general_code():
    from chainrule.primitives import reduce as PR

    idx = np.arange(40) % 4
    empty = RAW.scatter_to(np.ones((40, 0)), idx, shape=(4, 0), index=(PM.IndexArg(0),))
    assert empty.shape == (4, 0)
    x16 = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float16)
    assert PR._ln_rows(np, x16, (1,)) is None  # float16: NumPy's mean accumulates in float32
    y16 = RAW.layer_norm(x16, axes=(1,), eps=1e-5)
    assert y16.dtype == np.float16
    ref = (x16 - x16.astype(np.float32).mean(1, keepdims=True)) / np.sqrt(
        x16.astype(np.float32).var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y16.astype(np.float32), ref, atol=1e-2)


# ================================================================ the seam, both ways
# Every op-table row and primitive sample runs with fast paths on (each kernel wrapped in a
# counter) and off (every kernel declines: the general code alone); outputs and first-order
# gradients (float32 and float64, a fixed random cotangent) must agree, and each kernel a row
# names in ``fast=`` must have been reached in the fast run.
import chainrule  # noqa: E402
from chainrule.primitives import fast as FP  # noqa: E402
from op_table import FLOATS, OP_TABLE, PRIM_SAMPLES, Maker, chainrule_call, outputs  # noqa: E402


def _counting(monkeypatch) -> dict:
    """Wrap every kernel behind the seam in a counter of the calls it did not decline."""
    hits = dict.fromkeys(FP.KERNELS, 0)
    for name, fn in FP.KERNELS.items():
        def spy(*a, _fn=fn, _name=name, **k):
            r = _fn(*a, **k)
            if r is not None:
                hits[_name] += 1
            return r
        monkeypatch.setattr(FP.K, name, spy)
    return hits


def _results(outs, inputs, seed) -> list:
    """The float outputs and the inputs' gradients for a seeded random cotangent."""
    outs = [o for o in outs if isinstance(o, chainrule.Tensor)]
    res = [o.detach().numpy().copy() for o in outs]
    diff = [o for o in outs if o.requires_grad]
    if diff and inputs:
        r = np.random.default_rng(seed)
        cots = [chainrule.tensor(r.standard_normal(o.shape).astype(o.dtype.name)) for o in diff]
        grads = chainrule.autograd.grad(diff, inputs, grad_outputs=cots, allow_unused=True)
        res += [None if g is None else g.detach().numpy().copy() for g in grads]
    return res


def _row_run(row) -> list:
    res = []
    for dtype in (d for d in row.dtypes if d in FLOATS):
        cases = list(row.samples(Maker(dtype, 0)))
        cases += list(row.big(Maker(dtype, 1))) if row.big else []
        for k, s in enumerate(cases):
            chainrule.manual_seed(k)
            args, kwargs, grads = chainrule_call(s, requires_grad=row.grad)
            res += _results(outputs(row.op(*args, **kwargs)), grads, k)
    return res


def _ps_run(ps) -> list:
    chainrule.manual_seed(0)
    arrays = ps.make(np.random.default_rng(0))
    diff = ps.diff_indices(arrays)
    xs = [chainrule.tensor(a, requires_grad=i in diff) if isinstance(a, np.ndarray) else a
          for i, a in enumerate(arrays)]
    return _results(outputs(ps.call(*xs)), [xs[i] for i in diff], 0)


def _agree(fast, general, what):
    assert len(fast) == len(general), what
    for k, (a, b) in enumerate(zip(fast, general)):
        if a is None or b is None:
            assert a is None and b is None, f"{what}: result {k}"
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: result {k}"
        tol = dict(rtol=1e-5, atol=1e-5) if a.dtype.itemsize < 8 else dict(rtol=1e-10,
                                                                           atol=1e-12)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a, b, equal_nan=True, err_msg=f"{what}: {k}", **tol)
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {k}")


def _both_ways(monkeypatch, run, case, declared, what):
    with FP.fast_paths(False):
        general = run(case)
    hits = _counting(monkeypatch)
    fast = run(case)
    _agree(fast, general, what)
    missed = [n for n in declared if not hits[n]]
    assert not missed, f"{what}: fast-path kernels {missed} not reached in the fast run"


@pytest.mark.parametrize("row", [r for r in OP_TABLE if set(r.dtypes) & set(FLOATS)],
                         ids=lambda r: r.name)
def test_op_row_fast_paths_on_and_off_agree(monkeypatch, row):
    _both_ways(monkeypatch, _row_run, row, row.fast, row.name)


@pytest.mark.parametrize("ps", PRIM_SAMPLES, ids=lambda p: p.id)
def test_primitive_sample_fast_paths_on_and_off_agree(monkeypatch, ps):
    _both_ways(monkeypatch, _ps_run, ps, ps.fast, ps.id)


def test_every_kernel_is_reached_by_some_row():
    declared = {n for r in OP_TABLE for n in r.fast} | {n for p in PRIM_SAMPLES for n in p.fast}
    assert declared == set(FP.KERNELS), (set(FP.KERNELS) - declared, declared - set(FP.KERNELS))


def test_switch_is_a_context_and_a_setter():
    x = np.ones((64, 128), dtype=np.float32)
    assert FP.fast_paths_enabled()
    with FP.fast_paths(False):
        assert not FP.fast_paths_enabled()
        assert FP.K.blas_sum(np, x, (0,)) is None
        with FP.fast_paths(True):
            assert FP.K.blas_sum(np, x, (0,)) is not None
        assert FP.K.blas_sum(np, x, (0,)) is None
    assert FP.fast_paths_enabled() and FP.K.blas_sum(np, x, (0,)) is not None
    try:
        FP.set_fast_paths(False)
        assert not chainrule.primitives.fast_paths_enabled()
    finally:
        FP.set_fast_paths(True)
    with pytest.raises(TypeError, match="set_fast_paths"):
        FP.set_fast_paths("no")


def test_primitives_reach_kernels_only_through_the_seam(monkeypatch):
    # a kernel swapped at the seam is the one the primitive runs
    def broken(*a, **k):
        raise RuntimeError("seam reached")
    monkeypatch.setattr(FP.K, "blas_sum", broken)
    with pytest.raises(RuntimeError, match="seam reached"):
        RAW.sum(np.ones((64, 128)), axes=(0,), keepdims=False)
    with FP.fast_paths(False):  # the switch replaces whatever sits at the seam
        assert RAW.sum(np.ones((64, 128)), axes=(0,), keepdims=False).shape == (128,)


def test_raw_vjp_slot_declares_the_raw_rules():
    from chainrule.primitives import REGISTRY

    with_raw = sorted(n for n, p in REGISTRY.items() if p.vjp_raw is not None)
    assert with_raw == ["gru_scan", "layer_norm", "lstm_scan", "self_attention"]
    with pytest.raises(ValueError, match="form of vjp"):
        chainrule.primitives.Primitive("doc_bad", lambda xp, x: x, vjp=[lambda *a: None],
                                       vjp_raw=lambda *a: None, kind="elementwise")
