"""Backend ``"numpy"``: the planned program as one generated Python function over raw arrays.

Each op becomes one line (``v7 = f7(np, v3, v5)`` for a primitive's impl, ``v8 = f8(v7, v2,
out=b0)`` for a ufunc written into a planned buffer); the guards are checked after the ops
they read and before any write; no Tensor, no graph node, no Python dispatch per op. The
source is kept (``Program.source``) for inspection.
"""

from __future__ import annotations

import math

from ..backend import np
from ..primitives import REGISTRY, lowp
from .ir import Graph, Var
from .passes import as_ufunc


class GuardFailed:
    """Returned by a program whose guard did not hold: ``desc`` says which, ``value`` what
    was seen."""

    __slots__ = ("desc", "value")

    def __init__(self, desc, value):
        self.desc = desc
        self.value = value


class Program:
    """A compiled graph: ``run(*input_values, _release=None) -> (outputs, effect_values) |
    GuardFailed``. ``_release``, when given, is called once, after the last guard check and
    before anything else runs that could fail: the caller drops there what the program
    replaces without reading (a ``.grad`` the step sets anew), so that it is freed before the
    program allocates its successor, as eager execution frees it (``release_hook`` says that a
    program honours it)."""

    release_hook = True

    def __init__(self, graph: Graph, fn, source):
        self.graph = graph
        self.run = fn
        self.source = source


class _Names:
    def __init__(self):
        self.env = {"np": np, "_GuardFailed": GuardFailed}
        self.n = 0

    def bind(self, value, prefix="k"):
        self.n += 1
        name = f"{prefix}{self.n}"
        self.env[name] = value
        return name


def _lit(t, names: _Names, ref) -> str:
    """Python source for the template ``t``: a Var as ``ref(var)`` names it, a literal that
    has a source form as itself, anything else as a name bound in the program's globals."""
    if isinstance(t, Var):
        return ref(t)
    if t is None or isinstance(t, (bool, str)):
        return repr(t)
    if isinstance(t, int):
        return repr(t)
    if isinstance(t, float) and math.isfinite(t):
        return repr(t)
    if isinstance(t, tuple):
        inner = ", ".join(_lit(x, names, ref) for x in t)
        return f"({inner},)" if len(t) == 1 else f"({inner})"
    if isinstance(t, list):
        return "[" + ", ".join(_lit(x, names, ref) for x in t) + "]"
    if isinstance(t, dict) and all(isinstance(k, str) for k in t):
        return "{" + ", ".join(f"{k!r}: {_lit(x, names, ref)}"
                               for k, x in t.items()) + "}"
    if t is np:
        return "np"
    return names.bind(t)


# the code of ``primitives.lowp.in_float32``'s wrapper: an accumulating primitive's impl that
# first looks for 16-bit float inputs to compute in float32
_LOWP_RUN = lowp.in_float32(None).__code__


def _is_16bit(a) -> bool:
    d = a.dtype if isinstance(a, Var) else getattr(a, "dtype", None)
    if d is None:
        return isinstance(a, Var) and a.scalar is None  # an array of unknown dtype
    d = np.dtype(d)
    return d.itemsize == 2 and d.kind in "fV"


def op_fn(op):
    """The function an op's line calls: ``op.fn``, except that the float16/bfloat16 wrapper of
    an accumulating primitive (``primitives.lowp``) is skipped when none of its array inputs
    is a 16-bit float (the dtypes are fixed when the program is compiled): the same impl on
    the same arrays, without a Python call and a dtype test per input at every replay.

    Example:
        >>> from chainrule.jit.ir import Op, Var
        >>> from chainrule.primitives import REGISTRY
        >>> x = Var(1, (2, 3), np.dtype("float32"))
        >>> op = Op("prim", "sum", REGISTRY["sum"].impl, (np, x), {"axes": None,
        ...         "keepdims": False}, (Var(2, (), np.dtype("float32")),))
        >>> op_fn(op) is REGISTRY["sum"].impl.__wrapped__
        True
    """
    fn = op.fn
    if (op.kind == "prim" and getattr(fn, "__code__", None) is _LOWP_RUN
            and not any(_is_16bit(a) for a in op.args[1:])):
        return fn.__wrapped__
    return fn


