"""Custom differentiation rules: :class:`Function` (PyTorch's ``torch.autograd.Function``).

A subclass gives ``forward(ctx, *args)``, ``backward(ctx, *grad_outputs)`` and optionally
``jvp(ctx, *tangents)`` as static methods and is called through ``Cls.apply(*args)``.

How it joins the engine: each call records one graph node whose primitive is a small
per-call object (:class:`_FunctionPrim`) with the attributes the engine reads (``vjp_all``,
``save_in``, ...). Its one vjp rule for all inputs calls the user's ``backward`` once per
backward pass and returns one cotangent per input. Under ``create_graph=True`` the backward
runs as recorded ops, so a differentiable ``backward`` gives grad-of-grad. A call with several
differentiable outputs records a ``multiple_results`` node: the outputs are the forward's own
tensors, and the rule gets the cotangents of all of them at once (None, or zeros with
``materialize_grads``, for those no gradient reached).

Forward mode: while jvp levels are open, ``forward`` runs with them suspended and each
output's tangent comes from the user's ``jvp``. Under vmap, ``forward``/``backward``/``jvp``
run on the batched values like any other code, so they must be written with chainrule ops.

Example:
    >>> import chainrule
    >>> from chainrule.autograd.function import Function
    >>> class Cube(Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * x ** 2
    >>> x = chainrule.tensor(2.0, requires_grad=True)
    >>> Cube.apply(x).backward(); x.grad
    tensor(12.)
"""


from __future__ import annotations

from collections.abc import Callable, Sequence

from ..backend import get_array_module
from ..errors import GraphError, ShapeError
from . import forward as fwd
from . import graph as _graph
from .grad_mode import STATE
from .graph import FORWARD

__all__ = ["Function", "FunctionCtx", "once_differentiable"]


class FunctionCtx:
    """The ``ctx`` object of a custom Function: what ``forward`` leaves for ``backward``.

    Example:
        >>> from chainrule.autograd.function import FunctionCtx
        >>> ctx = FunctionCtx(); ctx.save_for_backward(None); ctx.saved_tensors
        (None,)
    """

    def __init__(self):
        self._saved: tuple = ()
        self._saved_fwd: tuple | None = None
        self._versions: list = []
        self._in_jvp = False
        self._released = False
        self._non_diff: set = set()
        self.materialize_grads = True
        self.needs_input_grad: tuple = ()
        self._name = "Function"

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors (or None) for ``backward``; they are checked for in-place changes.

        Example:
            >>> import chainrule
            >>> from chainrule.autograd.function import FunctionCtx
            >>> ctx = FunctionCtx(); ctx.save_for_backward(chainrule.ones(1))
        """
        tensor_cls = _graph.Tensor
        for i, t in enumerate(tensors):
            if t is not None and not isinstance(t, tensor_cls):
                raise TypeError(f"save_for_backward: argument {i} is a {type(t).__name__}; only "
                                "tensors and None can be saved (store other objects as ctx "
                                "attributes)")
        self._saved = tensors
        self._versions = []
        for t in tensors:
            if t is None:
                self._versions.append(None)
            else:
                vc = t._vc if t._vc is not None else _new_vc(t)
                self._versions.append((vc, vc[0]))

    def save_for_forward(self, *tensors) -> None:
        """Keep tensors for ``jvp`` (read there as ``ctx.saved_tensors``).

        Example:
            >>> import chainrule
            >>> from chainrule.autograd.function import FunctionCtx
            >>> ctx = FunctionCtx(); ctx.save_for_forward(chainrule.ones(1))
        """
        self._saved_fwd = tensors

    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to ``save_for_backward`` (``save_for_forward`` inside jvp)."""
        if self._in_jvp and self._saved_fwd is not None:
            return tuple(self._saved_fwd)
        for i, (t, v) in enumerate(zip(self._saved, self._versions)):
            if v is not None and v[0][0] != v[1]:
                raise GraphError(
                    f"one of the tensors saved by {self._name} (saved tensor {i}, shape "
                    f"{tuple(t.shape)}) was modified by an in-place operation: it was at "
                    f"version {v[1]} when saved and is now at version {v[0][0]}")
        return tuple(self._saved)

    def mark_non_differentiable(self, *outputs) -> None:
        """Outputs that never get gradients (returned as tensors that do not require grad).

        Example:
            >>> import chainrule
            >>> from chainrule.autograd.function import FunctionCtx
            >>> ctx = FunctionCtx(); ctx.mark_non_differentiable(chainrule.ones(1))
        """
        self._non_diff.update(id(o) for o in outputs)

    def set_materialize_grads(self, value: bool) -> None:
        """With False, ``backward`` gets None (not zeros) for outputs without gradient.

        Example:
            >>> from chainrule.autograd.function import FunctionCtx
            >>> ctx = FunctionCtx(); ctx.set_materialize_grads(False)
        """
        self.materialize_grads = bool(value)


