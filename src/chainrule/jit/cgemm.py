"""Backend "c": ``linear`` as one call of the BLAS product with its bias folded in, and
``scatter_to`` of rows (an embedding's backward) as one C loop.

``linear`` (``primitives/linalg.py``): the impl computes ``x2 @ w.T`` (a fresh product) and
then adds the bias in a second pass over the output. Here the output's rows are first filled
with the bias and the product is added to them by the same ``cblas_?gemm`` NumPy calls (the
one in NumPy's bundled OpenBLAS, :func:`~chainrule.jit.cconv.gemm_pointers`) with ``beta =
1``, as PyTorch's ``addmm`` does: one pass over the output less. The operands are passed as
they lie, with the product's transpose flags: a weight that is the transpose of a
C-contiguous matrix (the backward's ``linear(g, w.T)``) and an input that is one are not
copied. Where OpenBLAS adds a long inner dimension in blocks (more than a few hundred), the
bias enters the first block's sum, not the end's, so the result can differ from the impl's
in the last bit; without a bias, the product is the impl's call. A call this path does not
cover (not float32/float64 of one dtype, an empty operand, another array module, no bundled
OpenBLAS) runs the impl.

``scatter_to`` with one integer index array over the first axis (``out[idx] += g`` with
repeated rows summed: the embedding's backward): a zeroed output and one pass over ``g``'s
rows adding each into its row, in index order, with no sort, no gather of ``g`` and no
temporaries. The impl (``primitives/movement.py``, ``rows_add``) sorts the indices and sums
each run with ``reduceat``, which adds in another order: the results agree within rounding,
and are the same bits run to run. An index out of range runs the impl, which
raises NumPy's IndexError.

A residual add of a ``linear``'s result, ``r + linear(x, w, b)`` with the product read by
nothing else (a pre-norm block's output projections), is one op,
``kernel.linear_add(x, w, b, r)`` (:func:`fold_residual_adds`, a pass over the IR before the
fusion groups): the output's rows are filled with ``r + b``, then the product is added by
the same ``cblas_?gemm`` with ``beta = 1``. That saves the add's pass (reading the product
and ``r``, writing a fresh result) and one op call; the sums are ``(r + b) + x w^T`` instead
of ``r + (x w^T + b)``, so results agree with the unfused program to rounding.

``TAKEN`` counts the calls each C path ran (tests read it).
"""

from __future__ import annotations

import collections

from ..backend import np
from .cconv import gemm_pointers
from .creduce import uses_of
from .fuse import _ufunc_of
from .ir import Op, Var
from .render_c import C_PREFIX, per_float_type

PRIMS = ("linear", "scatter_to")
FUNCS = ("kernel.linear_add",)

TAKEN: collections.Counter = collections.Counter()

# cblas's constants (row major, no transpose, transpose)
_ROW, _N, _T = 101, 111, 112

_C = """
typedef void (*NAME_mm_t)(int, int, int, long long, long long, long long, T, const T *,
                          long long, const T *, long long, T, T *, long long);

/* y (M, N) = x @ op(w) (+ b): y's rows filled with b, then gemm with beta 1 */
void NAME_linear(void *gemm_, const void *x_, const void *w_, const void *b_, void *y_,
                 ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, ptrdiff_t lda, int tb,
                 ptrdiff_t ldb)
{
    const NAME_mm_t gemm = (NAME_mm_t)gemm_;
    const T *b = (const T *)b_;
    T *y = (T *)y_;
    if (b)
        for (ptrdiff_t m = 0; m < M; m++)
            memcpy(y + m * N, b, sizeof(T) * N);
    gemm(101, ta, tb, M, N, K, (T)1, (const T *)x_, lda, (const T *)w_, ldb, b ? (T)1 : (T)0,
         y, N);
}

/* o (rows, cols) = 0, then o[idx[k]] += g[k] for k in order; -1 (o part done) when an
   index is out of range (negative ones count from the end, as NumPy's do) */
int NAME_rows_add(const void *g_, const void *idx_, void *o_, ptrdiff_t n, ptrdiff_t rows,
                  ptrdiff_t cols)
{
    const T *restrict g = (const T *)g_;
    const long long *restrict idx = (const long long *)idx_;
    T *restrict o = (T *)o_;
    memset(o, 0, sizeof(T) * rows * cols);
    for (ptrdiff_t k = 0; k < n; k++) {
        long long r = idx[k];
        if (r < 0)
            r += rows;
        if (r < 0 || r >= rows)
            return -1;
        T *restrict d = o + r * cols;
        const T *restrict s = g + k * cols;
        #pragma omp simd
        for (ptrdiff_t j = 0; j < cols; j++)
            d[j] += s[j];
    }
    return 0;
}
"""

