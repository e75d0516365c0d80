"""Anomaly detection: a NaN or Inf produced in forward or backward raises at once, naming
the primitive and showing where in the user's code the op was created.

Example:
    >>> import chainrule
    >>> x = chainrule.tensor([-1.0], requires_grad=True)
    >>> with chainrule.autograd.detect_anomaly():
    ...     try:
    ...         x.log()
    ...     except chainrule.autograd.AnomalyError as e:
    ...         print(str(e).splitlines()[0])
    anomaly: forward of log produced 1 NaN/Inf value(s) in an output of shape (1,)
"""

from __future__ import annotations

import os
import traceback

from ..backend import get_array_module


class _Anomaly:
    """``enabled``: record where each op was created; ``check_nan``: also raise on NaN/Inf."""

    __slots__ = ("check_nan", "enabled")

    def __init__(self):
        self.enabled = False
        self.check_nan = True


ANOMALY = _Anomaly()


class AnomalyError(RuntimeError):
    """A non-finite value appeared while anomaly detection was on."""


def _count_nonfinite(a) -> int:
    if not hasattr(a, "dtype") or a.dtype.kind not in "fV":
        return 0
    xp = get_array_module(a)
    return int(a.size - xp.count_nonzero(xp.isfinite(a)))


_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _user_frames(stack) -> str:
    frames = [f for f in stack if not os.path.abspath(f.filename).startswith(_PKG + os.sep)]
    return "".join(traceback.format_list(frames[-3:])) if frames else ""


def check_forward(prim, out, inputs=()) -> None:
    """Raise if the output of ``prim`` holds NaN or Inf (called by ``apply`` in anomaly mode).
    When an input already held them, the message says so: the op only passed them on."""
    n = _count_nonfinite(out._data)
    if n:
        where = _user_frames(traceback.extract_stack()[:-2])
        bad_in = [i for i, a in enumerate(inputs) if _count_nonfinite(a)]
        what = (f"received non-finite values in input {bad_in[0]} and passed them on"
                if bad_in else "produced")
        raise AnomalyError(
            f"anomaly: forward of {prim.name} {what} {n} NaN/Inf value(s) in an output of shape "
            f"{tuple(out.shape)}\n" + (f"The op was called at:\n{where}" if where else ""))


def check_backward(node, i, gi) -> None:
    """Raise if the gradient a node sends to its input ``i`` holds NaN or Inf."""
    a = gi._data if hasattr(gi, "_data") else gi
    n = _count_nonfinite(a)
    if n:
        where = _user_frames(node.trace) if node.trace else ""
        raise AnomalyError(
            f"anomaly: backward of {node.prim.name} ({node.prim.node_name}) produced {n} NaN/Inf "
            f"value(s) in the gradient for its input {i} (shape {tuple(a.shape)})\n"
            + (f"The op was created at:\n{where}" if where else
               "(created before anomaly mode was on: no creation trace)"))


class detect_anomaly:  # noqa: N801 - PyTorch's name
    """Context manager / decorator that turns anomaly detection on: it records where each op
    was created (so backward errors, including version-counter errors, point at the forward
    line) and, unless ``check_nan=False``, raises on the first NaN/Inf in forward or backward.
    Slows every op down: for debugging only.

    Example:
        >>> import chainrule
        >>> with chainrule.autograd.detect_anomaly():
        ...     y = chainrule.ones(2, requires_grad=True).exp().sum()
        >>> y.item() > 0
        True
    """

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan

    def __enter__(self):
        self._prev = (ANOMALY.enabled, ANOMALY.check_nan)
        ANOMALY.enabled = True  # creation traces always; NaN checks only with check_nan
        ANOMALY.check_nan = self.check_nan
        return self

    def __exit__(self, *exc):
        ANOMALY.enabled, ANOMALY.check_nan = self._prev
        return False

    def __call__(self, fn):
        import functools  # noqa: PLC0415

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)

        return wrapper


def set_detect_anomaly(mode: bool) -> None:
    """Turn anomaly detection on or off globally.

    Example:
        >>> import chainrule
        >>> chainrule.autograd.set_detect_anomaly(False)
    """
    ANOMALY.enabled = bool(mode)


def is_anomaly_enabled() -> bool:
    """True while anomaly detection is on.

    Example:
        >>> import chainrule
        >>> chainrule.autograd.is_anomaly_enabled()
        False
    """
    return ANOMALY.enabled
