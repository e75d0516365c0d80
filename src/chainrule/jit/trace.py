"""Recording a trace: the function runs once, eagerly, on real arrays that remember where they
came from, and every array operation is written down.

Three kinds of value carry their origin during a trace:

- :class:`TraceArray`, an ndarray subclass: primitives (through ``primitives.core.TRACE_HOOK``,
  which ``apply`` and the RAW namespace of the backward engine call), NumPy ufuncs and
  functions (``__array_ufunc__`` / ``__array_function__``) and the ndarray methods the library
  uses record an :class:`~chainrule.jit.ir.Op` each;
- :class:`TraceScalar`, a Python number standing for a dynamic scalar (an optimiser's learning
  rate, its step count): arithmetic on it is recorded, and a branch on it becomes a guard;
- draws from a chainrule Generator, which are applications of the ``rng_draw`` primitive to
  the generator's state: the state is an input of the program (read at every call) and the
  last state it returns an ``rng`` effect written back after the call (fresh masks every
  call, reproducible under ``manual_seed``).

A host read (``.item()``, ``bool``, ``.tolist()``, printing) cannot be replayed: it ends the
recording with a graph break naming the file:line of the read, except for a bool read inside
the library of a value computed only from the inputs (nll_loss's "all targets valid"), which
becomes a guard the replay checks before it writes anything.
"""

from __future__ import annotations

import operator
import os
import sys

from ..backend import np
from .ir import Op, Var

_ndarray = np.ndarray
_REC: list = [None]  # the active Recorder
_HERE = os.path.dirname(os.path.abspath(__file__))
_PKG = os.path.dirname(_HERE)
_TENSOR_PY = os.path.join(_PKG, "tensor.py")
# Where each op came from, for tools that report on a program (ONNX export names the user's
# line of an op it cannot map): a dict {first out Var: (user file:line, library file:line)}
# while one is installed, None otherwise (tracing for the jit pays nothing).
SITES: list = [None]
_MACHINERY = tuple(os.path.join(_PKG, d) + os.sep for d in ("jit", "autograd", "primitives",
                                                             "backend"))


class GraphBreakError(Exception):
    """Raised inside a trace with ``fullgraph=True`` at a read that cannot be replayed."""

    def __init__(self, reason, where):
        super().__init__(f"{reason} at {where}")
        self.reason = reason
        self.where = where


def _plain(a):
    return _ndarray.view(a, _ndarray)


def _site(skip_library=True):
    """``file:line`` of the first frame outside chainrule (or outside this package)."""
    f = sys._getframe(1)
    first_lib = None
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_HERE):
            if first_lib is None:
                first_lib = f"{fn}:{f.f_lineno}"
            if not (skip_library and fn.startswith(_PKG + os.sep)) and "numpy" not in fn:
                return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return first_lib or "<unknown>"


def op_sites():
    """(``file:line`` of the user's code, ``file:line`` of the library function) that performed
    the operation being recorded: the first frame outside chainrule (and NumPy), and the first
    frame inside chainrule outside its machinery (jit, autograd, primitives, backend)."""
    f = sys._getframe(1)
    user = lib = None
    while f is not None and user is None:
        fn = os.path.abspath(f.f_code.co_filename)
        if fn.startswith(_PKG + os.sep):
            if lib is None and not fn.startswith(_MACHINERY):
                lib = f"{short(fn)}:{f.f_lineno}"
        elif "numpy" not in fn:
            user = f"{fn}:{f.f_lineno}"
        f = f.f_back
    return user or "<unknown>", lib