def _call(op, names, ref, extra="") -> str:
    fname = names.bind(op_fn(op), "f")
    args = [_lit(a, names, ref) for a in op.args]
    kw = op.kwargs
    if kw and all(isinstance(k, str) and k.isidentifier() for k in kw):
        args += [f"{k}={_lit(v, names, ref)}" for k, v in kw.items()]
    elif kw:
        args.append(f"**{_lit(kw, names, ref)}")
    if extra:
        args.append(extra)
    return f"{fname}({', '.join(args)})"


def typed_scalars(ufunc, args):
    """``args`` of a ufunc call with each Python ``int``/``float`` literal replaced by a 0-d
    array of the dtype the ufunc's loop casts it to (NEP 50: a Python number is "weak", so
    ``np.multiply(f32, 1.1)`` runs the float32 loop on ``float32(1.1)``). The same loop runs
    on the same values, so the result is bitwise the same, and NumPy skips converting and
    promoting the Python number at every call (about half the cost of a ufunc call on a small
    array). ``args`` is returned unchanged when any step is in doubt: a non-array operand, no
    loop, an integer the dtype does not hold exactly, a finite number that overflows it.

    Example:
        >>> from chainrule.jit.ir import Var
        >>> typed_scalars(np.multiply, (Var(1, (3,), np.dtype("float32")), 1.1))[1].dtype
        dtype('float32')
    """
    if ufunc.nout != 1 or len(args) != ufunc.nin:
        return args
    dtypes = []
    for a in args:
        if isinstance(a, Var) and a.scalar is None and a.dtype is not None:
            dtypes.append(np.dtype(a.dtype))
        elif type(a) in (int, float):
            dtypes.append(type(a))
        else:
            return args
    if all(isinstance(d, np.dtype) for d in dtypes):
        return args
    try:
        loop = ufunc.resolve_dtypes((*dtypes, None))
        new = list(args)
        for i, a in enumerate(args):
            if type(a) not in (int, float):
                continue
            with np.errstate(all="ignore"):
                c = np.array(a, dtype=loop[i])
            if c.dtype.kind not in "biuf":
                return args
            if type(a) is int and c.item() != a:  # not held exactly
                return args
            if type(a) is float and math.isfinite(a) and not np.isfinite(c):
                return args
            new[i] = c
            dtypes[i] = c.dtype
        if ufunc.resolve_dtypes((*dtypes, None)) != loop:
            return args
    except (TypeError, ValueError, OverflowError):
        return args
    return tuple(new)


def _static_grids(idx: Var, axis: int):
    """The index grids of ``np.take_along_axis`` for an index of ``idx``'s static shape, all
    but ``axis`` (None there), or None when the shape is not known."""
    if idx.shape is None or not all(isinstance(d, int) for d in idx.shape):
        return None
    grids = list(np.indices(idx.shape, sparse=True))
    grids[axis] = None
    return grids


def _lower_gather(op, names, ref):
    """``gather`` (``np.take_along_axis``) as the fancy index NumPy builds inside it, with the
    index grids of the static shape built once: the same elements copied, one indexing call
    instead of ``take_along_axis``'s Python work."""
    x, idx = op.args[1], op.args[2]
    axis = op.kwargs.get("axis")
    if (set(op.kwargs) != {"axis"} or not isinstance(x, Var) or not isinstance(idx, Var)
            or idx.dtype is None or np.dtype(idx.dtype).kind not in "iu"
            or x.shape is None or idx.shape is None or len(x.shape) != len(idx.shape)
            or type(axis) is not int or not -len(idx.shape) <= axis < len(idx.shape)):
        return None
    axis %= len(idx.shape)
    grids = _static_grids(idx, axis)
    if grids is None or op.outs[0].shape != idx.shape or any(
            xs != s for k, (xs, s) in enumerate(zip(x.shape, idx.shape)) if k != axis):
        return None  # take_along_axis would broadcast the index against x
    parts = [ref(idx) if k == axis else names.bind(gr, "k") for k, gr in enumerate(grids)]
    return f"{ref(op.outs[0])} = {ref(x)}[{', '.join(parts)}]"


