"""C renderer: a :class:`~chainrule.jit.fuse.KernelSpec` becomes one C function, one loop nest.

The function takes a pointer per array input (C-contiguous, its own static shape, broadcast
to the iteration shape by index arithmetic on compile-time constants), a value per dynamic
scalar input, and a pointer per output; it writes every output in one pass over the flat
index, with ``#pragma omp parallel for`` when the loop is big enough to pay for waking the
threads. Where an input is broadcast along leading dims (a bias or a layer norm's weight: a
row vector) or along the last dim (a per-row value), the pass is a loop over rows around a
vector loop over the last dim, so that each input is read in contiguous runs (``p[j]``), not
through ``p[i % cols]``, which gcc vectorises as a gather (3x slower on the transformer's
layer-norm affine kernels). A flat kernel calling a vector math function among a chain of
arithmetic (GELU and its backward) runs in tiles, one loop per run of statements between the
calls and one per call (``SPLIT_STMTS``). Every statement computes in the dtype NumPy's ufunc
loop uses, in NumPy's order, so with ``-ffp-contract=off`` (no fused multiply-add) and no
fast-math the arithmetic (``+ - * /``, ``sqrt``, comparisons, ``maximum``/``minimum``) is
bitwise NumPy's; the transcendental functions are the C library's (within an ulp or two of
NumPy's own SIMD versions).

Nothing here knows the IR or how the source is compiled (``cbackend``, ``kcache``): a CUDA
renderer can read the same spec.
"""

from __future__ import annotations

import math

from ..backend import np

CTYPE = {"float32": "float", "float64": "double", "bool": "unsigned char"}
# the type of a value inside the loop: a bool is an int there (0 or 1), because gcc 12 does not
# vectorise a loop converting an unsigned char temporary to float
LOCAL = {"float32": "float", "float64": "double", "bool": "int"}
_SCALAR_CTYPE = {"float": "double", "int": "long long", "bool": "int"}
_SUFFIX = {"float32": "f", "float64": ""}

# work (elements x statements) below which the loop runs on one thread: with idle threads
# asleep (OMP_WAIT_POLICY=PASSIVE, see kcache), waking one costs ~40 us on the shared VMs
# (backend/threads.py measured 37 us), about the time of this much work on one core
PARALLEL_WORK = 1 << 18

# the vector versions of the math functions (glibc's libmvec), so the loop vectorises; math.h
# declares them only under -ffast-math, which would also change the arithmetic
_VECMATH = VECMATH = ("exp", "log", "tanh", "log1p", "expm1", "sin", "cos")
PRELUDE = "#include <math.h>\n#include <stddef.h>\n" + "".join(
    f"#pragma omp declare simd notinbranch\n{t} {f}{s}({t});\n"
    for f in _VECMATH for t, s in (("float", "f"), ("double", "")))


# the math function each macro name stands for, per float type (float32, float64)
_MATH = {"SQRT": ("sqrtf", "sqrt"), "TANH": ("tanhf", "tanh"), "EXP": ("expf", "exp"),
         "LOG": ("logf", "log")}


# the name prefix per_float_type gives each float type's functions, by NumPy dtype
C_PREFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def per_float_type(decl: str, body: str, *math: str) -> tuple[str, str]:
    """(declarations, C source) of hand-written loops, once per float type: ``NAME`` in
    ``decl`` and ``body`` becomes ``f32`` / ``f64``, the macro ``T`` the C type, and each
    macro named in ``math`` (``"SQRT"``, ``"TANH"``, ``"EXP"``, ``"LOG"``) that type's C
    library function.

    Example:
        >>> d, s = per_float_type("void NAME_root(void *, ptrdiff_t);",
        ...                       "void NAME_root(void *p, ptrdiff_t n) { T *x = (T *)p; "
        ...                       "for (ptrdiff_t i = 0; i < n; i++) x[i] = SQRT(x[i]); }",
        ...                       "SQRT")
        >>> d
        'void f32_root(void *, ptrdiff_t);void f64_root(void *, ptrdiff_t);'
        >>> "#define SQRT sqrtf" in s and "#define SQRT sqrt\\n" in s
        True
    """
    decls, src = [], []
    for k, (name, t) in enumerate((("f32", "float"), ("f64", "double"))):
        defs = "".join(f"#define {m} {_MATH[m][k]}\n" for m in math)
        undefs = "".join(f"#undef {m}\n" for m in ("T",) + math)
        decls.append(decl.replace("NAME", name))
        src.append(f"#define T {t}\n{defs}{body.replace('NAME', name)}{undefs}")
    return "".join(decls), "".join(src)


