"""Backend "c": cross-entropy over class indices (``log_softmax``, the picked entries' mean
and, in a training step, its gradient) as one C pass over the logits.

``F.cross_entropy(x, t)`` on (N, C) logits with integer targets records, in a trace,
``log_softmax`` then ``gather`` of each row's target, ``reshape``, ``neg``, ``sum`` and (for
the mean) ``mul`` by ``1/N``; its backward is ``scatter_add`` of the incoming gradient at the
targets, ``exp`` of the log-probabilities, their row sums, ``multiply`` and ``subtract``:
about a dozen NumPy calls of a few microseconds each on a (128, 10) array.
:func:`fuse_cross_entropy` replaces that chain (where it appears exactly, each intermediate
read by nothing else) with one op ``kernel.cross_entropy(x, t, c, scale, colsum)`` returning the
loss and, when the backward is there, the logits' gradient (and, where a ``sum_to`` of it
over the rows follows, a bias gradient, that sum: the rows added in order, the bits of
``creduce``'s column sum). The C loop does the impls' operations
per row in the same order and dtype (max, ``x - max``, ``exp``, the row sum, ``log``, the
subtraction; the gradient ``g - exp(logp) * sum(g)`` with ``g`` the scattered incoming
gradient); the row sums and the loss sum follow NumPy's pairwise summation order for a
contiguous run (8 accumulators, blocks of 128). It differs from NumPy's bits only where C's
``expf``/``logf`` (glibc) and NumPy's own vectorised ``exp``/``log`` round differently (an
ulp or so); tests compare with the unfused program and with float64.

The target checks (``nll_loss``'s range check, the guards a trace keeps) stay as they are, so
a bad label still fails the guard and raises eager's error. A target index the loop finds
outside ``[-C, C)`` (which the guards rule out) makes the wrapper run the NumPy ops, which
raise NumPy's error. Forms not matched (class weights, ``ignore_index`` present in the
targets, label smoothing, probability targets, more than two dimensions, other dtypes) run
as before.
"""

from __future__ import annotations

from ..backend import np
from .creduce import uses_of
from .fuse import put_ops, readers_of
from .ir import Op, Var
from .render_c import C_PREFIX, per_float_type

FUNCS = ("kernel.cross_entropy", "kernel.target_checks")

# rows x classes from which the rows are split over OpenMP's threads (0 in PARALLEL: never)
PARALLEL = [1 << 16]

