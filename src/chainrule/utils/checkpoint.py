"""Activation checkpointing: trade compute for memory by recomputing a region's activations
in the backward pass instead of keeping them.

``checkpoint(fn, *args)`` runs ``fn`` once, recording its graph as usual, and then drops
every activation that the region's graph nodes saved (the nodes stay, holding only shapes and
dtypes). The first time the backward pass reaches one of those nodes, ``fn`` is run again
on the same inputs (with the random generator state of the first run, so dropout masks
match) and the recomputed activations are put back into the original nodes, which then
backpropagate as if nothing had happened. So gradients reach everything ``fn`` uses (its
inputs and the parameters it closes over), ``autograd.grad`` and ``create_graph=True``
(grad-of-grad) work, and the result is exactly the plain one. This is PyTorch's
non-reentrant behaviour; ``use_reentrant`` is accepted for compatibility and both values
behave this way.

Inside ``jvp``/``vmap`` (forward levels open) ``fn`` just runs normally.

Measured saving (tracemalloc peak of forward + backward, tanh MLPs in float64 at batch 1024,
``checkpoint_sequential``; ``tests/func/test_func_checkpoint.py::test_memory_saving`` checks the
first row):

==============  ========  =======  ==========  =====
layers x width  segments  plain    checkpoint  saved
==============  ========  =======  ==========  =====
16 x 128        4         19.1 MB  9.0 MB      2.1x
16 x 256        4         38.5 MB  18.0 MB     2.1x
32 x 128        6         35.2 MB  13.1 MB     2.7x
==============  ========  =======  ==========  =====

The price is one extra forward pass per checkpointed segment.

Example:
    >>> import chainrule
    >>> from chainrule.utils import checkpoint
    >>> w = chainrule.randn(3, 3, requires_grad=True)
    >>> x = chainrule.randn(2, 3)
    >>> y = checkpoint(lambda x: (x @ w).tanh() @ w, x, use_reentrant=False)
    >>> y.sum().backward()
    >>> w.grad.shape
    (3, 3)
"""

from __future__ import annotations

from collections.abc import Callable

from ..autograd import forward as fwd
from ..autograd.grad_mode import STATE
from ..autograd.graph import FORWARD, Aval
from ..errors import GraphError
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential"]


def _rng():
    from .. import random as _random  # noqa: PLC0415

    return _random.default_generator


class _Region:
    """One checkpointed call: its nodes, and how to recompute their saved activations."""

    __slots__ = ("args", "done", "dropped", "fn", "kwargs", "nodes", "rng_state")

    def recompute(self, _grad=None):
        if self.done:
            return None
        gen = _rng()
        now = gen.get_state() if self.rng_state is not None else None
        if self.rng_state is not None:
            gen.set_state(self.rng_state)
        level = fwd.push(fwd.TapeLevel())
        prev = STATE.enabled
        STATE.enabled = True
        try:
            self.fn(*self.args, **self.kwargs)
        finally:
            STATE.enabled = prev
            fwd.pop(level)
            if now is not None:
                gen.set_state(now)
        new = level.nodes
        if len(new) != len(self.nodes) or any(a.prim is not b.prim
                                               for a, b in zip(self.nodes, new)):
            raise GraphError(
                "checkpoint: recomputing the checkpointed function recorded a different "
                f"sequence of operations ({len(new)} ops against {len(self.nodes)} in the "
                "first run); the function must be deterministic in its control flow")
        for i in self.dropped:
            old, fresh = self.nodes[i], new[i]
            old.saved_in = fresh.saved_in
            old.saved_out = fresh.saved_out
        self.done = True
        self.args = self.kwargs = None
        return None


def checkpoint(function: Callable, *args, use_reentrant: bool = False,
               preserve_rng_state: bool = True, **kwargs):
    """Run ``function(*args, **kwargs)`` without keeping its activations for the backward
    pass; they are recomputed when the gradient gets there (see the module docstring).

    Args:
        function: the region to checkpoint (deterministic control flow).
        use_reentrant: accepted for PyTorch compatibility; both values use the same
            (non-reentrant) implementation.
        preserve_rng_state: replay the default generator's state in the recomputation, so
            random ops (dropout) draw the same numbers.

    Example:
        >>> import chainrule
        >>> from chainrule.utils import checkpoint
        >>> x = chainrule.tensor([1.0, 2.0], requires_grad=True)
        >>> checkpoint(lambda x: x.exp().sum(), x).backward()
        >>> x.grad
        tensor([2.7183, 7.3891])
    """
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not isinstance(use_reentrant, bool):
        raise TypeError("checkpoint: use_reentrant must be True or False")
    visible = fwd.STACK[:FORWARD.levels]
    if not STATE.enabled or any(lv.kind in (fwd.JVP, fwd.BATCH) for lv in visible):
        return function(*args, **kwargs)
    region = _Region()
    region.rng_state = _rng().get_state() if preserve_rng_state else None
    level = fwd.push(fwd.TapeLevel())
    try:
        out = function(*args, **kwargs)
    finally:
        fwd.pop(level)
    nodes = level.nodes
    dropped = []
    for i, node in enumerate(nodes):
        if node.prim.save_in or node.prim.save_out:
            node.saved_in = [Aval(a.shape, a.dtype) if hasattr(a, "shape") and
                             not isinstance(a, Aval) else a for a in node.saved_in]
            node.saved_out = None
            dropped.append(i)
    if not dropped:
        return out
    region.fn, region.args, region.kwargs = function, args, kwargs
    region.nodes, region.dropped, region.done = nodes, dropped, False
    for i in dropped:
        nodes[i].register_prehook(region.recompute)
    _hook_outputs(out, region)
    return out


def _hook_outputs(out, region):
    """Region outputs whose node saved nothing still trigger the recomputation first."""
    stack = [out]
    while stack:
        o = stack.pop()
        if isinstance(o, Tensor):
            if o._node is not None and o._node in region.nodes:
                hooks = o._node.pre_hooks
                if hooks is None or region.recompute not in hooks:
                    o._node.register_prehook(region.recompute)
        elif isinstance(o, (tuple, list)):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())


def checkpoint_sequential(functions, segments: int, input, use_reentrant: bool = False,
                          **kwargs):
    """Run a sequence of functions (or an ``nn.Sequential``) in ``segments`` checkpointed
    chunks; the last chunk runs normally, as in PyTorch.

    Example:
        >>> import chainrule
        >>> from chainrule.utils.checkpoint import checkpoint_sequential
        >>> fs = [lambda x: x.tanh(), lambda x: x * 2, lambda x: x.exp()]
        >>> x = chainrule.ones(2, requires_grad=True)
        >>> checkpoint_sequential(fs, 2, x).sum().backward()
        >>> x.grad.shape
        (2,)
    """
    fns = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be >= 1, got {segments}")
    size = max(1, -(-len(fns) // segments))

    def run(chunk):
        def f(x):
            for fn in chunk:
                x = fn(x)
            return x
        return f

    x = input
    chunks = [fns[i:i + size] for i in range(0, len(fns), size)]
    for chunk in chunks[:-1]:
        x = checkpoint(run(chunk), x, use_reentrant=use_reentrant, **kwargs)
    return run(chunks[-1])(x) if chunks else x
