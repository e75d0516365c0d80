"""Backend ``"c"``: the numpy backend's program with its fusion groups compiled to C kernels.

The fusion groups (:func:`chainrule.jit.fuse.find_kernels`) of a planned graph are rendered to
C (:mod:`chainrule.jit.render_c`), compiled together as one cffi module through the kernel
cache (:mod:`chainrule.jit.kcache`), and each group's ops are replaced by one op calling its
kernel; memory is planned again over the new op list, and the result goes through the numpy
backend's code generator, so every op that is not fused runs exactly as it does there.
"""

from __future__ import annotations

import importlib.util
import os
import sysconfig

from ..backend import np
from . import (
    cblas,
    cconv,
    cgemm,
    closs,
    cpool,
    creduce,
    crnn,
    cupdate,
    kcache,
    numpy_backend,
    render_c,
)
from .fuse import find_kernels
from .ir import Op
from .passes import plan_memory

# modules putting C loops in place of whole ops: each has source(), wrappers(lib, ffi) and
# PRIMS (primitive names) and/or FUNCS (names of recorded kernel ops, "kernel.<name>")
_OP_MODULES = (cupdate, crnn, cconv, cpool, creduce, cgemm, cblas, closs)

# cgemm.fuse_linear_relu before the fusion groups (benchmarks/ab_jit_mlp.py's c-norelu: off)
FUSE_RELU = [True]
# closs.fuse_cross_entropy before the fusion groups (ab_jit_mlp.py's c-noloss: off)
FUSE_LOSS = [True]


def _replaced_by(op):
    """The module with a C version of ``op``, or None."""
    for m in _OP_MODULES:
        if (op.kind == "prim" and op.name in getattr(m, "PRIMS", ())) or (
                op.kind == "func" and op.name in getattr(m, "FUNCS", ())):
            return m
    return None


def unavailable() -> str | None:
    """Why the C backend cannot run here (None when it can): cffi missing, or no compiler.

    Example:
        >>> unavailable() is None or isinstance(unavailable(), str)
        True
    """
    if importlib.util.find_spec("cffi") is None:
        return "cffi is not installed (pip install 'chainrule[jit]')"
    if kcache.compiler() is None:
        return "no C compiler found (install gcc, or set CC)"
    if not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        return "Python's C headers (Python.h) are not installed (e.g. the python3-dev package)"
    return None


class KernelInfo:
    """What a compile built: kernels, fused ops, whether the compiler ran, its C source."""

    def __init__(self, kernels, fused, compiled, source, notes=()):
        self.kernels = kernels
        self.fused = fused
        self.compiled = compiled
        self.source = source
        self.notes = tuple(notes)  # callables returning lines for explain() (cgemm's layouts)

    def lines(self) -> list:
        """What the C loops chose at run time so far (``explain()`` shows it)."""
        return [line for f in self.notes for line in f()]


def _wrapper(fn, ffi, spec, name):
    """A Python function calling kernel ``fn``: inputs made C-contiguous in their dtype,
    fresh outputs, the call (cffi releases the GIL), the outputs returned."""
    env = {"_k": fn, "_fb": ffi.from_buffer, "_c": np.ascontiguousarray, "_empty": np.empty}
    params, call = [], []
    for k, inp in enumerate(spec.inputs):
        params.append(f"a{k}")
        if inp[0] == "array":
            env[f"_t{k}"] = np.dtype(inp[1])
            call.append(f"_fb(_c(a{k}, _t{k}))")
        else:
            call.append(f"a{k}")
    lines = [f"def {name}({', '.join(params)}):"]
    outs = []
    shapes = [spec.shape] * len(spec.outputs) + [spec.shape[-1:]] * len(spec.colsums)
    for j, (s, shape) in enumerate(zip(spec.outputs + list(spec.colsums), shapes)):
        env[f"_o{j}"] = np.dtype(spec.stmts[s][2])
        lines.append(f"    o{j} = _empty({shape!r}, _o{j})")
        call.append(f"_fb(o{j}, require_writable=True)")
        outs.append(f"o{j}")
    lines.append(f"    _k({', '.join(call)})")
    lines.append(f"    return {', '.join(outs)}")
    exec(compile("\n".join(lines) + "\n", f"<chainrule kernel {name}>", "exec"), env)
    w = env[name]
    w.chainrule_fresh = True  # its outputs are new memory (passes._fresh reads this)
    return w


