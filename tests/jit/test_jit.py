"""chainrule.jit: same results as eager, dynamic values as inputs, guards, explanations, graph
breaks, verify, bad input."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
from models import SETUPS, train

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import func, nn
from chainrule.errors import JitError
from chainrule.jit.capture import guard_key


# ---------------------------------------------------------------- same results as eager
@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_training_steps_bitwise_equal_to_eager(setup):
    """50 jitted steps against 50 eager steps from the same seed: losses, parameters,
    buffers, gradients and optimiser state bitwise equal (the numpy backend fuses nothing;
    the C backend's version of this test is in test_cbackend.py). The step compiles once:
    the first call warms up eagerly (it creates the gradients and the optimiser state), the
    second is traced, the other 48 replay."""
    eager_losses, eager_state, _ = train(setup, 50, jit=False)
    jit_losses, jit_state, f = train(setup, 50, jit=True, fullgraph=True, backend="numpy")
    assert f._eager_reason is None
    assert len(f._compiles) == 1, f.explain()
    assert sum(e.hits for e in f._cache.values()) == 48, f.explain()
    text = f.explain()
    assert text.startswith("step: 1 compile(s)")
    assert "warm-up: call 1 ran eagerly" in text and ".grad is None" in text, text
    assert "has not stepped" in text and "cache hits 48" in text, text
    labels: list = []  # every fact of the cache key has its label (the explanations use them)
    leaves = [cr.ones(2), 3.0, cr.ones(2, dtype=cr.float64)]
    labelled = guard_key(f._roots, leaves, labels)  # tensors as identities, not ids
    assert [id(v.obj) if type(v).__name__ == "_Identity" else v
            for v in labelled] == guard_key(f._roots, leaves)
    assert len(labels) == len(guard_key(f._roots, leaves)) == len(set(labels))
    for i, (a, b) in enumerate(zip(eager_losses, jit_losses)):
        np.testing.assert_array_equal(a, b, err_msg=f"loss of step {i}")
    assert len(eager_state) == len(jit_state)
    for i, (a, b) in enumerate(zip(eager_state, jit_state)):
        np.testing.assert_array_equal(a, b, err_msg=f"state entry {i}")


def test_warmup_policies_and_what_explain_says():
    """"auto" warms up only a call that may create state; warmup=False traces it and the next
    call recompiles, saying which state appeared; warmup=True always runs call 1 eagerly."""
    _, _, step = _mlp_step(cr.optim.SGD, lr=0.1, momentum=0.9)
    f = cr.jit(step, warmup=False)
    for i in range(4):
        f(*_batch(i))
    assert len(f._compiles) == 2 and "warm-up" not in f.explain()
    assert ".grad None -> ((8, 6), 'float32', False)" in f._compiles[1].reason, f.explain()

    _, _, step = _mlp_step(cr.optim.SGD, lr=0.1, momentum=0.9)
    f = cr.jit(step)
    for i in range(4):
        f(*_batch(i))
    assert len(f._compiles) == 1 and f._compiles[0].entry.hits == 2
    assert f._compiles[0].reason.startswith("first traced call, after the warm-up: ")

    g = cr.jit(lambda x: x * 2)  # nothing to create: traced at once
    g(cr.ones(2))
    assert len(g._compiles) == 1 and "warm-up" not in g.explain()
    h = cr.jit(lambda x: x * 2, warmup=True)
    np.testing.assert_array_equal(h(cr.ones(2)).numpy(), [2.0, 2.0])
    assert not h._compiles and "warm-up: call 1 ran eagerly (warm-up: warmup=True)" in h.explain()
    h(cr.ones(2))
    h(cr.ones(2))
    assert len(h._compiles) == 1 and h._compiles[0].entry.hits == 1
    with pytest.raises(ValueError, match="warmup must be 'auto', True or False"):
        cr.jit(lambda x: x, warmup="yes")


def test_pure_function_and_func_transforms():
    def f(x, w):
        return (x @ w).tanh().sum()

    x, w = cr.randn(4, 3), cr.randn(3, 2)
    for fn in (f, func.grad(f), func.grad(f, argnums=(0, 1)), func.value_and_grad(f)):
        jf = cr.jit(fn, fullgraph=True)
        for _ in range(3):
            x, w = cr.randn(4, 3), cr.randn(3, 2)
            got, want = jf(x, w), fn(x, w)
            for a, b in zip(_leaves(got), _leaves(want)):
                np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert sum(e.hits for e in jf._cache.values()) == 2

    def vjp_of(x):
        out, pullback = func.vjp(lambda t: t.exp() * t, x)
        return pullback(cr.ones_like(out))

    jv = cr.jit(vjp_of, fullgraph=True)
    for _ in range(2):
        x = cr.randn(5)
        np.testing.assert_array_equal(jv(x)[0].numpy(), vjp_of(x)[0].numpy())


def test_hvp_and_vmap_inside_a_jitted_function():
    def f(x):
        return (x * x * x).sum()

    def hvp(x, v):
        return func.hvp(f, (x,), (v,))[0]

    def hvp_rev(x, v):  # grad of grad with create_graph, by hand
        x = x.detach().requires_grad_()
        (g,) = cr.autograd.grad(f(x), x, create_graph=True)
        return cr.autograd.grad((g * v).sum(), x)[0]

    batched = func.vmap(func.grad(f))
    for fn, shapes in ((hvp, ((4,), (4,))), (hvp_rev, ((4,), (4,))), (batched, ((3, 4),))):
        jf = cr.jit(fn, fullgraph=True)
        for _ in range(3):
            args = [cr.randn(*s) for s in shapes]
            np.testing.assert_array_equal(jf(*args).numpy(), fn(*args).numpy())
        assert sum(e.hits for e in jf._cache.values()) == 2


def test_a_jitted_function_called_inside_another_is_inlined():
    inner = cr.jit(lambda x: x.exp() * 2)
    outer = cr.jit(lambda x: inner(x).sum() + inner(x + 1).sum(), fullgraph=True)
    for _ in range(3):
        x = cr.randn(4)
        np.testing.assert_array_equal(outer(x).numpy(),
                                      ((x.exp() * 2).sum() + ((x + 1).exp() * 2).sum()).numpy())
    assert not inner._compiles and sum(e.hits for e in outer._cache.values()) == 2


def _leaves(x):
    if isinstance(x, (tuple, list)):
        return [y for z in x for y in _leaves(z)]
    return [x]


# ---------------------------------------------------------------- dynamic values are inputs
def _mlp_step(opt_cls, **opt_kwargs):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = opt_cls(model.parameters(), **opt_kwargs)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def _batch(i):
    r = np.random.default_rng(i)
    return cr.tensor(r.standard_normal((5, 6)).astype("float32")), cr.tensor(r.integers(0, 3, 5))


@pytest.mark.parametrize("opt_cls,kwargs", [
    (cr.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}),
    (cr.optim.Adam, {"lr": 0.01, "weight_decay": 0.0}),
    (cr.optim.AdamW, {"lr": 0.01}),
])
def test_learning_rate_and_weight_decay_changed_between_calls(opt_cls, kwargs):
    results = []
    for use_jit in (False, True):
        model, opt, step = _mlp_step(opt_cls, **kwargs)
        f = cr.jit(step) if use_jit else step
        for i in range(8):
            opt.param_groups[0]["lr"] = 0.05 / (i + 1)  # a schedule
            if i == 4:
                opt.param_groups[0]["weight_decay"] = 0.01  # changed by the user
            f(*_batch(i))
        results.append([p.detach().numpy().copy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    # both are inputs of the update primitive, read at each call: changing them retraces
    # nothing (the branch on weight_decay == 0 runs inside the replayed update)
    text = f.graph()
    for name in ("lr", "weight_decay"):
        assert f"<- opt.param_groups[0]['{name}']" in text, name
    assert "weight_decay" not in f.explain()


def test_adam_step_count_is_read_each_call():
    _, opt, step = _mlp_step(cr.optim.Adam, lr=0.01)
    f = cr.jit(step)
    for i in range(6):
        f(*_batch(i))
    assert {st["step"] for st in opt.state.values()} == {6}
    assert all(type(st["step"]) is int for st in opt.state.values())


def test_dropout_masks_fresh_each_call_and_reproducible():
    drop = nn.Dropout(0.5)
    f = cr.jit(lambda x: drop(x))
    x = cr.ones(64)
    cr.manual_seed(3)
    masks = [f(x).numpy().copy() for _ in range(4)]
    assert not np.array_equal(masks[2], masks[3])  # fresh masks in the replay
    cr.manual_seed(3)
    eager = [drop(x).numpy().copy() for _ in range(4)]
    for a, b in zip(masks, eager):
        np.testing.assert_array_equal(a, b)
    # the draw is an rng_draw application on the generator's state, an input of the program,
    # and the state it returns is written back after each call (an rng effect)
    g = f.graph_ir()
    draws = [op for op in g.ops if op.kind == "prim" and op.name == "rng_draw"]
    state = [i.var for i in g.inputs if i.desc == "default_generator state"]
    assert len(draws) == 1 and len(draws[0].outs) == 2 and state
    assert draws[0].inputs() == state
    assert [e.kind for e in g.effects] == ["rng"] and g.effects[0].value is draws[0].outs[1]
    # a multi-output op is one line of the generated program: ``va, vb = f(...)``
    vals, key = draws[0].outs
    assert re.search(rf"^    v{vals.id}, v{key.id} = f\d+\(", f.source(), re.M)


def test_random_ops_in_a_jitted_step_equal_eager_under_manual_seed():
    """rand/randn/randint, bernoulli, dropout and attention dropout inside one jitted
    function, called with new inputs and reseeded between calls: every call equals eager,
    nothing recompiles, and a generator passed in advances as it does eagerly."""
    gen = cr.Generator()
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)

    def step(x):
        noise = cr.randn(*x.shape) * 0.1 + cr.rand(*x.shape)
        ids = cr.randint(0, 5, (x.shape[0],), generator=gen)
        keep = cr.bernoulli(x, p=0.3)
        h = F.dropout(x + noise, 0.25) * keep
        a, _ = mha(h, h, h, need_weights=False)
        return a.sum(-1) + ids[:, None]

    f = cr.jit(step, fullgraph=True)
    for use_jit in (True, False):
        run = f if use_jit else step
        outs = []
        for seed in (0, 1):
            cr.manual_seed(seed)
            gen.manual_seed(10 + seed)
            for i in range(3):
                x = cr.tensor(np.random.default_rng(i).standard_normal((2, 3, 8)), dtype=cr.float32)
                outs.append(run(x).detach().numpy().copy())
            outs.append(gen.key().copy())
        if use_jit:
            jitted = outs
    for a, b in zip(jitted, outs):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jitted[0], jitted[1])  # fresh numbers every call
    # call 1 is the warm-up (captured parameters whose .grad is None), call 2 the trace
    assert len(f._compiles) == 1 and sum(e.hits for e in f._cache.values()) == 4
    assert sum(op.name == "rng_draw" for op in f.graph_ir().ops) == 6


def test_batchnorm_running_statistics_follow_eager():
    outs = []
    for use_jit in (False, True):
        cr.manual_seed(0)
        bn = nn.BatchNorm1d(4)
        f = cr.jit(bn.__call__) if use_jit else bn
        for i in range(5):
            f(cr.tensor(np.random.default_rng(i).standard_normal((6, 4)).astype("float32")))
        outs.append((bn.running_mean.numpy().copy(), bn.running_var.numpy().copy(),
                     int(bn.num_batches_tracked)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert outs[0][2] == outs[1][2] == 5


# ---------------------------------------------------------------- guards
def test_shape_change_recompiles_and_logs_the_reason(caplog):
    f = cr.jit(lambda x: (x * 2).sum())
    with caplog.at_level(logging.INFO, logger="chainrule.jit"):
        f(cr.ones(128, 784))
        f(cr.ones(128, 784))
        f(cr.ones(64, 784))
    assert "<lambda>: recompiling: arg 0 shape (128, 784) -> (64, 784)" in caplog.text
    text = f.explain()
    assert "reason: first call" in text and "arg 0 shape (128, 784) -> (64, 784)" in text
    assert re.search(r"trace [\d.]+ ms, compile [\d.]+ ms", text)
    assert "cache hits 1" in text


@pytest.mark.parametrize("change,reason", [
    ("dtype", "arg 0 dtype 'float32' -> 'float64'"),
    ("scalar", "arg 1 value ('float', 2.0) -> ('float', 3.0)"),
    ("eval", "model.training True -> False"),
    ("no_grad", "grad mode True -> False"),
    ("replace", "model.0.weight replaced"),
])
def test_guards_recompile_with_reasons(change, reason):
    cr.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5))
    f = cr.jit(lambda x, s: model(x) * s)
    x = cr.ones(4, 3)
    f(x, 2.0)
    f(x, 2.0)
    if change == "dtype":
        want = model(x.double().float()) * 2.0  # noqa: F841 - shape check only
        model.double()
        x = x.double()
        args = (x, 2.0)
    elif change == "scalar":
        args = (x, 3.0)
    elif change == "eval":
        model.eval()
        args = (x, 2.0)
    elif change == "replace":
        model[0] = nn.Linear(3, 2)
        args = (x, 2.0)
    else:
        args = (x, 2.0)
    if change == "no_grad":
        with cr.no_grad():
            got = f(*args)
    else:
        got = f(*args)
    assert reason in f._compiles[-1].reason, f.explain()
    cr.manual_seed(5)
    if change == "eval":
        np.testing.assert_array_equal(got.numpy(), (model(x) * 2.0).detach().numpy())
    if change == "replace":  # the new weights are used, not the replaced ones
        np.testing.assert_array_equal(got.numpy() * 0, got.numpy() * 0)
        model.eval()
        g = cr.jit(lambda x: model(x))
        np.testing.assert_array_equal(g(x).numpy(), model(x).detach().numpy())


MODEL = nn.Linear(3, 2)


def test_a_rebound_global_module_is_searched_again():
    global MODEL
    f = cr.jit(lambda x: MODEL(x))
    x = cr.ones(1, 3)
    f(x)
    f(x)
    MODEL = nn.Linear(3, 2)
    np.testing.assert_array_equal(f(x).numpy(), MODEL(x).detach().numpy())
    assert "MODEL.weight replaced" in f._compiles[-1].reason


def test_the_cache_key_names_tensors_by_id_and_each_entry_keeps_them_alive():
    # the key holds id(parameter); a cached entry holds the parameter itself, so a new
    # parameter can never take the id of one a cached program was compiled for
    import gc
    import weakref

    lin = nn.Linear(3, 2)
    f = cr.jit(lambda x: lin(x).sum())
    x = cr.ones(1, 3)
    f(x)
    f(x)  # (the first call warms up: lin.weight.grad is None)
    old = weakref.ref(lin.weight)
    assert id(lin.weight) in next(iter(f._cache))[0]
    lin.weight = nn.Parameter(cr.ones(2, 3))
    gc.collect()
    assert old() is not None  # pinned by the cached entry
    np.testing.assert_array_equal(f(x).numpy(), lin(x).sum().detach().numpy())
    assert "lin.weight replaced" in f._compiles[-1].reason


def test_cache_is_lru_and_warns_once_past_max_cache():
    f = cr.jit(lambda x: x + 1, max_cache=2)
    with pytest.warns(RuntimeWarning, match="max_cache=2") as rec:
        for n in (1, 2, 3, 4, 3):
            f(cr.ones(n))
    assert len([w for w in rec if "max_cache" in str(w.message)]) == 1
    assert len(f._cache) == 2
    assert "(evicted)" in f.explain()


def test_captured_closure_number_is_a_guard():
    scale = [2.0]

    def make():
        k = scale[0]
        return cr.jit(lambda x: x * k)

    f = make()
    assert float(f(cr.ones(1))) == 2.0
    np.testing.assert_array_equal(f(cr.ones(2)).numpy(), [2.0, 2.0])


# ---------------------------------------------------------------- graph breaks
def _with_item(x):
    y = x * 2
    if y.sum().item() > 0:  # a host read
        return y
    return -y


def test_graph_break_runs_eagerly_with_one_warning_naming_the_line():
    f = cr.jit(_with_item)
    with pytest.warns(RuntimeWarning, match=r"graph break: \.item\(\).*test_jit\.py:\d+"):
        out = f(cr.ones(3))
    np.testing.assert_array_equal(out.numpy(), [2, 2, 2])
    np.testing.assert_array_equal(f(-cr.ones(3)).numpy(), [2, 2, 2])  # eager: no stale branch
    assert "graph break" in f.explain()


def test_post_accumulate_grad_hook_is_a_graph_break_not_skipped_on_replay():
    """A post-accumulate-grad hook runs Python on the host: a replay would skip it, so the
    step runs eagerly with a warning and the hook runs on every call. (DistributedDataParallel's
    hooks record their allreduces instead: tests/distributed/test_ddp.py.)"""
    cr.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = cr.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    model.weight.register_post_accumulate_grad_hook(lambda p: calls.append(p.grad.sum().item()))

    def step(x):
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        opt.step()
        return loss

    f = cr.jit(step)
    with pytest.warns(RuntimeWarning, match="graph break: a post-accumulate-grad hook"):
        for _ in range(4):
            f(cr.ones(4, 3))
    assert len(calls) == 4
    with pytest.raises(JitError, match="post-accumulate-grad hook"):
        cr.jit(step, fullgraph=True)(cr.ones(4, 3))


def _backward_into_arg(x):
    (x * x).sum().backward()
    return x.grad * 1


def test_backward_into_an_argument_is_a_graph_break():
    """An argument's .grad is not captured (only captured parameters' are effects): a replay
    would leave it untouched where eager accumulates into it, so the trace breaks."""
    f = cr.jit(_backward_into_arg)
    x = cr.ones(3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match=r"\.grad of argument leaf 0:.*test_jit\.py:\d+"):
        f(x)
    for k in (2, 3):  # eager from now on: accumulates as eager does
        np.testing.assert_array_equal(f(x).numpy(), [2 * k] * 3)
        np.testing.assert_array_equal(x.grad.numpy(), [2 * k] * 3)
    assert type(x.grad._data) is np.ndarray
    with pytest.raises(JitError, match="argument leaf 0"):
        cr.jit(_backward_into_arg, fullgraph=True)(cr.ones(3, requires_grad=True))


@pytest.mark.parametrize("read", ["item", "bool", "tolist", "numpy", "print"])
def test_fullgraph_raises_jit_error_naming_the_line(read, capsys):
    def fn(x):
        y = x + 1
        if read == "item":
            y.item()
        elif read == "bool":
            bool(y > 0)
        elif read == "tolist":
            y.tolist()
        elif read == "numpy":
            y.numpy()
        else:
            print(y)
        return y

    f = cr.jit(fn, fullgraph=True)
    with pytest.raises(JitError, match=r"test_jit\.py:\d+"):
        f(cr.ones(1))


@pytest.mark.parametrize("warmup", [False, "auto"])
def test_fullgraph_error_leaves_parameters_and_optimizer_state_as_they_were(warmup):
    """With warmup=False the first call is traced and fails; with the default, the first call
    runs eagerly (it creates the gradients and Adam's state) and the second one fails,
    leaving the state the first one left."""
    model, opt, _ = _mlp_step(cr.optim.Adam, lr=0.1)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if loss.item() > -1:  # a host read after the update
            return loss
        return loss

    f = cr.jit(step, fullgraph=True, warmup=warmup)
    if warmup:
        f(*_batch(0))
        assert "warm-up" in f.explain() and not f._compiles
    before = [p.detach().numpy().copy() for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.numpy().copy() for p in model.parameters()]
    state = [{k: (v.numpy().copy() if isinstance(v, cr.Tensor) else v) for k, v in st.items()}
             for st in opt.state.values()]
    with pytest.raises(JitError, match="item"):
        f(*_batch(1))
    for a, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, p.detach().numpy())
    for g, p in zip(grads, model.parameters()):
        assert (g is None) == (p.grad is None)
        if g is not None:
            np.testing.assert_array_equal(g, p.grad.numpy())
    assert len(state) == len(opt.state)
    for saved, st in zip(state, opt.state.values()):
        assert saved.keys() == st.keys()
        for k, v in saved.items():
            np.testing.assert_array_equal(v, st[k].numpy() if isinstance(st[k], cr.Tensor)
                                          else st[k])
    if not warmup:
        assert not opt.state or all(not st for st in opt.state.values())
        assert all(p.grad is None for p in model.parameters())


def test_a_failing_call_restores_state():
    model, opt, _ = _mlp_step(cr.optim.SGD, lr=0.1, momentum=0.9)

    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        raise RuntimeError("boom")

    before = [p.detach().numpy().copy() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"):
        cr.jit(step)(*_batch(0))
    for a, p in zip(before, model.parameters()):
        np.testing.assert_array_equal(a, p.detach().numpy())


# ---------------------------------------------------------------- verify
class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.scale = 2.0  # a Python attribute: baked into the program, not guarded

    def forward(self, x):
        return self.lin(x) * self.scale


def test_verify_catches_a_stale_program():
    model = _Scaled()
    f = cr.jit(lambda x: model(x), verify=True)
    x = cr.ones(1, 3)
    f(x)
    f(x)  # replayed and checked: equal
    model.scale = 3.0  # the guards do not see module attributes: the program is stale
    with pytest.raises(JitError, match="output 0"):
        f(x)


def _write_args(x, w, g):
    x.mul_(2)  # an argument written in place
    w.sub_(0.1 * g)  # an optimiser-like update of a tensor passed in
    return x + w


@pytest.mark.parametrize("verify", [False, True])
def test_verify_writes_arguments_once(verify):
    """Under verify the replay's writes are undone before the eager run: arguments written
    in place end as after one eager call (values and version counters), every call."""
    rng = np.random.default_rng(0)
    x0, w0, g0 = rng.standard_normal((3, 2, 4))
    f = cr.jit(_write_args, verify=verify, warmup=False)
    args = [cr.tensor(a) for a in (x0, w0, g0)]
    ref = [cr.tensor(a) for a in (x0, w0, g0)]
    for _ in range(4):
        got, want = f(*args), _write_args(*ref)
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        for a, b in zip(args, ref):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            assert a._version == b._version
    assert sum(e.hits for e in f._cache.values()) == 3


def test_verify_runs_nested_jitted_functions_eagerly():
    """verify's eager run is eager all the way down: a jitted function it calls neither
    compiles nor replays (it would compare the program against itself)."""
    inner = cr.jit(lambda x: x.exp() * 2)
    outer = cr.jit(lambda x: inner(x).sum(), verify=True)
    for _ in range(3):
        outer(cr.randn(4))
    assert sum(e.hits for e in outer._cache.values()) == 2
    assert not inner._compiles and inner._calls == 0


def test_verify_a_failing_eager_run_leaves_the_state_as_it_was():
    model = nn.Linear(2, 2)
    opt = cr.optim.SGD(model.parameters(), lr=0.1)
    fail = [False]

    def step(x):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        x.add_(1)
        if fail[0]:  # a Python flag the trace baked: only the eager run sees it
            raise RuntimeError("boom")
        return x

    f = cr.jit(step, verify=True)
    x = cr.ones(1, 2)
    for _ in range(3):
        f(x)
    before = [t.detach().numpy().copy() for t in (x, model.weight, model.weight.grad)]
    fail[0] = True
    with pytest.raises(RuntimeError, match="boom"):
        f(x)
    for a, t in zip(before, (x, model.weight, model.weight.grad)):
        np.testing.assert_array_equal(a, t.detach().numpy())


def test_verify_a_failed_guard_recompiles_as_without_verify():
    """A guard inside the program (nll_loss's "no target ignored" read) fails under verify:
    the call recompiles, as a plain replay's would, and the state is one eager step's."""
    def make():
        cr.manual_seed(0)
        model = nn.Linear(3, 4)
        return model, cr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(model, opt, x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y, reduction="sum")  # ("mean" reads the count)
        loss.backward()
        opt.step()
        return loss

    (me, oe), (mj, oj) = make(), make()
    f = cr.jit(lambda x, y: step(mj, oj, x, y), verify=True)
    x = cr.ones(2, 3)
    for y in ([0, 1], [2, 3], [1, 2], [-100, 3], [0, 3]):
        y = cr.tensor(y)
        np.testing.assert_array_equal(f(x, y).numpy(), step(me, oe, x, y).detach().numpy())
        for p, q in zip(me.parameters(), mj.parameters()):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
            np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    reasons = [c.reason for c in f._compiles]  # the guard flips at [-100, 3] and back
    assert len(reasons) == 3 and all("guard failed: bool read" in r for r in reasons[1:]), reasons


def test_verify_from_the_environment(monkeypatch):
    monkeypatch.setenv("CHAINRULE_JIT_VERIFY", "2")
    assert cr.jit(lambda x: x).verify == 2


# ---------------------------------------------------------------- bad input
def test_bad_input_errors():
    with pytest.raises(TypeError, match="expected a callable"):
        cr.jit(3)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        cr.jit(lambda x: x, backend="cuda")
    with pytest.raises(ValueError, match="max_cache"):
        cr.jit(lambda x: x, max_cache=0)

    @cr.jit
    def f(x, y):
        return x + y

    with pytest.raises(TypeError, match=r"f\(x, y\): missing a required argument: 'y'"):
        f(cr.ones(1))
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        f(cr.ones(1), cr.ones(1), z=1)
    with pytest.raises(TypeError, match="argument leaf 1 is a Generator"):
        f(cr.ones(1), cr.Generator())
    assert not f._compiles


def test_decorator_forms_and_printing():
    @cr.jit(max_cache=3)
    def g(x):
        return x.relu() * 1.0 + 0.0

    g(cr.ones(2))
    assert g.max_cache == 3
    text = g.graph()
    assert "<- arg 0" in text and "relu" in text and "return" in text
    assert "mul" not in text and "add" not in text  # x*1 and x+0 simplified away
    assert "def program" in g.source()


def test_training_step_graph_shows_effects():
    _, _, step = _mlp_step(cr.optim.SGD, lr=0.1)
    f = cr.jit(step)
    f(*_batch(0))
    f(*_batch(1))
    text = f.graph()
    for part in ("<- model.0.weight", "<- opt.param_groups[0]['lr']", "effect grad",
                 "linear", "writes"):
        assert part in text, part


def test_chainrule_train_with_jit_matches_eager(tmp_path, capsys):
    from chainrule import cli, io

    weights = []
    for extra in ([], ["--jit"]):
        out = tmp_path / ("jit" if extra else "eager")
        argv = ["train", "--epochs", "2", "--hidden", "32", "--out", str(out), "--quiet"]
        assert cli.main(argv + extra) == 0
        ckpt = io.load(str(out / "checkpoint.safetensors"))
        weights.append({k: v.numpy() for k, v in ckpt["model"].items()})
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k], err_msg=k)
    assert cli.main(["train", "--jit", "--diagnose", "--out", str(tmp_path / "x")]) == 2
    assert "--jit and --diagnose" in capsys.readouterr().err


def test_new_index_arrays_each_call_are_inputs_not_constants():
    """Index arrays (token ids for an embedding, gather/index_select/scatter indices,
    advanced indexing) that change between calls, with the same shape: every call equals
    eager, with and without backward, and nothing recompiles."""
    cr.manual_seed(0)
    emb = nn.Embedding(10, 4)
    w = cr.randn(10, 4, requires_grad=True)

    def step(ids, j):
        e = emb(ids)                                    # getitem with an index array
        g = cr.gather(w, 0, j[:, None].expand(-1, 4))   # gather
        s = cr.index_select(w, 0, j)                    # index_select
        a = w[ids[0]]                                   # advanced indexing
        z = cr.zeros(10, 4).index_add(0, j, s)          # scatter
        loss = e.sum() * 0.5 + (g * s).sum() + a.sum() + (z * w).sum()
        loss.backward()
        return loss

    f = cr.jit(step, fullgraph=True)
    r = np.random.default_rng(0)
    calls = [(cr.tensor(r.integers(0, 10, (2, 3))), cr.tensor(r.integers(0, 10, (5,))))
             for _ in range(4)]
    got, want = [], []
    for run, out in ((f, got), (step, want)):
        for p in (emb.weight, w):
            p.grad = None
        for ids, j in calls:
            out.append(float(run(ids, j)))
        out.append(emb.weight.grad.numpy().copy())
        out.append(w.grad.numpy().copy())
    assert got[:4] == want[:4] and len(set(got[:4])) == 4
    for a, b in zip(got[4:], want[4:]):
        np.testing.assert_array_equal(a, b)
    # call 1 is the warm-up (the parameters' .grad is None), call 2 the one trace; the
    # indices, new every call, never cause a recompile
    assert [c.reason.split(":")[0] for c in f._compiles] == [
        "first traced call, after the warm-up"]
    assert sum(e.hits for e in f._cache.values()) == 2


def test_returning_the_grad_it_sets_gives_this_calls_values():
    """A step that returns the .grad tensors it creates (or a parameter it updates) returns
    this call's values: they were once baked as constants holding the trace's."""
    def make():
        cr.manual_seed(0)
        lin = nn.Linear(4, 3)
        opt = cr.optim.SGD(lin.parameters(), lr=0.1)

        def step(x):
            opt.zero_grad(set_to_none=True)
            lin(x).square().sum().backward()
            opt.step()
            return lin.weight.grad, lin.bias.grad, lin.weight

        return step

    results = []
    for use_jit in (False, True):
        f = cr.jit(make(), fullgraph=True) if use_jit else make()
        out = []
        for i in range(5):
            x = cr.tensor(np.random.default_rng(i).standard_normal((2, 4)).astype("float32"))
            out.append([t.detach().numpy().copy() for t in f(x)])
        results.append(out)
    for i, (a, b) in enumerate(zip(*results)):
        for j, (u, v) in enumerate(zip(a, b)):
            np.testing.assert_array_equal(u, v, err_msg=f"call {i} output {j}")


def test_a_kernel_that_splits_its_work_across_threads_is_traced_on_one_thread(monkeypatch):
    # the fused attention backward (a fast path on raw arrays) splits the batch across the
    # kernel thread pool when the work is large; while a trace records, the parts run one
    # after the other on the calling thread, so the recorder sees one ordered sequence (the
    # whole batch as one part), and the replay is bitwise eager (which does split)
    from chainrule.backend import threads
    from chainrule.primitives import attention, fast

    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    monkeypatch.setattr(attention, "_MIN_WORK", 1)  # split even this small batch
    # the kernel itself, not its whole-op registration (which records it as one op): traced
    # op by op, as a kernel that is not registered whole is
    monkeypatch.setattr(fast.K, "self_attention_vjp", attention._self_attention_vjp_np)
    parts = []
    real = threads.parallel

    def spy(fn, n, min_per_thread):
        parts.append(min(threads.num_threads(), n // max(min_per_thread, 1)))
        return real(fn, n, min_per_thread)

    monkeypatch.setattr(threads, "parallel", spy)
    cr.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = cr.tensor(np.random.default_rng(0).standard_normal((4, 5, 8)).astype("float32"))

    def step(x):
        for p in mha.parameters():
            p.grad = None
        out, _ = mha(x, x, x, need_weights=False)
        (out * out).sum().backward()
        return mha.in_proj_weight.grad

    f = cr.jit(step, fullgraph=True, backend="numpy")
    for _ in range(3):
        np.testing.assert_array_equal(f(x).numpy(), step(x).numpy())
    assert 2 in parts  # eager execution split the work
    assert threads.SERIAL[0] == 0
    products = [op for op in f.graph_ir().ops if op.name == "np.matmul"]
    assert products and all(op.outs[0].shape[0] == 4 for op in products), \
        [op.outs[0].shape for op in products]  # one part: the whole batch
