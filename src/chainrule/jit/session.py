"""One trace: put traced values in place of the captured state, run the function, take them
out again, and turn what was recorded into a :class:`~chainrule.jit.ir.Graph`."""

from __future__ import annotations

from ..autograd import post_hooks as _post_hooks
from ..backend import np, threads
from ..primitives import fast as _fast
from ..primitives.core import TRACE_HOOK
from ..random import default_generator
from ..tensor import Tensor, _wrap
from . import trace as _trace
from .capture import flatten, state_of, state_tensor_getters
from .ir import Effect, Graph, Guard, Input, Var
from .trace import Recorder, TraceArray, TraceScalar, prim_hook


def _traced_view(rec, a):
    t = np.ndarray.view(a if isinstance(a, np.ndarray) else np.asarray(a), TraceArray)
    t._v = t._v0 = rec.var(a)
    t._rec = rec
    return t


def _plain(a):
    if isinstance(a, TraceArray):
        return np.ndarray.view(a, np.ndarray)
    return a


def _as_array(v):
    return np.asarray(v) if isinstance(v, np.generic) else v


class TraceResult:
    """What a trace leaves: the call's result, the graph (None after a graph break), the
    breaks [(reason, file:line)] and the number of ops recorded."""

    def __init__(self, result, graph, breaks):
        self.result = result
        self.graph = graph
        self.breaks = breaks


def _post_hook_break(leaf):
    """A post-accumulate-grad hook runs Python on the host during backward: a replay would
    skip it, so the trace ends in a graph break (unless the hook records what it does through
    chainrule.jit.effects, as DistributedDataParallel's do: post_hooks.run skips those)."""
    rec = _trace._REC[0]
    if rec is not None:
        rec.graph_break("a post-accumulate-grad hook ran in backward: hooks cannot be replayed "
                        "(a hook can record its array work and host calls through "
                        "chainrule.jit.effects.host_effect and set hook.jit_traceable = True)",
                        _trace._site())


def run_trace(name, fn, args, kwargs, leaves, roots, fullgraph):
    """Run ``fn`` once, eagerly, recording it. Returns a TraceResult. Exceptions from ``fn``
    propagate (the caller restores its snapshot)."""
    rec = Recorder(fullgraph)
    inputs: list[Input] = []
    restore = []  # (tensor, original array, installed view)
    arg_vars = {}
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, Tensor) or id(leaf) in arg_vars:
            continue
        view = _traced_view(rec, leaf._data)
        restore.append((leaf, leaf._data, view, f"arg {i}"))
        leaf._data = view
        arg_vars[id(leaf)] = view._v
        inputs.append(Input(view._v, f"arg {i}", i, "arg"))
    tensors, params, optstates, scalars = state_of(roots)
    grads0 = {}
    for _desc, p in params:
        grads0[id(p)] = p._grad
        if p._grad is not None:
            tensors.append((f"{_desc}.grad", p._grad))
    seen = set(arg_vars)
    by_path = state_tensor_getters(roots)
    for desc, t in tensors:
        if id(t) in seen:
            continue
        seen.add(id(t))
        view = _traced_view(rec, t._data)
        restore.append((t, t._data, view, desc))
        t._data = view
        get = by_path.get(id(t)) or _data_getter(t, desc, params)
        inputs.append(Input(view._v, desc, get, "state"))
    scal_restore = []
    for desc, holder, key, get in scalars:
        v = holder[key]
        if isinstance(v, tuple):
            items = []
            for j, x in enumerate(v):
                sv = rec.var(scalar=type(x).__name__)
                items.append(TraceScalar(x, sv))
                inputs.append(Input(sv, f"{desc}[{j}]", _item_getter(get, j), "scalar"))
            traced = tuple(items)
        else:
            sv = rec.var(scalar=type(v).__name__)
            traced = TraceScalar(v, sv)
            inputs.append(Input(sv, desc, get, "scalar"))
        holder[key] = traced
        scal_restore.append((desc, holder, key, v, traced))
    opt_before = [(pdesc, opt, p, dict(st)) for pdesc, opt, p, st in optstates]
    arg_grads = [(i, leaf, leaf._grad) for i, leaf in enumerate(leaves)
                 if isinstance(leaf, Tensor) and id(leaf) not in grads0]
    scratch = _trace_scratch(rec, roots)
    gens = [("default_generator", default_generator)] + [
        (d, g) for d, g in roots.generators if g is not default_generator]
    rng = _trace.install_generators(rec, gens, inputs, Input)
    _trace._REC[0] = rec
    threads.SERIAL[0] += 1  # a kernel's parts on pool threads would record out of order
    TRACE_HOOK[0] = prim_hook
    _fast.TRACE_CALL[0] = lambda name, fn, a, kw: rec.call("func", name, fn, a, kw)
    _post_hooks.ON_RUN[0] = _post_hook_break
    saved = _trace.patch_conversions()
    result = None
    try:
        result = fn(*args, **kwargs)
    finally:
        _trace._REC[0] = None
        threads.SERIAL[0] -= 1
        TRACE_HOOK[0] = None
        _fast.TRACE_CALL[0] = None
        _post_hooks.ON_RUN[0] = None
        _trace.unpatch_conversions(saved)
        rng_effects = _trace.finish_generators(rec, rng, Effect)
        for buffers, key, orig in scratch:
            buffers[key] = orig
        effects = _finish(rec, restore, params, grads0, optstates, opt_before, scal_restore,
                          roots) + rng_effects
    _arg_grad_break(rec, fn, arg_grads)
    out_leaves: list = []
    tree = flatten(result, out_leaves)
    outputs = []
    for leaf in out_leaves:
        if isinstance(leaf, Tensor):
            tv, _ = rec.template(leaf._data)
            outputs.append(tv)
            leaf._data = _plain(leaf._data)
        elif isinstance(leaf, TraceScalar):
            outputs.append(leaf._v)
        else:
            outputs.append(leaf)
    clean = [(_wrap(_as_array(x._data)) if isinstance(x, Tensor) else
              (x._value if isinstance(x, TraceScalar) else x)) for x in out_leaves]
    from .capture import unflatten  # noqa: PLC0415

    result = unflatten(tree, clean)
    if rec.breaks:
        return TraceResult(result, None, rec.breaks)
    named = {i.var: i.desc for i in inputs}
    guards = [Guard(v, expected, _on(rec.ops, v, named, desc), kind, pos)
              for v, expected, desc, pos, kind in rec.guards]
    graph = Graph(name, inputs, dict(rec.consts), list(rec.ops), guards, outputs, tree, effects)
    return TraceResult(result, graph, [])


