"""PyTorch as an independent oracle: the same call in both libraries (the op table's ``op`` and
``torch`` columns), comparing the shape, dtype and value of every output and, in float64, the
gradient of every input for one random cotangent. Skipped, with a reason, without PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is the oracle of this module")

import chainrule  # noqa: E402
from op_table import (  # noqa: E402
    OP_TABLE,
    chainrule_call,
    outputs,
    samples,
    torch_call,
)

GRAD_TOL = (1e-7, 1e-10)  # (rtol, atol) between two float64 gradients
_ROWS = [r for r in OP_TABLE if r.torch is not None]
_PARAMS = [(r, d) for r in _ROWS for d in r.dtypes]


def _tname(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _np(x):
    if isinstance(x, chainrule.Tensor):
        return np.asarray(x.detach())
    return x.detach().numpy()


def compare_outputs(ours, theirs, where: str, rtol: float, atol: float):
    """Same number of outputs; each with the same shape, dtype and values."""
    ours, theirs = outputs(ours), outputs(theirs)
    assert len(ours) == len(theirs), f"{where}: {len(ours)} outputs, PyTorch {len(theirs)}"
    for k, (a, b) in enumerate(zip(ours, theirs)):
        w = f"{where} output {k}"
        assert isinstance(a, chainrule.Tensor), f"{w}: {type(a).__name__} is not a Tensor"
        assert tuple(a.shape) == tuple(b.shape), f"{w}: shape {a.shape}, PyTorch " \
                                                 f"{tuple(b.shape)}"
        assert a.dtype.name == _tname(b.dtype), f"{w}: dtype {a.dtype.name}, PyTorch " \
                                                f"{_tname(b.dtype)}"
        x, y = _np(a), _np(b)
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=w)
        else:
            np.testing.assert_array_equal(x, y, err_msg=w)


@pytest.mark.parametrize("row,dtype", _PARAMS, ids=[f"{r.name}-{d}" for r, d in _PARAMS])
def test_matches_torch(row, dtype):
    rng = np.random.default_rng(0)
    for s in samples(row, dtype):
        where = f"{row.name} ({dtype}) [{s.desc}]"
        args, kwargs, ins = chainrule_call(s)
        targs, tkwargs, tins = torch_call(s, torch)
        ours = row.op(*args, **kwargs)
        theirs = row.torch(torch, *targs, **tkwargs)
        rtol, atol = row.fwd_tol(dtype if dtype in ("float32", "float64") else "float32")
        compare_outputs(ours, theirs, where, rtol, atol)
        if dtype != "float64" or not row.grad or not row.torch_grad or not ins:
            continue
        pairs = [(o, t) for o, t in zip(outputs(ours), outputs(theirs)) if t.requires_grad]
        for o, _ in pairs:
            assert o.requires_grad, f"{where}: PyTorch's output requires grad, ours does not"
        if not pairs:
            continue
        vs = [rng.standard_normal(tuple(t.shape)) for _, t in pairs]
        g_ours = chainrule.autograd.grad([o for o, _ in pairs], ins,
                                         grad_outputs=[chainrule.tensor(v) for v in vs],
                                         allow_unused=True)
        g_theirs = torch.autograd.grad([t for _, t in pairs], tins,
                                       grad_outputs=[torch.from_numpy(v) for v in vs],
                                       allow_unused=True)
        for k, (a, b, x) in enumerate(zip(g_ours, g_theirs, ins)):
            ga = np.zeros(x.shape) if a is None else _np(a)
            gb = np.zeros(x.shape) if b is None else _np(b)
            assert ga.shape == tuple(x.shape), f"{where}: gradient {k} has shape {ga.shape}"
            np.testing.assert_allclose(ga, gb, rtol=GRAD_TOL[0], atol=GRAD_TOL[1],
                                       err_msg=f"{where}: gradient of input {k}")


@pytest.mark.parametrize("row", [r for r in _ROWS if r.method], ids=lambda r: r.name)
def test_methods_exist_in_torch(row):
    """A row's Tensor method is one PyTorch also has (the names carry over)."""
    assert hasattr(torch.Tensor, row.method), f"torch.Tensor has no method {row.method!r}"
    assert hasattr(chainrule.Tensor, row.method)
