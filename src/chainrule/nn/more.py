"""More of ``torch.nn`` (issue 14): activations (GLU, Hardshrink, Softshrink, Tanhshrink,
Threshold, PReLU, Softmax2d), distances (CosineSimilarity, PairwiseDistance), constant
padding (ZeroPad1d/2d/3d, ConstantPad1d/2d/3d), 3-D pooling (MaxPool3d, AvgPool3d,
AdaptiveAvgPool3d) and losses (MarginRankingLoss, HingeEmbeddingLoss, SoftMarginLoss,
CosineEmbeddingLoss, TripletMarginLoss, PoissonNLLLoss, MultiLabelSoftMarginLoss).

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> nn.ZeroPad2d(1)(chainrule.ones(1, 1, 2, 2)).shape
    (1, 1, 4, 4)
"""

from __future__ import annotations

from ..ops import conv as C
from ..ops import nn_extra as X
from ..tensor import Tensor
from . import functional as F
from .conv import AdaptiveAvgPool1d, _AvgPool, _Pool
from .loss import _Loss
from .module import Module
from .parameter import Parameter

__all__ = ["AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
           "GaussianNLLLoss", "AvgPool3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "CosineEmbeddingLoss", "CosineSimilarity", "GLU", "Hardshrink",
           "HingeEmbeddingLoss", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
           "MarginRankingLoss", "MaxPool3d", "MultiLabelSoftMarginLoss",
           "PReLU", "PairwiseDistance", "PixelShuffle", "PixelUnshuffle", "PoissonNLLLoss",
           "SoftMarginLoss", "Softmax2d",
           "Softshrink", "Tanhshrink", "Threshold", "TripletMarginLoss", "ZeroPad1d",
           "ZeroPad2d", "ZeroPad3d"]


class _Fn(Module):
    """A module that calls one functional with its stored keyword arguments."""

    _fn = None
    _keys: tuple = ()

    def __init__(self, *args, **kwargs):
        super().__init__()
        names = self._keys
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional "
                            f"arguments ({', '.join(names)}), got {len(args)}")
        defaults = type(self)._defaults
        for k in kwargs:
            if k not in names:
                raise TypeError(f"{type(self).__name__}: unexpected argument {k!r}")
        for i, k in enumerate(names):
            setattr(self, k, args[i] if i < len(args) else kwargs.get(k, defaults.get(k)))

    def _kw(self):
        return {k: getattr(self, k) for k in self._keys if k != "inplace"}

    def forward(self, *inputs: Tensor) -> Tensor:
        """Apply the function."""
        return type(self)._fn(*inputs, **self._kw())

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in self._keys)


def _fn_module(name, fn, keys, defaults, doc):
    return type(name, (_Fn,), {"_fn": staticmethod(fn), "_keys": tuple(keys),
                               "_defaults": dict(defaults), "__doc__": doc,
                               "__module__": __name__})


_EX = "\n\n    Example:\n        >>> import chainrule\n        >>> from chainrule import nn\n"
GLU = _fn_module("GLU", X.glu, ["dim"], {"dim": -1},
                 "Gated linear unit over ``dim``: a * sigmoid(b) for the two halves a, b." + _EX
                 + "        >>> nn.GLU()(chainrule.zeros(2, 4)).shape\n        (2, 2)\n    ")
Hardshrink = _fn_module("Hardshrink", X.hardshrink, ["lambd"], {"lambd": 0.5},
                        "x where |x| > lambd, else 0." + _EX
                        + "        >>> nn.Hardshrink()(chainrule.tensor([0.2]))\n"
                          "        tensor([0.])\n    ")
Softshrink = _fn_module("Softshrink", X.softshrink, ["lambd"], {"lambd": 0.5},
                        "Shrink towards 0 by lambd, 0 inside [-lambd, lambd]." + _EX
                        + "        >>> nn.Softshrink()(chainrule.tensor([1.0]))\n"
                          "        tensor([0.5000])\n    ")
Tanhshrink = _fn_module("Tanhshrink", X.tanhshrink, [], {},
                        "x - tanh(x)." + _EX
                        + "        >>> nn.Tanhshrink()(chainrule.zeros(1))\n"
                          "        tensor([0.])\n    ")
Threshold = _fn_module("Threshold", X.threshold, ["threshold", "value", "inplace"],
                       {"inplace": False},
                       "x where x > threshold, else value." + _EX
                       + "        >>> nn.Threshold(1.0, 0.0)(chainrule.tensor([0.5, 2.0]))\n"
                         "        tensor([0., 2.])\n    ")
