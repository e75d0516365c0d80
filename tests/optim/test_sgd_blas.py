"""SGD's update through BLAS (``backend/blas.py``): ``p -= lr * g`` as one ``?axpy`` pass and
the momentum buffer as one ``?axpby``, in the ``sgd_update`` impl that eager execution and the
numpy jit backend share. Checked: the exact arithmetic (rounded once where the BLAS fuses the
multiply-add, as its probe says; else NumPy's two roundings), the same bits at one and two
OpenBLAS threads and at odd sizes, the buffer bitwise NumPy's two passes, every case BLAS does
not take falling back to NumPy's passes, and agreement with torch.optim.SGD."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import chainrule
from chainrule import optim
from chainrule.backend import blas
from chainrule.primitives.update import _sgd

SIZES = (1, 7, 4097, 100003)
DTYPES = (np.float32, np.float64)

needs_blas = pytest.mark.skipif(
    blas.axpy_fused(np.float32) is None or blas.axpy_fused(np.float64) is None,
    reason="NumPy's bundled OpenBLAS not found (the BLAS path is not taken: nothing to check)")


def _data(dtype, n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(dtype) for _ in range(3))


def _exact(y, a, x, dtype):
    """``y + a * x`` rounded once to ``dtype`` (exact sums in fractions; float32: the float64
    of a float32 sum of this kind is exact, so casting it rounds once)."""
    fa = Fraction(float(dtype(a)))
    out = [Fraction(float(yi)) + fa * Fraction(float(xi)) for xi, yi in zip(x, y)]
    if dtype == np.float64:
        return np.array([float(v) for v in out])
    # float32: y + a * x needs at most ~2 * 24 + exponent-range bits; round via the nearest
    # float64 only where that float64 is exact, else by comparing with the float32 neighbours
    res = []
    for v in out:
        f = np.float32(float(v))
        if Fraction(float(v)) != v:  # the float64 was itself rounded: decide exactly
            lo, hi = (np.nextafter(f, np.float32(-np.inf)), f) if Fraction(float(f)) > v \
                else (f, np.nextafter(f, np.float32(np.inf)))
            dlo, dhi = v - Fraction(float(lo)), Fraction(float(hi)) - v
            f = lo if dlo < dhi or (dlo == dhi and int(lo.view(np.int32)) % 2 == 0) else hi
        res.append(f)
    return np.array(res, dtype=np.float32)


def _where(n):
    """Indices to check exactly: all of a small vector, else its ends and its middle (where
    OpenBLAS splits a vector between two threads)."""
    if n <= 4097:
        return np.arange(n)
    return np.r_[0:300, n // 2 - 300:n // 2 + 300, n - 300:n]


@needs_blas
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_axpy_is_y_plus_a_x_rounded_as_the_probe_says(dtype, n):
    y, x, _ = _data(dtype, n)
    got = y.copy()
    assert blas.axpy(-0.0123, x, got)
    idx = _where(n)
    if blas.axpy_fused(dtype):
        want = _exact(y[idx], -0.0123, x[idx], dtype)
    else:
        want = (y + x * dtype(-0.0123))[idx]
    assert got[idx].tobytes() == want.tobytes()
    np.testing.assert_allclose(got, y - x * dtype(0.0123), rtol=0, atol=4 * np.finfo(dtype).eps)


@needs_blas
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_bits_at_one_and_two_openblas_threads(dtype):
    from chainrule.jit.cconv import blas_threads

    calls = blas_threads()
    if calls is None:
        pytest.skip("OpenBLAS's thread count cannot be set")
    get, set_ = calls
    before = get()
    outs = {}
    try:
        for threads in (1, 2):
            set_(threads)
            for n in (100003, 401408):
                y, x, b = _data(dtype, n, seed=n)
                assert blas.axpy(-0.05, x, y) and blas.axpby1(x, 0.9, b)
                outs[threads, n] = y.tobytes() + b.tobytes()
    finally:
        set_(before)
    for n in (100003, 401408):
        assert outs[1, n] == outs[2, n]


@needs_blas
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_the_momentum_buffer_is_bitwise_numpys_two_passes(dtype, n):
    b, g, _ = _data(dtype, n, seed=3)
    got = b.copy()
    assert blas.axpby1(g, 0.9, got)
    want = b.copy()
    want *= 0.9
    want += g
    assert got.tobytes() == want.tobytes()


def _two_pass(p, g, buf, lr, momentum, dampening, wd, *, nesterov, maximize, first):
    """The rule as NumPy's separate passes (what the impl did before BLAS)."""
    g = -g if maximize else g
    if wd:
        g = p * p.dtype.type(wd) + g
    if buf is not None:
        if first:
            buf[...] = g
        else:
            buf *= momentum
            buf += g * (1 - dampening) if dampening else g
        g = g + buf * momentum if nesterov else buf
    p -= g * lr
    return g


