"""What a jitted function touches besides its arguments, found before each call.

The function's closure, the globals its code names, a bound method's ``self`` and
``__wrapped__`` functions are searched (a few levels deep) for modules, optimisers, tensors and
generators. From them come: the captured state (parameters, buffers, ``.grad``, optimiser
state, each a program input read at every call), the dynamic scalars (every number in an
optimiser's parameter groups and state, read at every call), and the guard key (argument
shapes, dtypes, devices and scalar values, grad mode, train/eval, tensor identities, optimiser
state layout, closure numbers).
"""

from __future__ import annotations

import types

from ..autograd import graph as _graph
from ..autograd.anomaly import ANOMALY as _ANOMALY
from ..autograd.grad_mode import STATE
from ..backend import np
from ..func.pytree import tree_map
from ..nn.module import Module
from ..optim.optimizer import Optimizer
from ..random import Generator
from ..tensor import Tensor, _wrap

_SCALAR_TYPES = (int, float)


def _is_number(v):
    return isinstance(v, _SCALAR_TYPES) and not isinstance(v, bool)


class Roots:
    """The modules, optimisers, tensors and generators a function reaches (with names)."""

    def __init__(self, fn):
        self.modules: list = []  # (name, Module)
        self.optimizers: list = []
        self.tensors: list = []
        self.generators: list = []
        self.scalars: list = []  # (name, getter) closure cells and globals holding numbers
        self.slots: list = []  # (container, key, value) read while searching: see changed()
        self._seen: set = set()
        self._visit_fn(fn, "", 0)

    def changed(self) -> bool:
        """True when a closure cell, global, attribute or container entry the search went
        through now holds another object (``model = Net()`` rebinding a global): the search
        must be redone."""
        for container, key, value in self.slots:
            try:
                now = container.cell_contents if key is _CELL else container[key]
            except (KeyError, IndexError, ValueError):
                return True
            if now is not value:
                return True
        return False

    def _add(self, kind, name, obj):
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        getattr(self, kind).append((name, obj))

    def _visit(self, obj, name, depth):
        if isinstance(obj, Module):
            self._add("modules", name, obj)
        elif isinstance(obj, Optimizer):
            self._add("optimizers", name, obj)
        elif isinstance(obj, Tensor):
            self._add("tensors", name, obj)
        elif isinstance(obj, Generator):
            self._add("generators", name, obj)
        elif depth > 3 or id(obj) in self._seen:
            return
        elif isinstance(obj, (types.FunctionType, types.MethodType)) or hasattr(obj, "__wrapped__"):
            self._visit_fn(obj, name, depth + 1)
        elif isinstance(obj, (list, tuple)) and len(obj) <= 64:
            self._seen.add(id(obj))
            for i, x in enumerate(obj):
                self.slots.append((obj, i, x))
                self._visit(x, f"{name}[{i}]", depth + 1)
        elif isinstance(obj, dict) and len(obj) <= 64:
            self._seen.add(id(obj))
            for k, x in obj.items():
                self.slots.append((obj, k, x))
                self._visit(x, f"{name}[{k!r}]", depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.ModuleType)):
            self._seen.add(id(obj))
            attrs = vars(obj)
            for k, x in list(attrs.items())[:64]:
                self.slots.append((attrs, k, x))
                self._visit(x, f"{name}.{k}", depth + 1)

    def _visit_fn(self, fn, name, depth):
        if id(fn) in self._seen:
            return
        self._seen.add(id(fn))
        if isinstance(fn, types.MethodType):
            self._visit(fn.__self__, "self", depth)
            fn = fn.__func__
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is not None:
            self._visit_fn(wrapped, name, depth)
        inner = getattr(fn, "fn", None)  # a JitFunction
        if callable(inner) and inner is not fn:
            self._visit_fn(inner, name, depth)
        if not isinstance(fn, types.FunctionType):
            if hasattr(fn, "__dict__"):
                self._visit(fn, name, depth)
            return
        code = fn.__code__
        for cname, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                val = cell.cell_contents
            except ValueError:
                continue
            if _is_number(val) or isinstance(val, (str, bool)):
                self.scalars.append((f"{cname} (closure of {fn.__qualname__})", cell, "cell"))
            else:
                self.slots.append((cell, _CELL, val))
                self._visit(val, cname, depth)
        g = fn.__globals__
        for gname in _names(code):
            if gname in g:
                val = g[gname]
                if _is_number(val) or isinstance(val, bool):
                    if not any(e[1] is g and e[0] == gname for e in self.scalars):
                        self.scalars.append((gname, g, "global"))
                elif not isinstance(val, (type, types.ModuleType, types.BuiltinFunctionType)):
                    self.slots.append((g, gname, val))
                    self._visit(val, gname, depth)
        for i, d in enumerate(fn.__defaults__ or ()):
            self._visit(d, f"default {i}", depth)