def _reader():
    """The file of the first frame outside this package (who performed a host read)."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_HERE) and "numpy" not in fn:
            return fn, f.f_lineno
        f = f.f_back
    return "<unknown>", 0


def short(fn):
    """A library file as ``chainrule/ops/nn.py``; others as they are."""
    if fn.startswith(_PKG + os.sep):
        return os.path.relpath(fn, os.path.dirname(_PKG))
    return fn


class Recorder:
    """The state of one trace: the ops so far, the Var of every array, constants, guards and
    the first graph break."""

    def __init__(self, fullgraph=False):
        self.ops: list[Op] = []
        self.n = 0
        self.consts: dict = {}  # Var -> value
        self.const_ids: dict = {}  # id(array) -> Var
        self.plain_written: dict = {}  # id(plain array written in place) -> (array, Var)
        self.keep: list = []
        self.breaks: list = []
        self.guards: list = []  # (Var, expected, desc, op position, "bool"/"value"/"array_bool")
        self.fullgraph = fullgraph
        self.suspended = 0  # > 0 while a primitive's impl runs (on plain arrays)
        self.pending: dict = {}  # id(generator key) -> make its Var and Input at first use

    # ------------------------------------------------------------------ values
    def var(self, value=None, scalar=None) -> Var:
        """A fresh Var for an array or scalar value."""
        self.n += 1
        if scalar is not None:
            return Var(self.n, scalar=scalar)
        return Var(self.n, tuple(value.shape), value.dtype)

    def wrap(self, res):
        """A result as traced values with fresh Vars; returns (traced, outs)."""
        if isinstance(res, (_ndarray, np.generic)):
            t = _ndarray.view(res if isinstance(res, _ndarray) else np.asarray(res), TraceArray)
            v = self.var(t)
            t._v = v
            t._rec = self
            return t, [v]
        if isinstance(res, (tuple, list)) and res and all(
                isinstance(r, (_ndarray, np.generic)) for r in res):
            items, outs = [], []
            for r in res:
                t, o = self.wrap(r)
                items.append(t)
                outs += o
            return type(res)(items), outs
        return None, None

    def template(self, obj):
        """(template with Vars, plain value) of an argument structure."""
        if isinstance(obj, TraceArray) and obj.__dict__.get("_rec") is not self:
            # left over from an earlier trace (a library cache): a constant of this one
            obj = _plain(obj)
        if isinstance(obj, TraceArray):
            v = obj.__dict__.get("_v")
            if v is None and id(obj) in self.pending:  # a generator's state, first drawn from
                v = self.pending.pop(id(obj))(obj)
            if v is None:
                self.graph_break("an array derived from a traced value by an operation the jit "
                                 "does not record", _site())
                return None, _plain(obj)
            return v, _plain(obj)
        if isinstance(obj, _ndarray):
            hit = self.plain_written.get(id(obj))
            if hit is not None and hit[0] is obj:
                return hit[1], obj
            base = obj.base
            while isinstance(base, _ndarray):
                if isinstance(base, TraceArray):
                    self.graph_break("a traced value left the trace (np.asarray or a view the "
                                     "jit does not record)", _site())
                    break
                base = base.base
            v = self.const_ids.get(id(obj))
            if v is None:
                v = self.var(obj)
                self.consts[v] = obj
                self.const_ids[id(obj)] = v
                self.keep.append(obj)
            return v, obj
        if isinstance(obj, TraceScalar):
            return obj._v, obj._value
        if isinstance(obj, tuple):
            pairs = [self.template(x) for x in obj]
            return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
        if isinstance(obj, list):
            pairs = [self.template(x) for x in obj]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        if isinstance(obj, dict):
            pairs = {k: self.template(x) for k, x in obj.items()}
            return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
        if hasattr(obj, "_data") and hasattr(obj, "_node"):  # a Tensor inside params
            return self.template(obj._data)
        return obj, obj

    # ------------------------------------------------------------------ recording
    def record(self, kind, name, fn, args, kwargs, outs, writes=()):
        """Append an op."""
        self.ops.append(Op(kind, name, fn, args, kwargs, outs, writes))
        sites = SITES[0]
        if sites is not None and outs:
            sites[outs[0]] = op_sites()

    def call(self, kind, name, fn, args, kwargs):
        """Run ``fn`` on the plain values of ``args``, untraced, and record it; the traced
        result (or the plain one when it holds no array)."""
        targs, pargs = self.template(tuple(args))
        tkw, pkw = self.template(dict(kwargs))
        # untraced inside: the op is recorded as one (an array that ``fn`` creates with a
        # patched NumPy function would otherwise be traced, and ops on it recorded as well)
        saved, _REC[0] = _REC[0], None
        try:
            res = fn(*pargs, **pkw)
        finally:
            _REC[0] = saved
        traced, outs = self.wrap(res)
        if traced is None:
            return res
        self.record(kind, name, fn, targs, tkw, outs)
        return traced

    def written(self, target, kind, name, fn, targs, tkw, wvar):
        """Record an op that wrote into ``target`` in place: ``target`` gets a new Var."""
        nv = self.advance(target)
        self.record(kind, name, fn, targs, tkw, [nv], writes=(wvar,))
        return nv

    def advance(self, target) -> Var:
        """A new Var for ``target``, an array just written in place (Vars are single
        assignment: later reads of ``target`` see the written value)."""
        self.n += 1
        nv = Var(self.n, tuple(target.shape), target.dtype)
        if isinstance(target, TraceArray):
            if target.__dict__.get("_rec") is not self:
                self.graph_break("an array kept from an earlier trace was written in place",
                                 _site())
            target._v = nv
        else:
            self.plain_written[id(target)] = (target, nv)
            self.keep.append(target)
        return nv

    def graph_break(self, reason, where):
        """Note a read that cannot be replayed; with fullgraph raise at once."""
        if not self.breaks:
            self.breaks.append((reason, where))
        if self.fullgraph:
            raise GraphBreakError(reason, where)

    def host_read(self, arr, what):
        """A value leaves the arrays (bool, item, tolist, printing)."""
        fn, line = _reader()
        v = arr.__dict__.get("_v") if isinstance(arr, TraceArray) else None
        library = fn.startswith(_PKG + os.sep) and fn != _TENSOR_PY
        if what == "bool" and library and v is not None:
            expected = bool(_plain(arr))
            self.guards.append((v, expected, f"bool read at {short(fn)}:{line}", len(self.ops),
                                "array_bool"))
            return
        self.graph_break(f"{what} of a traced tensor (a host read: its value cannot be replayed)",
                         _site())


# ---------------------------------------------------------------------- traced arrays
def _ufunc_name(ufunc, method):
    name = f"np.{ufunc.__name__}"
    return name if method == "__call__" else f"{name}.{method}"


def _record_ufunc(ufunc, method, inputs, kwargs):
    rec = _REC[0]
    if rec is None:
        ins = [_plain(x) if isinstance(x, TraceArray) else
               (x._value if isinstance(x, TraceScalar) else x) for x in inputs]
        kw = dict(kwargs)
        if "out" in kw:
            kw["out"] = tuple(_plain(o) if isinstance(o, TraceArray) else o for o in kw["out"])
        return getattr(ufunc, method)(*ins, **kw)
    fn = ufunc if method == "__call__" else getattr(ufunc, method)
    out = kwargs.pop("out", None)
    targs, pargs = rec.template(tuple(inputs))
    tkw, pkw = rec.template(kwargs)
    name = _ufunc_name(ufunc, method)
    if method == "at":  # in place on the first input
        fn(*pargs, **pkw)
        rec.written(inputs[0], "ufunc", name, fn, targs, tkw, targs[0])
        return None
    if out is not None:
        if len(out) != 1:
            rec.graph_break(f"{name} with several out= arrays", _site())
            return fn(*pargs, out=tuple(_plain(o) if isinstance(o, TraceArray) else o
                                       for o in out), **pkw)
        target = out[0]
        tw, pw = rec.template(target)
        fn(*pargs, out=pw, **pkw)
        tkw = dict(tkw)
        tkw["out"] = tw
        rec.written(target, "ufunc", name, fn, targs, tkw, tw)
        return target
    res = fn(*pargs, **pkw)
    traced, outs = rec.wrap(res)
    if traced is None:
        return res
    rec.record("ufunc", name, fn, targs, tkw, outs)
    return traced


# NumPy functions answered from metadata alone (nothing is read from the data)
_QUERIES = {"may_share_memory", "shares_memory", "shape", "ndim", "size", "result_type",
            "iscomplexobj", "isrealobj", "can_cast", "min_scalar_type", "broadcast_shapes"}
# NumPy functions that write into their first argument
_INPLACE_FUNCS = {"copyto", "put", "place", "putmask", "fill_diagonal", "put_along_axis"}
_HOST_FUNCS = {"array2string", "array_repr", "array_str", "save", "savez", "savetxt",
               "array_equal", "allclose", "array_equiv", "tofile",
               # results whose shape depends on the values (a mask's places): a replay at the
               # traced shape would be wrong
               "nonzero", "flatnonzero", "argwhere"}


def _unwrap(obj):
    if isinstance(obj, TraceArray):
        return _plain(obj)
    if isinstance(obj, TraceScalar):
        return obj._value
    if isinstance(obj, (tuple, list)):
        return type(obj)(_unwrap(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(x) for k, x in obj.items()}
    return obj


def _record_function(func, args, kwargs):
    rec = _REC[0]
    name = func.__name__
    if rec is None or name in _QUERIES:
        return func(*_unwrap(args), **_unwrap(kwargs))
    if name in _HOST_FUNCS:
        for a in args:
            if isinstance(a, TraceArray):
                rec.host_read(a, f"np.{name}")
                break
        return func(*_unwrap(args), **_unwrap(kwargs))
    targs, pargs = rec.template(tuple(args))
    tkw, pkw = rec.template(dict(kwargs))
    qual = f"np.{name}"
    if name in _INPLACE_FUNCS:
        func(*pargs, **pkw)
        rec.written(args[0], "func", qual, func, targs, tkw, targs[0])
        return None
    target = kwargs.get("out")
    if target is not None:
        if not isinstance(target, _ndarray):
            rec.graph_break(f"{qual}(out=...) with several outputs", _site())
            return func(*pargs, **pkw)
        func(*pargs, **pkw)
        rec.written(target, "func", qual, func, targs, tkw, tkw["out"])
        return target
    res = func(*pargs, **pkw)
    traced, outs = rec.wrap(res)
    if traced is None:
        if isinstance(res, (bool, int, float, complex)):
            rec.graph_break(f"{qual} returned a Python value computed from a traced tensor",
                            _site())
        return res
    rec.record("func", qual, func, targs, tkw, outs)
    return traced


def _method(name, writes=False):
    base = getattr(_ndarray, name)

    def method(self, *args, **kwargs):
        rec = _REC[0]
        if rec is None:
            return base(_plain(self), *_unwrap(args), **_unwrap(kwargs))
        if not writes:
            return rec.call("method", f"ndarray.{name}", base, (self, *args), kwargs)
        targs, pargs = rec.template((self, *args))
        tkw, pkw = rec.template(kwargs)
        res = base(*pargs, **pkw)
        rec.written(self, "method", f"ndarray.{name}", base, targs, tkw, targs[0])
        return res

    method.__name__ = name
    return method


def _host(what, conv):
    def read(self, *args, **kwargs):
        rec = _REC[0]
        if rec is not None:
            rec.host_read(self, what)
        return conv(_plain(self), *args, **kwargs)

    return read


class _HostDevice(str):
    id = None


_HOST_DEVICE = _HostDevice("cpu")


class TraceArray(_ndarray):
    """An ndarray that records what is done to it while a trace is active (and behaves as a
    plain ndarray otherwise). ``_v`` is its Var."""

    __array_priority__ = 100

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _record_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _record_function(func, args, kwargs)

    __bool__ = _host("bool", bool)
    __float__ = _host("float", float)
    __int__ = _host("int", int)
    __index__ = _host("int", operator.index)
    __complex__ = _host("complex", complex)
    item = _host(".item()", _ndarray.item)
    tolist = _host(".tolist()", _ndarray.tolist)
    tobytes = _host(".tobytes()", _ndarray.tobytes)
    nonzero = _host(".nonzero()", _ndarray.nonzero)  # a shape that depends on the values
    __repr__ = _host("printing", repr)
    __str__ = _host("printing", str)
    __format__ = _host("printing", format)
    __iter__ = _host("iteration", iter)

    def get(self):
        """CuPy's host copy, asked for by Tensor printing and ``.numpy()``."""
        rec = _REC[0]
        if rec is not None:
            rec.host_read(self, "a host copy (.numpy(), printing)")
        return _plain(self)

    @property
    def device(self):
        """"cpu", with the ``id`` (None) that code written for CuPy arrays reads."""
        return _HOST_DEVICE

    @property
    def T(self):  # noqa: N802
        return self.transpose()

    @property
    def mT(self):  # noqa: N802
        return self.swapaxes(-1, -2)


