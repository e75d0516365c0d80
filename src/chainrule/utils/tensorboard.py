"""PyTorch's ``torch.utils.tensorboard``: ``SummaryWriter`` writes real TensorBoard event
files through tensorboardX (install the ``tensorboard`` extra:
``pip install "chainrule[tensorboard]"``). chainrule tensors are accepted wherever a value,
array or image goes; they are passed on as NumPy arrays.

Example:
    >>> import tempfile, chainrule
    >>> from chainrule.utils.tensorboard import SummaryWriter
    >>> w = SummaryWriter(tempfile.mkdtemp())
    >>> w.add_scalar("loss", chainrule.tensor(0.5), 1); w.close()
"""

from __future__ import annotations

__all__ = ["SummaryWriter"]


def _plain(x):
    """chainrule tensors (also inside lists, tuples and dicts) as NumPy arrays / numbers."""
    from ..tensor import Tensor  # noqa: PLC0415

    if isinstance(x, Tensor):
        a = x.detach()._host()
        return a.item() if a.ndim == 0 else a
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _writer_class():
    try:
        from tensorboardX import SummaryWriter as writer  # noqa: PLC0415, N813
    except ImportError:
        raise ImportError("chainrule.utils.tensorboard.SummaryWriter writes through "
                          "tensorboardX, which is not installed: pip install "
                          "'chainrule[tensorboard]' (or tensorboardX)") from None
    return writer


class SummaryWriter:
    """TensorBoard's ``SummaryWriter`` (tensorboardX's, with PyTorch's arguments): ``log_dir``
    (default ``runs/<time>_<host><comment>``), ``comment``, ``purge_step``, ``max_queue``,
    ``flush_secs``, ``filename_suffix``; every ``add_*`` method of tensorboardX's writer, with
    chainrule tensors converted. ``add_graph`` is not supported (it traces a PyTorch model).

    Example:
        >>> import tempfile, chainrule
        >>> from chainrule.utils.tensorboard import SummaryWriter
        >>> with SummaryWriter(tempfile.mkdtemp()) as w:
        ...     w.add_histogram("w", chainrule.randn(100), 0)
    """

    def __init__(self, log_dir=None, comment: str = "", purge_step=None, max_queue: int = 10,
                 flush_secs: int = 120, filename_suffix: str = ""):
        self._w = _writer_class()(logdir=log_dir, comment=comment, purge_step=purge_step,
                                  max_queue=max_queue, flush_secs=flush_secs,
                                  filename_suffix=filename_suffix)

    @property
    def log_dir(self) -> str:
        """The folder the event files go to."""
        return self._w.logdir

    def get_logdir(self) -> str:
        """The folder the event files go to."""
        return self._w.logdir

    def add_graph(self, *args, **kwargs):
        """Not supported: TensorBoard's graph view needs a traced PyTorch/ONNX graph."""
        raise NotImplementedError("SummaryWriter.add_graph: chainrule has no traced graph to "
                                  "show (it needs chainrule.jit); log scalars, histograms and "
                                  "images instead")

    def __getattr__(self, name):
        if name == "_w":  # not built (the constructor failed)
            raise AttributeError(name)
        attr = getattr(self._w, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            return attr(*_plain(args), **_plain(kwargs))

        call.__name__ = name
        call.__doc__ = getattr(attr, "__doc__", None)
        return call

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._w.close()
