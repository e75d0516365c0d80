"""Passes over the IR, each a function ``Graph -> Graph`` that leaves its input unchanged.

Aliasing is what makes array programs with in-place writes hard to rewrite; the passes share
one conservative view of it (:class:`Aliases`): an output may share memory with any of its
array inputs unless the op is known to allocate (a ufunc without ``out=``, a primitive that
is neither a view, nor of the "movement" kind, nor one that hands back its input when there
is nothing to do, and the NumPy functions and methods listed below); an
in-place write's output is its target. A value *escapes* when it is an output or an
effect's value (the user or the captured state holds it after the call).
"""

from __future__ import annotations

from ..backend import np
from .ir import Effect, Graph, Guard, Var, substitute

# primitives that may hand back an input (or a view of it): besides view=True and the
# "movement" kind, the ones that return their input unchanged when there is nothing to do
_PASS_THROUGH = {"sum_to", "cast", "to_device"}
# primitives of the "movement" kind whose impl always allocates its result (a gather, the
# scatters into zeros, index_put's copy, concatenate, pad: checked on the op table's samples
# by tests/jit/test_passes.py)
_ALLOCATING_MOVEMENT = {"concatenate", "gather", "index_put", "pad", "scatter_add", "scatter_to"}
# NumPy functions and ndarray methods that always return new memory
_FRESH_FUNCS = {"np.where", "np.concatenate", "np.stack", "np.einsum", "np.dot", "np.empty",
                "np.zeros", "np.ones", "np.full", "np.arange", "np.eye", "np.identity",
                "np.linspace", "np.tri", "np.zeros_like", "np.ones_like", "np.empty_like",
                "np.full_like", "np.copy", "np.tril", "np.triu", "np.outer", "np.tensordot",
                "np.pad", "np.take", "np.take_along_axis", "np.sort", "np.argsort",
                "np.cumsum", "np.clip", "np.array"}
_FRESH_METHODS = {"ndarray.copy", "ndarray.argmax", "ndarray.argmin", "ndarray.argsort",
                  "ndarray.cumsum", "ndarray.cumprod", "ndarray.nonzero", "ndarray.repeat",
                  "ndarray.take", "ndarray.round", "ndarray.dot", "ndarray.clip",
                  "ndarray.flatten", "ndarray.__deepcopy__", "ndarray.__copy__"}


# elementwise primitives whose impl is exactly one NumPy ufunc applied to the inputs (checked
# bitwise by tests/jit/test_jit_primitives.py): a backend may call the ufunc directly, and
# memory planning may give them an ``out=`` buffer
UFUNC_PRIMS = {"neg": "negative", "exp": "exp", "expm1": "expm1", "log": "log",
               "log1p": "log1p", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tanh": "tanh",
               "abs": "absolute", "add": "add", "sub": "subtract", "mul": "multiply",
               "div": "true_divide", "logaddexp": "logaddexp", "maximum": "maximum",
               "minimum": "minimum", "floor": "floor", "ceil": "ceil", "sign": "sign",
               "floor_divide": "floor_divide", "remainder": "remainder", "eq": "equal",
               "ne": "not_equal", "lt": "less", "le": "less_equal", "gt": "greater",
               "ge": "greater_equal", "isfinite": "isfinite", "isinf": "isinf",
               "isnan": "isnan", "logical_and": "logical_and", "logical_or": "logical_or",
               "logical_xor": "logical_xor", "logical_not": "logical_not",
               "bitwise_and": "bitwise_and", "bitwise_or": "bitwise_or",
               "bitwise_xor": "bitwise_xor", "bitwise_not": "invert"}


def as_ufunc(op):
    """The NumPy ufunc name an op computes with exactly (a ufunc call, or a primitive of
    :data:`UFUNC_PRIMS` with at least one array input), else None."""
    if op.writes or len(op.outs) != 1 or op.outs[0].scalar is not None:
        return None
    if op.kind == "ufunc" and "." not in op.name[3:] and "out" not in op.kwargs:
        return op.name[3:]
    if op.kind == "prim" and op.name in UFUNC_PRIMS and not op.kwargs and any(
            isinstance(a, Var) and a.scalar is None for a in op.args[1:]):
        return UFUNC_PRIMS[op.name]
    return None


