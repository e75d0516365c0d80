"""Normalisation layers: ``LayerNorm``, ``RMSNorm``, ``BatchNorm1d``, ``BatchNorm2d``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> y = nn.LayerNorm(4)(chainrule.randn(2, 4))
    >>> bool(y.mean(-1).abs().max() < 1e-5)
    True
"""

from __future__ import annotations

from .. import backend, ops
from ..errors import ShapeError
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "LayerNorm", "RMSNorm"]


def _reset_affine(m: Module) -> None:
    """A norm layer's affine parameters back to the identity: weight ones, bias zeros (each
    where present)."""
    if m.weight is not None:
        init.ones_(m.weight)
    if getattr(m, "bias", None) is not None:
        init.zeros_(m.bias)


def _as_shape(normalized_shape) -> tuple[int, ...]:
    if isinstance(normalized_shape, int):
        return (normalized_shape,)
    return tuple(int(s) for s in normalized_shape)


class LayerNorm(Module):
    """Normalise over the trailing ``normalized_shape`` dims (mean 0, biased variance 1,
    ``eps`` added to the variance), then scale by ``weight`` and shift by ``bias``
    (initialised to ones and zeros) when ``elementwise_affine``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> ln = nn.LayerNorm((2, 3))
        >>> [n for n, _ in ln.named_parameters()], ln(chainrule.ones(5, 2, 3)).shape
        (['weight', 'bias'], (5, 2, 3))
    """

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ops.ones(self.normalized_shape, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(ops.zeros(self.normalized_shape, device=device,
                                                dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        """weight to ones, bias to zeros.

        Example:
            >>> from chainrule import nn
            >>> ln = nn.LayerNorm(2); _ = ln.weight.data.fill_(3.0); ln.reset_parameters()
            >>> ln.weight.tolist()
            [1.0, 1.0]
        """
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        """Layer-normalise ``input``."""
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(Module):
    """x / sqrt(mean(x^2) + eps) over the trailing ``normalized_shape`` dims, times
    ``weight`` (ones at first) when ``elementwise_affine``. ``eps=None`` uses the dtype's
    machine epsilon, as in PyTorch.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.RMSNorm(2)(chainrule.tensor([[3.0, 4.0]]))
        tensor([[0.8485, 1.1314]], grad_fn=<MulBackward>)
    """

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int],
                 eps: float | None = None, elementwise_affine: bool = True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ops.ones(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def reset_parameters(self) -> None:
        """weight to ones.

        Example:
            >>> from chainrule import nn
            >>> rn = nn.RMSNorm(2); _ = rn.weight.data.fill_(3.0); rn.reset_parameters()
            >>> rn.weight.tolist()
            [1.0, 1.0]
        """
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        """RMS-normalise ``input``."""
        return F.rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class _BatchNorm(Module):
    """Shared code of the BatchNorm layers; subclasses fix the accepted input ranks."""

    _ranks: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        if not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive int, got "
                             f"{num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1] or None, got "
                             f"{momentum}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = Parameter(ops.ones(num_features, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(ops.zeros(num_features, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", ops.zeros(num_features, device=device,
                                                           dtype=dtype))
            self.register_buffer("running_var", ops.ones(num_features, device=device,
                                                         dtype=dtype))
            self.register_buffer("num_batches_tracked",
                                 ops.zeros((), dtype=backend.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """running_mean to 0, running_var to 1, num_batches_tracked to 0.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> bn = nn.BatchNorm1d(2); _ = bn(chainrule.randn(4, 2)); bn.reset_running_stats()
            >>> bn.running_var.tolist(), int(bn.num_batches_tracked)
            ([1.0, 1.0], 0)
        """
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            init.zeros_(self.num_batches_tracked)

    def reset_parameters(self) -> None:
        """Reset the running statistics, weight to ones and bias to zeros.

        Example:
            >>> from chainrule import nn
            >>> bn = nn.BatchNorm1d(2); _ = bn.bias.data.fill_(1.0); bn.reset_parameters()
            >>> bn.bias.tolist()
            [0.0, 0.0]
        """
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input(self, x: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
        if x.ndim not in self._ranks:
            ranks = " or ".join(f"{r}D" for r in self._ranks)
            raise ValueError(f"{name}: expected {ranks} input (got {x.ndim}D input of shape "
                             f"{tuple(x.shape)})")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels in dim 1, got "
                             f"input of shape {tuple(x.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        """Normalise with batch statistics (training) or running statistics (evaluation)."""
        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats
        if track:
            if input.numel() // self.num_features <= 1:
                raise ValueError(f"{type(self).__name__}: expected more than 1 value per "
                                 f"channel when training, got input of shape "
                                 f"{tuple(input.shape)}")
            nbt = self.num_batches_tracked
            if nbt is not None:
                nbt._data += 1
                nbt._bump()
                if self.momentum is None:  # cumulative moving average
                    factor = 1.0 / float(nbt._data)
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if keep else None,
                            self.running_var if keep else None, self.weight, self.bias,
                            use_batch_stats, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L), per channel C.

    Training: normalise with the batch mean and biased batch variance, and update the
    buffers ``running_mean`` / ``running_var`` (unbiased variance) as
    ``r = (1 - momentum) r + momentum * stat`` (``momentum=None``: cumulative average over
    the ``num_batches_tracked`` batches). Evaluation: normalise with the running statistics.
    ``affine`` adds the learnable ``weight`` (ones) and ``bias`` (zeros, unless
    ``bias=False``); ``track_running_stats=False`` always uses batch statistics.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> bn = nn.BatchNorm1d(2)
        >>> _ = bn(chainrule.tensor([[0.0, 1.0], [2.0, 5.0]]))
        >>> bn.running_mean, bn.running_var, int(bn.num_batches_tracked)
        (tensor([0.1000, 0.3000]), tensor([1.1000, 1.7000]), 1)
        >>> bn.eval()(chainrule.tensor([[0.1, 0.3]])).abs().max().item() < 1e-6
        True
    """

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over N, H and W, per channel C (see
    :class:`BatchNorm1d` for the statistics and options).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.BatchNorm2d(3)(chainrule.randn(4, 3, 5, 5)).shape
        (4, 3, 5, 5)
    """

    _ranks = (4,)


class GroupNorm(Module):
    """Group normalisation (Wu & He, 2018): channels split into ``num_groups`` groups, each
    normalised over its channels and positions; per-channel affine ``weight`` (ones) and
    ``bias`` (zeros).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.GroupNorm(2, 4)(chainrule.randn(3, 4, 5, 5)).shape
        (3, 4, 5, 5)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, bias: bool = True, device=None, dtype=None):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                     eps, affine)
        self.weight = (Parameter(ops.ones(num_channels, device=device, dtype=dtype))
                       if affine else None)
        self.bias = (Parameter(ops.zeros(num_channels, device=device, dtype=dtype))
                     if affine and bias else None)
        if self.weight is None:
            self.register_parameter("weight", None)
        if self.bias is None:
            self.register_parameter("bias", None)

    def forward(self, input: Tensor) -> Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class _InstanceNorm(Module):
    _nd = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self._has_bias = affine and bias
        self.weight = Parameter(ops.ones(num_features, device=device, dtype=dtype)) \
            if affine else None
        self.bias = Parameter(ops.zeros(num_features, device=device, dtype=dtype)) \
            if self._has_bias else None
        if track_running_stats:
            self.register_buffer("running_mean", ops.zeros(num_features, device=device,
                                                           dtype=dtype))
            self.register_buffer("running_var", ops.ones(num_features, device=device,
                                                         dtype=dtype))
        else:
            self.running_mean = self.running_var = None

    def forward(self, input: Tensor) -> Tensor:
        """Normalise per sample and channel (running statistics in eval when tracked)."""
        nd = self._nd
        if input.ndim not in (nd + 1, nd + 2):
            raise ShapeError(f"{type(self).__name__}: expected a {nd + 1}-D (unbatched) or "
                             f"{nd + 2}-D input, got shape {tuple(input.shape)}")
        x = input.unsqueeze(0) if input.ndim == nd + 1 else input
        if x.shape[1] != self.num_features and self.affine:
            raise ShapeError(f"{type(self).__name__}: expected {self.num_features} channels, "
                             f"got input shape {tuple(input.shape)}")
        use_input = self.training or not self.track_running_stats
        y = F.instance_norm(x, self.running_mean,
                            self.running_var, self.weight, self.bias, use_input, self.momentum,
                            self.eps)
        return y.squeeze(0) if input.ndim == nd + 1 else y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self._has_bias}, "
                f"track_running_stats={self.track_running_stats}")


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or (C, L) inputs (PyTorch's defaults: no affine
    parameters, no running statistics).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.InstanceNorm1d(3)(chainrule.randn(2, 3, 5)).shape
        (2, 3, 5)
    """

    _nd = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or (C, H, W) inputs.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.InstanceNorm2d(3, affine=True)(chainrule.randn(2, 3, 4, 4)).shape
        (2, 3, 4, 4)
    """

    _nd = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of (N, C, D, H, W) or (C, D, H, W) inputs.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.InstanceNorm3d(2)(chainrule.randn(1, 2, 2, 2, 2)).shape
        (1, 2, 2, 2, 2)
    """

    _nd = 3
