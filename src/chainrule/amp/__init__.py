"""Mixed precision, as ``torch.amp``: :class:`autocast` (products and convolutions in bfloat16
or float16, losses in float32; see :mod:`chainrule.ops._amp` for the op lists) and
:class:`GradScaler` (loss scaling with inf/NaN-skipped steps, growth and backoff).

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> model = nn.Linear(4, 2)
    >>> opt = chainrule.optim.SGD(model.parameters(), lr=0.1)
    >>> scaler = chainrule.amp.GradScaler("cpu")
    >>> with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
    ...     out = model(chainrule.ones(3, 4))
    ...     loss = nn.functional.mse_loss(out, chainrule.zeros(3, 2))
    >>> out.dtype, loss.dtype
    (chainrule.bfloat16, chainrule.float32)
    >>> scaler.scale(loss).backward()
    >>> scaler.step(opt); scaler.update()
    >>> scaler.get_scale()
    65536.0
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any

from .. import backend
from ..autograd import no_grad
from ..ops._amp import STATE
from ..tensor import Tensor

__all__ = ["GradScaler", "autocast", "get_autocast_dtype", "is_autocast_enabled"]

_DEFAULT_DTYPE = {"cpu": "bfloat16", "cuda": "float16"}


def is_autocast_enabled(device_type: str = "cpu") -> bool:
    """True inside an enabled autocast region for ``device_type``.

    Example:
        >>> import chainrule
        >>> chainrule.amp.is_autocast_enabled("cpu")
        False
    """
    return STATE.enabled and STATE.device_type == device_type


def get_autocast_dtype(device_type: str = "cpu"):
    """The dtype autocast uses for ``device_type`` (the current region's, else the default:
    bfloat16 on the CPU, float16 on CUDA)."""
    if STATE.enabled and STATE.device_type == device_type and STATE.dtype is not None:
        return STATE.dtype
    return backend.as_dtype(_DEFAULT_DTYPE[device_type])


class autocast:  # noqa: N801 - PyTorch's name
    """Context manager and decorator: ops on PyTorch's autocast lists run in ``dtype`` (the
    products and convolutions) or in float32 (the losses, prod); the rest in their inputs'
    dtype. Nests (an inner region may change the dtype or disable autocast; the outer state
    returns on exit) and composes with backward (casts are recorded; gradients reach float32
    weights in float32).

    Args:
        device_type: "cpu" or "cuda": which tensors are cast.
        dtype: chainrule.bfloat16 (the CPU default) or chainrule.float16.
        enabled: False makes the region a no-op (or switches autocast off inside another).
        cache_enabled: cache the casts of weights (leaf tensors that require grad) until the
            outermost region ends (default True).

    Example:
        >>> import chainrule
        >>> @chainrule.autocast("cpu")
        ... def f(a, b):
        ...     return a @ b
        >>> f(chainrule.ones(2, 2), chainrule.ones(2, 2)).dtype
        chainrule.bfloat16
    """

    def __init__(self, device_type: str = "cpu", dtype=None, enabled: bool = True,
                 cache_enabled: bool | None = None):
        if device_type not in _DEFAULT_DTYPE:
            raise ValueError(f"autocast: device_type must be 'cpu' or 'cuda', got "
                             f"{device_type!r}")
        self.device_type = device_type
        self.fast_dtype = backend.as_dtype(dtype if dtype is not None
                                           else _DEFAULT_DTYPE[device_type])
        if self.fast_dtype.name not in ("bfloat16", "float16"):
            raise ValueError(f"autocast: dtype must be chainrule.bfloat16 or chainrule.float16,"
                             f" got {self.fast_dtype!r}")
        self._enabled = bool(enabled)
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        self._saved: list = []

    def __enter__(self):
        st = STATE
        self._saved.append((st.enabled, st.device_type, st.dtype, st.cache))
        st.enabled = self._enabled
        if self._enabled:
            st.device_type = self.device_type
            st.dtype = self.fast_dtype
            if st.cache is None and self._cache_enabled:
                st.cache = {}
            elif not self._cache_enabled:
                st.cache = None
        return self

    def __exit__(self, *exc):
        st = STATE
        st.enabled, st.device_type, st.dtype, st.cache = self._saved.pop()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with autocast(self.device_type, self.fast_dtype, self._enabled,
                          self._cache_enabled):
                return fn(*args, **kwargs)

        return run


# ---------------------------------------------------------------- GradScaler
_READY, _UNSCALED, _STEPPED = 0, 1, 2


class GradScaler:
    """Loss scaling for float16 training, with PyTorch's semantics (``torch.amp.GradScaler``).

    ``scale(loss)`` multiplies by the scale (float32); ``unscale_(opt)`` divides the gradients
    of ``opt``'s parameters by it and records whether any is inf/NaN; ``step(opt)`` unscales if
    not yet done and runs ``opt.step()`` only when all gradients were finite; ``update()``
    multiplies the scale by ``backoff_factor`` after a skipped step, or by ``growth_factor``
    after ``growth_interval`` finite steps in a row (kept when that would overflow).

    Example:
        >>> import chainrule
        >>> s = chainrule.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1)
        >>> s.state_dict()["scale"], s.scale(chainrule.tensor(2.0)).item()
        (8.0, 16.0)
    """

    def __init__(self, device: str = "cpu", init_scale: float = 2.0 ** 16,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, enabled: bool = True):
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got "
                             f"{backoff_factor}")
        if not isinstance(growth_interval, int) or growth_interval <= 0:
            raise ValueError(f"GradScaler: growth_interval must be a positive int, got "
                             f"{growth_interval!r}")
        self._device = backend.as_device(device)
        self._enabled = bool(enabled)
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = growth_interval
        self._scale: float | None = None  # float32 value, kept as a Python float
        self._growth_tracker = 0
        self._per_optimizer: dict[int, dict[str, Any]] = {}

    # ------------------------------------------------------------ scaling
    @staticmethod
    def _f32(v: float) -> float:
        """``v`` rounded to float32 (inf beyond its range), as PyTorch's float32 scale."""
        try:
            return struct.unpack("f", struct.pack("f", v))[0]
        except OverflowError:
            return math.copysign(math.inf, v)

    def _lazy_init(self):
        if self._scale is None:
            self._scale = self._f32(self._init_scale)
            self._growth_tracker = 0

    def scale(self, outputs):
        """``outputs`` (a tensor or nested lists/tuples of tensors) times the scale, a 0-d
        float32 tensor as in PyTorch (a float16/bfloat16 loss comes back float32)."""
        if not self._enabled:
            return outputs
        self._lazy_init()

        def apply(v):
            if isinstance(v, Tensor):
                return v * Tensor(self._scale, dtype=backend.float32, device=v.device)
            if isinstance(v, (list, tuple)):
                return type(v)(apply(x) for x in v)
            raise TypeError(f"GradScaler.scale: outputs must be tensors or lists/tuples of "
                            f"tensors, got {type(v).__name__}")

        return apply(outputs)

    def _state(self, optimizer) -> dict:
        st = self._per_optimizer.get(id(optimizer))
        if st is None or st["opt"] is not optimizer:
            st = self._per_optimizer[id(optimizer)] = {"opt": optimizer, "stage": _READY,
                                                        "found_inf": None}
        return st

    def unscale_(self, optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale, in place, and record inf/NaN.

        Raises RuntimeError when called twice before ``update()`` or after ``step()``, and
        ValueError for float16 gradients (unscale float32 master weights), as PyTorch does.
        """
        if not self._enabled:
            return
        self._check_scale("unscale_")
        st = self._state(optimizer)
        if st["stage"] == _UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        if st["stage"] == _STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv = self._f32(1.0 / self._scale)  # float64 reciprocal rounded to float32
        found, seen = False, False
        with no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    seen = True
                    if g.dtype is backend.float16:
                        raise ValueError("Attempting to unscale FP16 gradients.")
                    xp = backend.get_array_module(g._data)
                    if not found and not bool(xp.isfinite(g._data).all()):
                        found = True
                    g.mul_(inv)
        st["found_inf"] = found if seen else None
        st["stage"] = _UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """``optimizer.step(*args, **kwargs)`` unless the (unscaled) gradients held an inf or
        NaN; returns what step returned, or None when skipped."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is "
                               "enabled.")
        self._check_scale("step")
        st = self._state(optimizer)
        if st["stage"] == _STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st["stage"] == _READY:
            self.unscale_(optimizer)
        if st["found_inf"] is None:
            raise RuntimeError("No inf checks were recorded for this optimizer (none of its "
                               "parameters has a gradient).")
        result = None if st["found_inf"] else optimizer.step(*args, **kwargs)
        st["stage"] = _STEPPED
        return result

    def update(self, new_scale=None) -> None:
        """Set the next scale: ``new_scale`` when given, else backoff after an inf/NaN in any
        optimizer since the last update, growth after ``growth_interval`` clean steps."""
        if not self._enabled:
            return
        self._check_scale("update")
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1 or new_scale.requires_grad:
                    raise ValueError("GradScaler.update: new_scale must be a float or a "
                                     "1-element tensor that does not require grad")
                new_scale = new_scale.item()
            self._scale = self._f32(new_scale)
        else:
            found = [st["found_inf"] for st in self._per_optimizer.values()
                     if st["found_inf"] is not None]
            if not found:
                raise RuntimeError("No inf checks were recorded prior to update().")
            if any(found):
                self._scale = self._f32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                ok = self._growth_tracker + 1
                if ok == self._growth_interval:
                    grown = self._f32(self._scale * self._growth_factor)
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
                else:
                    self._growth_tracker = ok
        self._per_optimizer = {}

    def _check_scale(self, where: str):
        if self._scale is None:
            raise RuntimeError(f"GradScaler.{where}: scale() has not been called yet (no "
                               "scaled loss this iteration)")

    # ------------------------------------------------------------ accessors and state
    def get_scale(self) -> float:
        """The current scale (1.0 when disabled)."""
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else self._scale

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict:
        """scale, growth_factor, backoff_factor, growth_interval, _growth_tracker ({} when
        disabled), as PyTorch's."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` (also one saved by ``torch.amp.GradScaler``)."""
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                   "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing {sorted(missing)}")
        self._init_scale = float(state_dict["scale"])
        self._scale = self._f32(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])
