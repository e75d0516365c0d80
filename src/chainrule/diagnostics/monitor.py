"""``GradientMonitor``: per-layer, per-step gradient and activation statistics, through hooks.

Attaching registers, and ``remove()`` unregisters:

- a forward hook on every leaf module (a module without submodules), which records the
  output's mean, std and NaN/Inf counts, the share of dead units for ReLU layers, the share of
  saturated outputs for sigmoid/tanh layers, keeps a small random sample of the output values,
  and registers a gradient hook on the output to record the norm of d(loss)/d(output);
- a gradient hook on each trainable parameter (the gradient norm and NaN/Inf count);
- a forward pre-hook on the model (to tell steps apart);
- with ``optimizer=``, a wrapper around ``optimizer.step`` that measures the update-to-weight
  ratio ``||w_after - w_before|| / ||w_before||`` of each parameter.

Nothing is left on the model, its parameters or the optimizer after ``remove()``, so a removed
monitor costs nothing. Forward passes run under ``no_grad`` or in eval mode are not recorded.

A *step* ends at ``mon.step()`` (call it after ``optimizer.step()``). When you never call it,
a step ends at the model's next forward after the optimizer step (``optimizer=`` given) or
after a backward (no optimizer given). Statistics are kept as one record per recorded step
(every ``every``-th step), at most ``max_history`` of them: when full, every second record is
dropped and the recording interval doubles, so memory stays bounded over any run.

Example:
    >>> import chainrule
    >>> from chainrule import nn, optim
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> opt = optim.SGD(net.parameters(), lr=0.1)
    >>> x, y = chainrule.randn(32, 8), chainrule.randint(0, 2, (32,))
    >>> with GradientMonitor(net, optimizer=opt) as mon:
    ...     for _ in range(3):
    ...         opt.zero_grad()
    ...         nn.functional.cross_entropy(net(x), y).backward()
    ...         opt.step()
    ...         mon.step()
    >>> report = mon.report()
    >>> report.steps.tolist(), report.findings
    ([0, 1, 2], [])
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from ..backend import CPU, to_device
from ..nn.activation import ReLU, ReLU6, Sigmoid, Tanh
from ..nn.module import Module
from ..tensor import Tensor
from . import stats
from .report import LAYER_METRICS, PARAM_METRICS, LayerInfo, ParamInfo, Report, Thresholds

__all__ = ["GradientMonitor"]

_KIND_OF = {ReLU: "relu", ReLU6: "relu", Sigmoid: "sigmoid", Tanh: "tanh"}


def _kind(module: Module) -> str | None:
    for cls in type(module).__mro__:
        k = _KIND_OF.get(cls)
        if k is not None:
            return k
    return None


def _first_tensor(out) -> Tensor | None:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, Tensor):
                return o
    return None


def _init_gain(module: Module) -> float | None:
    w = module._parameters.get("weight")
    if w is None or w.ndim < 2 or w.numel() < 2:
        return None
    a = w._data
    fan_in = int(np.prod(a.shape[1:]))
    n, _, m2, _, _ = stats.moments(a)
    return math.sqrt(m2 / n) * math.sqrt(fan_in) if n else None


class _LayerAcc:
    """What one layer saw during the current step (several calls merge)."""

    __slots__ = (
        "alive",
        "ginf",
        "gnan",
        "gsq",
        "has_grad",
        "inf",
        "m2",
        "mean",
        "n",
        "nan",
        "sampled",
        "sat",
        "total",
    )

    def __init__(self):
        self.n, self.mean, self.m2, self.nan, self.inf = 0, 0.0, 0.0, 0, 0
        self.alive = None
        self.sat = self.total = 0
        self.gsq, self.gnan, self.ginf, self.has_grad = 0.0, 0, 0, False
        self.sampled = False


class _ParamAcc:
    __slots__ = ("dnorm", "ginf", "gnan", "gsq", "has_grad", "wnorm")

    def __init__(self):
        self.gsq, self.gnan, self.ginf, self.has_grad = 0.0, 0, 0, False
        self.wnorm = self.dnorm = None


_SAMPLE_EVERY = 10  # activation samples come from one recorded step in this many


def _add_grad(acc, a) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        s = stats._sq_norm(a)
    if math.isfinite(s):
        acc.gsq += s
    else:
        nan, inf = stats.nonfinite_counts(a)
        acc.gnan += nan
        acc.ginf += inf
        if nan or inf:
            acc.gsq = float("nan")
        else:  # only possible for float64 overflow; keep the infinite norm
            acc.gsq = float("inf")


class GradientMonitor:
    """Record gradient and activation statistics of ``model``, per layer and per step, and
    report vanishing/exploding gradients, dead and saturated units and non-finite values.

    Args:
        model: the ``nn.Module`` to watch (hooks go on its leaf modules and parameters).
        optimizer: optional; its ``step`` is wrapped so that each step measures the
            update-to-weight ratio of every parameter. Without it, call ``mon.step()`` after
            your optimizer step to get the ratios (weights are snapshotted during backward).
        every: record one step in ``every`` (the others cost one Python call per hook).
        sample_size: how many activation values per layer to keep for histograms, drawn at
            the first recorded step and again at every 10th recorded step (the latest kept).
        max_history: the most step records kept (then the oldest are thinned, see above).
        thresholds: the :class:`Thresholds` that ``report()`` uses by default.

    Also a context manager: ``with GradientMonitor(model) as mon:`` removes the hooks on
    exit; the recorded statistics stay available to ``mon.report()``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> from chainrule.diagnostics import GradientMonitor
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid())
        >>> mon = GradientMonitor(net)
        >>> net(chainrule.randn(2, 4)).sum().backward()
        >>> mon.remove()
        >>> len(net[0]._forward_hooks), mon.report().layer_stats["grad_norm"].shape
        (0, (1, 2))
    """

    def __init__(self, model: Module, optimizer=None, every: int = 1, *,
                 sample_size: int = 256, max_history: int = 512,
                 thresholds: Thresholds | None = None):
        if not isinstance(model, Module):
            raise TypeError(f"GradientMonitor: model must be an nn.Module, got "
                            f"{type(model).__name__}")
        if optimizer is not None and not callable(getattr(optimizer, "step", None)):
            raise TypeError(f"GradientMonitor: optimizer must have a step() method, got "
                            f"{type(optimizer).__name__}")
        for name, v, low in (("every", every, 1), ("sample_size", sample_size, 0),
                             ("max_history", max_history, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"GradientMonitor: {name} must be an int >= {low}, got {v!r}")
        if thresholds is not None and not isinstance(thresholds, Thresholds):
            raise TypeError(f"GradientMonitor: thresholds must be a Thresholds, got "
                            f"{type(thresholds).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.sample_size = sample_size
        self.max_history = max_history
        self.thresholds = thresholds or Thresholds()
        self._rng = np.random.default_rng(0)

        self._layers: list[LayerInfo] = []  # in order of first forward call
        self._layer_index: dict[str, int] = {}
        self._params: list = []
        self._param_infos: list[ParamInfo] = []
        self._history: list[dict] = []
        self._samples: dict = {}
        self._step = 0
        self._stride = every
        self._recording = True
        self._records_made = 0
        self._sample_now = True
        self._cur_layers: dict[int, _LayerAcc] = {}
        self._cur_params: dict[int, _ParamAcc] = {}
        self._snap: dict[int, object] = {}
        self._grads_seen = False
        self._opt_stepped = False
        self._explicit = False
        self._handles: list = []
        self._tensor_handles: list = []
        self._attached = True

        owner = {}
        for path, m in model.named_modules():
            for p in m._parameters.values():
                if p is not None:
                    owner.setdefault(id(p), path)
            if next(iter(m._modules.values()), None) is None:
                h = m.register_forward_hook(self._forward_hook(path, m))
                self._handles.append(h)
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            j = len(self._params)
            self._params.append(p)
            self._param_infos.append(ParamInfo(name, owner.get(id(p), ""), tuple(p.shape),
                                               p.ndim >= 2))
            self._handles.append(p.register_hook(self._param_hook(j)))
        self._handles.append(model.register_forward_pre_hook(self._root_pre_hook))
        self._opt_wrapper = None
        if optimizer is not None:
            self._wrap_optimizer(optimizer)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> GradientMonitor:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    @property
    def attached(self) -> bool:
        """True until ``remove()``."""
        return self._attached

    def remove(self) -> None:
        """Detach every hook (model, parameters, pending gradient hooks) and restore the
        optimizer's ``step``. The recorded statistics stay; a second call does nothing.

        Example:
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Linear(2, 2)
            >>> mon = GradientMonitor(net); mon.remove()
            >>> len(net._forward_hooks), len(net._forward_pre_hooks), net.weight._hooks
            (0, 0, [])
        """
        if not self._attached:
            return
        if self._recording:  # keep what the step in progress recorded
            self._finish_snapshot_updates()
            if self._cur_layers or self._cur_params:
                self._history.append(self._finalize())
            self._cur_layers, self._cur_params = {}, {}
        self._attached = False
        self._recording = False
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._drop_tensor_hooks()
        self._snap.clear()
        opt = self.optimizer
        if opt is not None and opt.__dict__.get("step") is self._opt_wrapper:
            del opt.__dict__["step"]

    def _drop_tensor_hooks(self) -> None:
        for h in self._tensor_handles:
            h.remove()
        self._tensor_handles.clear()

    # ------------------------------------------------------------------ hooks
    def _forward_hook(self, path: str, module: Module):
        kind = _kind(module)

        def hook(mod, args, out):
            if self._recording and mod.training and is_grad_enabled():
                self._on_forward(path, mod, kind, out)

        return hook

    def _layer(self, path: str, module: Module, kind: str | None) -> int:
        i = self._layer_index.get(path)
        if i is None:
            i = len(self._layers)
            w = module._parameters.get("weight")
            is_weight = w is not None and w.ndim >= 2
            self._layers.append(LayerInfo(path, type(module).__name__, kind, is_weight,
                                          _init_gain(module) if is_weight else None))
            self._layer_index[path] = i
        return i

    def _on_forward(self, path: str, module: Module, kind: str | None, out) -> None:
        t = _first_tensor(out)
        if t is None:
            return
        i = self._layer(path, module, kind)
        acc = self._cur_layers.get(i)
        if acc is None:
            acc = self._cur_layers[i] = _LayerAcc()
        a = t._data
        if a.dtype.kind in "fV":
            with np.errstate(over="ignore", invalid="ignore"):
                n, mean, m2, nan, inf = stats._moments(a)
            acc.n, acc.mean, acc.m2 = stats.merge_moments(acc.n, acc.mean, acc.m2, n, mean, m2)
            acc.nan += nan
            acc.inf += inf
            if kind == "relu":
                alive = stats.alive_units(a)
                if alive is not None:
                    if acc.alive is not None and acc.alive.shape == alive.shape:
                        alive = alive | acc.alive
                    acc.alive = alive
            elif kind is not None:
                acc.sat += stats.saturated_count(a, kind)
                acc.total += a.size
            if self._sample_now and not acc.sampled and self.sample_size and a.size:
                acc.sampled = True
                self._sample(path, a)
        if t._rg and is_grad_enabled():
            self._tensor_handles.append(t.register_hook(self._output_grad_hook(i)))

    def _sample(self, path: str, a) -> None:
        flat = a.reshape(-1)
        k = min(self.sample_size, flat.size)
        idx = self._rng.integers(0, flat.size, k) if flat.size > k else np.arange(k)
        if isinstance(flat, np.ndarray):
            vals = flat[idx].astype(np.float64)
        else:
            import cupy  # noqa: PLC0415 - only reached for CuPy arrays

            vals = to_device(flat[cupy.asarray(idx)], CPU).astype(np.float64)
        entry = self._samples.setdefault(path, {})
        item = (self._step, vals)
        entry.setdefault("first", item)
        entry["last"] = item

    def _output_grad_hook(self, i: int):
        def hook(g):
            if self._recording:
                acc = self._cur_layers.get(i)
                if acc is None:
                    acc = self._cur_layers[i] = _LayerAcc()
                _add_grad(acc, g._data)
                acc.has_grad = True

        return hook

    def _param_hook(self, j: int):
        def hook(g):
            if not self._attached:
                return
            self._grads_seen = True
            if not self._recording:
                return
            acc = self._cur_params.get(j)
            if acc is None:
                acc = self._cur_params[j] = _ParamAcc()
            _add_grad(acc, g._data)
            acc.has_grad = True
            if self.optimizer is None and j not in self._snap:
                self._snap[j] = self._params[j]._data.copy()

        return hook

    def _root_pre_hook(self, module, args):
        if not self._attached or not module.training or not is_grad_enabled():
            return
        if self.optimizer is not None:
            if self._opt_stepped:
                self._close_step()
        elif self._grads_seen and not self._explicit:
            self._close_step()

    def _wrap_optimizer(self, opt) -> None:
        inner = opt.step

        def step(*args, **kwargs):
            if not (self._attached and self._recording):
                out = inner(*args, **kwargs)
            else:
                before = {j: p._data.copy() for j, p in enumerate(self._params)}
                out = inner(*args, **kwargs)
                for j, old in before.items():
                    p = self._params[j]
                    if p._grad is not None:
                        self._record_update(j, old, p._data)
            self._opt_stepped = True
            return out

        step.__doc__ = inner.__doc__
        self._opt_wrapper = step
        opt.step = step

    def _record_update(self, j: int, old, new) -> None:
        acc = self._cur_params.get(j)
        if acc is None:
            acc = self._cur_params[j] = _ParamAcc()
        with np.errstate(over="ignore", invalid="ignore"):
            acc.wnorm = math.sqrt(stats._sq_norm(old))
            acc.dnorm = math.sqrt(stats._sq_norm(new - old))

    # ------------------------------------------------------------------ steps
    def step(self) -> None:
        """End the current step (call it after ``optimizer.step()``). Without an
        ``optimizer=`` the update-to-weight ratios are measured here, against the weights as
        they were during backward. Does nothing after ``remove()``.

        Example:
            >>> import chainrule
            >>> from chainrule import nn, optim
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Linear(3, 1)
            >>> opt = optim.SGD(net.parameters(), lr=0.1)
            >>> mon = GradientMonitor(net)
            >>> net(chainrule.ones(4, 3)).sum().backward(); opt.step(); mon.step()
            >>> ratio = mon.report().param_stats["update_ratio"][0, 0]
            >>> bool(ratio > 0)
            True
        """
        if not self._attached:
            return
        self._explicit = True
        self._close_step()

    @property
    def current_step(self) -> int:
        """The number of the step now being recorded (0 before the first ``step()``)."""
        return self._step

    def _finish_snapshot_updates(self) -> None:
        """Without an optimizer wrapper: the update is now-weights minus the weights seen at
        backward. Recorded only when some weight changed (else no optimizer step happened)."""
        if not self._snap:
            return
        pairs = [(j, old, self._params[j]._data) for j, old in self._snap.items()]
        self._snap = {}
        if not any(old.shape == new.shape and bool((old != new).any()) for _, old, new in pairs):
            return
        for j, old, new in pairs:
            if old.shape == new.shape:
                self._record_update(j, old, new)

    def _close_step(self) -> None:
        if self._recording:
            self._finish_snapshot_updates()
            if self._cur_layers or self._cur_params:
                self._history.append(self._finalize())
                self._records_made += 1
                if len(self._history) > self.max_history:
                    self._history = self._history[::2]
                    self._stride *= 2
        self._drop_tensor_hooks()
        self._snap = {}
        self._cur_layers = {}
        self._cur_params = {}
        self._grads_seen = False
        self._opt_stepped = False
        self._step += 1
        self._recording = self._attached and self._step % self._stride == 0
        self._sample_now = self._records_made % _SAMPLE_EVERY == 0

    def _finalize(self) -> dict:
        """The current step's accumulators as arrays (NaN where not measured)."""
        nl, npar = len(self._layers), len(self._params)
        lay = {m: np.full(nl, np.nan) for m in LAYER_METRICS}
        for i, acc in self._cur_layers.items():
            if acc.n or acc.nan or acc.inf:
                lay["act_mean"][i] = acc.mean if acc.n else np.nan
                lay["act_std"][i] = math.sqrt(acc.m2 / acc.n) if acc.n else np.nan
                lay["act_nan"][i] = acc.nan
                lay["act_inf"][i] = acc.inf
            if acc.alive is not None and acc.alive.size:
                lay["dead_fraction"][i] = 1.0 - float(acc.alive.mean())
            if acc.total:
                lay["saturated_fraction"][i] = acc.sat / acc.total
            if acc.has_grad:
                lay["grad_norm"][i] = math.sqrt(acc.gsq)
                lay["grad_nan"][i] = acc.gnan
                lay["grad_inf"][i] = acc.ginf
        par = {m: np.full(npar, np.nan) for m in PARAM_METRICS}
        for j, acc in self._cur_params.items():
            if acc.has_grad:
                par["grad_norm"][j] = math.sqrt(acc.gsq)
                par["grad_nan"][j] = acc.gnan
                par["grad_inf"][j] = acc.ginf
            if acc.wnorm is not None:
                par["weight_norm"][j] = acc.wnorm
                if acc.wnorm > 0:
                    par["update_ratio"][j] = acc.dnorm / acc.wnorm
        return {"step": self._step, "layers": lay, "params": par}

    # ------------------------------------------------------------------ report
    def report(self, thresholds: Thresholds | None = None) -> Report:
        """The :class:`Report` of everything recorded so far (the step in progress included),
        with findings drawn under ``thresholds`` (default: the monitor's).

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
            >>> with GradientMonitor(net) as mon:
            ...     net(chainrule.ones(1, 2)).sum().backward()
            >>> mon.report().steps.tolist()
            [0]
        """
        th = self.thresholds if thresholds is None else thresholds
        if not isinstance(th, Thresholds):
            raise TypeError(f"GradientMonitor.report: thresholds must be a Thresholds, got "
                            f"{type(th).__name__}")
        records = list(self._history)
        if self._recording and (self._cur_layers or self._cur_params):
            records.append(self._finalize())
        nl, npar = len(self._layers), len(self._params)
        layer_stats = {m: np.full((len(records), nl), np.nan) for m in LAYER_METRICS}
        param_stats = {m: np.full((len(records), npar), np.nan) for m in PARAM_METRICS}
        for s, rec in enumerate(records):
            for m in LAYER_METRICS:
                v = rec["layers"][m]
                layer_stats[m][s, : v.size] = v
            for m in PARAM_METRICS:
                param_stats[m][s] = rec["params"][m]
        steps = np.array([rec["step"] for rec in records], dtype=np.int64)
        samples = {k: dict(v) for k, v in self._samples.items()}
        return Report(list(self._layers), list(self._param_infos), steps, layer_stats,
                      param_stats, samples, th)

    def __repr__(self) -> str:
        state = "attached" if self._attached else "removed"
        return (f"GradientMonitor({type(self.model).__name__}, {len(self._handles)} hooks, "
                f"step {self._step}, {len(self._history)} records, {state})")
