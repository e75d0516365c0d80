"""Flatten parameters into one vector and back: ``parameters_to_vector``,
``vector_to_parameters``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> m = nn.Linear(2, 1)
    >>> v = nn.utils.parameters_to_vector(m.parameters())
    >>> nn.utils.vector_to_parameters(chainrule.zeros_like(v), m.parameters())
    >>> m.bias
    Parameter containing:
    tensor([0.], requires_grad=True)
"""

from __future__ import annotations

from collections.abc import Iterable

from ... import backend, ops
from ...errors import DeviceError, ShapeError
from ...tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def _params(parameters, op: str) -> list[Tensor]:
    if isinstance(parameters, Tensor):
        return [parameters]
    ps = list(parameters)
    for p in ps:
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: expected Tensors, got an element of type {type(p).__name__}")
    return ps


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated into one 1-D tensor (a copy). As in
    PyTorch it is recorded for autograd when grad mode is on and parameters require grad.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.utils.parameters_to_vector([chainrule.ones(2, 2), chainrule.zeros(1)])
        tensor([1., 1., 1., 1., 0.])
    """
    ps = _params(parameters, "parameters_to_vector")
    if not ps:
        raise ValueError("parameters_to_vector: got no parameters")
    dev = ps[0].device
    for p in ps[1:]:
        if p.device != dev:
            raise DeviceError(f"parameters_to_vector: found parameters on different devices "
                              f"({dev} and {p.device})")
    return ops.cat([ops.reshape(p, -1) for p in ps])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place and outside
    autograd (the parameters keep their own memory; PyTorch instead makes them views of
    ``vec``). ``vec`` must have exactly as many elements as the parameters together.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> a, b = chainrule.zeros(2), chainrule.zeros(1)
        >>> nn.utils.vector_to_parameters(chainrule.tensor([1.0, 2.0, 3.0]), [a, b]); a, b
        (tensor([1., 2.]), tensor([3.]))
    """
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: expected vec to be a Tensor, got "
                        f"{type(vec).__name__}")
    if vec.ndim != 1:
        raise ShapeError(f"vector_to_parameters: vec must be 1-D, got shape {tuple(vec.shape)}")
    ps = _params(parameters, "vector_to_parameters")
    total = sum(p.numel() for p in ps)
    if vec.numel() != total:
        raise ShapeError(f"vector_to_parameters: vec has {vec.numel()} elements but the "
                         f"parameters have {total}")
    src = vec._data
    start = 0
    for p in ps:
        n = p.numel()
        piece = src[start:start + n].reshape(p.shape)
        dst = p._data
        if backend.device_of(piece) != backend.device_of(dst):
            piece = backend.to_device(piece, backend.device_of(dst))
        backend.get_array_module(dst).copyto(dst, piece, casting="unsafe")
        p._bump()
        start += n