def _lower_scatter_add(op, names, ref):
    """``scatter_add`` with one index per position along ``axis`` (a gather's transpose with
    one class per row: no two values meet, so ``np.add.at`` into zeros adds each to one zero):
    zeros, then one fancy-index assignment of ``values + 0`` (the same addition, signed zeros
    included)."""
    g, idx = op.args[1], op.args[2]
    shape, axis = op.kwargs.get("shape"), op.kwargs.get("axis")
    out = op.outs[0]
    if (set(op.kwargs) != {"shape", "axis"} or not isinstance(g, Var)
            or not isinstance(idx, Var) or idx.dtype is None
            or np.dtype(idx.dtype).kind not in "iu" or g.shape is None
            or g.shape != idx.shape or out.dtype is None or g.dtype is None
            or np.dtype(g.dtype) != np.dtype(out.dtype)
            or np.dtype(out.dtype).kind not in "fc" or type(axis) is not int
            or not isinstance(shape, tuple) or len(shape) != len(idx.shape)
            or not -len(shape) <= axis < len(shape)):
        return None
    axis %= len(shape)
    if idx.shape[axis] != 1:
        return None
    grids = _static_grids(idx, axis)
    if grids is None or any(gs != s for k, (gs, s) in enumerate(zip(idx.shape, shape))
                            if k != axis):
        return None
    parts = [ref(idx) if k == axis else names.bind(gr, "k") for k, gr in enumerate(grids)]
    zero = names.bind(np.zeros((), out.dtype), "k")
    o = ref(out)
    return (f"{o} = _zeros({shape!r}, {names.bind(np.dtype(out.dtype), 't')})\n"
            f"    {o}[{', '.join(parts)}] = _add({ref(g)}, {zero})")


def _lower_relu(op, names, ref):
    """``relu`` of a float array (``np.maximum(x, 0).astype(x.dtype, copy=False)``, where the
    cast never copies) as the ufunc call alone, its ``0`` typed as the loop takes it
    (:func:`typed_scalars`): the same loop on the same values; ~10 us less per call on a
    128x512 float32 array (the impl's Python call, the cast, the literal's conversion)."""
    x = op.args[1] if len(op.args) == 2 else None
    if (op.kwargs or not isinstance(x, Var) or x.scalar is not None or x.dtype is None
            or np.dtype(x.dtype).kind != "f" or op.outs[0].dtype is None
            or np.dtype(op.outs[0].dtype) != np.dtype(x.dtype)):
        return None
    args = typed_scalars(np.maximum, (x, 0))
    if not isinstance(args[1], np.ndarray):  # no typed literal: leave the impl
        return None
    return (f"{ref(op.outs[0])} = {names.bind(np.maximum, 'u')}({ref(x)}, "
            f"{names.bind(args[1], 'k')})")


# primitive name -> function(op, names, ref) giving the lines (joined with "\n    ") that
# compute the op in place of the impl's call, or None where the lowering does not apply;
# each is bitwise the impl (tests/jit/test_numpy_lowering.py)
LOWERINGS = {"gather": _lower_gather, "scatter_add": _lower_scatter_add, "relu": _lower_relu}
# False: every primitive calls its impl (for A/B measurements and tests)
LOWER = True


def _lowered(op, names, ref):
    """The lines of a lowered op (:data:`LOWERINGS`), or None: only for a primitive that
    calls its registered impl (not a backend's replacement) on NumPy arrays."""
    if not LOWER or op.kind != "prim" or op.out_buf is not None or op.args[:1] != (np,):
        return None
    low = LOWERINGS.get(op.name)
    if low is None:
        return None
    prim = REGISTRY.get(op.name)
    if prim is None or op.fn is not prim.impl:
        return None
    return low(op, names, ref)


