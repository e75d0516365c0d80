"""Backend "c": the optimisers' update primitives (``sgd_update``, ``adam_update``) as one C
loop each, bitwise equal to their NumPy impls.

The impls (``primitives/update.py``) make several passes over each parameter (Adam: about
ten, with two temporaries). The C loop does the same operations per element, in the same
order and dtype, in one pass; the Python-side arithmetic on the hyperparameters (``1 - beta1``,
the bias corrections) is the impl's own, done in Python as there, and each such number enters
the loop cast to the array's dtype as NumPy casts a Python float (NEP 50). A call the loop does
not cover (an array that is not C-contiguous or not float32/float64, shapes that differ, a
hyperparameter that is not a Python int or float, e.g. a NumPy scalar, which NumPy would not
treat as weak) runs the NumPy impl instead.
"""

from __future__ import annotations

from ..backend import blas, np
from ..primitives.update import _adam, _sgd
from .cconv import blas_threads
from .fuse import put_ops
from .ir import Op
from .render_c import per_float_type

PRIMS = ("sgd_update", "adam_update")
FUNCS = ("kernel.sgd_many",)

# consecutive plain SGD updates (same hyperparameters) as one call (ab_jit_mlp.py's
# c-nosgdmany: off; read at compile time)
GROUP_SGD = [True]

# elements from which a loop runs on OpenMP's threads (SGD, Adam); 0 in ``PARALLEL``: never
PARALLEL_SGD, PARALLEL_ADAM = 32768, 16384
PARALLEL = [PARALLEL_SGD, PARALLEL_ADAM]
# True: plain SGD (no momentum, weight decay or maximize) from PARALLEL_SGD elements runs the
# impl's BLAS ``?axpy`` (OpenBLAS's threads, awake after the step's products; the same bits as
# the loop) instead of the loop on OpenMP's threads; read at each call (``ab_jit_mlp.py``'s
# ``c-omp-update`` sets it off; figures: docs/jit.md, "SGD in one BLAS pass")
SGD_BLAS = [True]


def _par(n: int) -> int:
    return n if n > 0 else (1 << 62)

