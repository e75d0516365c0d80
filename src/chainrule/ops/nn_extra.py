"""More of ``torch.nn.functional`` as composites (issue 14): glu, hardshrink, softshrink,
tanhshrink, threshold, prelu, cosine_similarity, pairwise_distance, and the losses
margin_ranking_loss, hinge_embedding_loss, soft_margin_loss, cosine_embedding_loss,
triplet_margin_loss, poisson_nll_loss, multilabel_soft_margin_loss.

Example:
    >>> import chainrule, chainrule.nn.functional as F
    >>> F.glu(chainrule.tensor([1.0, 0.0]))
    tensor([0.5000])
"""

from __future__ import annotations

import math

from ..errors import ShapeError
from ..tensor import Tensor
from ._amp import autocast_fp32, autocast_lower
from ._util import float32_inside
from .elementwise import _t, abs, clamp, exp, log, maximum, sigmoid, tanh, where
from .nn import _reduce, logsigmoid, softplus
from .reduce import mean, norm, softmax, sum
from .shape import chunk, permute, reshape

__all__ = ["cosine_embedding_loss", "cosine_similarity", "glu", "hardshrink",
           "hinge_embedding_loss", "margin_ranking_loss", "multilabel_soft_margin_loss",
           "pairwise_distance", "pixel_shuffle", "pixel_unshuffle", "poisson_nll_loss", "prelu",
           "soft_margin_loss", "softmin", "softshrink", "tanhshrink", "threshold",
           "triplet_margin_loss", "instance_norm", "gaussian_nll_loss", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool3d"]


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


def pixel_shuffle(input, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r), as PyTorch.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.pixel_shuffle(chainrule.zeros(1, 8, 2, 3), 2).shape
        (1, 2, 4, 6)
    """
    x = _t(input)
    r = int(upscale_factor)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise ShapeError(f"pixel_shuffle: channels (dim -3) of shape {tuple(x.shape)} must be "
                         f"divisible by upscale_factor**2 = {r * r}")
    *lead, c, h, w = x.shape
    n = len(lead)
    y = reshape(x, (*lead, c // (r * r), r, r, h, w))
    y = permute(y, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return reshape(y, (*lead, c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of :func:`pixel_shuffle`.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.pixel_unshuffle(chainrule.zeros(1, 2, 4, 6), 2).shape
        (1, 8, 2, 3)
    """
    x = _t(input)
    r = int(downscale_factor)
    if x.ndim < 3 or x.shape[-1] % r or x.shape[-2] % r:
        raise ShapeError(f"pixel_unshuffle: height and width of shape {tuple(x.shape)} must be "
                         f"divisible by downscale_factor = {r}")
    *lead, c, h, w = x.shape
    n = len(lead)
    y = reshape(x, (*lead, c, h // r, r, w // r, r))
    y = permute(y, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return reshape(y, (*lead, c * r * r, h // r, w // r))


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
    from ..autograd.grad_mode import no_grad  # noqa: PLC0415

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


def _adaptive_max(input, output_size, nd: int, op: str, return_indices: bool) -> Tensor:
    """Max over PyTorch's adaptive windows: cell i of a dim of size n covers
    [floor(i n / o), ceil((i + 1) n / o)). Each cell is one amax, so the gradient goes to
    the maximum of each window."""
    from .reduce import amax  # noqa: PLC0415
    from .shape import getitem, stack  # noqa: PLC0415

    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported; the pooled "
                                  "values carry the gradient to each window's maximum")
    x = _t(input)
    if x.ndim not in (nd + 1, nd + 2):
        raise ShapeError(f"{op}: expected a {nd + 1}-D or {nd + 2}-D input, got shape "
                         f"{tuple(x.shape)}")
    sizes = (output_size,) * nd if isinstance(output_size, int) else tuple(output_size)
    spatial = x.shape[x.ndim - nd:]
    sizes = tuple(n if o is None else int(o) for o, n in zip(sizes, spatial))
    lead = x.ndim - nd

    def pooled(y, k):
        if k == nd:
            return amax(y, tuple(range(lead, lead + nd)))
        n, o = spatial[k], sizes[k]
        cells = []
        for i in range(o):
            lo, hi = (i * n) // o, -((-(i + 1) * n) // o)
            cells.append(pooled(getitem(y, (slice(None),) * (lead + k) + (slice(lo, hi),)),
                                k + 1))
        return stack(cells, lead)  # this dim's cells go before the inner dims' cells

    return pooled(x, 0)


def adaptive_max_pool1d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, L) to a fixed length.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool1d(chainrule.tensor([[[1.0, 5.0, 2.0, 4.0]]]), 2)
        tensor([[[5., 4.]]])
    """
    return _adaptive_max(input, output_size, 1, "adaptive_max_pool1d", return_indices)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, H, W) to a fixed size (``None`` keeps that dimension).

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool2d(chainrule.arange(16.0).reshape(1, 1, 4, 4), 1).flatten()
        tensor([15.])
    """
    return _adaptive_max(input, output_size, 2, "adaptive_max_pool2d", return_indices)


def adaptive_max_pool3d(input, output_size, return_indices: bool = False) -> Tensor:
    """Max-pool (N, C, D, H, W) to a fixed size.

    Example:
        >>> import chainrule, chainrule.nn.functional as F
        >>> F.adaptive_max_pool3d(chainrule.ones(1, 1, 2, 2, 2), 1).shape
        (1, 1, 1, 1, 1)
    """
    return _adaptive_max(input, output_size, 3, "adaptive_max_pool3d", return_indices)