for _name in ("copy", "astype", "reshape", "transpose", "ravel", "flatten", "squeeze",
              "swapaxes", "__getitem__", "argmax", "argmin", "argsort", "cumsum", "cumprod",
              "repeat", "take", "round", "dot", "diagonal", "conj", "clip",
              "__deepcopy__", "__copy__", "view"):
    setattr(TraceArray, _name, _method(_name))
for _name in ("fill", "__setitem__", "sort", "put"):
    setattr(TraceArray, _name, _method(_name, writes=True))


# ---------------------------------------------------------------------- traced scalars
_SCALAR_OPS = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
    "eq": operator.eq, "ne": operator.ne,
}


def _scalar_binary(name, reflected=False):
    fn = _SCALAR_OPS[name]

    def op(self, other):
        if isinstance(other, (_ndarray, np.generic)) or hasattr(other, "_node"):
            return NotImplemented
        a, b = (other, self) if reflected else (self, other)
        return _scalar_apply(fn, name, (a, b))

    return op


def _scalar_apply(fn, name, args):
    values = [x._value if isinstance(x, TraceScalar) else x for x in args]
    res = fn(*values)
    rec = _REC[0]
    if rec is None or not isinstance(res, (int, float, bool)):
        return res
    targs = tuple(x._v if isinstance(x, TraceScalar) else x for x in args)
    out = rec.var(scalar=type(res).__name__)
    rec.record("scalar", name, fn, targs, {}, [out])
    return TraceScalar(res, out)


