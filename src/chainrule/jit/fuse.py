"""Fusion groups for a compiled backend: elementwise ops of one shape become one kernel.

:func:`find_kernels` reads a planned :class:`~chainrule.jit.ir.Graph` and collects groups of
elementwise ops over one iteration shape (inputs broadcast to it) that a renderer can turn into
one loop. A group is a small dataflow graph, not only a chain: a member's result may feed
several later members and also be needed outside the group (the forward's ``tanh`` that the
backward reads again), in which case it becomes one of the kernel's outputs. The description
of a group (:class:`KernelSpec`) names no IR object, so a C renderer (``render_c``) and later a
CUDA renderer read the same thing.

A group never spans an op with an effect (an in-place write) or one making a guard's value
(the guard is checked there, before the work after it): the kernel runs
where its last member was, and the ops between its members that read one of its results
(directly or through other such ops) move after it, the others stay before it.
"""

from __future__ import annotations

from ..backend import np
from ..primitives.fast import fast_paths_enabled
from .ir import Var
from .passes import UFUNC_PRIMS
from .render_c import VECMATH

FLOATS = ("float32", "float64")
DTYPES = ("float32", "float64", "bool")

# name -> (arity, class): "arith" computes in the loop dtype and returns it; "cmp" compares
# in the loop dtype and returns bool; "logic" takes and returns bool
UFUNCS = {
    "add": (2, "arith"), "subtract": (2, "arith"), "multiply": (2, "arith"),
    "true_divide": (2, "arith"), "divide": (2, "arith"), "maximum": (2, "arith"),
    "minimum": (2, "arith"), "negative": (1, "arith"), "absolute": (1, "arith"),
    "square": (1, "arith"), "sqrt": (1, "arith"), "exp": (1, "arith"), "log": (1, "arith"),
    "tanh": (1, "arith"), "log1p": (1, "arith"), "expm1": (1, "arith"), "sin": (1, "arith"),
    "cos": (1, "arith"), "reciprocal": (1, "arith"),
    "greater": (2, "cmp"), "greater_equal": (2, "cmp"), "less": (2, "cmp"),
    "less_equal": (2, "cmp"), "equal": (2, "cmp"), "not_equal": (2, "cmp"),
    "logical_and": (2, "logic"), "logical_or": (2, "logic"), "logical_xor": (2, "logic"),
    "logical_not": (1, "logic"), "where": (3, "select"),
}
# on bool arrays the bitwise ufuncs are the logical ones
_BOOL_BITWISE = {"bitwise_and": "logical_and", "bitwise_or": "logical_or",
                 "bitwise_xor": "logical_xor", "invert": "logical_not"}
# chainrule primitives whose impl is one of the ufuncs above (passes.UFUNC_PRIMS, restricted),
# and relu (``maximum(x, 0)`` in x's dtype)
_PRIMS = {p: u for p, u in UFUNC_PRIMS.items() if u in UFUNCS} | {"relu": "relu"}


class KernelSpec:
    """One fused loop, free of IR objects.

    Attributes:
        shape: the iteration shape (every output has it; inputs broadcast to it).
        inputs: ``("array", dtype, shape)`` or ``("scalar", pytype)`` per input, in call order.
        stmts: ``(ufunc, loop_dtype, out_dtype, refs)`` per statement, in order; a ref is
            ``("in", k)``, ``("t", j)`` (statement j's value) or ``("lit", value)``.
        outputs: the statements whose values are written out, in order.
        colsums: the statements whose sums over every axis but the last (a bias gradient's
            ``sum_to``) are written out too, after the outputs, each of shape
            ``shape[-1:]``: the rows added in order, as ``creduce``'s column sum does.
    """

    __slots__ = ("colsums", "inputs", "outputs", "shape", "stmts")

    def __init__(self, shape, inputs, stmts, outputs, colsums=()):
        self.shape = tuple(shape)
        self.inputs = inputs
        self.stmts = stmts
        self.outputs = outputs
        self.colsums = tuple(colsums)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def key(self):
        """What the rendered source depends on (equal keys render equal kernels)."""
        return (self.shape, tuple(self.inputs), tuple(self.stmts), tuple(self.outputs),
                self.colsums)


class Group:
    """A fusion group found in a graph: its member op indices, the ops between them that
    move after the kernel, its input and output Vars (the outputs', then the column sums'),
    its :class:`KernelSpec`, and ``folded``: the ``sum_to`` ops its column sums replace."""

    __slots__ = ("after", "folded", "in_vars", "members", "out_vars", "spec")

    def __init__(self, members, after, in_vars, out_vars, spec):
        self.members = members
        self.after = after
        self.in_vars = in_vars
        self.out_vars = out_vars
        self.spec = spec
        self.folded = []