_SCRATCH_SLOTS = 4


def _trace_scratch(rec, roots):
    """An optimiser's scratch buffers (``Optimizer._tmp``) as traced constants, so that
    updates written through them stay visible: created here for every slot an update may ask
    for, at the size of the largest parameter, and put back after the trace."""
    out = []
    for _, opt in roots.optimizers:
        buffers = getattr(opt, "_scratch", None)
        if buffers is None:
            continue
        for group in opt.param_groups:
            for p in group["params"]:
                for slot in range(_SCRATCH_SLOTS):
                    opt._tmp(np.ndarray.view(p._data, np.ndarray), slot)
        for key, buf in list(buffers.items()):
            view = np.ndarray.view(buf, TraceArray)
            v = rec.var(buf)
            rec.consts[v] = buf
            rec.keep.append(buf)
            view._v = v
            view._rec = rec
            buffers[key] = view
            out.append((buffers, key, buf))
    return out


def _on(ops, var, named, desc):
    """``desc`` with the scalar inputs a guard depends on: "branch on opt...['lr'] at ..."."""
    if var.scalar is None:
        return desc
    producer = {o: op for op in ops for o in op.outs}
    found, stack, seen = [], [var], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in named:
            found.append(named[v])
        elif v in producer:
            stack.extend(producer[v].inputs())
    if not found:
        return desc
    head, _, tail = desc.partition(" at ")
    return f"{head} on {', '.join(sorted(found))} at {tail}"


def _item_getter(get, j):
    return lambda: get()[j]


def _data_getter(t, desc, params):
    if desc.endswith(".grad"):
        pdesc = desc[:-5]
        for d, p in params:
            if d == pdesc:
                return lambda: p._grad._data
    return lambda: t._data


def _known(rec, plain, var):
    """Later templates of ``plain`` (an array taken out of the trace) give ``var``: a result
    that returns the same tensor as an effect (``return p.grad``) reads the program's value,
    not a constant holding the trace's."""
    if var is not None and plain is not None:
        rec.plain_written[id(plain)] = (plain, var)
        rec.keep.append(plain)


def _var_or_literal(rec, v):
    if isinstance(v, Tensor):
        tv, _ = rec.template(v._data)
        v._data = _plain(v._data)
        _known(rec, v._data, tv if isinstance(tv, Var) else None)
        return tv
    if isinstance(v, TraceScalar):
        return v._v
    return v