def _strides(shape):
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _index(in_shape, out_shape, var: str = "i") -> str:
    """The flat index into an input of ``in_shape`` broadcast to ``out_shape`` at flat output
    index ``var`` (constants folded: ``i``, ``0``, ``i % 64``, ``i / 10``...)."""
    if tuple(in_shape) == tuple(out_shape):
        return var
    size = math.prod(in_shape)
    if size == 1:
        return "0"
    lead = len(out_shape) - len(in_shape)
    padded = (1,) * lead + tuple(in_shape)
    ost = _strides(out_shape)
    ist = _strides(padded)
    terms = []
    # merge runs of kept dims: a kept trailing block is i % block
    for d, (n, s_out, s_in) in enumerate(zip(padded, ost, ist)):
        if n == 1:
            continue
        expr = var
        if s_out != 1:
            expr = f"({var} / {s_out})"
        if d > 0 and math.prod(out_shape[d:]) != math.prod(out_shape):
            expr = f"({expr} % {n})"
        terms.append(expr if s_in == 1 else f"{expr} * {s_in}")
    return " + ".join(terms) or "0"


# the shortest last dim for which a kernel with broadcast inputs loops over rows and columns
MIN_ROW = 16


def _row_index(in_shape, out_shape) -> str:
    """The flat index into an input of ``in_shape`` broadcast to ``out_shape`` in the two-level
    loop (``r`` over the rows, ``j`` over the last dim, ``i = r * cols + j``): an input with the
    whole last dim is read at ``j`` plus its row's offset, one broadcast along it at its row's
    index alone, so that a row vector (a bias, a layer norm's weight) is read as one contiguous
    run per row, not through ``i % cols``."""
    if tuple(in_shape) == tuple(out_shape):
        return "i"
    in_shape = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    row = _index(in_shape[:-1], out_shape[:-1], "r")
    if in_shape[-1] == 1:
        return row
    if row == "0":
        return "j"
    return f"({row}) * {in_shape[-1]} + j"


def _lit(value, dtype) -> str:
    ct = CTYPE[dtype]
    if isinstance(value, bool):
        return f"(({ct}){int(value)})"
    if isinstance(value, int):
        return f"(({ct}){int(value)}LL)"
    value = float(value)  # np.float64 too (its dtype already counted in the loop's)
    if math.isnan(value):
        return f"(({ct})NAN)"
    if math.isinf(value):
        return f"(({ct})({'-' if value < 0 else ''}INFINITY))"
    return f"(({ct}){value!r})"


# C templates: {x}, {y}, {z} the operands (already in the loop's type), {f} the math
# functions' suffix ("f" for float), {t} the loop's C type. NumPy's maximum/minimum (and relu,
# maximum(x, 0)): a NaN operand is the result
_TEMPLATES = {
    "add": "({x} + {y})", "subtract": "({x} - {y})", "multiply": "({x} * {y})",
    "true_divide": "({x} / {y})", "divide": "({x} / {y})", "greater": "({x} > {y})",
    "greater_equal": "({x} >= {y})", "less": "({x} < {y})", "less_equal": "({x} <= {y})",
    "equal": "({x} == {y})", "not_equal": "({x} != {y})", "negative": "(-{x})",
    "absolute": "fabs{f}({x})", "square": "({x} * {x})", "reciprocal": "(({t})1 / {x})",
    "maximum": "(({x} >= {y} || {x} != {x}) ? {x} : {y})",
    "minimum": "(({x} <= {y} || {x} != {x}) ? {x} : {y})",
    "relu": "(({x} >= 0 || {x} != {x}) ? {x} : ({t})0)",
    "logical_and": "(({x} != 0) & ({y} != 0))", "logical_or": "(({x} != 0) | ({y} != 0))",
    "logical_xor": "(({x} != 0) ^ ({y} != 0))", "logical_not": "({x} == 0)",
    "where": "({x} ? {y} : {z})",
    **{n: n + "{f}({x})" for n in ("sqrt", "exp", "log", "tanh", "log1p", "expm1", "sin",
                                   "cos")},
}