_CELL = object()


def _names(code):
    out = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out += _names(c)
    return out


def scalar_value(entry):
    name, holder, kind = entry
    return holder.cell_contents if kind == "cell" else holder.get(name)


def state_of(roots):
    """The captured state as lists: tensors [(desc, Tensor)], params [(desc, Tensor)] whose
    ``.grad`` is tracked, optimiser entries [(desc, opt, param, state dict)], scalars
    [(desc, holder, key)] (a dict and its key, or a tuple position)."""
    tensors, params, seen = [], [], {}

    def add(desc, t, is_param):
        if t is None or id(t) in seen:
            return
        seen[id(t)] = desc
        tensors.append((desc, t))
        if is_param:
            params.append((desc, t))

    for mname, m in roots.modules:
        for pname, p in m.named_parameters():
            add(f"{mname}.{pname}", p, True)
        for bname, b in m.named_buffers():
            add(f"{mname}.{bname}", b, False)
    for tname, t in roots.tensors:
        add(tname, t, t._rg)
    optstates, scalars = [], []
    for oname, opt in roots.optimizers:
        for gi, group in enumerate(opt.param_groups):
            for j, p in enumerate(group["params"]):
                add(f"{oname}.param_groups[{gi}]['params'][{j}]", p, True)
            for k, v in group.items():
                if _is_number(v) or (isinstance(v, tuple) and v
                                     and all(_is_number(x) for x in v)):
                    scalars.append((f"{oname}.param_groups[{gi}][{k!r}]", group, k,
                                    _group_getter(opt, gi, k)))
        for p in _opt_params(opt):
            st = opt.state.get(p)
            if st is None:
                continue
            pdesc = seen[id(p)]
            optstates.append((pdesc, opt, p, st))
            for k, v in st.items():
                d = f"{oname}.state[{pdesc}][{k!r}]"
                if isinstance(v, Tensor):
                    add(d, v, False)
                elif _is_number(v):
                    scalars.append((d, st, k, _state_getter(opt, p, k)))
    return tensors, params, optstates, scalars


def state_to_create(roots) -> str | None:
    """Why a call may create captured state, in words (None when it cannot): a trainable
    parameter whose ``.grad`` is None (a backward creates it), an optimiser that has not yet
    stepped some of its parameters (its first step creates their state). A program traced on
    such a call is traced against state that the call itself changes, so the next call would
    not replay it.

    Example:
        >>> import chainrule as cr
        >>> w = cr.ones(2, requires_grad=True)
        >>> opt = cr.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> state_to_create(Roots(lambda: opt.step()))
        "opt.param_groups[0]['params'][0].grad is None; opt has not stepped 1 parameter(s) yet"
    """
    _, params, _, _ = state_of(roots)
    parts = []
    no_grad = [d for d, p in params if p._rg and p._grad is None]
    if no_grad:
        more = f" (and {len(no_grad) - 1} more)" if len(no_grad) > 1 else ""
        parts.append(f"{no_grad[0]}.grad is None{more}")
    for oname, opt in roots.optimizers:
        n = sum(1 for p in _opt_params(opt) if p._rg and p not in opt.state)
        if n:  # never stepped (a step leaves an entry, empty for plain SGD)
            parts.append(f"{oname} has not stepped {n} parameter(s) yet")
    return "; ".join(parts) or None


def state_tensor_getters(roots) -> dict:
    """id(tensor) -> a getter of its data by path, for optimiser state tensors (which
    ``load_state_dict`` may replace)."""
    out = {}
    for _, opt in roots.optimizers:
        for p, st in opt.state.items():
            for k, v in st.items():
                if isinstance(v, Tensor):
                    out[id(v)] = _state_data_getter(opt, p, k)
    return out


def _state_data_getter(opt, p, k):
    return lambda: opt.state[p][k]._data


def _state_getter(opt, p, k):
    return lambda: opt.state[p][k]


def _group_getter(opt, gi, k):
    return lambda: opt.param_groups[gi][k]


def _opt_params(opt):
    for group in opt.param_groups:
        yield from group["params"]


