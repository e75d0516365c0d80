"""Convolution, pooling and upsampling modules over ``chainrule.ops.conv``:
``Conv1d``, ``Conv2d``, ``Conv3d``, ``ConvTranspose1d``, ``ConvTranspose2d``, ``MaxPool1d``,
``MaxPool2d``, ``AvgPool1d``, ``AvgPool2d``, ``AdaptiveAvgPool1d``, ``AdaptiveAvgPool2d``,
``Upsample``. Parameter names, shapes, init and reprs are PyTorch's.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> conv = nn.Conv2d(1, 6, 5, padding=2)
    >>> conv
    Conv2d(1, 6, kernel_size=(5, 5), stride=(1, 1), padding=(2, 2))
    >>> conv(chainrule.ones(2, 1, 28, 28)).shape
    (2, 6, 28, 28)
"""

from __future__ import annotations

import math

from .. import ops
from ..ops import conv as C
from ..tensor import Tensor
from . import functional as F
from . import init
from .activation import _EX, _fn_module
from .module import Module
from .parameter import Parameter

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "Conv2d",
    "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "Upsample",
    # issue 14 (PyTorch compatibility)
    "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AvgPool3d", "MaxPool3d", "PixelShuffle", "PixelUnshuffle",
]


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 output_padding=0, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        for what, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode {padding_mode!r} is not supported "
                             "(only 'zeros')")
        n = self._nd
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _tuple(kernel_size, n)
        self.stride = _tuple(stride, n)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n)
        self.dilation = _tuple(dilation, n)
        self.output_padding = _tuple(output_padding, n)
        self.groups = groups
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(ops.empty(*shape, device=device, dtype=dtype))
        if bias:
            self.bias = Parameter(ops.empty(out_channels, device=device, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform_(a=sqrt(5)) weights, U(+-1/sqrt(fan_in)) bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        n = self._nd
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * n:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding={self.padding}"
        if self.dilation != (1,) * n:
            s += f", dilation={self.dilation}"
        if self._transposed and self.output_padding != (0,) * n:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) (see chainrule.ops.conv.conv1d).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Conv1d(2, 4, 3)(chainrule.ones(1, 2, 10)).shape
        (1, 4, 8)
    """

    _nd = 1

    def forward(self, input: Tensor) -> Tensor:
        return C.conv1d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W) (see chainrule.ops.conv.conv2d).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Conv2d(1, 2, 3, stride=2)(chainrule.ones(1, 1, 9, 9)).shape
        (1, 2, 4, 4)
    """

    def forward(self, input: Tensor) -> Tensor:
        return C.conv2d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class Conv3d(_ConvNd):
    """3-D convolution over (N, C_in, D, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Conv3d(1, 1, 2)(chainrule.ones(1, 1, 3, 3, 3)).shape
        (1, 1, 2, 2, 2)
    """

    _nd = 3

    def forward(self, input: Tensor) -> Tensor:
        return C.conv3d(input, self.weight, self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class ConvTranspose1d(_ConvNd):
    """1-D transposed convolution (weight shape (C_in, C_out / groups, k)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.ConvTranspose1d(2, 3, 3, stride=2)(chainrule.ones(1, 2, 4)).shape
        (1, 3, 9)
    """

    _nd = 1
    _transposed = True

    def forward(self, input: Tensor) -> Tensor:
        return C.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution (weight shape (C_in, C_out / groups, kh, kw)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.ConvTranspose2d(4, 2, 2, stride=2)(chainrule.ones(1, 4, 3, 3)).shape
        (1, 2, 6, 6)
    """

    _transposed = True

    def forward(self, input: Tensor) -> Tensor:
        return C.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class _Pool(Module):
    _fn = None
    _nd = 2

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.return_indices, self.ceil_mode = dilation, return_indices, ceil_mode

    def forward(self, input: Tensor):
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding,
                              self.dilation, ceil_mode=self.ceil_mode,
                              return_indices=self.return_indices)

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return (f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_Pool):
    """Max over sliding windows of (N, C, L).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.MaxPool1d(2)(chainrule.arange(8.0).reshape(1, 1, 8))
        tensor([[[1., 3., 5., 7.]]])
    """

    _fn = staticmethod(C.max_pool1d)


class MaxPool2d(_Pool):
    """Max over sliding windows of (N, C, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.MaxPool2d(2)(chainrule.ones(1, 3, 8, 8)).shape
        (1, 3, 4, 4)
    """

    _fn = staticmethod(C.max_pool2d)


class _AvgPool(Module):
    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        kw = {"divisor_override": self.divisor_override} if self.divisor_override else {}
        return type(self)._fn(input, self.kernel_size, self.stride, self.padding,
                              self.ceil_mode, self.count_include_pad, **kw)

    def extra_repr(self) -> str:
        stride = self.kernel_size if self.stride is None else self.stride
        return f"kernel_size={self.kernel_size}, stride={stride}, padding={self.padding}"


class AvgPool1d(_AvgPool):
    """Mean over sliding windows of (N, C, L).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AvgPool1d(2)(chainrule.arange(4.0).reshape(1, 1, 4))
        tensor([[[0.5000, 2.5000]]])
    """

    _fn = staticmethod(C.avg_pool1d)


class AvgPool2d(_AvgPool):
    """Mean over sliding windows of (N, C, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AvgPool2d(2)(chainrule.ones(1, 1, 4, 4)).shape
        (1, 1, 2, 2)
    """

    _fn = staticmethod(C.avg_pool2d)


class AdaptiveAvgPool1d(Module):
    """Average-pool (N, C, L) to a fixed output length.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveAvgPool1d(1)(chainrule.ones(2, 3, 5)).shape
        (2, 3, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return C.adaptive_avg_pool1d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(AdaptiveAvgPool1d):
    """Average-pool (N, C, H, W) to a fixed output size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveAvgPool2d((1, 1))(chainrule.ones(2, 3, 5, 5)).shape
        (2, 3, 1, 1)
    """

    def forward(self, input: Tensor) -> Tensor:
        return C.adaptive_avg_pool2d(input, self.output_size)


class Upsample(Module):
    """Upsampling by ``scale_factor`` or to ``size``: nearest neighbour, or (bi/tri)linear
    with ``mode`` and ``align_corners`` (see ``F.interpolate``).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Upsample(scale_factor=2)(chainrule.ones(1, 1, 2, 2)).shape
        (1, 1, 4, 4)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input: Tensor) -> Tensor:
        return C.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self) -> str:
        if self.size is not None:
            return f"size={self.size}, mode='{self.mode}'"
        return f"scale_factor={float(self.scale_factor)}, mode='{self.mode}'"


class MaxPool3d(_Pool):
    """Max over sliding windows of (N, C, D, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.MaxPool3d(2)(chainrule.ones(1, 1, 4, 4, 4)).shape
        (1, 1, 2, 2, 2)
    """

    _fn = staticmethod(C.max_pool3d)


class AvgPool3d(_AvgPool):
    """Mean over sliding windows of (N, C, D, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AvgPool3d(2)(chainrule.ones(1, 1, 2, 2, 2)).flatten()
        tensor([1.])
    """

    _fn = staticmethod(C.avg_pool3d)


class AdaptiveAvgPool3d(AdaptiveAvgPool1d):
    """Average-pool (N, C, D, H, W) to a fixed output size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveAvgPool3d(1)(chainrule.ones(1, 2, 3, 3, 3)).shape
        (1, 2, 1, 1, 1)
    """

    def forward(self, input: Tensor) -> Tensor:
        """Pool to ``output_size``."""
        return C.adaptive_avg_pool3d(input, self.output_size)


class _AdaptiveMaxPool(Module):
    _fn = None

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input: Tensor) -> Tensor:
        """Pool to ``output_size``."""
        return type(self)._fn(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Max-pool (N, C, L) to a fixed length.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveMaxPool1d(1)(chainrule.ones(2, 3, 5)).shape
        (2, 3, 1)
    """

    _fn = staticmethod(F.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Max-pool (N, C, H, W) to a fixed size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveMaxPool2d((2, 1))(chainrule.ones(1, 3, 5, 4)).shape
        (1, 3, 2, 1)
    """

    _fn = staticmethod(F.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPool):
    """Max-pool (N, C, D, H, W) to a fixed size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveMaxPool3d(1)(chainrule.ones(1, 2, 3, 3, 3)).shape
        (1, 2, 1, 1, 1)
    """

    _fn = staticmethod(F.adaptive_max_pool3d)


PixelShuffle = _fn_module("PixelShuffle", F.pixel_shuffle, ["upscale_factor"], {},
                          "Rearrange (*, C r^2, H, W) into (*, C, H r, W r)." + _EX
                          + "        >>> nn.PixelShuffle(2)(chainrule.zeros(1, 4, 2, 2)).shape\n"
                            "        (1, 1, 4, 4)\n    ", module=__name__)


PixelUnshuffle = _fn_module("PixelUnshuffle", F.pixel_unshuffle, ["downscale_factor"], {},
                            "Rearrange (*, C, H r, W r) into (*, C r^2, H, W)." + _EX
                            + "        >>> nn.PixelUnshuffle(2)(chainrule.zeros(1, 1, 4, 4))"
                              ".shape\n        (1, 4, 2, 2)\n    ", module=__name__)