FLAGS = [
    dict(momentum=0.0, dampening=0, wd=0, nesterov=False, maximize=False, first=False),
    dict(momentum=0.9, dampening=0, wd=0, nesterov=False, maximize=False, first=True),
    dict(momentum=0.9, dampening=0, wd=0, nesterov=False, maximize=False, first=False),
    dict(momentum=0.9, dampening=0.3, wd=1e-2, nesterov=False, maximize=False, first=False),
    dict(momentum=0.8, dampening=0, wd=1e-3, nesterov=True, maximize=False, first=False),
    dict(momentum=0.5, dampening=0, wd=0.1, nesterov=False, maximize=True, first=False),
]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (7,), (4097,), (100003,), (33, 65)])
def test_the_impl_against_the_numpy_formula(flags, dtype, shape):
    """Every flag, odd sizes and a 0-d parameter: the buffer bitwise NumPy's passes, the
    parameter within one rounding of them (bitwise where BLAS does not fuse)."""
    n = int(np.prod(shape))
    p, g, b = (a.reshape(shape) for a in _data(dtype, n, seed=7))
    f = dict(flags)
    wd = f.pop("wd")
    buf_got = None if f["momentum"] == 0 else b.copy()
    buf_want = None if f["momentum"] == 0 else b.copy()
    got, want = p.copy(), p.copy()
    out = _sgd(np, got, g, buf_got, 0.05, f["momentum"], f["dampening"], wd,
               nesterov=f["nesterov"], maximize=f["maximize"], first=f["first"])
    assert out is got
    g_used = _two_pass(want, g, buf_want, 0.05, f["momentum"], f["dampening"], wd,
              nesterov=f["nesterov"], maximize=f["maximize"], first=f["first"])
    if buf_got is not None:
        assert buf_got.tobytes() == buf_want.tobytes()
    if blas.axpy_fused(dtype) is False:
        assert got.tobytes() == want.tobytes()
    else:  # rounded once against twice: apart by the product's rounding and the last one
        bound = np.spacing(abs(want)) + np.spacing(abs(g_used * dtype(0.05)))
        assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize("dtype", DTYPES)
def test_what_blas_does_not_take_is_numpys_two_passes_bitwise(dtype):
    p, g, _ = (a.reshape(4, 33) for a in _data(dtype, 4 * 33, seed=9))
    cases = [(p[:, ::2], g[:, ::2].copy(), 0.05),  # a non-contiguous parameter (a view)
             (p.copy(), g.T.copy().T, 0.05),  # a non-contiguous (F-order) gradient
             (p.copy(), g, np.float64(0.05)),  # a NumPy scalar lr: promotes, as NumPy does
             (p.astype(np.float16), g.astype(np.float16), 0.05)]  # another dtype
    for got, gg, lr in cases:
        want = got.copy()
        _sgd(np, got, gg, None, lr, 0.0, 0.0, 0.0, nesterov=False, maximize=False,
             first=False)
        want -= np.multiply(gg, lr, out=np.empty_like(want))  # the impl's passes
        assert got.tobytes() == want.tobytes()
    # the view wrote through to its base's columns, and only those
    assert p[:, 1::2].tobytes() == next(_data(dtype, 4 * 33, seed=9)).reshape(4, 33)[
        :, 1::2].tobytes()