def guard_key(roots, leaves, labels=None):
    """The facts a program relies on, as a list of values (the cache key); with a list as
    ``labels``, each fact's label is appended to it, in the same order (built only on a
    cache miss, to explain it: formatting them costs more than reading the facts)."""
    lab = labels is not None
    key = [STATE.enabled]
    if lab:
        labels.append("grad mode")
    ids = {}
    keyed = set()  # tensors whose .grad fact is in the key already
    for i, leaf in enumerate(leaves):
        if isinstance(leaf, Tensor):
            a = leaf._data
            key += (a.shape, _dtype_name(a.dtype), _device_name(type(a)), leaf._rg,
                    ids.setdefault(id(leaf), i))
            if lab:
                labels += (f"arg {i} shape", f"arg {i} dtype", f"arg {i} device",
                           f"arg {i} requires_grad", f"arg {i} is arg")
        else:
            key.append((type(leaf).__name__, leaf))
            if lab:
                labels.append(f"arg {i} value")
    for entry in roots.scalars:
        v = scalar_value(entry)
        key.append((type(v).__name__, v))
        if lab:
            labels.append(f"{entry[0]} (a number the function reads)")
    for mname, m in roots.modules:
        subs = m.named_modules() if lab else _walk(m, [], set())
        for sub_name, sub in subs:
            where = (f"{mname}.{sub_name}" if sub_name else mname) if lab else None
            key.append(sub.training)
            if lab:
                labels.append(f"{where}.training")
            for pn, p in sub._parameters.items():
                key.append(_tensor_fact(p, lab))
                if lab:
                    labels.append(f"{where}.{pn}")
                if p is not None:
                    keyed.add(id(p))
                    key.append(_grad_fact(p))
                    if lab:
                        labels.append(f"{where}.{pn}.grad")
            for bn, b in sub._buffers.items():
                key.append(_tensor_fact(b, lab))
                if lab:
                    labels.append(f"{where}.{bn}")
    for tname, t in roots.tensors:
        keyed.add(id(t))
        key += (_tensor_fact(t, lab), _grad_fact(t))
        if lab:
            labels += (tname, f"{tname}.grad")
    for oname, opt in roots.optimizers:
        for gi, group in enumerate(opt.param_groups):
            at = f"{oname}.param_groups[{gi}]" if lab else None
            for k, v in group.items():
                if k == "params":
                    key.append(tuple(map(id, v)))
                    rest = [j for j, p in enumerate(v) if id(p) not in keyed]
                    key += (_grad_fact(v[j]) for j in rest)
                    if lab:
                        labels.append(f"{at} params")
                        labels += (f"{at}['params'][{j}].grad" for j in rest)
                elif _is_number(v):
                    key.append(type(v).__name__)
                    if lab:
                        labels.append(f"{at}[{k!r}] type")
                elif isinstance(v, tuple) and v and all(_is_number(x) for x in v):
                    key.append(tuple(type(x).__name__ for x in v))
                    if lab:
                        labels.append(f"{at}[{k!r}] types")
                else:
                    key.append(_static(v))
                    if lab:
                        labels.append(f"{at}[{k!r}]")
        get = opt.state.get
        for j, p in enumerate(_opt_params(opt)):
            key.append(_state_fact(get(p)))
            if lab:
                labels.append(f"{oname}.state of parameter {j}")
    return key


def _walk(m, out, memo):
    """``[(None, module)]`` in ``named_modules()``'s order (depth first, each module once),
    without building the names."""
    if id(m) in memo:
        return out
    memo.add(id(m))
    out.append((None, m))
    for c in m._modules.values():
        if c is not None:
            _walk(c, out, memo)
    return out


def labelled_key(roots, leaves):
    """The facts a program relies on with their labels: [(label, value)]."""
    labels: list = []
    return list(zip(labels, guard_key(roots, leaves, labels)))


def _static(v):
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


