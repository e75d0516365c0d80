"""Debugging the graph: chainrule.autograd.detect_anomaly and chainrule.viz.to_dot / render."""

from __future__ import annotations

import re
import shutil
import warnings

import numpy as np
import pytest

import chainrule
from chainrule.autograd import (
    AnomalyError,
    detect_anomaly,
    is_anomaly_enabled,
    set_detect_anomaly,
)
from chainrule.viz import render, to_dot

THIS_FILE = __file__.replace("\\", "/").rsplit("/", 1)[-1]


@pytest.fixture(autouse=True)
def _quiet_numpy():
    # the NaN/Inf that these tests provoke also make NumPy warn; that is not what is tested
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
    set_detect_anomaly(False)


# ---------------------------------------------------------------------------- anomaly
def test_forward_nan_raises_naming_the_primitive_and_the_call_site():
    x = chainrule.tensor([-1.0, 4.0], requires_grad=True)
    with detect_anomaly():
        with pytest.raises(AnomalyError) as info:
            x.log()  # the line the message must show
    msg = str(info.value)
    assert msg.splitlines()[0] == ("anomaly: forward of log produced 1 NaN/Inf value(s) in an "
                                   "output of shape (2,)")
    assert THIS_FILE in msg and "x.log()  # the line the message must show" in msg


def test_forward_inf_is_caught_too():
    with detect_anomaly(), pytest.raises(AnomalyError, match="forward of exp produced 2 NaN/Inf"):
        chainrule.tensor([1000.0, 1.0, 2000.0]).exp()


def test_backward_inf_names_the_node_and_where_it_was_created():
    x = chainrule.tensor([0.0, 1.0, 4.0], requires_grad=True)
    with detect_anomaly():
        y = x.sqrt()  # finite forward, infinite derivative at 0
        with pytest.raises(AnomalyError) as info:
            y.sum().backward()
    msg = str(info.value)
    assert msg.startswith("anomaly: backward of sqrt (SqrtBackward) produced 1 NaN/Inf value(s) "
                          "in the gradient for its input 0 (shape (3,))")
    assert "The op was created at:" in msg and "y = x.sqrt()" in msg and THIS_FILE in msg


def test_backward_of_an_op_created_before_anomaly_mode():
    x = chainrule.tensor([0.0], requires_grad=True)
    y = x.sqrt()
    with detect_anomaly(), pytest.raises(AnomalyError, match="no creation trace"):
        y.backward()


def test_backward_anomaly_with_create_graph():
    x = chainrule.tensor([0.0, 1.0], requires_grad=True)
    with detect_anomaly(), pytest.raises(AnomalyError, match="sqrt"):
        chainrule.autograd.grad(x.sqrt().sum(), x, create_graph=True)


def test_no_check_outside_the_context_and_state_is_restored():
    assert not is_anomaly_enabled()
    y = chainrule.tensor([-1.0]).log()  # no error when off
    assert np.isnan(y.numpy()).all()
    with pytest.raises(AnomalyError):
        with detect_anomaly():
            assert is_anomaly_enabled()
            chainrule.tensor([-1.0]).log()
    assert not is_anomaly_enabled()  # restored on the way out of an error too
    with detect_anomaly():
        with detect_anomaly(check_nan=False):  # as in PyTorch: traces kept, no NaN checks
            assert is_anomaly_enabled()
            chainrule.tensor([-1.0]).log()
        assert is_anomaly_enabled()


def test_decorator_and_global_switch():
    @detect_anomaly()
    def f(t):
        assert is_anomaly_enabled()
        return t.log()

    with pytest.raises(AnomalyError, match="forward of log"):
        f(chainrule.tensor([-2.0]))
    assert f.__name__ == "f" and not is_anomaly_enabled()
    set_detect_anomaly(True)
    assert is_anomaly_enabled()
    set_detect_anomaly(False)
    assert not is_anomaly_enabled()


def test_finite_and_integer_work_passes_untouched():
    with detect_anomaly():
        w = chainrule.tensor([1.0, 2.0], requires_grad=True)
        (w.exp() * 3).sum().backward()
        k = chainrule.tensor([7, 9]) // 2
    assert np.allclose(w.grad.numpy(), 3 * np.exp([1.0, 2.0]))
    assert k.tolist() == [3, 4]