def _new_vc(t):
    t._vc = [0]
    return t._vc


class _FunctionPrim:
    """The primitive-like record behind one Function call (what engine nodes read)."""

    __slots__ = (
        "backward",
        "ctx",
        "differentiable",
        "impl",
        "index_from",
        "jvp",
        "jvp_all",
        "multi",
        "name",
        "nin",
        "node_name",
        "outputs",
        "outs",
        "save_in",
        "save_out",
        "variadic",
        "view",
        "vjp",
        "vjp_all",
    )

    def __init__(self, name, backward, ctx, nin, outs, multi):
        self.name = name
        self.node_name = name + "Backward"
        self.vjp = ()
        self.vjp_all = self._rule
        self.jvp = (None,)
        self.jvp_all = None
        self.multi = multi
        self.outputs = []
        self.save_in = False
        self.save_out = False
        self.differentiable = True
        self.variadic = False
        self.index_from = None
        self.view = False
        self.impl = None
        self.backward = backward
        self.ctx = ctx
        self.nin = nin
        self.outs = outs  # per output: (shape, np dtype, k) with k its node output, or None

    def __repr__(self):
        return f"<custom function {self.name}>"

    def _rule(self, F, g, *args, needs, **params):
        """The node's one vjp rule: the user's backward, run once per backward pass."""
        return self._run(F, g, args[:-1])

    def _run(self, F, g, ins):
        gs = g if self.multi else [g]  # several outputs: one cotangent each, or None
        some = next(x for x in gs if x is not None)
        raw = not isinstance(some, _graph.Tensor)
        wrap = _graph._wrap
        grads_out = []
        for m in self.outs:
            if m is None:  # not a tensor output
                grads_out.append(None)
                continue
            shape, dt, k = m
            gi = None if k is None else gs[k]
            if gi is None:  # not differentiable, or no gradient reached it
                grads_out.append(_zeros(some, shape, dt, False) if self.ctx.materialize_grads
                                 else None)
                continue
            grads_out.append(wrap(gi) if raw else gi)
        res = self.backward(self.ctx, *grads_out)
        if not isinstance(res, tuple):
            res = (res,)
        if len(res) != self.nin:
            raise GraphError(f"{self.name}.backward returned {len(res)} gradient(s), but "
                             f"forward took {self.nin} input(s): return one per input (None "
                             "for inputs that need none)")
        out = []
        for i, r in enumerate(res):
            if r is None:
                out.append(None)
                continue
            if not isinstance(r, _graph.Tensor):
                raise TypeError(f"{self.name}.backward returned a {type(r).__name__} for input "
                                f"{i}; gradients must be Tensors or None")
            _check_grad_shape(self.name, i, r, ins[i])
            out.append(r._data if raw else r)
        return out


def _zeros(like, shape, dt, raw):
    data = like._data if isinstance(like, _graph.Tensor) else like
    z = get_array_module(data).zeros(shape, dtype=dt)
    return z if raw else _graph._wrap(z)


def _check_grad_shape(name, i, g, x):
    """A gradient must have its input's shape, or one that sums back to it."""
    if not hasattr(x, "shape"):
        return
    gs, xs = tuple(g.shape), tuple(x.shape)
    if gs == xs:
        return
    lead = len(gs) - len(xs)
    if lead < 0 or any(n != 1 and gs[lead + j] != n for j, n in enumerate(xs)):
        raise ShapeError(f"{name}.backward returned a gradient of shape {gs} for input {i} of "
                         f"shape {xs}")