def compile_graph(g):
    """Compile the planned graph ``g``: its fusion groups as C kernels, the rest as the numpy
    backend does. Returns a :class:`~chainrule.jit.numpy_backend.Program` whose ``kernels``
    attribute is a :class:`KernelInfo` and ``ir`` the graph it was given.

    Example:
        >>> import chainrule as cr
        >>> f = cr.jit(lambda x: ((x * 2.0).tanh() + 1.0).sum(), backend="numpy")
        >>> _ = f(cr.ones(5))
        >>> prog = compile_graph(f.graph_ir())  # doctest: +SKIP
        >>> [op.name for op in prog.graph.ops]  # doctest: +SKIP
        ['kernel0[k0: 3 ops]', 'sum']
    """
    ir = g
    g = creduce.fuse_layer_norm(g)  # layer norms with their affine steps, as one C loop each
    g = cgemm.fold_residual_adds(g)  # r + linear(x, w, b) as one product with beta 1
    if FUSE_RELU[0]:
        g = cgemm.fuse_linear_relu(g)  # relu(linear(...)) as one call
    if FUSE_LOSS[0]:
        g = closs.fuse_cross_entropy(g)  # cross-entropy and its gradient as one C pass
        g = closs.fuse_target_checks(g)  # nll_loss's checks of the labels as one C call
    if cupdate.GROUP_SGD[0]:
        g = cupdate.group_sgd(g)  # an SGD step's plain updates as one call
    # a lone op is worth a kernel only where its loop runs on several threads
    groups = find_kernels(g, min_ops=2, min_size=render_c.PARALLEL_WORK)
    whole_ops = [i for i, op in enumerate(g.ops) if _replaced_by(op) is not None]
    if not groups and not whole_ops:
        prog = numpy_backend.compile_graph(g)
        prog.kernels = KernelInfo(0, 0, False, "")
        return prog
    names: dict = {}  # spec key -> C function name
    decls, bodies = [], []
    for grp in groups:
        k = grp.spec.key()
        if k not in names:
            names[k] = f"k{len(names)}"
            decls.append(render_c.signature(grp.spec, names[k]) + ";")
            bodies.append(render_c.render(grp.spec, names[k]))
    source = render_c.PRELUDE + "\n".join(bodies)
    used = [m for m in _OP_MODULES if any(_replaced_by(g.ops[i]) is m for i in whole_ops)]
    for m in used:
        mdecl, msrc = m.source()
        decls.append(mdecl)
        source += msrc
    mod, compiled = kcache.load("\n".join(decls), source)
    replaced: dict = {}  # op index -> ops to put there (None: drop)
    if whole_ops:
        impls = {}
        for m in used:
            impls.update(m.wrappers(mod.lib, mod.ffi))
        for i in whole_ops:
            replaced[i] = [g.ops[i].copy(fn=impls[g.ops[i].name])]
    for n, grp in enumerate(groups):
        fname = names[grp.spec.key()]
        fn = _wrapper(getattr(mod.lib, fname), mod.ffi, grp.spec, f"kernel{n}")
        op = Op("func", f"kernel{n}[{fname}: {len(grp.members)} ops]", fn, tuple(grp.in_vars),
                {}, tuple(grp.out_vars))
        # the ops moved after the kernel, each as its C version where it has one (a bias
        # gradient's sum_to, a product reading the kernel's output)
        folded = set(grp.folded)  # sum_to ops the kernel's column sums replace
        moved = [x for i in grp.after if i not in folded
                 for x in (replaced.get(i) or [g.ops[i]])]
        for i in grp.members[:-1] + grp.after + grp.folded:
            replaced[i] = None
        replaced[grp.members[-1]] = [op] + moved
    ops = []
    for i, op in enumerate(g.ops):
        if i not in replaced:
            ops.append(op)
        elif replaced[i] is not None:
            ops.extend(replaced[i])
    fused = g.replace(ops=[op.copy(out_buf=None, group=None) for op in ops])
    fused = plan_memory(fused)
    prog = numpy_backend.compile_graph(fused)
    # OpenBLAS on its own threads or on one for this step: tried on the first calls
    prog.run = cblas.tuned(prog.run)
    prog.ir = ir  # the optimised IR, as every backend reads it (graph_ir())
    prog.kernels = KernelInfo(len(groups) + len(whole_ops),
                              sum(len(x.members) for x in groups) + len(whole_ops), compiled,
                              source, [f.notes for f in impls.values() if hasattr(f, "notes")]
                              if whole_ops else ())
    return prog
