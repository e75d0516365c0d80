"""The Primitive record and the two namespaces that derivative rules are written in.

A primitive is one block: its forward ``impl(xp, *arrays, **params)``, then one vjp rule and
one jvp rule per input. Rules receive a namespace ``F`` first and are written only with
operators (``+ - * / ** -x``, comparisons) and ``F.<primitive>(...)`` calls, for example::

    tanh = Primitive("tanh", lambda xp, x: xp.tanh(x), save="out", kind="elementwise",
                     vjp=[lambda F, g, x, out: g * (1 - out * out)],
                     jvp=[lambda F, t, x, out: t * (1 - out * out)])

``F`` is either :data:`RAW` (rules run straight on NumPy/CuPy arrays: the fast path of a
first-order backward) or :data:`TENSOR` (rules run as recorded chainrule ops, so a backward
with ``create_graph=True`` is itself differentiable). Both namespaces are generated from the
same table, so the one rule text serves both and the tests check both.

Design note (a measured departure from DESIGN.md section 2, which asks for rules in chainrule
ops): running first-order rules on raw arrays removes a Tensor and node allocation per rule
op, which dominates a chain of tiny ops (the figure is in BENCHMARKS.md, "Measurements
behind the code"). Grad-of-grad still runs the very same rule text on tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REGISTRY: dict[str, Primitive] = {}

KINDS = {
    "elementwise": "every output element from the same-index elements of the (broadcast) inputs",
    "reduction": "reduces ``axes`` (params axes, keepdims): sum, amax, prod",
    "index_reduction": "the index of an extremum along ``axis`` (params axis, keepdims)",
    "along_axis": "maps along one ``axis`` (param axis): cumsum, softmax",
    "window": "sliding windows over the trailing axes, samples axis first: pooling",
    "movement": "moves, selects or pads elements: reshape, permute, getitem, pad",
    "linalg": "contractions: matmul, einsum, linear",
    "fused": "a fused kernel with its own rules: convolution, attention, scans, layer_norm",
    "update": "writes new values into some inputs in place (inplace=): optimiser steps",
    "random": "draws numbers from a generator state given as an input, returning the numbers "
              "and the advanced state (multiple_results): rng_draw",
}
"""The kinds a primitive is marked with; transforms derive rules from them (vmap batches every
``elementwise`` primitive the same way, for example)."""
_APPLY: list = [None]  # autograd.graph.apply, set when that module loads (import cycle)
TRACE_HOOK: list = [None]
"""``[hook]`` while chainrule.jit records a trace: ``hook(prim, arrays, params, asarray)`` runs
the primitive in place of its impl (apply and the RAW namespace call it; None otherwise)."""


class Aval:
    """An abstract value: the shape and dtype (a NumPy dtype) of an array, without its data.
    Shape rules map input Avals to output Avals; a node keeps one for each input it did not
    save, since rules may still read its shape.

    Example:
        >>> Aval((2, 3), None).ndim
        2
    """

    __slots__ = ("dtype", "ndim", "shape")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)

    def __repr__(self):
        return f"Aval(shape={self.shape}, dtype={self.dtype})"


class Primitive:
    """One primitive: forward impl, per-input vjp and jvp rules, and what to save.

    Args:
        name: unique name, also the node name in graphs (``MulBackward``).
        impl: ``impl(xp, *arrays, **params) -> array``; pure, numpy and cupy alike.
        vjp: one rule per input ``rule(F, g, *inputs, out, **params) -> cotangent`` (None for a
            non-differentiable input). Cotangents may have the broadcast shape: the engine
            sums them back to the input's shape (undoing broadcasting in one place). Or one
            rule for all inputs, ``rule(F, g, *inputs, out, needs, **params) -> cotangents``
            (one per input, None where ``needs[i]`` is False), called once per node: for
            primitives whose input cotangents come out of one computation (the recurrent
            scans' backward recurrence).
        jvp: one rule per input ``rule(F, t, *inputs, out, **params) -> tangent of out``,
            linear in ``t``. Or one rule for all inputs, ``rule(F, tangents, *inputs, out,
            **params) -> tangent of out`` (``tangents[i]`` None where input ``i`` carries
            none): for primitives whose tangent comes out of one computation (the scans).
        multiple_results: the impl returns a tuple of arrays (JAX's ``multiple_results``):
            ``apply`` gives a tuple of tensors, the shape rule a tuple of Avals, ``out`` in
            the rules is the tuple of outputs, the one vjp rule gets ``gs`` (one cotangent
            per output, None for an output that no gradient reached) in place of ``g``, and
            the jvp rules return one tangent per output (None for a zero tangent).
        vjp_raw: rules that replace ``vjp`` in a backward on raw arrays (``F is RAW``: a
            first-order backward, which need not be differentiable again), in the same form
            (per input, None keeping the ``vjp`` rule of that input; or one callable when
            ``vjp`` is one). They call fast-path kernels (``fast.K``) and fall back to the
            ``vjp`` rules, the general ones, where a kernel declines.
        kind: one of :data:`KINDS` (``"elementwise"``, ``"reduction"`` ...); the transforms
            derive rules from it (chainrule.func.batching).
        shape: the shape rule (abstract evaluation), ``rule(*avals, **params) -> Aval``:
            the output's shape and dtype from the inputs' (:class:`Aval` for arrays, Python
            scalars and None as they are), without computing; it raises ShapeError for inputs
            that do not fit. Elementwise primitives default to broadcasting with the dtype
            of NumPy's ufunc of the primitive's name (``shapes.elementwise``).
        save: which values the rules read: "" (none), "in", "out" or "in,out".
        differentiable: False for comparisons, argmax and the like (outputs never need grad).
        view: the output may share memory with the first input (shares its version counter).
        inplace: the indices of the inputs that the impl writes in place (an effect that a
            trace must keep; only ``kind="update"`` primitives have any).
        variadic: any number of inputs; the single vjp/jvp rule gets ``argnum=i``.
        reads: with save "in", for each input the indices of the inputs its vjp rule reads
            (default: all). Only inputs that some needed rule reads are saved, so
            ``x * 2.0`` keeps no reference to x and may be changed in place afterwards.
        index_from: the inputs from this position on are index arrays (any number, integer,
            not differentiable: the variadic rules return None for them), kept as they are
            (version-checked) for the rules with save "" (getitem's index arrays; the
            indexed value itself is not kept).

    Example:
        >>> from chainrule.primitives import REGISTRY
        >>> REGISTRY["mul"].name
        'mul'
    """

    __slots__ = (
        "differentiable",
        "impl",
        "index_from",
        "inplace",
        "jvp",
        "jvp_all",
        "kind",
        "multi",
        "name",
        "node_name",
        "outputs",
        "reads",
        "save_in",
        "save_out",
        "shape",
        "variadic",
        "view",
        "vjp",
        "vjp_all",
        "vjp_raw",
    )

    def __init__(self, name: str, impl: Callable, vjp: Sequence[Callable | None] = (),
                 jvp: Sequence[Callable | None] = (), save: str = "", *, kind: str,
                 shape: Callable | None = None, differentiable: bool = True,
                 view: bool = False, variadic: bool = False, reads=None,
                 inplace: tuple = (), vjp_raw=None, multiple_results: bool = False,
                 index_from: int | None = None):
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} defined twice")
        if kind not in KINDS:
            raise ValueError(f"primitive {name!r}: kind {kind!r} is not one of {sorted(KINDS)}")
        self.kind = kind
        if bool(inplace) != (kind == "update"):
            raise ValueError(f"primitive {name!r}: inplace= goes with kind='update' only")
        self.inplace = tuple(inplace)
        if shape is None and kind == "elementwise":
            from .shapes import elementwise  # noqa: PLC0415 - shapes imports this module

            shape = elementwise(name)
        if shape is None:
            raise ValueError(f"primitive {name!r}: a shape rule (shape=) is required")
        self.shape = shape
        self.name = name
        self.impl = impl
        # a callable: one rule for all inputs (``vjp_all``); a sequence: one rule per input
        self.vjp_all = vjp if callable(vjp) else None
        self.vjp = () if callable(vjp) else tuple(vjp)
        self.vjp_raw = vjp_raw
        if vjp_raw is not None:  # the engine reads vjp/vjp_all: each picks by namespace
            if callable(vjp) != callable(vjp_raw):
                raise ValueError(f"primitive {name!r}: vjp_raw= must have the form of vjp=")
            if callable(vjp):
                self.vjp_all = _by_namespace(vjp_raw, vjp)
            else:
                self.vjp = tuple(g if r is None else _by_namespace(r, g)
                                 for r, g in zip(vjp_raw, self.vjp, strict=True))
        self.jvp_all = jvp if callable(jvp) else None
        self.jvp = () if callable(jvp) else tuple(jvp)
        self.multi = bool(multiple_results)
        if self.multi and ((vjp and self.vjp_all is None) or view or variadic or inplace):
            raise ValueError(f"primitive {name!r}: multiple_results takes one vjp rule for all "
                             "inputs (vjp=rule) and no view/variadic/inplace")
        self.outputs: list = []  # the per-output records of graph nodes (multiple_results)
        parts = {p.strip() for p in save.split(",") if p.strip()}
        if not parts <= {"in", "out"}:
            raise ValueError(f"bad save spec {save!r}")
        self.save_in = "in" in parts
        self.save_out = "out" in parts
        self.differentiable = differentiable
        self.view = view
        self.node_name = "".join(w.capitalize() for w in name.split("_")) + "Backward"
        self.variadic = variadic
        self.reads = reads
        if index_from is not None and (save or not variadic):
            raise ValueError(f"primitive {name!r}: index_from= goes with variadic=True and "
                             "save=''")
        self.index_from = index_from
        REGISTRY[name] = self

    def __repr__(self):
        return f"<primitive {self.name}>"

    def abstract_eval(self, *args, **params) -> Aval | tuple:
        """The output's shape and dtype (a tuple of them with ``multiple_results``) for
        inputs given as arrays, tensors or Avals (Python scalars and None as they are),
        from the shape rule alone: nothing is computed.

        Example:
            >>> from chainrule.primitives import REGISTRY, Aval
            >>> REGISTRY["matmul"].abstract_eval(Aval((5, 2, 3), "float32"),
            ...                                  Aval((3, 4), "float64"))
            Aval(shape=(5, 2, 4), dtype=float64)
        """
        return self.shape(*[aval(a) for a in args], **params)

    def __call__(self, *inputs, **params):
        """Apply to Tensors (recorded for autograd when needed)."""
        return _APPLY[0](self, inputs, params)


def _by_namespace(raw: Callable, general: Callable) -> Callable:
    """A vjp rule that runs ``raw`` on raw arrays and ``general`` on tensors."""
    def rule(F, *args, **params):
        return (raw if F is RAW else general)(F, *args, **params)
    rule.raw, rule.general = raw, general
    return rule


def _output_rule(*_args, **_params):  # pragma: no cover - a marker, never called
    raise AssertionError("the engine routes an output node's cotangent itself")


class Output:
    """Output ``index`` of a ``multiple_results`` primitive, as the graph sees it: the record
    behind the small node that each output tensor points to (its ``grad_fn``). That node's
    only edge is the primitive's node; the engine puts the cotangent arriving here into slot
    ``index`` of that node's cotangents, so the primitive's one vjp rule runs once, with all
    of them.

    Example:
        >>> from chainrule.primitives import REGISTRY
        >>> from chainrule.primitives.core import output_of
        >>> output_of(REGISTRY["lstm_scan"], 1).node_name
        'LstmScanBackward'
    """

    __slots__ = ("differentiable", "index", "inplace", "multi", "name", "node_name", "prim",
                 "save_in", "save_out", "variadic", "view", "vjp", "vjp_all")

    def __init__(self, prim, index: int):
        self.prim = prim
        self.index = index
        self.name = f"{prim.name}[{index}]"
        self.node_name = prim.node_name
        self.vjp = ()
        self.vjp_all = _output_rule
        self.save_in = self.save_out = self.variadic = self.view = self.multi = False
        self.differentiable = True
        self.inplace = ()

    def __repr__(self):
        return f"<output {self.index} of {self.prim.name}>"


OUTPUT_RULE = _output_rule
"""The ``vjp_all`` of every :class:`Output` record: how the engine recognises one."""


def output_of(prim, index: int) -> Output:
    """The (cached) :class:`Output` record of output ``index`` of ``prim``."""
    outs = prim.outputs
    while len(outs) <= index:
        outs.append(Output(prim, len(outs)))
    return outs[index]


def aval(x):
    """The :class:`Aval` of an array or tensor (NumPy dtype); anything else as it is."""
    if isinstance(x, Aval) or not hasattr(x, "shape"):
        return x
    data = getattr(x, "_data", x)
    return Aval(tuple(data.shape), data.dtype)


class _RawNamespace:
    """Rules' ``F`` on raw arrays: ``F.exp(a)`` calls the primitive's impl directly."""

    def __getattr__(self, name):
        from ..backend import get_array_module  # noqa: PLC0415

        try:
            prim = REGISTRY[name]
        except KeyError:
            raise AttributeError(f"no primitive named {name!r}") from None
        impl = prim.impl

        def call(*args, **params):
            hook = TRACE_HOOK[0]
            if hook is not None:  # chainrule.jit is recording
                return hook(prim, args, params, False)
            for a in args:
                if hasattr(a, "shape"):
                    return impl(get_array_module(a), *args, **params)
            return impl(get_array_module(args[0]), *args, **params)

        call.__name__ = name
        setattr(self, name, call)  # cache: next lookup is a plain attribute
        return call


class _TensorNamespace:
    """Rules' ``F`` on Tensors: ``F.exp(t)`` applies the primitive (recorded, differentiable)."""

    def __getattr__(self, name):
        try:
            prim = REGISTRY[name]
        except KeyError:
            raise AttributeError(f"no primitive named {name!r}") from None
        apply = _APPLY[0]

        def call(*args, **params):
            return apply(prim, args, params)

        call.__name__ = name
        setattr(self, name, call)
        return call


RAW = _RawNamespace()
TENSOR = _TensorNamespace()
