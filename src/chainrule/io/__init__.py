"""Saving and loading: tensors, state_dicts and nested containers as safetensors files;
reading PyTorch's ``torch.save`` files safely (:func:`load_pytorch`).

No pickle anywhere: a file from a stranger cannot run code. ``chainrule.save`` /
``chainrule.load`` use this format for tensor containers; for whole objects they pickle as
PyTorch does (see :mod:`chainrule.io.serialization`). The file layout is documented in
:mod:`chainrule.io.checkpoint`.

Example:
    >>> import os, tempfile, chainrule
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> chainrule.io.save({"weight": chainrule.ones(2)}, path)
    >>> chainrule.io.load(path)
    {'weight': tensor([1., 1.])}
"""

from .checkpoint import FORMAT_VERSION, CheckpointError, load, save
from .pytorch import load_pytorch, load_weights

__all__ = ["FORMAT_VERSION", "CheckpointError", "load", "load_pytorch", "load_weights", "save"]
