"""Forward mode and transform levels: jvp tangents and vmap batches ride on tensors.

A *level* is one active transform: a forward-mode (jvp) level or a batching (vmap) level
(the latter is defined in :mod:`chainrule.func.batching`). Levels form a stack; nesting
``jacfwd(jacfwd(f))``, ``vmap(jvp(...))`` or ``jvp(grad(f))`` pushes one level per transform.
A tensor carries, in its ``_fw`` slot, a dict ``{level id: payload}``: the tangent (a Tensor)
for a jvp level, ``(batched value, batch dim)`` for a vmap level.

``graph.apply`` runs every primitive on the plain values first; while ``FORWARD.levels`` is
non-zero it then calls :func:`propagate`, which gives the output its payloads:

* jvp level: ``sum_i prim.jvp[i](TENSOR, tangent_i, *inputs, out, **params)`` over the inputs
  that carry a tangent (true forward mode: the primitive's jvp rule, one pass). The rules run
  as recorded tensor ops, so tangents are differentiable by reverse mode (reverse-over-forward)
  and by outer forward levels;
* vmap level: the primitive's batching rule on the batched values.

Levels are processed from the lowest up, each with only the levels below it visible
(``FORWARD.levels`` is lowered while its rule runs), so a rule at level L sees the inputs'
values *at lower levels* and never mixes up the perturbations of two levels. Inside a vmap
level, an op is handled by the highest batching level among its inputs (its batched values
carry everything below it) and by the forward levels above that one.

Tensors that the reverse engine rebuilds from saved arrays (``create_graph=True`` rules) do
not carry ``_fw``; their payloads are recovered from the node that produced them (or, for
inputs that need no grad, from the saved array), so ``jvp(grad(f))`` (forward-over-reverse,
Hessian-vector products) and ``vmap(grad(f))`` (per-example gradients) work through the
unchanged engine. The backward must then run as recorded ops: the transforms ask the engine
for ``create_graph=True`` whenever a level is open (a plain ``backward()`` inside jvp/vmap runs
its rules on raw arrays, which carry no tangents or batches). A detached copy of a batched
tensor keeps its batch (it shares the array), but not its tangents. The recovery tables keep
their arrays alive until the outermost level closes.

With no level open, ``apply`` pays one attribute check; nothing here runs.

The public names follow PyTorch's ``torch.autograd.forward_ad``:

Example:
    >>> import chainrule
    >>> from chainrule.autograd import forward as fwad
    >>> x = chainrule.tensor([1.0, 2.0])
    >>> with fwad.dual_level():
    ...     y = fwad.make_dual(x, chainrule.tensor([1.0, 0.0])) ** 3
    ...     primal, tangent = fwad.unpack_dual(y)
    >>> tangent
    tensor([3., 0.])
"""

from __future__ import annotations

import itertools
import weakref
from typing import NamedTuple

from ..primitives import TENSOR
from ..primitives import movement as _mv
from . import graph as _graph
from .grad_mode import STATE
from .graph import FORWARD

__all__ = ["UnpackedDualTensor", "dual_level", "enter_dual_level", "exit_dual_level",
           "make_dual", "unpack_dual"]

JVP = 0
BATCH = 1
TAPE = 2  # records the graph nodes made inside a region (chainrule.utils.checkpoint)

STACK: list = []  # the open levels, outermost first; STACK[:FORWARD.levels] are visible
_ids = itertools.count(1)
_BATCH_IDS: set = set()  # ids of open batching levels
_SUSPEND = [0]  # > 0: jvp levels are skipped (a custom Function's forward runs)
_TAPES: list = []  # node lists of the open tape levels
REVERSE_DEPTHS: list = []  # len(STACK) when each running reverse transform (func.grad...) began

# payload recovery for tensors rebuilt from saved arrays by the reverse engine
_NODE_FW: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # node -> its output's _fw
_ARRAY_SAVED: dict = {}  # id(array) -> (array, _fw): saved inputs that need no grad
_ARRAY_BATCH: dict = {}  # id(array) -> (array, _fw): every batched array (detach keeps batches)
_INDEX_BATCH: dict = {}  # (address, shape, strides, dtype) -> (array, _fw): batched int arrays,
# found again when the ops layer wraps an equal view of one (``idx.reshape(-1)``) as an index


