"""The numpy backend's generated code: Python number literals as typed 0-d arrays (bitwise the
same loop), buffers read by name, nothing held between calls."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit.ir import Var
from chainrule.jit.numpy_backend import typed_scalars

_UFUNCS = (np.add, np.subtract, np.multiply, np.true_divide, np.power, np.maximum, np.minimum,
           np.greater, np.less_equal, np.equal, np.floor_divide, np.remainder, np.logaddexp,
           np.arctan2, np.logical_and, np.bitwise_and, np.left_shift)
_DTYPES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")
_LITERALS = (0, 1, -1, 2, 3, 7, 300, 2**31, 2**40, 2**53 + 1, 0.0, -0.0, 1.1, 0.1, -2.5,
             1e-8, 1e-40, 1e30, 65520.0, 1e300)


def _sample(dtype):
    if dtype == "bool":
        return np.array([True, False, True, True])
    if np.dtype(dtype).kind == "f":
        return np.array([0.0, -0.0, 1.5, -3.25, 1e-5, 6e4, np.inf, np.nan], dtype)
    info = np.iinfo(dtype)
    return np.array([0, 1, 3, info.max, info.min, 17], dtype)


def _eager(ufunc, args):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return ufunc(*args)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            return None


@pytest.mark.parametrize("ufunc", _UFUNCS, ids=lambda u: u.__name__)
def test_typed_scalar_literals_run_the_same_loop_bitwise(ufunc):
    """Wherever a literal is replaced, the ufunc gives the same dtype and the same bits as with
    the Python number (the values include -0.0, inf, nan, the dtype's extremes)."""
    replaced = 0
    for dtype in _DTYPES:
        arr = _sample(dtype)
        var = Var(1, arr.shape, arr.dtype)
        for lit in _LITERALS:
            for side in (0, 1):
                targs = (var, lit) if side == 0 else (lit, var)
                new = typed_scalars(ufunc, targs)
                if new is targs:
                    continue
                replaced += 1
                c = new[1 - side]
                assert isinstance(c, np.ndarray) and c.ndim == 0
                plain = (arr, lit) if side == 0 else (lit, arr)
                typed = (arr, c) if side == 0 else (c, arr)
                want, got = _eager(ufunc, plain), _eager(ufunc, typed)
                if want is None:
                    continue  # the literal call raises: a trace never recorded it
                where = f"{ufunc.__name__} {dtype} {lit!r} side {side}"
                assert got is not None, where
                assert got.dtype == want.dtype, where
                assert got.tobytes() == want.tobytes(), where
    assert replaced > 0


def test_typed_scalars_leave_doubtful_literals_alone():
    f32 = Var(1, (3,), np.dtype("float32"))
    u8 = Var(2, (3,), np.dtype("uint8"))
    assert typed_scalars(np.multiply, (f32, 1.1))[1].dtype == np.float32
    assert typed_scalars(np.multiply, (f32, 2**30 + 1)) == (f32, 2**30 + 1)  # not exact in f32
    assert typed_scalars(np.add, (u8, 300)) == (u8, 300)  # out of range
    assert typed_scalars(np.add, (u8, True)) == (u8, True)  # bools stay
    f16 = Var(3, (3,), np.dtype("float16"))
    assert typed_scalars(np.multiply, (f16, 1e6)) == (f16, 1e6)  # overflows float16
    assert typed_scalars(np.add, (f32, f32)) == (f32, f32)


def test_generated_program_reads_buffers_by_name_and_skips_allocation_calls():
    x = cr.tensor(np.linspace(-1, 1, 8).astype("float32"))

    def chain(t):
        for _ in range(5):
            t = (t * 1.1 + 0.1).tanh()
        return t.sum()

    f = cr.jit(chain, fullgraph=True)
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), chain(x).numpy())
    src = f.source()
    assert "1.1" not in src and "0.1" not in src  # typed constants, not Python floats
    assert "_empty(" not in src  # every buffer is the result of its first op
    assert "out=" not in src  # ufuncs take out by position


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_accumulating_primitives_skip_the_16bit_wrapper_only_without_16bit_inputs(dtype):
    # the float16/bfloat16 wrapper of matmul/sum/log_softmax (primitives.lowp) is left out of
    # a program whose inputs to them are not 16-bit floats; with float16 inputs it stays, and
    # either way the replay is bitwise eager
    from chainrule.jit.numpy_backend import _LOWP_RUN

    rng = np.random.default_rng(0)
    a = cr.tensor(rng.standard_normal((4, 5)).astype(dtype))
    b = cr.tensor(rng.standard_normal((5, 3)).astype(dtype))

    def fn(x, y):
        return (x @ y).log_softmax(1).sum()

    f = cr.jit(fn, fullgraph=True, backend="numpy")
    for _ in range(2):
        np.testing.assert_array_equal(f(a, b).numpy(), fn(a, b).numpy())
    called = list(f._program(-1).run.__globals__.values())
    wrapped = [v for v in called if getattr(v, "__code__", None) is _LOWP_RUN]
    assert f.graph().count(" = matmul ") == 1
    if dtype == "float16":
        assert len(wrapped) == 3  # matmul, log_softmax, sum
    else:
        assert wrapped == []
