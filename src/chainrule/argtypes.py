"""Argument validators for the ``chainrule`` commands (``type=`` of ``argparse``), shared by
``chainrule train`` and ``chainrule diagnose``. Each returns the parsed value or raises
``argparse.ArgumentTypeError`` with a message that names what was expected and what came.

Example:
    >>> import argparse
    >>> from chainrule.argtypes import fraction, nonnegative_float, positive_float
    >>> positive_float("0.5"), nonnegative_float("0"), fraction("0.2")
    (0.5, 0.0, 0.2)
    >>> try:
    ...     positive_float("inf")
    ... except argparse.ArgumentTypeError as e:
    ...     print(e)
    expected a positive number, got 'inf' (not finite)
"""

from __future__ import annotations

import argparse
import math

__all__ = ["bounded_float", "fraction", "int_at_least", "layer_widths", "nonnegative_float",
           "positive_float", "positive_int"]


def bounded_float(what: str, ok, doc: str = ""):
    """A parser for finite numbers that satisfy ``ok``; errors say ``expected <what>``.

    Example:
        >>> from chainrule.argtypes import bounded_float
        >>> bounded_float("a number > 1", lambda v: v > 1)("2.5")
        2.5
    """

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r} (not finite)")
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v

    parse.__doc__ = doc
    return parse


positive_float = bounded_float("a positive number", lambda v: v > 0,
                               "A finite number > 0 (a learning rate, a clipping norm).")
nonnegative_float = bounded_float("a number >= 0", lambda v: v >= 0,
                                  "A finite number >= 0 (momentum, weight decay).")
fraction = bounded_float("a number between 0 and 1", lambda v: 0 < v < 1,
                         "A number strictly between 0 and 1 (a share of the data).")


def int_at_least(low: int):
    """A parser for integers >= ``low``.

    Example:
        >>> from chainrule.argtypes import int_at_least
        >>> int_at_least(0)("7")
        7
    """
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
        return v

    return parse


positive_int = int_at_least(1)


def layer_widths(s: str) -> list[int]:
    """Comma-separated positive layer widths, like ``256,128``.

    Example:
        >>> from chainrule.argtypes import layer_widths
        >>> layer_widths("256,128")
        [256, 128]
    """
    try:
        sizes = [int(p) for p in s.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 256,128, got {s!r}") from None
    if not sizes or any(v <= 0 for v in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {s!r}")
    return sizes