class Level:
    """Base of a transform level. ``kind`` is JVP, BATCH or TAPE; ``id`` is unique for the
    process lifetime, so a payload left on a tensor after its level closed is never read."""

    kind = JVP
    __slots__ = ("_prev_visible", "_tail", "id")

    def process(self, prim, inputs, params, out, fws):
        raise TypeError(f"{type(self).__name__} does not process primitives")

    def check_inplace(self, prim) -> None:
        """Raise if ``prim``, which writes its inputs in place, cannot run at this level."""


class TapeLevel(Level):
    """Collects the graph nodes recorded while it is open (activation checkpointing)."""

    kind = TAPE
    __slots__ = ("nodes",)

    def __init__(self):
        self.nodes = []


class JvpLevel(Level):
    """A forward-mode level: tangents propagate through each primitive's jvp rules."""

    kind = JVP
    __slots__ = ()

    def process(self, prim, inputs, params, out, fws):
        if prim.multi or prim.jvp_all is not None:
            self._process_joint(prim, inputs, params, out, fws)
            return
        if not prim.differentiable or out._data.dtype.kind not in "fV":
            return
        lid = self.id
        rules = prim.jvp
        variadic = prim.variadic
        acc = None
        for i, fw in enumerate(fws):
            if fw is None:
                continue
            tan = fw.get(lid)
            if tan is None:
                continue
            if variadic:
                r = rules[0](TENSOR, tan, *inputs, out, argnum=i, **params)
            else:
                rule = rules[i] if i < len(rules) else None
                if rule is None:
                    continue
                r = rule(TENSOR, tan, *inputs, out, **params)
            if r is None:
                continue
            acc = r if acc is None else acc + r
        if acc is not None:
            _set_tangent(out, lid, acc)

    def _process_joint(self, prim, inputs, params, out, fws):
        """One jvp rule for all inputs (``tangents[i]`` None where input i has none); with
        ``multiple_results`` it returns one tangent per output (None for zero)."""
        if not prim.differentiable:
            return
        lid = self.id
        tans = [None if fw is None else fw.get(lid) for fw in fws]
        if all(t is None for t in tans):
            return
        res = prim.jvp_all(TENSOR, tans, *inputs, out, **params)
        for o, r in zip(out, res) if prim.multi else ((out, res),):
            if r is not None and o._data.dtype.kind in "fV":
                _set_tangent(o, lid, r)


def _set_tangent(out, lid: int, t) -> None:
    """Attach tangent ``t`` (broadcast and cast to ``out``'s shape and dtype) to ``out``."""
    if t._data.shape != out._data.shape:
        t = TENSOR.broadcast_to(t, shape=out._data.shape)
    if t._data.dtype != out._data.dtype:
        t = TENSOR.cast(t, dtype=out.dtype)
    set_payload(out, lid, t)


def set_payload(t, lid: int, payload) -> None:
    """Attach ``payload`` for level ``lid`` to tensor ``t``."""
    fw = t._fw
    if fw is None:
        fw = t._fw = {lid: payload}
    else:
        fw[lid] = payload
    if lid in _BATCH_IDS:
        _file_batched(t._data, fw)
    if t._node is not None:
        # recorded for reverse mode: the engine rebuilds it from the node's saved arrays
        _NODE_FW[t._node] = fw


def _file_batched(a, fw) -> None:
    """Remember that array ``a`` (a tensor's ``_data``) holds a batched value's payloads."""
    _ARRAY_BATCH[id(a)] = (a, fw)
    if a.dtype.kind in "iu":
        _INDEX_BATCH[_view_key(a)] = (a, fw)


def _view_key(a) -> tuple:
    """What identifies a view of memory: address, shape, strides and dtype."""
    iface = getattr(a, "__array_interface__", None)
    ptr = iface["data"][0] if iface is not None else a.data.ptr
    return (ptr, a.shape, a.strides, a.dtype.str)


def batched_index(a):
    """The registry entry ``(array, _fw)`` of a batched array: the array itself, or (for an
    integer index array) an equal view of one, or None."""
    ent = _ARRAY_BATCH.get(id(a))
    if ent is not None and ent[0] is a:
        return ent
    if _INDEX_BATCH and getattr(a, "dtype", None) is not None and a.dtype.kind in "iu":
        return _INDEX_BATCH.get(_view_key(a))
    return None


def fw_of(x):
    """The payload dict of tensor ``x`` (recovered for engine-rebuilt tensors), or None."""
    fw = x._fw
    if fw is None:
        fw = _recover(x)
    return fw


