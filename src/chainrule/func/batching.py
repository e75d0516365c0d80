"""vmap's batching rules, one per primitive, keyed by primitive name (:data:`RULES`).

Where the rules live: here, on one page. Most primitives get theirs from their ``kind=`` mark
(every ``elementwise`` primitive is batched alike, so are reductions, scans along an axis and
window ops: :data:`KIND_RULES`); the others (movement, contractions, fused kernels) have their
own rule in :data:`RULES`, since they know about batch dimensions, index plans and folding
tricks. The tests check that every primitive in ``REGISTRY`` has a rule (a primitive without
one fails :func:`chainrule.func.vmap` with an error naming it). Adding an elementwise primitive
needs nothing here; a primitive of kind movement, linalg or fused needs one entry in RULES.

How vmap runs (see :func:`chainrule.func.vmap`): every mapped input becomes a *logical*
tensor holding the first example (so the ops layer sees per-example shapes) and carrying, at
the vmap level, the payload ``(batched value, batch dim)``. Each primitive runs once on the
logical values; then the level's :meth:`BatchLevel.process` calls the primitive's rule

    ``rule(level, prim, xs, bdims, out, **params) -> (batched value, batch dim)``

where ``xs`` are the batched values (or the plain inputs, for unbatched ones), ``bdims`` the
batch dims (None for unbatched inputs) and ``out`` the logical output (its shape is the
per-example shape). Rules are written with primitives (``F.<name>``), so they are recorded,
differentiable and batched again by outer levels. No rule loops over the batch.

Folding tricks: matmul with a shared right operand folds the batch into the rows (one BLAS
call); convolution and pooling fold it into the samples axis N, or, for per-example weights,
into the channels with one group per example; recurrent scans fold it into the samples, or,
for per-example weights, into the features with a block-diagonal weight; a batched outer
product (contraction of size 1, the weight gradients of ``vmap(grad)``) is a broadcast
multiply, ~10x faster than NumPy's stacked matmul there.

Known limits, all outside the primitives: Python control flow on the values of a batched
tensor (``bool(x)``, ``x.item()``) and ops-layer code that computes on the raw array of a
batched tensor (today: integer class targets in ``nll_loss``/``cross_entropy``) see the first
example only; in-place writes into a batched tensor are not batched; random ops draw once per
call (``randomness="same"``).

Example:
    >>> import chainrule
    >>> from chainrule.func import vmap
    >>> from chainrule.func.batching import RULES
    >>> "matmul" in RULES
    True
    >>> vmap(lambda r: r.sum())(chainrule.tensor([[1.0, 2.0], [3.0, 4.0]]))
    tensor([3., 7.])
"""


from __future__ import annotations

import math
import string

import numpy as np

from ..autograd import forward as fwd
from ..backend import get_array_module
from ..primitives import REGISTRY, TENSOR
from ..primitives.linalg import parse_einsum
from ..primitives.movement import IndexArg, fill_index, split_index, sum_to_axes
from ..tensor import Tensor, _wrap

F = TENSOR

__all__ = ["RULES", "BatchLevel", "BatchingError"]


class BatchingError(RuntimeError):
    """A primitive cannot be batched (no rule), or a vmap'd function misbehaved."""