def _fresh(op) -> bool:
    """True when the op's outputs certainly share no memory with its inputs."""
    if op.writes:
        return False
    if getattr(op.fn, "chainrule_fresh", False):  # a compiled kernel (jit/cbackend.py)
        return True
    if op.kind in ("ufunc", "scalar"):
        return True
    if op.kind == "prim":
        from ..primitives import REGISTRY  # noqa: PLC0415

        p = REGISTRY[op.name]
        if op.name in _PASS_THROUGH:
            return _changed_by(op)
        if op.name in _ALLOCATING_MOVEMENT:
            return True
        return not (p.view or p.kind == "movement")
    if op.kind == "method" and op.name == "ndarray.astype":
        return op.kwargs.get("copy", True) is True
    return op.name in _FRESH_FUNCS or op.name in _FRESH_METHODS


def _changed_by(op) -> bool:
    """For a primitive of ``_PASS_THROUGH``: True when it certainly computes something new,
    so that its result is fresh memory: a ``sum_to`` to another shape reduces (its impl hands
    back its input only when the shapes are equal), a ``cast`` to another dtype converts."""
    x, out = (op.args[1] if len(op.args) > 1 else None), op.outs[0]
    if len(op.outs) != 1 or not isinstance(x, Var) or x.scalar is not None:
        return False
    if op.name == "sum_to":
        return None not in (x.shape, out.shape) and tuple(x.shape) != tuple(out.shape)
    if op.name == "cast":
        return x.dtype is not None and np.dtype(x.dtype) != np.dtype(out.dtype)
    return False


class Aliases:
    """Union-find over the Vars that may share memory, with what each class touches."""

    def __init__(self, g: Graph):
        self.parent: dict = {}
        for op in g.ops:
            ins = [v for v in op.inputs() if v.scalar is None]
            fresh = _fresh(op)
            for o in op.outs:
                self.find(o)
                if not fresh and not op.writes:
                    for v in ins:
                        self.union(o, v)
            for o, w in zip(op.outs, op.writes):  # a write's result is its target
                self.union(o, w)
        self.written = {self.find(w) for op in g.ops for w in op.writes}
        self.escaping = set()
        for v in g.outputs:
            if isinstance(v, Var):
                self.escaping.add(self.find(v))
        for e in g.effects:
            if isinstance(e.value, Var):
                self.escaping.add(self.find(e.value))
        self.external = {self.find(i.var) for i in g.inputs} | {self.find(c) for c in g.consts}

    def find(self, v):
        p = self.parent.setdefault(v, v)
        if p is v:
            return v
        root = self.find(p)
        self.parent[v] = root
        return root

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[ra] = rb

    def private(self, v) -> bool:
        """Neither written, nor escaping, nor sharing memory with an input or a constant."""
        r = self.find(v)
        return r not in self.written and r not in self.escaping and r not in self.external


def _used(g: Graph) -> set:
    live = set()
    for v in g.outputs:
        if isinstance(v, Var):
            live.add(v)
    for e in g.effects:
        if isinstance(e.value, Var):
            live.add(e.value)
    for gd in g.guards:
        live.add(gd.var)
    return live


def eliminate_dead_code(g: Graph) -> Graph:
    """Drop ops whose results nothing needs, and inputs nothing reads. Writes into memory that
    something live or external may share are kept, and so is every random draw: each returns
    the key the next one reads, and the last key is the generator's ``rng`` effect.

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: (x * 2, (x + 1).sum())[0])
        >>> _ = f(cr.ones(3)); len(f.graph_ir().ops)
        1
    """
    al = Aliases(g)
    live = _used(g)
    live_roots = {al.find(v) for v in live}
    kept = []
    for op in reversed(g.ops):
        needed = any(o in live for o in op.outs)
        if not needed and op.writes:
            needed = any(r in live_roots or r in al.external or r in al.escaping
                         for r in map(al.find, op.writes))
        if not needed:
            continue
        kept.append(op)
        for v in op.inputs():
            live.add(v)
            live_roots.add(al.find(v))
        for w in op.writes:
            live_roots.add(al.find(w))
    kept.reverse()
    inputs = [i for i in g.inputs if i.var in live]
    consts = {c: v for c, v in g.consts.items() if c in live}
    return g.replace(ops=kept, inputs=inputs, consts=consts)


