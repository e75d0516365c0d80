"""``Dropout``: zero elements at random in training, identity in evaluation.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> nn.Dropout(0.5).eval()(chainrule.ones(3))
    tensor([1., 1., 1.])
"""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the others by
    1/(1-p) (so the expected value is unchanged); in evaluation, return the input.
    ``inplace=True`` writes the result into the input tensor.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> _ = chainrule.manual_seed(0)
        >>> y = nn.Dropout(0.5)(chainrule.ones(1000))
        >>> sorted(set(y.tolist()))
        [0.0, 2.0]
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        """Apply dropout when ``self.training``."""
        if self.inplace and self.training and self.p > 0:
            return input._inplace_op(lambda t: F.dropout(t, self.p, True),
                                     "Dropout(inplace=True)")
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