class BatchLevel(fwd.Level):
    """A vmap level of batch size ``size``."""

    kind = fwd.BATCH
    __slots__ = ("name", "size")

    def __init__(self, size: int, name: str = "vmap"):
        self.size = size
        self.name = name

    def process(self, prim, inputs, params, out, fws):
        lid = self.id
        xs = []
        bdims = []
        for x, fw in zip(inputs, fws):
            p = fw.get(lid) if fw is not None else None
            if p is None:
                xs.append(x)
                bdims.append(None)
            else:
                xs.append(p[0])
                bdims.append(p[1])
        rule = RULES.get(prim.name)
        if rule is None and prim.name not in _DERIVED:  # a primitive registered since import
            _derive_rules()
            rule = RULES.get(prim.name)
        if rule is None:
            raise BatchingError(
                f"{self.name}: primitive {prim.name!r} has no batching rule, so it cannot run "
                "under vmap; add one to chainrule.func.batching.RULES")
        res = rule(self, prim, xs, bdims, out, **params)
        # several outputs: the rule returns one (batched value, batch dim) per output
        for o, (value, bdim) in zip(out, res) if prim.multi else ((out, res),):
            vshape = value._data.shape
            if vshape[:bdim] + vshape[bdim + 1:] != o._data.shape or \
                    vshape[bdim] != self.size or value._data.dtype != o._data.dtype:
                raise BatchingError(
                    f"{self.name}: internal error in the batching rule of {prim.name!r}: "
                    f"batched value of shape {vshape} ({value.dtype.name}, batch dim {bdim}) "
                    f"for a per-example result of shape {o._data.shape} ({o.dtype.name}) and "
                    f"batch size {self.size}")
            fwd.set_payload(o, lid, (value, bdim))

    def check_inplace(self, prim) -> None:
        """Optimiser updates write their inputs in place: refused before anything is written."""
        _no_update(self, prim, (), (), None)

    def batched_array(self, a):
        """The batched value (batch dim first) of a raw index array ``a`` found in a
        primitive's params, or None when ``a`` is not batched at this level."""
        ent = fwd.batched_index(a)
        if ent is None:
            return None
        p = ent[1].get(self.id)
        if p is None:
            return None
        return to_front(p[0], p[1])


# ---------------------------------------------------------------- helpers
def moveaxis(x: Tensor, src: int, dst: int) -> Tensor:
    """``x`` with axis ``src`` moved to position ``dst`` (a recorded permute)."""
    if src == dst:
        return x
    perm = list(range(x._data.ndim))
    perm.pop(src)
    perm.insert(dst, src)
    return F.permute(x, axes=tuple(perm))


def to_front(x: Tensor, bdim: int) -> Tensor:
    """``x`` with its batch dim first."""
    return moveaxis(x, bdim, 0)


def with_batch(x, bdim, size: int) -> Tensor:
    """A batched value with the batch dim first (an unbatched one is broadcast, no copy)."""
    if bdim is not None:
        return to_front(x, bdim)
    shape = x._data.shape
    return F.broadcast_to(F.reshape(x, shape=(1,) + shape), shape=(size,) + shape)


def pad_rank(x: Tensor, rank: int) -> Tensor:
    """Insert size-1 axes after the (leading) batch dim until the per-example rank is
    ``rank`` (so the value broadcasts like its per-example self)."""
    shape = x._data.shape
    missing = rank - (len(shape) - 1)
    if missing <= 0:
        return x
    return F.reshape(x, shape=shape[:1] + (1,) * missing + shape[1:])


def _phys(axis: int, bdim: int) -> int:
    """Physical axis of per-example ``axis`` when the batch dim sits at ``bdim``."""
    return axis + (axis >= bdim)


# ---------------------------------------------------------------- elementwise
def _elementwise(level, prim, xs, bdims, out, **params):
    r = out._data.ndim
    batched = [(x, b) for x, b in zip(xs, bdims) if b is not None]
    d = batched[0][1]
    # fast path: every batched input has full rank and the same batch dim, and unbatched
    # tensors only cover the axes after it (right-aligned broadcasting still lines up)
    if all(b == d and x._data.ndim == r + 1 for x, b in batched) and all(
            b is not None or not isinstance(x, Tensor) or x._data.ndim <= r - d
            for x, b in zip(xs, bdims)):
        return prim(*xs, **params), d
    new = []
    for x, b in zip(xs, bdims):
        new.append(x if b is None else pad_rank(to_front(x, b), r))
    return prim(*new, **params), 0


# ---------------------------------------------------------------- reductions and scans
def _reduce(level, prim, xs, bdims, out, axes, keepdims):
    x, b = xs[0], bdims[0]
    nd = x._data.ndim - 1
    laxes = tuple(range(nd)) if axes is None else tuple(axes)
    phys = tuple(sorted(_phys(a, b) for a in laxes))
    y = prim(x, axes=phys, keepdims=keepdims)
    return y, b if keepdims else b - sum(a < b for a in laxes)


def _arg_reduce(level, prim, xs, bdims, out, axis, keepdims):
    x, b = xs[0], bdims[0]
    if axis is None:
        xf = to_front(x, b)
        nd = xf._data.ndim - 1
        xf = F.reshape(xf, shape=(level.size, math.prod(xf._data.shape[1:])))
        y = prim(xf, axis=1, keepdims=False)
        if keepdims:
            y = F.reshape(y, shape=(level.size,) + (1,) * nd)
        return y, 0
    y = prim(x, axis=_phys(axis, b), keepdims=keepdims)
    return y, b if keepdims else b - (axis < b)