# A branch inside a loop stops gcc's vectoriser ("control flow in loop"), so each loop is
# written once per case of the flags (the macros' arguments are constants, so their
# conditions fold away) and the function picks the case before looping. Where a flag only
# chooses a factor, the factor does it instead, bitwise the same: x * 1 == x, x * -1 == -x,
# t + (-g) == t - g in IEEE arithmetic (maximize is a sign, Adam's decoupled decay a factor 1
# when off, SGD's dampening a factor 1 - 0 == 1 when zero).
_C = """
#define NAME_SGD_LOOP(HAS_BUF, FIRST, NESTEROV, WD, FUSED)                       \\
    _Pragma("omp parallel for simd schedule(static) if (n >= par)")             \\
    for (ptrdiff_t i = 0; i < n; i++) {                                         \\
        const T pi = p[i];                                                      \\
        const T sg = g[i] * (T)sign;                                            \\
        T gg = WD ? pi * (T)wd + sg : sg;                                       \\
        if (HAS_BUF) {                                                          \\
            const T bi = FIRST ? gg : b[i] * (T)momentum + gg * (T)one_minus_damp; \\
            b[i] = bi;                                                          \\
            gg = NESTEROV ? gg + bi * (T)momentum : bi;                         \\
        }                                                                       \\
        p[i] = FUSED ? NAME_fma(gg, -(T)lr, pi) : pi - gg * (T)lr;              \\
    }
#define NAME_SGD_WD(HAS_BUF, FIRST, NESTEROV, FUSED)                             \\
    if (wd != 0) { NAME_SGD_LOOP(HAS_BUF, FIRST, NESTEROV, 1, FUSED) }          \\
    else { NAME_SGD_LOOP(HAS_BUF, FIRST, NESTEROV, 0, FUSED) }
#define NAME_SGD_CASES(FUSED)                                                    \\
    if (!has_buf) { NAME_SGD_WD(0, 0, 0, FUSED) }                               \\
    else if (first && nesterov) { NAME_SGD_WD(1, 1, 1, FUSED) }                 \\
    else if (first) { NAME_SGD_WD(1, 1, 0, FUSED) }                             \\
    else if (nesterov) { NAME_SGD_WD(1, 0, 1, FUSED) }                          \\
    else { NAME_SGD_WD(1, 0, 0, FUSED) }

/* a * b + c rounded once (the float or double fma, chosen at compile time) */
static inline T NAME_fma(T a, T b, T c)
{
    return sizeof(T) == sizeof(float) ? fmaf(a, b, c) : fma(a, b, c);
}

void NAME_sgd(void *p_, const void *g_, void *b_, ptrdiff_t n, int has_buf, int first,
              double momentum, double one_minus_damp, int nesterov, double lr, double wd,
              double sign, int fused, ptrdiff_t par)
{
    T *restrict p = (T *)p_;
    const T *restrict g = (const T *)g_;
    T *restrict b = (T *)b_;
    if (fused) { NAME_SGD_CASES(1) }
    else { NAME_SGD_CASES(0) }
}

#define NAME_ADAM_LOOP(HAS_VMAX, WD, SMALL)                                      \\
    _Pragma("omp parallel for simd schedule(static) if (n >= par)")             \\
    for (ptrdiff_t i = 0; i < n; i++) {                                         \\
        const T pi = p[i] * (T)keep;                                            \\
        const T sg = g[i] * (T)sign;                                            \\
        const T gg = WD ? pi * (T)wd + sg : sg;                                 \\
        const T m0 = m[i];                                                      \\
        const T tmp = (gg - m0) * (T)wfac;                                      \\
        const T mi = SMALL ? m0 + tmp : gg - tmp;                               \\
        T vi = v[i] * (T)beta2 + (gg * (T)one_minus_beta2) * gg;                \\
        v[i] = vi;                                                              \\
        if (HAS_VMAX) {                                                         \\
            const T a = vmax[i];                                                \\
            vi = (a >= vi || a != a) ? a : vi;                                  \\
            vmax[i] = vi;                                                       \\
        }                                                                       \\
        const T d = SQRT(vi) / (T)bc2 + (T)eps;                                 \\
        p[i] = pi + (mi * (T)neg_step) / d;                                     \\
        m[i] = mi;                                                              \\
    }
#define NAME_ADAM_CASES(HAS_VMAX)                                                \\
    if (coupled && small) { NAME_ADAM_LOOP(HAS_VMAX, 1, 1) }                    \\
    else if (coupled) { NAME_ADAM_LOOP(HAS_VMAX, 1, 0) }                        \\
    else if (small) { NAME_ADAM_LOOP(HAS_VMAX, 0, 1) }                          \\
    else { NAME_ADAM_LOOP(HAS_VMAX, 0, 0) }

/* plain SGD (no momentum buffer) over k parameters: NAME_sgd on each in turn */
void NAME_sgd_many(void **p, void **g, const ptrdiff_t *n, int k, int first, double lr,
                   double wd, double sign, int fused, ptrdiff_t par)
{
    for (int j = 0; j < k; j++)
        NAME_sgd(p[j], g[j], (void *)0, n[j], 0, first, 0.0, 1.0, 0, lr, wd, sign, fused, par);
}

void NAME_adam(void *p_, const void *g_, void *m_, void *v_, void *vmax_, ptrdiff_t n,
               double keep, int coupled, double wd, double sign, int small, double wfac,
               double beta2, double one_minus_beta2, double bc2, double eps, double neg_step,
               ptrdiff_t par)
{
    T *restrict p = (T *)p_;
    const T *restrict g = (const T *)g_;
    T *restrict m = (T *)m_;
    T *restrict v = (T *)v_;
    T *restrict vmax = (T *)vmax_;
    if (vmax) { NAME_ADAM_CASES(1) }
    else { NAME_ADAM_CASES(0) }
}
"""

_DECL = """
void NAME_sgd_many(void **, void **, const ptrdiff_t *, int, int, double, double, double, int,
                   ptrdiff_t);
void NAME_sgd(void *, const void *, void *, ptrdiff_t, int, int, double, double, int, double,
              double, double, int, ptrdiff_t);
void NAME_adam(void *, const void *, void *, void *, void *, ptrdiff_t, double, int, double,
               double, int, double, double, double, double, double, double, ptrdiff_t);
"""


def source() -> tuple[str, str]:
    """(declarations, C source) of the update loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_adam(" in src and "void f64_sgd(" in decl
        True
    """
    return per_float_type(_DECL, _C, "SQRT")


