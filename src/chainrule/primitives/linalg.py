"""matmul (both operands at least 2-D; the ops layer lifts vectors) and einsum."""

from __future__ import annotations

from ..errors import ShapeError
from .core import Aval, Primitive
from .shapes import broadcast, promoted


def mT(F, x):  # noqa: N802 - PyTorch's name for the matrix transpose
    """Swap the last two axes of ``x`` in namespace ``F``."""
    n = len(x.shape)
    return F.permute(x, axes=(*range(n - 2), n - 1, n - 2))


def _matmul_shape(a, b) -> Aval:
    """(..., m, k) @ (..., k, n) -> (broadcast ..., m, n); both at least 2-D."""
    if len(a.shape) < 2 or len(b.shape) < 2 or a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit "
                         "((..., m, k) @ (..., k, n))")
    batch = broadcast("matmul", a.shape[:-2], b.shape[:-2])
    return Aval(batch + (a.shape[-2], b.shape[-1]), promoted(a, b))


matmul = Primitive(
    "matmul", lambda xp, a, b: xp.matmul(a, b), save="in", reads=((1,), (0,)),
    # batch dimensions that were broadcast are summed back by the engine
    vjp=[lambda F, g, a, b, out: F.matmul(g, mT(F, b)),
         lambda F, g, a, b, out: F.matmul(mT(F, a), g)],
    jvp=[lambda F, t, a, b, out: F.matmul(t, b),
         lambda F, t, a, b, out: F.matmul(a, t)], kind="linalg",
    shape=_matmul_shape)


# ---------------------------------------------------------------- einsum
def parse_einsum(equation: str, nops: int):
    """Split an explicit equation ('ij,jk->ik') into input subscripts and output subscripts."""
    if "->" not in equation:
        lhs = equation.replace(" ", "")
        ins = lhs.split(",")
        letters = "".join(ins)
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    else:
        lhs, out = equation.replace(" ", "").split("->")
        ins = lhs.split(",")
    if len(ins) != nops:
        raise ValueError(f"einsum: equation {equation!r} names {len(ins)} operands, got {nops}")
    return ins, out


def _einsum_vjp(F, g, *args, argnum, equation):
    ops = args[:-1]
    ins, out = parse_einsum(equation, len(ops))
    target = ins[argnum]
    others = [ins[j] for j in range(len(ops)) if j != argnum]
    other_ops = [ops[j] for j in range(len(ops)) if j != argnum]
    # letters of the target that appear nowhere else were summed out: broadcast them back
    present = set(out).union(*others) if others else set(out)
    kept = "".join(c for c in target if c in present)
    eq = ",".join([out, *others]) + "->" + kept
    r = F.einsum(g, *other_ops, equation=eq)
    if kept != target:
        shape = ops[argnum].shape
        r = F.reshape(r, shape=tuple(shape[i] if c in present else 1
                                     for i, c in enumerate(target)))
        r = F.broadcast_to(r, shape=tuple(shape))
    return r


def _einsum_jvp(F, t, *args, argnum, equation):
    ops = list(args[:-1])
    ops[argnum] = t
    return F.einsum(*ops, equation=equation)


def _einsum_shape(*ops, equation) -> Aval:
    ins, out = parse_einsum(equation, len(ops))
    sizes: dict = {}
    for sub, x in zip(ins, ops):
        if len(sub) != len(x.shape):
            raise ShapeError(f"einsum: subscripts {sub!r} name {len(sub)} axes, but the operand "
                             f"has shape {tuple(x.shape)}")
        for c, n in zip(sub, x.shape):
            if sizes.get(c, n) != n and 1 not in (n, sizes[c]):
                raise ShapeError(f"einsum: axis {c!r} has sizes {sizes[c]} and {n}")
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    return Aval(tuple(sizes[c] for c in out), promoted(*ops))


einsum = Primitive(
    "einsum", lambda xp, *ops, equation: xp.einsum(equation, *ops, optimize=len(ops) > 2),
    save="in", vjp=[_einsum_vjp], jvp=[_einsum_jvp], variadic=True, kind="linalg",
    shape=_einsum_shape)


# ---------------------------------------------------------------- linear
# y = x @ w^T + b over the last dim of x (any leading dims), as one 2-D BLAS product with the
# bias added in place into the fresh result. Fused because on every layer the separate
# permute/matmul/add cost an extra full-size allocation and pass and three recorded ops
# (measured on the MLP and transformer benchmarks, see BENCHMARKS.md). ``b`` may be None.
def _linear(xp, x, w, b):
    n_in = x.shape[-1]
    x2 = x.reshape(-1, n_in) if x.ndim != 2 else x
    out = x2 @ w.T
    if b is not None:
        out += b
    return out.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim != 2 else out


def _wT(F, w):  # noqa: N802 - w^T
    return F.permute(w, axes=(1, 0))


def _linear_dw(F, g, x, w, b, out):
    g2 = F.reshape(g, shape=(-1, g.shape[-1]))
    x2 = F.reshape(x, shape=(-1, x.shape[-1]))
    return F.matmul(_wT(F, g2), x2)


def _linear_shape(x, w, b) -> Aval:
    if len(w.shape) != 2 or x.shape[-1:] != w.shape[1:]:
        raise ShapeError(f"linear: input of shape {tuple(x.shape)} and weight of shape "
                         f"{tuple(w.shape)} do not fit (the input's last dim is in_features)")
    return Aval(tuple(x.shape[:-1]) + (w.shape[0],), promoted(x, w, b))


linear = Primitive(
    "linear", _linear, save="in", reads=((1,), (0,), ()),
    vjp=[lambda F, g, x, w, b, out: F.linear(g, _wT(F, w), None),
         _linear_dw,
         lambda F, g, x, w, b, out: g],  # the engine sums g back to b's shape
    jvp=[lambda F, t, x, w, b, out: F.linear(t, w, None),
         lambda F, t, x, w, b, out: F.linear(x, t, None),
         lambda F, t, x, w, b, out: F.broadcast_to(t, shape=x.shape[:-1] + (w.shape[0],))],
         kind="linalg",
    shape=_linear_shape)
