"""Autograd: the reverse engine, grad mode, graph nodes, anomaly detection.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor(3.0, requires_grad=True)
    >>> chainrule.autograd.grad(x * x, x)
    (tensor(6.),)
"""

from . import forward as forward_ad  # torch.autograd.forward_ad
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
