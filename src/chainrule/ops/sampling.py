"""Sampling from tensors of probabilities: multinomial, bernoulli, normal.

Draws come from chainrule's generators (``chainrule.manual_seed`` or ``generator=``), on the
host, so a seed gives the same draws on every device. The draws are the same distribution as
PyTorch's but not the same numbers (different generators). Samples carry no gradient.

Example:
    >>> import chainrule
    >>> _ = chainrule.manual_seed(0)
    >>> chainrule.multinomial(chainrule.tensor([0.0, 1.0, 0.0]), 2, replacement=True)
    tensor([1, 1])
"""

from __future__ import annotations

import numbers

from .. import backend
from ..random import _draw
from ..tensor import Tensor, _wrap
from ._util import method
from .elementwise import _t

_np = backend.np


def _on_device_of(host, x: Tensor) -> Tensor:
    dev = x.device
    return _wrap(host if dev.type == "cpu" else backend.to_device(host, dev))


@method
def multinomial(input, num_samples: int, replacement: bool = False, *,
                generator=None) -> Tensor:
    """Category indices drawn from the rows of ``input`` (non-negative weights, 1-D or 2-D,
    not necessarily summing to one); without replacement each category comes at most once.

    Without replacement the draw is successive sampling (each next category with probability
    proportional to the weights of those not yet drawn), done in one pass by sorting
    exponential variates divided by the weights.

    Example:
        >>> import chainrule
        >>> g = chainrule.Generator().manual_seed(1)
        >>> chainrule.multinomial(chainrule.tensor([1.0, 1.0, 1.0]), 3, generator=g).sort().values
        tensor([0, 1, 2])
    """
    x = _t(input)
    if not x.dtype.is_floating_point:
        raise TypeError(f"multinomial: weights must be floating point, got {x.dtype.name}")
    if x._data.ndim not in (1, 2):
        raise ValueError(f"multinomial: weights must be 1-D or 2-D, got shape {tuple(x.shape)}")
    if not isinstance(num_samples, numbers.Integral) or num_samples <= 0:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    w = x._host().astype(_np.float64).reshape(-1, x.shape[-1])
    n = w.shape[1]
    if n == 0:
        raise ValueError("multinomial: the weights have no categories (last dimension is 0)")
    if not _np.isfinite(w).all() or (w < 0).any():
        raise ValueError("multinomial: weights must be finite and non-negative")
    total = w.sum(axis=1)
    if (total <= 0).any():
        raise ValueError("multinomial: every row of weights must have a positive sum")
    if replacement:
        cdf = _np.cumsum(w, axis=1)
        cdf /= cdf[:, -1:]
        u = _draw(generator, "random", size=(w.shape[0], num_samples))
        out = _np.stack([_np.searchsorted(c, r, side="right") for c, r in zip(cdf, u)])
        out = _np.minimum(out, n - 1)
    else:
        if num_samples > n:
            raise ValueError(f"multinomial: cannot draw {num_samples} samples without "
                             f"replacement from {n} categories (use replacement=True)")
        if ((w > 0).sum(axis=1) < num_samples).any():
            raise ValueError(f"multinomial: a row has fewer than {num_samples} categories with "
                             "non-zero weight, so it cannot give that many samples without "
                             "replacement (use replacement=True)")
        with _np.errstate(divide="ignore"):
            keys = _draw(generator, "exponential", size=w.shape) / w
        out = _np.argsort(keys, axis=1, kind="stable")[:, :num_samples]
    out = out.astype(_np.int64)
    if x._data.ndim == 1:
        out = out[0]
    return _on_device_of(out, x)


@method
def bernoulli(input, p=None, *, generator=None) -> Tensor:
    """1 with probability ``input`` (or ``p``), else 0, in ``input``'s dtype.

    Example:
        >>> import chainrule
        >>> chainrule.bernoulli(chainrule.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """
    x = _t(input)
    prob = x._host() if p is None else _np.broadcast_to(_np.asarray(
        p._host() if isinstance(p, Tensor) else p, dtype=_np.float64), x.shape)
    if ((prob < 0) | (prob > 1) | _np.isnan(prob)).any():
        raise ValueError("bernoulli: probabilities must lie in [0, 1]")
    draws = _draw(generator, "random", size=x.shape) < prob
    return _on_device_of(draws.astype(x._data.dtype), x)


def normal(mean, std=1.0, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    """Normal samples: ``normal(mean_tensor, std_tensor_or_float)`` (broadcast) or
    ``normal(mean, std, size)`` with floats.

    Example:
        >>> import chainrule
        >>> chainrule.normal(chainrule.zeros(3), 1.0).shape
        (3,)
        >>> chainrule.normal(2.0, 0.0, (2,))
        tensor([2., 2.])
    """
    like = mean if isinstance(mean, Tensor) else std if isinstance(std, Tensor) else None
    if like is None:
        if size is None:
            raise TypeError("normal: with float mean and std, size= is required")
        from .creation import randn  # noqa: PLC0415

        return randn(size, generator=generator, dtype=dtype, device=device) * std + mean
    m = mean._host() if isinstance(mean, Tensor) else mean
    s = std._host() if isinstance(std, Tensor) else std
    if (_np.asarray(s) < 0).any():
        raise ValueError("normal: std must be non-negative")
    shape = _np.broadcast_shapes(_np.shape(m), _np.shape(s))
    draws = _draw(generator, "standard_normal", size=shape) * s + m
    out_dtype = like._data.dtype if like.dtype.is_floating_point else \
        backend.default_float().np
    return _on_device_of(draws.astype(out_dtype), like)