def _scalar_unary(name, fn):
    def op(self):
        return _scalar_apply(fn, name, (self,))

    return op


def _scalar_read(conv):
    def read(self):
        rec = _REC[0]
        if rec is not None:
            fn, line = _reader()
            rec.guards.append((self._v, self._value, f"value read at {short(fn)}:{line}",
                               len(rec.ops), "value"))
        return conv(self._value)

    return read


class TraceScalar:
    """A dynamic Python number during a trace: arithmetic is recorded, ``bool()`` (a branch)
    and ``float()``/``int()`` become guards on the value seen."""

    __slots__ = ("_v", "_value")

    def __init__(self, value, var):
        self._value = value
        self._v = var

    def __repr__(self):
        return repr(self._value)

    def __format__(self, spec):
        return format(self._value, spec)

    def __hash__(self):
        return hash(self._value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _record_ufunc(ufunc, method, inputs, kwargs)

    def __bool__(self):
        rec = _REC[0]
        value = bool(self._value)
        if rec is not None:
            fn, line = _reader()
            rec.guards.append((self._v, value, f"branch at {short(fn)}:{line}", len(rec.ops),
                               "bool"))
        return value

    __float__ = _scalar_read(float)
    __int__ = _scalar_read(int)
    __index__ = _scalar_read(operator.index)
    __neg__ = _scalar_unary("neg", operator.neg)
    __abs__ = _scalar_unary("abs", abs)
    __pos__ = _scalar_unary("pos", operator.pos)


for _n in _SCALAR_OPS:
    setattr(TraceScalar, f"__{_n}__", _scalar_binary(_n))
    if _n not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(TraceScalar, f"__r{_n}__", _scalar_binary(_n, reflected=True))


# ---------------------------------------------------------------------- primitives and RNG
def prim_hook(prim, arrs, params, asarray):
    """``primitives.core.TRACE_HOOK``: run ``prim`` on plain arrays and record it."""
    rec = _REC[0]
    targs, pargs = rec.template(tuple(arrs))
    tkw, pkw = rec.template(params)
    rec.suspended += 1
    try:
        res = prim.impl(np, *pargs, **pkw)
    finally:
        rec.suspended -= 1
    if prim.inplace:
        return _record_update(rec, prim, arrs, targs, tkw, pargs, res)
    if prim.multi:  # several outputs: one op with one out per output (``a, b = f(...)``)
        res = tuple(r if type(r) is _ndarray else np.asarray(r) for r in res)
    elif asarray and type(res) is not _ndarray:
        res = np.asarray(res)
    traced, outs = rec.wrap(res)
    if traced is None:
        return res
    rec.record("prim", prim.name, prim.impl, (np, *targs), tkw, outs)
    return traced


def _record_update(rec, prim, arrs, targs, tkw, pargs, res):
    """An update primitive (``inplace=``) as one op that writes the inputs it declares: each
    written array (the parameter, the optimiser's buffers; an absent optional buffer, None,
    is skipped) gets a new Var, ``outs[k]`` being what ``writes[k]`` holds after the op. Its
    result, the parameter it wrote, is that parameter's new Var."""
    written = [i for i in prim.inplace if i < len(arrs) and isinstance(arrs[i], _ndarray)]
    writes = tuple(targs[i] for i in written)
    outs = [rec.advance(arrs[i]) for i in written]
    rec.record("prim", prim.name, prim.impl, (np, *targs), tkw, outs, writes=writes)
    for i, o in zip(written, outs):
        if res is pargs[i] or res is arrs[i]:
            t = _ndarray.view(pargs[i], TraceArray)
            t._v = o
            t._rec = rec
            return t
    rec.graph_break(f"{prim.name} returned an array other than one it writes in place",
                    _site())
    return res


class _Untraced:
    """An object whose attributes are read with recording suspended (a bit generator's
    ``state`` getter allocates NumPy arrays, which must stay plain)."""

    def __init__(self, obj):
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name):
        rec = _REC[0]
        if rec is None:
            return getattr(self._obj, name)
        rec.suspended += 1
        try:
            return getattr(self._obj, name)
        finally:
            rec.suspended -= 1

    def __setattr__(self, name, value):
        setattr(self._obj, name, value)


