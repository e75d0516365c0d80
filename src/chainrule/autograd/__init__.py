"""Autograd: the reverse engine, grad mode, graph nodes, anomaly detection.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor(3.0, requires_grad=True)
    >>> chainrule.autograd.grad(x * x, x)
    (tensor(6.),)
"""

from .engine import backward, grad
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .graph import Node

__all__ = ["Node", "backward", "enable_grad", "grad", "inference_mode", "is_grad_enabled",
           "no_grad", "set_grad_enabled"]
