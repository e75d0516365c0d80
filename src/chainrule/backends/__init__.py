"""PyTorch's ``torch.backends`` flags, with what each does here.

chainrule computes with NumPy/OpenBLAS on the CPU and CuPy (cuBLAS) on NVIDIA GPUs; it does
not use cuDNN, MPS, oneDNN (mkldnn) or OpenMP. The flags that PyTorch programs set are real
attributes, start at PyTorch's defaults, and can be read back, but none changes chainrule's
numbers or speed: ``cuda.matmul.allow_tf32`` (CuPy chooses TF32 only through the
``CUPY_TF32`` environment variable, read when CuPy loads), ``cudnn.benchmark``,
``cudnn.deterministic`` (chainrule's kernels are deterministic), ``cudnn.enabled``,
``cudnn.allow_tf32``. ``is_available()`` answers truthfully: False for cuDNN, MPS, mkldnn
and OpenMP.

Example:
    >>> import chainrule
    >>> chainrule.backends.cudnn.benchmark = True  # accepted; no effect here
    >>> chainrule.backends.mps.is_available(), chainrule.backends.cuda.matmul.allow_tf32
    (False, False)
"""

from . import cpu, cuda, cudnn, mkldnn, mps, openmp

__all__ = ["cpu", "cuda", "cudnn", "mkldnn", "mps", "openmp"]