def _key(t, consts):
    if isinstance(t, Var):
        return ("v", t.id)
    if isinstance(t, (tuple, list)):
        return (type(t).__name__, tuple(_key(x, consts) for x in t))
    if isinstance(t, dict):
        return ("d", tuple((k, _key(x, consts)) for k, x in t.items()))
    try:
        hash(t)
    except TypeError:
        return ("id", id(t))
    return ("lit", type(t).__name__, t) if not hasattr(t, "shape") else ("id", id(t))


def eliminate_common_subexpressions(g: Graph) -> Graph:
    """An op equal to an earlier one (same function, same inputs, same parameters) reuses its
    result. Writes and values that are written or escape are never merged (nor are random
    draws, which never share an input: each reads the key the one before it returned); the
    table is cleared at each write (a read after it may see different memory).

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: x.exp() + x.exp())
        >>> _ = f(cr.ones(3)); [op.name for op in f.graph_ir().ops]
        ['exp', 'add']
    """
    al = Aliases(g)
    table: dict = {}
    scalars: dict = {}  # Python arithmetic on numbers: no write can change it
    mapping: dict = {}
    ops = []
    for op in g.ops:
        args = substitute(op.args, mapping)
        kwargs = substitute(op.kwargs, mapping)
        if op.kind == "scalar":
            k = (op.name, _key(args, g.consts))
            prev = scalars.get(k)
            if prev is not None:
                mapping[op.outs[0]] = prev.outs[0]
                continue
            scalars[k] = new = op.copy(args=args, kwargs=kwargs)
            ops.append(new)
            continue
        if op.writes:
            table.clear()
            ops.append(op.copy(args=args, kwargs=kwargs))
            continue
        if all(al.private(o) for o in op.outs):
            k = (op.kind, op.name, id(op.fn), _key(args, g.consts), _key(kwargs, g.consts))
            prev = table.get(k)
            if prev is not None and len(prev.outs) == len(op.outs):
                for a, b in zip(op.outs, prev.outs):
                    mapping[a] = b
                continue
            new = op.copy(args=args, kwargs=kwargs)
            table[k] = new
            ops.append(new)
            continue
        ops.append(op.copy(args=args, kwargs=kwargs))
    return _remap(g, ops, mapping)


def _remap(g, ops, mapping):
    outputs = [mapping.get(v, v) if isinstance(v, Var) else v for v in g.outputs]
    effects = []
    for e in g.effects:
        if isinstance(e.value, Var) and e.value in mapping:
            e = Effect(e.kind, e.desc, mapping[e.value], e.apply)
        effects.append(e)
    guards, seen = [], set()
    for gd in g.guards:
        if gd.var in mapping:
            gd = Guard(mapping[gd.var], gd.expected, gd.desc, gd.kind, gd.pos)
        if (gd.var, gd.kind, gd.expected) in seen:
            continue  # the same condition read twice
        seen.add((gd.var, gd.kind, gd.expected))
        guards.append(gd)
    return g.replace(ops=ops, outputs=outputs, effects=effects, guards=guards)


def fold_constants(g: Graph) -> Graph:
    """Ops whose inputs are all constants (never written by the program) run once, at compile
    time; their results become constants.

    Example:
        >>> import chainrule as cr
        >>> from chainrule.jit.passes import fold_constants
        >>> f = cr.jit(lambda x: x + cr.ones(3).exp())
        >>> _ = f(cr.ones(3)); [op.name for op in f.graph_ir().ops]
        ['add']
    """
    al = Aliases(g)
    consts = dict(g.consts)
    frozen = {c for c in consts if al.find(c) not in al.written}
    ops = []
    for op in g.ops:
        ins = op.inputs()
        foldable = (op.kind in ("prim", "ufunc", "func", "method") and not op.writes
                    and all(v in frozen for v in ins)
                    and all(al.find(o) not in al.written and al.find(o) not in al.escaping
                            for o in op.outs))
        if foldable:
            args = substitute(op.args, consts)  # every Var read is a constant here
            kwargs = substitute(op.kwargs, consts)
            res = op.fn(*args, **kwargs)
            results = list(res) if len(op.outs) > 1 else [res]
            for o, r in zip(op.outs, results):
                if isinstance(r, np.generic):
                    r = np.asarray(r)
                consts[o] = r
                frozen.add(o)
            continue
        ops.append(op)
    return g.replace(ops=ops, consts=consts)


