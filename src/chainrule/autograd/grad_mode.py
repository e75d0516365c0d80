"""Grad mode: whether ops are recorded for backward.

``no_grad``, ``enable_grad``, ``set_grad_enabled`` and ``inference_mode`` work as context
managers and as decorators, as in PyTorch.

Example:
    >>> import chainrule
    >>> x = chainrule.ones(2, requires_grad=True)
    >>> with chainrule.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
"""

from __future__ import annotations

import functools


class _State:
    __slots__ = ("enabled",)

    def __init__(self):
        self.enabled = True


STATE = _State()


def is_grad_enabled() -> bool:
    """True when ops are being recorded."""
    return STATE.enabled


class _GradModeContext:
    _target: bool

    def __enter__(self):
        self._prev = STATE.enabled
        STATE.enabled = self._target
        return self

    def __exit__(self, *exc):
        STATE.enabled = self._prev
        return False

    def __call__(self, fn):
        target = self._target

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = STATE.enabled
            STATE.enabled = target
            try:
                return fn(*args, **kwargs)
            finally:
                STATE.enabled = prev

        return wrapper


class no_grad(_GradModeContext):  # noqa: N801 - PyTorch's name
    """Context manager / decorator: record nothing inside.

    Example:
        >>> import chainrule
        >>> @chainrule.no_grad()
        ... def f(x): return x * 2
        >>> f(chainrule.ones(1, requires_grad=True)).requires_grad
        False
    """

    _target = False


class enable_grad(_GradModeContext):  # noqa: N801
    """Context manager / decorator: record ops even inside ``no_grad``.

    Example:
        >>> import chainrule
        >>> with chainrule.no_grad(), chainrule.enable_grad():
        ...     chainrule.is_grad_enabled()
        True
    """

    _target = True


class inference_mode(no_grad):  # noqa: N801
    """Like ``no_grad`` (chainrule records nothing in either).

    Example:
        >>> import chainrule
        >>> with chainrule.inference_mode(): chainrule.is_grad_enabled()
        False
    """

    def __init__(self, mode: bool = True):
        self._target = not mode


class set_grad_enabled(_GradModeContext):  # noqa: N801
    """Set grad mode: as a function call it takes effect at once; as a context it restores.

    Example:
        >>> import chainrule
        >>> with chainrule.set_grad_enabled(False): chainrule.is_grad_enabled()
        False
    """

    def __init__(self, mode: bool):
        self._target = bool(mode)
        self._prev = STATE.enabled
        STATE.enabled = self._target

    def __enter__(self):
        return self
