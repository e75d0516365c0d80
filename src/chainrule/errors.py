"""chainrule's error types. Each subclasses the built-in a Python user would expect.

Example:
    >>> import chainrule
    >>> try:
    ...     chainrule.ones(3) + chainrule.ones(4)
    ... except chainrule.ShapeError as e:
    ...     print("add" in str(e))
    True
"""


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit the op (broadcasting, matmul, cat, reshape, view, indexing).
    A ``RuntimeError``, as PyTorch's shape errors are (code written for PyTorch catches
    those), and a ``ValueError``, as chainrule's were.

    Example:
        >>> import chainrule
        >>> issubclass(chainrule.ShapeError, RuntimeError), issubclass(chainrule.ShapeError,
        ...                                                            ValueError)
        (True, True)
    """


class DeviceError(RuntimeError):
    """Inputs of one op on different devices."""


class OutOfMemoryError(RuntimeError, MemoryError):
    """An allocation that the device cannot satisfy; the message names the op, the shape and
    the dtype. A ``RuntimeError`` as ``torch.OutOfMemoryError`` is, and a ``MemoryError``.

    Example:
        >>> import chainrule
        >>> try:
        ...     chainrule.zeros(2**40, 2**20)
        ... except chainrule.OutOfMemoryError as e:
        ...     print(str(e).split(":")[0])
        zeros
    """


def out_of_memory(op: str, shape, dtype, err: BaseException) -> OutOfMemoryError:
    """The OutOfMemoryError for ``op`` failing to allocate ``shape`` x ``dtype``."""
    return OutOfMemoryError(f"{op}: out of memory allocating a tensor of shape {tuple(shape)} "
                            f"and dtype {dtype} ({type(err).__name__}: {err})")


class GraphError(RuntimeError):
    """Misuse of the autograd graph: freed buffers, in-place changes to saved tensors,
    backward of a non-scalar without a gradient, grad of a tensor that does not require it."""


class CLIError(Exception):
    """A user error in a ``chainrule`` command (a flag, a path, a checkpoint), or a run that
    cannot go on (a diverging loss, a full disk): printed on one line, never as a traceback.
    ``exit_code`` is the command's exit status: 2 for a bad command line (argparse's
    convention), 1 for a failure while running.

    Example:
        >>> from chainrule.errors import CLIError
        >>> e = CLIError("chainrule train: --lr must be a finite number, got nan")
        >>> e.exit_code, str(e)
        (2, 'chainrule train: --lr must be a finite number, got nan')
    """

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


class JitError(RuntimeError):
    """chainrule.jit cannot capture or replay a function: a host read with ``fullgraph=True``
    (named with its file:line), or a replay that differs from eager under ``verify``."""