def _flat_slice(index, n):
    """(start, stop) of a step-1 slice (or a 1-tuple of one) over a length-n axis, else None."""
    if isinstance(index, tuple) and len(index) == 1:
        index = index[0]
    if not isinstance(index, slice) or index.step not in (None, 1):
        return None
    if not all(x is None or (isinstance(x, int) and not isinstance(x, bool))
               for x in (index.start, index.stop)):
        return None
    start, stop, _ = index.indices(n)
    return start, max(start, stop)


_ZERO_VIEWS = {"ndarray.reshape", "ndarray.transpose", "ndarray.ravel", "reshape", "permute"}
_ANY = {"np.logical_or.reduce", "np.any"}


def fold_known_zeros(g: Graph) -> Graph:
    """A bool read of an array known to be all zeros becomes a constant, and a guard on it
    that holds is dropped. The engine's cotangent of a slice is ``scatter_to`` (zeros with the
    slice set); attention's backward asks whether the part outside that slice (the
    probabilities' cotangent, when only the output is used) has any nonzero element: it
    cannot have, and the guard on it would otherwise stay in the middle of the backward
    (it reads data), where it keeps the replay from dropping what it replaces early. Values
    written in place are never assumed zero.

    Example:
        >>> import chainrule as cr
        >>> mha = cr.nn.MultiheadAttention(8, 2, batch_first=True)
        >>> f = cr.jit(lambda x: mha(x, x, x, need_weights=False)[0].sum().backward())
        >>> for _ in range(3): f(cr.randn(2, 4, 8))
        >>> [gd.desc for gd in f.graph_ir().guards if "attention" in gd.desc]
        []
    """
    al = Aliases(g)
    nonzero: dict = {}  # Var -> (start, stop): 1-D, zero outside that flat range
    zero: set = set()
    consts = dict(g.consts)
    ops = []

    def clean(v):
        return isinstance(v, Var) and v.scalar is None and al.find(v) not in al.written

    for op in g.ops:
        out = op.outs[0] if len(op.outs) == 1 else None
        args = op.args[1:] if op.kind == "prim" else op.args
        if out is None or op.writes or not clean(out) or not args or not clean(args[0]):
            ops.append(op)
            continue
        x = args[0]
        if op.kind == "prim" and op.name == "scatter_to" and len(op.kwargs.get("shape", ())) == 1:
            rng = _flat_slice(op.kwargs.get("index"), op.kwargs["shape"][0])
            if rng is not None:
                nonzero[out] = rng
        elif x in nonzero and ((op.kind == "method" and op.name == "ndarray.__getitem__"
                                and len(args) == 2) or (op.kind == "prim" and op.name == "getitem"
                                                        and "index" in op.kwargs)):
            index = args[1] if op.kind == "method" else op.kwargs["index"]
            rng = _flat_slice(index, x.shape[0])
            lo, hi = nonzero[x]
            if rng is not None and (rng[1] <= lo or rng[0] >= hi or rng[0] == rng[1]):
                zero.add(out)
        elif x in zero and op.name in _ZERO_VIEWS:
            zero.add(out)
        elif x in zero and op.name in _ANY and op.kwargs.get("axis", None) is None \
                and out.shape == () and len(args) == 1 \
                and set(op.kwargs) <= {"axis", "dtype", "keepdims"}:  # no initial=, where=
            consts[out] = np.array(False)
            continue
        ops.append(op)
    guards = [gd for gd in g.guards
              if not (gd.var in consts and gd.var not in g.consts and gd.kind != "value"
                      and bool(consts[gd.var]) == bool(gd.expected))]
    return g.replace(ops=ops, consts=consts, guards=guards)


# (op name, identity literal, which side may hold it): x*1, 1*x, x+0, 0+x, x-0, x/1, x**1
_IDENTITIES = {
    "np.multiply": (1, (0, 1)), "mul": (1, (0, 1)),
    "np.add": (0, (0, 1)), "add": (0, (0, 1)),
    "np.subtract": (0, (1,)), "sub": (0, (1,)),
    "np.true_divide": (1, (1,)), "np.divide": (1, (1,)), "div": (1, (1,)),
    "np.power": (1, (1,)), "pow": (1, (1,)),
}


def _literal_value(t, consts):
    if isinstance(t, Var):
        v = consts.get(t)
        if v is not None and getattr(v, "ndim", 1) == 0 and getattr(v, "size", 0) == 1:
            return v.item()
        return None
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return t
    return None