CosineSimilarity = _fn_module("CosineSimilarity", X.cosine_similarity, ["dim", "eps"],
                              {"dim": 1, "eps": 1e-8},
                              "Cosine of the angle between x1 and x2 along ``dim``." + _EX
                              + "        >>> x = chainrule.ones(1, 3)\n"
                                "        >>> nn.CosineSimilarity()(x, x)\n"
                                "        tensor([1.])\n    ")
PairwiseDistance = _fn_module("PairwiseDistance", X.pairwise_distance, ["p", "eps", "keepdim"],
                              {"p": 2.0, "eps": 1e-6, "keepdim": False},
                              "p-norm of x1 - x2 + eps along the last dimension." + _EX
                              + "        >>> nn.PairwiseDistance(eps=0.0)(chainrule.zeros(1, 2),"
                                " chainrule.ones(1, 2))\n        tensor([1.4142])\n    ")

PixelShuffle = _fn_module("PixelShuffle", X.pixel_shuffle, ["upscale_factor"], {},
                          "Rearrange (*, C r^2, H, W) into (*, C, H r, W r)." + _EX
                          + "        >>> nn.PixelShuffle(2)(chainrule.zeros(1, 4, 2, 2)).shape\n"
                            "        (1, 1, 4, 4)\n    ")
PixelUnshuffle = _fn_module("PixelUnshuffle", X.pixel_unshuffle, ["downscale_factor"], {},
                            "Rearrange (*, C, H r, W r) into (*, C r^2, H, W)." + _EX
                            + "        >>> nn.PixelUnshuffle(2)(chainrule.zeros(1, 1, 4, 4))"
                              ".shape\n        (1, 4, 2, 2)\n    ")


