"""The jit's IR: a flat list of array operations over abstract values.

A :class:`Graph` is what one trace of a function leaves: explicit inputs (arguments, captured
tensors, dynamic Python scalars), a straight list of :class:`Op` (primitive applications, and
the NumPy-level operations that the engine and the optimisers perform on raw arrays), the
outputs, and the effects to apply after a replay (``.grad`` set, buffers rebound, optimiser
state written). In-place writes are ops with ``writes``. docs/jit.md is the contract.
"""

from __future__ import annotations

_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "int64": "i64", "int32": "i32",
          "int8": "i8", "int16": "i16", "uint8": "u8", "bool": "bool"}


class Var:
    """An abstract value: an array (shape, dtype, device) or a Python scalar (``scalar`` set
    to its type name). Vars are single-assignment: an in-place write makes a new Var."""

    __slots__ = ("device", "dtype", "id", "scalar", "shape")

    def __init__(self, vid, shape=None, dtype=None, device="cpu", scalar=None):
        self.id = vid
        self.shape = shape
        self.dtype = dtype
        self.device = device
        self.scalar = scalar

    def __repr__(self):
        return f"%{self.id}"

    def type_str(self) -> str:
        """``f32[128,784]`` for arrays, ``float`` for scalars."""
        if self.scalar is not None:
            return self.scalar
        name = str(self.dtype)
        return f"{_SHORT.get(name, name)}[{','.join(str(d) for d in self.shape)}]"


class Op:
    """One operation ``outs = fn(*args, **kwargs)``.

    Attributes:
        kind: ``prim`` (a chainrule primitive: ``fn`` is its impl, ``args[0]`` the array
            module; random draws are the ``rng_draw`` primitive, with the generator state an
            input and an output), ``ufunc`` (a NumPy ufunc or ufunc method), ``func`` (a NumPy
            function), ``method`` (an ndarray method, ``args[0]`` the array), ``scalar``
            (Python arithmetic).
        name: what the printer shows (``matmul``, ``np.add``, ``ndarray.copy``).
        args, kwargs: templates holding :class:`Var` where values flow in, literals elsewhere.
        outs: the Vars produced (one per output of a ``multiple_results`` primitive, in
            its order: ``a, b = fn(...)``). writes: the Vars whose memory the op overwrites
            (``out=``, ``fill``, ``__setitem__``, ``ufunc.at``, the inputs an update
            primitive declares with ``inplace=``); ``outs[k]`` is then the value
            ``writes[k]`` holds after the op (the same memory), one out per write.
        group: the fusion group (elementwise chains), or None. out_buf: a planned buffer
            index for the output (memory planning), or None.
    """

    __slots__ = ("args", "fn", "group", "kind", "kwargs", "name", "out_buf", "outs", "writes")

    def __init__(self, kind, name, fn, args, kwargs, outs, writes=()):
        self.kind = kind
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.outs = outs
        self.writes = tuple(writes)
        self.group = None
        self.out_buf = None

    @property
    def effect(self) -> bool:
        """True when the op changes something outside its outputs (never removed)."""
        return bool(self.writes)

    def inputs(self):
        """The Vars the op reads, in order."""
        found = []
        _collect_vars(self.args, found)
        _collect_vars(self.kwargs, found)
        return found

    def copy(self, **changes) -> Op:
        """A shallow copy with some fields replaced (passes never mutate their input IR)."""
        op = Op(self.kind, self.name, self.fn, self.args, self.kwargs, self.outs, self.writes)
        op.group = self.group
        op.out_buf = self.out_buf
        for k, v in changes.items():
            setattr(op, k, v)
        return op


def _collect_vars(t, found):
    if isinstance(t, Var):
        found.append(t)
    elif isinstance(t, (tuple, list)):
        for x in t:
            _collect_vars(x, found)
    elif isinstance(t, dict):
        for x in t.values():
            _collect_vars(x, found)


def substitute(t, mapping):
    """The template ``t`` with Vars replaced through ``mapping`` (missing ones kept)."""
    if isinstance(t, Var):
        return mapping.get(t, t)
    if isinstance(t, tuple):
        return tuple(substitute(x, mapping) for x in t)
    if isinstance(t, list):
        return [substitute(x, mapping) for x in t]
    if isinstance(t, dict):
        return {k: substitute(x, mapping) for k, x in t.items()}
    return t


class Input:
    """An input of the program: ``desc`` says what it is (``arg 0``, ``model.fc.weight``,
    ``model.fc.weight.grad``, ``opt.param_groups[0]['lr']``); ``get()`` reads its current
    value at each call."""

    __slots__ = ("desc", "get", "kind", "var")

    def __init__(self, var, desc, get, kind):
        self.var = var
        self.desc = desc
        self.get = get
        self.kind = kind  # "arg", "state" or "scalar"


