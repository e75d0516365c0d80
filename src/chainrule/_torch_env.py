"""Top-level PyTorch names about the environment (issue 14): ``compile``, precision and
determinism switches, thread counts, ``Size``, ``dtype``, ``finfo``/``iinfo``.

Example:
    >>> import chainrule as torch
    >>> float(torch.finfo(torch.float32).eps) == 2.0 ** -23, torch.Size([2, 3]) == (2, 3)
    (True, True)
"""

from __future__ import annotations

import os
import warnings

from .backend import DType, as_dtype
from .backend import np as _np
from .backend.threads import num_threads

__all__ = ["Size", "are_deterministic_algorithms_enabled", "compile", "dtype", "finfo",
           "get_float32_matmul_precision", "get_num_threads", "iinfo",
           "set_float32_matmul_precision", "set_num_threads", "set_printoptions",
           "use_deterministic_algorithms"]

dtype = DType  # ``isinstance(x, torch.dtype)``


class _SizeMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, tuple)


class Size(tuple, metaclass=_SizeMeta):
    """PyTorch's ``torch.Size``. chainrule's shapes are plain tuples, so every tuple passes
    ``isinstance(shape, Size)``; ``Size([2, 3])`` builds one, with ``numel()``.

    Example:
        >>> import chainrule
        >>> s = chainrule.Size([2, 3])
        >>> s, s.numel(), isinstance(chainrule.ones(2).shape, chainrule.Size)
        ((2, 3), 6, True)
    """

    def numel(self) -> int:
        """The product of the sizes."""
        n = 1
        for s in self:
            n *= int(s)
        return n


def finfo(type=None):
    """Machine limits of a float dtype (NumPy's finfo: ``eps``, ``max``, ``min``, ``tiny``,
    ``bits``, ``resolution``); the default float dtype when None."""
    from .backend import default_float  # noqa: PLC0415

    return _np.finfo(as_dtype(type).np if type is not None else default_float().np)


def iinfo(type):
    """Limits of an integer dtype (NumPy's iinfo: ``max``, ``min``, ``bits``)."""
    return _np.iinfo(as_dtype(type).np)


_STATE = {"precision": "highest", "deterministic": False, "compile_noted": False}


def set_float32_matmul_precision(precision: str) -> None:
    """Recorded for ``get_float32_matmul_precision``; chainrule's float32 products are always
    computed in float32 (NumPy/OpenBLAS, cuBLAS without TF32), i.e. PyTorch's "highest"."""
    if precision not in ("highest", "high", "medium"):
        raise ValueError(f"set_float32_matmul_precision: expected 'highest', 'high' or "
                         f"'medium', got {precision!r}")
    _STATE["precision"] = precision


def get_float32_matmul_precision() -> str:
    """What ``set_float32_matmul_precision`` last recorded (default "highest")."""
    return _STATE["precision"]


def use_deterministic_algorithms(mode: bool, *, warn_only: bool = False) -> None:
    """Recorded; chainrule's kernels are deterministic already (same inputs, same bits on the
    CPU), so there is nothing to switch."""
    _STATE["deterministic"] = bool(mode)


def are_deterministic_algorithms_enabled() -> bool:
    """What ``use_deterministic_algorithms`` last recorded."""
    return _STATE["deterministic"]


def get_num_threads() -> int:
    """Threads chainrule's own kernels may use (OMP_NUM_THREADS when set, else the cores,
    at most 4)."""
    return num_threads()