def _linear(level, prim, xs, bdims, out):
    (x, w, b), (bx, bw, bb) = xs, bdims
    if bw is None and bb is None:  # only x batched: the batch is one more leading dim
        return prim(to_front(x, bx), w, b), 0
    size = level.size
    X = with_batch(x, bx, size)  # (B, ..., in)
    Wt = F.permute(with_batch(w, bw, size), axes=(0, 2, 1))  # (B, in, out)
    mid = X._data.ndim - 3
    y = F.matmul(X, F.reshape(Wt, shape=(size,) + (1,) * mid + Wt._data.shape[1:]))
    if b is not None:
        Bv = with_batch(b, bb, size)
        y = y + F.reshape(Bv, shape=(size,) + (1,) * (mid + 1) + Bv._data.shape[1:])
    return y, 0


def _layer_norm(level, prim, xs, bdims, out, axes, eps):
    x, b = xs[0], bdims[0]
    return prim(x, axes=tuple(sorted(_phys(a, b) for a in axes)), eps=eps), b


def _along_axis(level, prim, xs, bdims, out, axis):  # cumsum, softmax, log_softmax
    x, b = xs[0], bdims[0]
    return prim(x, axis=_phys(axis, b)), b


# ---------------------------------------------------------------- movement
def _reshape(level, prim, xs, bdims, out, shape):
    x = to_front(xs[0], bdims[0])
    return F.reshape(x, shape=(level.size,) + tuple(out._data.shape)), 0


def _permute(level, prim, xs, bdims, out, axes):
    x, b = xs[0], bdims[0]
    return F.permute(x, axes=(b,) + tuple(_phys(a, b) for a in axes)), 0


def _broadcast_to(level, prim, xs, bdims, out, shape):
    x = pad_rank(to_front(xs[0], bdims[0]), len(shape))
    return F.broadcast_to(x, shape=(level.size,) + tuple(shape)), 0


def _sum_to(level, prim, xs, bdims, out, shape):
    x = to_front(xs[0], bdims[0])
    _, axes = sum_to_axes(x._data.shape[1:], tuple(shape))
    if axes:
        x = F.sum(x, axes=tuple(a + 1 for a in axes), keepdims=True)
    target = (level.size,) + tuple(shape)
    if x._data.shape != target:
        x = F.reshape(x, shape=target)
    return x, 0


def _flip(level, prim, xs, bdims, out, axes):
    x, b = xs[0], bdims[0]
    return F.flip(x, axes=tuple(sorted(_phys(a, b) for a in axes))), b


def _pad(level, prim, xs, bdims, out, widths, value):
    x, b = xs[0], bdims[0]
    w = list(widths)
    w.insert(b, (0, 0))
    return F.pad(x, widths=tuple(w), value=value), b


def _concatenate(level, prim, xs, bdims, out, axis):
    vals = [with_batch(x, b, level.size) for x, b in zip(xs, bdims)]
    return F.concatenate(*vals, axis=axis + 1), 0


# ---------------------------------------------------------------- indexing
def _is_array(e) -> bool:
    return hasattr(e, "shape") and hasattr(e, "dtype") and not isinstance(e, (np.generic,))


def _is_bool_scalar(e) -> bool:
    return isinstance(e, (bool, np.bool_)) or (_is_array(e) and e.ndim == 0
                                               and e.dtype.kind == "b")


def _expand(index: tuple, n: int) -> tuple:
    """``index`` with its Ellipsis spelled out as slices (for a per-example rank ``n``)."""
    if not any(e is Ellipsis for e in index):
        return tuple(index)
    used = sum(1 for e in index if not (e is None or e is Ellipsis or _is_bool_scalar(e)))
    out = []
    for e in index:
        if e is Ellipsis:
            out.extend([slice(None)] * (n - used))
        else:
            out.append(e)
    return tuple(out)


