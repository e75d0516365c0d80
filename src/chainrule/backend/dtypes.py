"""chainrule dtypes and PyTorch-style type promotion.

A :class:`DType` is a singleton wrapping a NumPy dtype. Promotion follows PyTorch:

* categories order ``bool < integer < floating``;
* among tensors of the same "tier", the wider type wins;
* tiers are: dimensioned tensors > zero-dimensional tensors > Python scalars. A lower tier
  changes the result only when its category is higher (``int_tensor * 2.5`` is float32,
  ``float32_tensor * 2.5`` stays float32, ``float32_tensor + float64_0d_tensor`` stays float32);
* a Python float with no float tensor in sight gives the default float dtype (float32);
* float16 and bfloat16 (neither holds the other) meet in float32, uint8 and int8 in int16, as
  in PyTorch.

``bfloat16`` comes from the ``ml_dtypes`` package (the ``bf16`` extra), imported the first time
bfloat16 is asked for (its import costs about a second); without it, asking says which extra to
install. Arithmetic on bfloat16 and float16 rounds each op's float32 result, and reductions and
products accumulate in float32 (see :mod:`chainrule.primitives.lowp`), as PyTorch does on CPU.

Example:
    >>> from chainrule.backend.dtypes import float32, int64, result_type
    >>> result_type((int64, 1), (float, 0)) is float32
    True
"""

from __future__ import annotations

import numpy as np


class DType:
    """A chainrule dtype (``chainrule.float32`` ...), comparable by identity.

    Example:
        >>> import chainrule
        >>> chainrule.float32.is_floating_point, chainrule.float32.itemsize
        (True, 4)
    """

    __slots__ = ("_rank", "is_bool", "is_complex", "is_floating_point", "itemsize", "name", "np")

    def __init__(self, name: str, npdtype, rank: int):
        self.name = name
        self.np = np.dtype(npdtype)
        self.is_floating_point = self.np.kind == "f" or name == "bfloat16"
        self.is_complex = False
        self.is_bool = self.np.kind == "b"
        self.itemsize = self.np.itemsize
        self._rank = rank

    @property
    def category(self) -> int:
        """0 bool, 1 integer, 2 floating."""
        return 0 if self.is_bool else (2 if self.is_floating_point else 1)

    def __repr__(self):
        return f"chainrule.{self.name}"

    def __reduce__(self):
        return (as_dtype, (self.name,))


bool_ = DType("bool", np.bool_, 0)
uint8 = DType("uint8", np.uint8, 1)
int8 = DType("int8", np.int8, 1)
int16 = DType("int16", np.int16, 2)
int32 = DType("int32", np.int32, 3)
int64 = DType("int64", np.int64, 4)
float16 = DType("float16", np.float16, 10)
float32 = DType("float32", np.float32, 11)
float64 = DType("float64", np.float64, 12)
_ALL = [bool_, uint8, int8, int16, int32, int64, float16, float32, float64]
_BY_NP = {d.np: d for d in _ALL}
_BY_NAME = {d.name: d for d in _ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64,
                 "int": int32, "short": int16, "bool_": bool_})

_default_float = float32
_bf16: list = []  # the bfloat16 DType once made
BF16_MISSING = ("bfloat16 needs the ml_dtypes package, which is not installed: "
                "pip install 'chainrule[bf16]'")


def bfloat16_dtype() -> DType:
    """The bfloat16 DType (imports ml_dtypes on first use; ImportError naming the extra)."""
    if _bf16:
        return _bf16[0]
    try:
        import ml_dtypes  # noqa: PLC0415 - an extra, and about a second to import
    except ImportError:
        raise ImportError(BF16_MISSING) from None
    d = DType("bfloat16", ml_dtypes.bfloat16, 10)
    _ALL.insert(_ALL.index(float16) + 1, d)
    _BY_NP[d.np] = d
    _BY_NAME["bfloat16"] = d
    _bf16.append(d)
    return d


