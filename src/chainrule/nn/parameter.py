"""``Parameter``: a tensor that a Module registers as one of its learnable weights.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> p = nn.Parameter(chainrule.zeros(2))
    >>> p.requires_grad, isinstance(p, chainrule.Tensor)
    (True, True)
"""

from __future__ import annotations

from ..ops.creation import empty
from ..tensor import Tensor, _wrap, tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad by default; assigning one to a Module attribute
    registers it in the module's ``parameters()``.

    The parameter takes over the array of ``data`` (no copy) and shares its version counter,
    as PyTorch's ``Parameter(t)`` shares ``t``'s storage. Ops on a parameter return plain
    tensors.

    Args:
        data: the initial value (a Tensor; other array-likes go through ``chainrule.tensor``).
            None gives an empty float tensor.
        requires_grad: whether gradients flow to it (default True; float dtypes only).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.Parameter(chainrule.ones(2))
        Parameter containing:
        tensor([1., 1.], requires_grad=True)
    """

    __slots__ = ()

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            data = empty(0)
        elif not isinstance(data, Tensor):
            data = tensor(data)
        if data._vc is None:
            data._vc = [0]
        self._data = data._data
        self._node = None
        self._rg = False
        self._grad = None
        self._vc = data._vc
        self._hooks = None
        self._retains = False
        self._fw = None
        self._view = None
        if requires_grad:
            if data._data.dtype.kind not in "fV":
                raise TypeError(f"Parameter: only floating-point tensors can require gradients; "
                                f"got {data.dtype.name} with shape {tuple(data.shape)} (pass "
                                "requires_grad=False for an integer parameter)")
            self._rg = True

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        out = Parameter(_wrap(self._data.copy()), self._rg)
        if self._grad is not None:
            out._grad = _wrap(self._grad._data.copy())
        memo[id(self)] = out
        return out