class _Plan:
    """How a per-example index becomes a batched one.

    ``index``: the batched index for the value with its batch dim first; ``raw_bdim``: where
    NumPy's indexing puts the batch dim; ``perm``: the permutation that brings the raw result
    to (batch, per-example layout), or None; ``target``: the per-example result shape."""

    __slots__ = ("index", "perm", "raw_bdim", "target")


def _plan(level, index: tuple, arrays, bdims, shape: tuple) -> _Plan:
    """The plan of ``x[index]`` for a per-example ``x`` of ``shape``: ``index`` is the
    primitive's template, ``arrays`` its index inputs (batched at this level where their
    ``bdims`` entry is not None)."""
    n = len(shape)
    objs = _expand(index, n)  # what goes into the batched index: inputs as they came
    entries = list(objs)  # raw per-example arrays, for shapes
    batched = {}
    for j, e in enumerate(objs):
        if type(e) is IndexArg:
            a, b = arrays[e.k], bdims[e.k]
            if b is not None:
                batched[j] = to_front(a, b)
                entries[j] = batched[j]._data[0]
            else:
                entries[j] = getattr(a, "_data", a)
    has_arrays = any(_is_array(e) and not _is_bool_scalar(e) for e in entries)
    adv = [j for j, e in enumerate(entries)
           if _is_array(e) or _is_bool_scalar(e) or (has_arrays and isinstance(e, (int, np.integer))
                                                      and not isinstance(e, bool))]
    # per-example result shape (no allocation)
    adv_shapes = []
    for j in adv:
        e = entries[j]
        if j in batched:
            adv_shapes.append(tuple(batched[j]._data.shape[1:]))
        elif _is_bool_scalar(e):
            adv_shapes.append((1,) if bool(e) else (0,))
        else:
            adv_shapes.append(tuple(np.shape(e)))
    S = tuple(np.broadcast_shapes(*adv_shapes)) if adv else ()
    basic_dims = []  # (position in index, result size) of each basic result dim
    dim = 0
    for j, e in enumerate(entries):
        if e is None:
            basic_dims.append((j, 1))
        elif j in adv:
            if not _is_bool_scalar(e):
                dim += 1
        elif isinstance(e, slice):
            basic_dims.append((j, len(range(*e.indices(shape[dim])))))
            dim += 1
        else:  # a plain int (basic indexing)
            dim += 1
    rest = tuple(shape[dim:])
    adjacent = bool(adv) and adv == list(range(adv[0], adv[0] + len(adv)))
    before = [s for j, s in basic_dims if adv and j < adv[0]]
    after = [s for j, s in basic_dims if not adv or j > adv[0]]
    plan = _Plan()
    if not adv:
        plan.target = tuple(s for _, s in basic_dims) + rest
    elif adjacent:
        plan.target = tuple(before) + S + tuple(after) + rest
    else:
        plan.target = S + tuple(s for _, s in basic_dims) + rest
    plan.perm = None
    filled = fill_index(objs, arrays)
    if not batched:
        plan.index = (slice(None),) + filled
        plan.raw_bdim = 0 if (not adv or adjacent) else len(S)
        return plan
    size = level.size
    k = len(S)
    new = [pad_rank(batched[j], k) if j in batched else e for j, e in enumerate(filled)]
    like = next(iter(batched.values()))._data
    xp = get_array_module(like)
    ar = xp.arange(size).reshape((size,) + (1,) * k)
    plan.index = (ar,) + tuple(new)
    plan.raw_bdim = 0
    if adjacent and adv[0] > 0:
        # NumPy put the advanced block (batch included) first: raw = (B, S, before, after)
        nb = len(before)
        plan.perm = (0,) + tuple(1 + k + i for i in range(nb)) + tuple(1 + i for i in range(k)) \
            + tuple(range(1 + k + nb, 1 + len(plan.target)))
    return plan


def _to_raw(v: Tensor, plan: _Plan) -> Tensor:
    """A canonical (batch-first) value in the layout that ``X[plan.index]`` has."""
    if plan.perm is not None:
        inv = [0] * len(plan.perm)
        for i, p in enumerate(plan.perm):
            inv[p] = i
        return F.permute(v, axes=tuple(inv))
    return moveaxis(v, 0, plan.raw_bdim)


