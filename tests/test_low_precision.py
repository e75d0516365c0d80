"""float16 and bfloat16 against PyTorch: every op-table row with a PyTorch column and float32
samples runs again with its float inputs in each 16-bit dtype, in both libraries, and the
outputs (shape, dtype, value) and input gradients must agree. No gradchecks here (finite
differences in 16 bits measure rounding, not derivatives).

Tolerances: both libraries compute each op in float32 and round once, so elementwise results
agree to the last bit except where float32 kernels differ (libm vs SLEEF): one unit in the last
place of the 16-bit result. Reductions, products and fused kernels accumulate in float32 in a
different order: a few units. Stated per dtype as (rtol, atol) below, with atol scaled by the
largest magnitude of the reference output (rounding of a sum is relative to its terms, not its
value).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this module")
pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")

import chainrule  # noqa: E402
from op_table import OP_TABLE, Arg, outputs, samples  # noqa: E402

EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}  # unit roundoff * 2 (one ulp at 1)
ULPS_FWD, ULPS_GRAD = 4, 16  # forward; gradients (their rules chain several rounded ops)

# rows whose float32 samples do not carry over to 16 bits (why, per row)
SKIP = {
    "pow": "integer-valued float exponents: PyTorch's bf16 pow of negatives differs by path",
}

# (row, sample) pairs whose gradients are not compared, and why
GRAD_SKIP = {
    ("logsumexp", "large"): "PyTorch's rule exp(x - lse) reads the 16-bit rounded output "
                            "(1000.5 for lse [1000, 1000]: gradient 0.61 instead of 0.5); ours "
                            "differentiates the float32 computation and gives 0.5",
}

_ROWS = [r for r in OP_TABLE if r.torch is not None and "float32" in r.dtypes
         and r.name not in SKIP]
_PARAMS = [(r, d) for r in _ROWS for d in ("float16", "bfloat16")]


def _round_to(a: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values rounded to ``dtype`` (so both libraries start from the same numbers)."""
    return torch.from_numpy(a).to(getattr(torch, dtype)).float().numpy()


def _call(sample, dtype, lib):
    grads = []

    def conv(a):
        if not isinstance(a, Arg):
            return a
        arr = a.array
        low = arr.dtype == np.float32
        if low:
            arr = _round_to(arr, dtype)
        if lib == "torch":
            t = torch.from_numpy(arr.copy())
            t = t.to(getattr(torch, dtype)) if low else t
        else:
            t = chainrule.tensor(arr)
            t = t.to(getattr(chainrule, dtype)) if low else t
        if low and a.grad:
            t.requires_grad_()
            grads.append(t)
        return t

    args = tuple(conv(a) for a in sample.args)
    kwargs = {k: conv(v) for k, v in sample.kwargs.items()}
    return args, kwargs, grads


def _f64(x):
    if isinstance(x, chainrule.Tensor):
        return x.detach().to(chainrule.float64).numpy()
    return x.detach().to(torch.float64).numpy()


def _close(ours, theirs, dtype, ulps, where):
    a, b = _f64(ours), _f64(theirs)
    scale = float(np.max(np.abs(b[np.isfinite(b)]), initial=1.0))
    tol = ulps * EPS[dtype]
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale, err_msg=where)


