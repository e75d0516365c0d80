"""THE table of primitives. Importing this package registers every primitive.

Example:
    >>> from chainrule.primitives import REGISTRY
    >>> "matmul" in REGISTRY and "tanh" in REGISTRY
    True
"""

from . import (
    activation,
    attention,
    conv,
    elementwise,
    linalg,
    lowp,
    movement,
    random,
    recurrent,
    reduce,
    update,
)
from .core import RAW, REGISTRY, TENSOR, Aval, Primitive
from .fast import fast_paths, fast_paths_enabled, set_fast_paths

__all__ = ["RAW", "REGISTRY", "TENSOR", "Aval", "Primitive", "fast_paths", "fast_paths_enabled",
           "set_fast_paths"]
