"""Autograd: the reverse engine, grad mode, graph nodes, anomaly detection.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor(3.0, requires_grad=True)
    >>> chainrule.autograd.grad(x * x, x)
    (tensor(6.),)
"""

from . import forward as forward_ad  # torch.autograd.forward_ad
from . import graph as _graph
from .anomaly import AnomalyError, detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .engine import backward, grad
from .function import Function, FunctionCtx, once_differentiable
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .graph import Node

__all__ = [
    "AnomalyError", "Function", "FunctionCtx", "Node", "backward", "detect_anomaly",
    "enable_grad", "forward_ad", "grad", "inference_mode", "is_anomaly_enabled",
    "is_grad_enabled", "no_grad", "once_differentiable", "set_detect_anomaly",
    "set_grad_enabled",
]


# ---- issue 14 (PyTorch compatibility): the deprecated Variable wrapper, gradcheck names
def Variable(data, requires_grad: bool = False, volatile: bool = False):  # noqa: N802
    """PyTorch's deprecated ``torch.autograd.Variable(t)``: tensors carry autograd
    themselves, so this returns ``data`` (a tensor), with ``requires_grad`` set when asked.

    Example:
        >>> import chainrule
        >>> chainrule.autograd.Variable(chainrule.ones(2), requires_grad=True).requires_grad
        True
    """
    t = data if isinstance(data, _graph.Tensor) else _graph.make_tensor(data)
    return t.requires_grad_(True) if requires_grad else t


def gradcheck(fn, inputs, **kwargs) -> bool:
    """``torch.autograd.gradcheck``: :func:`chainrule.testing.gradcheck` (float64 inputs).

    Example:
        >>> import chainrule
        >>> x = chainrule.ones(2, dtype=chainrule.float64, requires_grad=True)
        >>> chainrule.autograd.gradcheck(lambda t: (t * t).sum(), (x,))
        True
    """
    from ..testing import gradcheck as check  # noqa: PLC0415

    return check(fn, inputs if isinstance(inputs, (tuple, list)) else (inputs,),
                 **{k: v for k, v in kwargs.items() if k in ("eps", "atol", "rtol")})


def gradgradcheck(fn, inputs, **kwargs) -> bool:
    """``torch.autograd.gradgradcheck``: :func:`chainrule.testing.gradgradcheck`.

    Example:
        >>> import chainrule
        >>> x = chainrule.ones(2, dtype=chainrule.float64, requires_grad=True)
        >>> chainrule.autograd.gradgradcheck(lambda t: (t * t * t).sum(), (x,))
        True
    """
    from ..testing import gradgradcheck as check  # noqa: PLC0415

    return check(fn, inputs if isinstance(inputs, (tuple, list)) else (inputs,),
                 **{k: v for k, v in kwargs.items() if k in ("eps", "atol", "rtol")})


from . import functional  # noqa: E402 - torch.autograd.functional

__all__ += ["Variable", "functional", "gradcheck", "gradgradcheck"]
