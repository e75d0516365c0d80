"""Weight initialisation (PyTorch's ``torch.nn.init``): each function fills a tensor in place,
outside the autograd graph, and returns it.

Random draws come from ``generator`` (a :class:`chainrule.Generator`) or the default one
(seeded by ``chainrule.manual_seed``); they are made on the host in float64 and cast to the
tensor's dtype and device.

Fans: for a weight of shape ``(out, in, *kernel)``, ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)`` (so a Linear weight ``(out, in)`` has ``fan_in = in``).

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> w = chainrule.empty(256, 128)
    >>> _ = nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=chainrule.Generator()
    ...                              .manual_seed(0))
    >>> bound = (6 / 128) ** 0.5
    >>> bool(w.abs().max() <= bound)
    True
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend
from ..random import _gen
from ..tensor import Tensor

__all__ = [
    "calculate_gain", "constant_", "dirac_", "eye_", "kaiming_normal_", "kaiming_uniform_",
    "normal_", "ones_", "orthogonal_", "sparse_", "trunc_normal_", "uniform_",
    "xavier_normal_", "xavier_uniform_", "zeros_",
]

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d")


def _check_tensor(tensor, op: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{op}: expected a Tensor, got {type(tensor).__name__}")
    return tensor


def _write(tensor: Tensor, host) -> Tensor:
    """Write a host array (or scalar) into ``tensor`` in place, no graph, version bumped."""
    a = tensor._data
    if type(a) is np.ndarray:
        a[...] = host
    else:
        xp = backend.get_array_module(a)
        a[...] = xp.asarray(np.asarray(host, dtype=a.dtype))
    tensor._bump()
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity: 1 for linear/conv/sigmoid, 5/3 for tanh,
    sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (slope ``param``, default
    0.01), 3/4 for selu.

    Example:
        >>> from chainrule import nn
        >>> nn.init.calculate_gain("relu"), nn.init.calculate_gain("tanh")
        (1.4142135623730951, 1.6666666666666667)
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                     f"{', '.join(_LINEAR_FNS)}, sigmoid, tanh, relu, leaky_relu, selu")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel); at least 2 dims.

    Example:
        >>> import chainrule
        >>> from chainrule.nn.init import _calculate_fan_in_and_fan_out
        >>> _calculate_fan_in_and_fan_out(chainrule.empty(16, 3, 5, 5))
        (75, 400)
    """
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (shape {tuple(shape)})")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill from U(a, b).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.uniform_(chainrule.empty(1000), -1.0, 1.0)
        >>> bool((w >= -1).all() and (w <= 1).all())
        True
    """
    _check_tensor(tensor, "uniform_")
    return _write(tensor, _gen(generator).uniform(a, b, size=tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill from N(mean, std^2).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.normal_(chainrule.empty(2, 3), std=0.02).shape
        (2, 3)
    """
    _check_tensor(tensor, "normal_")
    return _write(tensor, _gen(generator).normal(mean, std, size=tensor.shape))


