"""Neural-network functions as composites of primitives (re-exported by
``chainrule.nn.functional``): activations, linear, dropout, one_hot, distances,
normalisation, losses.

Example:
    >>> import chainrule
    >>> import chainrule.nn.functional as F
    >>> F.cross_entropy(chainrule.tensor([[10.0, 0.0]]), chainrule.tensor([0])).item() < 1e-3
    True
"""

from __future__ import annotations

import math
import warnings

from .. import backend
from ..autograd import graph as _graph
from ..autograd.grad_mode import no_grad
from ..errors import ShapeError
from ..primitives import activation as _PACT
from ..primitives import linalg as _PL
from ..primitives import reduce as _PR
from ..random import _draw
from ..tensor import Tensor, _wrap
from . import reduce as R
from ._amp import autocast_fp32, autocast_lower
from ._util import float32_inside
from .elementwise import (
    _t,
    abs,
    clamp,
    erf,
    exp,
    expm1,
    log,
    log1p,
    maximum,
    minimum,
    relu,
    sigmoid,
    tanh,
    where,
)
from .linalg import matmul
from .reduce import mean, norm, sum
from .shape import broadcast_shapes, chunk, gather, reshape, unsqueeze

__all__ = [
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "celu", "cross_entropy",
    "dropout", "elu", "gelu", "hardtanh", "huber_loss", "kl_div", "l1_loss", "layer_norm",
    "leaky_relu", "linear", "log_softmax", "logsigmoid", "mse_loss", "nll_loss", "normalize",
    "one_hot", "relu", "relu6", "rms_norm", "selu", "sigmoid", "silu", "smooth_l1_loss",
    "softmax", "softplus", "softsign", "tanh", "mish", "hardsigmoid", "hardswish",
    "dropout1d", "dropout2d", "dropout3d",
    # issue 14 (PyTorch compatibility)
    "cosine_embedding_loss", "cosine_similarity", "gaussian_nll_loss", "glu", "hardshrink",
    "hinge_embedding_loss", "instance_norm", "margin_ranking_loss",
    "multilabel_soft_margin_loss", "pairwise_distance", "poisson_nll_loss", "prelu",
    "soft_margin_loss", "softmin", "softshrink", "tanhshrink", "threshold",
    "triplet_margin_loss",
]

softmax = R.softmax
log_softmax = R.log_softmax


# ---------------------------------------------------------------- activations
def leaky_relu(input, negative_slope: float = 0.01) -> Tensor:
    """x if x > 0 else negative_slope * x.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.leaky_relu(chainrule.tensor([-1.0, 2.0]), 0.1)
        tensor([-0.1000,  2.0000])
    """
    x = _t(input)
    return where(x > 0, x, x * negative_slope)


@float32_inside
def elu(input, alpha: float = 1.0) -> Tensor:
    """x if x > 0 else alpha * (exp(x) - 1).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.elu(chainrule.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    x = _t(input)
    # expm1 of min(x, 0) only: the branch not taken must not produce inf (inf * 0 = nan)
    return where(x > 0, x, expm1(minimum(x, 0.0)) * alpha)


@float32_inside
def celu(input, alpha: float = 1.0) -> Tensor:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.celu(chainrule.tensor([1.0]))
        tensor([1.])
    """
    x = _t(input)
    return where(x > 0, x, expm1(minimum(x, 0.0) / alpha) * alpha)


@float32_inside
def selu(input) -> Tensor:
    """scale * elu(x, alpha) with the self-normalising constants.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.selu(chainrule.tensor([0.0]))
        tensor([0.])
    """
    return elu(input, 1.6732632423543772) * 1.0507009873554805


