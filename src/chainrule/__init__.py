"""chainrule: backpropagation for Python, on NumPy (CPU) and CuPy (GPU).

Example:
    >>> import chainrule
    >>> w = chainrule.tensor([1.0, -2.0], requires_grad=True)
    >>> loss = ((w * 3.0) ** 2).sum()
    >>> loss.backward()
    >>> w.grad
    tensor([ 18., -36.])
"""

from . import (
    backend,
    errors,
    ops,
    primitives,
)
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .backend import (
    Device,
    DType,
    bool_,
    float16,
    float32,
    float64,
    get_array_module,
    int8,
    int16,
    int32,
    int64,
    set_default_dtype,
    uint8,
)
from .backend import Device as device  # noqa: N813 - PyTorch spells it chainrule.device
from .errors import DeviceError, GraphError, ShapeError
from .ops import *
from .random import Generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .tensor import Tensor, tensor

bool = bool_
float = float32
double = float64
long = int64
half = float16

__version__ = "0.1.0"


def get_default_dtype() -> DType:
    """The dtype of Python floats (float32 unless set_default_dtype changed it).

    Example:
        >>> import chainrule
        >>> chainrule.get_default_dtype()
        chainrule.float32
    """
    return backend.default_float()


def is_tensor(obj):
    """True for chainrule tensors.

    Example:
        >>> import chainrule
        >>> chainrule.is_tensor(chainrule.ones(1))
        True
    """
    return isinstance(obj, Tensor)


from . import autograd, data, io, nn, optim, testing  # noqa: E402  # noqa: E402,F401
from .io import load, save  # noqa: E402 - chainrule.save / chainrule.load
from .jit import jit  # noqa: E402 - chainrule.jit(fn): capture once, replay (docs/jit.md)
