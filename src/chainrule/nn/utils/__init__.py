"""Utilities for modules and their gradients: gradient clipping and flattening parameters
into one vector (PyTorch's ``torch.nn.utils``).

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> m = nn.Linear(3, 2)
    >>> nn.utils.parameters_to_vector(m.parameters()).shape
    (8,)
"""

from .clip_grad import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm
from .convert_parameters import parameters_to_vector, vector_to_parameters

# isort: split
from . import rnn  # torch.nn.utils.rnn (issue 14)

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm",
           "parameters_to_vector", "rnn", "vector_to_parameters"]