def is_low_precision(npd) -> bool:
    """True for float16 and bfloat16 NumPy dtypes (2-byte floats).

    Example:
        >>> import numpy
        >>> is_low_precision(numpy.dtype("float16")), is_low_precision(numpy.dtype("float32"))
        (True, False)
    """
    return npd.itemsize == 2 and npd.kind in "fV"


def __getattr__(name):
    if name == "bfloat16":
        try:
            return bfloat16_dtype()
        except ImportError as e:
            raise AttributeError(str(e)) from None
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_float() -> DType:
    """The dtype given to Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(d) -> None:
    """Set the default floating dtype (float32 or float64), like torch.set_default_dtype.

    Example:
        >>> import chainrule
        >>> chainrule.set_default_dtype(chainrule.float64); chainrule.tensor(1.0).dtype
        chainrule.float64
        >>> chainrule.set_default_dtype(chainrule.float32)
    """
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"default dtype must be floating point, got {d}")
    _default_float = d


def from_numpy_dtype(npd) -> DType:
    """The chainrule dtype for a NumPy dtype; error for unsupported ones."""
    try:
        return _BY_NP[npd]
    except (KeyError, TypeError):
        pass
    try:
        return _BY_NP[np.dtype(npd)]
    except (KeyError, TypeError):
        if getattr(npd, "name", None) == "bfloat16" or npd == "bfloat16":
            return as_dtype("bfloat16")
        raise TypeError(f"unsupported dtype {npd!r}: chainrule supports "
                        f"{', '.join(d.name for d in _ALL)}") from None


def as_dtype(d) -> DType:
    """Accept a DType, a NumPy dtype, a name ('float32') or a Python type (float, int, bool)."""
    if isinstance(d, DType):
        return d
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    if isinstance(d, str):
        try:
            return _BY_NAME[d]
        except KeyError:
            if d == "bfloat16":
                try:
                    return bfloat16_dtype()
                except ImportError as e:
                    raise TypeError(str(e)) from None
            raise TypeError(f"unknown dtype name {d!r}") from None
    if d is None:
        raise TypeError("dtype must not be None here")
    return from_numpy_dtype(d)


def _scalar_category(x) -> int:
    if isinstance(x, bool):
        return 0
    if isinstance(x, int):
        return 1
    return 2


_CAT_DEFAULT = {0: bool_, 1: int64}


def result_type(*items) -> DType:
    """Promote ``(dtype_or_python_type, ndim)`` pairs; ndim 0 for 0-d tensors, -1 for scalars.

    Python scalars may also be given directly (not as a pair).
    """
    best = [None, None, None]  # per tier: dimensioned, zero-dim, scalar
    for it in items:
        if isinstance(it, tuple):
            d, nd = it
            if not isinstance(d, DType):
                if d in (float, int, bool):
                    cat = {float: 2, int: 1, bool: 0}[d]
                    tier = 2
                    cur = best[tier]
                    if cur is None or cat > cur:
                        best[tier] = cat
                    continue
                d = as_dtype(d)
            tier = 0 if nd > 0 else (1 if nd == 0 else 2)
        else:
            cat = _scalar_category(it)
            cur = best[2]
            if cur is None or cat > cur:
                best[2] = cat
            continue
        cur = best[tier]
        if cur is None or _wider(d, cur):
            best[tier] = d
        elif d is not cur and d._rank == cur._rank:  # neither holds the other
            best[tier] = float32 if d.category == 2 else int16  # f16 & bf16; uint8 & int8
    result = None
    for tier in (0, 1):
        d = best[tier]
        if d is None:
            continue
        if result is None:
            result = d
        elif d.category > result.category:
            result = d
    sc = best[2]
    if sc is not None:
        if result is None:
            result = _default_float if sc == 2 else _CAT_DEFAULT[sc]
        elif sc > result.category:
            result = _default_float if sc == 2 else int64
    return result


def _wider(a: DType, b: DType) -> bool:
    if a.category != b.category:
        return a.category > b.category
    return a._rank > b._rank