_C_ADD = """
/* y (M, N) = r + b + x @ op(w): y's rows filled with r + b (r alone without b), then gemm
   with beta 1 */
void NAME_linear_add(void *gemm_, const void *x_, const void *w_, const void *b_,
                     const void *r_, void *y_, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta,
                     ptrdiff_t lda, int tb, ptrdiff_t ldb)
{
    const NAME_mm_t gemm = (NAME_mm_t)gemm_;
    const T *restrict b = (const T *)b_;
    const T *restrict r = (const T *)r_;
    T *restrict y = (T *)y_;
    if (b) {
        for (ptrdiff_t m = 0; m < M; m++) {
            #pragma omp simd
            for (ptrdiff_t n = 0; n < N; n++)
                y[m * N + n] = r[m * N + n] + b[n];
        }
    } else {
        memcpy(y, r, sizeof(T) * M * N);
    }
    gemm(101, ta, tb, M, N, K, (T)1, (const T *)x_, lda, (const T *)w_, ldb, (T)1, y, N);
}
"""

_DECL = """
void NAME_linear_add(void *, const void *, const void *, const void *, const void *, void *,
                     ptrdiff_t, ptrdiff_t, ptrdiff_t, int, ptrdiff_t, int, ptrdiff_t);
void NAME_linear(void *, const void *, const void *, const void *, void *, ptrdiff_t,
                 ptrdiff_t, ptrdiff_t, int, ptrdiff_t, int, ptrdiff_t);
int NAME_rows_add(const void *, const void *, void *, ptrdiff_t, ptrdiff_t, ptrdiff_t);
"""



def source() -> tuple[str, str]:
    """(declarations, C source) of the loops for float32 (``f32_*``) and float64.

    Example:
        >>> decl, src = source()
        >>> "void f32_linear(" in src and "int f64_rows_add(" in decl
        True
    """
    decl, src = per_float_type(_DECL, _C + _C_ADD)
    return decl, "#include <string.h>\n" + src


def _operand(a):
    """(C-contiguous array, transposed?, leading dim) of a 2-d operand as a product reads it:
    ``a`` itself, or the C-contiguous transpose it is a view of (no copy), else a copy."""
    if a.flags.c_contiguous:
        return a, False, a.shape[1]
    if a.T.flags.c_contiguous:
        return a.T, True, a.shape[0]
    return np.ascontiguousarray(a), False, a.shape[1]


def wrappers(lib, ffi) -> dict:
    """``{primitive name: impl}``: the impls' signatures, running the C paths where they apply,
    else the impl (``lib``, ``ffi``: the cffi module compiled from :func:`source`).

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> decl, src = source()
        >>> mod, _ = kcache.load(decl, render_c.PRELUDE + src)  # doctest: +SKIP
        >>> lin = wrappers(mod.lib, mod.ffi)["linear"]  # doctest: +SKIP
        >>> lin(np, np.ones((2, 3)), np.ones((4, 3)), np.arange(4.0))  # doctest: +SKIP
        array([[3., 4., 5., 6.],
               [3., 4., 5., 6.]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impls as registered
    from ..primitives.movement import IndexArg  # noqa: PLC0415

    impl = {n: REGISTRY[n].impl for n in PRIMS}
    fb = ffi.from_buffer
    gemms = {dt: ffi.cast("void *", p) for dt, p in gemm_pointers().items()}  # cast once

    def linear(xp, x, w, b):
        dt = getattr(x, "dtype", None)
        if (xp is not np or type(x) is not np.ndarray or dt not in C_PREFIX or dt not in gemms
                or type(w) is not np.ndarray or w.dtype != dt or w.ndim != 2 or x.ndim < 1
                or x.shape[-1] != w.shape[1] or x.size == 0 or w.size == 0
                or (b is not None and (type(b) is not np.ndarray or b.dtype != dt
                                       or b.shape != (w.shape[0],)))):
            return impl["linear"](xp, x, w, b)
        n, k = w.shape
        x2 = x.reshape(-1, k)
        m = x2.shape[0]
        xa, ta, lda = _operand(x2)
        wa, wt, ldb = _operand(w)  # y = x @ w.T: w as it lies is op(B) transposed
        y = np.empty((m, n), dt)
        getattr(lib, f"{C_PREFIX[dt]}_linear")(
            gemms[dt], fb(xa), fb(wa),
            ffi.NULL if b is None else fb(np.ascontiguousarray(b)), fb(y, require_writable=True),
            m, n, k, _T if ta else _N, lda, _N if wt else _T, ldb)
        TAKEN["linear"] += 1
        return y.reshape(x.shape[:-1] + (n,)) if x.ndim != 2 else y

    def scatter_to(xp, g, *arrays, shape, index):
        shape = tuple(shape)
        idx = arrays[0] if len(arrays) == 1 else None
        dt = getattr(g, "dtype", None)
        if (xp is not np or idx is None or not isinstance(index, tuple) or len(index) != 1
                or type(index[0]) is not IndexArg
                or type(g) is not np.ndarray or dt not in C_PREFIX or type(idx) is not np.ndarray
                or idx.dtype.kind not in "iu" or (idx.dtype.kind == "u" and idx.itemsize >= 8)
                or not shape or g.shape != idx.shape + shape[1:] or 0 in shape):
            return impl["scatter_to"](xp, g, *arrays, shape=shape, index=index)
        out = np.empty(shape, dt)
        ix = np.ascontiguousarray(idx, np.int64).reshape(-1)
        gc = np.ascontiguousarray(g)
        rows = shape[0]
        if getattr(lib, f"{C_PREFIX[dt]}_rows_add")(fb(gc), fb(ix), fb(out, require_writable=True),
                                               ix.size, rows, out.size // rows) != 0:
            return impl["scatter_to"](xp, g, *arrays, shape=shape, index=index)
        TAKEN["scatter_to"] += 1
        return out

    def linear_add(x, w, b, r):
        """``r + linear(x, w, b)`` (``kernel.linear_add``), r of the result's shape."""
        dt = getattr(x, "dtype", None)
        if (type(x) is not np.ndarray or dt not in C_PREFIX or dt not in gemms
                or type(w) is not np.ndarray or w.dtype != dt or w.ndim != 2 or x.ndim < 1
                or x.shape[-1] != w.shape[1] or x.size == 0 or w.size == 0
                or type(r) is not np.ndarray or r.dtype != dt
                or r.shape != x.shape[:-1] + (w.shape[0],)
                or (b is not None and (type(b) is not np.ndarray or b.dtype != dt
                                       or b.shape != (w.shape[0],)))):
            return _linear_add_np(x, w, b, r)
        n, k = w.shape
        x2 = x.reshape(-1, k)
        m = x2.shape[0]
        xa, ta, lda = _operand(x2)
        wa, wt, ldb = _operand(w)
        y = np.empty(r.shape, dt)
        getattr(lib, f"{C_PREFIX[dt]}_linear_add")(
            gemms[dt], fb(xa), fb(wa),
            ffi.NULL if b is None else fb(np.ascontiguousarray(b)),
            fb(np.ascontiguousarray(r)), fb(y, require_writable=True),
            m, n, k, _T if ta else _N, lda, _N if wt else _T, ldb)
        TAKEN["linear_add"] += 1
        return y

    linear_add.chainrule_fresh = True  # a new array, as the unfused add returns
    return {"linear": linear, "scatter_to": scatter_to, "kernel.linear_add": linear_add}


