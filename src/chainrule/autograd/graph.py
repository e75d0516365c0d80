"""Graph nodes and ``apply``: the one function every primitive call goes through.

``apply(prim, inputs, params)`` runs the primitive's forward on raw arrays and, only when grad
mode is on and some input requires grad, records a :class:`Node` holding what the primitive's
rules need (its ``save`` spec), the edges to the inputs' nodes (or leaf tensors) and the
version counters of what it saved. Nothing else is done for tensors that need no grad.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..backend import device_of, get_array_module
from ..backend.fperrors import quiet_begin, quiet_end
from ..errors import DeviceError, OutOfMemoryError, ShapeError
from ..primitives import core as _primitives_core
from ..primitives.core import TRACE_HOOK as _TRACE_HOOK
from ..primitives.core import Aval, output_of
from .anomaly import ANOMALY, check_forward
from .grad_mode import STATE

_ndarray = np.ndarray
# chainrule.tensor, which sits above this module, hands these in when it is imported:
Tensor = None  # the Tensor class
_wrap = None  # _wrap(array, node=None): a Tensor around an array, no checks
make_tensor = None  # chainrule.tensor(data, dtype=, device=): a Tensor from user data


class Node:
    """A recorded primitive call (PyTorch's ``grad_fn``).

    Attributes:
        prim: the Primitive; params: its keyword parameters.
        edges: per input, the input's Node, the leaf Tensor that requires grad, or None.
        saved_in: the input arrays (or Avals when the primitive saves no inputs).
        saved_out: the output array when the rules read it, else None (the tuple of
            outputs for a ``multiple_results`` primitive).
        versions: ``(counter, version_at_save, input_index or -1 - output_index)`` for each
            saved tensor.
        outs: for a ``multiple_results`` primitive, per output a weak reference to the
            small node that the output tensor points to (:func:`output_node`).
    """

    __slots__ = (
        "__weakref__",
        "edges",
        "freed",
        "outs",
        "params",
        "pre_hooks",
        "prim",
        "retains",
        "saved_in",
        "saved_out",
        "trace",
        "versions",
    )

    def name(self) -> str:
        """The node's name, e.g. ``MulBackward``."""
        return self.prim.node_name

    def __repr__(self):
        return f"<{self.prim.node_name}>"

    @property
    def next_functions(self):
        """The nodes (or leaf tensors) this node passes gradients to, as in PyTorch."""
        return tuple((e, 0) for e in self.edges)

    def register_prehook(self, fn):
        """Run ``fn(grad) -> grad or None`` on the gradient of this node's output."""
        if self.pre_hooks is None:
            self.pre_hooks = []
        self.pre_hooks.append(fn)


class _Forward:
    """Transform-level state (chainrule.autograd.forward): ``levels`` is the number of
    visible jvp/vmap levels; while it is non-zero, ``apply`` hands every result to
    ``propagate(prim, inputs, params, out)``, which attaches tangents / batched values, and
    asks ``check_inplace(prim)`` before a primitive that writes its inputs in place runs."""

    __slots__ = ("check_inplace", "levels", "propagate")

    def __init__(self):
        self.levels = 0
        self.propagate = None
        self.check_inplace = None


FORWARD = _Forward()


def _device_error(prim, inputs):
    descs = ", ".join(
        f"{tuple(x._data.shape)} on {device_of(x._data)}" for x in inputs if isinstance(x, Tensor))
    return DeviceError(f"{prim.name}: inputs are on different devices ({descs}); "
                       "move them to one device with .to(device)")


def op_error(prim, inputs, params, err):
    """Wrap an array-library exception so that it names the op, shapes, dtypes and devices."""
    descs = []
    for x in inputs:
        if isinstance(x, Tensor):
            descs.append(f"Tensor(shape={tuple(x._data.shape)}, dtype={x.dtype.name}, "
                         f"device={device_of(x._data)})")
        else:
            descs.append(repr(x))
    msg = f"{prim.name}: {err} (inputs: {', '.join(descs)}"
    if params:
        shown = {k: v for k, v in params.items() if k != "index"}
        if shown:
            msg += f"; params: {shown}"
    msg += ")"
    if isinstance(err, (ValueError, IndexError)):
        cls = ShapeError if isinstance(err, ValueError) else IndexError
        return cls(msg)
    if isinstance(err, TypeError):
        return TypeError(msg)
    if isinstance(err, MemoryError):  # NumPy's _ArrayMemoryError, CuPy's OutOfMemoryError
        return OutOfMemoryError(msg)
    return RuntimeError(msg)


def apply(prim, inputs, params):
    """Run ``prim`` on ``inputs`` (Tensors or Python scalars) and record it when needed."""
    arrs = []
    req = False
    xp = np
    for x in inputs:
        if isinstance(x, Tensor):
            a = x._data
            if x._rg:
                req = True
            if type(a) is not _ndarray:
                mod = get_array_module(a)
                if xp is not mod and xp is not np:
                    raise _device_error(prim, inputs)
                xp = mod
            arrs.append(a)
        else:
            arrs.append(x)
    if xp is not np:
        _check_same_device(prim, inputs, arrs)
    levels = FORWARD.levels
    if levels and prim.inplace:  # before the impl writes anything
        FORWARD.check_inplace(prim)
    hook = _TRACE_HOOK[0]
    quiet = quiet_begin()  # IEEE values without NumPy RuntimeWarnings, as PyTorch
    try:
        if hook is None:
            out = prim.impl(xp, *arrs, **params)
        else:  # chainrule.jit is recording: the hook runs and records the primitive
            out = hook(prim, arrs, params, True)
    except (ValueError, IndexError, TypeError, RuntimeError, MemoryError) as e:
        raise op_error(prim, inputs, params, e) from None if isinstance(e, MemoryError) else e
    finally:
        quiet_end(quiet)
    if type(out) is not _ndarray:
        if prim.multi:
            return _apply_multi(prim, inputs, arrs, params, out, req, xp, levels, hook)
        if hook is None:
            out = xp.asarray(out)
    t = _wrap(out)
    if prim.view and xp.may_share_memory(out, arrs[0]):
        # a real view: it shares its base's version counter and remembers the version it
        # was made at, so using it after the base changed in place can be detected
        x0 = inputs[0]
        vc = x0._vc
        if vc is None:
            vc = x0._vc = [0]
        t._vc = vc
        t._view = (vc[0], x0, prim, params)
    if req and STATE.enabled and prim.differentiable:
        _record(prim, inputs, arrs, params, t, out)
    if levels:  # jvp / vmap levels (non-differentiable ops are batched too)
        FORWARD.propagate(prim, inputs, params, t)
    if ANOMALY.enabled and ANOMALY.check_nan:
        check_forward(prim, t, arrs)
    return t


_primitives_core._APPLY[0] = apply


def _apply_multi(prim, inputs, arrs, params, out, req, xp, levels, hook):
    """The rest of :func:`apply` for a ``multiple_results`` primitive: a tuple of tensors,
    one graph node for the call and one small output node per floating-point output."""
    if hook is None:
        out = tuple(o if type(o) is _ndarray else xp.asarray(o) for o in out)
    else:
        out = tuple(out)
    ts = tuple(_wrap(o) for o in out)
    if req and STATE.enabled and prim.differentiable:
        _record(prim, inputs, arrs, params, ts, out)
    if levels:
        FORWARD.propagate(prim, inputs, params, ts)
    if ANOMALY.enabled and ANOMALY.check_nan:
        for t in ts:
            check_forward(prim, t, arrs)
    return ts


_NO_PARAMS: dict = {}


def output_node(core, k: int):
    """The node that output ``k`` of the multi-output node ``core`` is reached through (made
    again, with the same record, when the one the output tensor held is gone): its only edge
    is ``core``; the engine collects the cotangents arriving at these nodes for ``core``."""
    ref = core.outs[k]
    n = None if ref is None else ref()
    if n is None:
        n = Node()
        n.prim = output_of(core.prim, k)
        n.params = _NO_PARAMS
        n.edges = [core]
        n.saved_in = ()
        n.saved_out = None
        n.versions = ()
        n.freed = False
        n.pre_hooks = None
        n.retains = None
        n.trace = None
        core.outs[k] = weakref.ref(n)
    return n


def _check_same_device(prim, inputs, arrs):
    dev = None
    for a in arrs:
        if hasattr(a, "device") and not isinstance(a, _ndarray):
            d = a.device.id
            if dev is None:
                dev = d
            elif d != dev:
                raise _device_error(prim, inputs)
        elif type(a) is _ndarray:
            raise _device_error(prim, inputs)


def _regenerate_view(x):
    """A view whose base changed in place after it was taken sees the new values (shared
    memory) but its node still points at the base's old graph: record the view op again on
    the base as it is now (what PyTorch does when it regenerates a view's grad_fn)."""
    _, base, prim, params = x._view
    with_grad = STATE.enabled
    STATE.enabled = True
    try:
        fresh = apply(prim, (base,), params)
    finally:
        STATE.enabled = with_grad
    x._node = fresh._node
    x._rg = fresh._rg
    x._view = (x._vc[0], base, prim, params)


def _record(prim, inputs, arrs, params, t, out):
    node = Node()
    node.prim = prim
    node.params = params
    node.freed = False
    node.pre_hooks = None
    node.retains = None
    edges = []
    versions = []
    for x in inputs:
        if isinstance(x, Tensor) and x._rg:
            if x._view is not None and x._view[0] != x._vc[0]:
                _regenerate_view(x)
            edges.append(x if x._node is None else x._node)
        else:
            edges.append(None)
    node.edges = edges
    if prim.save_in:
        reads = prim.reads
        if reads is None:
            saved = arrs
        else:  # only what the rules of the inputs that need a gradient read
            need = set()
            for i, e in enumerate(edges):
                if e is not None:
                    need.update(reads[i])
            saved = [a if (i in need or not hasattr(a, "shape")) else Aval(a.shape, a.dtype)
                     for i, a in enumerate(arrs)]
        node.saved_in = saved
        for i, x in enumerate(inputs):
            if isinstance(x, Tensor) and not isinstance(saved[i], Aval):
                vc = x._vc
                if vc is None:
                    vc = x._vc = [0]
                versions.append((vc, vc[0], i))
    else:
        saved = [Aval(a.shape, a.dtype) if hasattr(a, "shape") else a for a in arrs]
        k = prim.index_from
        if k is not None and len(arrs) > k:  # index arrays, which the rules read
            saved[k:] = arrs[k:]
            for i in range(k, len(inputs)):
                x = inputs[i]
                if isinstance(x, Tensor):
                    vc = x._vc
                    if vc is None:
                        vc = x._vc = [0]
                    versions.append((vc, vc[0], i))
        node.saved_in = saved
    multi = prim.multi
    if prim.save_out:
        node.saved_out = out
        for k, tk in enumerate(t if multi else (t,)):
            vc = tk._vc
            if vc is None:
                vc = tk._vc = [0]
            versions.append((vc, vc[0], -1 - k))
    else:
        node.saved_out = None
    node.versions = versions
    if ANOMALY.enabled:
        import traceback  # noqa: PLC0415

        node.trace = traceback.extract_stack()[:-3]
    else:
        node.trace = None
    if multi:  # each floating-point output reaches the node through its own output node
        node.outs = [None] * len(t)
        for k, tk in enumerate(t):
            if tk._data.dtype.kind in "fV":
                tk._node = output_node(node, k)
                tk._rg = True
        return
    t._node = node
    t._rg = True