def _arg_grad_break(rec, fn, arg_grads):
    """A backward that wrote an argument's ``.grad``: a replay would not (only captured
    parameters' ``.grad`` are effects), so the trace ends in a graph break."""
    for i, leaf, g0 in arg_grads:
        if leaf._grad is g0:
            continue
        if leaf._grad is not None:
            leaf._grad._data = _plain(leaf._grad._data)
        code = getattr(fn, "__code__", None)
        where = f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)
        rec.graph_break(f"backward wrote the .grad of argument leaf {i}: an argument's .grad is "
                        "not captured (close over the tensor, or take gradients with "
                        "chainrule.autograd.grad / chainrule.func.grad)", where)


def _finish(rec, restore, params, grads0, optstates, opt_before, scal_restore, roots):
    """Take the traced values out of the captured state; return the effects a replay needs."""
    effects = []
    for t, orig, view, desc in restore:
        cur = t._data
        if cur is view:
            t._data = orig
            _known(rec, orig, view._v)
            if view._v is not view._v0:  # written in place: its version moved
                effects.append(Effect("bump", desc, None, _bump(t)))
        else:  # rebound to a new array (Tensor.data = ...)
            value = _var_or_literal(rec, t)
            effects.append(Effect("bind", desc, value, _bind(t)))
    for desc, p in params:
        g0, g1 = grads0[id(p)], p._grad
        if g1 is g0:
            continue
        value = None if g1 is None else _var_or_literal(rec, g1)
        effects.append(Effect("grad", f"{desc}.grad", value, _set_grad(p)))
    for (pdesc, opt, p, before), (_, _, _, _) in zip(opt_before, optstates):
        _state_effects(rec, effects, pdesc, opt, p, before)
    known = {id(p) for _, _, p, _ in opt_before}
    for oname, opt in roots.optimizers:
        for p, _st in list(opt.state.items()):
            if id(p) not in known:  # state created by this call
                _state_effects(rec, effects, _param_desc(p, params, oname), opt, p, {})
    for desc, holder, key, original, traced in scal_restore:
        if ".state[" in desc:
            continue  # an optimiser state entry: handled with the state effects
        cur = holder[key]
        if cur is traced:
            holder[key] = original
            continue
        value = _var_or_literal(rec, cur)
        holder[key] = cur._value if isinstance(cur, TraceScalar) else cur
        effects.append(Effect("state", desc, value, _set_item(holder, key)))
    return effects


def _state_effects(rec, effects, pdesc, opt, p, before):
    st = opt.state.get(p, {})
    for k, v in list(st.items()):
        old = before.get(k, _MISSING)
        if isinstance(v, Tensor):
            if v is old:
                continue
            value = _var_or_literal(rec, v)
            effects.append(Effect("state", f"state[{pdesc}][{k!r}]", value,
                                  _set_state(opt, p, k, tensor=True)))
            continue
        if isinstance(v, TraceScalar):
            if v is old:
                st[k] = v._value
                continue
            effects.append(Effect("state", f"state[{pdesc}][{k!r}]", v._v,
                                  _set_state(opt, p, k)))
            st[k] = v._value
            continue
        if old is _MISSING or not (type(old) is type(v) and old == v):
            effects.append(Effect("state", f"state[{pdesc}][{k!r}]", v, _set_state(opt, p, k)))
    for k in before:
        if k not in st:
            effects.append(Effect("state", f"del state[{pdesc}][{k!r}]", None,
                                  _del_state(opt, p, k)))


_MISSING = object()


def _param_desc(p, params, oname):
    for d, q in params:
        if q is p:
            return d
    return f"{oname} parameter"


def _bump(t):
    def apply(_v):
        t._bump()

    apply.tensor = t  # the replay bumps it directly (api._Entry)
    return apply


def _bind(t):
    def apply(v):
        t._data = _as_array(v)
        t._bump()

    return apply


def _set_grad(p):
    def apply(v):
        p._grad = None if v is None else _wrap(_as_array(v))

    apply.param = p  # the replay may drop the old .grad early (api._held_grads)
    return apply


def _set_state(opt, p, k, tensor=False):
    if tensor:
        def apply(v):
            opt.state[p][k] = _wrap(_as_array(v))
    else:
        def apply(v):
            opt.state[p][k] = v
    return apply


def _del_state(opt, p, k):
    def apply(_v):
        opt.state[p].pop(k, None)

    return apply


def _set_item(holder, key):
    def apply(v):
        holder[key] = v

    return apply