def _may_share(al, out, other) -> bool:
    """Whether ``out`` may become ``other`` itself: neither is written in place, ``other``
    is no input or constant, and they do not both escape (two results the user may change
    independently)."""
    ro, rx = al.find(out), al.find(other)
    return (ro not in al.written and rx not in al.written and rx not in al.external
            and ro not in al.external and not (ro in al.escaping and rx in al.escaping))


def simplify_algebra(g: Graph) -> Graph:
    """Identities: ``x*1``, ``1*x``, ``x+0``, ``0+x``, ``x-0``, ``x/1``, ``x**1`` become ``x``
    when the result has x's shape and dtype, neither is written in place, x is no input or
    constant, and they do not both escape (a fresh array must stay fresh where a caller may
    change it).

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: x.exp() * 1.0 + 0.0)
        >>> _ = f(cr.ones(3)); [op.name for op in f.graph_ir().ops]
        ['exp']
    """
    al = Aliases(g)
    mapping: dict = {}
    ops = []
    for op in g.ops:
        args = substitute(op.args, mapping)
        kwargs = substitute(op.kwargs, mapping)
        rule = _IDENTITIES.get(op.name)
        if rule is not None and not op.writes and not kwargs and len(op.outs) == 1:
            operands = args[1:] if op.kind == "prim" else args
            out = op.outs[0]
            ident, sides = rule
            if len(operands) == 2:
                for side in sides:
                    other = operands[1 - side]
                    if (_literal_value(operands[side], g.consts) == ident
                            and isinstance(other, Var) and other.scalar is None
                            and other.shape == out.shape and other.dtype == out.dtype
                            and _may_share(al, out, other)):
                        mapping[out] = other
                        break
                if out in mapping:
                    continue
        ops.append(op.copy(args=args, kwargs=kwargs))
    return _remap(g, ops, mapping)


def elide_copies(g: Graph) -> Graph:
    """``y = x.copy()`` becomes ``y = x`` when x is memory the program allocated, read by
    nothing else, and shared with nothing (the engine copies a gradient before storing it
    in ``.grad`` because eagerly it cannot know that nobody else holds it; the program can).

    Example:
        >>> import chainrule as cr
        >>> w = cr.ones(3, requires_grad=True)
        >>> def step():
        ...     w.grad = None; (w * w).sum().backward()
        >>> f = cr.jit(step); f(); f()
        >>> [op.name for op in f.graph_ir().ops]  # 2w as w + w: no copy, no dead forward
        ['np.multiply', 'np.add']
    """
    al = Aliases(g)
    uses: dict = {}
    members: dict = {}
    for op in g.ops:
        for v in op.inputs():
            uses[v] = uses.get(v, 0) + 1
        for v in op.outs:
            members.setdefault(al.find(v), []).append(v)
    for v in _used(g):
        uses[v] = uses.get(v, 0) + 1
    mapping: dict = {}
    ops = []
    for op in g.ops:
        if op.kind == "method" and op.name == "ndarray.copy" and len(op.args) == 1 \
                and not op.kwargs:
            x = op.args[0]
            r = al.find(x) if isinstance(x, Var) else None
            if (r is not None and x.scalar is None and uses.get(x) == 1
                    and r not in al.external and r not in al.written
                    and members.get(r) == [x]):
                mapping[op.outs[0]] = x
                continue
        # a later in-place write to the copy (clip_grad_norm_ scaling a gradient the engine
        # copied into .grad) now writes x: its target is renamed as its operands are
        ops.append(op.copy(args=substitute(op.args, mapping),
                           kwargs=substitute(op.kwargs, mapping),
                           writes=substitute(op.writes, mapping)))
    return _remap(g, ops, mapping)


