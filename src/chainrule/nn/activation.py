"""Activation modules: thin wrappers over ``chainrule.nn.functional``.

Modules with ``inplace=True`` write the result into their input tensor (refused, as in
PyTorch, for a leaf that requires grad while grad mode is on).

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> nn.ReLU()(chainrule.tensor([-1.0, 2.0]))
    tensor([0., 2.])
"""

from __future__ import annotations

import warnings

from ..errors import ShapeError
from ..ops import full
from ..ops import reduce as R
from ..tensor import Tensor
from . import functional as F
from .module import Module
from .parameter import Parameter

__all__ = [
    "CELU", "ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid",
    "LogSoftmax", "Mish", "ReLU", "ReLU6", "SELU", "SiLU", "Sigmoid", "Softmax", "Softmin",
    "Softplus", "Softsign", "Tanh",
    # issue 14 (PyTorch compatibility)
    "GLU", "Hardshrink", "PReLU", "Softmax2d", "Softshrink", "Tanhshrink", "Threshold",
]


def _finish(module: Module, x: Tensor, fn) -> Tensor:
    """``fn(x)``, or, when the module is in-place, ``fn`` applied and written into ``x``."""
    if module.inplace:
        return x._inplace_op(fn, f"{type(module).__name__}(inplace=True)")
    return fn(x)


class _Inplace(Module):
    """An activation with an ``inplace`` flag."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Inplace):
    """max(x, 0).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.ReLU()(chainrule.tensor([-1.0, 1.0]))
        tensor([0., 1.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.relu(t))


class ReLU6(_Inplace):
    """min(max(x, 0), 6).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.ReLU6()(chainrule.tensor([-1.0, 8.0]))
        tensor([0., 6.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.relu6(t))


class SELU(_Inplace):
    """scale * ELU(x, alpha) with the self-normalising constants.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.SELU()(chainrule.tensor([1.0]))
        tensor([1.0507])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.selu(t))


