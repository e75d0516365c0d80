"""Backend c's column sums at a fused group's edge (``fuse._fold_colsums``,
``render_c._render_colsums``): a bias gradient's ``sum_to`` of a kernel's output made in the
kernel's pass. The rows are added in order whether the loop runs on one thread or on
several (column blocks), so the sums are bitwise those of the unfused program's C column sum;
against float64 they differ by float32 rounding only."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import cbackend, fuse, render_c
from chainrule.jit.fuse import KernelSpec

pytestmark = pytest.mark.skipif(cbackend.unavailable() is not None,
                                reason=f"backend c unavailable: {cbackend.unavailable()}")

F = cr.nn.functional


def _mlp(dtype, n, d, h, seed=0, bad=False):
    rng = np.random.default_rng(seed)
    x = cr.tensor(rng.standard_normal((n, d)).astype(dtype))
    ps = [cr.tensor((rng.standard_normal(s) * 0.3).astype(dtype), requires_grad=True)
          for s in ((h, d), (h,), (h, h), (h,), (3, h), (3,))]
    if bad:  # a NaN and an inf in the first layer's weights reach the bias gradients
        ps[0]._data[1, 2] = np.nan
        ps[0]._data[4, 0] = np.inf
    y = cr.tensor(rng.integers(0, 3, n))

    def step():
        a = F.relu(F.linear(x, ps[0], ps[1]))
        a = F.relu(F.linear(a, ps[2], ps[3]))
        loss = F.cross_entropy(F.linear(a, ps[4], ps[5]), y)
        loss.backward()
        grads = [p.grad for p in ps]
        for p in ps:
            p.grad = None
        return [loss] + grads

    return step


def _run(step, backend, calls=3):
    f = cr.jit(step, backend=backend)
    for _ in range(calls):
        out = f()
    return [o.numpy() for o in out], f


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
# each case compiles two programs (~2.5 s each): odd sizes paired with the dtypes, the column
# blocks of 16 with a remainder (17 and 130 columns)
@pytest.mark.parametrize(("shape", "dtype"), [((7, 3, 17), "float64"), ((33, 6, 130), "float32")],
                         ids=str)
@pytest.mark.parametrize("threads", ["one", "blocks"])
@pytest.mark.parametrize("bad", [False, True], ids=["finite", "nan_inf"])
def test_bias_gradients_are_bitwise_the_unfused_c_program(shape, dtype, threads, bad,
                                                         monkeypatch):
    if threads == "blocks":  # every kernel on OpenMP's threads, the columns in blocks of 16
        monkeypatch.setattr(render_c, "PARALLEL_WORK", 1)
        monkeypatch.setattr(render_c, "COLSUM_BLOCK", 16)
    step = _mlp(dtype, *shape, bad=bad)
    got, f = _run(step, "c")
    src = "".join(c.kernels.source for c in f._compiles if c.kernels is not None)
    assert "[j] += t" in src, src
    assert "sum_to" not in [op.name for op in f._program(-1).graph.ops][-12:]
    monkeypatch.setattr(fuse, "FOLD_COLSUMS", [False])
    want, f2 = _run(step, "c")
    src2 = "".join(c.kernels.source for c in f2._compiles if c.kernels is not None)
    assert "[j] += t" not in src2
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"output {i}")


@pytest.mark.parametrize("shape", [(128, 20, 512), (9, 4, 33)], ids=str)
def test_bias_gradients_against_float64(shape):
    """float32 column sums of n rows added in order: within n ulps of the float64 sums of the
    same float32 values (relative 1e-5 of the column's absolute sum here)."""
    got, _ = _run(_mlp("float32", *shape), "c")
    want, _ = _run(_mlp("float64", *shape), "numpy")
    for i in (2, 4):  # the two ReLU layers' bias gradients
        scale = np.abs(want[i]).max()
        np.testing.assert_allclose(got[i], want[i], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"output {i}")


def test_render_writes_outputs_and_sums_in_one_pass():
    spec = KernelSpec((4, 40), [("array", "float32", (4, 40)), ("array", "float32", (4, 40))],
                      [("greater", "float32", "bool", (("in", 0), ("lit", 0))),
                       ("multiply", "float32", "float32", (("in", 1), ("t", 0)))], [1], [1])
    src = render_c.render(spec, "k0")
    assert render_c.signature(spec, "k0") == \
        "void k0(const void *in0, const void *in1, void *out0, void *out1)"
    assert "q0[i] = t1;" in src and "q1[j] = t1;" in src and "q1[j] += t1;" in src, src


def test_kernels_with_a_math_call_keep_their_sum_to():
    """A GELU backward kernel (tiled around its exp) keeps its bias gradient's sum_to."""
    rng = np.random.default_rng(1)
    x = cr.tensor(rng.standard_normal((8, 32)).astype(np.float32))
    w = cr.tensor(rng.standard_normal((32, 32)).astype(np.float32), requires_grad=True)
    b = cr.tensor(np.zeros(32, np.float32), requires_grad=True)

    def step():
        loss = F.gelu(F.linear(x, w, b)).sum()
        loss.backward()
        gb = b.grad
        w.grad = b.grad = None
        return gb

    f = cr.jit(step, backend="c")
    for _ in range(2):
        got = f()
    src = "".join(c.kernels.source for c in f._compiles if c.kernels is not None)
    assert "exp" in src and "[j] += t" not in src, src
    assert "sum_to" in [op.name for op in f._program(-1).graph.ops]
    np.testing.assert_allclose(got.numpy(), step().numpy(), rtol=1e-5, atol=1e-6)
