"""The reverse-mode engine: ``backward`` and ``grad``.

Iterative throughout (no recursion, so a chain of 100,000 ops is fine):

1. walk the graph from the roots once, counting for every node how many recorded consumers
   will send it a gradient;
2. process nodes when all their consumers are done, calling each input's vjp rule, summing
   the cotangent back to the input's shape and dtype (broadcasting is undone here, in one
   place), and accumulating per node;
3. leaves accumulate into ``.grad`` (``backward``) or are captured (``grad``).

Without ``create_graph`` the rules run on raw arrays (``primitives.RAW``); with it they run as
recorded tensor ops (``primitives.TENSOR``), so the gradients are differentiable again.
Saved buffers are dropped after use unless ``retain_graph``.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor(2.0, requires_grad=True)
    >>> (g,) = chainrule.autograd.grad(x ** 3, x, create_graph=True)
    >>> (g2,) = chainrule.autograd.grad(g, x)
    >>> float(g), float(g2)
    (12.0, 12.0)
"""

from __future__ import annotations

import numpy as np

from ..backend import from_numpy_dtype, get_array_module
from ..backend.fperrors import quiet_begin, quiet_end
from ..errors import GraphError, ShapeError, out_of_memory
from ..primitives import RAW, TENSOR
from ..primitives.core import OUTPUT_RULE
from . import graph as _graph
from . import post_hooks as _post
from .anomaly import ANOMALY, check_backward
from .grad_mode import STATE
from .graph import Aval, Node

_ndarray = np.ndarray
_INTO = object()  # "fresh" of a gradient written into its leaf's destination: kept as it is


def _tensor_cls():
    return _graph.Tensor


def filled_like(t, fill: str):
    """A fresh tensor of ``fill`` ("zeros" or "ones") with ``t``'s shape, dtype and device:
    what ops.zeros_like / ops.ones_like give, for autograd, which sits below ops."""
    a = t._data
    try:
        z = getattr(get_array_module(a), fill)(a.shape, dtype=a.dtype)
    except MemoryError as e:
        raise out_of_memory(f"{fill}_like", a.shape, from_numpy_dtype(a.dtype).name,
                            e) from None
    return _graph._wrap(z)


def _as_tuple(x):
    if x is None:
        return ()
    if isinstance(x, (list, tuple)):
        return tuple(x)
    return (x,)


def _root_grads(outputs, grad_outputs, create_graph):
    Tensor = _tensor_cls()
    grads = []
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise ShapeError(f"got {len(outputs)} outputs but {len(grad_outputs)} grad_outputs")
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(f"backward/grad outputs must be Tensors, got {type(out).__name__}")
        if not out._rg:
            raise GraphError(
                f"output {i} (shape {tuple(out.shape)}) does not require grad and has no "
                "grad_fn: nothing in it depends on a tensor with requires_grad=True")
        g = None if grad_outputs is None else grad_outputs[i]
        if g is None:
            if out._data.size != 1:
                raise GraphError(
                    f"grad can be implicitly created only for scalar outputs; output {i} has "
                    f"shape {tuple(out.shape)}: pass a gradient of that shape")
            xp = get_array_module(out._data)
            g = xp.ones(out._data.shape, dtype=out._data.dtype)
            grads.append(_graph._wrap(g) if create_graph else g)
            continue
        if not isinstance(g, Tensor):
            g = _graph.make_tensor(g, dtype=out.dtype, device=out.device)
        if g.shape != out.shape:
            raise ShapeError(f"gradient for output {i} has shape {tuple(g.shape)}, but the output "
                             f"has shape {tuple(out.shape)}")
        if g.device != out.device:
            raise GraphError(f"gradient for output {i} is on {g.device}, the output on "
                             f"{out.device}")
        if g._data.dtype != out._data.dtype:
            if g._data.dtype.kind not in "fV":
                raise TypeError(f"gradient for output {i} has dtype {g.dtype.name}; expected "
                                f"{out.dtype.name}")
            g = g.to(out.dtype)
        grads.append(g if create_graph else g._data)
    return grads