def payload(x, lid: int):
    """``x``'s payload at level ``lid`` (None when it has none)."""
    fw = x._fw
    if fw is None:
        fw = _recover(x)
        if fw is None:
            return None
    return fw.get(lid)


def _recover(x):
    node = x._node
    fw = None
    if node is not None:
        if _NODE_FW:
            fw = _NODE_FW.get(node)
    else:
        a = x._data
        ent = _ARRAY_SAVED.get(id(a)) if _ARRAY_SAVED else None
        if ent is not None and ent[0] is a:
            fw = ent[1]
        elif _ARRAY_BATCH:
            ent = batched_index(a)
            if ent is not None:
                # a detached copy: it keeps its batches (vmap) but not its tangents (jvp)
                fw = {k: v for k, v in ent[1].items() if k in _BATCH_IDS} or None
    if fw is not None:
        x._fw = fw
    return fw


def check_inplace(prim) -> None:
    """The ``FORWARD.check_inplace`` hook: each visible level may refuse an in-place update."""
    for lvl in STACK[:FORWARD.levels]:
        lvl.check_inplace(prim)


def propagate(prim, inputs, params, out) -> None:
    """The ``FORWARD.propagate`` hook: give ``out`` its payloads at the visible levels
    (``out`` is a tuple of tensors for a ``multiple_results`` primitive)."""
    node = _node_of(prim, out)
    if _TAPES and node is not None:
        _TAPES[-1].append(node)
    tensor_cls = _graph.Tensor
    n = FORWARD.levels
    fws = []
    found = False
    for x in inputs:
        if isinstance(x, tensor_cls):
            fw = x._fw
            if fw is None:
                fw = _recover(x)
            if fw:
                found = True
            fws.append(fw)
        else:
            fws.append(None)
    if not found:
        return
    stack = STACK
    todo = []
    top_batch = -1
    suspend = _SUSPEND[0]
    for k in range(n):
        lvl = stack[k]
        lid = lvl.id
        if (lvl.kind == JVP and suspend) or lvl.kind == TAPE:
            continue
        if any(fw is not None and lid in fw for fw in fws):
            todo.append(k)
            if lvl.kind == BATCH:
                top_batch = k
    if top_batch > 0:
        todo = [k for k in todo if k >= top_batch]
    try:
        for k in todo:
            FORWARD.levels = k
            stack[k].process(prim, inputs, params, out, fws)
    finally:
        FORWARD.levels = n
    if node is not None and todo and prim.save_in:
        # inputs that need no grad come back from the engine as plain arrays: remember them
        for x, fw in zip(inputs, fws):
            if fw and isinstance(x, tensor_cls) and not x._rg:
                _ARRAY_SAVED[id(x._data)] = (x._data, fw)


def _node_of(prim, out):
    """The graph node a primitive call recorded (for several outputs: the primitive's node,
    behind the outputs' own nodes), or None."""
    if not prim.multi:
        return out._node
    for o in out:
        if o._node is not None:
            return o._node.edges[0]
    return None


def push(level: Level) -> Level:
    """Open ``level`` above the visible ones."""
    level.id = next(_ids)
    level._prev_visible = FORWARD.levels
    level._tail = STACK[FORWARD.levels:]
    del STACK[FORWARD.levels:]
    STACK.append(level)
    if level.kind == BATCH:
        _BATCH_IDS.add(level.id)
    elif level.kind == TAPE:
        _TAPES.append(level.nodes)
    FORWARD.levels = len(STACK)
    FORWARD.propagate = propagate
    FORWARD.check_inplace = check_inplace
    return level


def pop(level: Level) -> None:
    """Close ``level`` (the innermost open one)."""
    if not STACK or STACK[-1] is not level:
        raise RuntimeError("transform levels closed out of order")
    STACK.pop()
    STACK.extend(level._tail)
    level._tail = None
    _BATCH_IDS.discard(level.id)
    if level.kind == TAPE:
        for i in range(len(_TAPES) - 1, -1, -1):
            if _TAPES[i] is level.nodes:
                del _TAPES[i]
                break
    FORWARD.levels = level._prev_visible
    if not STACK:
        _NODE_FW.clear()
        _ARRAY_SAVED.clear()
        _ARRAY_BATCH.clear()
        _INDEX_BATCH.clear()