def _scalar_probe(v):
    return {"float": 1.0, "int": 1, "bool": True}.get(v.scalar)


def _ufunc_of(op):
    """(ufunc name, operand templates) of an elementwise op a kernel can compute, else None."""
    if op.writes or len(op.outs) != 1 or op.kwargs:
        return None
    if op.kind == "ufunc":
        name, operands = op.name[3:], op.args
        if "." in name:
            return None
    elif op.kind == "prim" and op.name in _PRIMS:
        name, operands = _PRIMS[op.name], op.args[1:]
    else:
        return None
    if name in _BOOL_BITWISE:
        name = _BOOL_BITWISE[name]
    if name == "relu":
        return ("relu", operands) if len(operands) == 1 else None
    if name not in UFUNCS or len(operands) != UFUNCS[name][0]:
        return None
    return name, operands


def _gelu_stmts(emit, x):
    """GELU of float32 ``x`` in the impl's operations and order (primitives/activation.py's
    ``_gelu_f32``: the tanh form's polynomial), so only tanh differs from the numpy backend."""
    from ..primitives.activation import _S  # noqa: PLC0415

    h = emit("multiply", x, ("lit", 0.5))
    w = emit("multiply", h, h)
    r = emit("multiply", w, ("lit", _S[-1]))
    for c in _S[-2:0:-1]:
        r = emit("add", r, ("lit", c))
        r = emit("multiply", r, w)
    r = emit("add", r, ("lit", _S[0]))
    r = emit("multiply", r, h)
    r = emit("tanh", r)
    r = emit("add", r, ("lit", 1.0))
    return emit("multiply", r, h)


def _gelu_backward_stmts(emit, g, x, y):
    """``g * (Phi + x phi)`` with Phi = y / x as the float32 impl computes it
    (``_gelu_backward``), 1/2 where x^2 is below its threshold."""
    from ..primitives.activation import _INV_SQRT_2PI, _TINY2  # noqa: PLC0415

    r = emit("true_divide", y, x)
    ww = emit("multiply", x, x)
    small = emit("less", ww, ("lit", _TINY2), out="bool")
    r = emit("where", small, ("lit", 0.5), r)
    ww = emit("multiply", ww, ("lit", -0.5))
    ww = emit("exp", ww)
    ww = emit("multiply", ww, x)
    ww = emit("multiply", ww, ("lit", _INV_SQRT_2PI))
    r = emit("add", r, ww)
    return emit("multiply", r, g)


# primitives that become several statements (float32, every operand of the result's shape:
# the impls' fast paths; float64 runs SciPy's ndtr, which C does not reproduce)
_EXPANDED = {"gelu": (1, _gelu_stmts), "gelu_backward": (3, _gelu_backward_stmts)}


def describe(op):
    """``(ufunc, loop_dtype, out_dtype, shape)`` when a kernel can compute ``op`` exactly as
    NumPy does (dtypes float32, float64, bool; operands arrays broadcasting to the result's
    shape, Python numbers or dynamic scalars), else None.

    Example:
        >>> from chainrule.backend import np
        >>> from chainrule.jit.ir import Op, Var
        >>> x, y = Var(1, (4, 3), np.dtype("float32")), Var(2, (4, 3), np.dtype("float32"))
        >>> describe(Op("ufunc", "np.multiply", np.multiply, (x, 2.0), {}, (y,)))
        ('multiply', 'float32', 'float32', (4, 3))
    """
    if op.kind == "prim" and op.name in _EXPANDED and not op.writes and len(op.outs) == 1 \
            and not op.kwargs and fast_paths_enabled():  # the expansion is the fast path's
        out, operands = op.outs[0], op.args[1:]
        if (len(operands) == _EXPANDED[op.name][0] and str(out.dtype) == "float32"
                and out.shape is not None
                and all(isinstance(a, Var) and a.scalar is None and str(a.dtype) == "float32"
                        and a.shape == out.shape for a in operands)):
            return op.name, "float32", "float32", tuple(out.shape)
        return None
    found = _ufunc_of(op)
    if found is None:
        return None
    name, operands = found
    out = op.outs[0]
    if out.scalar is not None or out.shape is None or str(out.dtype) not in DTYPES:
        return None
    probes = []
    for a in operands:
        if isinstance(a, Var):
            if a.scalar is not None:
                if a.scalar not in ("float", "int", "bool"):
                    return None
                probes.append(_scalar_probe(a))
            else:
                if str(a.dtype) not in DTYPES or a.shape is None or len(a.shape) > len(out.shape):
                    return None
                if any(d != 1 and d != o for d, o in zip(a.shape[::-1], out.shape[::-1])):
                    return None
                probes.append(np.dtype(a.dtype))
        elif isinstance(a, (bool, int, float)):
            probes.append(a)
        else:
            return None
    if not any(isinstance(p, np.dtype) for p in probes):
        return None
    try:
        loop = str(np.result_type(*probes))
    except (TypeError, ValueError, OverflowError):
        return None
    kind = "arith" if name == "relu" else UFUNCS[name][1]
    odt = str(out.dtype)
    if kind == "arith" and not (loop in FLOATS and odt == loop):
        return None
    if kind == "cmp" and not (loop in DTYPES and odt == "bool"):
        return None
    if kind == "logic" and not (loop == "bool" and odt == "bool"):
        return None
    return name, loop, odt, tuple(out.shape)


