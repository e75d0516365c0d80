"""The functional API: every op as a function (``chainrule.exp(x)``); most are also Tensor
methods. Composites here are built from primitives only and carry no derivative code.

Example:
    >>> import chainrule
    >>> chainrule.ops.softmax(chainrule.zeros(2), dim=0)
    tensor([0.5000, 0.5000])
"""

import importlib as _importlib

from ..tensor import use_ops as _use_ops
from . import (
    arith,
    creation,
    elementwise,
    indexing,
    linalg,
    misc,
    rearrange,
    reduce,
    sampling,
    shape,
    sorting,
)
from ._util import cast, normalize_dim, normalize_dims


def _export(*modules) -> None:
    """Every public function defined in ``modules`` becomes ``chainrule.ops.<name>`` (and,
    through ``from .ops import *``, ``chainrule.<name>``): a new op is written once, in its
    module, and needs no import line here."""
    here = globals()
    for m in modules:
        for name, value in vars(m).items():
            if not name.startswith("_") and callable(value) and not isinstance(value, type) \
                    and getattr(value, "__module__", None) == m.__name__:
                here[name] = value


_MODULES = (creation, elementwise, linalg, reduce, shape, arith, indexing, misc, rearrange,
            sampling, sorting)
_export(*_MODULES)

__all__ = sorted(n for n in globals() if not n.startswith("_")
                 and n not in {m.__name__.rsplit(".", 1)[1] for m in _MODULES})

_use_ops(_importlib.import_module(__name__))  # this module: the operators delegate here
