"""``Dropout``: zero elements at random in training, identity in evaluation; ``Dropout1d``,
``Dropout2d``, ``Dropout3d`` zero whole channels.

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

__all__ = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d"]


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


class _ChannelDropout(Dropout):
    _fn = None

    def forward(self, input: Tensor) -> Tensor:
        """Zero whole channels when ``self.training``."""
        fn = type(self)._fn
        if self.inplace and self.training and self.p > 0:
            return input._inplace_op(lambda t: fn(t, self.p, True),
                                     f"{type(self).__name__}(inplace=True)")
        return fn(input, self.p, self.training)


class Dropout1d(_ChannelDropout):
    """In training, zero each channel of an (N, C, L) or (C, L) input with probability
    ``p`` and scale the others by 1/(1-p); the identity in evaluation.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> y = nn.Dropout1d(0.5)(chainrule.ones(4, 8, 3))
        >>> bool(((y == 0).all(-1) | (y == 2).all(-1)).all())
        True
    """

    _fn = staticmethod(F.dropout1d)


class Dropout2d(_ChannelDropout):
    """Channel dropout for (N, C, H, W) inputs (see :class:`Dropout1d`); 3-D inputs are read
    as (N, C, L), with a warning, as PyTorch does.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Dropout2d().eval()(chainrule.ones(1, 2, 3, 3)).shape
        (1, 2, 3, 3)
    """

    _fn = staticmethod(F.dropout2d)


class Dropout3d(_ChannelDropout):
    """Channel dropout for (N, C, D, H, W) or (C, D, H, W) inputs (see :class:`Dropout1d`).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Dropout3d(0.0)(chainrule.ones(1, 2, 1, 1, 1)).sum()
        tensor(2.)
    """

    _fn = staticmethod(F.dropout3d)