# ---------------------------------------------------------------------------- to_dot
def _nodes_and_edges(dot: str):
    defined = set(re.findall(r"^\s+(\w+) \[label=", dot, flags=re.M))
    edges = re.findall(r"^\s+(\w+) -> (\w+)", dot, flags=re.M)
    return defined, edges


def test_to_dot_shows_ops_shapes_dtypes_and_saved_tensors():
    w = chainrule.ones(2, 3, requires_grad=True)
    b = chainrule.zeros(3, requires_grad=True)
    x = chainrule.ones(4, 2)
    loss = (x @ w + b).tanh().sum()
    dot = to_dot(loss)
    assert dot.startswith("digraph backward {") and dot.rstrip().endswith("}")
    for name in ("SumBackward", "TanhBackward", "AddBackward", "MatmulBackward"):
        assert dot.count(name) == 1
    assert 'out [label="output\\n() float32", shape=doubleoctagon]' in dot
    assert "saved output: (4, 3) float32" in dot  # tanh keeps its output for backward
    assert "in0: (4, 2) float32 (saved)" in dot  # matmul keeps x to get w's gradient
    assert "in0: (4, 3) float32 (shape only)" in dot  # sum keeps only the shape
    assert dot.count("shape=box") == 2  # the two leaves that require grad
    assert 'label="leaf\\n(2, 3) float32"' in dot and 'label="leaf\\n(3,) float32"' in dot
    defined, edges = _nodes_and_edges(dot)
    assert all(a in defined or a == "out" for e in edges for a in e)
    assert sum(1 for _, b in edges if b == "out") == 1
    assert len(edges) == 6  # sum->out, tanh->sum, add->tanh, matmul->add, w->matmul, b->add


def test_to_dot_visits_a_shared_node_once():
    x = chainrule.tensor([1.0, 2.0], requires_grad=True)
    a = x.exp()
    dot = to_dot(a * a)
    assert dot.count("ExpBackward") == 1
    _, edges = _nodes_and_edges(dot)
    exp_id = re.search(r"(\w+) \[label=\"ExpBackward", dot).group(1)
    assert sum(1 for s, _ in edges if s == exp_id) == 2
    assert '[label="0"]' in dot and '[label="1"]' in dot


def test_to_dot_of_a_leaf_of_float64_and_after_backward():
    w = chainrule.ones(3, dtype=chainrule.float64, requires_grad=True)
    dot = to_dot(w)
    assert "leaf\\n(3,) float64" in dot and "float64" in dot.splitlines()[2]
    y = (w * w).sum()
    before = to_dot(y)
    y.backward()
    after = to_dot(y)  # saved tensors were freed by backward: shapes remain
    assert "(saved)" in before and "(saved)" not in after and "shape only" in after


def test_to_dot_rejects_non_tensors():
    with pytest.raises(TypeError, match="to_dot expects a Tensor, got ndarray"):
        to_dot(np.ones(2))


def test_render_dot_and_images(tmp_path):
    y = (chainrule.ones(2, requires_grad=True) * 2).sum()
    p = render(y, str(tmp_path / "g.dot"))
    assert (tmp_path / "g.dot").read_text() == to_dot(y) and p.endswith("g.dot")
    if shutil.which("dot") is None:
        with pytest.raises(RuntimeError, match="needs Graphviz's 'dot' program"):
            render(y, str(tmp_path / "g.svg"))
        assert not (tmp_path / "g.svg").exists()
    else:
        render(y, str(tmp_path / "g.svg"))
        assert "<svg" in (tmp_path / "g.svg").read_text()


def test_to_dot_shows_a_multi_output_node_once_with_its_output_nodes():
    m = chainrule.nn.LSTM(3, 4)
    out, (_, c) = m(chainrule.randn(5, 2, 3))
    dot = to_dot(out.sum() + c.sum())
    assert dot.count("LstmScanBackward\\nin0") == 1  # one node for the call
    assert "LstmScanBackward (output 0)" in dot and "LstmScanBackward (output 1)" in dot
    assert "saved output: (5, 2, 4) float32, (5, 2, 4) float32, (5, 2, 16) float32" in dot