def _collect(roots):
    """Count, for every node reachable from ``roots``, its consumers (edges into it)."""
    deps: dict = {}
    stack = []
    for r in roots:
        if type(r) is Node and r not in deps:
            deps[r] = 0
            stack.append(r)
    while stack:
        n = stack.pop()
        for e in n.edges:
            if type(e) is Node:
                c = deps.get(e)
                if c is None:
                    deps[e] = 1
                    stack.append(e)
                else:
                    deps[e] = c + 1
    return deps


def _needed(deps, targets):
    """Nodes from which some target is reachable (the only ones worth processing)."""
    order = []  # reverse topological order via Kahn on a copy of the counts
    pending = dict(deps)
    ready = [n for n, c in pending.items() if c == 0]
    while ready:
        n = ready.pop()
        order.append(n)
        for e in n.edges:
            if type(e) is Node:
                pending[e] -= 1
                if pending[e] == 0:
                    ready.append(e)
    needed = set()
    for n in reversed(order):
        if n in targets:
            needed.add(n)
            continue
        for e in n.edges:
            if e is not None and (e in needed or (type(e) is not Node and id(e) in targets)):
                needed.add(n)
                break
    return needed


def _fit(F, gi, meta, create_graph):
    """Sum a cotangent back to its input's shape and cast it to the input's dtype (with the
    sum_to and cast primitives: on raw arrays, or recorded when ``create_graph``)."""
    shape = meta.shape
    if gi.shape != shape:
        gi = F.sum_to(gi, shape=tuple(shape))
        if gi.shape != shape:  # a rule returned something that does not broadcast
            raise ShapeError(f"internal: cotangent of shape {gi.shape} for input {shape}")
    dt = meta.dtype
    if (gi._data.dtype if create_graph else gi.dtype) != dt:
        gi = F.cast(gi, dtype=from_numpy_dtype(dt))
    return gi


def _check_versions(node):
    for vc, v, i in node.versions:
        if vc[0] != v:
            if i >= 0:
                what, arr = f"its input {i}", node.saved_in[i]
            elif node.prim.multi:
                what, arr = f"its output {-1 - i}", node.saved_out[-1 - i]
            else:
                what, arr = "its output", node.saved_out
            msg = (f"one of the tensors needed for gradient computation has been modified by an "
                   f"in-place operation: {what}, a tensor of shape {tuple(arr.shape)} and dtype "
                   f"{from_numpy_dtype(arr.dtype).name}, saved by {node.prim.node_name} at "
                   f"version {v}, is now at version {vc[0]}. Use an out-of-place op, or clone() "
                   "the tensor before changing it.")
            if node.trace:
                msg += "\nThe op was created at:\n" + "".join(node.trace.format()[-4:])
            raise GraphError(msg)


def _rule_args(node, create_graph):
    """The inputs and output as the rules see them: arrays, or tensors in the graph."""
    ins = node.saved_in
    out = node.saved_out
    if not create_graph:
        return ins, out
    wrap = _graph._wrap
    Tensor = _tensor_cls()
    targs = []
    for a, e in zip(ins, node.edges):
        if isinstance(a, Aval) or not hasattr(a, "shape"):
            targs.append(a)
        elif e is None:
            targs.append(wrap(a))
        elif type(e) is Node:
            targs.append(wrap(a, e))
        else:  # a leaf tensor that requires grad
            targs.append(e if isinstance(e, Tensor) else wrap(a))
    if out is None:
        return targs, None
    if node.prim.multi:  # each output in the graph through its own output node
        return targs, tuple(wrap(o, _graph.output_node(node, k)) for k, o in enumerate(out))
    return targs, wrap(out, node)


def _run_hooks(hooks, g, create_graph):
    if type(g) is list:  # a multi-output node's cotangents (checkpoint's recompute hook)
        for h in hooks:
            h(g)
        return g
    wrap = _graph._wrap
    for h in hooks:
        gt = g if create_graph else wrap(g)
        r = h(gt)
        if r is not None:
            g = r if create_graph else r._data
    return g