def _sgd_many_np(ps, gs, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    """The grouped updates as the impl makes them, one parameter after another."""
    for p, g in zip(ps, gs):
        _sgd(np, p, g, None, lr, momentum, dampening, weight_decay, nesterov=nesterov,
             maximize=maximize, first=first)
    return tuple(ps)


def _plain_sgd(op):
    return (op.kind == "prim" and op.name == "sgd_update" and len(op.args) == 8
            and op.args[3] is None and len(op.writes) == 1 and len(op.outs) == 1
            and op.writes[0] is op.args[1]
            and set(op.kwargs) == {"nesterov", "maximize", "first"})


def group_sgd(g):
    """``g`` with each run of consecutive SGD updates without momentum buffers and with the
    same hyperparameters (the same Vars or literals) as one op ``kernel.sgd_many``, for
    backend "c": one call for all the parameters of an optimiser step instead of one per
    parameter. Each parameter gets the single update's operations, so the same bits.

    Example:
        >>> import chainrule as cr
        >>> ps = [cr.ones(3, requires_grad=True), cr.ones(2, requires_grad=True)]
        >>> opt = cr.optim.SGD(ps, lr=0.1)
        >>> def step():
        ...     opt.zero_grad()
        ...     (ps[0].sum() + ps[1].sum()).backward()
        ...     opt.step()
        >>> f = cr.jit(step, backend="numpy")
        >>> _ = f(), f()
        >>> [op.name for op in group_sgd(f.graph_ir()).ops][-1]
        'kernel.sgd_many'
    """
    ops = g.ops
    runs, cur = [], []
    for i, op in enumerate(ops):
        if (_plain_sgd(op) and cur and op.args[4:] == ops[cur[-1]].args[4:]
                and op.kwargs == ops[cur[-1]].kwargs and cur[-1] == i - 1):
            cur.append(i)
            continue
        if len(cur) > 1:
            runs.append(cur)
        cur = [i] if _plain_sgd(op) else []
    if len(cur) > 1:
        runs.append(cur)
    if not runs:
        return g
    put: dict = {}
    for run in runs:
        first = ops[run[0]]
        ps = tuple(ops[i].args[1] for i in run)
        gs = tuple(ops[i].args[2] for i in run)
        kw = first.kwargs
        put.update((i, None) for i in run)
        put[run[0]] = Op("func", "kernel.sgd_many", _sgd_many_np,
                         (ps, gs, *first.args[4:], kw["nesterov"], kw["maximize"],
                          kw["first"]), {}, tuple(ops[i].outs[0] for i in run), writes=ps)
    return put_ops(g, put)


def _arrays_ok(arrays, shape, dtype):
    for a in arrays:
        if a is None:
            continue
        if (type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape
                or not a.flags.c_contiguous):
            return False
    return True


_NUM = (int, float)


def _numbers(*xs):
    return all(type(x) in _NUM for x in xs)


def wrappers(lib, ffi) -> dict:
    """``{primitive name: impl}``: functions with the impls' signatures that run the C loop
    when they can, else the impl (``lib``, ``ffi``: the cffi module compiled from
    :func:`source`).

    Example:
        >>> from chainrule.backend import np
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> sgd = wrappers(mod.lib, mod.ffi)["sgd_update"]  # doctest: +SKIP
        >>> sgd(np, np.ones(3), np.ones(3), None, 0.5, 0, 0, 0, nesterov=False,
        ...     maximize=False, first=False)  # doctest: +SKIP
        array([0.5, 0.5, 0.5])
    """
    fb = ffi.from_buffer
    null = ffi.NULL
    # the impl's last step, p + (-lr) * g, rounds once where its BLAS fuses it (always taken
    # where this loop is: contiguous float32/float64 arrays, Python numbers)
    fused = {dt: bool(blas.axpy_fused(dt)) for dt in (np.dtype(np.float32),
                                                      np.dtype(np.float64))}
    loops = {np.dtype(np.float32): (lib.f32_sgd, lib.f32_adam),
             np.dtype(np.float64): (lib.f64_sgd, lib.f64_adam)}

    def sgd_update(xp, p, g, buf, lr, momentum, dampening, weight_decay, *, nesterov,
                   maximize, first):
        fns = loops.get(getattr(p, "dtype", None))
        if (fns is None or not _arrays_ok((p, g, buf), p.shape, p.dtype)
                or not p.flags.writeable or not _numbers(lr, momentum, dampening,
                                                        weight_decay)):
            return _sgd(xp, p, g, buf, lr, momentum, dampening, weight_decay,
                        nesterov=nesterov, maximize=maximize, first=first)
        if (SGD_BLAS[0] and buf is None and weight_decay == 0 and not maximize
                and p.size >= _par(PARALLEL[0])):
            return _sgd(xp, p, g, buf, lr, momentum, dampening, weight_decay,
                        nesterov=nesterov, maximize=maximize, first=first)
        fns[0](fb(p, require_writable=True), fb(g),
               null if buf is None else fb(buf, require_writable=True), p.size,
               buf is not None, bool(first), momentum, 1 - dampening, bool(nesterov), lr,
               weight_decay, -1.0 if maximize else 1.0, fused[p.dtype], _par(PARALLEL[0]))
        return p

    def adam_update(xp, p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step, *,
                    decoupled, maximize):
        # the checks spelled out (the generic helpers cost ~3 us of a ~9 us call on a
        # transformer's bias)
        fns = loops.get(getattr(p, "dtype", None))
        if (fns is None or type(lr) not in _NUM or type(beta1) not in _NUM
                or type(beta2) not in _NUM or type(eps) not in _NUM
                or type(weight_decay) not in _NUM or type(step) not in _NUM
                or not _arrays_ok((p, g, m, v, vmax), p.shape, p.dtype)
                or not p.flags.writeable):
            return _adam(xp, p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step,
                         decoupled=decoupled, maximize=maximize)
        # the impl's own arithmetic on the numbers, in Python as there
        decay = weight_decay != 0 and decoupled
        coupled = weight_decay != 0 and not decoupled
        w = 1 - beta1
        small = abs(w) < 0.5
        step_size = lr / (1 - beta1**step)
        bc2 = (1 - beta2**step) ** 0.5
        fns[1](fb(p, require_writable=True), fb(g), fb(m, require_writable=True),
               fb(v, require_writable=True),
               null if vmax is None else fb(vmax, require_writable=True), p.size,
               1 - lr * weight_decay if decay else 1.0, coupled,
               weight_decay if coupled else 0.0, -1.0 if maximize else 1.0, small,
               w if small else 1 - w, beta2, 1 - beta2, bc2, eps, -step_size,
               _par(PARALLEL[1]))
        return p

    bt = blas_threads()
    blas_get = bt[0] if bt is not None else (lambda: 1)
    many = {np.dtype(np.float32): lib.f32_sgd_many, np.dtype(np.float64): lib.f64_sgd_many}

    def sgd_many(ps, gs, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
        """The grouped updates: those the loop covers in one C call, each other one as the
        single update's wrapper runs it (a large plain update on OpenBLAS's threads, where
        it has several: ``SGD_BLAS``)."""
        if not _numbers(lr, momentum, dampening, weight_decay) or momentum != 0:
            return _sgd_many_np(ps, gs, lr, momentum, dampening, weight_decay, nesterov,
                                maximize, first)
        blas_par = SGD_BLAS[0] and weight_decay == 0 and not maximize and blas_get() > 1
        loop: dict = {}  # dtype -> [(p, g)]
        for p, g in zip(ps, gs):
            dt = getattr(p, "dtype", None)
            if (dt not in many or not _arrays_ok((p, g), p.shape, dt) or not p.flags.writeable
                    or (blas_par and p.size >= _par(PARALLEL[0]))):
                sgd_update(np, p, g, None, lr, momentum, dampening, weight_decay,
                           nesterov=nesterov, maximize=maximize, first=first)
            else:
                loop.setdefault(dt, []).append((p, g))
        for dt, pairs in loop.items():
            k = len(pairs)
            many[dt](ffi.new("void *[]", [fb(p, require_writable=True) for p, _ in pairs]),
                     ffi.new("void *[]", [fb(g) for _, g in pairs]),
                     ffi.new("ptrdiff_t[]", [p.size for p, _ in pairs]), k, bool(first), lr,
                     weight_decay, -1.0 if maximize else 1.0, fused[dt], _par(PARALLEL[0]))
        return tuple(ps)

    return {"sgd_update": sgd_update, "adam_update": adam_update, "kernel.sgd_many": sgd_many}
