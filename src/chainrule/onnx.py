"""PyTorch's ``torch.onnx``: the name exists so that programs import; export needs chainrule's
JIT (a traced program is what an ONNX graph is built from), which this version does not have.

Example:
    >>> import chainrule
    >>> chainrule.onnx.export(chainrule.nn.Linear(2, 2), (chainrule.ones(1, 2),), "m.onnx")
    Traceback (most recent call last):
    ...
    NotImplementedError: chainrule.onnx.export: ONNX export comes with chainrule.jit ...
"""

from __future__ import annotations

__all__ = ["export", "is_in_onnx_export"]


def export(model, args=(), f=None, *rest, **kwargs):
    """Refuses: ONNX export is built on the JIT's traced program (not in this version)."""
    raise NotImplementedError(
        "chainrule.onnx.export: ONNX export comes with chainrule.jit (it exports the traced "
        "program), which this version of chainrule does not have; to move a model to another "
        "framework, save its weights with chainrule.save(model.state_dict(), path) (a "
        "safetensors file that PyTorch and others read by name)")


def is_in_onnx_export() -> bool:
    """False: no export is ever running."""
    return False