def gelu(input, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact) or its tanh approximation (``approximate='tanh'``), as
    ``torch.nn.functional.gelu``. The exact form of a floating tensor runs on the fused
    ``gelu`` primitive (``primitives/activation.py``); ``chainrule.ops.attention.gelu`` is
    this function.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.gelu(chainrule.tensor([1.0]))
        tensor([0.8413])
    """
    x = _t(input)
    if approximate == "none":
        if x._data.dtype.kind in "fV":  # the fused primitive (faster than the composite)
            return _PACT.gelu(x)
        return x * (erf(x * (1 / math.sqrt(2.0))) + 1.0) * 0.5
    if approximate == "tanh":
        inner = (x + x * x * x * 0.044715) * math.sqrt(2 / math.pi)
        return x * (tanh(inner) + 1.0) * 0.5
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@float32_inside
def silu(input) -> Tensor:
    """x * sigmoid(x) (a.k.a. swish).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.silu(chainrule.tensor([0.0]))
        tensor([0.])
    """
    x = _t(input)
    return x * sigmoid(x)


@float32_inside
def mish(input) -> Tensor:
    """x * tanh(softplus(x)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.mish(chainrule.tensor([0.0]))
        tensor([0.])
    """
    x = _t(input)
    return x * tanh(softplus(x))


@float32_inside
def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as in PyTorch).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.softplus(chainrule.tensor([0.0]))
        tensor([0.6931])
    """
    x = _t(input)
    bx = x * beta if beta != 1 else x
    soft = log1p(exp(minimum(bx, threshold)))
    if beta != 1:
        soft = soft / beta
    return where(bx > threshold, x, soft)


@float32_inside
def logsigmoid(input) -> Tensor:
    """log(sigmoid(x)), stable: -softplus(-x).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.logsigmoid(chainrule.tensor([0.0]))
        tensor([-0.6931])
    """
    x = _t(input)
    return -(log1p(exp(-abs(x))) + relu(-x))


def softsign(input) -> Tensor:
    """x / (1 + |x|).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.softsign(chainrule.tensor([1.0]))
        tensor([0.5000])
    """
    x = _t(input)
    return x / (abs(x) + 1.0)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """clamp(x, min_val, max_val).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.hardtanh(chainrule.tensor([-3.0, 0.5]))
        tensor([-1.0000,  0.5000])
    """
    return clamp(input, min_val, max_val)


def relu6(input) -> Tensor:
    """min(max(x, 0), 6).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.relu6(chainrule.tensor([8.0]))
        tensor([6.])
    """
    return clamp(input, 0.0, 6.0)


def hardsigmoid(input) -> Tensor:
    """relu6(x + 3) / 6.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.hardsigmoid(chainrule.tensor([0.0]))
        tensor([0.5000])
    """
    return clamp(_t(input) + 3.0, 0.0, 6.0) / 6.0


def hardswish(input) -> Tensor:
    """x * relu6(x + 3) / 6.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.hardswish(chainrule.tensor([0.0]))
        tensor([0.])
    """
    x = _t(input)
    return x * hardsigmoid(x)


def glu(input, dim: int = -1) -> Tensor:
    """Gated linear unit: the first half of ``dim`` times the sigmoid of the second half.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.glu(chainrule.zeros(2, 4)).shape
        (2, 2)
    """
    x = _t(input)
    if x.shape[dim] % 2:
        raise ShapeError(f"glu: dimension {dim} must have an even size, got shape "
                         f"{tuple(x.shape)}")
    a, b = chunk(x, 2, dim)
    return a * sigmoid(b)


def hardshrink(input, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.hardshrink(chainrule.tensor([-1.0, 0.2, 0.7]))
        tensor([-1.0000,  0.0000,  0.7000])
    """
    x = _t(input)
    return where(abs(x) > lambd, x, 0.0)


def softshrink(input, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, else 0.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.softshrink(chainrule.tensor([-1.0, 0.2, 0.7]))
        tensor([-0.5000,  0.0000,  0.2000])
    """
    x = _t(input)
    return where(x > lambd, x - lambd, where(x < -lambd, x + lambd, 0.0))


def tanhshrink(input) -> Tensor:
    """x - tanh(x).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.tanhshrink(chainrule.tensor([0.0]))
        tensor([0.])
    """
    x = _t(input)
    return x - tanh(x)


def threshold(input, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else value.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.threshold(chainrule.tensor([0.1, 2.0]), 1.0, -1.0)
        tensor([-1.,  2.])
    """
    x = _t(input)
    return where(x > threshold, x, value)


@autocast_lower
def prelu(input, weight) -> Tensor:
    """x where x >= 0, else weight * x, with one weight (or one per channel, dim 1).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.prelu(chainrule.tensor([[-2.0, 2.0]]), chainrule.tensor([0.25]))
        tensor([[-0.5000,  2.0000]])
    """
    x = _t(input)
    w = _t(weight)
    if w.numel() != 1:
        if x.ndim < 2 or w.ndim != 1 or w.shape[0] != x.shape[1]:
            raise ShapeError(f"prelu: weight of shape {tuple(w.shape)} must have one entry or "
                             f"one per channel (dim 1) of input shape {tuple(x.shape)}")
        w = reshape(w, (-1,) + (1,) * (x.ndim - 2))
    return where(x >= 0, x, w * x)


def softmin(input, dim=None, dtype=None) -> Tensor:
    """``softmax(-input, dim)``.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.softmin(chainrule.tensor([0.0, 0.0]), dim=0)
        tensor([0.5000, 0.5000])
    """
    x = -_t(input)
    if dtype is not None:
        x = x.to(dtype)
    return softmax(x, dim=-1 if dim is None else dim)


# ---------------------------------------------------------------- layers as functions
@autocast_lower
def linear(input, weight, bias=None) -> Tensor:
    """input @ weight.T + bias (weight has shape (out_features, in_features)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.linear(chainrule.ones(2, 3), chainrule.ones(4, 3), chainrule.zeros(4)).shape
        (2, 4)
    """
    x = _t(input)
    if weight.ndim not in (1, 2):
        raise ShapeError(f"linear: weight must be 1-D or 2-D, got shape {tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[-1]:
        raise ShapeError(f"linear: input of shape {tuple(x.shape)} does not match weight of "
                         f"shape {tuple(weight.shape)} (in_features {weight.shape[-1]})")
    dt = x._data.dtype
    if (x.ndim >= 2 and weight.ndim == 2 and weight._data.dtype == dt and x._data.size
            and (bias is None or (isinstance(bias, Tensor) and bias._data.dtype == dt
                                  and bias.shape == (weight.shape[0],)))):
        return _PL.linear(x, weight, bias)  # the fused primitive: every layer's hot path
    out = matmul(x, weight.mT if weight.ndim == 2 else weight)
    if bias is not None:
        out = out + bias
    return out


def bilinear(input1, input2, weight, bias=None) -> Tensor:
    """x1^T W x2 + b for each output feature (weight: (out, in1, in2)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.bilinear(chainrule.ones(2, 3), chainrule.ones(2, 4), chainrule.ones(5, 3, 4)).shape
        (2, 5)
    """
    from .linalg import einsum  # noqa: PLC0415

    out = einsum("bi,oij,bj->bo", input1, weight, input2)
    return out + bias if bias is not None else out


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False,
            *, generator=None) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.dropout(chainrule.ones(3), 0.5, training=False)
        tensor([1., 1., 1.])
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = _t(input)
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = _draw(generator, "random", size=x.shape) >= p
    xp = backend.get_array_module(x._data)
    mask = xp.asarray(keep).astype(x._data.dtype) * (1.0 / (1.0 - p))
    return x * _wrap(mask.astype(x._data.dtype, copy=False))


def _channel_dropout(input, p, training, nd: int, op: str, generator=None) -> Tensor:
    """Zero whole channels of an (N, C, *spatial) or (C, *spatial) input, ``nd`` spatial
    dims, and scale the kept channels by 1/(1-p); identity when not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    x = _t(input)
    if x._data.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) "
                         f"input of shape (N, C, ...), got shape {tuple(x.shape)}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    mask_shape = x.shape[:x._data.ndim - nd] + (1,) * nd
    keep = _draw(generator, "random", size=mask_shape) >= p
    xp = backend.get_array_module(x._data)
    mask = xp.asarray(keep).astype(x._data.dtype) * (1.0 / (1.0 - p))
    return x * _wrap(mask.astype(x._data.dtype, copy=False))


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of an (N, C, L) or (C, L) input with probability p, scaling the
    rest by 1/(1-p) (training only).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> y = F.dropout1d(chainrule.ones(1, 64, 3), 0.5)
        >>> bool(((y == 0).all(-1) | (y == 2).all(-1)).all())
        True
    """
    return _channel_dropout(input, p, training, 1, "dropout1d")


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout for an (N, C, H, W) input (see :func:`dropout1d`); a 3-D input is read
    as (N, C, L), with a warning, as PyTorch does.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.dropout2d(chainrule.ones(1, 2, 2, 2), 0.5, training=False).shape
        (1, 2, 2, 2)
    """
    if _t(input).ndim == 3:  # PyTorch's historical reading of 3-D input, kept with its warning
        import warnings  # noqa: PLC0415

        warnings.warn("dropout2d: a 3-D input is read as (N, C, L) and whole (N, C) channels "
                      "are dropped, as PyTorch does; use dropout1d to say so", stacklevel=2)
        return _channel_dropout(input, p, training, 1, "dropout2d")
    return _channel_dropout(input, p, training, 2, "dropout2d")


def dropout3d(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Channel dropout for an (N, C, D, H, W) or (C, D, H, W) input (see :func:`dropout1d`).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.dropout3d(chainrule.ones(2, 1, 1, 1), 1.0).sum()
        tensor(0.)
    """
    return _channel_dropout(input, p, training, 3, "dropout3d")


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    """Class indices to one-hot int64 vectors (a new last dim of size num_classes).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.one_hot(chainrule.tensor([0, 2]), 3)
        tensor([[1, 0, 0],
                [0, 0, 1]])
    """
    t = _t(tensor)
    if t._data.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expects an integer tensor of class indices, got "
                        f"{t.dtype.name}")
    xp = backend.get_array_module(t._data)
    if t._data.size and int(t._data.min()) < 0:
        raise ValueError("one_hot: class values must be non-negative")
    if num_classes == -1:
        num_classes = int(t._data.max()) + 1 if t._data.size else 0
    elif t._data.size and int(t._data.max()) >= num_classes:
        raise ValueError(f"one_hot: class value {int(t._data.max())} is out of range for "
                         f"num_classes={num_classes}")
    out = (t._data[..., None] == xp.arange(num_classes)).astype(xp.int64)
    return _wrap(out)


@float32_inside
def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> y = F.layer_norm(chainrule.tensor([[1.0, 3.0]]), (2,))
        >>> [round(v, 3) for v in y[0].tolist()]
        [-1.0, 1.0]
    """
    x = _t(input)
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(x.shape[x.ndim - k:]) != normalized_shape or k > x.ndim:
        raise ShapeError(f"layer_norm: normalized_shape {normalized_shape} does not match the "
                         f"trailing dims of input shape {tuple(x.shape)}")
    dims = tuple(range(x.ndim - k, x.ndim))
    if x._data.dtype.kind not in "fV":
        raise TypeError(f"layer_norm: input must be floating point, got {x.dtype.name}")
    y = _PR.layer_norm(x, axes=dims, eps=float(eps))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


@float32_inside
def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing dims, times weight.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.rms_norm(chainrule.tensor([[2.0, 2.0]]), (2,))
        tensor([[1., 1.]])
    """
    x = _t(input)
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    k = len(tuple(normalized_shape))
    if tuple(x.shape[x.ndim - k:]) != tuple(normalized_shape):
        raise ShapeError(f"rms_norm: normalized_shape {tuple(normalized_shape)} does not match "
                         f"input shape {tuple(x.shape)}")
    if eps is None:
        eps = float(backend.get_array_module(x._data).finfo(x._data.dtype).eps)
    dims = tuple(range(x.ndim - k, x.ndim))
    y = x * ((R.mean(x * x, dims, keepdim=True) + eps) ** -0.5)
    return y * weight if weight is not None else y


@float32_inside
def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_p, eps) along ``dim``.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.normalize(chainrule.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """
    x = _t(input)
    n = R.norm(x, p, dim, keepdim=True)
    return x / clamp(n, min=eps)


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1 . x2 / max(|x1| |x2|, eps) along ``dim`` (broadcasting).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.cosine_similarity(chainrule.tensor([[1.0, 0.0]]), chainrule.tensor([[1.0, 1.0]]))
        tensor([0.7071])
    """
    a, b = _t(x1), _t(x2)
    return sum(a * b, dim) / clamp(norm(a, dim=dim) * norm(b, dim=dim), min=eps)


def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6,
                      keepdim: bool = False) -> Tensor:
    """The p-norm of ``x1 - x2 + eps`` along the last dimension.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.pairwise_distance(chainrule.tensor([[3.0, 0.0]]), chainrule.tensor([[0.0, 4.0]]),
        ...                     eps=0.0)
        tensor([5.])
    """
    return norm(_t(x1) - x2 + eps, p, dim=-1, keepdim=keepdim)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1,
                  eps: float = 1e-5) -> Tensor:
    """Normalise each channel of each sample of an (N, C, ...) input over its spatial
    positions; with ``use_input_stats=False`` the given running statistics are used instead,
    and with ``use_input_stats=True`` they (when given) are updated in place, as PyTorch.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> y = F.instance_norm(chainrule.tensor([[[1.0, 3.0]]]))
        >>> [round(v, 3) for v in y.flatten().tolist()]
        [-1.0, 1.0]
    """
    x = _t(input)
    if x.ndim < 3:
        raise ShapeError(f"instance_norm: expected an input of shape (N, C, ...) with at least "
                         f"one spatial dimension, got {tuple(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    shape = (1, c) + (1,) * (x.ndim - 2)
    if use_input_stats:
        g = reshape(x, (n, c, -1))
        mu = mean(g, 2, keepdim=True)
        d = g - mu
        var = mean(d * d, 2, keepdim=True)
        y = reshape(d * ((var + eps) ** -0.5), tuple(x.shape))
        if running_mean is not None or running_var is not None:
            k = g.shape[2]
            with no_grad():
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean(mu, (0, 2)) * momentum)
                if running_var is not None:
                    unbiased = mean(var, (0, 2)) * (k / max(k - 1, 1))
                    running_var.mul_(1 - momentum).add_(unbiased * momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("instance_norm: use_input_stats=False needs running_mean and "
                             "running_var")
        y = (x - reshape(running_mean, shape)) * ((reshape(running_var, shape) + eps) ** -0.5)
    if weight is not None:
        y = y * reshape(weight, shape)
    if bias is not None:
        y = y + reshape(bias, shape)
    return y


# ---------------------------------------------------------------- losses
def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return R.mean(loss)
    if reduction == "sum":
        return R.sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_same_shape(input, target, op):
    if input.shape != target.shape:
        raise ShapeError(f"{op}: input shape {tuple(input.shape)} and target shape "
                         f"{tuple(target.shape)} differ")


def _warn_if_broadcast(input, target, op):
    """PyTorch's regression losses broadcast a target of another shape, with this warning;
    shapes that do not broadcast are a ShapeError naming the loss."""
    if input.shape != target.shape:
        try:
            broadcast_shapes(input.shape, target.shape)
        except ShapeError:
            raise ShapeError(f"{op}: input shape {tuple(input.shape)} and target shape "
                             f"{tuple(target.shape)} differ and cannot be broadcast") from None
        warnings.warn(f"{op}: Using a target size {tuple(target.shape)} that is different to "
                      f"the input size {tuple(input.shape)}. This will likely lead to incorrect "
                      "results due to broadcasting. Please ensure they have the same size.",
                      UserWarning, stacklevel=3)


@autocast_fp32
@float32_inside
def mse_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean squared error.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.mse_loss(chainrule.tensor([1.0, 3.0]), chainrule.tensor([0.0, 0.0]))
        tensor(5.)
    """
    x, y = _t(input), _t(target)
    _warn_if_broadcast(x, y, "mse_loss")
    d = x - y
    return _reduce(d * d, reduction, "mse_loss")


@autocast_fp32
@float32_inside
def l1_loss(input, target, reduction: str = "mean") -> Tensor:
    """Mean absolute error.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.l1_loss(chainrule.tensor([1.0, -3.0]), chainrule.tensor([0.0, 0.0]))
        tensor(2.)
    """
    x, y = _t(input), _t(target)
    _warn_if_broadcast(x, y, "l1_loss")
    return _reduce(abs(x - y), reduction, "l1_loss")


@autocast_fp32
@float32_inside
def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.smooth_l1_loss(chainrule.tensor([0.5, 3.0]), chainrule.zeros(2))
        tensor(1.3125)
    """
    x, y = _t(input), _t(target)
    _warn_if_broadcast(x, y, "smooth_l1_loss")
    d = abs(x - y)
    if beta == 0:
        return _reduce(d, reduction, "smooth_l1_loss")
    loss = where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, reduction, "smooth_l1_loss")


@autocast_fp32
@float32_inside
def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.huber_loss(chainrule.tensor([0.5, 3.0]), chainrule.zeros(2))
        tensor(1.3125)
    """
    x, y = _t(input), _t(target)
    _warn_if_broadcast(x, y, "huber_loss")
    d = abs(x - y)
    loss = where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    return _reduce(loss, reduction, "huber_loss")


def _class_dim_check(input, target, op):
    if input.ndim == 0:
        raise ShapeError(f"{op}: input must have a class dimension, got a 0-d tensor")
    if target.dtype.is_floating_point:
        return
    expected = (input.shape[0],) + tuple(input.shape[2:]) if input.ndim > 1 else ()
    if tuple(target.shape) != expected:
        raise ShapeError(f"{op}: expected target of shape {expected} for input of shape "
                         f"{tuple(input.shape)} (classes in dim {1 if input.ndim > 1 else 0}), "
                         f"got {tuple(target.shape)}")


@autocast_fp32
@float32_inside
def nll_loss(input, target, weight=None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of class indices given log-probabilities ``input`` of shape
    (N, C), (N, C, d1, ...) or (C,). ``weight`` rescales classes; ``ignore_index`` targets
    contribute nothing (and are left out of the mean).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.nll_loss(chainrule.tensor([[-1.0, -2.0]]), chainrule.tensor([1]))
        tensor(2.)
    """
    x, t = _t(input), _t(target)
    if t._data.dtype.kind not in "iu":
        raise TypeError(f"nll_loss: target must hold class indices (int64), got {t.dtype.name}")
    _class_dim_check(x, t, "nll_loss")
    cdim = 1 if x.ndim > 1 else 0
    nclass = x.shape[cdim]
    tt = t._data
    valid = tt != ignore_index
    bad = (tt < 0) | (tt >= nclass)
    if bool((bad & valid).any()):
        raise IndexError(f"nll_loss: target {int(tt[bad & valid].ravel()[0])} is out of bounds "
                         f"for {nclass} classes")
    xp = backend.get_array_module(tt)
    if _graph.FORWARD.levels:  # under vmap the targets may be batched: stay in tensor ops
        safe_t = where(t != ignore_index, t, 0)
        safe = safe_t._data
        picked = gather(x, cdim, unsqueeze(safe_t, cdim))
    else:
        safe = xp.where(valid, tt, 0)
        picked = gather(x, cdim, _wrap(xp.expand_dims(safe, cdim)))
    picked = reshape(picked, tuple(t.shape))
    if weight is None and bool(valid.all()):  # the common case: no extra mask multiply
        return _reduce(-picked, reduction, "nll_loss")
    w = valid.astype(x._data.dtype)
    if weight is not None:
        if tuple(weight.shape) != (nclass,):
            raise ShapeError(f"nll_loss: weight must have shape ({nclass},), got "
                             f"{tuple(weight.shape)}")
        w = weight._data[safe] * w
    wt = _wrap(w)
    loss = -picked * wt
    if reduction == "mean":
        return R.sum(loss) / float(w.sum()) if weight is not None or not bool(valid.all()) \
            else R.mean(loss)
    return _reduce(loss, reduction, "nll_loss")


@autocast_fp32
@float32_inside
def cross_entropy(input, target, weight=None, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits ``input`` (N, C[, d1, ...]) against class indices or class
    probabilities ``target``; stable for large logits (log_softmax, never exp then log).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.cross_entropy(chainrule.tensor([[1e4, 0.0]]), chainrule.tensor([1])).item()
        10000.0
    """
    x, t = _t(input), _t(target)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got "
                         f"{label_smoothing}")
    _class_dim_check(x, t, "cross_entropy")
    cdim = 1 if x.ndim > 1 else 0
    nclass = x.shape[cdim]
    logp = R.log_softmax(x, cdim)
    if t.dtype.is_floating_point:  # class probabilities
        if t.shape != x.shape:
            raise ShapeError(f"cross_entropy: probability target shape {tuple(t.shape)} must "
                             f"equal input shape {tuple(x.shape)}")
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / nclass
        lw = logp if weight is None else logp * _class_shape(weight, x, cdim)
        loss = -R.sum(lw * t, cdim)
        if reduction == "mean":
            return R.sum(loss) / (x.numel() // nclass)
        return _reduce(loss, reduction, "cross_entropy")
    nll = nll_loss(logp, t, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    # smoothing term: -sum_c w_c logp_c / C, over non-ignored targets
    lw = logp if weight is None else logp * _class_shape(weight, x, cdim)
    smooth = -R.sum(lw, cdim)
    valid = _wrap((t._data != ignore_index).astype(x._data.dtype))
    smooth = smooth * valid
    if reduction == "mean":
        if weight is None:
            denom = float(valid._data.sum())
        else:
            xp = backend.get_array_module(t._data)
            safe = xp.where(t._data != ignore_index, t._data, 0)
            denom = float((weight._data[safe] * valid._data).sum())
        s = R.sum(smooth) / denom
    elif reduction == "sum":
        s = R.sum(smooth)
    else:
        s = smooth
    return nll * (1 - label_smoothing) + s * (label_smoothing / nclass)


def _class_shape(weight, x, cdim):
    shape = [1] * x.ndim
    shape[cdim] = x.shape[cdim]
    return reshape(weight, tuple(shape))


@autocast_fp32
@float32_inside
def binary_cross_entropy(input, target, weight=None, reduction: str = "mean") -> Tensor:
    """-(t log p + (1 - t) log(1 - p)) with logs clamped at -100, as in PyTorch.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.binary_cross_entropy(chainrule.tensor([0.5]), chainrule.tensor([1.0]))
        tensor(0.6931)
    """
    p, t = _t(input), _t(target)
    _check_same_shape(p, t, "binary_cross_entropy")
    lo = _clamped_log(p)
    l1 = _clamped_log(1.0 - p)
    loss = -(t * lo + (1.0 - t) * l1)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy")


def _clamped_log(q: Tensor) -> Tensor:
    """max(log q, -100) with a finite (zero) gradient at q = 0, where log's rule would give
    0 * inf = NaN."""
    pos = q > 0
    return where(pos, clamp(log(where(pos, q, 1.0)), min=-100.0), -100.0)


@autocast_fp32
@float32_inside
def binary_cross_entropy_with_logits(input, target, weight=None, reduction: str = "mean",
                                     pos_weight=None) -> Tensor:
    """Sigmoid + binary cross-entropy in one stable expression:
    (1 - t) x + (1 + (pw - 1) t) (log(1 + exp(-|x|)) + max(-x, 0)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.binary_cross_entropy_with_logits(chainrule.tensor([0.0]), chainrule.tensor([1.0]))
        tensor(0.6931)
    """
    x, t = _t(input), _t(target)
    _check_same_shape(x, t, "binary_cross_entropy_with_logits")
    sp = log1p(exp(-abs(x))) + relu(-x)  # softplus(-x) = -log(sigmoid(x))
    if pos_weight is not None:
        coef = (pos_weight - 1.0) * t + 1.0
        loss = (1.0 - t) * x + coef * sp
    else:
        loss = (1.0 - t) * x + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction, "binary_cross_entropy_with_logits")


@autocast_fp32
@float32_inside
def kl_div(input, target, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL divergence with ``input`` as log-probabilities: t (log t - input).
    reduction 'batchmean' divides the sum by the batch size (the mathematically right one).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> p = chainrule.tensor([[0.5, 0.5]])
        >>> F.kl_div(p.log(), p, reduction="batchmean")
        tensor(0.)
    """
    x, t = _t(input), _t(target)
    if log_target:
        loss = exp(t) * (t - x)
    else:
        safe = where(t > 0, t, 1.0)
        loss = where(t > 0, t * (log(safe) - x), 0.0)
    if reduction == "batchmean":
        return R.sum(loss) / (x.shape[0] if x.ndim else 1)
    return _reduce(loss, reduction, "kl_div")


@autocast_fp32
@float32_inside
def margin_ranking_loss(input1, input2, target, margin: float = 0.0,
                        reduction: str = "mean") -> Tensor:
    """max(0, -target * (input1 - input2) + margin), reduced.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.margin_ranking_loss(chainrule.tensor([1.0]), chainrule.tensor([2.0]),
        ...                       chainrule.tensor([1.0]))
        tensor(1.)
    """
    loss = clamp(-_t(target) * (_t(input1) - input2) + margin, min=0.0)
    return _reduce(loss, reduction, "margin_ranking_loss")


@autocast_fp32
@float32_inside
def hinge_embedding_loss(input, target, margin: float = 1.0, reduction: str = "mean") -> Tensor:
    """x where target is 1, max(0, margin - x) where it is -1, reduced.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.hinge_embedding_loss(chainrule.tensor([0.3, 0.3]), chainrule.tensor([1.0, -1.0]))
        tensor(0.5000)
    """
    x, y = _t(input), _t(target)
    loss = where(y == 1, x, 0.0) + where(y == -1, clamp(margin - x, min=0.0), 0.0)
    return _reduce(loss, reduction, "hinge_embedding_loss")


@autocast_fp32
@float32_inside
def soft_margin_loss(input, target, reduction: str = "mean") -> Tensor:
    """log(1 + exp(-target * input)), reduced.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.soft_margin_loss(chainrule.tensor([0.0]), chainrule.tensor([1.0]))
        tensor(0.6931)
    """
    return _reduce(softplus(-_t(target) * input), reduction, "soft_margin_loss")


@autocast_fp32
@float32_inside
def cosine_embedding_loss(input1, input2, target, margin: float = 0.0,
                          reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> x = chainrule.tensor([[1.0, 0.0]])
        >>> F.cosine_embedding_loss(x, x, chainrule.tensor([1.0]))
        tensor(0.)
    """
    cos = cosine_similarity(input1, input2, dim=-1, eps=1e-12)
    y = _t(target)
    loss = where(y == 1, 1.0 - cos, 0.0) + where(y == -1, clamp(cos - margin, min=0.0), 0.0)
    return _reduce(loss, reduction, "cosine_embedding_loss")


@autocast_fp32
@float32_inside
def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2.0,
                        eps: float = 1e-6, swap: bool = False,
                        reduction: str = "mean") -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0) with the pairwise p-distance (``swap``: use the
    smaller of d(a, n) and d(p, n)).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> a = chainrule.zeros(1, 2)
        >>> F.triplet_margin_loss(a, a, chainrule.ones(1, 2) * 3, eps=0.0)
        tensor(0.)
    """
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = -maximum(-d_neg, -pairwise_distance(positive, negative, p, eps))
    return _reduce(clamp(d_pos - d_neg + margin, min=0.0), reduction, "triplet_margin_loss")


@autocast_fp32
@float32_inside
def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False,
                     eps: float = 1e-8, reduction: str = "mean") -> Tensor:
    """Poisson negative log-likelihood: exp(x) - t x (log_input) or x - t log(x + eps);
    ``full`` adds Stirling's t log t - t + log(2 pi t) / 2 where t > 1.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.poisson_nll_loss(chainrule.tensor([0.0]), chainrule.tensor([1.0]))
        tensor(1.)
    """
    x, t = _t(input), _t(target)
    loss = exp(x) - t * x if log_input else x - t * log(x + eps)
    if full:
        safe = where(t > 1, t, 2.0)
        stirling = safe * log(safe) - safe + 0.5 * log(2 * math.pi * safe)
        loss = loss + where(t > 1, stirling, 0.0)
    return _reduce(loss, reduction, "poisson_nll_loss")


@float32_inside
def multilabel_soft_margin_loss(input, target, weight=None, reduction: str = "mean") -> Tensor:
    """-mean over classes of t log sigmoid(x) + (1 - t) log sigmoid(-x), then reduced over
    the batch.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.multilabel_soft_margin_loss(chainrule.zeros(1, 2), chainrule.ones(1, 2))
        tensor(0.6931)
    """
    x, t = _t(input), _t(target)
    loss = -(t * logsigmoid(x) + (1 - t) * logsigmoid(-x))
    if weight is not None:
        loss = loss * weight
    return _reduce(mean(loss, -1), reduction, "multilabel_soft_margin_loss")


@float32_inside
def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> Tensor:
    """Gaussian negative log-likelihood ``(log(var) + (input - target)**2 / var) / 2`` (plus
    ``log(2 pi) / 2`` with ``full``); ``var`` is clamped to at least ``eps`` with the gradient
    passing through the clamp, as in PyTorch; a ``var`` with one dimension fewer (or a last
    dimension of 1) is shared across the last dimension.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.gaussian_nll_loss(chainrule.zeros(2), chainrule.zeros(2), chainrule.ones(2))
        tensor(0.)
    """
    x, t, v = _t(input), _t(target), _t(var)
    if v.ndim == x.ndim - 1 and tuple(v.shape) == tuple(x.shape[:-1]):
        v = v.unsqueeze(-1)
    elif tuple(v.shape) != tuple(x.shape) and not (
            v.ndim == x.ndim and v.shape[-1] == 1 and tuple(v.shape[:-1]) == x.shape[:-1]):
        raise ShapeError(f"gaussian_nll_loss: var of shape {tuple(v.shape)} does not match "
                         f"input shape {tuple(x.shape)}")
    if bool((v._data < 0).any()):
        raise ValueError("gaussian_nll_loss: var has negative entries")
    v = v + (clamp(v, min=eps) - v).detach()  # the clamp's value, the identity's gradient
    loss = 0.5 * (log(v) + (x - t) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction, "gaussian_nll_loss")