class DirectDraws:
    """Stands in for a chainrule Generator's NumPy generator (``Generator.np``) during a
    trace. The random ops draw through ``Generator.draw`` (the ``rng_draw`` primitive, whose
    key is an input of the program); a draw straight from ``Generator.np`` would be baked in
    as a constant, so it is a graph break. Its numbers still come from the generator's state
    as the trace left it, as they would eagerly."""

    def __init__(self, real, owner):
        self._real = real
        self._owner = owner

    def _sync(self):
        """The real generator at the traced key's current value (read without recording)."""
        from ..primitives.random import state_of  # noqa: PLC0415

        key = self._owner._key
        _Untraced(self._real.bit_generator).state = state_of(
            _plain(key) if isinstance(key, _ndarray) else key)
        return self._real

    def __getattr__(self, name):
        fn = getattr(self._real, name)
        if not callable(fn):  # bit_generator: its state as the trace left it
            return _Untraced(getattr(self._sync(), name))

        def draw(*args, **kwargs):
            from ..primitives.random import key_of  # noqa: PLC0415

            rec = _REC[0]
            if rec is not None:
                rec.graph_break(f"a draw straight from Generator.np ({name}); chainrule's "
                                "random ops draw through Generator.draw", _site())
            res = getattr(self._sync(), name)(*_unwrap(args), **_unwrap(kwargs))
            self._owner._key = key_of(_Untraced(self._real.bit_generator).state)
            return res

        return draw


