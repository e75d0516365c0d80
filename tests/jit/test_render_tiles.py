"""Backend "c": fused kernels rendered in tiles (``render_c``: a flat kernel with a vector math
call among at least ``SPLIT_STMTS`` other statements runs one loop per run of statements
between the calls and one per call, over tiles of ``TILE`` elements). The tiled kernel does
the same statements per element in the same order and dtype as the one-loop kernel: its
arithmetic before the first call is compared bitwise; after a call, within the transcendental
kernels' tolerance, because either kernel may compute an element with the C library's scalar
function instead of libmvec's vector one (a loop's tail, gcc's peeling for alignment), which
differ by an ulp (odd sizes with a partial last tile, broadcast inputs, a dynamic scalar, bool
statements, several outputs, NaN/inf); the GELU step through the jit against the numpy
backend at the same tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_cbackend import _kernels, _run_both

import chainrule as cr
from chainrule.jit import cbackend, kcache, render_c
from chainrule.jit.fuse import KernelSpec

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend 'c': {cbackend.unavailable()}")


def _spec(n, dt):
    """A kernel of shape (n // 3, 3) (a short last dim: one flat loop) with a full input, a
    column, a 0-d array and a dynamic scalar; tanh and exp calls between arithmetic, a bool
    select, outputs from three of its loops (one an intermediate a later loop reads)."""
    shape = (n // 3, 3)
    ins = [("array", dt, shape), ("array", dt, (n // 3, 1)), ("array", dt, ()),
           ("scalar", "float")]
    st = [
        ("multiply", dt, dt, (("in", 0), ("lit", 0.5))),  # 0: inputs only (computed again)
        ("multiply", dt, dt, (("t", 0), ("in", 1))),  # 1
        ("add", dt, dt, (("t", 1), ("in", 2))),  # 2
        ("multiply", dt, dt, (("t", 2), ("in", 3))),  # 3
        ("tanh", dt, dt, (("t", 3),)),  # 4
        ("add", dt, dt, (("t", 4), ("lit", 1.0))),  # 5
        ("less", dt, "bool", (("t", 5), ("in", 1))),  # 6
        ("where", dt, dt, (("t", 6), ("t", 0), ("t", 2))),  # 7
        ("multiply", dt, dt, (("t", 5), ("lit", -0.25))),  # 8
        ("exp", dt, dt, (("t", 8),)),  # 9
        ("true_divide", dt, dt, (("t", 9), ("t", 7))),  # 10
        ("multiply", dt, dt, (("t", 10), ("t", 3))),  # 11
    ]
    return KernelSpec(shape, ins, st, [11, 5, 2, 6])


def _compile(spec, tiled: bool, monkeypatch):
    with monkeypatch.context() as m:
        if not tiled:
            m.setattr(render_c, "SPLIT_STMTS", 1 << 30)
        src = render_c.render(spec, "k")
    mod, _ = kcache.load(render_c.signature(spec, "k") + ";", render_c.PRELUDE + src)
    return mod, src


def _call(mod, spec, arrays, scalar):
    ffi = mod.ffi
    outs = [np.empty(spec.shape, np.bool_ if spec.stmts[s][2] == "bool" else spec.stmts[s][2])
            for s in spec.outputs]
    mod.lib.k(*[ffi.from_buffer(a) for a in arrays], scalar,
              *[ffi.from_buffer(o, require_writable=True) for o in outs])
    return outs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [513 * 3, 1000 * 3 + 3, 256 * 3 * 4])
def test_tiled_kernel_matches_the_one_loop_kernel(n, dtype, monkeypatch):
    spec = _spec(n, dtype)
    tiled, src = _compile(spec, True, monkeypatch)
    flat, src1 = _compile(spec, False, monkeypatch)
    assert f"b += {render_c.TILE}" in src and "tanh" in src and "b += " not in src1
    rng = np.random.default_rng(3)
    x = rng.standard_normal(spec.shape).astype(dtype) * 3
    col = rng.standard_normal((n // 3, 1)).astype(dtype)
    x.flat[[5, 700, n - 1]] = [np.nan, np.inf, -np.inf]
    col[2] = np.nan
    zero_d = np.asarray(0.25, dtype)
    got = _call(tiled, spec, [x, col, zero_d], 1.5)
    want = _call(flat, spec, [x, col, zero_d], 1.5)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for k, (a, b) in enumerate(zip(got, want)):
        assert a.dtype == b.dtype
        if k == 2 or a.dtype == np.bool_:  # arithmetic before the calls; the select's mask
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert np.isnan(got[0]).any() and got[3].any() and not got[3].all()


def test_tiles_are_not_used_for_short_or_call_free_or_row_kernels():
    dt = "float32"
    chain = [("multiply", dt, dt, (("in", 0), ("lit", 2.0)))] * 1 + [
        ("add", dt, dt, (("t", k), ("lit", 1.0))) for k in range(5)]
    no_call = KernelSpec((4096,), [("array", dt, (4096,))], chain, [5])
    short = KernelSpec((300,), [("array", dt, (300,))],
                       chain + [("tanh", dt, dt, (("t", 5),))], [6])
    few = KernelSpec((4096,), [("array", dt, (4096,))],
                     chain[:2] + [("tanh", dt, dt, (("t", 1),))], [2])
    rows = KernelSpec((64, 64), [("array", dt, (64, 64)), ("array", dt, (64,))],
                      [("multiply", dt, dt, (("in", 0), ("in", 1)))] + chain[1:]
                      + [("tanh", dt, dt, (("t", 5),))], [6])
    for spec in (no_call, short, few, rows):
        assert "b += " not in render_c.render(spec, "k"), spec.key()
    long = KernelSpec((4096,), [("array", dt, (4096,))],
                      chain + [("tanh", dt, dt, (("t", 5),))], [6])
    src = render_c.render(long, "k")
    assert "b += " in src and src.count("for (ptrdiff_t u = 0;") == 2  # the chain, the call
    # more values crossing loops than MAX_KEPT arrays on the stack: one loop
    many = chain + [("tanh", dt, dt, (("t", 5),))]
    for k in range(render_c.MAX_KEPT + 1):  # each sum reads a chain value after the call
        many.append(("add", dt, dt, (("t", len(many) - 1), ("t", 1 + k % 5))))
    wide = KernelSpec((4096,), [("array", dt, (4096,))], many, [len(many) - 1])
    assert "b += " in render_c.render(wide, "k")  # 5 chain values kept: tiles
    many = list(chain)
    for _ in range(render_c.MAX_KEPT + 1):
        many.append(("multiply", dt, dt, (("t", len(many) - 1), ("lit", 1.5))))
    many.append(("tanh", dt, dt, (("t", len(many) - 1),)))
    for k in range(render_c.MAX_KEPT + 1):
        many.append(("add", dt, dt, (("t", len(many) - 1), ("t", 6 + k))))
    wide = KernelSpec((4096,), [("array", dt, (4096,))], many, [len(many) - 1])
    assert "b += " not in render_c.render(wide, "k")


@pytest.mark.parametrize("shape", [(37, 29), (2, 1024)])
def test_gelu_step_through_the_jit_in_tiles(shape):
    """GELU and its backward (float32, the impl's polynomial and tanh form), tiled, against
    the numpy backend: within the transcendental kernels' tolerance, NaN/inf where NumPy has
    them."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(np.float32) * 2
    y = np.asarray(1.3, np.float32)  # 0-d: the loops stay flat (a row vector loops over rows)
    x.flat[[0, 9]] = [np.nan, np.inf]
    ref, got, f = _run_both(lambda a, b: cr.nn.functional.gelu(a * b) * b, x, y)
    assert _kernels(f) >= 1
    src = "".join(c.kernels.source for c in f._compiles if c.kernels is not None)
    assert f"b += {render_c.TILE}" in src and "tanhf(" in src and "expf(" in src, src
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