class suspend_jvp:  # noqa: N801 - a context manager, named like one
    """Skip every jvp level inside (custom Functions compute their own tangents)."""

    def __enter__(self):
        _SUSPEND[0] += 1

    def __exit__(self, *exc):
        _SUSPEND[0] -= 1


# ---------------------------------------------------------------- tensors at a level
def alias(x, drop: int | None = None):
    """A new tensor with ``x``'s value, graph connection and payloads (minus level ``drop``),
    whose payload dict can be changed without touching ``x``.

    Graph-connected when ``x`` requires grad and grad mode is on (a recorded ``reshape`` to
    the same shape, so reverse mode flows back to ``x``); otherwise a fresh leaf sharing
    ``x``'s memory and version counter.
    """
    fw = fw_of(x)
    if x._rg and STATE.enabled:
        n = FORWARD.levels
        FORWARD.levels = 0  # payloads are copied below, not recomputed
        try:
            a = _mv.reshape(x, shape=x._data.shape)
        finally:
            FORWARD.levels = n
    else:
        a = _graph._wrap(x._data.view())
        vc = x._vc
        if vc is None:
            vc = x._vc = [0]
        a._vc = vc
    if fw:
        new = {k: v for k, v in fw.items() if k != drop}
        if new:
            a._fw = new
            if any(k in _BATCH_IDS for k in new):
                _file_batched(a._data, new)
            if a._node is not None:
                _NODE_FW[a._node] = new
    return a


def strip(x, lid: int):
    """Remove level ``lid``'s payload from ``x`` in place (its level has closed)."""
    fw = x._fw
    if fw is not None and lid in fw:
        new = {k: v for k, v in fw.items() if k != lid}
        x._fw = new or None


def is_batched(t) -> bool:
    """True when tensor ``t`` carries a batch at an open vmap level (its ``_data`` holds only
    the first example). For checks that refuse value-dependent Python code under vmap.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd.forward import is_batched
        >>> from chainrule.func import vmap
        >>> seen = []
        >>> _ = vmap(lambda r: seen.append(is_batched(r)) or r)(chainrule.ones(2, 2))
        >>> seen, is_batched(chainrule.ones(2))
        ([True], False)
    """
    if not _BATCH_IDS:
        return False
    fw = fw_of(t)
    return bool(fw) and any(k in _BATCH_IDS for k in fw)


def rebind(target, source) -> None:
    """After an in-place op made ``target`` hold ``source``'s value, give ``target``
    ``source``'s tangents and batches (``Tensor._inplace`` calls this while levels are open).

    Example:
        >>> import chainrule
        >>> from chainrule.autograd import forward as fwad
        >>> with fwad.dual_level():
        ...     d = fwad.make_dual(chainrule.ones(2), chainrule.ones(2))
        ...     y = d * 1
        ...     r = y + d
        ...     y._data[...] = r._data
        ...     fwad.rebind(y, r)
        ...     fwad.unpack_dual(y).tangent
        tensor([2., 2.])
    """
    fw = fw_of(source)
    target._fw = dict(fw) if fw else None
    if fw:
        if any(k in _BATCH_IDS for k in fw):
            _file_batched(target._data, target._fw)
        if target._node is not None:
            _NODE_FW[target._node] = target._fw


def detached(x):
    """``x``'s value outside the graph, keeping its payloads at the open levels (themselves
    detached, so no graph is reachable through them either)."""
    t = _graph._wrap(x._data)
    fw = fw_of(x)
    if fw:
        new = {}
        for k, p in fw.items():
            if type(p) is tuple:  # a batch payload (value, batch dim)
                new[k] = (detached(p[0]), p[1])
            elif isinstance(p, _graph.Tensor):  # a tangent
                new[k] = detached(p)
            else:
                new[k] = p
        t._fw = new
    return t


# ---------------------------------------------------------------- PyTorch's forward_ad API
_DUAL_LEVELS: list = []


def enter_dual_level() -> int:
    """Open a forward-mode level; returns its index (0 for the outermost).

    Example:
        >>> from chainrule.autograd import forward as fwad
        >>> lvl = fwad.enter_dual_level(); fwad.exit_dual_level(level=lvl)
    """
    lv = push(JvpLevel())
    _DUAL_LEVELS.append(lv)
    return len(_DUAL_LEVELS) - 1


