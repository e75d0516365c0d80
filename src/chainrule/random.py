"""Random numbers: a seedable ``Generator`` and the global default one.

Numbers are drawn on the host with NumPy's PCG64 and moved to the device, so a seed gives the
same values on CPU and GPU. The random ops (rand, randn, randint, dropout masks, bernoulli,
multinomial ...) draw through :meth:`Generator.draw`; while chainrule.jit traces, that is an
application of the ``rng_draw`` primitive (``chainrule.primitives.random``) to the
generator's state as an explicit key input, which returns the advanced state: the numbers are
exactly those of the generator's own NumPy stream either way, and a trace sees the state as an
input and its advance as an output.

Example:
    >>> import chainrule
    >>> _ = chainrule.manual_seed(0); a = chainrule.rand(2)
    >>> _ = chainrule.manual_seed(0); b = chainrule.rand(2)
    >>> bool((a == b).all())
    True
"""

from __future__ import annotations

import numpy as np

from .primitives.random import key_of, rng_draw, state_of


class Generator:
    """A source of random numbers (PyTorch's ``torch.Generator`` interface).

    Example:
        >>> import chainrule
        >>> g = chainrule.Generator().manual_seed(42)
        >>> chainrule.randn(2, generator=g).shape
        (2,)
    """

    def __init__(self, device="cpu"):
        self._seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        self.np = np.random.Generator(np.random.PCG64(self._seed))
        self.device = device
        self._key = None  # while chainrule.jit traces: the state as a traced key array

    def manual_seed(self, seed: int) -> Generator:
        """Reset to a fixed seed; returns self."""
        seed = int(seed)
        if seed < 0:
            seed = seed % (2 ** 64)
        self._seed = seed
        self.np = np.random.Generator(np.random.PCG64(seed))
        return self

    def seed(self) -> int:
        """Reseed from fresh entropy; returns the new seed."""
        self.manual_seed(int(np.random.SeedSequence().entropy % (2 ** 63)))
        return self._seed

    def initial_seed(self) -> int:
        """The seed last set."""
        return self._seed

    def get_state(self) -> dict:
        """The generator state (a dict, restorable with set_state)."""
        if self._key is not None:
            return state_of(self._key)
        return self.np.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        """Restore a state from get_state."""
        if self._key is not None:
            self._key = key_of(state)
        else:
            self.np.bit_generator.state = state
        return self

    def key(self) -> np.ndarray:
        """The state as the ``rng_draw`` primitive's key: six 64-bit words (int64, a new
        array).

        Example:
            >>> import chainrule
            >>> chainrule.Generator().manual_seed(0).key().dtype
            dtype('int64')
        """
        if self._key is not None:
            return self._key
        return key_of(self.np.bit_generator.state)

    def set_key(self, key) -> None:
        """Set the state from a key (what ``rng_draw`` returns as its second output).

        Example:
            >>> import chainrule
            >>> g = chainrule.Generator().manual_seed(0); k = g.key()
            >>> a = g.draw("random", size=(2,)); g.set_key(k)
            >>> bool((g.draw("random", size=(2,)) == a).all())
            True
        """
        if self._key is not None:
            self._key = key
        else:
            self.np.bit_generator.state = state_of(key)

    def draw(self, method: str, *args, size=None) -> np.ndarray:
        """Numbers from ``numpy.random.Generator.<method>(*args, size=size)`` on this
        generator's stream. While chainrule.jit traces (the generator's state is then a
        traced key) the draw is an application of the ``rng_draw`` primitive: the key goes
        in and the advanced key comes back, so the trace sees the state as an input.
        Eagerly the same stream is drawn from directly: the same numbers, without the ~15 us
        of converting the state to a key and back (PyTorch likewise draws eagerly from its
        generators and makes the state explicit only in a compiled graph). Returns a host
        array.

        Example:
            >>> import chainrule
            >>> g = chainrule.Generator().manual_seed(0)
            >>> g.draw("integers", 0, 10, size=(3,)).shape
            (3,)
        """
        if self._key is None:
            fn = getattr(self.np, method)
            return np.asarray(fn(*args) if size is None else fn(*args, size=size))
        vals, new = rng_draw(self._key, method=method, args=args,
                             size=None if size is None else tuple(size))
        self._key = new._data
        return vals._data


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator (and NumPy's legacy global one); returns the generator.

    Example:
        >>> import chainrule
        >>> chainrule.manual_seed(3).initial_seed()
        3
    """
    np.random.seed(int(seed) % (2 ** 32))
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Reseed the default generator non-deterministically."""
    return default_generator.seed()


def initial_seed() -> int:
    """The default generator's seed."""
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    """The default generator's state."""
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    """Restore the default generator's state."""
    default_generator.set_state(state)


def _gen(generator) -> np.random.Generator:
    return (generator or default_generator).np


def _draw(generator, method: str, *args, size=None) -> np.ndarray:
    """A draw through the rng_draw primitive (:meth:`Generator.draw`) from ``generator`` or
    the default generator."""
    return (generator or default_generator).draw(method, *args, size=size)


def _normal(shape, mean, std, generator):
    return _draw(generator, "normal", mean, std, size=shape)


def _uniform(shape, a, b, generator):
    return _draw(generator, "uniform", a, b, size=shape)