class Effect:
    """A write applied after a replay: ``kind`` is ``bind`` (a tensor's data becomes
    ``value``), ``grad`` (a parameter's ``.grad``), ``state`` (an optimiser state entry),
    ``bump`` (a tensor written in place: its version counter moves) or ``rng`` (a
    generator's state becomes the key ``value``, the last one its draws returned)."""

    __slots__ = ("apply", "desc", "kind", "value")

    def __init__(self, kind, desc, value, apply):
        self.kind = kind
        self.desc = desc
        self.value = value  # a Var, a literal, or None
        self.apply = apply


class Guard:
    """A condition the trace relied on, checked before any write of a replay: ``var`` (a
    scalar, or an array read as a bool) must again equal ``expected``."""

    __slots__ = ("desc", "expected", "kind", "pos", "var")

    def __init__(self, var, expected, desc, kind="bool", pos=0):
        self.var = var
        self.expected = expected
        self.desc = desc
        self.kind = kind  # "bool" (bool(var)), "value" (var itself), "array_bool"
        self.pos = pos  # how many ops came before the read


class Graph:
    """A traced program: inputs, consts (Var -> value), ops, guards, outputs (a list of Vars
    or literals, with ``out_tree`` to rebuild the result) and effects."""

    def __init__(self, name, inputs, consts, ops, guards, outputs, out_tree, effects):
        self.name = name
        self.inputs = inputs
        self.consts = consts
        self.ops = ops
        self.guards = guards
        self.outputs = outputs
        self.out_tree = out_tree
        self.effects = effects
        self.nbuffers = 0
        self.buffer_specs = []

    def replace(self, **changes) -> Graph:
        """A copy with some fields replaced."""
        g = Graph(self.name, self.inputs, self.consts, self.ops, self.guards, self.outputs,
                  self.out_tree, self.effects)
        g.__dict__.update({k: v for k, v in self.__dict__.items() if k not in g.__dict__
                           or k in ("nbuffers", "buffer_specs")})
        for k, v in changes.items():
            setattr(g, k, v)
        return g

    def __str__(self):
        return format_graph(self)


def _fmt(t, consts) -> str:
    if isinstance(t, Var):
        if t in consts:
            v = consts[t]
            if hasattr(v, "shape") and getattr(v, "ndim", 1) == 0:
                return f"{t}={v.item()!r}"
            return repr(t)
        return repr(t)
    if isinstance(t, tuple):
        return "(" + ", ".join(_fmt(x, consts) for x in t) + ("," if len(t) == 1 else "") + ")"
    if isinstance(t, list):
        return "[" + ", ".join(_fmt(x, consts) for x in t) + "]"
    if isinstance(t, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x, consts)}" for k, x in t.items()) + "}"
    if hasattr(t, "dtype") and not hasattr(t, "shape"):
        return str(t)
    if hasattr(t, "__name__"):
        return t.__name__
    text = repr(t)
    if "\n" in text or len(text) > 40:  # an array literal or some object
        return f"<{type(t).__name__}>"
    return text


def format_op(op, consts) -> str:
    """One op as a line: ``%5:f32[4,3] = matmul %1 %2 {...}``."""
    lhs = " ".join(f"{v}:{v.type_str()}" for v in op.outs)
    args = op.args[1:] if op.kind == "prim" else op.args
    parts = [_fmt(a, consts) for a in args]
    parts += [f"{k}={_fmt(v, consts)}" for k, v in op.kwargs.items()]
    line = f"{lhs} = {op.name} " + " ".join(parts)
    notes = []
    if op.writes:
        notes.append("writes " + ", ".join(map(repr, op.writes)))
    if op.out_buf is not None:
        notes.append(f"into buf{op.out_buf}")
    if op.group is not None:
        notes.append(f"group {op.group}")
    if notes:
        line = f"{line:<70} # " + "; ".join(notes)
    return line


def format_graph(g: Graph) -> str:
    """The program, readably (one op per line, like a jaxpr)."""
    lines = [f"{g.name}("]
    for inp in g.inputs:
        lines.append(f"    {inp.var}:{inp.var.type_str()}  <- {inp.desc}")
    lines.append(") {")
    for c, v in g.consts.items():
        shape = getattr(v, "shape", None)
        if shape is not None and len(shape) > 0:
            lines.append(f"  const {c}:{c.type_str()}")
    for gd in g.guards:
        lines.append(f"  guard {gd.var} == {gd.expected!r}   ({gd.desc})")
    for op in g.ops:
        lines.append("  " + format_op(op, g.consts))
    for e in g.effects:
        val = "" if e.value is None else f" := {_fmt(e.value, g.consts)}"
        lines.append(f"  effect {e.kind} {e.desc}{val}")
    lines.append("  return " + ", ".join(_fmt(o, g.consts) for o in g.outputs))
    lines.append("}")
    return "\n".join(lines)
