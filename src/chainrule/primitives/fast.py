"""The one seam for fast paths: NumPy-specific kernels that stand in for a primitive's general
code when their arguments suit them, switched on and off together.

A kernel is registered with :func:`kernel` under a name and returns None when it does not
apply to its arguments (another array module, dtype, layout or size); the caller then runs the
general code, which stays the definition (and the only code on CuPy). Primitives call kernels
through :data:`K` only (``K.blas_sum(xp, x, axes)``), never by their module names, so that one
switch covers all of them: with fast paths off every ``K.<name>`` declines (returns None) and
the general code runs everywhere. The kernels used in a backward on raw arrays are called from
a primitive's raw-vjp slot (``Primitive(..., vjp_raw=...)``), whose rules fall back to the
differentiable ``vjp`` rules when a kernel declines.

The registered kernels (``sorted(KERNELS)``): ``blas_sum`` (sums as BLAS products with a ones
vector), ``conv_flat`` and ``conv_transpose_flat`` (stride-1 convolutions on the flat layout),
``gelu`` and ``gelu_backward`` (float32 GELU in cache-sized blocks), ``layer_norm_rows`` and
``layer_norm_vjp_rows`` (layer norm over trailing axes as row products), ``lstm_backward`` and
``gru_backward`` (the scans' backward recurrences written in place), ``rows_add`` (an
embedding's backward as sorted row sums) and ``self_attention_vjp`` (the fused attention
backward). Under chainrule.jit a kernel registered with ``whole=True`` (``lstm_backward``,
``gru_backward``, ``layer_norm_vjp_rows``, ``self_attention_vjp``) is recorded as one op
instead of op by op (:data:`TRACE_CALL`). The op-table tests run every row with fast paths
on and off and check that each kernel is reached (tests/test_fast_paths.py).

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import RAW, fast_paths
    >>> x = np.ones((64, 128), dtype=np.float32)
    >>> with fast_paths(False):  # NumPy's own reduction
    ...     general = RAW.sum(x, axes=(0,), keepdims=False)
    >>> bool((RAW.sum(x, axes=(0,), keepdims=False) == general).all())  # blas_sum
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import contextmanager

KERNELS: dict[str, Callable] = {}
"""Every registered kernel by name."""

TRACE_CALL: list = [None]
"""``[hook]`` while chainrule.jit records a trace: ``hook(op_name, fn, args, kwargs)`` runs a
kernel registered with ``whole=True`` and records it as one op named ``kernel.<name>`` (None
otherwise), so that a compiled program calls it as eager code does (and a backend may put its
own version in its place) instead of replaying its NumPy calls one by one."""


class _Kernels:
    """The seam: one attribute per kernel, the kernel itself or, with fast paths off, a
    function that declines."""

    def __repr__(self):
        return f"<fast-path kernels ({'on' if _ON[0] else 'off'}): {', '.join(sorted(KERNELS))}>"


K = _Kernels()
_ON = [True]


def _declined(*args, **kwargs):
    return None


def kernel(name: str, whole: bool = False) -> Callable[[Callable], Callable]:
    """Register the decorated function as fast-path kernel ``name`` (reached as ``K.<name>``);
    it must return None when it does not apply. The function is returned unchanged.

    ``whole=True``: under chainrule.jit the kernel is recorded as one op (see
    :data:`TRACE_CALL`); it must then return only new arrays (no views of its inputs), and
    decide whether it applies from its arguments' dtypes, shapes and array module alone.

    Example:
        >>> @kernel("doc_example")
        ... def twice(xp, x):
        ...     return None if xp.__name__ != "numpy" else x * 2
        >>> import numpy as np
        >>> int(K.doc_example(np, np.int64(3)))
        6
        >>> del KERNELS["doc_example"]; del K.doc_example
    """
    def register(fn: Callable) -> Callable:
        if name in KERNELS:
            raise ValueError(f"fast-path kernel {name!r} registered twice")
        entry = _recorded(f"kernel.{name}", fn) if whole else fn
        KERNELS[name] = entry
        setattr(K, name, entry if _ON[0] else _declined)
        return fn
    return register


def _recorded(op_name: str, fn: Callable) -> Callable:
    """``fn``, recorded as one op by the jit's hook while it traces."""
    fn.chainrule_fresh = True  # the jit's memory planner: its outputs are new arrays

    @functools.wraps(fn)
    def call(*args, **kwargs):
        hook = TRACE_CALL[0]
        if hook is None:
            return fn(*args, **kwargs)
        return hook(op_name, fn, args, kwargs)

    return call


def fast_paths_enabled() -> bool:
    """Whether the fast-path kernels are in use (True unless switched off).

    Example:
        >>> fast_paths_enabled()
        True
    """
    return _ON[0]


def set_fast_paths(enabled: bool) -> None:
    """Use the fast-path kernels (True, the default) or only the general code (False), for
    the whole process, as ``torch.backends.<backend>.enabled`` does.

    Example:
        >>> set_fast_paths(False); fast_paths_enabled()
        False
        >>> set_fast_paths(True)
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"set_fast_paths: enabled must be a bool, got {type(enabled).__name__}")
    _ON[0] = enabled
    for name, fn in KERNELS.items():
        setattr(K, name, fn if enabled else _declined)


@contextmanager
def fast_paths(enabled: bool = True):
    """A context in which the fast-path kernels are on or off (restored on exit), as
    ``torch.backends.cudnn.flags(enabled=...)``.

    Example:
        >>> with fast_paths(False):
        ...     fast_paths_enabled()
        False
    """
    before = _ON[0]
    set_fast_paths(enabled)
    try:
        yield
    finally:
        set_fast_paths(before)
