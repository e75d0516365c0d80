"""Neural-network building blocks (``chainrule.nn.functional`` holds the functions)."""

from . import functional  # noqa: F401