def _expr(name, loop, a):
    """One statement's C expression over operand expressions ``a`` already in ``loop``."""
    if name not in _TEMPLATES:
        raise ValueError(f"render_c: no C for ufunc {name!r}")
    ops = dict(zip("xyz", a))
    return _TEMPLATES[name].format(f=_SUFFIX.get(loop, ""), t=CTYPE[loop], **ops)


def signature(spec, fname) -> str:
    """The C declaration of the kernel (what cffi's ``cdef`` needs).

    Example:
        >>> from chainrule.jit.fuse import KernelSpec
        >>> spec = KernelSpec((3,), [("array", "float64", (3,)), ("scalar", "float")],
        ...                   [("multiply", "float64", "float64", (("in", 0), ("in", 1)))], [0])
        >>> signature(spec, "k1")
        'void k1(const void *in0, double s1, void *out0)'
    """
    params = []
    for k, inp in enumerate(spec.inputs):
        if inp[0] == "array":
            params.append(f"const void *in{k}")
        else:
            params.append(f"{_SCALAR_CTYPE[inp[1]]} s{k}")
    params += [f"void *out{j}" for j in range(len(spec.outputs) + len(spec.colsums))]
    return f"void {fname}({', '.join(params)})"


# a flat kernel calling a vector math function among at least SPLIT_STMTS other statements runs
# in tiles of TILE elements, each tile's statements in one loop per run between the calls and
# one loop per call (values crossing loops kept in arrays of a tile on the stack): in one loop
# the vector call ends a chain of dependent operations per vector and the out-of-order core
# cannot overlap the next vector's chain with the call, so the loop ran at the chain's latency
# (figures in docs/jit.md). The same statements in the same order and dtype per element; only
# which elements a math function computes with the C library's scalar version instead of the
# vector one (a loop's tail, gcc's peeling for alignment) can change, an ulp on those
SPLIT_STMTS = 4
TILE = 256


def _segments(stmts):
    """The statement indices in runs, in an order that keeps every statement after those it
    reads: before each call of a math function, the statements not yet placed that the call
    needs (directly or not); the call alone; at the end, the statements left over (the work
    that does not feed a call stays out of the loops before it: a division there made the GELU
    backward's first loop slower than the whole untiled loop)."""
    placed: set = set()
    segs = []

    def needs(j, acc):
        for r in stmts[j][3]:
            if r[0] == "t" and r[1] not in placed and r[1] not in acc:
                acc.add(r[1])
                needs(r[1], acc)
        return acc

    for j, st in enumerate(stmts):
        if st[0] in _VECMATH:
            pre = sorted(needs(j, set()))
            if pre:
                segs.append(pre)
            segs.append([j])
            placed.update(pre, [j])
    rest = [j for j in range(len(stmts)) if j not in placed]
    if rest:
        segs.append(rest)
    return segs


# at most this many values kept in arrays of a tile (on each thread's stack: 16 x 256 doubles
# is 32 KB); a kernel needing more runs as one loop
MAX_KEPT = 16


def _tiled(spec, rows: bool):
    """``spec``'s plan in tiles (see ``SPLIT_STMTS``): (loops' statements, the loop of each
    statement, the statements computed again where read, the statements kept in arrays), or
    None where it runs as one loop."""
    calls = sum(st[0] in _VECMATH for st in spec.stmts)
    if (rows or calls == 0 or len(spec.stmts) - calls < SPLIT_STMTS
            or spec.size < 2 * TILE):
        return None
    segs = _segments(spec.stmts)
    seg_of = {j: k for k, seg in enumerate(segs) for j in seg}
    # a statement of inputs and literals alone is computed again where a later loop reads it
    # (one operation and loads, cheaper than a store and a load); the others read in a later
    # loop than their own are kept in an array of the tile
    again = {j for j, st in enumerate(spec.stmts)
             if st[0] not in _VECMATH and all(r[0] != "t" for r in st[3])}
    kept = sorted({r[1] for j, st in enumerate(spec.stmts) for r in st[3]
                   if r[0] == "t" and seg_of[r[1]] != seg_of[j] and r[1] not in again})
    if len(kept) > MAX_KEPT:
        return None
    return segs, seg_of, again, kept


