"""PyTorch's ``torch.serialization`` names: the allow-list for weights-only loads of pickled
files (``add_safe_globals``, ``safe_globals``, ``get_safe_globals``, ``clear_safe_globals``)
and ``save``/``load``. See :mod:`chainrule.io.serialization` for what is pickled and when.

Example:
    >>> import chainrule
    >>> with chainrule.serialization.safe_globals([chainrule.nn.Linear]):
    ...     len(chainrule.serialization.get_safe_globals())
    1
"""

from .io.serialization import (
    add_safe_globals,
    clear_safe_globals,
    get_safe_globals,
    load,
    safe_globals,
    save,
)

__all__ = ["add_safe_globals", "clear_safe_globals", "get_safe_globals", "load", "safe_globals",
           "save"]