def run_custom(name: str, args: Sequence, forward: Callable, backward: Callable,
               jvp: Callable | None, setup: Callable | None = None,
               record_forward: bool = False):
    """Run one custom-rule call (the engine of :meth:`Function.apply` and ``custom_vjp``).

    ``forward(ctx)`` computes the outputs (with jvp levels suspended, and with grad recording
    off unless ``record_forward``: then what it leaves on ``ctx`` stays differentiable, as
    JAX's custom_vjp residuals are; the outputs themselves are always cut from that graph);
    ``backward(ctx, *grads)`` returns one gradient per arg; ``jvp(ctx, *tangents)`` (or None)
    returns the output tangents.
    """
    tensor_cls = _graph.Tensor
    ctx = FunctionCtx()
    ctx._name = name
    grad_on = STATE.enabled
    ctx.needs_input_grad = tuple(isinstance(a, tensor_cls) and a._rg and grad_on for a in args)
    levels = fwd.STACK[:FORWARD.levels]
    jvp_levels = [(k, lv) for k, lv in enumerate(levels) if lv.kind == fwd.JVP]
    if jvp_levels and any(lv.kind == fwd.BATCH and k > jvp_levels[0][0]
                          for k, lv in enumerate(levels)):
        raise RuntimeError(f"{name}: a custom Function cannot run under vmap inside jvp/jacfwd "
                           "(forward mode outside the vmap); put the vmap outside instead")
    batch = [(k, lv) for k, lv in enumerate(levels) if lv.kind == fwd.BATCH]
    if batch and grad_on:
        _check_batched_grad(name, args, *batch[-1])
    tan_levels = []
    for k, lv in jvp_levels:
        if any(isinstance(a, tensor_cls) and fwd.payload(a, lv.id) is not None for a in args):
            tan_levels.append((k, lv))
    STATE.enabled = grad_on and record_forward
    try:
        if jvp_levels:
            with fwd.suspend_jvp():
                out = forward(ctx)
        else:
            out = forward(ctx)
        if setup is not None:
            setup(ctx, out)
    finally:
        STATE.enabled = grad_on
    is_tuple = isinstance(out, tuple)
    outs = list(out) if is_tuple else [out]
    ids = {id(a) for a in args if isinstance(a, tensor_cls)}
    diff_outs = []
    for i, o in enumerate(outs):
        if not isinstance(o, tensor_cls):
            continue
        non_diff = id(o) in ctx._non_diff
        if id(o) in ids or o._node is not None or o._rg:
            o = outs[i] = _fresh(o)
        if not non_diff and o._data.dtype.kind in "fV":
            diff_outs.append(i)
    record = grad_on and any(ctx.needs_input_grad) and diff_outs
    if record:
        _attach(name, args, outs, diff_outs, backward, ctx)
    for k, lv in tan_levels:
        if jvp is None:
            raise RuntimeError(f"{name}: forward-mode AD (jvp) needs a jvp rule: define "
                               "`jvp(ctx, *tangents)` on the Function")
        _tangents(name, k, lv, args, outs, diff_outs, jvp, ctx)
    return tuple(outs) if is_tuple else outs[0]


def _check_batched_grad(name, args, k, lv):
    """Under vmap, the custom node is recorded on the per-example values, which is what
    ``vmap(grad(f))`` differentiates. Reverse mode from outside the vmap (``grad(vmap(f))``,
    or ``backward()`` of a vmap's result) would need it on the batched values: refuse."""
    tensor_cls = _graph.Tensor
    if any(d > k for d in fwd.REVERSE_DEPTHS):
        return  # a reverse transform runs inside this vmap: it uses the per-example node
    for a in args:
        if isinstance(a, tensor_cls):
            p = fwd.payload(a, lv.id)
            if (p[0] if p is not None else a)._rg:
                raise RuntimeError(
                    f"{name}: a custom Function under vmap can be differentiated inside the "
                    "vmap (vmap(grad(f))) but not from outside it (grad(vmap(f)), or "
                    "backward() of the vmap's result): one of its inputs requires grad "
                    "outside the vmap")


def _fresh(o):
    """A new tensor with ``o``'s value and its batch payloads (not its tangents)."""
    t = _graph._wrap(o._data)
    vc = o._vc
    if vc is None:
        vc = o._vc = [0]
    t._vc = vc
    fw = fwd.fw_of(o)
    if fw:
        keep = {k: v for k, v in fw.items() if k in fwd._BATCH_IDS}
        if keep:
            t._fw = keep
    return t


def _attach(name, args, outs, diff_outs, backward, ctx):
    tensor_cls = _graph.Tensor
    arrs = [a._data if isinstance(a, tensor_cls) else a for a in args]
    multi = len(diff_outs) > 1
    meta = []
    for i, o in enumerate(outs):
        if not isinstance(o, tensor_cls):
            meta.append(None)
            continue
        meta.append((o._data.shape, o._data.dtype,
                     diff_outs.index(i) if i in diff_outs else None))
    prim = _FunctionPrim(name, backward, ctx, len(args), meta, multi)
    diff = tuple(outs[i] for i in diff_outs)
    if multi:  # one node, one output node per differentiable output
        _graph._record(prim, tuple(args), arrs, {}, diff, tuple(o._data for o in diff))
    else:
        _graph._record(prim, tuple(args), arrs, {}, diff[0], diff[0]._data)
    for o in diff:
        _reregister(o)


def _reregister(t):
    """Re-file ``t``'s batch payloads (its node changed, so the engine finds them)."""
    fw = t._fw
    if fw:
        for k, p in fw.items():
            fwd.set_payload(t, k, p)