def _stmt_lines(spec, js, name_of, pad) -> list:
    """The C lines computing statements ``js`` (``name_of(ref)``: a ref's C name and dtype)."""
    lines = []
    for j in js:
        name, loop, odt, refs = spec.stmts[j]
        args = []
        for r in refs:
            if r[0] == "lit":
                args.append(_lit(r[1], loop))
                continue
            cname, dt = name_of(r)
            args.append(cname if dt == loop else f"(({LOCAL[loop]}){cname})")
        lines.append(f"{pad}const {LOCAL[odt]} t{j} = {_expr(name, loop, args)};")
    return lines


def _render_tiled(spec, plan, lines, parallel):
    """The loop of a tiled kernel (see ``SPLIT_STMTS``; ``plan`` from ``_tiled``), appended to
    ``lines``."""
    n = spec.size
    segs, seg_of, again, kept = plan

    def name_of(r):
        if r[0] == "in":
            inp = spec.inputs[r[1]]
            return (f"a{r[1]}", inp[1]) if inp[0] == "array" else (f"s{r[1]}", None)
        return f"t{r[1]}", spec.stmts[r[1]][2]

    if parallel:
        lines.append("    #pragma omp parallel for schedule(static)")
    lines.append(f"    for (ptrdiff_t b = 0; b < {n}; b += {TILE}) {{")
    lines.append(f"        const ptrdiff_t m = {n} - b < {TILE} ? {n} - b : {TILE};")
    for j in kept:
        lines.append(f"        {LOCAL[spec.stmts[j][2]]} v{j}[{TILE}];")
    for k, seg in enumerate(segs):
        lines.append("        #pragma omp simd")
        lines.append("        for (ptrdiff_t u = 0; u < m; u++) {")
        earlier = sorted({r[1] for j in seg for r in spec.stmts[j][3]
                          if r[0] == "t" and seg_of[r[1]] != k})
        redo = [j for j in earlier if j in again]
        ins = sorted({r[1] for j in list(seg) + redo for r in spec.stmts[j][3]
                      if r[0] == "in"})
        if any(spec.inputs[q][0] == "array" for q in ins) or any(
                seg_of[s] == k for s in spec.outputs):
            lines.append("            const ptrdiff_t i = b + u;")
        for q in ins:
            inp = spec.inputs[q]
            if inp[0] == "array":
                idx = _index(inp[2], spec.shape)
                lines.append(f"            const {LOCAL[inp[1]]} a{q} = p{q}[{idx}];")
        for j in earlier:
            if j not in again:
                lines.append(f"            const {LOCAL[spec.stmts[j][2]]} t{j} = v{j}[u];")
        lines += _stmt_lines(spec, redo + list(seg), name_of, "            ")
        for j in seg:
            if j in kept:
                lines.append(f"            v{j}[u] = t{j};")
        for q, s in enumerate(spec.outputs):
            if seg_of[s] == k:
                lines.append(f"            q{q}[i] = t{s};")
        lines.append("        }")
    lines += ["    }", "}"]


def _body_lines(spec, index, pad) -> list:
    """The C lines of one element of an untiled loop: each array input loaded at
    ``index(its shape, the iteration shape)``, then every statement."""
    loaded = {}
    lines = []
    for k, inp in enumerate(spec.inputs):
        if inp[0] == "array":
            lines.append(f"{pad}const {LOCAL[inp[1]]} a{k} = p{k}[{index(inp[2], spec.shape)}];")
            loaded[k] = (f"a{k}", inp[1])
        else:
            loaded[k] = (f"s{k}", None)

    def name_of(r):
        return loaded[r[1]] if r[0] == "in" else (f"t{r[1]}", spec.stmts[r[1]][2])

    return lines + _stmt_lines(spec, range(len(spec.stmts)), name_of, pad)


# columns per block of a kernel with column sums running on several threads (each thread
# takes whole blocks, every row of them, so each column's sum adds the rows in order)
COLSUM_BLOCK = 64