def _linear_add_np(x, w, b, r):
    """The unfused ops: ``r + linear(x, w, b)`` with the impls."""
    from ..primitives import REGISTRY  # noqa: PLC0415

    return np.add(r, REGISTRY["linear"].impl(np, x, w, b))


def fold_residual_adds(g):
    """``g`` with each ``add(r, linear(x, w, b))`` whose product nothing else reads (nor is an
    output) made one op ``kernel.linear_add(x, w, b, r)`` at the add's place, for backend "c"
    (``r`` a float32/float64 array of the result's shape and dtype; no op in between may
    write ``x``, ``w``, ``b`` or ``r``).

    Example:
        >>> import chainrule as cr
        >>> lin = cr.nn.Linear(8, 8)
        >>> f = cr.jit(lambda x: (x + lin(x)).sum(), backend="numpy")
        >>> _ = f(cr.ones((4, 8))), f(cr.ones((4, 8)))
        >>> [op.name for op in fold_residual_adds(f.graph_ir()).ops][:1]
        ['kernel.linear_add']
    """
    ops = g.ops
    uses, producer = uses_of(g)
    put: dict = {}
    for j, op in enumerate(ops):
        found = _ufunc_of(op)
        if (found is None or found[0] != "add" or op.writes or len(op.outs) != 1
                or op.kwargs):
            continue
        out = op.outs[0]
        for y, r in (found[1], found[1][::-1]):
            p = producer.get(y)
            if (p is None or p in put or ops[p].kind != "prim" or ops[p].name != "linear"
                    or ops[p].writes or ops[p].kwargs or len(ops[p].args) != 4
                    or uses[y] != 1 or r is y or not _float_var(r, out)
                    or not _float_var(y, out)):
                continue
            x, w, b = ops[p].args[1:]
            mine = {v for v in (x, w, b, r) if isinstance(v, Var)}
            if any(set(ops[k].writes) & mine for k in range(p + 1, j)):
                continue
            put[p] = None
            put[j] = Op("func", "kernel.linear_add", _linear_add_np, (x, w, b, r), {}, (out,))
            break
    if not put:
        return g
    new = [put.get(i, op) for i, op in enumerate(ops) if put.get(i, op) is not None]
    return g.replace(ops=new)


def _float_var(v, like) -> bool:
    """Whether ``v`` is a float32/float64 array Var of ``like``'s shape and dtype."""
    return (isinstance(v, Var) and v.scalar is None and v.shape == like.shape
            and v.dtype == like.dtype and str(v.dtype) in ("float32", "float64"))
