"""Index arrays are inputs of getitem / scatter_to / index_put, not params: the ``index=``
param holds only the static rest (ints, slices, None, Ellipsis, bools) with an IndexArg
where each array goes. What each reader of the table sees: the graph node, vmap, the jit
(new indices replay without a recompile; the arrays are program inputs), ONNX export, and
the bool-mask decision (read eagerly; a host read, so a graph break, in the jit)."""

import inspect
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule import func
from chainrule.errors import JitError
from chainrule.primitives import REGISTRY, core
from chainrule.primitives.movement import IndexArg, fill_index, split_index
from op_table import OP_TABLE, chainrule_call, outputs, samples


def _arrays_in(obj) -> list:
    """Every array found in a (nested) params structure."""
    if isinstance(obj, (tuple, list)):
        return [a for e in obj for a in _arrays_in(e)]
    return [obj] if hasattr(obj, "shape") and not isinstance(obj, np.generic) else []


@pytest.mark.parametrize("index_of", [
    lambda i: i,
    lambda i: (i, slice(1, 3)),
    lambda i: (Ellipsis, i),
    lambda i: [2, 0, -1],
    lambda i: np.array([1, 1, 3]),
    lambda i: (i.reshape(-1, 1), cr.tensor([0, 2])),
    lambda i: cr.tensor([True, False, True, False, True]),
], ids=["tensor", "mixed", "ellipsis", "list", "ndarray", "broadcast", "mask"])
def test_the_node_holds_the_arrays_as_inputs_and_a_static_template(index_of):
    x = cr.randn(5, 4, requires_grad=True)
    i = cr.tensor([3, -1, 3])
    y = x[index_of(i)]
    node = y.grad_fn
    assert node.prim is REGISTRY["getitem"]
    template = node.params["index"]
    assert _arrays_in(node.params) == []  # nothing hidden in the params
    places = [e.k for e in template if type(e) is IndexArg]
    assert places == list(range(len(node.saved_in) - 1)) and places
    assert all(a.dtype.kind in "iu" for a in node.saved_in[1:])  # the index inputs, kept
    assert not hasattr(node.saved_in[0], "base")  # x itself is not kept (an Aval)
    # the node's inputs and template give eager NumPy's result
    want = x.detach().numpy()[fill_index(template, node.saved_in[1:])]
    np.testing.assert_array_equal(y.detach().numpy(), want)


def test_an_index_tensor_goes_in_itself():
    """The user's index tensor is the primitive's input (so vmap and the jit see it)."""
    seen = []
    prim = REGISTRY["getitem"]
    impl = prim.impl
    try:
        prim.impl = lambda xp, x, *arrays, index: seen.append(arrays) or impl(
            xp, x, *arrays, index=index)
        i = cr.tensor([1, 0])
        cr.randn(3, 2)[:, i]
    finally:
        prim.impl = impl
    assert len(seen) == 1 and seen[0][0] is i._data


def test_split_and_fill_are_inverse():
    a, b = np.array([0, 2]), np.array([[1], [0]])
    index = (a, slice(None), None, b, 1, Ellipsis)
    template, arrays = split_index(index)
    assert template == (IndexArg(0), slice(None), None, IndexArg(1), 1, Ellipsis)
    assert arrays[0] is a and arrays[1] is b
    assert all(x is y for x, y in zip(fill_index(template, arrays), index))
    assert split_index((1, slice(2))) == ((1, slice(2)), ())


def test_basic_indexing_has_no_index_inputs():
    x = cr.randn(4, 6, requires_grad=True)
    node = x[1:3, ::2].grad_fn
    assert node.params["index"] == (slice(1, 3), slice(None, None, 2))
    assert len(node.saved_in) == 1


def test_scatter_and_setitem_with_repeats_and_negatives():
    """scatter_to (getitem's backward) adds repeated places; setitem's index_put writes."""
    x = cr.randn(4, 3, requires_grad=True)
    i = cr.tensor([1, -3, 3, -1])  # -3 is 1 and -1 is 3: each row twice
    (x[i] * cr.tensor([[1.0], [2.0], [3.0], [4.0]])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[:, 0], [0.0, 3.0, 0.0, 7.0])
    y = cr.zeros(4, 3)
    v = cr.randn(2, 3, requires_grad=True)
    z = y.clone()
    z[cr.tensor([-1, 0])] = v
    assert z.grad_fn.prim is REGISTRY["index_put"]
    assert _arrays_in(z.grad_fn.params) == []
    np.testing.assert_array_equal(z.detach().numpy()[[3, 0]], v.detach().numpy())
    z.sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), np.ones((2, 3)))


