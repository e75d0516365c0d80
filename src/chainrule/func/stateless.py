"""``functional_call``: run a module with given tensors in place of its parameters and buffers.

This is what lets nn modules go through the transforms: ``grad``, ``vmap(grad(...))``
(per-example gradients) and ``hessian`` take the parameters as an explicit argument.

The module is used through PyTorch's interface: ``_parameters``, ``_buffers`` and
``_modules`` dicts on every (sub)module, dotted names for nested entries. During the call
those dict entries (and the instance ``__dict__`` mirrors that chainrule's Module keeps)
point at the given tensors; they are restored in a ``finally`` block.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> from chainrule.func import functional_call, grad
    >>> lin = nn.Linear(2, 1)
    >>> params = {"weight": chainrule.ones(1, 2), "bias": chainrule.zeros(1)}
    >>> functional_call(lin, params, (chainrule.tensor([[1.0, 2.0]]),))
    tensor([[3.]])
    >>> g = grad(lambda p: functional_call(lin, p, (chainrule.ones(1, 2),)).sum())(params)
    >>> g["weight"]
    tensor([[1., 1.]])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["functional_call"]

_MISSING = object()


def _entries(module) -> dict:
    """Every parameter/buffer location: dotted name -> (owning module, registry name, attr)."""
    out: dict = {}
    stack = [("", module)]
    while stack:
        prefix, m = stack.pop()
        for reg in ("_parameters", "_buffers"):
            d = getattr(m, "__dict__", {}).get(reg)
            if d is None:
                raise TypeError(f"functional_call: {type(m).__name__} has no {reg} registry; "
                                "expected a module with PyTorch's Module interface")
            for attr, obj in d.items():
                out[prefix + attr] = (m, reg, attr, obj)
        subs = m.__dict__.get("_modules") or {}
        for name, sub in reversed(list(subs.items())):
            if sub is not None:
                stack.append((prefix + name + ".", sub))
    return out


def functional_call(module, parameter_and_buffer_dicts, args: Any = None,
                    kwargs: dict | None = None, *, tie_weights: bool = True,
                    strict: bool = False):
    """Call ``module(*args, **kwargs)`` with its parameters and buffers replaced, by name,
    by the tensors in ``parameter_and_buffer_dicts`` (a dict, or a tuple of dicts whose keys
    do not overlap). The module is unchanged afterwards, whatever happens in the call.

    Args:
        module: the module (PyTorch's interface: ``_parameters``/``_buffers``/``_modules``).
        parameter_and_buffer_dicts: ``{"layer.weight": tensor, ...}``; names not given keep
            the module's own tensors (unless ``strict``).
        args: positional arguments (a tuple, or a single non-tuple argument).
        kwargs: keyword arguments.
        tie_weights: a tensor shared by several names (tied weights) is replaced everywhere
            when one of its names is given, as PyTorch does.
        strict: every parameter and buffer must be given.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> from chainrule.func import functional_call
        >>> m = nn.Linear(1, 1)
        >>> functional_call(m, {"weight": chainrule.full((1, 1), 2.0)}, chainrule.ones(1, 1)) \\
        ...     - m.bias
        tensor([[2.]], grad_fn=<SubBackward>)
    """
    if isinstance(parameter_and_buffer_dicts, Mapping):
        given = dict(parameter_and_buffer_dicts)
    elif isinstance(parameter_and_buffer_dicts, (tuple, list)):
        given = {}
        for d in parameter_and_buffer_dicts:
            if not isinstance(d, Mapping):
                raise TypeError("functional_call: expected a dict or a tuple of dicts, got a "
                                f"{type(d).__name__} inside the tuple")
            dup = set(given) & set(d)
            if dup:
                raise ValueError(f"functional_call: {sorted(dup)} appear in more than one of "
                                 "the dicts")
            given.update(d)
    else:
        raise TypeError("functional_call: parameter_and_buffer_dicts must be a dict or a tuple "
                        f"of dicts, got {type(parameter_and_buffer_dicts).__name__}")
    if args is None:
        args = ()
    elif not isinstance(args, tuple):
        args = (args,)
    kwargs = {} if kwargs is None else kwargs
    entries = _entries(module)
    unexpected = sorted(k for k in given if k not in entries)
    if unexpected:
        raise ValueError(f"functional_call: unexpected key(s) {unexpected}; the module's "
                         f"parameters and buffers are {sorted(entries)}")
    if strict:
        missing = sorted(k for k in entries if k not in given)
        if missing:
            raise ValueError(f"functional_call: missing key(s) {missing} (strict=True)")
    plan = dict(given)
    if tie_weights:
        by_obj: dict = {}
        for name, (_, _, _, obj) in entries.items():
            if obj is not None:
                by_obj.setdefault(id(obj), []).append(name)
        for name, value in given.items():
            obj = entries[name][3]
            if obj is None:
                continue
            for other in by_obj[id(obj)]:
                if other not in given:
                    plan[other] = value
    undo = []
    try:
        for name, value in plan.items():
            m, reg, attr, _ = entries[name]
            registry = m.__dict__[reg]
            undo.append((m, registry, attr, registry[attr], m.__dict__.get(attr, _MISSING)))
            registry[attr] = value
            if attr in m.__dict__:
                m.__dict__[attr] = value
        return module(*args, **kwargs)
    finally:
        for m, registry, attr, old, old_attr in reversed(undo):
            registry[attr] = old
            if old_attr is not _MISSING:
                m.__dict__[attr] = old_attr