def install_generators(rec, gens, inputs, make_input):
    """Before a trace: each generator's state becomes a traced key array, which its draws
    consume and advance; at its first draw it becomes an input of the program (read by
    ``Generator.key`` at every call; a generator that never draws adds nothing). ``gens``
    are ``(desc, generator)`` pairs; returns what :func:`finish_generators` needs."""
    installed = []
    for desc, g in gens:
        key = _ndarray.view(g.key(), TraceArray)
        key._rec = rec
        first = [None]

        def bind(k, desc=desc, g=g, first=first):
            k._v = first[0] = rec.var(k)
            inputs.append(make_input(k._v, f"{desc} state", g.key, "state"))
            return k._v

        rec.pending[id(key)] = bind
        g._key = key
        real = g.np
        g.np = DirectDraws(real, g)
        installed.append((desc, g, first, real, key))
    return installed


def finish_generators(rec, installed, make_effect):
    """After a trace: put each generator's state where eager execution would leave it and
    return an ``rng`` effect per generator that drew (its final key, written back with
    ``Generator.set_key`` after every replay)."""
    from ..primitives.random import state_of  # noqa: PLC0415

    effects = []
    for desc, g, first, real, key0 in installed:
        rec.pending.pop(id(key0), None)
        key = g._key
        g._key = None
        g.np = real
        traced = isinstance(key, TraceArray)
        real.bit_generator.state = state_of(_plain(key) if traced else key)
        if key is key0 or (traced and key.__dict__.get("_v") is first[0]):
            continue  # no draw
        value, _ = rec.template(key)
        effects.append(make_effect("rng", f"{desc} state", value, g.set_key))
    return effects


