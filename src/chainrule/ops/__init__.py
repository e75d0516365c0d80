"""The functional API: every op as a function (``chainrule.exp(x)``); most are also Tensor
methods. Composites here are built from primitives only and carry no derivative code.

Example:
    >>> import chainrule
    >>> chainrule.ops.softmax(chainrule.zeros(2), dim=0)
    tensor([0.5000, 0.5000])
"""

from ._util import cast, normalize_dim, normalize_dims
from .creation import (
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace, ones,
    ones_like, rand, rand_like, randint, randn, randn_like, randperm, zeros, zeros_like,
)
from .elementwise import (
    abs, add, allclose, bitwise_not, ceil, clamp, clip, clone, cos, div, eq, equal, erf, exp,
    expm1, floor, floor_divide, ge, gt, isfinite, isinf, isnan, le, log, log1p, log2,
    logical_and, logical_not, logical_or, logical_xor, lt, maximum, minimum, mul, ne, neg,
    negative, pow, relu, remainder, round, rsqrt, sigmoid, sign, sin, sqrt, square, sub, tanh,
    to_device, true_divide, trunc, where,
)
from .linalg import bmm, dot, einsum, ger, matmul, mm, outer
from .reduce import (
    all, amax, amin, any, argmax, argmin, cumsum, log_softmax, logsumexp, max, mean, min, norm,
    prod, softmax, std, sum, var, var_mean,
)
from .shape import (
    broadcast_shapes, broadcast_to, cat, chunk, concat, concatenate, expand, expand_as, flatten,
    flip, gather, getitem, hstack, index_select, masked_fill, pad, permute, repeat, reshape,
    reshape_as, setitem, split, squeeze, stack, swapaxes, t, take_along_dim, transpose, tril,
    triu, unbind, unflatten, unsqueeze, view, view_as, vstack,
)

__all__ = [n for n in dir() if not n.startswith("_")]
