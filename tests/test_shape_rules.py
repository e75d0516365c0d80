"""Every primitive's shape rule (abstract evaluation) against its impl: on every op-table sample
(every dtype) and every primitive sample, each primitive call first asks the rule for the
output's shape and dtype from the inputs' alone, then runs and compares."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule
from chainrule.errors import ShapeError
from chainrule.primitives import REGISTRY, Aval, core
from chainrule.primitives.movement import IndexArg
from op_table import PRIM_SAMPLES, chainrule_call, dtype_params, samples

SEEN: set = set()


@pytest.fixture
def checked():
    """Route every primitive application through a check of its shape rule."""
    apply = core._APPLY[0]

    def checking(prim, inputs, params):
        expected = prim.abstract_eval(*inputs, **params)  # before anything runs
        out = apply(prim, inputs, params)
        if prim.multi:  # one Aval per output
            assert isinstance(expected, tuple) and len(expected) == len(out), \
                f"{prim.name}: shape rule returned {expected!r} for {len(out)} outputs"
            pairs = zip(expected, out)
        else:
            pairs = ((expected, out),)
        for exp, o in pairs:
            assert isinstance(exp, Aval), f"{prim.name}: shape rule returned {exp!r}"
            assert tuple(exp.shape) == o._data.shape, \
                f"{prim.name}: shape rule says {tuple(exp.shape)}, impl gave " \
                f"{o._data.shape} (params {params})"
            assert np.dtype(exp.dtype) == o._data.dtype, \
                f"{prim.name}: shape rule says {exp.dtype}, impl gave {o._data.dtype}"
        SEEN.add(prim.name)
        return out

    core._APPLY[0] = checking
    try:
        yield
    finally:
        core._APPLY[0] = apply


@pytest.mark.parametrize("row,dtype", dtype_params(), ids=lambda p: getattr(p, "name", p))
def test_shape_rules_on_op_table_samples(checked, row, dtype):
    for s in samples(row, dtype):
        args, kwargs, _ = chainrule_call(s, requires_grad=False)
        row.op(*args, **kwargs)


@pytest.mark.parametrize("sample", PRIM_SAMPLES, ids=lambda s: s.id)
def test_shape_rules_on_primitive_samples(checked, sample):
    arrays = sample.make(np.random.default_rng(0))
    sample.call(*[chainrule.tensor(a) if isinstance(a, np.ndarray) else a for a in arrays])


def test_every_primitive_has_a_checked_shape_rule(checked):
    for sample in PRIM_SAMPLES:
        arrays = sample.make(np.random.default_rng(1))
        sample.call(*[chainrule.tensor(a) if isinstance(a, np.ndarray) else a for a in arrays])
    assert sorted(set(REGISTRY) - SEEN) == []


def test_shape_rules_compute_nothing():
    """Avals carry no data: the rules run on them alone."""
    a, b = Aval((4, 1, 3), np.dtype("float32")), Aval((5, 1), np.dtype("float64"))
    assert REGISTRY["add"].abstract_eval(a, b).shape == (4, 5, 3)
    assert REGISTRY["add"].abstract_eval(a, b).dtype == np.float64
    assert REGISTRY["lt"].abstract_eval(a, 1.0).dtype == np.bool_
    assert REGISTRY["sum"].abstract_eval(
        Aval((2, 3), np.dtype("int32")), axes=(1,), keepdims=True).shape == (2, 1)
    idx = Aval((2, 2), np.dtype("int64"))  # index arrays are inputs: their Avals suffice
    assert REGISTRY["getitem"].abstract_eval(
        Aval((3, 4, 5), np.dtype("float32")), idx, Aval((2, 1), np.dtype("int32")),
        index=(IndexArg(0), slice(None), IndexArg(1))).shape == (2, 2, 4)


@pytest.mark.parametrize("name,lead,params", [
    ("getitem", [], {}), ("scatter_to", [], {"shape": (3, 4)}),
    ("index_put", [Aval((2, 4), np.dtype("float32"))], {})])
def test_index_templates_are_checked(name, lead, params):
    """An index array in the index= param, a float index input, or places that do not match
    the inputs: each a clear error from the shape rule, before anything runs."""
    x = Aval((3, 4) if name != "scatter_to" else (2, 4), np.dtype("float32"))
    prim = REGISTRY[name]
    with pytest.raises(TypeError, match=rf"{name}: an index array of shape \(2,\) in the "
                                        "index= param"):
        prim.abstract_eval(x, *lead, index=(np.array([0, 1]),), **params)
    with pytest.raises(IndexError, match=rf"{name}: index arrays must be integer arrays, got "
                                         r"one of dtype float64 and shape \(2,\)"):
        prim.abstract_eval(x, *lead, Aval((2,), np.dtype("float64")), index=(IndexArg(0),),
                           **params)
    with pytest.raises(TypeError, match=rf"{name}: the index template's IndexArg places \[0\] "
                                        r"do not match the 2 index input\(s\)"):
        prim.abstract_eval(x, *lead, Aval((2,), np.dtype("int64")),
                           Aval((2,), np.dtype("int64")), index=(IndexArg(0),), **params)


@pytest.mark.parametrize("name,args,params,pattern", [
    ("add", [(2, 3), (4,)], {}, r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
    ("matmul", [(2, 3), (4, 5)], {}, r"matmul: shapes \(2, 3\) and \(4, 5\) do not fit"),
    ("reshape", [(2, 3)], {"shape": (4, 2)}, r"reshape: cannot reshape \(2, 3\)"),
    ("concatenate", [(2, 3), (3, 2)], {"axis": 0}, r"concatenate: shapes \(2, 3\) and \(3, 2\)"),
    ("linear", [(2, 3), (4, 5), None], {}, r"linear: input of shape \(2, 3\)"),
    ("broadcast_to", [(2, 3)], {"shape": (3, 3)}, r"broadcast_to: shape \(2, 3\) cannot"),
    ("permute", [(2, 3)], {"axes": (0, 0)}, r"permute: axes \(0, 0\)"),
])
def test_shape_rules_name_the_shapes_that_do_not_fit(name, args, params, pattern):
    avals = [Aval(s, np.dtype("float32")) if s is not None else None for s in args]
    with pytest.raises(ShapeError, match=pattern):
        REGISTRY[name].abstract_eval(*avals, **params)