def _ndtri(p: np.ndarray) -> np.ndarray:
    """Inverse of the standard normal CDF (Acklam's rational approximation, relative error
    below 1.2e-9), vectorised over ``p`` in (0, 1)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)
    p = np.asarray(p, dtype=np.float64)
    lo = 0.02425
    out = np.empty_like(p)
    mid = (p >= lo) & (p <= 1 - lo)
    q = p[mid] - 0.5
    r = q * q
    out[mid] = ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
                (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1))
    for mask, sign, pp in ((p < lo, 1.0, p), (p > 1 - lo, -1.0, 1 - p)):
        if mask.any():
            qq = np.sqrt(-2 * np.log(pp[mask]))
            out[mask] = sign * ((((((c[0] * qq + c[1]) * qq + c[2]) * qq + c[3]) * qq + c[4])
                                 * qq + c[5]) /
                                ((((d[0] * qq + d[1]) * qq + d[2]) * qq + d[3]) * qq + 1))
    return out


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator=None) -> Tensor:
    """Fill from N(mean, std^2) truncated to [a, b] (bounds in absolute units, as in
    PyTorch), by inverse-CDF sampling.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.trunc_normal_(chainrule.empty(1000), std=1.0, a=-0.5, b=0.5)
        >>> bool(w.abs().max() <= 0.5)
        True
    """
    _check_tensor(tensor, "trunc_normal_")
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std}")

    def cdf(x):
        return 0.5 * (1.0 + math.erf((x - mean) / std / math.sqrt(2.0)))

    lo, hi = cdf(a), cdf(b)
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("trunc_normal_: mean is more than 2 std from [a, b]; the distribution "
                      "of values may be incorrect", stacklevel=2)
    p = _gen(generator).uniform(lo, hi, size=tensor.shape)
    tiny = np.finfo(np.float64).tiny
    x = _ndtri(np.clip(p, tiny, 1 - 1e-16)) * std + mean
    return _write(tensor, np.clip(x, a, b))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.constant_(chainrule.empty(2), 0.5)
        tensor([0.5000, 0.5000])
    """
    _check_tensor(tensor, "constant_")
    tensor._data.fill(val)
    tensor._bump()
    return tensor


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.ones_(chainrule.empty(2))
        tensor([1., 1.])
    """
    return constant_(tensor, 1)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.zeros_(chainrule.empty(2))
        tensor([0., 0.])
    """
    return constant_(tensor, 0)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity (ones on the main diagonal).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.eye_(chainrule.empty(2, 3))
        tensor([[1., 0., 0.],
                [0., 1., 0.]])
    """
    _check_tensor(tensor, "eye_")
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only tensors with 2 dimensions are supported, got shape "
                         f"{tuple(tensor.shape)}")
    return _write(tensor, np.eye(*tensor.shape))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill a 3-, 4- or 5-D convolution weight with the Dirac delta (identity convolution,
    channel i to channel i, per group).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.dirac_(chainrule.empty(2, 2, 3))
        >>> w[:, :, 1]
        tensor([[1., 0.],
                [0., 1.]])
    """
    _check_tensor(tensor, "dirac_")
    shape = tensor.shape
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"dirac_: only tensors with 3, 4, or 5 dimensions are supported, got "
                         f"shape {tuple(shape)}")
    if groups < 1 or shape[0] % groups:
        raise ValueError(f"dirac_: dim 0 ({shape[0]}) must be divisible by groups ({groups})")
    per_group = shape[0] // groups
    n = min(per_group, shape[1])
    host = np.zeros(shape)
    d = np.arange(n)
    out_idx = (np.arange(groups)[:, None] * per_group + d).ravel()
    in_idx = np.tile(d, groups)
    centre = tuple(k // 2 for k in shape[2:])
    host[(out_idx, in_idx, *centre)] = 1
    return _write(tensor, host)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.xavier_uniform_(chainrule.empty(30, 20))
        >>> bool(w.abs().max() <= (6 / 50) ** 0.5)
        True
    """
    _check_tensor(tensor, "xavier_uniform_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.xavier_normal_(chainrule.empty(3, 4)).shape
        (3, 4)
    """
    _check_tensor(tensor, "xavier_normal_")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def _kaiming_std(tensor, a, mode, nonlinearity) -> float | None:
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return None
    fan = _calculate_correct_fan(tensor, mode)
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan), gain from ``nonlinearity`` (and
    the negative slope ``a`` for leaky_relu), fan from ``mode`` ('fan_in' or 'fan_out').
    ``a=sqrt(5)`` with the default leaky_relu gives Linear's default, b = 1/sqrt(fan_in).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.kaiming_uniform_(chainrule.empty(64, 100), a=5 ** 0.5)
        >>> bool(w.abs().max() <= 0.1)
        True
    """
    _check_tensor(tensor, "kaiming_uniform_")
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu", generator=None) -> Tensor:
    """He normal: N(0, std^2) with std = gain / sqrt(fan) (see :func:`kaiming_uniform_`).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.init.kaiming_normal_(chainrule.empty(8, 4), mode="fan_out").shape
        (8, 4)
    """
    _check_tensor(tensor, "kaiming_normal_")
    std = _kaiming_std(tensor, a, mode, nonlinearity)
    if std is None:
        return tensor
    return normal_(tensor, 0.0, std, generator)


def orthogonal_(tensor: Tensor, gain: float = 1, generator=None) -> Tensor:
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian one, times
    ``gain``; dims after the first are flattened.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> q = nn.init.orthogonal_(chainrule.empty(3, 5, dtype=chainrule.float64))
        >>> bool(((q @ q.T) - chainrule.eye(3, dtype=chainrule.float64)).abs().max() < 1e-12)
        True
    """
    _check_tensor(tensor, "orthogonal_")
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_: only tensors with 2 or more dimensions are supported, "
                         f"got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = _gen(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diagonal(r))  # unique: R with a positive diagonal
    if rows < cols:
        q = q.T
    return _write(tensor, (q * gain).reshape(tensor.shape))


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator=None) -> Tensor:
    """A 2-D tensor from N(0, std^2) with a fraction ``sparsity`` of each column set to 0.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> w = nn.init.sparse_(chainrule.empty(10, 3), sparsity=0.5)
        >>> (w == 0).sum(0).tolist()
        [5, 5, 5]
    """
    _check_tensor(tensor, "sparse_")
    if tensor.ndim != 2:
        raise ValueError(f"sparse_: only tensors with 2 dimensions are supported, got shape "
                         f"{tuple(tensor.shape)}")
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    g = _gen(generator)
    host = g.normal(0.0, std, size=(rows, cols))
    # in each column, the rows of the num_zeros smallest keys of a random matrix: a random
    # subset per column, drawn in one vectorised call
    zero_rows = np.argsort(g.random((rows, cols)), axis=0)[:num_zeros]
    host[zero_rows, np.arange(cols)[None, :]] = 0
    return _write(tensor, host)