def test_an_index_changed_in_place_before_backward_is_an_error():
    """The node keeps the index tensor for its rule: changing it afterwards would send the
    gradient to other rows, so the backward refuses (as for any saved tensor)."""
    x = cr.randn(4, 2, requires_grad=True)
    i = cr.tensor([0, 1])
    y = x[i, :1]
    i[0] = 2
    with pytest.raises(cr.errors.GraphError, match=r"its input 1, a tensor of shape \(2,\) "
                                                   r"and dtype int64, saved by GetitemBackward"):
        y.sum().backward()


def test_bad_indices_name_the_op_the_dtype_and_the_shapes():
    x = cr.randn(3, 4)
    with pytest.raises(IndexError, match=r"getitem: tensors used as indices must be long, int "
                                         r"or bool, got float32 \(index of shape \(2,\), "
                                         r"tensor of shape \(3, 4\)\)"):
        x[cr.tensor([0.0, 1.0])]
    with pytest.raises(IndexError, match=r"setitem: list/array indices must be integers or "
                                         r"bools, got float64 \(index of shape \(1,\)"):
        x[np.array([0.5])] = 1.0
    with pytest.raises(IndexError, match=r"getitem: index 5 is out of bounds for axis 0 with "
                                         r"size 3"):
        x[cr.tensor([0, 5])]
    with pytest.raises(IndexError, match=r"getitem: too many indices"):
        x[cr.tensor([0]), 1, 2]


# ---------------------------------------------------------------- vmap
@pytest.mark.parametrize("in_dims", [(0, 0), (None, 0), (0, None)])
def test_vmap_of_an_index_batched_or_not(in_dims):
    rng = np.random.default_rng(0)
    X = cr.tensor(rng.standard_normal((3, 5, 4)))
    Ib = cr.tensor(rng.integers(-5, 5, (3, 2)))
    f = lambda x, i: x[i, 1:3] * 2.0
    got = func.vmap(f, in_axes=in_dims)(X if in_dims[0] == 0 else X[0],
                                         Ib if in_dims[1] == 0 else Ib[0])
    want = [f(X[b] if in_dims[0] == 0 else X[0], Ib[b] if in_dims[1] == 0 else Ib[0]).numpy()
            for b in range(3)]
    np.testing.assert_allclose(got.numpy(), np.stack(want), rtol=1e-12)


def test_vmap_of_grad_through_a_batched_index():
    rng = np.random.default_rng(1)
    x = cr.tensor(rng.standard_normal((6, 2)))
    Ib = cr.tensor(rng.integers(0, 6, (4, 5)))  # repeats: the backward adds them
    g = func.vmap(func.grad(lambda x, i: (x[i] ** 2).sum()), in_axes=(None, 0))(x, Ib)
    for b in range(4):
        want = np.zeros((6, 2))
        np.add.at(want, Ib.numpy()[b], 2 * x.numpy()[Ib.numpy()[b]])
        np.testing.assert_allclose(g.numpy()[b], want, rtol=1e-12)


def test_vmap_of_index_select_and_setitem_with_batched_indices():
    rng = np.random.default_rng(2)
    x = cr.tensor(rng.standard_normal((5, 3)))
    Ib = cr.tensor(rng.integers(0, 5, (4, 2)))
    got = func.vmap(lambda i: cr.index_select(x, 0, i))(Ib)
    np.testing.assert_array_equal(got.numpy(), x.numpy()[Ib.numpy()])

    def put(i):
        y = cr.zeros(5, 3)
        y[i] = 1.0
        return y

    got = func.vmap(put)(Ib)
    for b in range(4):
        np.testing.assert_array_equal(got.numpy()[b], put(Ib[b]).numpy())


