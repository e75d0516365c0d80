"""matmul (both operands at least 2-D; the ops layer lifts vectors) and einsum."""

from __future__ import annotations

from .core import Primitive


def mT(F, x):  # noqa: N802 - PyTorch's name for the matrix transpose
    """Swap the last two axes of ``x`` in namespace ``F``."""
    n = len(x.shape)
    return F.permute(x, axes=(*range(n - 2), n - 1, n - 2))


matmul = Primitive(
    "matmul", lambda xp, a, b: xp.matmul(a, b), save="in", reads=((1,), (0,)),
    # batch dimensions that were broadcast are summed back by the engine
    vjp=[lambda F, g, a, b, out: F.matmul(g, mT(F, b)),
         lambda F, g, a, b, out: F.matmul(mT(F, a), g)],
    jvp=[lambda F, t, a, b, out: F.matmul(t, b),
         lambda F, t, a, b, out: F.matmul(a, t)], kind="linalg")


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


einsum = Primitive(
    "einsum", lambda xp, *ops, equation: xp.einsum(equation, *ops, optimize=len(ops) > 2),
    save="in", vjp=[_einsum_vjp], jvp=[_einsum_jvp], variadic=True, kind="linalg")


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


linear = Primitive(
    "linear", _linear, save="in", reads=((1,), (0,), ()),
    vjp=[lambda F, g, x, w, b, out: F.linear(g, _wT(F, w), None),
         _linear_dw,
         lambda F, g, x, w, b, out: g],  # the engine sums g back to b's shape
    jvp=[lambda F, t, x, w, b, out: F.linear(t, w, None),
         lambda F, t, x, w, b, out: F.linear(x, t, None),
         lambda F, t, x, w, b, out: F.broadcast_to(t, shape=x.shape[:-1] + (w.shape[0],))],
         kind="linalg")