class PReLU(Module):
    """x where x >= 0, else a * x, with a learnable ``a`` (one, or one per channel).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.PReLU()(chainrule.tensor([-4.0, 4.0]))
        tensor([-1.,  4.], grad_fn=<WhereBackward>)
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        from ..ops import full  # noqa: PLC0415

        self.num_parameters = num_parameters
        self.weight = Parameter(full((num_parameters,), float(init)))

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return X.prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Softmax2d(Module):
    """Softmax over the channels (dim -3) of (N, C, H, W) or (C, H, W).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Softmax2d()(chainrule.zeros(1, 2, 1, 1)).flatten()
        tensor([0.5000, 0.5000])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the softmax."""
        if input.ndim not in (3, 4):
            from ..errors import ShapeError  # noqa: PLC0415

            raise ShapeError(f"Softmax2d: expected a 3-D or 4-D input, got shape "
                             f"{tuple(input.shape)}")
        return F.softmax(input, dim=-3)


class _ConstantPad(Module):
    _nd = 1

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        self.padding = (padding,) * (2 * self._nd) if isinstance(padding, int) else \
            tuple(padding)
        if len(self.padding) != 2 * self._nd:
            raise ValueError(f"{type(self).__name__}: padding must be an int or "
                             f"{2 * self._nd} ints, got {padding!r}")
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        """Pad the last dimensions."""
        return F.pad(input, self.padding, value=self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


def _pad_class(name, nd, zero):
    doc = (f"Pad the last {nd} dimension(s) with {'zeros' if zero else 'a constant'} "
           f"(``padding``: an int or {2 * nd} ints, last dimension first)." + _EX
           + f"        >>> nn.{name}(1{'' if zero else ', 2.0'})(chainrule.zeros(1, 1, 1, 1, 1))"
             ".shape\n"
           + f"        {(1, 1) + (1,) * (3 - nd) + (3,) * nd}\n    ")
    body = {"_nd": nd, "__doc__": doc, "__module__": __name__}
    if zero:
        body["__init__"] = lambda self, padding: _ConstantPad.__init__(self, padding, 0.0)
    return type(name, (_ConstantPad,), body)


ZeroPad1d, ZeroPad2d, ZeroPad3d = (_pad_class(f"ZeroPad{n}d", n, True) for n in (1, 2, 3))
ConstantPad1d, ConstantPad2d, ConstantPad3d = (_pad_class(f"ConstantPad{n}d", n, False)
                                               for n in (1, 2, 3))


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


class _FnLoss(_Loss):
    """A loss module over one functional with stored keyword arguments."""

    _fn = None
    _keys: tuple = ()
    _defaults: dict = {}

    def __init__(self, *args, reduction: str = "mean", **kwargs):
        super().__init__(reduction)
        for i, k in enumerate(self._keys):
            setattr(self, k, args[i] if i < len(args) else kwargs.get(k, self._defaults[k]))

    def forward(self, *inputs: Tensor) -> Tensor:
        """The reduced loss."""
        kw = {k: getattr(self, k) for k in self._keys}
        return type(self)._fn(*inputs, reduction=self.reduction, **kw)


def _loss_class(name, fn, keys, defaults, example):
    doc = (f"The module form of ``F.{fn.__name__}`` (see it for the formula)." + _EX
           + example + "\n    ")
    return type(name, (_FnLoss,), {"_fn": staticmethod(fn), "_keys": tuple(keys),
                                   "_defaults": dict(defaults), "__doc__": doc,
                                   "__module__": __name__})


_ONE = "chainrule.tensor([1.0])"
MarginRankingLoss = _loss_class(
    "MarginRankingLoss", X.margin_ranking_loss, ["margin"], {"margin": 0.0},
    f"        >>> nn.MarginRankingLoss()({_ONE}, {_ONE} * 2, {_ONE})\n        tensor(1.)")
HingeEmbeddingLoss = _loss_class(
    "HingeEmbeddingLoss", X.hinge_embedding_loss, ["margin"], {"margin": 1.0},
    f"        >>> nn.HingeEmbeddingLoss()({_ONE}, -{_ONE})\n        tensor(0.)")
SoftMarginLoss = _loss_class(
    "SoftMarginLoss", X.soft_margin_loss, [], {},
    f"        >>> nn.SoftMarginLoss()({_ONE} * 0, {_ONE})\n        tensor(0.6931)")
CosineEmbeddingLoss = _loss_class(
    "CosineEmbeddingLoss", X.cosine_embedding_loss, ["margin"], {"margin": 0.0},
    "        >>> x, y = chainrule.tensor([[1.0, 0.0]]), chainrule.tensor([[0.0, 1.0]])\n"
    f"        >>> nn.CosineEmbeddingLoss()(x, y, {_ONE})\n        tensor(1.)")
TripletMarginLoss = _loss_class(
    "TripletMarginLoss", X.triplet_margin_loss, ["margin", "p", "eps", "swap"],
    {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False},
    "        >>> a = chainrule.zeros(1, 2)\n"
    "        >>> nn.TripletMarginLoss(eps=0.0)(a, a, a + 3)\n        tensor(0.)")
PoissonNLLLoss = _loss_class(
    "PoissonNLLLoss", X.poisson_nll_loss, ["log_input", "full", "eps"],
    {"log_input": True, "full": False, "eps": 1e-8},
    f"        >>> nn.PoissonNLLLoss()({_ONE} * 0, {_ONE})\n        tensor(1.)")
MultiLabelSoftMarginLoss = _loss_class(
    "MultiLabelSoftMarginLoss", X.multilabel_soft_margin_loss, ["weight"], {"weight": None},
    "        >>> nn.MultiLabelSoftMarginLoss()(chainrule.zeros(1, 2), chainrule.ones(1, 2))\n"
    "        tensor(0.6931)")


class _InstanceNorm(Module):
    _nd = 1

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = False, track_running_stats: bool = False, device=None,
                 dtype=None, *, bias: bool = True):
        super().__init__()
        from .. import ops  # noqa: PLC0415

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
            from ..errors import ShapeError  # noqa: PLC0415

            raise ShapeError(f"{type(self).__name__}: expected a {nd + 1}-D (unbatched) or "
                             f"{nd + 2}-D input, got shape {tuple(input.shape)}")
        x = input.unsqueeze(0) if input.ndim == nd + 1 else input
        if x.shape[1] != self.num_features and self.affine:
            from ..errors import ShapeError  # noqa: PLC0415

            raise ShapeError(f"{type(self).__name__}: expected {self.num_features} channels, "
                             f"got input shape {tuple(input.shape)}")
        use_input = self.training or not self.track_running_stats
        y = X.instance_norm(x, self.running_mean,
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

    _fn = staticmethod(X.adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Max-pool (N, C, H, W) to a fixed size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveMaxPool2d((2, 1))(chainrule.ones(1, 3, 5, 4)).shape
        (1, 3, 2, 1)
    """

    _fn = staticmethod(X.adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPool):
    """Max-pool (N, C, D, H, W) to a fixed size.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.AdaptiveMaxPool3d(1)(chainrule.ones(1, 2, 3, 3, 3)).shape
        (1, 2, 1, 1, 1)
    """

    _fn = staticmethod(X.adaptive_max_pool3d)


class GaussianNLLLoss(_Loss):
    """Gaussian negative log-likelihood, the module form of ``F.gaussian_nll_loss``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.GaussianNLLLoss()(chainrule.zeros(2), chainrule.zeros(2), chainrule.ones(2))
        tensor(0.)
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input: Tensor, target: Tensor, var: Tensor) -> Tensor:
        """The loss of ``input`` (means) and ``var`` (variances) against ``target``."""
        return X.gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)