def run_backward(outputs, grad_outputs, retain_graph, create_graph, targets=None,
                 accumulate=True):
    """The engine. ``targets`` (a list of tensors) limits the work to what reaches them;
    with ``accumulate=False`` their gradients are returned instead of written to ``.grad``."""
    Tensor = _tensor_cls()
    if retain_graph is None:
        retain_graph = create_graph
    F = TENSOR if create_graph else RAW
    roots = [o._node if o._node is not None else o for o in outputs]
    deps = _collect(roots)
    captured: dict = {}
    target_keys = None
    if targets is not None:
        target_keys = {}
        for t in targets:
            if not isinstance(t, Tensor):
                raise TypeError(f"inputs must be Tensors, got {type(t).__name__}")
            if not t._rg:
                raise GraphError(f"one of the inputs (shape {tuple(t.shape)}) does not require "
                                 "grad; call requires_grad_() on it first")
            key = t._node if t._node is not None else id(t)
            target_keys[key] = t
        needed = _needed(deps, target_keys)
    else:
        needed = None
    grads: dict = {}
    leaves: dict = {}  # id(leaf) -> [leaf, summed gradient, fresh]
    ready = []
    # leaves with post-accumulate hooks are delivered as soon as their last contribution is in
    early = _post.leaf_counts(deps) if _post.HOOKS and accumulate else None
    # gradient destinations (DDP's shared buckets): first-order, accumulating backward only
    into = bool(_post.DESTS) and accumulate and not create_graph and target_keys is None
    prev = STATE.enabled
    STATE.enabled = create_graph
    quiet = quiet_begin()  # the raw vjp rules give IEEE values silently, as the ops do
    try:
        for root, g in zip(roots, grad_outputs):
            if type(root) is Node:
                if root in grads:
                    grads[root] = grads[root] + g
                else:
                    grads[root] = g
            else:  # the output is itself a leaf
                _add_leaf(leaves, root, g, False)
        for root in roots:
            if type(root) is Node and deps[root] == 0 and root not in ready:
                ready.append(root)
        while ready:
            node = ready.pop()
            g = grads.pop(node, None)
            if g is not None:
                if node.pre_hooks:
                    g = _run_hooks(node.pre_hooks, g, create_graph)
                if node.retains:
                    _retain(node, g, create_graph)
                if target_keys is not None and node in target_keys:
                    captured[node] = g
            active = g is not None and (needed is None or node in needed)
            if active:
                _backprop_node(node, g, F, create_graph, grads, leaves, target_keys, needed,
                               into)
                if not retain_graph and (node.prim.save_in or node.prim.save_out):
                    node.saved_in = [a if isinstance(a, Aval) or not hasattr(a, "shape")
                                     else Aval(a.shape, a.dtype) for a in node.saved_in]
                    node.saved_out = None
                    node.freed = True
            for e in node.edges:
                if type(e) is Node:
                    c = deps[e] - 1
                    deps[e] = c
                    if c == 0:
                        ready.append(e)
                elif early and id(e) in early:
                    _count_down(early, e, leaves, target_keys, captured, create_graph)
        # leaves last: every contribution is summed, so each leaf's hooks run once
        for leaf, gi, fresh in leaves.values():
            _deliver_leaf(leaf, gi, target_keys, captured, accumulate, create_graph, fresh)
    finally:
        quiet_end(quiet)
        STATE.enabled = prev
    return captured, target_keys


def _count_down(early, leaf, leaves, target_keys, captured, create_graph):
    key = id(leaf)
    c = early[key] - 1
    early[key] = c
    if c == 0 and key in leaves:
        _, gi, fresh = leaves.pop(key)
        _deliver_leaf(leaf, gi, target_keys, captured, True, create_graph, fresh)