class SiLU(_Inplace):
    """x * sigmoid(x).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.SiLU()(chainrule.tensor([0.0]))
        tensor([0.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.silu(t))


class Mish(_Inplace):
    """x * tanh(softplus(x)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Mish()(chainrule.tensor([0.0]))
        tensor([0.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.mish(t))


class Hardsigmoid(_Inplace):
    """relu6(x + 3) / 6.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Hardsigmoid()(chainrule.tensor([0.0]))
        tensor([0.5000])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.hardsigmoid(t))


class Hardswish(_Inplace):
    """x * relu6(x + 3) / 6.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Hardswish()(chainrule.tensor([3.0]))
        tensor([3.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.hardswish(t))


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.LeakyReLU(0.1)(chainrule.tensor([-2.0, 2.0]))
        tensor([-0.2000,  2.0000])
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.leaky_relu(t, self.negative_slope))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                          else "")


class ELU(Module):
    """x where x > 0, else alpha * (exp(x) - 1).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.ELU()(chainrule.tensor([0.0, 1.0]))
        tensor([0., 1.])
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.elu(t, self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(Module):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.CELU()(chainrule.tensor([1.0]))
        tensor([1.])
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.celu(t, self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Hardtanh(Module):
    """clamp(x, min_val, max_val).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Hardtanh()(chainrule.tensor([-3.0, 0.5]))
        tensor([-1.0000,  0.5000])
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(f"Hardtanh: max_val ({max_val}) must be greater than min_val "
                             f"({min_val})")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return _finish(self, input, lambda t: F.hardtanh(t, self.min_val, self.max_val))

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class GELU(Module):
    """x * Phi(x); ``approximate='tanh'`` uses the tanh approximation.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.GELU()(chainrule.tensor([1.0]))
        tensor([0.8413])
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Sigmoid(Module):
    """1 / (1 + exp(-x)).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Sigmoid()(chainrule.tensor([0.0]))
        tensor([0.5000])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.sigmoid(input)


class Tanh(Module):
    """tanh(x).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Tanh()(chainrule.tensor([0.0]))
        tensor([0.])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.tanh(input)


class LogSigmoid(Module):
    """log(sigmoid(x)), computed stably.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.LogSigmoid()(chainrule.tensor([0.0]))
        tensor([-0.6931])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.logsigmoid(input)


class Softsign(Module):
    """x / (1 + |x|).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Softsign()(chainrule.tensor([1.0]))
        tensor([0.5000])
    """

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.softsign(input)


class Softplus(Module):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Softplus()(chainrule.tensor([0.0]))
        tensor([0.6931])
    """

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.softplus(input, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


def _softmax_dim(ndim: int, name: str) -> int:
    """PyTorch's legacy choice of dim when a softmax module was built with dim=None."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Softmax(dim=-1)(chainrule.zeros(1, 2))
        tensor([[0.5000, 0.5000]])
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        """Apply the softmax."""
        dim = self.dim if self.dim is not None else _softmax_dim(input.ndim, "softmax")
        return R.softmax(input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmin(Module):
    """softmax(-x) along ``dim``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Softmin(dim=0)(chainrule.tensor([0.0, 0.0]))
        tensor([0.5000, 0.5000])
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        """Apply the softmin."""
        dim = self.dim if self.dim is not None else _softmax_dim(input.ndim, "softmin")
        return R.softmax(-input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along ``dim``, computed stably.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.LogSoftmax(dim=1)(chainrule.zeros(1, 2))
        tensor([[-0.6931, -0.6931]])
    """

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        """Apply the log-softmax."""
        dim = self.dim if self.dim is not None else _softmax_dim(input.ndim, "log_softmax")
        return R.log_softmax(input, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


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


def _fn_module(name, fn, keys, defaults, doc, module=__name__):
    return type(name, (_Fn,), {"_fn": staticmethod(fn), "_keys": tuple(keys),
                               "_defaults": dict(defaults), "__doc__": doc,
                               "__module__": module})


_EX = "\n\n    Example:\n        >>> import chainrule\n        >>> from chainrule import nn\n"


GLU = _fn_module("GLU", F.glu, ["dim"], {"dim": -1},
                 "Gated linear unit over ``dim``: a * sigmoid(b) for the two halves a, b." + _EX
                 + "        >>> nn.GLU()(chainrule.zeros(2, 4)).shape\n        (2, 2)\n    ")


Hardshrink = _fn_module("Hardshrink", F.hardshrink, ["lambd"], {"lambd": 0.5},
                        "x where |x| > lambd, else 0." + _EX
                        + "        >>> nn.Hardshrink()(chainrule.tensor([0.2]))\n"
                          "        tensor([0.])\n    ")


Softshrink = _fn_module("Softshrink", F.softshrink, ["lambd"], {"lambd": 0.5},
                        "Shrink towards 0 by lambd, 0 inside [-lambd, lambd]." + _EX
                        + "        >>> nn.Softshrink()(chainrule.tensor([1.0]))\n"
                          "        tensor([0.5000])\n    ")


Tanhshrink = _fn_module("Tanhshrink", F.tanhshrink, [], {},
                        "x - tanh(x)." + _EX
                        + "        >>> nn.Tanhshrink()(chainrule.zeros(1))\n"
                          "        tensor([0.])\n    ")


Threshold = _fn_module("Threshold", F.threshold, ["threshold", "value", "inplace"],
                       {"inplace": False},
                       "x where x > threshold, else value." + _EX
                       + "        >>> nn.Threshold(1.0, 0.0)(chainrule.tensor([0.5, 2.0]))\n"
                         "        tensor([0., 2.])\n    ")


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
        self.num_parameters = num_parameters
        self.weight = Parameter(full((num_parameters,), float(init)))

    def forward(self, input: Tensor) -> Tensor:
        """Apply the activation."""
        return F.prelu(input, self.weight)

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
            raise ShapeError(f"Softmax2d: expected a 3-D or 4-D input, got shape "
                             f"{tuple(input.shape)}")
        return F.softmax(input, dim=-3)
