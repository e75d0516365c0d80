"""chainrule.jit: capture a whole function (a training step included) once, replay it as a
planned program with no Python graph work. See docs/jit.md.

Example:
    >>> import chainrule as cr
    >>> f = cr.jit(lambda x: (x.exp() * 2).sum())
    >>> float(f(cr.zeros(3))), float(f(cr.zeros(3)))
    (6.0, 6.0)
"""

from .api import JitFunction, jit

__all__ = ["JitFunction", "jit"]