def set_num_threads(n: int) -> None:
    """Set the threads of chainrule's own kernel pool (through OMP_NUM_THREADS). NumPy's
    BLAS fixes its thread count when it loads: set OPENBLAS_NUM_THREADS before starting
    Python to change that too."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    os.environ["OMP_NUM_THREADS"] = str(n)


def compile(model=None, *, fullgraph: bool = False, dynamic=None, backend="inductor",
            mode=None, options=None, disable: bool = False):
    """PyTorch's ``torch.compile``: here the identity, with a one-time note. chainrule's
    compiler, ``chainrule.jit``, captures whole steps and returns outputs cut from the graph,
    so a compiled module would stop the backward pass a PyTorch program runs through it; the
    model or function runs eagerly, with the same results. Works as ``compile(model)`` and as
    a decorator with or without arguments.

    Example:
        >>> import warnings, chainrule
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     f = chainrule.compile(lambda x: x * 2)
        >>> f(chainrule.ones(1))
        tensor([2.])
    """
    if model is None:
        return lambda m: compile(m, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                 mode=mode, options=options, disable=disable)
    if not _STATE["compile_noted"] and not disable:
        _STATE["compile_noted"] = True
        warnings.warn("chainrule.compile returns the model unchanged: chainrule has no JIT "
                      "for modules, so it runs eagerly, with the same results; to capture a "
                      "whole training step, wrap the step function in chainrule.jit",
                      UserWarning, stacklevel=2)
    return model


_PROFILES = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80),
             "full": (4, float("inf"), 3, 80)}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None) -> None:
    """How tensors print, as PyTorch's: decimals, the element count above which the middle is
    summarised, the items kept at each edge, the line width, ``profile`` ("default", "short",
    "full") and ``sci_mode`` (True/False forces scientific notation on or off, None decides).

    Example:
        >>> import chainrule
        >>> chainrule.set_printoptions(precision=2)
        >>> chainrule.tensor([1.23456])
        tensor([1.23])
        >>> chainrule.set_printoptions(profile="default")
    """
    from ._tensor_str import PRINT_OPTIONS  # noqa: PLC0415

    opts = PRINT_OPTIONS

    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: profile must be one of {sorted(_PROFILES)}, "
                             f"got {profile!r}")
        opts.update(zip(("precision", "threshold", "edgeitems", "linewidth"),
                        _PROFILES[profile]), sci_mode=None)
    for key, value in (("precision", precision), ("threshold", threshold),
                       ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            if value < 0:
                raise ValueError(f"set_printoptions: {key} must be non-negative, got {value!r}")
            opts[key] = value
    if sci_mode is not None:
        opts["sci_mode"] = bool(sci_mode)


_HINTS = {
    "jit": "TorchScript (torch.jit) is not supported; run the model eagerly",
    "fx": "torch.fx graph capture is not supported",
    "distributions": "torch.distributions is not implemented; sample with chainrule.randn / "
                     "rand / multinomial / bernoulli / normal and write log-densities with ops",
    "fft": "torch.fft is not implemented",
    "hub": "torch.hub downloads models over the network; chainrule does not",
    "vmap": "use chainrule.func.vmap",
    "complex64": "complex dtypes are not supported",
    "complex128": "complex dtypes are not supported",
    "cfloat": "complex dtypes are not supported",
    "quantization": "quantization is not supported",
    "mps": "Apple's MPS backend is not supported (chainrule.backends.mps.is_available() is "
           "False); use the CPU or CUDA",
    "xpu": "Intel XPU is not supported; use the CPU or CUDA",
}


def missing(module_name: str, pytorch_name: str):
    """A module ``__getattr__`` for ``module_name``: a submodule of that name is imported on
    first use (``chainrule.func``); anything else raises an AttributeError that names the
    PyTorch feature and what to use instead."""
    import importlib  # noqa: PLC0415

    def __getattr__(name: str):  # noqa: N807 - the module protocol's name
        if name.startswith("__"):
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{module_name}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{module_name}.{name}":
                raise
        hint = _HINTS.get(name) if module_name == "chainrule" else None
        raise AttributeError(
            f"module {module_name!r} has no attribute {name!r}: PyTorch's "
            f"{pytorch_name}.{name} is not implemented in chainrule"
            + (f" ({hint})" if hint else "; see 'Porting a PyTorch program' in the README for "
               "what is covered and the alternatives"))

    return __getattr__
