"""Random numbers: a seedable ``Generator`` and the global default one.

Numbers are drawn on the host with NumPy's PCG64 and moved to the device, so a seed gives the
same values on CPU and GPU.

Example:
    >>> import chainrule
    >>> _ = chainrule.manual_seed(0); a = chainrule.rand(2)
    >>> _ = chainrule.manual_seed(0); b = chainrule.rand(2)
    >>> bool((a == b).all())
    True
"""

from __future__ import annotations

import numpy as np


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
        return self.np.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        """Restore a state from get_state."""
        self.np.bit_generator.state = state
        return self


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


def _normal(shape, mean, std, generator):
    return _gen(generator).normal(mean, std, size=shape)


def _uniform(shape, a, b, generator):
    return _gen(generator).uniform(a, b, size=shape)
