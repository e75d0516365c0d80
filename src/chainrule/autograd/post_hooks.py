"""Post-accumulate-grad hooks: ``hook(tensor)`` runs right after a leaf's ``.grad`` is written.

PyTorch's ``Tensor.register_post_accumulate_grad_hook``. The registry lives here, keyed by the
leaf's id (no slot on every Tensor), so the engine pays nothing while it is empty. A hooked leaf
is delivered as soon as its last gradient contribution has arrived, during backward rather than
after it: this is what lets ``DistributedDataParallel`` start each bucket's allreduce while the
rest of backward still runs.

Example:
    >>> import chainrule
    >>> w = chainrule.ones(2, requires_grad=True)
    >>> seen = []
    >>> h = w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.tolist()))
    >>> (w * 3).sum().backward(); seen
    [[3.0, 3.0]]
"""

from __future__ import annotations

import weakref

from ..errors import GraphError
from .graph import Node

# id(leaf) -> list of hooks; an entry is dropped when its leaf is garbage collected
HOOKS: dict[int, list] = {}
# set by chainrule.jit while it records: a hook runs on the host and cannot be replayed,
# unless it records what it does itself (a hook with ``jit_traceable = True``: DDP's, through
# chainrule.jit.effects)
ON_RUN: list = [None]


# Gradient destinations (DistributedDataParallel's shared-memory buckets): id(leaf) -> a
# function ``dest(leaf)`` that returns ``(array, scale)``: an array of the leaf's shape and
# dtype for backward to write the leaf's gradient times ``scale`` (a power of two) into, or
# None; and, per primitive name, ``{input index: rule(g, *inputs, out, dest, scale,
# **params)}``, rules that compute that input's cotangent times ``scale`` into ``dest``
# (returning it) with the bits of the primitive's own vjp rule's result times ``scale``, or
# return None to decline. A first-order backward (no create_graph) that accumulates into
# .grad uses them for a leaf's first contribution when its .grad is None; the leaf's .grad
# is then ``dest`` itself (no copy; the caller knows it holds the gradient times scale).
DESTS: dict[int, object] = {}
INTO: dict[str, dict] = {}


def _drop(key: int) -> None:
    HOOKS.pop(key, None)


def _drop_dest(key: int) -> None:
    DESTS.pop(key, None)


def register_destination(leaf, dest) -> None:
    """Let backward write ``leaf``'s gradient, scaled, into the array of ``dest(leaf)`` (see
    ``DESTS``); one function per leaf (a later one replaces it), dropped with the leaf.
    Internal: for DistributedDataParallel."""
    key = id(leaf)
    if key not in DESTS:
        weakref.finalize(leaf, _drop_dest, key)
    DESTS[key] = dest


def into_dest(prim, i: int, leaf, g, ins, out, params):
    """Input ``i``'s cotangent of ``prim`` written into the leaf's destination, or None (no
    destination, no rule for this primitive and input, a .grad to accumulate into, or the
    rule declined)."""
    rules = INTO.get(prim.name)
    rule = rules.get(i) if rules is not None else None
    fn = DESTS.get(id(leaf))
    if rule is None or fn is None or leaf._grad is not None:
        return None
    got = fn(leaf)
    if got is None:
        return None
    return rule(g, *ins, out, *got, **params)


def register(leaf, hook) -> PostHookHandle:
    """Register ``hook(leaf)`` to run after each accumulation into ``leaf.grad``."""
    if leaf._node is not None:
        raise GraphError("register_post_accumulate_grad_hook: only leaf tensors accumulate "
                         ".grad; this tensor was produced by an op")
    if not leaf._rg:
        raise GraphError("register_post_accumulate_grad_hook: the tensor does not require "
                         "grad; call requires_grad_() on it first")
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                        f"{type(hook).__name__}")
    key = id(leaf)
    hooks = HOOKS.get(key)
    if hooks is None:
        hooks = HOOKS[key] = []
        weakref.finalize(leaf, _drop, key)
    hooks.append(hook)
    return PostHookHandle(key, hook)


def run(leaf) -> None:
    """Called by the engine after ``leaf.grad`` was accumulated."""
    hooks = HOOKS.get(id(leaf), ())
    if hooks and ON_RUN[0] is not None and not all(getattr(h, "jit_traceable", False)
                                                   for h in hooks):
        ON_RUN[0](leaf)
    for h in tuple(hooks):
        h(leaf)


def leaf_counts(deps) -> dict[int, int]:
    """For every hooked leaf, how many edges of the nodes in ``deps`` point at it."""
    counts: dict[int, int] = {}
    for node in deps:
        for e in node.edges:
            if e is not None and type(e) is not Node:
                k = id(e)
                if k in HOOKS:
                    counts[k] = counts.get(k, 0) + 1
    return counts


class PostHookHandle:
    """Returned by ``register_post_accumulate_grad_hook``; ``remove()`` detaches the hook."""

    def __init__(self, key: int, hook):
        self._key, self._hook = key, hook

    def remove(self) -> None:
        hooks = HOOKS.get(self._key)
        if hooks is not None and self._hook in hooks:
            hooks.remove(self._hook)
            if not hooks:
                del HOOKS[self._key]