def hoist_guards(g: Graph) -> Graph:
    """Move what the guards read to the front, so that a replay whose guard fails stops before
    it writes anything: scalar arithmetic (it reads only scalar inputs) and, for a bool read of
    an array, the ops it was computed by, when those read nothing written before the read.
    A read that cannot move (it depends on something written before it) stays where it is if
    no op before it writes memory the program did not allocate (a random draw changes nothing
    outside: its key is written back after the run). The backend checks each guard right after
    the op producing its value. A guard that fits neither raises ValueError naming it (the
    caller turns it into a graph break).

    Example:
        >>> import chainrule as cr
        >>> opt_lr = {"lr": 0.5}
        >>> f = cr.jit(lambda x: x * 2 if x.shape[0] > 1 else x)
        >>> _ = f(cr.ones(2)); f.graph_ir().guards
        []
    """
    al = Aliases(g)
    producer = {}
    for i, op in enumerate(g.ops):
        for o in op.outs:
            producer[o] = i
    front = {i for i, op in enumerate(g.ops) if op.kind == "scalar"}
    stay = []
    for gd in g.guards:
        if gd.var.scalar is not None:
            continue
        pos = min(gd.pos, len(g.ops))
        written_before = {al.find(w) for op in g.ops[:pos] for w in op.writes}
        slice_ops = set()
        stack = [gd.var]
        movable = True
        while stack and movable:
            v = stack.pop()
            i = producer.get(v)
            if i is None or i in front or i in slice_ops:
                continue
            op = g.ops[i]
            if op.effect or any(al.find(x) in written_before for x in op.inputs()):
                movable = False
            slice_ops.add(i)
            stack.extend(op.inputs())
        if movable:
            front |= slice_ops
        else:
            stay.append(gd)
    first = [op for i, op in enumerate(g.ops) if i in front]
    rest = [op for i, op in enumerate(g.ops) if i not in front]
    ops = first + rest
    for gd in stay:
        at = next(i for i, op in enumerate(ops) if gd.var in op.outs)
        for op in ops[:at]:
            if any(al.find(w) in al.external for w in op.writes):
                raise ValueError(f"{gd.desc}: the value read depends on the data, and the "
                                 f"program changes state before it ({op.name})")
    return g.replace(ops=ops)


_ELEMENTWISE_PRIMS = None


def _is_elementwise(op) -> bool:
    global _ELEMENTWISE_PRIMS
    if _ELEMENTWISE_PRIMS is None:
        from ..primitives import REGISTRY  # noqa: PLC0415

        _ELEMENTWISE_PRIMS = {n for n, p in REGISTRY.items() if p.kind == "elementwise"}
    if op.writes or len(op.outs) != 1 or op.outs[0].scalar is not None:
        return False
    if op.kind == "ufunc":
        return "." not in op.name[3:]  # np.add, not np.add.reduce
    return op.kind == "prim" and op.name in _ELEMENTWISE_PRIMS


def group_elementwise(g: Graph) -> Graph:
    """Mark chains of elementwise ops (each feeding the next, the intermediate used nowhere
    else) with a group number: the unit a fusing backend compiles into one loop. Nothing is
    fused here.

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: ((x * 2).exp() + 1).sum())
        >>> _ = f(cr.ones(3)); [op.group for op in f.graph_ir().ops]
        [1, 1, 1, None]
    """
    uses: dict = {}
    for op in g.ops:
        for v in op.inputs():
            uses[v] = uses.get(v, 0) + 1
    for v in g.outputs:
        if isinstance(v, Var):
            uses[v] = uses.get(v, 0) + 1
    for e in g.effects:
        if isinstance(e.value, Var):
            uses[e.value] = uses.get(e.value, 0) + 1
    ops = [op.copy(group=None) for op in g.ops]
    group = 0
    i = 0
    while i < len(ops):
        j = i
        while (j + 1 < len(ops) and _is_elementwise(ops[j]) and _is_elementwise(ops[j + 1])
               and uses.get(ops[j].outs[0], 0) == 1 and ops[j].outs[0] in ops[j + 1].inputs()
               and ops[j].outs[0].shape == ops[j + 1].outs[0].shape):
            j += 1
        if j > i:
            group += 1
            for k in range(i, j + 1):
                ops[k].group = group
        i = j + 1
    return g.replace(ops=ops)


def _nbytes(v) -> int:
    if v.scalar is not None or v.shape is None or v.dtype is None:
        return 0
    n = np.dtype(v.dtype).itemsize
    for d in v.shape:
        n *= d
    return n


