"""Backend ``"numpy"``: the planned program as one generated Python function over raw arrays.

Each op becomes one line (``v7 = f7(np, v3, v5)`` for a primitive's impl, ``v8 = f8(v7, v2,
out=b0)`` for a ufunc written into a planned buffer); the guards are checked after the ops
they read and before any write; no Tensor, no graph node, no Python dispatch per op. The
source is kept (``Program.source``) for inspection.
"""

from __future__ import annotations

import math

from ..backend import np
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
    """A compiled graph: ``run(*input_values) -> (outputs, effect_values) | GuardFailed``."""

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


def _lit(t, names: _Names, consts) -> str:
    if isinstance(t, Var):
        if t in consts:
            return f"c{t.id}"
        return f"v{t.id}"
    if t is None or isinstance(t, (bool, str)):
        return repr(t)
    if isinstance(t, int):
        return repr(t)
    if isinstance(t, float) and math.isfinite(t):
        return repr(t)
    if isinstance(t, tuple):
        inner = ", ".join(_lit(x, names, consts) for x in t)
        return f"({inner},)" if len(t) == 1 else f"({inner})"
    if isinstance(t, list):
        return "[" + ", ".join(_lit(x, names, consts) for x in t) + "]"
    if isinstance(t, dict) and all(isinstance(k, str) for k in t):
        return "{" + ", ".join(f"{k!r}: {_lit(x, names, consts)}" for k, x in t.items()) + "}"
    if t is np:
        return "np"
    return names.bind(t)


def _call(op, names, consts, extra="") -> str:
    fname = names.bind(op.fn, "f")
    args = [_lit(a, names, consts) for a in op.args]
    kw = op.kwargs
    if kw and all(isinstance(k, str) and k.isidentifier() for k in kw):
        args += [f"{k}={_lit(v, names, consts)}" for k, v in kw.items()]
    elif kw:
        args.append(f"**{_lit(kw, names, consts)}")
    if extra:
        args.append(extra)
    return f"{fname}({', '.join(args)})"


def compile_graph(g: Graph) -> Program:
    """Generate and compile the program's Python source."""
    names = _Names()
    consts = g.consts
    for c, v in consts.items():
        names.env[f"c{c.id}"] = v
    # planned buffers are allocated at their first use in each call and dropped after their
    # last (reused in between): no memory is held between calls
    names.env["_empty"] = np.empty
    first_buf: dict = {}
    last_buf: dict = {}
    for i, op in enumerate(g.ops):
        if op.out_buf is not None:
            first_buf.setdefault(op.out_buf, i)
            last_buf[op.out_buf] = i
    params = ", ".join(f"v{i.var.id}" for i in g.inputs)
    lines = [f"def program({params}):"]
    checks: dict = {}  # op index (-1: before the first op) -> guards checked after it
    producer = {o: i for i, op in enumerate(g.ops) for o in op.outs}
    for gd in g.guards:
        checks.setdefault(producer.get(gd.var, -1), []).append(gd)

    def guards(at):
        for gd in checks.get(at, ()):
            desc = names.bind(gd.desc, "d")
            v = _lit(gd.var, names, consts)
            if gd.kind == "value":
                exp = names.bind((type(gd.expected), gd.expected), "e")
                lines.append(f"    if (type({v}), {v}) != {exp}:")
            else:
                exp = names.bind(bool(gd.expected), "e")
                lines.append(f"    if bool({v}) is not {exp}:")
            lines.append(f"        return _GuardFailed({desc}, {v})")

    # liveness: each local is dropped after its last use, so intermediates are freed as
    # eagerly as the engine frees them (outputs and effect values live to the end)
    keep = {v for v in g.outputs if isinstance(v, Var)}
    keep |= {e.value for e in g.effects if isinstance(e.value, Var)}
    last: dict = {}
    for i, op in enumerate(g.ops):
        for v in op.inputs() + list(op.writes) + list(op.outs):
            last[v] = i
    for gd in g.guards:
        last[gd.var] = max(last.get(gd.var, -1), producer.get(gd.var, -1))
    dead: dict = {}
    for v, i in last.items():
        if v not in keep and v not in consts:
            dead.setdefault(i, []).append(f"v{v.id}")

    for k, i in last_buf.items():
        dead.setdefault(i, []).append(f"b{k}")

    guards(-1)
    for i, op in enumerate(g.ops):
        lhs = ", ".join(f"v{o.id}" for o in op.outs)
        if op.out_buf is not None and first_buf[op.out_buf] == i:
            shape, dtype = g.buffer_specs[op.out_buf]
            lines.append(f"    b{op.out_buf} = _empty({shape!r}, {names.bind(dtype, 't')})")
        if op.writes:  # in place: each out is the array its write went into
            targets = ", ".join(_lit(w, names, consts) for w in op.writes)
            lines.append(f"    {_call(op, names, consts)}")
            lines.append(f"    {lhs} = {targets}")
        elif as_ufunc(op) is not None and op.kind == "prim":  # the ufunc itself, no wrapper
            ufunc = names.bind(getattr(np, as_ufunc(op)), "u")
            args = [_lit(a, names, consts) for a in op.args[1:]]
            if op.out_buf is not None:
                args.append(f"out=b{op.out_buf}")
            lines.append(f"    {lhs} = {ufunc}({', '.join(args)})")
        elif op.out_buf is not None:
            lines.append(f"    {lhs} = {_call(op, names, consts, f'out=b{op.out_buf}')}")
        else:
            lines.append(f"    {lhs} = {_call(op, names, consts)}")
        guards(i)
        if i in dead:
            lines.append(f"    del {', '.join(sorted(dead[i]))}")
    outs = ", ".join(_lit(o, names, consts) for o in g.outputs)
    effs = ", ".join(_lit(e.value, names, consts) for e in g.effects)
    lines.append(f"    return ({outs}{',' if len(g.outputs) == 1 else ''}), "
                 f"({effs}{',' if len(g.effects) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    code = compile(source, f"<chainrule.jit {g.name}>", "exec")
    exec(code, names.env)
    return Program(g, names.env["program"], source)
