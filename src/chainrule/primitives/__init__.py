"""THE table of primitives. Importing this package registers every primitive.

Example:
    >>> from chainrule.primitives import REGISTRY
    >>> "matmul" in REGISTRY and "tanh" in REGISTRY
    True
"""

from . import (
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

__all__ = ["RAW", "REGISTRY", "TENSOR", "Aval", "Primitive"]