def _add_leaf(leaves, leaf, gi, fresh):
    key = id(leaf)
    cur = leaves.get(key)
    if cur is None:
        leaves[key] = [leaf, gi, fresh]
    else:
        cur[1] = cur[1] + gi
        cur[2] = True


def _retain(node, g, create_graph):
    for ref in node.retains:
        t = ref()
        if t is None:
            continue
        if create_graph:
            val = g
        else:
            val = _graph._wrap(np.asarray(g) if isinstance(g, np.generic) else g.copy())
        if t._grad is None:
            t._grad = val
        else:
            t._grad = t._grad + val if create_graph else _graph._wrap(t._grad._data + val._data)


def _backprop_node(node, g, F, create_graph, grads, leaves, target_keys, needed,
                   into=False):
    prim = node.prim
    if node.freed:
        raise GraphError(
            f"trying to backward through the graph a second time ({prim.node_name}): its saved "
            "tensors were freed after the first backward. Pass retain_graph=True to the first "
            "backward (or autograd.grad) if you need to backward twice.")
    if node.versions:
        _check_versions(node)
    ins, out = _rule_args(node, create_graph)
    params = node.params
    rules = prim.vjp
    variadic = prim.variadic
    if not rules and prim.vjp_all is not None:  # one call gives every input's cotangent
        if prim.vjp_all is OUTPUT_RULE:  # an output of a multi-output node: collect for it
            _collect_output(node, g, grads)
            return
        rules, params = _joint_rules(prim, node, g, F, ins, out, params, target_keys, needed)
    for i, e in enumerate(node.edges):
        if e is None:
            continue
        if needed is not None and not (e in needed if type(e) is Node else id(e) in target_keys):
            continue
        if into and type(e) is not Node and id(e) not in leaves:
            # the leaf's first contribution, written straight into its destination (a later
            # one is added to it into a new array, as usual)
            gi = _post.into_dest(prim, i, e, g, ins, out, params)
            if gi is not None:
                if ANOMALY.enabled and ANOMALY.check_nan:
                    check_backward(node, i, gi)
                _add_leaf(leaves, e, gi, _INTO)
                continue
        if variadic:
            gi = rules[0](F, g, *ins, out, argnum=i, **params)
        else:
            rule = rules[i]
            if rule is None:
                continue
            gi = rule(F, g, *ins, out, **params) if params else rule(F, g, *ins, out)
        if gi is None:
            continue
        gi = _fit(F, gi, node.saved_in[i], create_graph)
        if ANOMALY.enabled and ANOMALY.check_nan:
            check_backward(node, i, gi)
        if type(e) is Node:
            prev = grads.get(e)
            grads[e] = gi if prev is None else prev + gi
        else:
            _add_leaf(leaves, e, gi, gi is not g)


def _collect_output(node, g, grads):
    """Put the cotangent of output ``k`` into slot ``k`` of its primitive node's list (None
    in the slots of outputs that no gradient reaches)."""
    core = node.edges[0]
    k = node.prim.index
    gs = grads.get(core)
    if gs is None:
        gs = grads[core] = [None] * len(core.outs)
    gs[k] = g if gs[k] is None else gs[k] + g


def _joint_rules(prim, node, g, F, ins, out, params, target_keys, needed):
    """Run a primitive's one vjp rule for all inputs; return per-input rules that hand out
    its results (so the edge loop of :func:`_backprop_node` stays the same for every node)."""
    needs = tuple(e is not None and (needed is None or (
        e in needed if type(e) is Node else id(e) in target_keys)) for e in node.edges)
    cotangents = prim.vjp_all(F, g, *ins, out, needs=needs, **params)
    return tuple((lambda *_, gi=gi: gi) for gi in cotangents), {}