def find_kernels(g, min_ops=2, min_size=1 << 15):
    """The fusion groups of ``g`` worth compiling: at least ``min_ops`` members, or one
    member over at least ``min_size`` elements (the kernel's loop then runs on every core).

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: ((x * 2.0).tanh() + 1.0).sum(), backend="numpy")
        >>> _ = f(cr.ones(5))
        >>> [(len(k.members), k.spec.shape) for k in find_kernels(f.graph_ir())]
        [(3, (5,))]
    """
    ops = g.ops
    escaping = {v for v in g.outputs if isinstance(v, Var)}
    escaping |= {e.value for e in g.effects if isinstance(e.value, Var)}
    guarded = {gd.var for gd in g.guards}
    escaping |= guarded
    groups = []
    cur = None  # [shape, members, member_outs, tainted set, after list]
    first_user: dict = {}  # Var -> the index of the first op reading it
    for j, op in enumerate(ops):
        for v in op.inputs():
            first_user.setdefault(v, j)

    def close():
        if cur is not None:
            g_ = _build(ops, cur, escaping)
            if g_ is not None and (len(g_.members) >= min_ops or g_.spec.size >= min_size):
                groups.append(g_)

    for i, op in enumerate(ops):
        d = describe(op)
        if d is not None:
            ins = set(op.inputs())
            if (cur is not None and d[3] == cur[0] and not (ins & cur[3])
                    and not _starts_later_group(ops, i, cur, first_user)):
                cur[1].append(i)
                cur[2].add(op.outs[0])
            else:
                close()
                cur = [d[3], [i], {op.outs[0]}, set(), []]
            if op.outs[0] in guarded:  # a guard's value: checked here, not later
                close()
                cur = None
            continue
        if cur is None:
            continue
        if op.effect or guarded.intersection(op.outs):
            # nothing moves past a write, nor a guard's check past later work (the guard
            # that a cross-entropy's targets are in range, before the gather reading them)
            close()
            cur = None
            continue
        if set(op.inputs()) & (cur[2] | cur[3]):
            cur[3].update(op.outs)
            cur[4].append(i)
    close()
    if FOLD_COLSUMS[0] and groups:
        readers = readers_of(g)
        for grp in groups:
            _fold_colsums(g, grp, escaping, readers)
    return groups


def put_ops(g, put: dict):
    """``g`` with op ``i`` replaced by ``put[i]`` for each index in ``put`` (``None``: the op
    dropped); ``g`` itself when ``put`` is empty. The pattern passes' last step.

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: (x * 2.0).sum(), backend="numpy")
        >>> _ = f(cr.ones(3)), f(cr.ones(3))
        >>> g = f.graph_ir()
        >>> len(put_ops(g, {0: None}).ops) == len(g.ops) - 1, put_ops(g, {}) is g
        (True, True)
    """
    if not put:
        return g
    return g.replace(ops=[put.get(i, op) for i, op in enumerate(g.ops)
                          if put.get(i, op) is not None])


def readers_of(g) -> dict:
    """Var -> the indices of the ops of graph ``g`` reading it, in order (an op once).

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: (x * 2.0).sum(), backend="numpy")
        >>> _ = f(cr.ones(3)), f(cr.ones(3))
        >>> sorted(len(r) for r in readers_of(f.graph_ir()).values())
        [1, 1]
    """
    readers: dict = {}
    for i, op in enumerate(g.ops):
        for v in set(op.inputs()):
            readers.setdefault(v, []).append(i)
    return readers