def compile_graph(g: Graph) -> Program:
    """Generate and compile the program's Python source.

    A value held in a planned buffer is read through the buffer's name (its op writes the
    buffer with ``out=``, or allocates it at the buffer's first use in a call); the buffer is
    dropped after the last read of the last value it holds, every other intermediate after
    its last use, so nothing is held between calls. A ufunc call takes its ``out`` by
    position and its Python number literals as 0-d arrays of the loop's dtype
    (:func:`typed_scalars`).
    """
    names = _Names()
    consts = g.consts
    for c, v in consts.items():
        names.env[f"c{c.id}"] = v
    names.env.update(_empty=np.empty, _zeros=np.zeros, _add=np.add)
    buf_of: dict = {}  # Var -> planned buffer index
    first_buf: dict = {}
    for i, op in enumerate(g.ops):
        if op.out_buf is not None:
            first_buf.setdefault(op.out_buf, i)
            buf_of[op.outs[0]] = op.out_buf

    def ref(v):
        if v in consts:
            return f"c{v.id}"
        b = buf_of.get(v)
        return f"v{v.id}" if b is None else f"b{b}"

    params = "".join(f"v{i.var.id}, " for i in g.inputs)
    lines = [f"def program({params}_release=None):"]
    checks: dict = {}  # op index (-1: before the first op) -> guards checked after it
    producer = {o: i for i, op in enumerate(g.ops) for o in op.outs}
    for gd in g.guards:
        checks.setdefault(producer.get(gd.var, -1), []).append(gd)

    def guards(at):
        for gd in checks.get(at, ()):
            desc = names.bind(gd.desc, "d")
            v = ref(gd.var)
            if gd.kind == "value":
                exp = names.bind((type(gd.expected), gd.expected), "e")
                lines.append(f"    if (type({v}), {v}) != {exp}:")
            else:
                exp = names.bind(bool(gd.expected), "e")
                lines.append(f"    if bool({v}) is not {exp}:")
            lines.append(f"        return _GuardFailed({desc}, {v})")

    # liveness: each local is dropped after its last use, so intermediates are freed as
    # eagerly as the engine frees them (outputs and effect values live to the end); a buffer
    # after the last use of any value it holds
    keep = {v for v in g.outputs if isinstance(v, Var)}
    keep |= {e.value for e in g.effects if isinstance(e.value, Var)}
    last: dict = {}
    for i, op in enumerate(g.ops):
        for v in op.inputs() + list(op.writes) + list(op.outs):
            last[v] = i
    for gd in g.guards:
        last[gd.var] = max(last.get(gd.var, -1), producer.get(gd.var, -1))
    dead: dict = {}
    buf_end: dict = {}
    for v, i in last.items():
        if v in keep or v in consts:
            continue
        b = buf_of.get(v)
        if b is None:
            dead.setdefault(i, set()).add(f"v{v.id}")
        else:
            buf_end[b] = max(buf_end.get(b, -1), i)
    for b, i in buf_end.items():
        dead.setdefault(i, set()).add(f"b{b}")

    release_at = max(checks, default=-1)  # after the last guard check nothing fails

    def release(at):
        if at == release_at:
            lines.append("    if _release is not None:")
            lines.append("        _release()")

    guards(-1)
    release(-1)
    for i, op in enumerate(g.ops):
        lhs = ", ".join(ref(o) for o in op.outs)
        buf = op.out_buf
        fresh = buf is not None and first_buf[buf] == i
        if fresh and not g.buffer_specs[buf][0]:  # 0-d: a ufunc would return a NumPy scalar
            shape, dtype = g.buffer_specs[buf]
            lines.append(f"    b{buf} = _empty({shape!r}, {names.bind(dtype, 't')})")
            fresh = False
        uname = as_ufunc(op)
        low = _lowered(op, names, ref)
        if low is not None:
            lines.append(f"    {low}")
            if op.writes:
                lines.append(f"    {lhs} = {', '.join(_lit(w, names, ref) for w in op.writes)}")
        elif op.writes:  # in place: each out is the array its write went into
            targets = ", ".join(_lit(w, names, ref) for w in op.writes)
            lines.append(f"    {_call(op, names, ref)}")
            lines.append(f"    {lhs} = {targets}")
        elif uname is not None and (op.kind == "prim" or not op.kwargs):
            # the ufunc itself (no wrapper), out= by position (cheaper) where NumPy allows it
            ufunc = getattr(np, uname)
            uargs = typed_scalars(ufunc, op.args[1:] if op.kind == "prim" else op.args)
            args = [_lit(a, names, ref) for a in uargs]
            call = f"{names.bind(ufunc, 'u')}({', '.join(args)}"
            if buf is None or fresh:
                lines.append(f"    {lhs} = {call})")
            elif uname in ("maximum", "minimum"):  # NumPy deprecates a positional out here
                lines.append(f"    {call}, out=b{buf})")
            else:
                lines.append(f"    {call}, b{buf})")
        elif buf is not None and not fresh:
            lines.append(f"    {_call(op, names, ref, f'out=b{buf}')}")
        else:
            lines.append(f"    {lhs} = {_call(op, names, ref)}")
        guards(i)
        release(i)
        if i in dead:
            lines.append(f"    del {', '.join(sorted(dead[i]))}")
    outs = ", ".join(_lit(o, names, ref) for o in g.outputs)
    effs = ", ".join(_lit(e.value, names, ref) for e in g.effects)
    lines.append(f"    return ({outs}{',' if len(g.outputs) == 1 else ''}), "
                 f"({effs}{',' if len(g.effects) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    code = compile(source, f"<chainrule.jit {g.name}>", "exec")
    exec(code, names.env)
    return Program(g, names.env["program"], source)