# ---------------------------------------------------------------- jit
def test_jit_replays_new_indices_with_one_compile_and_lists_them_as_inputs():
    x = cr.randn(6, 4, requires_grad=True)

    def step(i, j):
        y = x[i, 1:3] * 2.0 + x[j][:, :2]
        y.sum().backward()
        return y

    f = cr.jit(step, fullgraph=True)
    rng = np.random.default_rng(3)
    calls = [(cr.tensor(rng.integers(-6, 6, (3,))), cr.tensor(rng.integers(0, 6, (3,))))
             for _ in range(4)]
    got, want = [], []
    for run, out in ((f, got), (step, want)):
        x.grad = None
        for i, j in calls:
            out.append((run(i, j).detach().numpy().copy(), x.grad.numpy().copy()))
    for (a, ga), (b, gb) in zip(got, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ga, gb)
    assert len(f._compiles) == 1
    text = f.graph()
    # each index is an argument of the program and an operand of its getitem
    lines = text.splitlines()
    arg1 = next(ln for ln in lines if ln.strip().endswith("<- arg 0")).split(":")[0].strip()
    assert any(" getitem " in ln and f" {arg1} " in ln + " " for ln in lines), text
    assert "IndexArg(0)" in text and "array(" not in text


def test_jit_of_a_bool_mask_is_a_graph_break_at_the_line_and_stays_right():
    x = cr.randn(5, 3)

    def f(m):
        return x[m] * 2.0  # the mask's places are read on the host

    line = f.__code__.co_firstlineno + 1
    g = cr.jit(f)
    rng = np.random.default_rng(4)
    with pytest.warns(RuntimeWarning, match=rf"np.nonzero .*{os.path.basename(__file__)}:{line}"):
        outs = [(g(m).numpy(), f(m).numpy())
                for m in (cr.tensor(rng.random(5) > 0.5) for _ in range(3))]
    for a, b in outs:
        np.testing.assert_array_equal(a, b)
    with pytest.raises(JitError, match=rf"np.nonzero .*:{line}"):
        cr.jit(f, fullgraph=True)(cr.tensor([True, False, True, True, False]))


# ---------------------------------------------------------------- ONNX
class _Pick(cr.nn.Module):
    def forward(self, x, i):
        return x[:, i] * 2.0


def test_onnx_export_takes_the_index_as_a_graph_input(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "pick.onnx"
    x, i = cr.randn(3, 5), cr.tensor([4, 0, -1])
    cr.onnx.export(_Pick(), (x, i), str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node if n.op_type == "Gather"] == ["Gather"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [a.name for a in sess.get_inputs()]
    assert len(names) == 2
    for j in ([4, 0, -1], [1, 1, 2]):
        jt = cr.tensor(j)
        got = sess.run(None, {names[0]: x.numpy(), names[1]: jt.numpy()})[0]
        np.testing.assert_allclose(got, _Pick()(x, jt).numpy(), rtol=1e-6)


# ---------------------------------------------------------------- the whole table
def test_no_primitive_gets_an_array_in_its_params():
    """Every op-table row (float64, forward and backward) applies primitives with only
    static params: arrays always come in as inputs, where a trace and vmap see them."""
    found = set()
    apply = core._APPLY[0]

    def checking(prim, inputs, params):
        if _arrays_in(list(params.values())):
            found.add(prim.name)
        return apply(prim, inputs, params)

    core._APPLY[0] = checking
    try:
        for row in OP_TABLE:
            if "float64" not in row.dtypes:
                continue
            for s in samples(row, "float64"):
                args, kwargs, grads = chainrule_call(s)
                outs = [o for o in outputs(row.op(*args, **kwargs))
                        if isinstance(o, cr.Tensor) and o.requires_grad]
                if grads and outs:
                    cr.autograd.grad([o.sum() for o in outs], grads, allow_unused=True,
                                     create_graph=True)
    finally:
        core._APPLY[0] = apply
    assert found == set()


class _PickConst(cr.nn.Module):
    def forward(self, x):
        return x[:, [2, 0, -1]] * 2.0


class _Masked(cr.nn.Module):
    def forward(self, x, m):
        return x[m] * 2.0  # the line the export error names


def test_onnx_constant_indices_are_initialisers_and_a_mask_is_refused_at_its_line(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "const.onnx"
    cr.onnx.export(_PickConst(), (cr.randn(3, 4),), str(path))
    proto = onnx.load(str(path))
    gather = next(n for n in proto.graph.node if n.op_type == "Gather")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert [list(inits[gather.input[1]])] == [[2, 0, -1]]
    assert len(proto.graph.input) == 1
    src, start = inspect.getsourcelines(_Masked.forward)
    line = start + next(k for k, s in enumerate(src) if "x[m]" in s)
    with pytest.raises(cr.onnx.ExportError, match=rf"np.nonzero .*test_index_inputs.py:{line}"):
        cr.onnx.export(_Masked(), (cr.randn(3, 2), cr.tensor([True, False, True])),
                       str(tmp_path / "mask.onnx"))
    assert not (tmp_path / "mask.onnx").exists()