_C = """
/* NumPy's pairwise sum of n contiguous values (8 accumulators, halves above 128) */
static T NAME_ce_pairwise(const T *a, ptrdiff_t n, ptrdiff_t step)
{
    if (n < 8) {
        T r = (T)0;
        for (ptrdiff_t i = 0; i < n; i++) r += a[i * step];
        return r;
    }
    if (n <= 128) {
        T r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k * step];
        ptrdiff_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[(i + k) * step];
        T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i * step];
        return res;
    }
    ptrdiff_t h = n / 2;
    h -= h % 8;
    return NAME_ce_pairwise(a, h, step) + NAME_ce_pairwise(a + h * step, n - h, step);
}

/* Cross-entropy of the rows of x (n, c) at targets t: rows[i] = -logp[i, t[i]], with
   logp = z - log(sum(exp(z))), z = x - max(x) per row (NaN propagating, as NumPy's max).
   grad: dx = g - exp(logp) * sum(g) per row, g zero but g[i, t[i]] = gin[i]; else dx is
   scratch (n * c) for the exponentials. Returns 0, or 1 when some target is outside
   [-c, c) (nothing useful written). */
int NAME_cross_entropy(const void *x_, const void *t_, const void *gin_, void *rows_,
                       void *dx_, int grad, ptrdiff_t n, ptrdiff_t c, double scale, int mul,
                       void *out_, void *cs_, ptrdiff_t par)
{
    const T *restrict x = (const T *)x_;
    const long long *restrict t = (const long long *)t_;
    const T *restrict gin = (const T *)gin_;
    T *restrict rows = (T *)rows_;
    T *restrict dx = (T *)dx_;
    for (ptrdiff_t i = 0; i < n; i++)
        if (t[i] < -c || t[i] >= c) return 1;
    #pragma omp parallel for schedule(static) if (n * c >= par)
    for (ptrdiff_t i = 0; i < n; i++) {
        const T *restrict xr = x + i * c;
        T *restrict er = dx + i * c;
        /* the row's max, NaN where the row has one (NumPy's max); which zero of -0 and +0
           it picks changes no value below */
        T m = xr[0];
        int nan = 0;
        _Pragma("omp simd reduction(max:m) reduction(|:nan)")
        for (ptrdiff_t j = 0; j < c; j++) {
            const T v = xr[j];
            m = v > m ? v : m;
            nan |= v != v;
        }
        if (nan) m = (T)NAN;
        _Pragma("omp simd")
        for (ptrdiff_t j = 0; j < c; j++) er[j] = EXP(xr[j] - m);
        const T ls = LOG(NAME_ce_pairwise(er, c, 1));
        const ptrdiff_t k = t[i] < 0 ? t[i] + c : t[i];
        rows[i] = -((xr[k] - m) - ls);
        if (grad) {
            /* the row sum of g: gin[i] among zeros, which leave it as it is but -0 */
            const T g = gin[i], s = g + (T)0;
            _Pragma("omp simd")
            for (ptrdiff_t j = 0; j < c; j++) er[j] = (T)0 - EXP((xr[j] - m) - ls) * s;
            er[k] = g - EXP((xr[k] - m) - ls) * s;
        }
    }
    if (cs_) {
        /* dx's column sums (a bias gradient), the rows added in order as creduce's colsum */
        T *restrict cs = (T *)cs_;
        for (ptrdiff_t j = 0; j < c; j++) cs[j] = dx[j];
        for (ptrdiff_t i = 1; i < n; i++) {
            const T *restrict dr = dx + i * c;
            _Pragma("omp simd")
            for (ptrdiff_t j = 0; j < c; j++) cs[j] += dr[j];
        }
    }
    /* the loss: the rows' sum in NumPy's pairwise order, times scale where mul is set */
    const T total = NAME_ce_pairwise(rows, n, 1);
    *(T *)out_ = mul ? total * (T)scale : total;
    return 0;
}
"""

_DECL = """
int NAME_cross_entropy(const void *, const void *, const void *, void *, void *, int,
                       ptrdiff_t, ptrdiff_t, double, int, void *, void *, ptrdiff_t);
"""


# nll_loss's target checks over n int64 labels t, in one pass: flags[0] any((t < 0 | t >= c)
# & t != ign), idx = where(t != ign, t, 0), flags[1] min(idx) < lo, flags[2] max(idx) >= hi,
# flags[3] all(t != ign)
_C_CHECKS = """
void target_checks(const void *t_, ptrdiff_t n, long long ign, long long c, long long lo,
                   long long hi, void *idx_, void *flags_)
{
    unsigned char *flags = (unsigned char *)flags_;
    const long long *restrict t = (const long long *)t_;
    long long *restrict idx = (long long *)idx_;
    int any = 0, all = 1;
    long long mn = t[0] != ign ? t[0] : 0, mx = mn;
    for (ptrdiff_t i = 0; i < n; i++) {
        const long long v = t[i];
        const int valid = v != ign;
        any |= ((v < 0) | (v >= c)) & valid;
        all &= valid;
        const long long s = valid ? v : 0;
        idx[i] = s;
        mn = s < mn ? s : mn;
        mx = s > mx ? s : mx;
    }
    flags[0] = (unsigned char)any;
    flags[1] = mn < lo;
    flags[2] = mx >= hi;
    flags[3] = (unsigned char)all;
}
"""
_DECL_CHECKS = """
void target_checks(const void *, ptrdiff_t, long long, long long, long long, long long, void *,
                   void *);
"""


