"""``torch.backends.cpu``: the CPU runs NumPy with its BLAS."""

from __future__ import annotations

__all__ = ["get_cpu_capability"]


def get_cpu_capability() -> str:
    """The SIMD level NumPy was built to use at run time (e.g. ``"AVX512F"``), or ``"DEFAULT"``.

    Example:
        >>> import chainrule
        >>> isinstance(chainrule.backends.cpu.get_cpu_capability(), str)
        True
    """
    from ..backend import np  # noqa: PLC0415

    try:
        found = [k for k, v in np._core._multiarray_umath.__cpu_features__.items() if v]
    except AttributeError:
        return "DEFAULT"
    for level in ("AVX512F", "AVX2", "SSE42", "ASIMD"):
        if level in found:
            return level
    return "DEFAULT"
