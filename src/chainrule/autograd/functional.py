"""PyTorch's ``torch.autograd.functional`` (jacobian, hessian, vjp, jvp, hvp, vhp) on top of
:mod:`chainrule.func`, with PyTorch's calling conventions: ``inputs`` is a tensor or a tuple
of tensors, and results come back in the same form (issue 14).

Example:
    >>> import chainrule
    >>> from chainrule.autograd.functional import jacobian
    >>> jacobian(lambda x: x ** 2, chainrule.tensor([1.0, 3.0]))
    tensor([[2., 0.],
            [0., 6.]])
"""

from __future__ import annotations

from . import graph as _graph
from .engine import filled_like

__all__ = ["hessian", "hvp", "jacobian", "jvp", "vhp", "vjp"]


def _tensor_type():
    return _graph.Tensor  # chainrule.tensor hands it in (it sits above autograd)


def _as_tuple(inputs):
    if isinstance(inputs, _tensor_type()):
        return (inputs,), True
    return tuple(inputs), False


def _same_form(values, single):
    return values[0] if single else tuple(values)


def _detached(x):
    return x.detach() if isinstance(x, _tensor_type()) else x


def jacobian(func, inputs, create_graph: bool = False, strict: bool = False,
             vectorize: bool = False, strategy: str = "reverse-mode"):
    """d func / d inputs: shape ``out.shape + in.shape`` (a tuple per input for tuple
    inputs; per output, then per input, for tuple outputs), as PyTorch.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import jacobian
        >>> jacobian(lambda a, b: a * b, (chainrule.ones(1), chainrule.tensor([2.0])))
        (tensor([[2.]]), tensor([[1.]]))
    """
    from .. import func as F  # noqa: PLC0415

    if strategy not in ("reverse-mode", "forward-mode"):
        raise ValueError(f"jacobian: strategy must be 'reverse-mode' or 'forward-mode', got "
                         f"{strategy!r}")
    ins, single = _as_tuple(inputs)
    fn = F.jacrev if strategy == "reverse-mode" else F.jacfwd
    jac = fn(func, argnums=0 if single else tuple(range(len(ins))))(*ins)
    return jac if create_graph else _map(_detached, jac)


def _pair(out, values, single: bool, create_graph: bool):
    """``(output, values)`` in PyTorch's form: detached unless create_graph, the values a
    tensor for a tensor input and a tuple for tuple inputs."""
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not create_graph:
        out, values = _map(_detached, out), _map(_detached, values)
    return out, _same_form(values, single)


def _map(fn, tree):
    if isinstance(tree, tuple):
        return tuple(_map(fn, t) for t in tree)
    return fn(tree)


def hessian(func, inputs, create_graph: bool = False, strict: bool = False,
            vectorize: bool = False, outer_jacobian_strategy: str = "reverse-mode"):
    """The Hessian of a scalar function: ``in.shape + in.shape`` (nested per input pair for
    tuple inputs).

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import hessian
        >>> hessian(lambda x: (x ** 3).sum(), chainrule.tensor([1.0, 2.0]))
        tensor([[ 6.,  0.],
                [ 0., 12.]])
    """
    from .. import func as F  # noqa: PLC0415

    ins, single = _as_tuple(inputs)
    h = F.hessian(func, argnums=0 if single else tuple(range(len(ins))))(*ins)
    return h if create_graph else _map(_detached, h)


def vjp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), v^T J)``; ``v`` may be omitted for a scalar output.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import vjp
        >>> vjp(lambda x: x * 3, chainrule.ones(2), chainrule.tensor([1.0, 2.0]))
        (tensor([3., 3.]), tensor([3., 6.]))
    """
    from .. import func as F  # noqa: PLC0415

    ins, single = _as_tuple(inputs)
    out, fn = F.vjp(func, *ins)
    if v is None:
        if not isinstance(out, _tensor_type()) or out.numel() != 1:
            raise ValueError("vjp: v can be omitted only for a function with a single-element "
                             "output")
        v = filled_like(out, "ones")
    return _pair(out, fn(v), single, create_graph)


def jvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), J v)``; ``v`` may be omitted for a single-element input.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import jvp
        >>> jvp(lambda x: x ** 2, chainrule.tensor([1.0, 2.0]), chainrule.ones(2))
        (tensor([1., 4.]), tensor([2., 4.]))
    """
    from .. import func as F  # noqa: PLC0415

    ins, _ = _as_tuple(inputs)
    if v is None:
        if len(ins) != 1 or ins[0].numel() != 1:
            raise ValueError("jvp: v can be omitted only for a single-element input")
        v = filled_like(ins[0], "ones")
    vs, _ = _as_tuple(v)
    out, tangent = F.jvp(func, ins, vs)
    return _pair(out, tangent, not isinstance(tangent, tuple), create_graph)


def hvp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), H v)`` for a scalar function.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import hvp
        >>> hvp(lambda x: (x ** 3).sum(), chainrule.tensor([1.0, 2.0]), chainrule.ones(2))
        (tensor(9.), tensor([ 6., 12.]))
    """
    from .. import func as F  # noqa: PLC0415

    ins, single = _as_tuple(inputs)
    vs, _ = _as_tuple(v)
    return _pair(func(*ins), F.hvp(func, ins, vs), single, create_graph)


def vhp(func, inputs, v=None, create_graph: bool = False, strict: bool = False):
    """``(func(inputs), v^T H)``; equal to :func:`hvp` (the Hessian is symmetric).

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.functional import vhp
        >>> vhp(lambda x: (x ** 2).sum(), chainrule.tensor([1.0]), chainrule.ones(1))[1]
        tensor([2.])
    """
    return hvp(func, inputs, v, create_graph, strict)
