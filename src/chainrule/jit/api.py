"""``chainrule.jit``: the function users call, its cache, guards, explanations and checks."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
import warnings
from collections import OrderedDict

from ..backend import np
from ..errors import JitError
from ..tensor import Tensor, _wrap
from . import cbackend
from . import trace as _trace
from .capture import (
    Roots,
    Snapshot,
    detach_outputs,
    first_difference,
    flatten,
    guard_key,
    in_transform,
    labelled_key,
    state_of,
    state_to_create,
    unflatten,
)
from .numpy_backend import GuardFailed, compile_graph
from .passes import optimise
from .session import run_trace
from .trace import GraphBreakError

logger = logging.getLogger("chainrule.jit")
BACKENDS = ("auto", "numpy", "c")
_FALLBACK_SAID: list = []  # the one message saying why "auto" fell back to numpy


def resolve_backend(backend: str) -> str:
    """The backend a ``jit(backend=...)`` request runs on: ``"c"`` (C kernels through cffi)
    when cffi and a C compiler are present, else ``"numpy"``; ``"auto"`` falls back with one
    logged warning per process saying why, ``"c"`` raises. ``CHAINRULE_JIT_BACKEND`` (``c`` or
    ``numpy``) sets what ``"auto"`` picks.

    Example:
        >>> resolve_backend("numpy")
        'numpy'
    """
    if backend == "numpy":
        return "numpy"
    if backend == "auto":
        env = os.environ.get("CHAINRULE_JIT_BACKEND", "").strip().lower()
        if env in ("numpy", "c"):
            backend = env
        elif env:
            raise ValueError(f"CHAINRULE_JIT_BACKEND={env!r}: expected 'c' or 'numpy'")
        if backend == "numpy":
            return "numpy"
    why = cbackend.unavailable()
    if why is None:
        return "c"
    if backend == "c":
        raise JitError(f"jit: backend 'c' is not available here: {why}")
    if not _FALLBACK_SAID:
        _FALLBACK_SAID.append(why)
        logger.warning("chainrule.jit: backend 'auto' uses 'numpy' (no compiled kernels): %s",
                       why)
    return "numpy"


class _Entry:
    """One compiled program in the cache, with what it was compiled for."""

    def __init__(self, key, program, record):
        self.key = key
        self.program = program
        self.record = record
        self.hits = 0
        # the effects, by kind: version bumps and .grad writes applied inline (their applies,
        # session._bump and session._set_grad, name the tensor), the rest through their apply
        # (in program order within each list)
        self.bumps, self.grads, self.other = [], [], []
        for i, e in enumerate(program.graph.effects):
            if e.kind == "bump":
                self.bumps.append(e.apply.tensor)
            elif e.kind == "grad":
                self.grads.append((i, e.apply.param))
            else:
                self.other.append((i, e.apply))
        # parameters whose .grad the program sets anew: candidates to drop before the replay
        # (see _held_grads)
        self.replaced_grads = ([p for _, p in self.grads]
                               if getattr(program, "release_hook", False) else [])


class _Compile:
    """What ``explain()`` says about one compile."""

    def __init__(self, number, reason):
        self.number = number
        self.reason = reason
        self.trace_s = 0.0
        self.compile_s = 0.0
        self.counts = []
        self.buffers = 0
        self.groups = 0
        self.guards = 0
        self.entry = None
        self.evicted = False
        self.kernels = None


class JitFunction:
    """A function that traces itself on its first call (its second, after a warm-up call
    that creates state) and replays the planned program on later calls (see :func:`jit`)."""

    def __init__(self, fn, backend="auto", fullgraph=False, max_cache=8, verify=False,
                 warmup="auto"):
        if not callable(fn):
            raise TypeError(f"jit: expected a callable (a function, a module or a method), got "
                            f"{type(fn).__name__} {fn!r}")
        if backend not in BACKENDS:
            raise ValueError(f"jit: unknown backend {backend!r}; available: {', '.join(BACKENDS)}"
                             " ('auto' picks 'c' when cffi and a C compiler are present)")
        if not isinstance(max_cache, int) or isinstance(max_cache, bool) or max_cache < 1:
            raise ValueError(f"jit: max_cache must be a positive int, got {max_cache!r}")
        env = os.environ.get("CHAINRULE_JIT_VERIFY")
        if not verify and env and env != "0":
            verify = int(env) if env.isdigit() else True
        if verify is True:
            verify = 1
        if verify is not False and (not isinstance(verify, int) or verify < 0):
            raise ValueError(f"jit: verify must be a bool or a positive int (check every N "
                             f"calls), got {verify!r}")
        if warmup not in ("auto", True, False):
            raise ValueError(f"jit: warmup must be 'auto', True or False, got {warmup!r}")
        self.fn = fn
        self.requested_backend = backend
        self.backend = resolve_backend(backend)
        self.fullgraph = fullgraph
        self.max_cache = max_cache
        self.verify = int(verify or 0)
        self.warmup = warmup
        self._warmup_note = None  # what explain() says about a warm-up call
        self.__name__ = getattr(fn, "__name__", type(fn).__name__)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn
        try:
            self._sig = inspect.signature(fn)
        except (TypeError, ValueError):
            self._sig = None
        self._cache: OrderedDict = OrderedDict()
        self._compiles: list[_Compile] = []
        self._last_key = None
        self._eager_reason = None
        self._calls = 0
        self._overflow_warned = False
        self._evictions: list[str] = []
        self._roots = None

    # ------------------------------------------------------------------ calling
    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        bound = JitFunction(self.fn.__get__(obj, objtype), self.requested_backend,
                            self.fullgraph, self.max_cache, self.verify, self.warmup)
        setattr(obj, self.__name__, bound)
        return bound

    def __call__(self, *args, **kwargs):
        if (self._eager_reason is not None or in_transform() or _trace._REC[0] is not None
                or _EAGER[0]):
            return self.fn(*args, **kwargs)  # eager, or inlined into an enclosing trace
        if not kwargs and not any(isinstance(a, (tuple, list, dict)) for a in args):
            leaves, structure = list(args), len(args)  # flat positional arguments
        else:
            leaves = []
            structure = tuple(tree_sig(flatten((args, kwargs), leaves)))
        for i, leaf in enumerate(leaves):
            if not (isinstance(leaf, (Tensor, int, float, bool, str, complex)) or leaf is None):
                raise TypeError(f"{self.__name__}: argument leaf {i} is a {type(leaf).__name__}; "
                                "a jitted function takes tensors, Python numbers, strings, None "
                                "and tuples/lists/dicts of them (close over modules, optimisers "
                                "and generators instead of passing them)")
        if self._roots is None or self._roots.changed():
            self._roots = Roots(self.fn)
        roots = self._roots
        key = (tuple(guard_key(roots, leaves)), structure)
        self._calls += 1
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            if self.verify and self._calls % self.verify == 0:
                out = self._verified(entry, leaves, roots, args, kwargs)
            else:
                out = self._replay(entry, leaves)
            if not isinstance(out, GuardFailed):
                entry.hits += 1
                return out
            reason = f"guard failed: {out.desc} (now {out.value!r}, traced " \
                     f"{_expected(entry, out.desc)!r})"
            del self._cache[key]
            labelled = labelled_key(roots, leaves)
        else:  # a miss: the arguments must fit the signature (a hit matched a call that did)
            self._check_args(args, kwargs)
            labelled = labelled_key(roots, leaves)
            why = self._warmup_reason(roots)
            if why is not None:
                return self._warm_up(why, labelled, roots, args, kwargs)
            if self._last_key is None:
                reason = "first call"
            else:
                reason = first_difference(self._last_key, labelled) or "a new argument structure"
                if not self._compiles and self._warmup_note is not None:
                    reason = f"first traced call, after the warm-up: {reason}"
        if self._compiles:
            logger.info("%s: recompiling: %s", self.__name__, reason)
        return self._compile(key, labelled, reason, leaves, roots, args, kwargs)

    def _check_args(self, args, kwargs):
        if self._sig is None:
            return
        try:
            self._sig.bind(*args, **kwargs)
        except TypeError as e:
            params = ", ".join(self._sig.parameters)
            raise TypeError(f"{self.__name__}({params}): {e}") from None

    # ------------------------------------------------------------------ warming up
    def _warmup_reason(self, roots):
        """Why this call runs eagerly instead of being traced (None: trace it). Only the
        first call can warm up: with ``warmup="auto"`` when it may create captured state
        (``.grad``, optimiser state), so that the program is traced on the second call, against
        the state every later call starts from, and a training step compiles once."""
        if self.warmup is False or self._warmup_note is not None or self._compiles:
            return None
        if self.warmup is True:
            return "warmup=True"
        return state_to_create(roots)

    def _warm_up(self, why, labelled, roots, args, kwargs):
        snap = Snapshot(roots)
        try:
            result = self.fn(*args, **kwargs)
        except BaseException:
            snap.restore()  # a failed call leaves the state as it was
            raise
        self._warmup_note = (f"call {self._calls} ran eagerly (warm-up: {why}); the program is "
                             "traced on the next call, against the state this one created")
        self._last_key = labelled
        return detach_outputs(result)

    # ------------------------------------------------------------------ compiling
    def _compile(self, key, labelled, reason, leaves, roots, args, kwargs):
        rec = _Compile(len(self._compiles) + 1, reason)
        self._compiles.append(rec)
        snap = Snapshot(roots)
        t0 = time.perf_counter()
        try:
            tr = run_trace(self.__name__, self.fn, args, kwargs, leaves, roots, self.fullgraph)
        except GraphBreakError as e:
            snap.restore()
            rec.reason += f"; graph break: {e}"
            raise JitError(f"{self.__name__}: cannot capture (fullgraph=True): {e.reason} at "
                           f"{e.where}") from None
        except BaseException:
            snap.restore()
            rec.reason += "; the function raised (state restored)"
            raise
        rec.trace_s = time.perf_counter() - t0
        self._last_key = labelled
        if tr.graph is None:
            self._graph_break(rec, *tr.breaks[0])
            return tr.result
        t1 = time.perf_counter()
        try:
            graph, counts = optimise(tr.graph)
        except ValueError as e:  # a guard that cannot be hoisted: a data-dependent read
            if self.fullgraph:
                rec.reason += f"; graph break: {e}"
                snap.restore()
                raise JitError(f"{self.__name__}: cannot capture (fullgraph=True): a "
                               f"data-dependent read: {e}") from None
            self._graph_break(rec, "a data-dependent read", str(e))
            return tr.result
        program = self._backend_compile(graph)
        rec.kernels = getattr(program, "kernels", None)
        rec.compile_s = time.perf_counter() - t1
        rec.counts = counts
        rec.buffers = graph.nbuffers
        rec.groups = len({op.group for op in graph.ops if op.group is not None})
        rec.guards = len(graph.guards)
        entry = _Entry(key, program, rec)
        entry.pins = labelled  # the key names tensors by id: keep them alive with the entry
        rec.entry = entry
        self._cache[key] = entry
        if len(self._cache) > self.max_cache:
            _, old = self._cache.popitem(last=False)
            old.record.evicted = True
            self._evictions.append(old.record.reason)
            if not self._overflow_warned:
                self._overflow_warned = True
                reasons = "; ".join(c.reason for c in self._compiles[-self.max_cache - 1:])
                warnings.warn(f"{self.__name__}: more than max_cache={self.max_cache} programs; "
                              f"evicting the least recently used. Recompile reasons: {reasons}",
                              RuntimeWarning, stacklevel=3)
        return tr.result

    def _backend_compile(self, graph):
        if self.backend == "c":
            try:
                return cbackend.compile_graph(graph)
            except cbackend.kcache.CompileError as e:
                if self.requested_backend == "c":
                    raise JitError(f"{self.__name__}: backend 'c': {e}") from None
                logger.warning("%s: C kernels failed to compile, this program runs on the "
                               "numpy backend: %s", self.__name__, e)
        return compile_graph(graph)

    def _graph_break(self, rec, reason, where):
        self._eager_reason = f"{reason} at {where}"
        rec.reason += f"; graph break: {reason} at {where}"
        warnings.warn(f"{self.__name__}: graph break: {reason} at {where}; running eagerly from "
                      "now on (fullgraph=True makes this an error)", RuntimeWarning, stacklevel=4)

    # ------------------------------------------------------------------ replaying
    def _replay(self, entry, leaves):
        program = entry.program
        g = program.graph
        values = []
        for inp in g.inputs:
            if inp.kind == "arg":
                values.append(leaves[inp.get]._data)
            else:
                values.append(inp.get())
        held = _held_grads(entry.replaced_grads, values) if entry.replaced_grads else None
        if held:
            # .grad tensors the program replaces without reading: dropped once its guards
            # have passed (``held.clear``), so that the old gradient is freed before the new
            # one is computed, as zero_grad(set_to_none=True) frees it eagerly
            params = [p for p, _ in held]
            olds = [t for _, t in held]
            del held
            for p in params:
                p._grad = None
            try:
                res = program.run(*values, _release=olds.clear)
            except BaseException:
                for p, t in zip(params, olds):  # (empty once released)
                    p._grad = t
                raise
            if isinstance(res, GuardFailed):
                for p, t in zip(params, olds):
                    p._grad = t
                return res
        else:
            res = program.run(*values)
            if isinstance(res, GuardFailed):
                return res
        outs, effs = res
        for t in entry.bumps:
            t._bump()
        for i, p in entry.grads:
            v = effs[i]
            p._grad = None if v is None else _wrap(v if type(v) is np.ndarray else np.asarray(v))
        for i, apply in entry.other:
            apply(effs[i])
        out_leaves = []
        for o in outs:
            if isinstance(o, np.ndarray):
                out_leaves.append(_wrap(o))
            elif isinstance(o, np.generic):
                out_leaves.append(_wrap(np.asarray(o)))
            else:
                out_leaves.append(o)
        return unflatten(g.out_tree, out_leaves)

    def _verified(self, entry, leaves, roots, args, kwargs):
        """Replay, put the state and the tensor arguments back, run eagerly from the same
        state and inputs; raise if the outputs or the state they leave differ. The eager run's
        state is the one kept (written arguments included), as after one call."""
        arg_tensors = [(f"argument leaf {i}", t) for i, t in enumerate(leaves)
                       if isinstance(t, Tensor)]
        before = Snapshot(roots, [t for _, t in arg_tensors])
        replayed = self._replay(entry, leaves)
        if isinstance(replayed, GuardFailed):
            before.restore()
            return replayed  # the caller recompiles, as after a plain replay
        rep_leaves: list = []
        flatten(replayed, rep_leaves)
        rep_leaves = [t._data.copy() if isinstance(t, Tensor) else t for t in rep_leaves]
        after = _state_values(roots, arg_tensors)  # (copies: the restore writes in place)
        before.restore()
        _EAGER[0] += 1
        try:
            eager = self.fn(*args, **kwargs)
        except BaseException:
            before.restore()  # a failed call leaves the state as it was
            raise
        finally:
            _EAGER[0] -= 1
        eager_leaves: list = []
        flatten(eager, eager_leaves)
        diff = _first_diff(rep_leaves, eager_leaves, after, _state_values(roots, arg_tensors),
                           VERIFY_TOL.get(self.backend))
        if diff is not None:
            raise JitError(f"{self.__name__}: verify: the replayed program and eager execution "
                           f"differ at {diff} (a stale program: something the guards do not "
                           "check has changed; please report it)")
        return detach_outputs(eager)  # as a replay returns them

    # ------------------------------------------------------------------ reporting
    def _program(self, which):
        done = [c for c in self._compiles if c.entry is not None]
        if not done:
            raise JitError(f"{self.__name__}: nothing compiled yet; call the function first")
        return done[which].entry.program

    def graph_ir(self, which=-1):
        """The optimised IR of a compiled program (the latest by default), whatever the
        backend (backend "c"'s program with its kernel ops: ``kernel_graph()``)."""
        p = self._program(which)
        return getattr(p, "ir", p.graph)

    def kernel_graph(self, which=-1) -> str:
        """The program as backend "c" runs it: its fusion groups as ``kernelN`` ops (the
        optimised IR itself on the numpy backend)."""
        return str(self._program(which).graph)

    def graph(self, which=-1) -> str:
        """The compiled program, printed one op per line (jaxpr-like).

        Example:
            >>> import chainrule as cr
            >>> f = cr.jit(lambda x: (x * x).sum())
            >>> _ = f(cr.ones(3))
            >>> print(f.graph())  # doctest: +NORMALIZE_WHITESPACE
            <lambda>(
                %1:f32[3]  <- arg 0
            ) {
              %2:f32[3] = mul %1 %1                                                  # into buf0
              %3:f32[] = sum %2 axes=None keepdims=False
              return %3
            }
        """
        return str(self.graph_ir(which))

    def source(self, which=-1) -> str:
        """The generated Python source of a compiled program."""
        return self._program(which).source

    def explain(self) -> str:
        """Every compile: its reason, trace and compile time, ops before and after each pass,
        buffers, fusion groups, guards, cache hits; graph breaks with file:line.

        Example:
            >>> import chainrule as cr
            >>> f = cr.jit(lambda x: x + 1)
            >>> _ = f(cr.ones(2)); _ = f(cr.ones(2)); _ = f(cr.ones(3))
            >>> print(f.explain().splitlines()[2])
              reason: first call
        """
        lines = [f"{self.__name__}: {len(self._compiles)} compile(s), backend {self.backend}, "
                 f"{len(self._cache)}/{self.max_cache} cached"]
        if self._warmup_note is not None:
            lines.append(f"warm-up: {self._warmup_note}")
        for c in self._compiles:
            lines.append(f"compile {c.number}:")
            lines.append(f"  reason: {c.reason}")
            lines.append(f"  trace {c.trace_s * 1e3:.1f} ms, compile {c.compile_s * 1e3:.1f} ms")
            if c.counts:
                lines.append("  ops: " + " -> ".join(f"{n} {k}" for k, n in c.counts))
                lines.append(f"  buffers {c.buffers}, elementwise groups {c.groups}, guards "
                             f"{c.guards}, cache hits {c.entry.hits if c.entry else 0}"
                             + (" (evicted)" if c.evicted else ""))
            if c.kernels is not None:
                k = c.kernels
                lines.append(f"  C kernels {k.kernels} ({k.fused} ops fused), "
                             + ("compiled" if k.compiled or not k.kernels else "from the cache"))
                run = getattr(getattr(c.entry, "program", None), "run", None)
                if getattr(run, "note", None):  # backend c's OpenBLAS setting (cblas.Tuned)
                    lines.append(f"  {run.note}")
                lines.extend(f"  {line}" for line in getattr(k, "lines", list)())
        if self._eager_reason:
            lines.append(f"graph break: {self._eager_reason}; running eagerly")
        return "\n".join(lines)

    def __repr__(self):
        return f"<jit {self.__name__}: {len(self._cache)} program(s)>"


def tree_sig(tree):
    """The structure of flattened arguments, hashable."""
    if isinstance(tree, int):
        yield tree
        return
    kind, items = tree
    yield kind.__name__
    for x in items:
        if kind is dict:
            yield x[0]
            yield from tree_sig(x[1])
        else:
            yield from tree_sig(x)


_EAGER = [0]  # > 0 while verify runs a function eagerly: jitted functions it calls run eagerly


def _held_grads(params, values):
    """[(parameter, its .grad)] for the parameters whose current ``.grad`` the program does not
    read (its array is none of the input values)."""
    read = {id(v) for v in values}
    out = []
    for p in params:
        g = p._grad
        if g is not None and id(g._data) not in read:
            out.append((p, g))
    return out


def _expected(entry, desc):
    for gd in entry.program.graph.guards:
        if gd.desc == desc:
            return gd.expected
    return None


def _state_values(roots, args=()):
    tensors, params, optstates, _ = state_of(roots)
    vals = [(d, t._data.copy()) for d, t in args]
    vals += [(f"{d}.grad", None if t._grad is None else t._grad._data.copy()) for d, t in args]
    vals += [(d, t._data.copy()) for d, t in tensors]
    vals += [(f"{d}.grad", None if p._grad is None else p._grad._data.copy()) for d, p in params]
    for d, _opt, _p, st in optstates:
        for k, v in st.items():
            vals.append((f"{d} state {k!r}", v._data.copy() if isinstance(v, Tensor) else v))
    return vals


VERIFY_TOL = {"c": dict(rtol=1e-4, atol=1e-6)}
"""How closely verify compares a backend's replay with eager: bitwise (absent here) where the
backend computes as NumPy does; backend "c"'s fused exp, log and tanh are the C library's,
about an ulp from NumPy's, so its floating-point results are compared with a tolerance."""


def _same(a, b, tol=None):
    if isinstance(a, Tensor):
        a = a._data
    if isinstance(b, Tensor):
        b = b._data
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if tol is not None and a.dtype.kind in "fc":
            return bool(np.allclose(a, b, equal_nan=True, **tol))
        return np.array_equal(a, b, equal_nan=True)
    return a == b


def _first_diff(rep_out, eager_out, rep_state, eager_state, tol=None):
    if len(rep_out) != len(eager_out):
        return "the number of outputs"
    for i, (a, b) in enumerate(zip(rep_out, eager_out)):
        if not _same(a, b, tol):
            return f"output {i}"
    if [d for d, _ in rep_state] != [d for d, _ in eager_state]:
        return "the layout of the captured state"
    for (d, a), (_, b) in zip(rep_state, eager_state):
        if (a is None) != (b is None) or (a is not None and not _same(a, b, tol)):
            return d
    return None


def jit(fn=None, *, backend: str = "auto", fullgraph: bool = False, max_cache: int = 8,
        verify=False, warmup="auto"):
    """Capture ``fn`` once and replay it as a planned program (a decorator or a call).

    The first call runs ``fn`` eagerly while recording every array operation (forward, every
    backward rule, ``.grad`` writes, optimiser updates, BatchNorm statistics, dropout draws;
    a call that creates ``.grad`` or optimiser state first runs once untraced, see
    ``warmup``);
    later calls with the same guards (argument shapes, dtypes and devices, Python argument
    values, grad mode, train/eval, captured tensors, optimiser state layout) replay the
    optimised program on raw arrays. A changed guard recompiles and says why (logger
    ``chainrule.jit``, :meth:`JitFunction.explain`). A host read (``.item()``, ``bool(t)``,
    printing) stops capture: the function then runs eagerly with one warning naming the
    file:line, or, with ``fullgraph=True``, raises :class:`chainrule.errors.JitError`.

    Args:
        fn: the function; omitted, ``jit(...)`` returns a decorator.
        backend: ``"c"`` (fusion groups compiled to C kernels through cffi: the ``jit``
            extra and a C compiler), ``"numpy"`` (always available), or ``"auto"``: ``"c"``
            when it can run, else ``"numpy"`` with one logged warning saying why.
        fullgraph: raise instead of running eagerly after a graph break.
        max_cache: programs kept (least recently used evicted, with one warning).
        verify: True or N: every N-th call also runs eagerly from the same state and raises
            JitError naming the first output or state entry that differs (also
            ``CHAINRULE_JIT_VERIFY=N``).
        warmup: ``"auto"`` runs the first call eagerly, without tracing, when it may create
            captured state (a parameter's ``.grad`` is None, an optimiser has no state yet):
            the program is then traced on the second call, against the state every later
            call starts from, so a training step compiles once (``explain()`` says so).
            ``True`` always warms up on the first call; ``False`` traces it.

    Example:
        >>> import chainrule as cr
        >>> @cr.jit
        ... def f(x):
        ...     return (x * x).sum()
        >>> f(cr.tensor([1.0, 2.0])), f(cr.tensor([3.0, 4.0]))
        (tensor(5.), tensor(25.))
    """
    if fn is None:
        return functools.partial(jit, backend=backend, fullgraph=fullgraph,
                                 max_cache=max_cache, verify=verify, warmup=warmup)
    return JitFunction(fn, backend, fullgraph, max_cache, verify, warmup)