# column sums (a bias gradient's sum_to of a kernel's output) made in the kernel's pass
# (benchmarks/ab_jit_mlp.py's c-nocolsum: off)
FOLD_COLSUMS = [True]


def _colsum_of(op, v, shape):
    """Whether ``op`` is ``sum_to(v)`` over every axis of ``shape`` but the last."""
    return (op.kind == "prim" and op.name == "sum_to" and not op.writes and len(op.outs) == 1
            and len(op.args) == 2 and op.args[1] is v and op.kwargs == {"shape": shape[-1:]}
            and op.outs[0].dtype == v.dtype)


def _fold_colsums(g, grp, escaping, readers):
    """Give ``grp`` the column sums of its float outputs that ``sum_to`` ops read (the bias
    gradient after a ReLU mask kernel): the kernel writes them in its pass, the ``sum_to``
    ops go (``grp.folded``), and an output nothing else reads any more is not written.
    Kernels calling a math function (tiled, see ``render_c.SPLIT_STMTS``) are left alone."""
    spec = grp.spec
    shape = spec.shape
    if len(shape) < 2 or shape[-1] < 2 or any(st[0] in VECMATH for st in spec.stmts):
        return
    keep_out, keep_var, sums, sum_vars = [], [], [], []
    for s, v in zip(spec.outputs, grp.out_vars):
        found = [i for i in readers.get(v, []) if _colsum_of(g.ops[i], v, shape)]
        if str(v.dtype) not in FLOATS or not found:
            keep_out.append(s)
            keep_var.append(v)
            continue
        for i in found:
            sums.append(s)
            sum_vars.append(g.ops[i].outs[0])
            grp.folded.append(i)
        if v in escaping or len(found) < len(readers.get(v, [])):
            keep_out.append(s)
            keep_var.append(v)
    if sums:
        grp.spec = KernelSpec(shape, spec.inputs, spec.stmts, keep_out, sums)
        grp.out_vars = keep_var + sum_vars


def _starts_later_group(ops, i, cur, first_user) -> bool:
    """Whether elementwise op ``i``, which could join the open group ``cur`` across ops that
    are not in it, is better the first of a new group: its first user is elementwise over
    the same shape but reads a result of those ops, so it cannot join ``cur``. Joined, the
    value is written out by ``cur``'s kernel and read back by a lone op; started anew, it
    is made in the user's own loop. (The MLP's backward: the first layer's ReLU mask
    ``x > 0`` would join the second layer's mask kernel, and its multiply with the product
    just made would run alone.)"""
    if i == cur[1][-1] + 1:
        return False
    users = [first_user[v] for v in ops[i].outs if v in first_user]
    if not users:
        return False
    op = ops[min(users)]
    d = describe(op)
    return d is not None and d[3] == cur[0] and bool(set(op.inputs()) & cur[3])


def _build(ops, cur, escaping):
    shape, members, member_outs = cur[0], cur[1], cur[2]
    last = members[-1]
    after = [i for i in cur[4] if i < last]
    mset = set(members)
    used_outside = set(escaping)
    for i, op in enumerate(ops):
        if i not in mset:
            used_outside.update(op.inputs())
    in_vars, inputs, stmts, outputs, out_vars = [], [], [], [], []
    where = {}  # Var -> ref
    for i in members:
        op = ops[i]
        name, loop, odt, _ = describe(op)
        operands = op.args[1:] if name in _EXPANDED else _ufunc_of(op)[1]
        refs = []
        for a in operands:
            if isinstance(a, Var):
                if a not in where:
                    where[a] = ("in", len(in_vars))
                    in_vars.append(a)
                    inputs.append(("scalar", a.scalar) if a.scalar is not None
                                  else ("array", str(a.dtype), tuple(a.shape)))
                refs.append(where[a])
            else:
                refs.append(("lit", a))
        o = op.outs[0]
        if name in _EXPANDED:
            def emit(fn, *args, out=loop, loop=loop):
                stmts.append((fn, loop, out, tuple(args)))
                return ("t", len(stmts) - 1)

            where[o] = _EXPANDED[name][1](emit, *refs)
        else:
            where[o] = ("t", len(stmts))
            stmts.append((name, loop, odt, tuple(refs)))
        if o in used_outside:
            outputs.append(where[o][1])
            out_vars.append(o)
    if not outputs:
        return None
    assert all(v in member_outs for v in out_vars)
    return Group(members, after, in_vars, out_vars,
                 KernelSpec(shape, inputs, stmts, outputs))