def source() -> tuple[str, str]:
    """(declarations, C source) of the cross-entropy loop for float32 (``f32_*``) and
    float64.

    Example:
        >>> decl, src = source()
        >>> "int f32_cross_entropy(" in src and "int f64_cross_entropy(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C, "EXP", "LOG")
    return decl + _DECL_CHECKS, src + _C_CHECKS


def _cross_entropy_np(x, t, c, scale, colsum=False):
    """The matched chain through the registered impls, op by op as recorded: ``(loss,
    dx)``, or ``loss`` alone where ``c`` (the incoming gradient at the targets) is None
    (``scale``: the mean's factor, or None for a sum); with ``colsum``, ``(loss, dx,
    sum_to(dx) over the rows)`` (a bias gradient)."""
    from ..primitives import REGISTRY as R  # noqa: PLC0415 - the impls as registered

    n, k = x.shape
    lp = R["log_softmax"].impl(np, x, axis=1)
    picked = R["reshape"].impl(np, R["gather"].impl(np, lp, t, axis=1), shape=(n,))
    loss = R["sum"].impl(np, R["neg"].impl(np, picked), axes=None, keepdims=False)
    if scale is not None:
        loss = R["mul"].impl(np, loss, scale)
    if c is None:
        return loss
    g = R["scatter_add"].impl(np, c, t, shape=(n, k), axis=1)
    e = R["exp"].impl(np, lp)
    dx = np.subtract(g, np.multiply(e, R["sum"].impl(np, g, axes=(1,), keepdims=True)))
    if not colsum:
        return loss, dx
    return loss, dx, R["sum_to"].impl(np, dx, shape=(k,))


def _only_reader(op_index, v, reader, uses):
    """The index of the one op reading ``v`` (None when some other op, an output, an effect
    or a guard reads it too)."""
    j = reader.get(v)
    return j if uses[v] == 1 and j is not None and j > op_index else None


def _is_prim(op, name, nargs):
    return (op.kind == "prim" and op.name == name and not op.writes and len(op.outs) == 1
            and len(op.args) == nargs and op.args[0] is np)


def _match(g, i, uses, reader, readers, producer):
    """The chain starting at ``log_softmax`` op ``i`` as ``{role: op, "order": [ops],
    "outs": [Vars], "idx": [indices]}``, or None."""
    ops = g.ops
    ls = ops[i]
    x = ls.args[1]
    if (not _is_prim(ls, "log_softmax", 2) or set(ls.kwargs) != {"axis"}
            or not isinstance(x, Var) or x.shape is None or len(x.shape) != 2
            or str(x.dtype) not in ("float32", "float64") or ls.kwargs["axis"] not in (1, -1)
            or x.shape[0] == 0 or x.shape[1] == 0):
        return None
    n, c = x.shape
    lp = ls.outs[0]
    rs = readers.get(lp, [])
    if uses[lp] != len(rs) or not 1 <= len(rs) <= 2:
        return None
    m = {"log_softmax": ls}
    for j in rs:
        op = ops[j]
        if _is_prim(op, "gather", 3) and op.kwargs == {"axis": 1} and op.args[1] is lp:
            m["gather"] = (j, op)
        elif _is_prim(op, "exp", 2) and not op.kwargs and op.args[1] is lp:
            m["exp"] = (j, op)
    if "gather" not in m or len(m) != len(rs) + 1:
        return None
    jg, ga = m["gather"]
    t = ga.args[2]
    if (not isinstance(t, Var) or t.shape != (n, 1) or str(t.dtype) != "int64"
            or ga.outs[0].shape != (n, 1)):
        return None
    # forward: reshape (n,), neg, sum over all, [mul by a Python float]
    chain = [(jg, ga)]
    j = _only_reader(jg, ga.outs[0], reader, uses)
    if j is None or not _is_prim(ops[j], "reshape", 2) or ops[j].kwargs != {"shape": (n,)}:
        return None
    chain.append((j, ops[j]))
    j = _only_reader(j, ops[j].outs[0], reader, uses)
    if j is None or not _is_prim(ops[j], "neg", 2) or ops[j].kwargs:
        return None
    chain.append((j, ops[j]))
    j = _only_reader(j, ops[j].outs[0], reader, uses)
    if (j is None or not _is_prim(ops[j], "sum", 2)
            or ops[j].kwargs != {"axes": None, "keepdims": False}):
        return None
    chain.append((j, ops[j]))
    s = ops[j].outs[0]
    k = reader.get(s)
    if (k is not None and uses[s] == 1 and _is_prim(ops[k], "mul", 3)
            and ops[k].args[1] is s and type(ops[k].args[2]) is float and not ops[k].kwargs):
        m["mul"] = ops[k]
        chain.append((k, ops[k]))
    outs = [chain[-1][1].outs[0]]
    if "exp" in m:
        back = _match_backward(g, m["exp"], t, (n, c), uses, reader, readers, producer)
        if back is None:
            return None
        m["scatter_add"] = back[0][1]
        chain += [m["exp"]] + back
        dx = back[-1][1].outs[0]
        outs.append(dx)
        # a bias gradient: sum_to(dx) over the rows, made in the same call
        sums = [j for j in readers.get(dx, []) if _is_prim(ops[j], "sum_to", 2)
                and ops[j].kwargs == {"shape": (c,)} and ops[j].args[1] is dx]
        if sums and c >= 2:
            chain.append((sums[0], ops[sums[0]]))
            outs.append(ops[sums[0]].outs[0])
    idx = sorted(j for j, _ in chain) + [i]
    m["order"] = [ls] + [op for _, op in sorted(chain, key=lambda p: p[0])]
    m["outs"] = outs
    m["idx"] = sorted(idx)
    m["args"] = (x, t, m["scatter_add"].args[1] if "scatter_add" in m else None,
                 m["mul"].args[2] if "mul" in m else None, len(outs) == 3)
    return m


def _match_backward(g, exp, t, shape, uses, reader, readers, prod):
    """``scatter_add(c, t)``, its row sum, ``multiply`` by ``exp(logp)`` and ``subtract``
    as ``[(index, op)]`` in that order, or None."""
    ops = g.ops
    je, eop = exp
    e = eop.outs[0]
    jm = _only_reader(je, e, reader, uses)
    if jm is None:
        return None
    mul = ops[jm]
    if (mul.kind != "ufunc" or mul.name != "np.multiply" or mul.kwargs or mul.writes
            or len(mul.args) != 2 or mul.args[0] is not e):
        return None
    rsum = mul.args[1]
    jr = reader.get(rsum)
    # the row sum, read only by the multiply (prod: uses_of's producer map)
    js = prod.get(rsum)
    if js is None or uses[rsum] != 1 or jr != jm:
        return None
    sop = ops[js]
    if not _is_prim(sop, "sum", 2) or sop.kwargs != {"axes": (1,), "keepdims": True}:
        return None
    gv = sop.args[1]
    jg = prod.get(gv)
    if jg is None:
        return None
    sc = ops[jg]
    if (not _is_prim(sc, "scatter_add", 3) or sc.args[2] is not t
            or sc.kwargs != {"shape": shape, "axis": 1}):
        return None
    c = sc.args[1]
    if (not isinstance(c, Var) or c.shape != (shape[0], 1) or str(c.dtype) != str(e.dtype)):
        return None
    jsub = _only_reader(jm, mul.outs[0], reader, uses)
    if jsub is None:
        return None
    sub = ops[jsub]
    if (sub.kind != "ufunc" or sub.name != "np.subtract" or sub.kwargs or sub.writes
            or tuple(sub.args) != (gv, mul.outs[0])):
        return None
    if uses[gv] != 2 or sorted(readers.get(gv, [])) != sorted((js, jsub)):
        return None
    return [(jg, sc), (js, sop), (jm, mul), (jsub, sub)]


def fuse_cross_entropy(g):
    """``g`` with each cross-entropy chain (``log_softmax`` of 2-d float logits, ``gather``
    at int64 targets, ``reshape``, ``neg``, ``sum``, an optional ``mul`` by a Python float,
    and where present the backward: ``scatter_add``, ``exp``, row ``sum``, ``multiply``,
    ``subtract``, and a ``sum_to`` of the gradient over the rows) as one op
    ``kernel.cross_entropy(x, t, c, scale, colsum)`` where the loss or the gradient was
    made (the last of those ops), for backend "c". A chain whose intermediates anything
    else reads is left alone.

    Example:
        >>> import chainrule as cr
        >>> x = cr.ones((4, 3), requires_grad=True)
        >>> t = cr.tensor([0, 2, 1, 0])
        >>> def step():
        ...     loss = cr.nn.functional.cross_entropy(x, t)
        ...     loss.backward()
        ...     return loss
        >>> f = cr.jit(step, backend="numpy")
        >>> _ = f(), f()
        >>> "kernel.cross_entropy" in [op.name for op in fuse_cross_entropy(f.graph_ir()).ops]
        True
    """
    ops = g.ops
    uses, producer = uses_of(g)
    readers = readers_of(g)
    reader = {v: r[0] for v, r in readers.items()}  # the first reader
    put: dict = {}
    for i, op in enumerate(ops):
        if op.kind != "prim" or op.name != "log_softmax" or i in put:
            continue
        m = _match(g, i, uses, reader, readers, producer)
        if m is None or any(j in put for j in m["idx"]):
            continue
        last = max(j for j in m["idx"] if ops[j].outs[0] in m["outs"][:2])
        # every reader of the outputs comes after the op's place; the inputs exist before it
        if any(r <= last for v in m["outs"] for r in readers.get(v, [])):
            continue
        for j in m["idx"]:
            put[j] = None
        put[last] = Op("func", "kernel.cross_entropy", _cross_entropy_np, m["args"], {},
                       tuple(m["outs"]))
    return put_ops(g, put)


def _target_checks_np(t, ign, c, lo, hi, which):
    """nll_loss's target checks over int64 labels ``t`` as the recorded NumPy ops compute
    them; the values named in ``which`` (``any``: a bad label that is not ``ign``; ``idx``:
    the labels with ``ign`` as 0, as a column; ``lo``/``hi``: its min below ``lo``, max at
    or above ``hi``; ``all``: no label is ``ign``), in that order."""
    valid = np.not_equal(t, ign)
    idx = np.expand_dims(np.where(valid, t, 0), 1)
    vals = {"any": np.logical_or.reduce(np.bitwise_and(np.bitwise_or(np.less(t, 0),
                                                                    np.greater_equal(t, c)),
                                                       valid), axis=None, dtype=bool,
                                        keepdims=False),
            "idx": idx, "all": np.logical_and.reduce(valid, axis=None, dtype=bool,
                                                     keepdims=False)}
    if "lo" in which:
        vals["lo"] = np.less(np.minimum.reduce(idx, axis=None), lo)
        vals["hi"] = np.greater_equal(np.maximum.reduce(idx, axis=None), hi)
    out = tuple(vals[w] for w in which)
    return out if len(out) > 1 else out[0]


_WHICH = ("any", "idx", "lo", "hi", "all")
_POS = {w: k for k, w in enumerate(_WHICH)}


def _ufunc(op, name, nargs):
    return (op.kind == "ufunc" and op.name == name and not op.writes and len(op.outs) == 1
            and len(op.args) == nargs)


_ALL = {"axis": None, "dtype": np.dtype(bool), "keepdims": False}
_EXT = {"axis": None, "dtype": None, "keepdims": False, "where": True}


def _match_checks(ops, a, uses, readers):
    """nll_loss's target checks starting at ``not_equal(t, ignore_index)`` op ``a``: (op
    indices, args, outs) or None."""
    A = ops[a]
    t, ign = A.args
    if (not isinstance(t, Var) or t.shape is None or len(t.shape) != 1 or t.shape[0] < 1
            or str(t.dtype) != "int64" or type(ign) is not int):
        return None
    valid = A.outs[0]
    found = {}

    def one(v, test):
        """The index of the op reading ``v`` that passes ``test``, else None."""
        for j in readers.get(v, []):
            if j > a and test(ops[j]):
                return j
        return None

    def only(v, test):
        j = one(v, test)
        return j if j is not None and uses[v] == 1 else None

    found["B"] = one(t, lambda o: _ufunc(o, "np.less", 2) and o.args == (t, 0) and not o.kwargs)
    found["C"] = one(t, lambda o: _ufunc(o, "np.greater_equal", 2) and o.args[0] is t
                     and type(o.args[1]) is int and not o.kwargs)
    found["G"] = one(valid, lambda o: o.kind == "func" and o.name == "np.where"
                     and o.args == (valid, t, 0) and not o.kwargs and len(o.outs) == 1)
    if None in found.values():
        return None
    lo, hi = ops[found["B"]].outs[0], ops[found["C"]].outs[0]
    c = ops[found["C"]].args[1]
    found["D"] = only(lo, lambda o: _ufunc(o, "np.bitwise_or", 2) and o.args == (lo, hi)
                      and not o.kwargs)
    if found["D"] is None or uses[hi] != 1:
        return None
    bad = ops[found["D"]].outs[0]
    found["E"] = only(bad, lambda o: _ufunc(o, "np.bitwise_and", 2) and o.args == (bad, valid)
                      and not o.kwargs)
    if found["E"] is None:
        return None
    badv = ops[found["E"]].outs[0]
    found["F"] = only(badv, lambda o: _ufunc(o, "np.logical_or.reduce", 1)
                      and o.kwargs == _ALL)
    safe = ops[found["G"]].outs[0]
    found["H"] = only(safe, lambda o: o.kind == "func" and o.name == "np.expand_dims"
                      and o.args == (safe, 1) and not o.kwargs and len(o.outs) == 1)
    if found["F"] is None or found["H"] is None:
        return None
    idx = ops[found["H"]].outs[0]
    outs = [ops[found["F"]].outs[0], idx]
    which = ["any", "idx"]
    lim = [0, 0]
    mi = one(idx, lambda o: _ufunc(o, "np.minimum.reduce", 1) and o.kwargs == _EXT)
    ma = one(idx, lambda o: _ufunc(o, "np.maximum.reduce", 1) and o.kwargs == _EXT)
    if mi is not None and ma is not None:
        mn, mx = ops[mi].outs[0], ops[ma].outs[0]
        jl = only(mn, lambda o: _ufunc(o, "np.less", 2) and o.args[0] is mn
                  and type(o.args[1]) is int and not o.kwargs)
        jh = only(mx, lambda o: _ufunc(o, "np.greater_equal", 2) and o.args[0] is mx
                  and type(o.args[1]) is int and not o.kwargs)
        if jl is not None and jh is not None:
            found.update(I=mi, J=jl, K=ma, L=jh)
            outs += [ops[jl].outs[0], ops[jh].outs[0]]
            which += ["lo", "hi"]
            lim = [ops[jl].args[1], ops[jh].args[1]]
    found["M"] = one(valid, lambda o: _ufunc(o, "np.logical_and.reduce", 1)
                     and o.kwargs == _ALL)
    if found["M"] is not None:
        outs.append(ops[found["M"]].outs[0])
        which.append("all")
    if "lo" not in which:  # the C call computes both limits or neither
        lim = [-(1 << 62), 1 << 62]
    # valid is read by nothing else
    if uses[valid] != sum(1 for j in readers.get(valid, []) if j in found.values()):
        return None
    return sorted(found.values()) + [a], (t, ign, c, lim[0], lim[1], tuple(which)), outs


def fuse_target_checks(g):
    """``g`` with nll_loss's target checks (``t != ignore_index``, the range test, its
    ``any``, ``where``/``expand_dims`` making the gather's index, the index's min and max
    against the class count, ``all(valid)``: a dozen NumPy calls on the labels) as one op
    ``kernel.target_checks`` at the first one's place, for backend "c". The guards on its
    values stay, so a bad label still fails the guard and raises eager's error.

    Example:
        >>> import chainrule as cr
        >>> t = cr.tensor([0, 2, 1, 0])
        >>> f = cr.jit(lambda x: cr.nn.functional.cross_entropy(x, t), backend="numpy")
        >>> _ = f(cr.ones((4, 3))), f(cr.ones((4, 3)))
        >>> "kernel.target_checks" in [op.name for op in fuse_target_checks(f.graph_ir()).ops]
        True
    """
    ops = g.ops
    uses, _ = uses_of(g)
    readers = readers_of(g)
    put: dict = {}
    for i, op in enumerate(ops):
        if not _ufunc(op, "np.not_equal", 2) or op.kwargs or i in put:
            continue
        m = _match_checks(ops, i, uses, readers)
        if m is None or any(j in put for j in m[0]):
            continue
        idx, args, outs = m
        for j in idx:
            put[j] = None
        put[i] = Op("func", "kernel.target_checks", _target_checks_np, args, {}, tuple(outs))
    return put_ops(g, put)


def wrappers(lib, ffi) -> dict:
    """``{"kernel.cross_entropy": impl}``: runs the C loop where it applies (C-contiguous
    copies of the inputs are made where needed), else the recorded ops (``lib``, ``ffi``: the
    cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> ce = wrappers(mod.lib, mod.ffi)["kernel.cross_entropy"]  # doctest: +SKIP
    """
    fb = ffi.from_buffer
    null = ffi.NULL
    fns = {dt: getattr(lib, f"{p}_cross_entropy") for dt, p in C_PREFIX.items()}
    i64 = np.dtype(np.int64)

    def cross_entropy(x, t, c, scale, colsum=False):
        dt = getattr(x, "dtype", None)
        f = fns.get(dt)
        if (f is None or type(x) is not np.ndarray or x.ndim != 2 or type(t) is not np.ndarray
                or t.dtype != i64 or t.shape != (x.shape[0], 1) or x.size == 0
                or (c is not None and (type(c) is not np.ndarray or c.dtype != dt
                                       or c.shape != t.shape))
                or (colsum and (c is None or x.shape[1] < 2))):
            return _cross_entropy_np(x, t, c, scale, colsum)
        n, k = x.shape
        xc = np.ascontiguousarray(x)
        tc = np.ascontiguousarray(t)
        cc = xc if c is None else np.ascontiguousarray(c)
        rows = np.empty(n, dt)
        dx = np.empty((n, k), dt)
        loss = np.empty((), dt)
        cs = np.empty(k, dt) if colsum else None
        if f(fb(xc), fb(tc), fb(cc),
             fb(rows, require_writable=True), fb(dx, require_writable=True), c is not None, n,
             k, 0.0 if scale is None else scale, scale is not None,
             fb(loss, require_writable=True), fb(cs, require_writable=True) if colsum else null,
             PARALLEL[0] if PARALLEL[0] > 0 else (1 << 62)):
            return _cross_entropy_np(x, t, c, scale, colsum)
        if c is None:
            return loss
        return (loss, dx, cs) if colsum else (loss, dx)

    checks = lib.target_checks

    def target_checks(t, ign, c, lo, hi, which):
        # (the limits are the class count's; ignore_index any Python int a user gives)
        if (type(t) is not np.ndarray or t.dtype != i64 or t.ndim != 1 or t.size == 0
                or not -(1 << 62) <= ign <= (1 << 62)):
            return _target_checks_np(t, ign, c, lo, hi, which)
        idx = np.empty((t.shape[0], 1), i64)
        flags = np.empty(4, np.bool_)
        checks(fb(t if t.flags.c_contiguous else np.ascontiguousarray(t)), t.shape[0], ign, c,
               lo, hi, fb(idx, require_writable=True), fb(flags, require_writable=True))
        vals = (flags[0], idx, flags[1], flags[2], flags[3])
        if which == _WHICH:
            return vals
        out = tuple(vals[_POS[w]] for w in which)
        return out if len(out) > 1 else out[0]

    return {"kernel.cross_entropy": cross_entropy, "kernel.target_checks": target_checks}
