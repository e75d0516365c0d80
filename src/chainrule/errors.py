"""chainrule's error types. Each subclasses the built-in a Python user would expect.

Example:
    >>> import chainrule
    >>> try:
    ...     chainrule.ones(3) + chainrule.ones(4)
    ... except chainrule.ShapeError as e:
    ...     print("add" in str(e))
    True
"""


class ShapeError(ValueError):
    """Shapes that do not fit the op (broadcasting, matmul, cat, reshape, indexing)."""


class DeviceError(RuntimeError):
    """Inputs of one op on different devices."""


class GraphError(RuntimeError):
    """Misuse of the autograd graph: freed buffers, in-place changes to saved tensors,
    backward of a non-scalar without a gradient, grad of a tensor that does not require it."""


class JitError(RuntimeError):
    """chainrule.jit cannot capture or replay a function: a host read with ``fullgraph=True``
    (named with its file:line), or a replay that differs from eager under ``verify``."""