def _getitem(level, prim, xs, bdims, out, index):
    x, b = xs[0], bdims[0]
    shape = x._data.shape if b is None else x._data.shape[:b] + x._data.shape[b + 1:]
    plan = _plan(level, index, xs[1:], bdims[1:], shape)
    template, arrays = split_index(plan.index)
    y = F.getitem(with_batch(x, b, level.size), *arrays, index=template)
    if plan.perm is not None:
        return F.permute(y, axes=plan.perm), 0
    return y, plan.raw_bdim


def _scatter_to(level, prim, xs, bdims, out, shape, index):
    plan = _plan(level, index, xs[1:], bdims[1:], tuple(shape))
    g = with_batch(xs[0], bdims[0], level.size)
    g = F.broadcast_to(pad_rank(g, len(plan.target)), shape=(level.size,) + plan.target)
    template, arrays = split_index(plan.index)
    return F.scatter_to(_to_raw(g, plan), *arrays, shape=(level.size,) + tuple(shape),
                        index=template), 0


def _index_put(level, prim, xs, bdims, out, index):
    x, v, bx, bv = xs[0], xs[1], bdims[0], bdims[1]
    shape = x._data.shape if bx is None else x._data.shape[:bx] + x._data.shape[bx + 1:]
    plan = _plan(level, index, xs[2:], bdims[2:], shape)
    X = with_batch(x, bx, level.size)
    if isinstance(v, Tensor):
        V = with_batch(v, bv, level.size)
        V = F.broadcast_to(pad_rank(V, len(plan.target)), shape=(level.size,) + plan.target)
        v = _to_raw(V, plan)
    template, arrays = split_index(plan.index)
    return F.index_put(X, v, *arrays, index=template), 0


def _index_operand(level, idx, bdim_size):
    """A raw index array in a primitive's params, with a batch dim first."""
    v = level.batched_array(idx)
    if v is None:
        v = with_batch(_wrap(idx), None, bdim_size)
    return v._data


def _index_input(level, idx, bdim):
    """gather's / scatter_add's index input with the batch dim first (a raw array given as
    the input is found again if it is a batched tensor's array)."""
    if bdim is None and not isinstance(idx, Tensor):
        return _index_operand(level, idx, level.size)
    return with_batch(idx, bdim, level.size)


def _gather(level, prim, xs, bdims, out, axis):
    x = with_batch(xs[0], bdims[0], level.size)
    return F.gather(x, _index_input(level, xs[1], bdims[1]), axis=axis + 1), 0


def _scatter_add(level, prim, xs, bdims, out, shape, axis):
    g = with_batch(xs[0], bdims[0], level.size)
    return F.scatter_add(g, _index_input(level, xs[1], bdims[1]),
                         shape=(level.size,) + tuple(shape), axis=axis + 1), 0


# ---------------------------------------------------------------- linear algebra
def _stacked_matmul(a, b):
    """``a @ b`` for stacked operands; a contraction of size 1 (per-example outer products,
    the weight gradients of vmap(grad)) is a broadcast multiply: NumPy's stacked matmul takes
    ~10x longer there."""
    if a._data.shape[-1] == 1:
        return F.mul(a, b)
    return F.matmul(a, b)


def _matmul(level, prim, xs, bdims, out):
    (a, b), (ba, bb) = xs, bdims
    if bb is None:
        A = to_front(a, ba)
        if b._data.ndim == 2:  # fold the batch into the rows: one BLAS call
            sa = A._data.shape
            y = F.matmul(F.reshape(A, shape=(math.prod(sa[:-1]), sa[-1])), b)
            return F.reshape(y, shape=sa[:-1] + (b._data.shape[-1],)), 0
        return _stacked_matmul(pad_rank(A, b._data.ndim), b), 0
    Bm = to_front(b, bb)
    if ba is None:
        return _stacked_matmul(a, pad_rank(Bm, a._data.ndim)), 0
    A = to_front(a, ba)
    r = max(A._data.ndim, Bm._data.ndim) - 1
    return _stacked_matmul(pad_rank(A, r), pad_rank(Bm, r)), 0


def _einsum(level, prim, xs, bdims, out, equation):
    ins, res = parse_einsum(equation, len(xs))
    used = set(equation)
    letter = next(c for c in string.ascii_letters if c not in used)
    ops = []
    subs = []
    for x, b, s in zip(xs, bdims, ins):
        if b is None:
            ops.append(x)
            subs.append(s)
        else:
            ops.append(to_front(x, b))
            subs.append(letter + s)
    return F.einsum(*ops, equation=",".join(subs) + "->" + letter + res), 0