@pytest.mark.parametrize("row,dtype", _PARAMS, ids=[f"{r.name}-{d}" for r, d in _PARAMS])
def test_low_precision_matches_torch(row, dtype):
    rng = np.random.default_rng(0)
    for s in samples(row, "float32"):
        where = f"{row.name} ({dtype}) [{s.desc}]"
        args, kwargs, ins = _call(s, dtype, "chainrule")
        targs, tkwargs, tins = _call(s, dtype, "torch")
        try:
            theirs = row.torch(torch, *targs, **tkwargs)
        except (RuntimeError, NotImplementedError) as e:  # PyTorch lacks the 16-bit kernel
            if "not implemented" in str(e):
                continue
            raise
        ours = row.op(*args, **kwargs)
        ours, theirs = outputs(ours), outputs(theirs)
        assert len(ours) == len(theirs), where
        for k, (o, t) in enumerate(zip(ours, theirs)):
            w = f"{where} output {k}"
            assert tuple(o.shape) == tuple(t.shape), w
            assert o.dtype.name == str(t.dtype).removeprefix("torch."), \
                f"{w}: dtype {o.dtype.name}, PyTorch {t.dtype}"
            if o.dtype.is_floating_point:
                _close(o, t, dtype, ULPS_FWD, w)
            else:
                np.testing.assert_array_equal(o.numpy() if not o.requires_grad else
                                              o.detach().numpy(), t.detach().numpy(), w)
        if not row.grad or not row.torch_grad or not ins or s.kink or \
                (row.name, s.desc) in GRAD_SKIP:
            continue
        pairs = [(o, t) for o, t in zip(ours, theirs) if t.requires_grad]
        if not pairs:
            continue
        vs = [rng.standard_normal(tuple(t.shape)).astype(np.float32) for _, t in pairs]
        vs = [_round_to(v, dtype) for v in vs]
        g_ours = chainrule.autograd.grad(
            [o for o, _ in pairs], ins, allow_unused=True,
            grad_outputs=[chainrule.tensor(v).to(o.dtype) for v, (o, _) in zip(vs, pairs)])
        g_theirs = torch.autograd.grad(
            [t for _, t in pairs], tins, allow_unused=True,
            grad_outputs=[torch.from_numpy(v).to(t.dtype) for v, (_, t) in zip(vs, pairs)])
        for k, (a, b, x) in enumerate(zip(g_ours, g_theirs, ins)):
            w = f"{where}: gradient of input {k}"
            if a is None or b is None:
                assert (a is None or not np.any(_f64(a))) and (b is None or not np.any(_f64(b))), w
                continue
            assert a.dtype is x.dtype, f"{w}: dtype {a.dtype}, input {x.dtype}"
            _close(a, b, dtype, ULPS_GRAD, w)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reductions_and_products_accumulate_in_float32(dtype):
    """Long sums and products: PyTorch accumulates in float32 on CPU; so do we (NumPy alone
    would sum bfloat16 in bfloat16: 4096 ones give 256)."""
    rng = np.random.default_rng(1)
    x = _round_to(rng.uniform(0.5, 1.5, 4096).astype(np.float32), dtype)
    a = _round_to(rng.standard_normal((64, 256)).astype(np.float32), dtype)
    b = _round_to(rng.standard_normal((256, 32)).astype(np.float32), dtype)
    cd, td = getattr(chainrule, dtype), getattr(torch, dtype)
    pairs = [
        (chainrule.tensor(x).to(cd).sum(), torch.from_numpy(x).to(td).sum()),
        (chainrule.tensor(x).to(cd).mean(), torch.from_numpy(x).to(td).mean()),
        (chainrule.ones(4096, dtype=cd).sum(), torch.ones(4096, dtype=td).sum()),
        (chainrule.tensor(a).to(cd) @ chainrule.tensor(b).to(cd),
         torch.from_numpy(a).to(td) @ torch.from_numpy(b).to(td)),
    ]
    for k, (ours, theirs) in enumerate(pairs):
        assert ours.dtype is cd, k
        _close(ours, theirs, dtype, 2, f"case {k}")
    assert float(pairs[2][0]) == 4096.0


_PROMO = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
          "float64"]


def test_promotion_matches_torch():
    """Every pair of dtypes, as dimensioned tensors, against a 0-d tensor and with Python
    scalars: the result dtype of an addition is PyTorch's."""
    for a in _PROMO:
        for b in _PROMO:
            for shape_b in [(2,), ()]:
                ta = torch.zeros(2, dtype=getattr(torch, a))
                tb = torch.zeros(shape_b, dtype=getattr(torch, b))
                ca = chainrule.zeros(2, dtype=a)
                cb = chainrule.zeros(shape_b, dtype=b)
                want = str(torch.result_type(ta, tb)).removeprefix("torch.")
                assert chainrule.add(ca, cb).dtype.name == want, (a, b, shape_b)
        for s in (True, 2, 2.5):
            want = str(torch.result_type(torch.zeros(2, dtype=getattr(torch, a)), s))
            got = chainrule.add(chainrule.zeros(2, dtype=a), s).dtype.name
            assert got == want.removeprefix("torch."), (a, s)


def test_bfloat16_basics():
    bf = chainrule.bfloat16
    assert bf.is_floating_point and bf.itemsize == 2 and repr(bf) == "chainrule.bfloat16"
    assert chainrule.tensor([1.0, 2.5], dtype="bfloat16").dtype is bf
    x = chainrule.tensor([1.0, 2.5, 3.0]).bfloat16()
    assert repr(x) == "tensor([1.0000, 2.5000, 3.0000], dtype=chainrule.bfloat16)"
    assert chainrule.nn.Linear(2, 2).bfloat16().weight.dtype is bf
    w = chainrule.ones(3, dtype=bf, requires_grad=True)
    (w * x).sum().backward()
    assert w.grad.dtype is bf and w.grad.tolist() == [1.0, 2.5, 3.0]
    assert chainrule.tensor(x).dtype is bf  # copies keep it
    np.testing.assert_array_equal(x.float().numpy(), [1.0, 2.5, 3.0])


def test_without_ml_dtypes_bfloat16_names_the_extra(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['ml_dtypes'] = None\n"
            "import chainrule\n"
            "print(float((chainrule.ones(3) * 2).sum()))\n"
            "try:\n    chainrule.bfloat16\nexcept AttributeError as e:\n    print('A', e)\n"
            "try:\n    chainrule.ones(2, dtype='bfloat16')\nexcept TypeError as e:\n"
            "    print('T', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "6.0"
    assert out[1].startswith("A ") and "chainrule[bf16]" in out[1]
    assert out[2].startswith("T ") and "chainrule[bf16]" in out[2]