def test_cases_blas_refuses():
    y, x = np.ones(8, np.float32), np.ones(8, np.float32)
    assert not blas.axpy(np.float32(0.5), x, y)  # a NumPy scalar is not weak
    assert not blas.axpy(0.5, x.astype(np.float64), y)  # dtypes differ
    assert not blas.axpy(0.5, y[:4], y[2:6])  # overlapping memory
    assert not blas.axpy(0.5, x, np.ones(8, np.int64))  # not float
    assert not blas.axpy(0.5, x.reshape(2, 4), y)  # shapes differ
    ro = np.ones(8, np.float32)
    ro.flags.writeable = False
    assert not blas.axpy(0.5, x, ro)  # a read-only parameter is never written
    assert np.all(ro == 1)

    class Sub(np.ndarray):  # another array type (CuPy's arrays take this path too)
        pass

    assert not blas.axpy(0.5, x, y.view(Sub))
    assert not blas.axpby1(x, 0.5, y.view(Sub))
    assert np.all(y == 1)


@needs_blas
def test_a_read_only_gradient_is_read_and_blas_can_be_turned_off(monkeypatch):
    y, x = np.ones(8, np.float32), np.full(8, 2.0, np.float32)
    x.flags.writeable = False
    assert blas.axpy(0.5, x, y) and np.all(y == 2)
    monkeypatch.setattr(blas, "ENABLED", False)
    assert not blas.axpy(0.5, x, y) and not blas.axpby1(x, 0.5, y)
    assert np.all(y == 2)


def test_the_sgd_optimizer_against_torch_at_odd_sizes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    shapes = [(1,), (7,), (4097,), (3, 5)]
    inits = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    cs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for kw in (dict(lr=0.05), dict(lr=0.05, momentum=0.9),
               dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)):
        ours = [chainrule.tensor(a, requires_grad=True) for a in inits]
        theirs = [torch.tensor(a, requires_grad=True) for a in inits]
        opt, topt = optim.SGD(ours, **kw), torch.optim.SGD(theirs, **kw)
        for _ in range(5):
            opt.zero_grad()
            topt.zero_grad()
            # gradients w * w + c: a well-conditioned loss, so differences stay roundings
            sum(((w * w * w / 3 + w * chainrule.tensor(c)).sum() for w, c in zip(ours, cs)),
                chainrule.tensor(0.0)).backward()
            sum((w * w * w / 3 + w * torch.tensor(c)).sum() for w, c in zip(theirs, cs)).backward()
            opt.step()
            topt.step()
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(np.asarray(a.detach()), b.detach().numpy(), rtol=1e-6,
                                       atol=1e-7)


@pytest.mark.skipif(not blas.axpy_fused(np.float32), reason="the BLAS update does not fuse here")
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_one_step_is_bitwise_torchs_where_blas_fuses(momentum):
    """torch's ``p.add_(g, alpha=-lr)`` is one fused multiply-add (vectorised, tail included)
    and its buffer ``b.mul_(m).add_(g)`` two roundings: where BLAS fuses, one step is the same
    bits (NumPy's two passes differed in about 2% of the elements)."""
    torch = pytest.importorskip("torch")
    for n in (7, 4097, 100003):
        p, g, b = _data(np.float32, n, seed=n)
        tp = torch.tensor(p.copy(), requires_grad=True)
        topt = torch.optim.SGD([tp], lr=0.0123, momentum=momentum)
        if momentum:
            topt.state[tp]["momentum_buffer"] = torch.tensor(b.copy())
        tp.grad = torch.tensor(g.copy())
        topt.step()
        buf = b.copy() if momentum else None
        _sgd(np, p, g, buf, 0.0123, momentum, 0.0, 0.0, nesterov=False, maximize=False,
             first=False)
        assert p.tobytes() == tp.detach().numpy().tobytes()
