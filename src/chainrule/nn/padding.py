"""Constant padding modules (PyTorch's ``torch.nn`` names): ZeroPad1d/2d/3d and
ConstantPad1d/2d/3d.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> nn.ZeroPad2d(1)(chainrule.ones(1, 1, 2, 2)).shape
    (1, 1, 4, 4)
"""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .activation import _EX
from .module import Module

__all__ = ["ConstantPad1d", "ConstantPad2d", "ConstantPad3d", "ZeroPad1d", "ZeroPad2d",
           "ZeroPad3d"]


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