def _tangents(name, k, lv, args, outs, diff_outs, jvp, ctx):
    tensor_cls = _graph.Tensor
    if hasattr(lv, "tape"):
        raise RuntimeError(f"{name}: custom Functions cannot be linearized; use jvp")
    tans = []
    for a in args:
        if not isinstance(a, tensor_cls):
            tans.append(None)
            continue
        t = fwd.payload(a, lv.id)
        if t is None and ctx.materialize_grads and a._data.dtype.kind in "fV":
            t = _zeros(a, a._data.shape, a._data.dtype, raw=False)
        tans.append(t)
    n_vis = FORWARD.levels
    FORWARD.levels = k
    ctx._in_jvp = True
    try:
        res = jvp(ctx, *tans)
    finally:
        ctx._in_jvp = False
        FORWARD.levels = n_vis
    if not isinstance(res, tuple):
        res = (res,)
    tensor_outs = [i for i, o in enumerate(outs) if isinstance(o, tensor_cls)]
    if len(res) != len(tensor_outs):
        raise RuntimeError(f"{name}.jvp returned {len(res)} tangent(s) for {len(tensor_outs)} "
                           "output(s)")
    for i, r in zip(tensor_outs, res):
        if r is None or i not in diff_outs:
            continue
        o = outs[i]
        if not isinstance(r, tensor_cls) or r.shape != o.shape:
            raise ShapeError(f"{name}.jvp: the tangent of output {i} must be a Tensor of shape "
                             f"{tuple(o.shape)}, got {getattr(r, 'shape', type(r).__name__)}")
        fwd.set_payload(o, lv.id, r)


class Function:
    """Base class of custom differentiable operations (PyTorch's interface).

    Subclasses define static methods ``forward(ctx, *args)`` and ``backward(ctx, *grads)``
    (one gradient per forward argument, None where not needed) and, for forward mode,
    ``jvp(ctx, *tangents)``. PyTorch's split style is accepted too: ``forward(*args)`` plus
    ``setup_context(ctx, inputs, output)``. Call with ``Cls.apply(*args)``.

    ``ctx`` offers ``save_for_backward``, ``saved_tensors``, ``needs_input_grad``,
    ``mark_non_differentiable``, ``set_materialize_grads`` and ``save_for_forward``.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.function import Function
        >>> class Scale(Function):
        ...     @staticmethod
        ...     def forward(ctx, x, k):
        ...         ctx.k = k
        ...         return x * k
        ...     @staticmethod
        ...     def backward(ctx, g):
        ...         return g * ctx.k, None
        ...     @staticmethod
        ...     def jvp(ctx, tx, tk):
        ...         return tx * ctx.k
        >>> x = chainrule.ones(2, requires_grad=True)
        >>> Scale.apply(x, 3.0).sum().backward(); x.grad
        tensor([3., 3.])
    """

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run ``forward`` and record the custom backward (see the class docstring)."""
        fwd_fn = cls.__dict__.get("forward") or _inherited(cls, "forward")
        bwd_fn = _inherited(cls, "backward")
        if fwd_fn is None:
            raise TypeError(f"{cls.__name__} must define a static method forward")
        if bwd_fn is None:
            raise TypeError(f"{cls.__name__} must define a static method backward")
        setup_fn = _inherited(cls, "setup_context")
        jvp_fn = _inherited(cls, "jvp")
        forward = cls.forward
        backward = cls.backward
        jvp = cls.jvp if jvp_fn is not None else None
        if setup_fn is not None:
            setup = cls.setup_context

            def run(ctx):
                return forward(*args, **kwargs)

            def after(ctx, out):
                setup(ctx, args, out)

            return run_custom(cls.__name__, args, run, backward, jvp, after)

        def run(ctx):
            return forward(ctx, *args, **kwargs)

        return run_custom(cls.__name__, args, run, backward, jvp)


def _inherited(cls, name):
    for klass in cls.__mro__:
        if klass is Function:
            return None
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def once_differentiable(fn: Callable) -> Callable:
    """Decorator for a ``backward`` that is not itself differentiable: it runs without
    recording, and grad-of-grad through it raises instead of being silently wrong.

    Example:
        >>> from chainrule.autograd.function import once_differentiable
        >>> callable(once_differentiable(lambda ctx, g: g))
        True
    """
    import functools  # noqa: PLC0415

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        tensor_cls = _graph.Tensor
        if STATE.enabled and any(isinstance(g, tensor_cls) and g._rg for g in grads):
            raise GraphError(f"{getattr(ctx, '_name', 'Function')}.backward is decorated with "
                             "once_differentiable: it cannot be differentiated again")
        prev = STATE.enabled
        STATE.enabled = False
        try:
            return fn(ctx, *grads)
        finally:
            STATE.enabled = prev

    return wrapper
