"""``chainrule.onnx``: export a model's inference graph to ONNX (PyTorch's ``torch.onnx``).

:func:`export` traces one call of the model with the jit's machinery (``chainrule.jit``'s
recorder: every primitive and NumPy-level operation the forward performs), maps each op of the
captured program to ONNX operators, checks the result with ``onnx.checker`` and writes it.
It needs the ``onnx`` extra (``pip install "chainrule[onnx]"``: the ``onnx`` package; tests
also run the file in ``onnxruntime``). docs/onnx.md says what maps and what does not.

Example:
    >>> import os, tempfile
    >>> import chainrule as cr
    >>> model = cr.nn.Sequential(cr.nn.Linear(4, 8), cr.nn.ReLU(), cr.nn.Linear(8, 2))
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.onnx")
    >>> proto = cr.onnx.export(model, (cr.randn(3, 4),), path, input_names=["x"],
    ...                        output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    >>> [n.op_type for n in proto.graph.node]
    ['Transpose', 'MatMul', 'Add', 'Relu', 'Transpose', 'MatMul', 'Add', 'Identity']
"""

from __future__ import annotations

from ._export import ExportError, export, is_in_onnx_export

__all__ = ["ExportError", "export", "is_in_onnx_export"]
