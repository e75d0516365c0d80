"""matmul (batched, broadcasting, vectors too), mm, bmm, dot, outer, einsum.

Example:
    >>> import chainrule
    >>> (chainrule.ones(2, 3) @ chainrule.ones(3)).shape
    (2,)
"""

from __future__ import annotations

from ..errors import ShapeError
from ..primitives import linalg as P
from ..primitives.movement import reshape as _reshape
from ..tensor import Tensor
from ._amp import autocast_lower
from ._util import method, promote
from .elementwise import _t


@method
@autocast_lower
def matmul(input, other) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics: 1-D operands are lifted to matrices and
    the added dim removed again; batch dims broadcast.

    Example:
        >>> import chainrule
        >>> chainrule.matmul(chainrule.ones(5, 2, 3), chainrule.ones(3, 4)).shape
        (5, 2, 4)

    Operands of different dtypes are refused, as in PyTorch (a float32 input times float64
    weights is a bug more often than not): cast one of them.
    """
    a, b = _t(input), _t(other)
    if a.dtype != b.dtype:
        raise RuntimeError(f"matmul: expected both operands to have the same dtype, got "
                           f"{a.dtype.name} {tuple(a.shape)} and {b.dtype.name} "
                           f"{tuple(b.shape)}; cast one with .to(dtype)")
    sa, sb = a._data.shape, b._data.shape
    if not sa or not sb:
        raise ShapeError(f"matmul: both arguments need at least 1 dim, got shapes {tuple(sa)} "
                         f"and {tuple(sb)}")
    ka = sa[-1]
    kb = sb[-2] if len(sb) > 1 else sb[0]
    if ka != kb:
        raise ShapeError(f"matmul: shapes {tuple(sa)} and {tuple(sb)} cannot be multiplied "
                         f"({ka} != {kb})")
    va, vb = len(sa) == 1, len(sb) == 1
    if len(sa) > 2 and len(sb) == 2 and ka and a._data.flags.c_contiguous:
        # one BLAS product over all leading dims (np.matmul loops over them, ~2x slower), and
        # in backward one (k, n) weight-gradient product instead of a batch summed afterwards
        out = P.matmul(_reshape(a, shape=(a._data.size // ka, ka)), b)
        return _reshape(out, shape=sa[:-1] + (sb[-1],))
    if va:
        a = _reshape(a, shape=(1, ka))
    if vb:
        b = _reshape(b, shape=(kb, 1))
    out = P.matmul(a, b)
    if va or vb:
        s = out._data.shape
        s = s[:-2] + ((s[-2],) if not va else ()) + ((s[-1],) if not vb else ())
        out = _reshape(out, shape=s)
    return out


@method
@autocast_lower
def mm(input, mat2) -> Tensor:
    """2-D matrix product.

    Example:
        >>> import chainrule
        >>> chainrule.mm(chainrule.ones(2, 3), chainrule.ones(3, 1)).shape
        (2, 1)
    """
    a, b = _t(input), _t(mat2)
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: both arguments must be 2-D, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return matmul(a, b)


@method
@autocast_lower
def bmm(input, mat2) -> Tensor:
    """Batched 3-D matrix product (no broadcasting).

    Example:
        >>> import chainrule
        >>> chainrule.bmm(chainrule.ones(4, 2, 3), chainrule.ones(4, 3, 5)).shape
        (4, 2, 5)
    """
    a, b = _t(input), _t(mat2)
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0]:
        raise ShapeError(f"bmm: expects two 3-D tensors with the same batch size, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


@method
def dot(input, other) -> Tensor:
    """Inner product of two 1-D tensors.

    Example:
        >>> import chainrule
        >>> chainrule.dot(chainrule.tensor([1.0, 2.0]), chainrule.tensor([3.0, 4.0]))
        tensor(11.)
    """
    a, b = _t(input), _t(other)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ShapeError(f"dot: expects two 1-D tensors of equal length, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    return matmul.__wrapped__(a, b)  # not on autocast's list (PyTorch keeps dot in float32)


@method
def outer(input, vec2) -> Tensor:
    """Outer product of two 1-D tensors.

    Example:
        >>> import chainrule
        >>> chainrule.outer(chainrule.tensor([1, 2]), chainrule.tensor([3, 4]))
        tensor([[3, 4],
                [6, 8]])
    """
    a, b = _t(input), _t(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"outer: expects 1-D tensors, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return _reshape(a, shape=(a.shape[0], 1)) * _reshape(b, shape=(1, b.shape[0]))


ger = outer

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _expand_ellipsis(equation: str, operands) -> str:
    eq = equation.replace(" ", "")
    if "..." not in eq:
        return eq
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    used = set(eq) - set(".,->")
    free = [c for c in _LETTERS if c not in used]
    nell = 0
    for sub, op in zip(ins, operands):
        if "..." in sub:
            nell = max(nell, op.ndim - (len(sub) - 3))
    ell = "".join(free[:nell])
    new_ins = []
    for sub, op in zip(ins, operands):
        if "..." in sub:
            k = op.ndim - (len(sub) - 3)
            sub = sub.replace("...", ell[nell - k:] if k else "")
        new_ins.append(sub)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        letters = "".join(s for s in new_ins)
        out = ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                   and c not in ell))
    return ",".join(new_ins) + "->" + out


@autocast_lower
def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation, e.g. ``einsum('bij,bjk->bik', a, b)``; ``...`` broadcasts.
    A subscript repeated within one operand (a diagonal or trace) is refused.

    Example:
        >>> import chainrule
        >>> chainrule.einsum("ij,j->i", chainrule.ones(2, 3), chainrule.ones(3))
        tensor([3., 3.])
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ops = [_t(o) for o in operands]
    if not ops:
        raise ValueError("einsum: needs at least one operand")
    eq = _expand_ellipsis(equation, ops)
    ins, out = P.parse_einsum(eq, len(ops))
    for i, (sub, op) in enumerate(zip(ins, ops)):
        if len(sub) != op.ndim:
            raise ShapeError(f"einsum: operand {i} has {op.ndim} dims (shape {tuple(op.shape)}) "
                             f"but subscripts {sub!r}")
        if len(set(sub)) != len(sub):
            raise ValueError(f"einsum: subscript repeated within operand {i} ({sub!r}): "
                             "diagonals and traces are not supported")
    sizes: dict = {}
    for i, (sub, op) in enumerate(zip(ins, ops)):
        for c, n in zip(sub, op.shape):
            if c in sizes and sizes[c] != n:
                raise ShapeError(f"einsum: subscript {c!r} has size {sizes[c]} and {n} "
                                 f"(operand {i}, shape {tuple(op.shape)})")
            sizes[c] = n
    if len(set(o._data.dtype for o in ops)) > 1:
        first = ops[0]
        for j in range(1, len(ops)):
            first, ops[j] = promote(first, ops[j], "einsum")
        ops = [promote(o, ops[-1], "einsum")[0] for o in ops]
    return P.einsum(*ops, equation=",".join(ins) + "->" + out)