class _Identity:
    """An identity that compares by object and prints as "tensor 0x... (shape) dtype"."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return type(other) is _Identity and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)

    def __repr__(self):
        a = self.obj._data
        return f"tensor {id(self.obj):#x} {tuple(a.shape)} {a.dtype}"


def _tensor_fact(t, labelled=False):
    """A captured tensor's identity: its ``id`` in the cache key (hashed and compared in C at
    every call), an :class:`_Identity` in a labelled key, which explains a recompile and, held
    by the cache entry, keeps the tensor alive, so that no other tensor can take its id while
    the entry is cached."""
    if t is None:
        return None
    return _Identity(t) if labelled else id(t)


_NAMES: dict = {}


def _dtype_name(dtype) -> str:
    """``str(dtype)``, cached (NumPy computes it in Python, a microsecond or two a call)."""
    name = _NAMES.get(dtype)
    if name is None:
        name = _NAMES[dtype] = str(dtype)
    return name


def _device_name(array_type) -> str:
    name = _NAMES.get(array_type)
    if name is None:
        name = _NAMES[array_type] = array_type.__module__.split(".")[0]
    return name


def _grad_fact(p):
    g = p._grad
    if g is None:
        return None
    return (g._data.shape, _dtype_name(g._data.dtype), g._node is not None or g._rg)


def _state_fact(st):
    if not st:
        return ()
    return tuple(st), tuple(map(type, st.values()))


def describe_change(label, old, new):
    """``arg 0 shape (128, 784) -> (64, 784)`` for one differing fact."""
    if isinstance(old, _Identity) and isinstance(new, _Identity):
        return f"{label} replaced (a different tensor object)"
    return f"{label} {old!r} -> {new!r}"


def first_difference(old_key, new_key):
    """The first fact that differs between two guard keys, in words."""
    old = dict(old_key)
    for label, value in new_key:
        if label not in old:
            return f"{label} is new ({value!r})"
        if old[label] != value:
            return describe_change(label, old[label], value)
    for label, value in old_key:
        if label not in dict(new_key):
            return f"{label} is gone (was {value!r})"
    return None


class Snapshot:
    """The captured state before a trace, to restore when the call fails; ``args``: tensors
    passed in (their data, ``.grad`` and version counters are saved too)."""

    def __init__(self, roots, args=()):
        tensors, params, _, _ = state_of(roots)
        seen = {id(t) for _, t in tensors}
        extra = [t for t in args if id(t) not in seen and not seen.add(id(t))]
        self.datas = [(t, t._data, t._data.copy(), t._vc, t._version)
                      for t in [t for _, t in tensors] + extra]
        self.grads = [(p, p._grad, None if p._grad is None else p._grad._data.copy())
                      for p in [p for _, p in params] + extra]
        self.opt = [(opt, {p: dict(st) for p, st in opt.state.items()},
                     [dict(g) for g in opt.param_groups]) for _, opt in roots.optimizers]
        self.rng = [(g, g.np.bit_generator.state) for _, g in roots.generators]
        from ..random import default_generator  # noqa: PLC0415

        self.rng.append((default_generator, default_generator.np.bit_generator.state))

    def restore(self):
        """Put every captured tensor, gradient, optimiser entry and generator back."""
        for t, data, copy, vc, version in self.datas:
            t._data = data
            data[...] = copy
            t._vc = vc
            if vc is not None:
                vc[0] = version
        for p, g, copy in self.grads:
            p._grad = g
            if g is not None:
                g._data = np.asarray(g._data).view(np.ndarray)
                g._data[...] = copy
        for opt, states, groups in self.opt:
            for p in list(opt.state):
                if p not in states:
                    del opt.state[p]
            for p, saved in states.items():
                st = opt.state[p]  # the same dict object: programs may hold it
                st.clear()
                st.update(saved)
            for g, saved in zip(opt.param_groups, groups):
                g.clear()
                g.update(saved)
        for gen, state in self.rng:
            real = getattr(gen.np, "_real", gen.np)
            real.bit_generator.state = state
            gen.np = real


def detach_outputs(obj):
    """The tensors in a result (a pytree) as plain ndarray-backed tensors, as a replay
    returns them."""
    return tree_map(_detached, obj)


def _detached(x):
    return _wrap(x._data) if isinstance(x, Tensor) else x


def flatten(obj, leaves):
    """Leaves of a pytree (tuples, lists, dicts) and a structure to rebuild it."""
    if isinstance(obj, (tuple, list)):
        return (type(obj), [flatten(x, leaves) for x in obj])
    if isinstance(obj, dict):
        return (dict, [(k, flatten(x, leaves)) for k, x in obj.items()])
    leaves.append(obj)
    return len(leaves) - 1


def unflatten(tree, leaves):
    """Rebuild what :func:`flatten` took apart."""
    if isinstance(tree, int):
        return leaves[tree]
    kind, items = tree
    if kind is dict:
        return {k: unflatten(x, leaves) for k, x in items}
    return kind(unflatten(x, leaves) for x in items)


def in_transform() -> bool:
    """True inside a jvp/vmap level or with anomaly detection on (the jit then runs eagerly)."""
    return bool(_graph.FORWARD.levels) or _ANOMALY.enabled
