"""How a Tensor prints: PyTorch's layout and float rules on top of ``numpy.array2string``;
``chainrule.set_printoptions`` changes :data:`PRINT_OPTIONS`.

Example:
    >>> import chainrule
    >>> chainrule.tensor([1.0, 2.5])
    tensor([1.0000, 2.5000])
"""

from __future__ import annotations

import numpy as np

from . import backend
from .backend import from_numpy_dtype

_ndarray = np.ndarray

PRINT_OPTIONS = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80,
                 "sci_mode": None}  # chainrule.set_printoptions changes these (PyTorch's)


def _float_formatter(a):
    """PyTorch's float display rules: integral values print as '1.', others with 4 decimals,
    scientific notation when the magnitudes span more than 1e3 or reach 1e8 (or, for
    non-integral values, fall below 1e-4); every element padded to one width."""
    finite = a[np.isfinite(a)]
    nz = np.abs(finite[finite != 0])
    int_mode = bool(np.all(finite == np.round(finite)))
    sci = False
    if nz.size:
        hi, lo = float(nz.max()), float(nz.min())
        sci = hi / lo > 1000.0 or hi > 1.0e8 or (not int_mode and lo < 1.0e-4)

    p = PRINT_OPTIONS["precision"]
    if PRINT_OPTIONS["sci_mode"] is not None:
        sci = PRINT_OPTIONS["sci_mode"]

    def fmt(v):
        if not np.isfinite(v):
            return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")
        if sci:
            return f"{v:.{p}e}"
        if int_mode:
            return f"{v:.0f}."
        return f"{v:.{p}f}"

    flat = a.ravel()
    if flat.size > PRINT_OPTIONS["threshold"]:  # summarised: widths from the shown corners
        e = PRINT_OPTIONS["edgeitems"]
        flat = np.concatenate([flat[:e], flat[-e:]])
    width = max((len(fmt(v)) for v in flat if np.isfinite(v)), default=0)
    return lambda v: fmt(v).rjust(width)


def _format(t) -> str:
    """The repr of Tensor ``t``."""
    a = t._host()
    dt = from_numpy_dtype(a.dtype)
    if a.dtype.kind == "V":  # bfloat16: shown through float32 (exact)
        a = a.astype(np.float32)
    opts = {"separator": ", ", "prefix": "tensor(", "threshold": PRINT_OPTIONS["threshold"],
            "edgeitems": PRINT_OPTIONS["edgeitems"], "max_line_width": PRINT_OPTIONS["linewidth"]}
    if a.dtype.kind in "fV" and a.size:
        opts["formatter"] = {"float_kind": _float_formatter(a)}
    body = np.array2string(a, **opts)
    extras = []
    if a.size == 0 and a.ndim != 1:
        extras.append(f"size={tuple(a.shape)}")
    if dt not in (backend.default_float(), backend.int64, backend.bool_):
        extras.append(f"dtype={dt!r}")
    if type(t._data) is not _ndarray:
        extras.append(f"device='{t.device}'")
    if t._node is not None:
        extras.append(f"grad_fn={t._node!r}")
    elif t._rg:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