# ---------------------------------------------------------------------- conversions
_CONVERSIONS = ("asarray", "ascontiguousarray", "asfortranarray", "array", "asanyarray",
                "require")
# creation functions: outside primitive impls, their arrays are traced too, so that what is
# later written into them stays visible
_CREATIONS = ("empty", "zeros", "ones", "full", "arange", "eye", "identity", "linspace", "tri")


def _creation(name, original):
    # only chainrule's own allocations (NumPy's internals, e.g. a generator's state, and user
    # code stay plain)
    return _patched(name, original, lambda args: os.path.abspath(
        sys._getframe(2).f_code.co_filename).startswith(_PKG + os.sep))


def _conversion(name, original):
    return _patched(name, original, lambda args: args and isinstance(args[0], TraceArray))


def _patched(name, original, applies):
    """``np.<name>`` recording itself (outside primitive impls) when ``applies(args)``."""
    def patched(*args, **kwargs):
        rec = _REC[0]
        if rec is None or rec.suspended or not applies(args):
            return original(*args, **kwargs)
        return rec.call("func", f"np.{name}", original, args, kwargs)

    patched.__name__ = name
    patched.__wrapped__ = original
    return patched


def patch_conversions():
    """While tracing, NumPy's conversion functions (``np.ascontiguousarray`` and the like,
    which ndarray subclasses do not intercept) record themselves; returns the originals."""
    saved = {}
    for names, make in ((_CONVERSIONS, _conversion), (_CREATIONS, _creation)):
        for name in names:
            original = getattr(np, name)
            saved[name] = original
            setattr(np, name, make(name, original))
    return saved


def unpatch_conversions(saved):
    """Put NumPy's conversion functions back."""
    for name, original in saved.items():
        setattr(np, name, original)
