"""Random numbers as a primitive: ``rng_draw`` takes the generator's state as an explicit
input and returns the numbers and the advanced state (a key in, a key out: no hidden state).

``rng_draw(key; method, args, size) -> (values, new_key)``
    ``key`` is a chainrule Generator's PCG64 state as six 64-bit words
    ``[state_hi, state_lo, inc_hi, inc_lo, has_uint32, uinteger]`` (:func:`key_of`), stored
    as int64 (the bits of the unsigned words: chainrule tensors have no uint64). The impl
    sets a PCG64 bit generator to that state, calls ``numpy.random.Generator.<method>(*args,
    size=size)`` (``random``, ``standard_normal``, ``uniform``, ``normal``, ``exponential``,
    ``integers``, or ``permutation`` with ``size=None``) and returns the values and the state
    after the draw. The same state gives the same numbers as drawing from the Generator's own
    NumPy generator, so eager results do not depend on which way a draw goes.

Why a primitive: a trace (chainrule.jit) then sees every draw as an application whose state
is an input of the program and whose new state is an output (written back to the Generator
after each call), so dropout masks are fresh at every call and reproducible under
``manual_seed``, with nothing replayed from Python. ``chainrule.random.Generator.draw`` is the
one place that calls it (while a trace holds the generator's state as a key; eagerly it draws
the same stream straight from the generator). Not differentiable; under vmap one draw serves
the whole batch (``randomness="same"``).

Example:
    >>> import numpy as np
    >>> from chainrule.primitives.random import key_of, rng_draw
    >>> key = key_of(np.random.PCG64(0).state)
    >>> vals, new = rng_draw.impl(np, key, method="random", args=(), size=(2,))
    >>> bool((vals == np.random.Generator(np.random.PCG64(0)).random(2)).all())
    True
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import ShapeError
from .core import Aval, Primitive

_MASK = (1 << 64) - 1
_FLOAT = np.dtype(np.float64)
_INT = np.dtype(np.int64)
#: The NumPy Generator methods rng_draw offers, with the dtype of what they return.
METHODS = {"random": _FLOAT, "standard_normal": _FLOAT, "uniform": _FLOAT, "normal": _FLOAT,
           "exponential": _FLOAT, "integers": _INT, "permutation": _INT}
_LOCAL = threading.local()  # one PCG64 per thread, set to the given state at each draw


def key_of(state: dict) -> np.ndarray:
    """A PCG64 state dict (``bit_generator.state``) as the six words of a key (int64).

    Example:
        >>> import numpy as np
        >>> key_of(np.random.PCG64(1).state).shape
        (6,)
    """
    s = state["state"]
    return np.array([s["state"] >> 64, s["state"] & _MASK, s["inc"] >> 64, s["inc"] & _MASK,
                     state["has_uint32"], state["uinteger"]], dtype=np.uint64).view(np.int64)


def state_of(key) -> dict:
    """The PCG64 state dict of a key (the inverse of :func:`key_of`).

    Example:
        >>> import numpy as np
        >>> st = np.random.PCG64(1).state
        >>> state_of(key_of(st)) == st
        True
    """
    w = np.asarray(key).view(np.uint64).tolist()
    return {"bit_generator": "PCG64", "state": {"state": (w[0] << 64) | w[1],
                                                "inc": (w[2] << 64) | w[3]},
            "has_uint32": w[4], "uinteger": w[5]}


def _generator():
    g = getattr(_LOCAL, "g", None)
    if g is None:
        g = _LOCAL.g = np.random.Generator(np.random.PCG64(0))
    return g


def _draw(xp, key, method, args, size):
    g = _generator()
    g.bit_generator.state = state_of(key)
    fn = getattr(g, method)
    vals = fn(*args) if size is None else fn(*args, size=size)
    return np.asarray(vals), key_of(g.bit_generator.state)


def _shape(key, method, args, size):
    if method not in METHODS:
        raise ShapeError(f"rng_draw: unknown method {method!r}; select from {sorted(METHODS)}")
    if tuple(key.shape) != (6,) or np.dtype(key.dtype) != np.int64:
        raise ShapeError(f"rng_draw: the key must be 6 int64 words, got shape "
                         f"{tuple(key.shape)} and dtype {key.dtype}")
    if method == "permutation":
        shape = (int(args[0]),)
    else:
        shape = () if size is None else tuple(size)
    return Aval(shape, METHODS[method]), Aval((6,), np.dtype(np.int64))


rng_draw = Primitive("rng_draw", _draw, kind="random", differentiable=False,
                     multiple_results=True, shape=_shape)
