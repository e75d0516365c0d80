"""JAX-style function transforms: grad, value_and_grad, vjp, jvp, linearize, jacrev,
jacfwd, hessian, hvp and vmap, composable to any depth.

* Reverse mode (``grad``, ``vjp``, ``jacrev``) runs the function on fresh leaves that require
  grad (detached copies sharing memory: the caller's tensors are untouched) and calls the
  reverse engine. Nested inside another reverse transform, the leaves stay connected to the
  outer ones and the backward is recorded (``create_graph``), so ``grad(grad(f))`` works;
  otherwise results are returned outside the graph.
* Forward mode (``jvp``, ``jacfwd``, ``linearize``) opens a forward level
  (:mod:`chainrule.autograd.forward`): tangents go through each primitive's jvp rule in the
  same pass as the values.
* ``vmap`` opens a batching level (:mod:`chainrule.func.batching`): one call, with each
  primitive's batching rule applied to the whole batch.

``argnums`` and ``has_aux`` are handled in one place (:func:`_select`, :func:`_split_aux`)
for every transform. Inputs and outputs may be pytrees (:mod:`chainrule.func.pytree`).

Example:
    >>> import chainrule
    >>> from chainrule.func import grad, jacfwd, jacrev, vmap
    >>> f = lambda x: (x ** 3).sum()
    >>> x = chainrule.tensor([1.0, 2.0])
    >>> grad(f)(x)
    tensor([ 3., 12.])
    >>> jacfwd(jacrev(f))(x)
    tensor([[ 6.,  0.],
            [ 0., 12.]])
    >>> vmap(grad(f))(chainrule.tensor([[1.0], [2.0]]))
    tensor([[ 3.],
            [12.]])
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ..autograd import engine as _engine
from ..autograd import forward as fwd
from ..autograd.grad_mode import STATE
from ..autograd.graph import FORWARD
from ..errors import ShapeError
from ..primitives import TENSOR
from ..tensor import Tensor, _wrap
from .batching import BatchingError, BatchLevel, moveaxis
from .pytree import tree_flatten, tree_leaves, tree_unflatten

__all__ = ["grad", "hessian", "hvp", "jacfwd", "jacrev", "jvp", "linearize",
           "value_and_grad", "vjp", "vmap"]

F = TENSOR
_REVERSE = [0]  # reverse transforms whose function is running (nesting depth)


# ================================================================ shared argument handling
def _argnums(argnums, nargs: int, fname: str) -> tuple[tuple, bool]:
    """Normalise ``argnums`` (an int or a tuple of ints) against ``nargs`` positional args;
    returns the tuple of indices and whether the user passed a tuple."""
    is_tuple = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if is_tuple else (argnums,)
    if is_tuple and not nums:
        raise ValueError(f"{fname}: argnums must not be empty")
    out = []
    for a in nums:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool):
            raise TypeError(f"{fname}: argnums must be ints or a tuple of ints, got {argnums!r}")
        if not -nargs <= a < nargs:
            raise ValueError(f"{fname}: argnums {a} is out of range for a function called with "
                             f"{nargs} positional argument(s)")
        out.append(int(a) % nargs)
    if len(set(out)) != len(out):
        raise ValueError(f"{fname}: argnums {argnums!r} repeats an argument")
    return tuple(out), is_tuple


def _split_aux(out, has_aux: bool, fname: str):
    if not has_aux:
        return out, None
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{fname}(..., has_aux=True): the function must return a pair "
                        f"(output, aux), got {type(out).__name__}")
    return out[0], out[1]


def _tensor_leaves(tree, fname: str, what: str) -> tuple[list, Any]:
    leaves, spec = tree_flatten(tree)
    for i, x in enumerate(leaves):
        if not isinstance(x, Tensor):
            raise TypeError(f"{fname}: {what} must be Tensors (or pytrees of Tensors); leaf {i} "
                            f"is a {type(x).__name__}")
    return leaves, spec


def _float_leaves(tree, fname: str, what: str) -> tuple[list, Any]:
    leaves, spec = _tensor_leaves(tree, fname, what)
    for i, x in enumerate(leaves):
        if x._data.dtype.kind not in "fV":
            raise TypeError(f"{fname}: {what} must be floating point to be differentiated; "
                            f"leaf {i} has dtype {x.dtype.name} and shape {tuple(x.shape)}")
    return leaves, spec


def _zeros_like(x: Tensor) -> Tensor:
    from ..backend import get_array_module  # noqa: PLC0415

    return _wrap(get_array_module(x._data).zeros(x._data.shape, dtype=x._data.dtype))


def _finish(tree, nested: bool):
    """Results of a reverse transform: outside the graph unless nested (payloads kept)."""
    if nested:
        return tree
    leaves, spec = tree_flatten(tree)
    return tree_unflatten(spec, [fwd.detached(x) if isinstance(x, Tensor) else x
                                 for x in leaves])


# ================================================================ reverse mode
def _reverse_leaf(x: Tensor, nested: bool) -> Tensor:
    """The tensor a reverse transform differentiates with respect to."""
    if nested and x._rg:
        return fwd.alias(x)  # stays connected to the outer transform's graph
    leaf = _wrap(x._data)
    vc = x._vc
    if vc is None:
        vc = x._vc = [0]
    leaf._vc = vc
    fw = fwd.fw_of(x)
    if fw:
        leaf._fw = dict(fw)
    leaf._rg = True
    return leaf


class _Traced:
    """One run of a function under a reverse transform."""

    __slots__ = ("argnums", "aux", "is_tuple", "leaves", "nested", "out", "specs")


def _run_reverse(func, args, kwargs, argnums, has_aux, fname) -> _Traced:
    nums, is_tuple = _argnums(argnums, len(args), fname)
    nested = _REVERSE[0] > 0
    args = list(args)
    leaves_all = []
    specs = []
    for i in nums:
        leaves, spec = _float_leaves(args[i], fname, f"argument {i}")
        new = [_reverse_leaf(x, nested) for x in leaves]
        args[i] = tree_unflatten(spec, new)
        leaves_all.append(new)
        specs.append(spec)
    prev = STATE.enabled
    STATE.enabled = True
    _REVERSE[0] += 1
    fwd.REVERSE_DEPTHS.append(len(fwd.STACK))
    try:
        out = func(*args, **kwargs)
    finally:
        fwd.REVERSE_DEPTHS.pop()
        _REVERSE[0] -= 1
        STATE.enabled = prev
    tr = _Traced()
    tr.out, tr.aux = _split_aux(out, has_aux, fname)
    tr.leaves, tr.specs, tr.nested, tr.argnums, tr.is_tuple = \
        leaves_all, specs, nested, nums, is_tuple
    return tr


def _backward(tr: _Traced, outs: list, cots: list | None, create: bool, retain: bool) -> list:
    """Gradients of ``outs`` (weighted by ``cots``) for every leaf, zeros where unused."""
    flat = [x for leaves in tr.leaves for x in leaves]
    pairs = [(o, c) for o, c in zip(outs, cots if cots is not None else [None] * len(outs))
             if o._rg]
    if pairs:
        prev = STATE.enabled
        STATE.enabled = True
        try:
            gs = _engine.grad([o for o, _ in pairs], flat,
                              grad_outputs=None if cots is None else [c for _, c in pairs],
                              retain_graph=retain or create, create_graph=create,
                              allow_unused=True)
        finally:
            STATE.enabled = prev
    else:
        gs = [None] * len(flat)
    return [g if g is not None else _zeros_like(x) for g, x in zip(gs, flat)]


def _regroup(tr: _Traced, flat: list):
    """Flat per-leaf results -> one pytree per differentiated argument (a tuple when
    argnums was a tuple)."""
    out = []
    k = 0
    for spec in tr.specs:
        out.append(tree_unflatten(spec, flat[k:k + spec.num_leaves]))
        k += spec.num_leaves
    return tuple(out) if tr.is_tuple else out[0]


def _scalar_output(out, fname: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"{fname}: the function must return a Tensor (the value to "
                        f"differentiate), got {type(out).__name__}")
    if out._data.size != 1:
        raise ShapeError(f"{fname}: the function must return a tensor with a single element, "
                         f"got shape {tuple(out.shape)}; use jacrev/vjp for non-scalar outputs")
    if out._data.dtype.kind not in "fV":
        raise TypeError(f"{fname}: the function's output has dtype {out.dtype.name}; only "
                        "floating-point outputs can be differentiated")
    return out


def _create_graph(nested: bool) -> bool:
    # forward levels need the backward as recorded ops (tangents/batches flow through it)
    return nested or FORWARD.levels > 0 or _REVERSE[0] > 0


def value_and_grad(func: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """``func``'s value and its gradient with respect to the arguments ``argnums``.

    Returns a function that gives ``(value, grad)``, or ``((value, aux), grad)`` with
    ``has_aux`` (JAX's convention). ``func`` must return a single-element float tensor.

    Example:
        >>> import chainrule
        >>> from chainrule.func import value_and_grad
        >>> value_and_grad(lambda x: (x * x).sum())(chainrule.tensor([1.0, 2.0]))
        (tensor(5.), tensor([2., 4.]))
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        tr = _run_reverse(func, args, kwargs, argnums, has_aux, "grad")
        out = _scalar_output(tr.out, "grad")
        gs = _backward(tr, [out], None, _create_graph(tr.nested), retain=False)
        g = _finish(_regroup(tr, gs), tr.nested)
        value = _finish(out, tr.nested)
        if has_aux:
            return (value, _finish(tr.aux, tr.nested)), g
        return value, g

    return wrapper


def grad(func: Callable, argnums=0, has_aux: bool = False) -> Callable:
    """The gradient of a scalar function: ``grad(f)(x)`` is df/dx, with x's pytree structure.

    ``argnums`` (an int or a tuple) picks the arguments; with ``has_aux`` ``func`` returns
    ``(output, aux)`` and the gradient function returns ``(grad, aux)``. Composes with every
    transform: ``grad(grad(f))``, ``vmap(grad(f))``, ``jvp(grad(f), ...)``.

    Example:
        >>> import chainrule
        >>> from chainrule.func import grad
        >>> grad(grad(lambda x: x ** 3))(chainrule.tensor(2.0))
        tensor(12.)
        >>> grad(lambda p: (p["w"] * 2).sum())({"w": chainrule.ones(2)})
        {'w': tensor([2., 2.])}
    """
    vg = value_and_grad(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        value, g = vg(*args, **kwargs)
        if has_aux:
            return g, value[1]
        return g

    return wrapper


def vjp(func: Callable, *primals, has_aux: bool = False):
    """Evaluate ``func(*primals)`` and return ``(output, vjp_fn)`` (and ``aux`` with
    ``has_aux``); ``vjp_fn(cotangent)`` (a cotangent of the output's structure) returns one
    cotangent per primal, as a tuple. ``vjp_fn`` may be called many times (and under vmap).

    Example:
        >>> import chainrule
        >>> from chainrule.func import vjp
        >>> out, vjp_fn = vjp(lambda x: x * 3, chainrule.tensor([1.0, 2.0]))
        >>> vjp_fn(chainrule.tensor([1.0, 10.0]))
        (tensor([ 3., 30.]),)
    """
    if not primals:
        raise ValueError("vjp: give at least one primal")
    tr = _run_reverse(func, primals, {}, tuple(range(len(primals))), has_aux, "vjp")
    outs, out_spec = _tensor_leaves(tr.out, "vjp", "the function's outputs")

    def vjp_fn(cotangents):
        cots = _match_cotangents(cotangents, out_spec, outs)
        nested = tr.nested or _REVERSE[0] > 0 or any(c._rg for c in cots)
        gs = _backward(tr, outs, cots, _create_graph(nested), retain=True)
        return tuple(_finish(_regroup(tr, gs), nested))

    out = _finish(tr.out, tr.nested)
    if has_aux:
        return out, vjp_fn, _finish(tr.aux, tr.nested)
    return out, vjp_fn


def _match_cotangents(cotangents, out_spec, outs) -> list:
    leaves, spec = tree_flatten(cotangents)
    if spec != out_spec:
        raise ValueError(f"vjp_fn: the cotangent has structure {spec!r} but the output has "
                         f"{out_spec!r}")
    for i, (c, o) in enumerate(zip(leaves, outs)):
        if not isinstance(c, Tensor):
            raise TypeError(f"vjp_fn: cotangent {i} must be a Tensor, got {type(c).__name__}")
        if c.shape != o.shape:
            raise ShapeError(f"vjp_fn: cotangent {i} has shape {tuple(c.shape)} but the output "
                             f"has shape {tuple(o.shape)}")
        if c._data.dtype != o._data.dtype:
            raise TypeError(f"vjp_fn: cotangent {i} has dtype {c.dtype.name} but the output has "
                            f"dtype {o.dtype.name}")
    return leaves


# ================================================================ forward mode
def _check_pair(primals, tangents, fname):
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"{fname}: primals and tangents must be tuples (one entry per "
                        f"argument), got {type(primals).__name__} and {type(tangents).__name__}")
    p_leaves, p_spec = _tensor_leaves(tuple(primals), fname, "primals")
    t_leaves, t_spec = _tensor_leaves(tuple(tangents), fname, "tangents")
    if p_spec != t_spec:
        raise ValueError(f"{fname}: tangents have structure {t_spec!r} but primals have "
                         f"{p_spec!r}")
    for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        fwd.check_tangent(p, t, fname, i)
    return p_leaves, p_spec, t_leaves


def jvp(func: Callable, primals, tangents, *, has_aux: bool = False):
    """Forward mode: ``(func(*primals), J @ tangents)`` in one pass (and ``aux`` with
    ``has_aux``). ``primals`` and ``tangents`` are tuples with one entry per argument;
    outputs that do not depend on the primals get zero tangents.

    Each primitive's jvp rule runs next to its forward, so the cost is a small multiple of
    one forward pass (no reverse pass, no double-vjp trick).

    Example:
        >>> import chainrule
        >>> from chainrule.func import jvp
        >>> jvp(lambda x: x.sin(), (chainrule.tensor(0.0),), (chainrule.tensor(2.0),))
        (tensor(0.), tensor(2.))
    """
    p_leaves, p_spec, t_leaves = _check_pair(primals, tangents, "jvp")
    level = fwd.push(fwd.JvpLevel())
    lid = level.id
    try:
        duals = [fwd.dual_at(p, t, level) for p, t in zip(p_leaves, t_leaves)]
        out = func(*tree_unflatten(p_spec, duals))
        out, aux = _split_aux(out, has_aux, "jvp")
        outs, out_spec = _tensor_leaves(out, "jvp", "the function's outputs")
        tans = []
        for o in outs:
            t = fwd.payload(o, lid)
            tans.append(t if t is not None else _zeros_like(o))
            fwd.strip(o, lid)
        if has_aux:
            for a in tree_leaves(aux):
                if isinstance(a, Tensor):
                    fwd.strip(a, lid)
    finally:
        fwd.pop(level)
    out_p = tree_unflatten(out_spec, outs)
    out_t = tree_unflatten(out_spec, tans)
    if has_aux:
        return out_p, out_t, aux
    return out_p, out_t


class _LinearizeLevel(fwd.JvpLevel):
    """A forward level that records the linear map instead of evaluating it: every
    primitive that touches the primals is put on a tape, replayed by ``jvp_fn``."""

    __slots__ = ("tape",)
    MARK = True

    def __init__(self):
        self.tape = []

    def process(self, prim, inputs, params, out, fws):
        if not prim.differentiable or out._data.dtype.kind not in "fV":
            return
        lid = self.id
        marked = tuple(fw is not None and lid in fw for fw in fws)
        if not any(marked):
            return
        self.tape.append((prim, inputs, params, out, marked))
        fwd.set_payload(out, lid, self.MARK)

    def replay(self, start: dict) -> dict:
        """Tangents (keyed by id of the value's array) for every taped value."""
        tans = dict(start)
        for prim, inputs, params, out, marked in self.tape:
            acc = None
            for i, (x, m) in enumerate(zip(inputs, marked)):
                if not m:
                    continue
                t = tans.get(id(x._data))
                if t is None:
                    continue
                if prim.variadic:
                    r = prim.jvp[0](F, t, *inputs, out, argnum=i, **params)
                else:
                    rule = prim.jvp[i]
                    if rule is None:
                        continue
                    r = rule(F, t, *inputs, out, **params)
                if r is not None:
                    acc = r if acc is None else acc + r
            if acc is None:
                continue
            if acc._data.shape != out._data.shape:
                acc = F.broadcast_to(acc, shape=out._data.shape)
            if acc._data.dtype != out._data.dtype:
                acc = F.cast(acc, dtype=out.dtype)
            tans[id(out._data)] = acc
        return tans


def linearize(func: Callable, *primals):
    """``(func(*primals), jvp_fn)``: the output, evaluated once, and its linearisation at
    ``primals``. ``jvp_fn(*tangents)`` returns ``J @ tangents`` by replaying only the
    tangent computations (the primal values are kept from the first evaluation, as JAX's
    ``linearize`` does), so it is cheaper than a fresh ``jvp`` per call.

    Example:
        >>> import chainrule
        >>> from chainrule.func import linearize
        >>> out, jvp_fn = linearize(lambda x: x.exp() * 2, chainrule.tensor([0.0, 1.0]))
        >>> jvp_fn(chainrule.tensor([1.0, 0.0]))
        tensor([2., 0.])
    """
    if not primals:
        raise ValueError("linearize: give at least one primal")
    p_leaves, p_spec = _tensor_leaves(tuple(primals), "linearize", "primals")
    level = fwd.push(_LinearizeLevel())
    lid = level.id
    try:
        duals = []
        for i, p in enumerate(p_leaves):
            if p._data.dtype.kind not in "fV":
                raise TypeError(f"linearize: primal {i} has dtype {p.dtype.name}; only "
                                "floating-point tensors can be linearised")
            d = fwd.alias(p, drop=lid)
            fwd.set_payload(d, lid, level.MARK)
            duals.append(d)
        out = func(*tree_unflatten(p_spec, duals))
        outs, out_spec = _tensor_leaves(out, "linearize", "the function's outputs")
        marks = [fwd.payload(o, lid) is not None for o in outs]
        for o in outs:
            fwd.strip(o, lid)
    finally:
        fwd.pop(level)
    keys = [id(d._data) for d in duals]

    def jvp_fn(*tangents):
        t_leaves, t_spec = _tensor_leaves(tuple(tangents), "linearize jvp_fn", "tangents")
        if t_spec != p_spec:
            raise ValueError(f"linearize jvp_fn: tangents have structure {t_spec!r} but the "
                             f"primals have {p_spec!r}")
        for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
            fwd.check_tangent(p, t, "linearize jvp_fn", i)
        tans = level.replay(dict(zip(keys, t_leaves)))
        res = []
        for o, m in zip(outs, marks):
            t = tans.get(id(o._data)) if m else None
            res.append(t if t is not None else _zeros_like(o))
        return tree_unflatten(out_spec, res)

    return tree_unflatten(out_spec, outs), jvp_fn


# ================================================================ vmap
def _axes_for(prefix, tree, what: str) -> list:
    """One axis (int or None) per leaf of ``tree``, from an axis spec that is a pytree
    prefix of ``tree`` (an int/None applies to a whole subtree)."""
    out: list = []

    def rec(p, t):
        if p is None or (isinstance(p, numbers.Integral) and not isinstance(p, bool)):
            out.extend([p] * len(tree_leaves(t)))
        elif isinstance(p, (tuple, list)):
            if not isinstance(t, (tuple, list)) or len(t) != len(p):
                raise ValueError(f"{what}: the spec {p!r} has {len(p)} entries but the value it "
                                 f"describes is {_desc(t)}")
            for pi, ti in zip(p, t):
                rec(pi, ti)
        elif isinstance(p, dict):
            if not isinstance(t, dict) or set(p) != set(t):
                raise ValueError(f"{what}: the spec has keys {sorted(p)} but the value it "
                                 f"describes is {_desc(t)}")
            for k in t:
                rec(p[k], t[k])
        else:
            raise TypeError(f"{what}: axes must be ints, None, or tuples/lists/dicts of them; "
                            f"got {p!r}")

    rec(prefix, tree)
    return out


def _desc(t) -> str:
    if isinstance(t, dict):
        return f"a dict with keys {sorted(t)}"
    if isinstance(t, (tuple, list)):
        return f"a {type(t).__name__} of length {len(t)}"
    return f"a {type(t).__name__}"


def _rng_state():
    from .. import random as _random  # noqa: PLC0415

    return _random.default_generator.np.bit_generator.state


def vmap(func: Callable, in_axes=0, out_axes=0, randomness: str = "error") -> Callable:
    """Vectorise ``func`` over an axis of its inputs: ``vmap(f)(xs)`` stacks ``f(x)`` over
    the slices ``x`` of ``xs``, in one call, with each primitive's batching rule (no Python
    loop over the batch).

    Args:
        func: the per-example function (positional args are mapped; keyword args are passed
            through unmapped).
        in_axes: an int, None (not mapped) or a pytree prefix of the positional args (a tuple
            with one entry per argument, dicts matching dict arguments, ...).
        out_axes: where the batch axis goes in each output (int, None for outputs that do not
            depend on mapped inputs, or a pytree prefix of the output).
        randomness: "error" (default) raises if ``func`` draws from the default random
            generator; "same" lets it draw once per call (the same numbers for every
            example).

    Example:
        >>> import chainrule
        >>> from chainrule.func import vmap
        >>> x = chainrule.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> w = chainrule.tensor([10.0, 100.0])
        >>> vmap(lambda r, w: (r * w).sum(), in_axes=(0, None))(x, w)
        tensor([210., 430.])
        >>> vmap(vmap(lambda a, b: a * b), in_axes=(0, None))(x, w)
        tensor([[ 10., 200.],
                [ 30., 400.]])
    """
    if randomness not in ("error", "same"):
        raise ValueError(f"vmap: randomness must be 'error' or 'same', got {randomness!r} "
                         "('different' is not supported: random ops run once per call)")
    if not callable(func):
        raise TypeError(f"vmap: func must be callable, got {type(func).__name__}")

    @functools.wraps(func)
    def wrapped(*args, **kwargs):
        leaves, spec = tree_flatten(args)
        axes = _axes_for(in_axes if isinstance(in_axes, (tuple, list)) else
                         (in_axes,) * len(args) if _is_axis(in_axes) else in_axes,
                         args, "vmap in_axes")
        size = None
        sizes = []
        norm = []
        for i, (x, ax) in enumerate(zip(leaves, axes)):
            if ax is None:
                norm.append(None)
                continue
            if not isinstance(x, Tensor):
                raise TypeError(f"vmap: input leaf {i} is a {type(x).__name__}, which cannot be "
                                f"mapped over (in_axes {ax}); give it in_axes None")
            nd = x._data.ndim
            if not -nd <= ax < nd:
                raise ValueError(f"vmap: in_axes {ax} is out of range for input leaf {i} of "
                                 f"shape {tuple(x.shape)}")
            ax %= nd
            norm.append(ax)
            sizes.append((i, x.shape[ax]))
            size = x.shape[ax] if size is None else size
        if size is None:
            raise ValueError("vmap: at least one input must be mapped (in_axes are all None)")
        if any(s != size for _, s in sizes):
            raise ValueError("vmap: mapped inputs have different sizes along their mapped axes: "
                             + ", ".join(f"leaf {i}: {s}" for i, s in sizes))
        if size == 0:
            raise ValueError("vmap: the mapped axis has size 0; there is no example to run")
        level = fwd.push(BatchLevel(size, "vmap"))
        lid = level.id
        state = _rng_state() if randomness == "error" else None
        try:
            new = []
            for x, ax in zip(leaves, norm):
                if ax is None:
                    new.append(x)
                    continue
                v = _wrap(x._data[(slice(None),) * ax + (0, Ellipsis)])
                fwd.set_payload(v, lid, (x, ax))
                new.append(v)
            out = func(*tree_unflatten(spec, new), **kwargs)
            if state is not None and _rng_state() != state:
                raise BatchingError(
                    "vmap: the function drew random numbers while randomness='error'; pass "
                    "randomness='same' to share one draw across the batch")
            out_leaves, out_spec = tree_flatten(out)
            oax = _axes_for(out_axes, out, "vmap out_axes") if not _is_axis(out_axes) \
                else [out_axes] * len(out_leaves)
            found = [fwd.payload(o, lid) if isinstance(o, Tensor) else None
                     for o in out_leaves]
        finally:
            fwd.pop(level)
        res = []
        for i, (o, p, ax) in enumerate(zip(out_leaves, found, oax)):
            if not isinstance(o, Tensor):
                if ax is not None:
                    raise TypeError(f"vmap: output leaf {i} is a {type(o).__name__}, not a "
                                    "Tensor; give it out_axes None to pass it through")
                res.append(o)
                continue
            if ax is None:
                if p is not None:
                    raise ValueError(f"vmap: output leaf {i} depends on the mapped inputs, so "
                                     "its out_axes cannot be None")
                res.append(o)
                continue
            nd = o._data.ndim + 1
            if not -nd <= ax < nd:
                raise ValueError(f"vmap: out_axes {ax} is out of range for output leaf {i} "
                                 f"(per-example shape {tuple(o.shape)})")
            ax %= nd
            if p is None:
                shape = o._data.shape
                b = F.broadcast_to(F.reshape(o, shape=shape[:ax] + (1,) + shape[ax:]),
                                   shape=shape[:ax] + (size,) + shape[ax:])
                res.append(F.copy(b))
            else:
                value, bdim = p
                res.append(moveaxis(value, bdim, ax))
        return tree_unflatten(out_spec, res)

    return wrapped


def _is_axis(a) -> bool:
    return a is None or (isinstance(a, numbers.Integral) and not isinstance(a, bool))


# ================================================================ Jacobians and Hessians
def _jac_structure(out_leaves, out_spec, in_specs, blocks, is_tuple):
    """Assemble ``blocks[o][j]`` (output leaf o, flat input leaf j) into the nested result:
    output structure, then per output leaf the input structure (a tuple over argnums)."""
    per_out = []
    for o in range(len(out_leaves)):
        groups = []
        k = 0
        for spec in in_specs:
            groups.append(tree_unflatten(spec, blocks[o][k:k + spec.num_leaves]))
            k += spec.num_leaves
        per_out.append(tuple(groups) if is_tuple else groups[0])
    return tree_unflatten(out_spec, per_out)


def jacrev(func: Callable, argnums=0, *, has_aux: bool = False) -> Callable:
    """The Jacobian by reverse mode: one batched backward pass (``vmap`` of ``vjp``) over the
    rows of the identity. ``jacrev(f)(x)[...]`` has shape ``out.shape + x.shape``; with pytree
    inputs/outputs the result nests as output structure, then input structure.

    Example:
        >>> import chainrule
        >>> from chainrule.func import jacrev
        >>> jacrev(lambda x: x ** 2)(chainrule.tensor([1.0, 3.0]))
        tensor([[2., 0.],
                [0., 6.]])
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        tr = _run_reverse(func, args, kwargs, argnums, has_aux, "jacrev")
        outs, out_spec = _tensor_leaves(tr.out, "jacrev", "the function's outputs")
        for i, o in enumerate(outs):
            if o._data.dtype.kind not in "fV":
                raise TypeError(f"jacrev: output {i} has dtype {o.dtype.name}; only floating "
                                "point outputs have a Jacobian")
        flat_in = [x for leaves in tr.leaves for x in leaves]
        sizes = [o._data.size for o in outs]
        total = sum(sizes)
        nested = tr.nested
        if total == 0:
            blocks = [[_wrap(np.zeros(o.shape + x.shape, dtype=x._data.dtype)) for x in flat_in]
                      for o in outs]
        else:
            # rows of the identity, one cotangent per output leaf, batched along axis 0
            basis = []
            off = 0
            for o, n in zip(outs, sizes):
                xp_eye = np.eye(total, n, k=-off, dtype=o._data.dtype)
                basis.append(_wrap(_to_like(xp_eye, o).reshape((total,) + o.shape)))
                off += n

            def rows(*cots):
                nested_call = nested or _REVERSE[0] > 0
                gs = _backward(tr, outs, list(cots), True, retain=True)
                return tuple(_finish(gs, nested_call))

            grads = vmap(rows)(*basis)  # per input leaf: (total, *in_shape)
            blocks = []
            off = 0
            for o, n in zip(outs, sizes):
                row = []
                for g, x in zip(grads, flat_in):
                    part = F.getitem(g, index=(slice(off, off + n),))
                    row.append(F.reshape(part, shape=o.shape + x.shape))
                blocks.append(row)
                off += n
        jac = _jac_structure(outs, out_spec, tr.specs, blocks, tr.is_tuple)
        jac = _finish(jac, nested)
        if has_aux:
            return jac, _finish(tr.aux, nested)
        return jac

    return wrapper


def _to_like(host: np.ndarray, like: Tensor):
    from ..backend import device_of, to_device  # noqa: PLC0415

    return to_device(host, device_of(like._data))


def jacfwd(func: Callable, argnums=0, *, has_aux: bool = False,
           randomness: str = "error") -> Callable:
    """The Jacobian by forward mode: one batched jvp (``vmap`` of ``jvp``) over the columns
    of the identity. Same result layout as :func:`jacrev`; cheaper when inputs are small.

    Example:
        >>> import chainrule
        >>> from chainrule.func import jacfwd
        >>> jacfwd(lambda x: x.sum() * x)(chainrule.tensor([1.0, 2.0]))
        tensor([[4., 1.],
                [2., 5.]])
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        nums, is_tuple = _argnums(argnums, len(args), "jacfwd")
        specs = []
        flat_in = []
        for i in nums:
            leaves, spec = _float_leaves(args[i], "jacfwd", f"argument {i}")
            flat_in.extend(leaves)
            specs.append(spec)
        sizes = [x._data.size for x in flat_in]
        total = sum(sizes)

        def f_flat(*xs):
            a = list(args)
            k = 0
            for i, spec in zip(nums, specs):
                a[i] = tree_unflatten(spec, xs[k:k + spec.num_leaves])
                k += spec.num_leaves
            return func(*a, **kwargs)

        if total == 0:
            out = f_flat(*flat_in)
            out, aux = _split_aux(out, has_aux, "jacfwd")
            outs, out_spec = _tensor_leaves(out, "jacfwd", "the function's outputs")
            blocks = [[_wrap(np.zeros(o.shape + x.shape, dtype=o._data.dtype))
                       for x in flat_in] for o in outs]
        else:
            basis = []
            off = 0
            for x, n in zip(flat_in, sizes):
                eye = np.eye(total, n, k=-off, dtype=x._data.dtype)
                basis.append(_wrap(_to_like(eye, x).reshape((total,) + x.shape)))
                off += n

            def push(*tans):
                r = jvp(f_flat, tuple(flat_in), tans, has_aux=has_aux)
                return (r[1], r[2]) if has_aux else (r[1], None)

            tan_out, aux = vmap(push, out_axes=(0, None), randomness=randomness)(*basis)
            outs, out_spec = _tensor_leaves(tan_out, "jacfwd", "the function's outputs")
            blocks = []
            for t in outs:  # (total, *out_shape) per output leaf
                oshape = t._data.shape[1:]
                row = []
                off = 0
                for x, n in zip(flat_in, sizes):
                    part = F.getitem(t, index=(slice(off, off + n),))
                    part = moveaxis(part, 0, part._data.ndim - 1)
                    row.append(F.reshape(part, shape=oshape + x.shape))
                    off += n
                blocks.append(row)
        jac = _jac_structure(outs, out_spec, specs, blocks, is_tuple)
        if has_aux:
            return jac, aux
        return jac

    return wrapper


def hessian(func: Callable, argnums=0) -> Callable:
    """The Hessian of a scalar function, ``jacfwd(jacrev(func))`` (forward-over-reverse).

    Example:
        >>> import chainrule
        >>> from chainrule.func import hessian
        >>> hessian(lambda x: (x ** 3).sum())(chainrule.tensor([1.0, 2.0]))
        tensor([[ 6.,  0.],
                [ 0., 12.]])
    """
    return jacfwd(jacrev(func, argnums), argnums)


def hvp(func: Callable, primals, tangents):
    """Hessian-vector product of a scalar function, forward-over-reverse:
    ``jvp(grad(func, argnums=all), primals, tangents)``. Returns a tuple with one entry per
    primal (``H @ v`` for that block row). Costs about one gradient plus its tangent pass;
    the Hessian is never formed.

    Example:
        >>> import chainrule
        >>> from chainrule.func import hvp
        >>> x = chainrule.tensor([1.0, 2.0])
        >>> hvp(lambda x: (x ** 3).sum(), (x,), (chainrule.tensor([1.0, 1.0]),))
        (tensor([ 6., 12.]),)
    """
    if not isinstance(primals, (tuple, list)) or not primals:
        raise TypeError("hvp: primals must be a non-empty tuple (one entry per argument)")
    g = grad(func, argnums=tuple(range(len(primals))))
    return jvp(g, tuple(primals), tuple(tangents))[1]