def _render_colsums(spec, lines, parallel):
    """The loop of a kernel with column sums (``spec.colsums``), appended to ``lines``: rows
    by columns, the first row's values starting each column's sum and each later row's added
    in order (the bits of ``creduce``'s column sum and of NumPy's sum over leading axes, on
    one thread or several). On several threads the columns are split in blocks, each block
    going through every row."""
    cols = spec.shape[-1]
    nrows = spec.size // cols
    blk = COLSUM_BLOCK if parallel and cols > COLSUM_BLOCK else cols
    nout = len(spec.outputs)
    body = _body_lines(spec, _row_index, "")
    body += [f"q{j}[i] = t{s};" for j, s in enumerate(spec.outputs)]
    if parallel:
        lines.append("    #pragma omp parallel for schedule(static)")
    lines.append(f"    for (ptrdiff_t c0 = 0; c0 < {cols}; c0 += {blk}) {{")
    lines.append(f"        const ptrdiff_t c1 = c0 + {blk} < {cols} ? c0 + {blk} : {cols};")
    for first in (True, False):
        pad = "            "
        if first:
            lines.append("        {")
            lines.append("            const ptrdiff_t r = 0;")
        else:
            lines.append(f"        for (ptrdiff_t r = 1; r < {nrows}; r++) {{")
        lines.append(f"{pad}#pragma omp simd")
        lines.append(f"{pad}for (ptrdiff_t j = c0; j < c1; j++) {{")
        lines.append(f"{pad}    const ptrdiff_t i = r * {cols} + j;")
        lines += [f"{pad}    {x}" for x in body]
        for k, s in enumerate(spec.colsums):
            op = "=" if first else "+="
            lines.append(f"{pad}    q{nout + k}[j] {op} t{s};")
        lines.append(f"{pad}}}")
        lines.append("        }")
    lines += ["    }", "}"]


def render(spec, fname) -> str:
    """The C source of one kernel (a function named ``fname``).

    Example:
        >>> from chainrule.jit.fuse import KernelSpec
        >>> spec = KernelSpec((5,), [("array", "float32", (5,))],
        ...                   [("multiply", "float32", "float32", (("in", 0), ("lit", 2.0))),
        ...                    ("tanh", "float32", "float32", (("t", 0),))], [1])
        >>> print(render(spec, "k0").splitlines()[0])
        void k0(const void *in0, void *out0)
    """
    n = spec.size
    lines = [signature(spec, fname), "{"]
    for k, inp in enumerate(spec.inputs):
        if inp[0] == "array":
            ct = CTYPE[inp[1]]
            lines.append(f"    const {ct} *restrict p{k} = (const {ct} *)in{k};")
    for j, s in enumerate(list(spec.outputs) + list(spec.colsums)):
        ct = CTYPE[spec.stmts[s][2]]
        lines.append(f"    {ct} *restrict q{j} = ({ct} *)out{j};")
    work = n * max(1, len(spec.stmts))
    parallel = work >= PARALLEL_WORK
    if spec.colsums:
        _render_colsums(spec, lines, parallel)
        return "\n".join(lines) + "\n"
    cols = spec.shape[-1] if spec.shape else 1
    arrays = [inp for inp in spec.inputs if inp[0] == "array"]
    # a broadcast input other than a scalar: rows x columns, each input read as runs
    rows = cols >= MIN_ROW and any(
        tuple(inp[2]) != spec.shape and math.prod(inp[2]) > 1 for inp in arrays)
    plan = _tiled(spec, rows)
    if plan is not None:
        _render_tiled(spec, plan, lines, parallel)
        return "\n".join(lines) + "\n"
    pad = "    "
    if rows:
        if parallel:
            lines.append("    #pragma omp parallel for schedule(static)")
        lines.append(f"    for (ptrdiff_t r = 0; r < {n // cols}; r++) {{")
        lines.append("        #pragma omp simd")
        lines.append(f"        for (ptrdiff_t j = 0; j < {cols}; j++) {{")
        lines.append(f"            const ptrdiff_t i = r * {cols} + j;")
        pad = "        "
    else:
        if parallel:
            lines.append("    #pragma omp parallel for simd schedule(static)")
        else:
            lines.append("    #pragma omp simd")
        lines.append(f"    for (ptrdiff_t i = 0; i < {n}; i++) {{")
    lines += _body_lines(spec, _row_index if rows else _index, pad + "    ")
    for j, s in enumerate(spec.outputs):
        lines.append(f"{pad}    q{j}[i] = t{s};")
    lines += (["        }", "    }", "}"] if rows else ["    }", "}"])
    return "\n".join(lines) + "\n"
