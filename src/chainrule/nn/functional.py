"""Functional forms of layers, activations and losses (PyTorch's ``torch.nn.functional``).

Most live in ``chainrule.ops.nn`` and are re-exported here; ``batch_norm`` and ``embedding``
are defined here (they carry module state: running statistics, an embedding table).

Example:
    >>> import chainrule, chainrule.nn.functional as F
    >>> F.relu(chainrule.tensor([-1.0, 1.0]))
    tensor([0., 1.])
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd.grad_mode import STATE
from ..errors import ShapeError
from ..ops.attention import scaled_dot_product_attention
from ..ops.conv import *  # noqa: F403 - conv1d/2d/3d, pooling, interpolate
from ..ops.conv import __all__ as _conv_all
from ..ops.elementwise import _t, where
from ..ops.nn import *  # noqa: F403
from ..ops.nn import __all__ as _nn_all
from ..ops.nn import bilinear
from ..ops.reduce import sum as _sum
from ..ops.resize import pixel_shuffle, pixel_unshuffle
from ..ops.shape import (
    pad,
    reshape,
)
from ..primitives import movement as _PM
from ..tensor import Tensor, _wrap

__all__ = [*_nn_all, *_conv_all, "batch_norm", "bilinear", "embedding", "group_norm", "pad",
           "pixel_shuffle", "pixel_unshuffle", "scaled_dot_product_attention"]


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise each group of channels of an (N, C, ...) input over the group's channels and
    all spatial positions (biased variance), then apply per-channel ``weight`` and ``bias``.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> y = F.group_norm(chainrule.randn(2, 4, 3), 2)
        >>> round(float(y[0, :2].mean()), 5) == 0.0
        True
    """
    from ..ops.reduce import mean  # noqa: PLC0415

    x = _t(input)
    if x.ndim < 2:
        raise ShapeError(f"group_norm: expected an input of shape (N, C, ...), got "
                         f"{tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ShapeError(f"group_norm: {c} channels cannot be split into {num_groups} groups")
    g = reshape(x, (n, num_groups, -1))
    mu = mean(g, 2, keepdim=True)
    d = g - mu
    var = mean(d * d, 2, keepdim=True)
    y = reshape(d * ((var + eps) ** -0.5), tuple(x.shape))
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over dim 1 (channels) of an (N, C, ...) input.

    Training: normalise with the batch mean and the biased batch variance over every dim but
    1, and, where given, update ``running_mean`` / ``running_var`` in place (no graph) as
    ``r = (1 - momentum) r + momentum * stat`` with the unbiased variance. Evaluation: use
    the running statistics. Then scale by ``weight`` and shift by ``bias`` (shape (C,)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> x = chainrule.tensor([[1.0], [3.0]])
        >>> rm, rv = chainrule.zeros(1), chainrule.ones(1)
        >>> F.batch_norm(x, rm, rv, training=True)
        tensor([[-1.0000],
                [ 1.0000]])
        >>> rm, rv
        (tensor([0.2000]), tensor([1.1000]))
    """
    x = _t(input)
    if x.ndim < 2:
        raise ShapeError(f"batch_norm: expected an input with at least 2 dims (N, C, ...), got "
                         f"shape {tuple(x.shape)}")
    if x._data.dtype.kind not in "fV":
        raise TypeError(f"batch_norm: input must be floating point, got {x.dtype.name}")
    c = x.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != (c,):
            raise ShapeError(f"batch_norm: {name} must have shape ({c},) for an input with {c} "
                             f"channels (shape {tuple(x.shape)}), got {tuple(t.shape)}")
    bshape = (c,) + (1,) * (x.ndim - 2)  # broadcasts against (N, C, ...)
    if training:
        axes = (0, *range(2, x.ndim))
        n = x.numel() // c if c else 0
        if n <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {tuple(x.shape)}")
        mu = _sum(x, axes, keepdim=True) / n
        d = x - mu
        ss = _sum(d * d, axes, keepdim=True)
        rstd = (ss / n + eps) ** -0.5
        if running_mean is not None or running_var is not None:
            _update_running(running_mean, running_var, mu._data, ss._data, n, momentum)
        y = d * (rstd * reshape(weight, bshape) if weight is not None else rstd)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var must be given in "
                             "evaluation mode (training=False)")
        dt = x._data.dtype
        xp = backend.get_array_module(running_var._data)
        inv = 1.0 / xp.sqrt(running_var._data.astype(np.float64) + eps)
        inv = _wrap(inv.astype(dt).reshape(bshape))
        rm = _wrap(running_mean._data.astype(dt, copy=False).reshape(bshape))
        y = (x - rm) * (inv * reshape(weight, bshape) if weight is not None else inv)
    if bias is not None:
        y = y + reshape(bias, bshape)
    return y


def _update_running(running_mean, running_var, mean_sum, sq_sum, n, momentum) -> None:
    """r <- momentum * stat + (1 - momentum) * r, computed in float64 and stored in place."""
    c = mean_sum.size
    if running_mean is not None:
        a = running_mean._data
        a[...] = (momentum * mean_sum.reshape(c).astype(np.float64)
                  + (1 - momentum) * a.astype(np.float64))
        running_mean._bump()
    if running_var is not None:
        a = running_var._data
        unbiased = sq_sum.reshape(c).astype(np.float64) / (n - 1)
        a[...] = momentum * unbiased + (1 - momentum) * a.astype(np.float64)
        running_var._bump()


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None,
              max_norm: float | None = None, norm_type: float = 2.0) -> Tensor:
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ``input`` (any shape);
    the result has shape ``input.shape + (dim,)``. The gradient accumulates into the picked
    rows, except the ``padding_idx`` row, which gets none. With ``max_norm``, the picked rows
    whose ``norm_type``-norm exceeds it are first rescaled in place (outside the graph).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> w = chainrule.tensor([[0.0, 0.0], [1.0, 2.0]], requires_grad=True)
        >>> F.embedding(chainrule.tensor([1, 1, 0]), w).sum().backward()
        >>> w.grad
        tensor([[1., 1.],
                [2., 2.]])
    """
    idx = _t(input)
    a = idx._data
    if a.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor (int64 or int32), got "
                        f"{idx.dtype.name}")
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {tuple(weight.shape)}")
    num = weight.shape[0]
    if a.size and bool(((a < 0) | (a >= num)).any()):  # one bool read: a jit guard
        lo, hi = int(a.min()), int(a.max())
        bad = lo if lo < 0 else hi
        raise IndexError(f"embedding: index {bad} is out of range for a table of {num} rows")
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"embedding: padding_idx {padding_idx} must be within the table's "
                             f"{num} rows")
        padding_idx %= num
    if max_norm is not None and a.size:
        _renorm_rows(weight, a, max_norm, norm_type)
    out = _PM.getitem(weight, idx, index=(_PM.IndexArg(0),))
    if padding_idx is not None and weight._rg and STATE.enabled:
        pad_mask = a == padding_idx
        if bool(pad_mask.any()):
            # same values; the detached branch routes no gradient to the padding row
            out = where(_wrap(pad_mask[..., None]), out.detach(), out)
    return out


def _renorm_rows(weight: Tensor, idx, max_norm: float, norm_type: float) -> None:
    xp = backend.get_array_module(weight._data)
    rows = xp.unique(idx.reshape(-1))
    w = weight._data
    sel = w[rows]
    if norm_type == float("inf"):
        norms = xp.abs(sel).max(axis=1)
    else:
        norms = (xp.abs(sel) ** norm_type).sum(axis=1) ** (1.0 / norm_type)
    big = norms > max_norm
    if bool(big.any()):
        scale = (max_norm / (norms[big] + 1e-7)).astype(w.dtype)
        w[rows[big]] = sel[big] * scale[:, None]
        weight._bump()


# ---- issue 14 (PyTorch compatibility): more functionals; unknown names say what is missing
from .._torch_env import missing as _missing  # noqa: E402

__getattr__ = _missing("chainrule.nn.functional", "torch.nn.functional")