def live_bytes(g: Graph, al=None) -> list:
    """Bytes held by the program's own allocations while each op runs (its inputs and its
    fresh outputs both count), if every allocation is freed after the last use of anything
    sharing its memory, as eager execution frees it; escaping values live to the end.
    Inputs and constants are not counted (they exist before and after the call)."""
    al = al or Aliases(g)
    n = len(g.ops)
    last = _class_last_use(g, al)
    delta = [0] * (n + 1)
    for i, op in enumerate(g.ops):
        if not _fresh(op) or op.kind == "scalar":
            continue
        for o in op.outs:
            size = _nbytes(o)
            r = al.find(o)
            end = n - 1 if r in al.escaping else min(max(last.get(r, i), i), n - 1)
            delta[i] += size
            delta[end + 1] -= size
    live, cur = [], 0
    for i in range(n):
        cur += delta[i]
        live.append(cur)
    return live


def _class_last_use(g: Graph, al) -> dict:
    last: dict = {}
    for i, op in enumerate(g.ops):
        for v in op.inputs() + list(op.writes) + list(op.outs):
            if v.scalar is None:
                last[al.find(v)] = i
    for gd in g.guards:
        r = al.find(gd.var)
        last[r] = max(last.get(r, -1), 0)
    return last


def plan_memory(g: Graph) -> Graph:
    """Liveness and buffer reuse: each ufunc result (:func:`as_ufunc`) private to the program
    (not written, not escaping, not sharing an input's memory) is written with ``out=`` into a
    buffer of the same shape and dtype that an earlier private result no longer needs, when
    that does not raise the program's peak memory: a buffer is freed after the last use of
    everything sharing it, and reusing it at a later op holds it through the ops in between,
    which is allowed only while the bytes live there (:func:`live_bytes`) stay at most the
    peak of a program that reuses nothing. A buffer whose last reader is the op itself is
    reused at once (the ufunc writes over its dying input), which lowers the peak. Without a
    reusable buffer, the result opens a new one (the numpy backend lets the op allocate it).
    ``g.nbuffers`` and ``g.buffer_specs`` say what the buffers are.

    Example:
        >>> import chainrule as cr
        >>> w = cr.ones(3, requires_grad=True)
        >>> opt = cr.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
        >>> def step():
        ...     opt.zero_grad(); (w * w).sum().backward(); opt.step()
        >>> f = cr.jit(step)
        >>> for _ in range(3): f()
        >>> f.graph_ir().nbuffers  # the backward's temporary
        1
    """
    al = Aliases(g)
    last = _class_last_use(g, al)
    live = live_bytes(g, al)
    peak = max(live, default=0)
    plannable = {}
    for i, op in enumerate(g.ops):
        if as_ufunc(op) is not None:
            o = op.outs[0]
            r = al.find(o)
            if (r not in al.written and r not in al.escaping and r not in al.external
                    and o.shape is not None):
                plannable[i] = r
    free: dict = {}  # (shape, dtype) -> [(buffer index, op index after which it is free)]
    specs = []
    release: dict = {}  # op index -> [(key, buffer)]
    ops = []
    for i, op in enumerate(g.ops):
        new = op.copy()
        if i in plannable:
            o = op.outs[0]
            key = (o.shape, str(o.dtype))
            size = _nbytes(o)
            for _r, k, b in release.pop(i, ()):  # dying at this op: write over it
                free.setdefault(k, []).append((b, i))
            pool = free.get(key, [])
            b = None
            for j in range(len(pool) - 1, -1, -1):  # the most recently freed first
                cand, since = pool[j]
                gap = live[since + 1:i]
                if not gap or max(gap) + size <= peak:
                    b = cand
                    del pool[j]
                    for t in range(since + 1, i):
                        live[t] += size
                    break
            if b is None:
                b = len(specs)
                specs.append((o.shape, o.dtype))
            new.out_buf = b
            r = plannable[i]
            end = last.get(r, i)
            release.setdefault(end, []).append((r, key, b))
        ops.append(new)
        for _r, key, b in release.pop(i, ()):
            free.setdefault(key, []).append((b, i))
    out = g.replace(ops=ops)
    out.nbuffers = len(specs)
    out.buffer_specs = specs
    return out


PIPELINE = (eliminate_dead_code, fold_constants, fold_known_zeros, simplify_algebra,
            eliminate_common_subexpressions, elide_copies, eliminate_dead_code, hoist_guards,
            group_elementwise, plan_memory)
"""The passes a compile runs, in order."""


def optimise(g: Graph):
    """Run :data:`PIPELINE`; returns the graph and the op count after each pass."""
    counts = [("traced", len(g.ops))]
    for p in PIPELINE:
        g = p(g)
        counts.append((p.__name__, len(g.ops)))
    return g, counts