# ---------------------------------------------------------------- convolution and pooling
def _fold(x, b, size):
    """(B, N, ...) -> (B*N, ...): the batch folded into the samples axis."""
    X = with_batch(x, b, size)
    s = X._data.shape
    return F.reshape(X, shape=(s[0] * s[1],) + s[2:])


def _unfold(y, size):
    s = y._data.shape
    return F.reshape(y, shape=(size, s[0] // size) + s[1:]), 0


def _into_channels(x, b, size):
    """(B, N, C, ...) -> (N, B*C, ...): the batch folded into the channels (groups trick)."""
    X = moveaxis(with_batch(x, b, size), 0, 1)
    s = X._data.shape
    return F.reshape(X, shape=(s[0], s[1] * s[2]) + s[3:])


def _weights_grouped(w, b):
    W = to_front(w, b)
    s = W._data.shape
    return F.reshape(W, shape=(s[0] * s[1],) + s[2:]), s[1]


def _bias_grouped(b, bb, size):
    """A per-channel bias (O,) -> (B*O,), batch-major like the grouped weights."""
    if b is None:
        return None
    v = with_batch(b, bb, size)
    return F.reshape(v, shape=(size * v._data.shape[1],))


def _conv(level, prim, xs, bdims, out, groups, **p):
    (x, w, b), (bx, bw, bb) = xs, bdims
    size = level.size
    if bw is None and bb is None:  # fold the batch into the samples: one conv
        return _unfold(F.conv(_fold(x, bx, size), w, b, groups=groups, **p), size)
    # per-example weights: the batch goes into the channels, one group per example
    Wg, o = _weights_grouped(with_batch(w, bw, size), 0)
    y = F.conv(_into_channels(x, bx, size), Wg, _bias_grouped(b, bb, size),
               groups=groups * size, **p)
    s = y._data.shape
    return F.reshape(y, shape=(s[0], size, o) + s[2:]), 1


def _conv_transpose(level, prim, xs, bdims, out, groups, size, **p):
    (y, w, b), (by, bw, bb) = xs, bdims
    n = level.size
    if bw is None and bb is None:
        return _unfold(F.conv_transpose(_fold(y, by, n), w, b, groups=groups, size=size, **p),
                       n)
    Wg, _ = _weights_grouped(with_batch(w, bw, n), 0)
    x = F.conv_transpose(_into_channels(y, by, n), Wg, _bias_grouped(b, bb, n),
                         groups=groups * n, size=size, **p)
    s = x._data.shape
    return F.reshape(x, shape=(s[0], n, s[1] // n) + s[2:]), 1


def _conv_weight(level, prim, xs, bdims, out, groups, kernel, **p):
    (x, y), (bx, by) = xs, bdims
    n = level.size
    dw = F.conv_weight(_into_channels(x, bx, n), _into_channels(y, by, n), groups=groups * n,
                       kernel=kernel, **p)
    s = dw._data.shape
    return F.reshape(dw, shape=(n, s[0] // n) + s[1:]), 0


def _self_attention(level, prim, xs, bdims, out, heads, scale, seq_first):
    """The batch folded into the attention's samples axis N (of qkv, bias and dmask)."""
    (qkv, bias, dmask), (bq, bb, bd) = xs, bdims
    n = level.size
    Q = with_batch(qkv, bq, n)  # (B, N, L, 3E) or (B, L, N, 3E)
    if seq_first:
        Q = moveaxis(Q, 0, 1)  # (L, B, N, 3E)
        s = Q._data.shape
        Q = F.reshape(Q, shape=(s[0], s[1] * s[2], s[3]))
        N = s[2]
    else:
        s = Q._data.shape
        Q = F.reshape(Q, shape=(s[0] * s[1],) + s[2:])
        N = s[1]
    if bias is not None and (bb is not None or (bias._data.ndim == 4 and
                                                 bias._data.shape[0] != 1)):
        b4 = pad_rank(with_batch(bias, bb, n), 4)  # (B, N or 1, H or 1, L, S)
        sb = b4._data.shape
        b4 = F.broadcast_to(b4, shape=(n, N) + sb[2:])
        bias = F.reshape(b4, shape=(n * N,) + sb[2:])
    if dmask is not None:
        dm = with_batch(dmask, bd, n)
        sd = dm._data.shape
        dmask = F.reshape(dm, shape=(sd[0] * sd[1],) + sd[2:])
    o, p = prim(Q, bias, dmask, heads=heads, scale=scale, seq_first=seq_first)
    # both outputs hold the folded N' = B*N samples: split them back by example
    so, sp = o._data.shape, p._data.shape
    if seq_first:  # (L, B*N, E) -> (L, B, N, E)
        bo = (F.reshape(o, shape=(so[0], n, N, so[2])), 1)
    else:  # (B*N, L, E) -> (B, N, L, E)
        bo = (F.reshape(o, shape=(n, N) + so[1:]), 0)
    return [bo, (F.reshape(p, shape=(n, N) + sp[1:]), 0)]


# recurrent scans (layouts in primitives/recurrent.py). Shared weights: the batch is folded
# into the scan's samples axis B. Batched weights: it is folded into the features, with a
# block-diagonal weight (one H x H block per example and gate), so the scan runs once on
# V*H features (V times the product's work, no loop over the batch).
def _block_diag(W, gates: int, size: int):
    """Per-example weights (V, G*H, H) -> one (G*V*H, V*H) block-diagonal weight."""
    s = W._data.shape
    H = s[2]
    W5 = F.reshape(W, shape=(size, gates, H, H))
    eye = _wrap(get_array_module(W._data).eye(size, dtype=W._data.dtype))
    big = F.einsum(W5, eye, equation="vgij,vu->gviuj")
    return F.reshape(big, shape=(gates * size * H, size * H))


def _gate_bias(b, gates: int, size: int):
    """Per-example gate biases (V, G*H) -> (G*V*H,), gate-major like the block weight."""
    s = b._data.shape
    b3 = F.permute(F.reshape(b, shape=(size, gates, s[1] // gates)), axes=(1, 0, 2))
    return F.reshape(b3, shape=(s[1] * size,))


def _gated_scan(level, prim, xs, bdims, gates, segments, nweights, **params):
    """lstm_scan (gates 4, outputs h, c, gates = 1, 1, 4 blocks of H) and gru_scan
    (gates 3, outputs h, [r z hn], n = 1, 3, 1): inputs (xg (L, B, G*H), *weights,
    *states (B, H)); one output (L, B, k H) per segment k, batched along axis 1."""
    n = level.size
    xg, weights, states = xs[0], xs[1:1 + nweights], xs[1 + nweights:]
    bx, bw, bs = bdims[0], bdims[1:1 + nweights], bdims[1 + nweights:]
    X = with_batch(xg, bx, n)                        # (V, L, B, G*H)
    V, L, B, GH = X._data.shape
    H = GH // gates
    S = [with_batch(h, b, n) for h, b in zip(states, bs)]   # (V, B, H) each
    per = []
    if all(b is None for b in bw):                      # shared weights: fold V into the batch
        Xf = F.reshape(F.permute(X, axes=(1, 0, 2, 3)), shape=(L, V * B, GH))
        Sf = [F.reshape(h, shape=(V * B, H)) for h in S]
        ys = prim(Xf, *weights, *Sf, **params)
        for k, y in zip(segments, ys):                  # (L, V B, k H) -> (L, V, B, k H)
            per.append((F.reshape(y, shape=(L, V, B, k * H)), 1))
    else:                                               # per-example weights: V into features
        Wb = [with_batch(w, b, n) for w, b in zip(weights, bw)]
        Xf = F.reshape(F.permute(F.reshape(X, shape=(V, L, B, gates, H)), axes=(1, 2, 3, 0, 4)),
                       shape=(L, B, gates * V * H))
        Wf = [_block_diag(Wb[0], gates, n)] + [_gate_bias(b, gates, n) for b in Wb[1:]]
        Sf = [F.reshape(F.permute(h, axes=(1, 0, 2)), shape=(B, V * H)) for h in S]
        ys = prim(Xf, *Wf, *Sf, **params)
        for k, y in zip(segments, ys):                  # (L, B, k, V, H) -> (L, V, B, k H)
            seg = F.reshape(y, shape=(L, B, k, V, H))
            per.append((F.reshape(F.permute(seg, axes=(0, 3, 1, 2, 4)),
                                  shape=(L, V, B, k * H)), 1))
    return per


def _lstm_scan(level, prim, xs, bdims, out, **params):
    return _gated_scan(level, prim, xs, bdims, 4, (1, 1, 4), 1, **params)


def _gru_scan(level, prim, xs, bdims, out, **params):
    return _gated_scan(level, prim, xs, bdims, 3, (1, 3, 1), 2, **params)


def _rnn_scan(level, prim, xs, bdims, out, **params):
    (xg, w, h0), (bx, bw, bh) = xs, bdims
    n = level.size
    X = with_batch(xg, bx, n)  # (V, L, B, H)
    V, L, B, H = X._data.shape
    h = with_batch(h0, bh, n)  # (V, B, H)
    if bw is None:
        y = prim(F.reshape(moveaxis(X, 0, 1), shape=(L, V * B, H)), w,
                 F.reshape(h, shape=(V * B, H)), **params)
        return F.reshape(y, shape=(L, V, B, H)), 1
    Xf = F.reshape(F.permute(X, axes=(1, 2, 0, 3)), shape=(L, B, V * H))
    hf = F.reshape(F.permute(h, axes=(1, 0, 2)), shape=(B, V * H))
    y = prim(Xf, _block_diag(to_front(w, bw), 1, n), hf, **params)
    return F.reshape(y, shape=(L, B, V, H)), 2


def _fold_all(level, prim, xs, bdims, out, **params):
    """Ops whose every tensor input has the samples axis first (pooling, window ops)."""
    size = level.size
    args = [_fold(x, b, size) if isinstance(x, Tensor) else x for x, b in zip(xs, bdims)]
    return _unfold(prim(*args, **params), size)


# ---------------------------------------------------------------- the table
def _no_update(level, prim, xs, bdims, out, **params):
    raise BatchingError(f"{level.name}: {prim.name} writes its inputs in place (an optimiser "
                        "step) and cannot run under vmap; step the optimiser outside the vmap")


def _no_keys(level, prim, xs, bdims, out, **params):
    raise BatchingError(f"{level.name}: {prim.name} got a batch of generator keys; draws under "
                        "vmap use one generator state for the whole batch (randomness='same'): "
                        "pass the generator state unbatched")


KIND_RULES: dict = {
    "update": _no_update,
    "random": _no_keys,
    "elementwise": _elementwise,
    "reduction": _reduce,
    "index_reduction": _arg_reduce,
    "along_axis": _along_axis,
    "window": _fold_all,
}
"""Rules shared by every primitive of a kind (its ``kind=`` mark in chainrule.primitives)."""

RULES: dict = {
    "layer_norm": _layer_norm, "linear": _linear,
    "reshape": _reshape, "permute": _permute, "broadcast_to": _broadcast_to,
    "sum_to": _sum_to, "flip": _flip, "pad": _pad, "concatenate": _concatenate,
    "getitem": _getitem, "scatter_to": _scatter_to, "index_put": _index_put,
    "gather": _gather, "scatter_add": _scatter_add, "matmul": _matmul, "einsum": _einsum,
    "conv": _conv, "conv_transpose": _conv_transpose, "conv_weight": _conv_weight,
    "self_attention": _self_attention,
    "rnn_scan": _rnn_scan, "lstm_scan": _lstm_scan, "gru_scan": _gru_scan,
}
"""The batching rule of each primitive, by name: its own (above) or its kind's."""
_DERIVED: set = set()  # names whose rule came from their kind (derived once, when first seen)


def _derive_rules() -> None:
    for name, prim in REGISTRY.items():
        if name not in RULES and name not in _DERIVED and prim.kind in KIND_RULES:
            RULES[name] = KIND_RULES[prim.kind]
            _DERIVED.add(name)


_derive_rules()


def missing_rules() -> list:
    """Names of registered primitives that have no batching rule (should be empty).

    Example:
        >>> from chainrule.func.batching import missing_rules
        >>> missing_rules()
        []
    """
    _derive_rules()
    return sorted(n for n in REGISTRY if n not in RULES)