def _deliver_leaf(leaf, gi, target_keys, captured, accumulate, create_graph, fresh=False):
    """Accumulate ``gi`` into a leaf's .grad (or capture it). ``fresh``: gi was allocated by
    the rule that produced it, so nothing else holds it and it can be stored without a copy."""
    if leaf._hooks:
        gi = _run_hooks(leaf._hooks, gi, create_graph)
        fresh = False
    if target_keys is not None:  # each leaf arrives once, its contributions already summed
        key = id(leaf)
        if key not in target_keys:
            return
        if not accumulate:
            captured[key] = gi
            return
    if create_graph:
        leaf._grad = gi if leaf._grad is None else leaf._grad + gi
    else:
        _accumulate(leaf, gi, fresh)
    if _post.HOOKS:
        _post.run(leaf)


def _accumulate(leaf, gi, fresh):
    cur = leaf._grad
    if cur is None:
        if isinstance(gi, np.generic):
            gi = np.asarray(gi)
        elif fresh is not _INTO and (not fresh or gi.base is not None):
            # never store a buffer that something else may hold: a rule that passes its
            # incoming gradient on (add, reshape) hands the same array to several places
            gi = gi.copy()
        leaf._grad = _graph._wrap(gi)
    elif cur._node is not None or cur._rg:
        leaf._grad = cur.detach() + _graph._wrap(gi)
    else:
        cur._data += gi
        cur._bump()


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves (PyTorch's
    ``torch.autograd.backward``). ``inputs`` restricts accumulation to those tensors.

    Example:
        >>> import chainrule
        >>> w = chainrule.ones(3, requires_grad=True)
        >>> chainrule.autograd.backward((w * 2).sum()); w.grad
        tensor([2., 2., 2.])
    """
    outputs = _as_tuple(tensors)
    if _graph.FORWARD.levels:  # inside jvp/vmap the backward must carry tangents/batches
        create_graph = True
    gouts = None if grad_tensors is None else _as_tuple(grad_tensors)
    grads = _root_grads(outputs, gouts, create_graph)
    targets = None if inputs is None else list(_as_tuple(inputs))
    if targets is not None and not targets:
        raise ValueError("backward: 'inputs' must not be empty")
    if targets is not None:
        for t in targets:
            if isinstance(t, _tensor_cls()) and t._node is not None and not t._retains:
                t.retain_grad()
    run_backward(outputs, grads, retain_graph, create_graph, targets=targets, accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, materialize_grads=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not accumulated).

    Args:
        outputs: tensor or sequence of tensors to differentiate.
        inputs: tensor or sequence of tensors (leaves or intermediate results).
        grad_outputs: the vector in the vector-Jacobian product (default: ones for scalars).
        create_graph: record the backward so the result can be differentiated again.
        allow_unused: return None for inputs that the outputs do not depend on, instead of
            raising; ``materialize_grads`` returns zeros instead.

    Example:
        >>> import chainrule
        >>> x = chainrule.tensor([1.0, 2.0], requires_grad=True)
        >>> chainrule.autograd.grad((x * x).sum(), x)
        (tensor([2., 4.]),)
    """
    outs = _as_tuple(outputs)
    ins = _as_tuple(inputs)
    if _graph.FORWARD.levels:  # inside jvp/vmap the backward must carry tangents/batches
        create_graph = True
    if not ins:
        raise ValueError("grad: 'inputs' must not be empty")
    gouts = None if grad_outputs is None else _as_tuple(grad_outputs)
    grads = _root_grads(outs, gouts, create_graph)
    captured, _ = run_backward(outs, grads, retain_graph, create_graph, targets=list(ins),
                                  accumulate=False)
    result = []
    for i, t in enumerate(ins):
        key = t._node if t._node is not None else id(t)
        g = captured.get(key)
        if g is None:
            if materialize_grads:
                result.append(filled_like(t, "zeros"))
                continue
            if not allow_unused:
                raise GraphError(
                    f"input {i} (shape {tuple(t.shape)}) was not used in computing the outputs; "
                    "pass allow_unused=True to get None for it")
            result.append(None)
            continue
        if not create_graph:
            if isinstance(g, np.generic):
                g = np.asarray(g)
            g = _graph._wrap(g)
        result.append(g)
    return tuple(result)

