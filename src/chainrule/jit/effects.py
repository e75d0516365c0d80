"""Host effects: library code that calls out of the arrays (a collective, an MPI request) and
wants a trace to replay the call instead of breaking the graph.

``host_effect(name, fn, array, *inputs)`` runs ``fn(array, *inputs)`` now, and while
``chainrule.jit`` records a trace it also records the call as an op that writes ``array`` in
place and reads ``inputs``: each replay calls ``fn`` again on that array and those inputs, at
the same point of the program. ``fn`` may only change ``array`` (in place) and state of its
own (it must not change ``inputs``); whatever it returns is ignored. As a write, the op
is never removed, merged or given a planned buffer by the passes (docs/jit.md).
``DistributedDataParallel`` records its bucket allreduces this way.

``tracing()`` says whether a trace is being recorded; ``graph_break(reason)`` ends the
recording (the function then runs eagerly, with one warning naming ``reason``).

Example:
    >>> import chainrule as cr
    >>> from chainrule.jit.effects import host_effect
    >>> calls = []
    >>> def double(a):
    ...     calls.append(1)
    ...     a *= 2
    >>> f = cr.jit(lambda x: cr.Tensor(host_effect("double", double, (x + 1)._data)))
    >>> [f(cr.ones(2)).tolist() for _ in range(3)], len(calls)
    ([[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]], 3)
"""

from __future__ import annotations

from . import trace as _trace


def tracing() -> bool:
    """True while ``chainrule.jit`` records a trace."""
    return _trace._REC[0] is not None


def trace_array():
    """The class of the arrays a trace records (an ndarray subclass)."""
    return _trace.TraceArray


def graph_break(reason: str) -> None:
    """End the recording of the trace in progress, if any (no-op otherwise)."""
    rec = _trace._REC[0]
    if rec is not None:
        rec.graph_break(reason, _trace._site())


def host_effect(name: str, fn, array, *inputs):
    """Call ``fn(array, *inputs)`` (writes ``array`` in place, only reads ``inputs``); under
    a trace, record the call so that every replay makes it again, on that replay's values of
    ``array`` and ``inputs``. Returns ``array``."""
    rec = _trace._REC[0]
    if rec is None:
        fn(array, *inputs)
        return array
    tw, pw = rec.template(array)
    tin, pin = rec.template(inputs)
    fn(pw, *pin)
    rec.written(array, "func", name, fn, (tw, *tin), {}, tw)
    return array
