"""Each pass alone, on a traced (unoptimised) graph: what it removes or marks, that it leaves
its input graph unchanged, and that the program still computes the same values."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.jit import passes
from chainrule.jit.capture import Roots
from chainrule.jit.numpy_backend import compile_graph
from chainrule.jit.session import run_trace


def traced(fn, *args):
    tr = run_trace("f", fn, args, {}, list(args), Roots(fn), False)
    assert tr.graph is not None, tr.breaks
    return tr.graph


def run(graph, *args):
    """Run a graph (after the mandatory guard hoisting) on tensors; the outputs as arrays."""
    program = compile_graph(passes.hoist_guards(graph))
    values = [args[i.get]._data if i.kind == "arg" else i.get() for i in graph.inputs]
    outs, _ = program.run(*values)
    return [np.asarray(o) for o in outs]


def names(graph):
    return [op.name for op in graph.ops]


X = cr.tensor(np.linspace(-1, 1, 6).reshape(2, 3).astype("float32"))


def _same_values(before, after, *args):
    for a, b in zip(run(before, *args), run(after, *args)):
        np.testing.assert_array_equal(a, b)


def test_dead_code_elimination_drops_unused_ops_and_inputs():
    g = traced(lambda x, y: (x.exp(), (x * 3).sin(), y + 1)[0], X, X + 1)
    n = len(g.ops)
    d = passes.eliminate_dead_code(g)
    assert names(d) == ["exp"] and len(g.ops) == n
    assert [i.desc for i in d.inputs] == ["arg 0"]
    _same_values(g, d, X, X + 1)


def test_dead_code_elimination_keeps_writes_and_random_draws():
    buf = cr.zeros(2, 3)

    def f(x):
        buf.add_(x)  # a write into captured state
        cr.rand(3)  # a draw nobody reads still advances the generator
        return x * 2

    d = passes.eliminate_dead_code(traced(f, X))
    assert any(op.writes for op in d.ops)
    # the draw's numbers are dead, but the generator state it returns is an effect's value
    draws = [op for op in d.ops if op.name == "rng_draw"]
    assert len(draws) == 1 and any(e.kind == "rng" and e.value is draws[0].outs[1]
                                   for e in d.effects)


def test_common_subexpressions_are_merged_but_not_across_writes():
    g = traced(lambda x: x.exp() + x.exp(), X)
    c = passes.eliminate_common_subexpressions(g)
    assert names(g).count("exp") == 2 and names(c).count("exp") == 1
    _same_values(g, c, X)

    def with_write(x):
        y = x * 1.5
        a = y.sum()
        y.add_(1.0)
        return a, y.sum()

    g = traced(with_write, X)
    c = passes.eliminate_common_subexpressions(g)
    assert names(c).count("sum") == 2
    _same_values(g, c, X)


def test_constant_folding_runs_constant_ops_once():
    def f(x):
        return x + cr.ones(2, 3).exp() * 2

    g = traced(f, X)
    folded = passes.fold_constants(g)
    assert "exp" in names(g) and names(folded) == ["add"]
    _same_values(g, folded, X)


def test_algebraic_identities():
    g = traced(lambda x: ((x.relu() * 1.0 + 0.0) - 0.0) / 1.0 ** 1, X)
    s = passes.simplify_algebra(g)
    assert names(s) == ["relu"]
    _same_values(g, s, X)
    # an input is never handed back as a fresh result that the caller may change
    g2 = traced(lambda x: x * 1.0, X)
    assert names(passes.simplify_algebra(g2)) == ["mul"]


def test_elementwise_groups_mark_chains():
    g = passes.group_elementwise(traced(lambda x: ((x * 2).exp() + 1).sum() + x.tanh().sum(), X))
    groups = [op.group for op in g.ops]
    assert groups[:3] == [1, 1, 1] and groups[3] is None
    assert len({gr for gr in groups if gr is not None}) == 1


def test_memory_planning_reuses_buffers_and_keeps_values():
    def chain(x):
        y = x.detach()
        for _ in range(6):
            y = (y * 1.5 + 0.25) * 0.5
        return y

    # the NumPy-level ops of an optimiser-like update are what get planned buffers
    def update(p, g):
        a = p._data * 0.9
        b = a + g._data
        c = b * 0.1
        d = c - p._data
        return cr.tensor(d)

    g = traced(update, X, X * 2)
    planned = passes.plan_memory(g)
    assert planned.nbuffers >= 1
    assert sum(op.out_buf is not None for op in planned.ops) > planned.nbuffers  # reuse
    _same_values(g, planned, X, X * 2)
    g2 = traced(chain, X)
    _same_values(g2, passes.plan_memory(g2), X)


def test_memory_planning_never_holds_a_buffer_across_the_peak():
    x = cr.tensor(np.linspace(-1, 1, 1000))

    def f(x):
        a = x * 2.0
        s1 = a.sum()  # a dies here
        big = x.reshape(1000, 1) * x.reshape(1, 1000)  # the peak: 8 MB
        s2 = big.sum()
        d = x * 3.0  # a's buffer is free, but holding it through the peak would raise it
        sd = d.sum()
        e = (x * 4.0).exp()  # exp writes over its dying input
        se = e.sum()
        y = x * 5.0  # no peak since d and e died: reuses one of their buffers
        return s1 + s2 + sd + se + y.sum()

    g = traced(f, x)
    planned = passes.plan_memory(g)
    buf = {op.outs[0]: op.out_buf for op in planned.ops if op.out_buf is not None}
    muls = [op for op in planned.ops if op.name == "mul" and op.outs[0].shape == (1000,)]
    a, d, x4, y = (m.outs[0] for m in muls)
    assert buf[d] != buf[a]
    exp = next(op for op in planned.ops if op.name == "exp")
    assert buf[exp.outs[0]] == buf[x4]
    assert buf[y] in (buf[d], buf[x4])
    assert planned.nbuffers == 4  # a, big, d, x*4 (and exp); y reuses
    _same_values(g, planned, x)


def _zeros_graph(start, written=False):
    """x -> scatter_to(x, (10,), [0:4]) -> [start:] -> any, a guard that it is False."""
    from chainrule.jit.ir import Graph, Guard, Input, Op, Var
    from chainrule.primitives import REGISTRY

    f32 = np.dtype("float32")
    x, s, part, anyv = Var(1, (4,), f32), Var(2, (10,), f32), Var(3, (10 - start,), f32), \
        Var(4, (), np.dtype(bool))
    ops = [Op("prim", "scatter_to", REGISTRY["scatter_to"].impl, (np, x),
              {"shape": (10,), "index": (slice(0, 4, None),)}, [s])]
    if written:
        s2 = Var(5, (10,), f32)
        ops.append(Op("ufunc", "np.add", np.add, (s, 1.0), {"out": s}, [s2], writes=(s,)))
    ops.append(Op("method", "ndarray.__getitem__", np.ndarray.__getitem__,
                  (s, slice(start, None, None)), {}, [part]))
    ops.append(Op("ufunc", "np.logical_or.reduce", np.logical_or.reduce, (part,),
                  {"axis": None}, [anyv]))
    return Graph("f", [Input(x, "arg 0", 0, "arg")], {}, ops,
                 [Guard(anyv, False, "bool read", "array_bool")], [s], ("leaf", 0), [])


def test_known_zeros_fold_a_read_of_the_untouched_part_of_a_scatter():
    g = _zeros_graph(4)
    out = passes.fold_known_zeros(g)
    assert not out.guards and [op.name for op in out.ops] == names(g)[:2]
    assert not bool(out.consts[g.guards[0].var])
    assert len(g.guards) == 1 and len(g.ops) == 3  # the input graph is unchanged
    for start in (3, 0):  # overlapping the scattered slice: kept
        kept = passes.fold_known_zeros(_zeros_graph(start))
        assert len(kept.guards) == 1 and len(kept.ops) == 3
    written = passes.fold_known_zeros(_zeros_graph(4, written=True))
    assert len(written.guards) == 1 and len(written.ops) == 4


def test_optimise_reports_counts_per_pass():
    g = traced(lambda x: (x * 1.0).exp() + (x * 1.0).exp(), X)
    out, counts = passes.optimise(g)
    assert counts[0] == ("traced", len(g.ops))
    assert [name for name, _ in counts[1:]] == [p.__name__ for p in passes.PIPELINE]
    assert len(out.ops) < len(g.ops)
    _same_values(g, out, X)


def test_copies_of_private_values_are_elided():
    w = cr.ones(3, requires_grad=True)

    def step(x):
        w.grad = None
        (w * x).sum().backward()
        return w.grad

    g = traced(step, X[0])
    e = passes.elide_copies(g)
    assert "ndarray.copy" in names(g) and "ndarray.copy" not in names(e)
    _same_values(g, e, X[0])
    # a copy of an input stays (the caller may change the input afterwards)
    g2 = traced(lambda x: cr.tensor(x._data.copy()), X)
    assert "ndarray.copy" in names(passes.elide_copies(g2))


def test_a_bias_gradient_summed_to_its_shape_is_fresh_and_its_copy_elided():
    # sum_to hands back its input only when the shapes agree: summed to another shape its
    # result is new memory, so the engine's copy before .grad goes; a cast to another dtype
    # likewise; a sum_to or cast that changes nothing may still be its input
    b = cr.zeros(3, requires_grad=True)

    def step(x):
        b.grad = None
        (x + b).square().sum().backward()
        return b.grad

    g = traced(step, X)
    [s] = [op for op in g.ops if op.name == "sum_to"]
    assert passes._fresh(s)
    e = passes.elide_copies(g)
    assert "ndarray.copy" in names(g) and "ndarray.copy" not in names(e)
    _same_values(g, e, X)
    al = passes.Aliases(e)
    assert al.find(s.outs[0]) is not al.find(s.args[1])
    same = s.copy(kwargs={"shape": tuple(s.args[1].shape)}, outs=(s.args[1],))
    assert not passes._fresh(same)
    c = traced(lambda x: x.to(cr.float64) + x.to(cr.float32), X)
    casts = {str(op.outs[0].dtype): passes._fresh(op) for op in c.ops if op.name == "cast"}
    assert casts.get("float64") is True and casts.get("float32", False) is False


@pytest.mark.parametrize("name", sorted(passes._ALLOCATING_MOVEMENT))
def test_movement_primitives_listed_as_allocating_never_return_their_inputs_memory(name):
    # passes._fresh trusts the list: each impl, on every op-table sample, returns memory
    # that none of its array inputs shares (so a copy of its result may be elided)
    from chainrule.primitives import REGISTRY
    from op_table import prim_samples

    prim = REGISTRY[name]
    seen = []

    def checked(xp, *arrays, **params):
        out = impl(xp, *arrays, **params)
        ins = [a for a in arrays if isinstance(a, np.ndarray)]
        ins += [a for v in params.values() for a in (v if isinstance(v, tuple) else (v,))
                if isinstance(a, np.ndarray)]
        seen.append(not any(np.shares_memory(out, a) for a in ins))
        return out

    impl, prim.impl = prim.impl, checked
    try:
        for sample in prim_samples(name):
            sample.call(*[cr.tensor(a) if isinstance(a, np.ndarray) else a
                          for a in sample.make(np.random.default_rng(0))])
    finally:
        prim.impl = impl
    assert seen and all(seen), seen


def _two_steps(opt_cls, **kw):
    """A parameter, an optimiser and a function taking two optimiser steps on it (the same
    update twice on the same arrays: nothing may merge, drop or reorder them)."""
    w = cr.tensor(np.linspace(-1, 1, 6).reshape(2, 3).astype("float32"), requires_grad=True)
    opt = opt_cls([w], **kw)

    def f(x):
        for _ in range(2):
            opt.zero_grad()
            (w * x).square().sum().backward()
            opt.step()
        return w.grad

    return w, opt, f


def test_update_primitives_are_effects_no_pass_drops_merges_or_plans_over():
    _, _, f = _two_steps(cr.optim.Adam, lr=0.1, weight_decay=0.01)
    f(X)  # the optimiser state exists from here on
    g = traced(f, X)
    updates = [op for op in g.ops if op.name == "adam_update"]
    assert len(updates) == 2
    for op in updates:  # param, exp_avg, exp_avg_sq written (no amsgrad buffer)
        assert len(op.writes) == 3 and len(op.outs) == 3
        al = passes.Aliases(g)
        assert [al.find(o) for o in op.outs] == [al.find(v) for v in op.writes]
        assert len({al.find(o) for o in op.outs}) == 3  # each out is its own write only
    out, _ = passes.optimise(g)
    assert [op.name for op in out.ops].count("adam_update") == 2
    first, second = (op for op in out.ops if op.name == "adam_update")
    assert second.args[1] is not first.args[1]  # the second step reads the written parameter
    assert second.args[1] in first.outs
    al = passes.Aliases(out)
    for op in out.ops:
        if op.out_buf is not None:
            assert al.find(op.outs[0]) not in al.written, op.name
    # scalars stay inputs: the learning rate, betas, eps, weight decay and step count
    descs = {i.desc for i in out.inputs if i.kind == "scalar"}
    group = "opt.param_groups[0]"
    assert descs == {f"{group}['lr']", f"{group}['betas'][0]", f"{group}['betas'][1]",
                     f"{group}['eps']", f"{group}['weight_decay']", "opt.state[w]['step']"}
    assert not any(v.scalar is not None for v in out.consts)  # no scalar baked in


@pytest.mark.parametrize("opt_cls,kw", [
    (cr.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    (cr.optim.Adam, {"lr": 0.1, "amsgrad": True}),
    (cr.optim.Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    (cr.optim.RMSprop, {"lr": 0.01, "momentum": 0.5, "centered": True}),
])
def test_jitted_update_primitives_write_what_eager_writes(opt_cls, kw):
    runs = []
    for use_jit in (False, True):
        w, opt, f = _two_steps(opt_cls, **kw)
        step = cr.jit(f, fullgraph=True) if use_jit else f
        for i in range(5):
            opt.param_groups[0]["lr"] = kw["lr"] / (i + 1)
            step(X)
        st = opt.state[w]
        runs.append([w.detach().numpy().copy()] + [
            v.numpy().copy() if isinstance(v, cr.Tensor) else np.asarray(v)
            for _, v in sorted(st.items())])
    assert sum(e.hits for e in step._cache.values()) >= 3
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("use_weights", [False, True])
def test_attention_backward_jitted_equals_eager_with_and_without_the_weights_used(use_weights):
    """Unused weights: the probabilities' cotangent is zero and its guard is folded away.
    Used weights: the values still match eager (nothing is folded that is not zero). The
    step returns the .grad tensors it creates: the program's values, not the trace's."""
    cr.manual_seed(0)
    mha = cr.nn.MultiheadAttention(8, 2, batch_first=True)

    def step(x):
        for p in mha.parameters():
            p.grad = None
        out, w = mha(x, x, x, need_weights=use_weights, average_attn_weights=False)
        loss = out.sum() + (w * w).sum() if use_weights else out.sum()
        loss.backward()
        return loss, [p.grad for p in mha.parameters()]

    f = cr.jit(step, fullgraph=True)
    for i in range(4):
        x = cr.tensor(np.random.default_rng(i).standard_normal((2, 5, 8)).astype("float32"))
        got = f(x)
        want = step(x)
        np.testing.assert_array_equal(got[0].numpy(), want[0].detach().numpy())
        for a, b in zip(got[1], want[1]):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    if not use_weights:
        assert not [gd for gd in f.graph_ir().guards if "attention" in gd.desc]
