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
from .errors import DeviceError, GraphError, OutOfMemoryError, ShapeError
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


# ---- issue 14 (PyTorch compatibility): Tensor methods and typed constructors, in one module
from . import _torch_methods  # noqa: E402
from ._torch_methods import (  # noqa: E402
    BoolTensor,
    ByteTensor,
    CharTensor,
    DoubleTensor,
    FloatTensor,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
)

_torch_methods.bind(Tensor)

from . import amp, autograd, data, io, nn, optim, testing  # noqa: E402  # noqa: E402,F401
from .amp import autocast  # noqa: E402 - chainrule.autocast, as torch.autocast
from .jit import jit  # noqa: E402 - chainrule.jit(fn): capture once, replay (docs/jit.md)

# isort: split
# ---- issue 14 (PyTorch compatibility): environment namespaces, sparse, top-level names
from . import (  # noqa: E402
    _alias,
    _torch_env,
    accelerator,
    backends,
    cuda,
    onnx,
    serialization,
    sparse,
    utils,
)
from ._torch_env import (  # noqa: E402
    Size,
    are_deterministic_algorithms_enabled,
    compile,
    dtype,
    finfo,
    get_float32_matmul_precision,
    get_num_threads,
    iinfo,
    set_float32_matmul_precision,
    set_num_threads,
    set_printoptions,
    use_deterministic_algorithms,
)
from .io.serialization import load, save  # noqa: E402 - torch.save / torch.load
from .sparse import sparse_coo_tensor, spmm  # noqa: E402

Tensor.to_sparse = sparse.to_sparse
Tensor.is_sparse = False
_alias.install()  # sys.modules["torch"] = chainrule: torch.<sub> imports find chainrule's
_missing = _torch_env.missing("chainrule", "torch")


def __getattr__(name):
    """``chainrule.bfloat16`` is made on first use (ml_dtypes, the ``bf16`` extra, takes about
    a second to import; without it the AttributeError names the extra); other unknown names
    say which PyTorch feature is missing and what to use instead."""
    if name == "bfloat16":
        return backend.bfloat16
    return _missing(name)