def exit_dual_level(*, level: int | None = None) -> None:
    """Close the innermost forward-mode level opened by :func:`enter_dual_level`.

    Example:
        >>> from chainrule.autograd import forward as fwad
        >>> lvl = fwad.enter_dual_level(); fwad.exit_dual_level()
    """
    if not _DUAL_LEVELS:
        raise RuntimeError("exit_dual_level: no dual level is open")
    if level is not None and level != len(_DUAL_LEVELS) - 1:
        raise RuntimeError(f"exit_dual_level: level {level} is not the innermost open level "
                           f"({len(_DUAL_LEVELS) - 1})")
    pop(_DUAL_LEVELS.pop())


class dual_level:  # noqa: N801 - PyTorch's name
    """Context manager: forward-mode AD is active inside (``make_dual``/``unpack_dual``).

    Example:
        >>> import chainrule
        >>> from chainrule.autograd import forward as fwad
        >>> with fwad.dual_level():
        ...     y = fwad.make_dual(chainrule.tensor(2.0), chainrule.tensor(1.0)).exp()
        ...     round(float(fwad.unpack_dual(y).tangent), 4)
        7.3891
    """

    def __enter__(self) -> int:
        return enter_dual_level()

    def __exit__(self, *exc) -> None:
        exit_dual_level()


def _dual_lvl(level: int | None):
    if not _DUAL_LEVELS:
        raise RuntimeError("make_dual/unpack_dual need an open dual level: use "
                           "`with chainrule.autograd.forward.dual_level():`")
    if level is None:
        return _DUAL_LEVELS[-1]
    if not 0 <= level < len(_DUAL_LEVELS):
        raise RuntimeError(f"no dual level {level} is open")
    return _DUAL_LEVELS[level]


def check_tangent(primal, tangent, op: str, i: int | None = None):
    """Validate a tangent against its primal (shape, dtype, floating point)."""
    tensor_cls = _graph.Tensor
    where = "" if i is None else f" {i}"
    if not isinstance(tangent, tensor_cls):
        raise TypeError(f"{op}: tangent{where} must be a Tensor, got {type(tangent).__name__}")
    if primal._data.dtype.kind not in "fV":
        raise TypeError(f"{op}: primal{where} has dtype {primal.dtype.name}; only floating-point "
                        "tensors can carry tangents")
    if tangent.shape != primal.shape:
        raise ValueError(f"{op}: tangent{where} has shape {tuple(tangent.shape)} but its primal "
                         f"has shape {tuple(primal.shape)}")
    if tangent._data.dtype != primal._data.dtype:
        raise TypeError(f"{op}: tangent{where} has dtype {tangent.dtype.name} but its primal "
                        f"has dtype {primal.dtype.name}")
    if tangent.device != primal.device:
        raise ValueError(f"{op}: tangent{where} is on {tangent.device}, its primal on "
                         f"{primal.device}")


def dual_at(primal, tangent, level: Level):
    """``primal`` with ``tangent`` attached at ``level`` (a new tensor; ``primal`` unchanged)."""
    d = alias(primal, drop=level.id)
    set_payload(d, level.id, tangent)
    return d


def make_dual(tensor, tangent, *, level: int | None = None):
    """A tensor with ``tensor``'s value that carries ``tangent`` in forward mode.

    Example:
        >>> import chainrule
        >>> from chainrule.autograd import forward as fwad
        >>> with fwad.dual_level():
        ...     d = fwad.make_dual(chainrule.ones(2), chainrule.tensor([1.0, 2.0]))
        ...     fwad.unpack_dual(d * 3).tangent
        tensor([3., 6.])
    """
    lv = _dual_lvl(level)
    check_tangent(tensor, tangent, "make_dual")
    return dual_at(tensor, tangent, lv)


class UnpackedDualTensor(NamedTuple):
    """``(primal, tangent)`` as returned by :func:`unpack_dual`."""

    primal: object
    tangent: object


def unpack_dual(tensor, *, level: int | None = None) -> UnpackedDualTensor:
    """Split a dual tensor into its primal (without this level's tangent) and its tangent
    (None when it has none).

    Example:
        >>> import chainrule
        >>> from chainrule.autograd import forward as fwad
        >>> with fwad.dual_level():
        ...     fwad.unpack_dual(chainrule.ones(1)).tangent is None
        True
    """
    lv = _dual_lvl(level)
    tan = payload(tensor, lv.id)
    if tan is None:
        return UnpackedDualTensor(tensor, None)
    return UnpackedDualTensor(alias(tensor, drop=lv.id), tan)
