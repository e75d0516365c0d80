"""The gradient-health report: the recorded statistics, the findings, and their output as a
terminal table, JSON lines and a PNG figure.

A :class:`Report` is what :meth:`GradientMonitor.report` returns. It holds per-step matrices
(recorded steps x layers, recorded steps x parameters) and the list of :class:`Finding` s that
:func:`detect` derives from them under a set of :class:`Thresholds`. Every threshold is
explained in ``docs/diagnostics.md``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> from chainrule.diagnostics import GradientMonitor
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> with GradientMonitor(net) as mon:
    ...     net(chainrule.randn(16, 4)).sum().backward()
    >>> report = mon.report()
    >>> report.findings, [layer.path for layer in report.layers]
    ([], ['0', '1', '2'])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

__all__ = ["KINDS", "Finding", "LayerInfo", "ParamInfo", "Report", "Thresholds", "detect"]

KINDS = ("vanishing", "exploding", "dead", "saturated", "nonfinite")

LAYER_METRICS = ("act_mean", "act_std", "act_nan", "act_inf", "dead_fraction",
                 "saturated_fraction", "grad_norm", "grad_nan", "grad_inf")
PARAM_METRICS = ("grad_norm", "grad_nan", "grad_inf", "weight_norm", "update_ratio")
_COUNT_METRICS = {"act_nan", "act_inf", "grad_nan", "grad_inf"}


@dataclass(frozen=True)
class Thresholds:
    """The limits beyond which the report raises a finding (reasoning in docs/diagnostics.md).

    Attributes:
        vanishing_ratio: flag "vanishing" when the output-gradient norm of the first weight
            layer is below this fraction of the last one's (three orders of magnitude).
        exploding_ratio: flag "exploding" when that ratio is above this.
        update_ratio: flag "vanishing" for a weight whose median update-to-weight ratio
            ``||delta w|| / ||w||`` is below this (a healthy step is around 1e-3).
        step_growth: flag "exploding" when the total gradient norm grows by more than this
            factor over the steps, against the median of the first recorded steps.
        dead_fraction: flag "dead" when more than this share of a ReLU layer's units is dead.
        saturated_fraction: flag "saturated" when more than this share of a sigmoid/tanh
            layer's outputs is saturated.
        window: dead and saturated figures are the smallest over this many last recorded
            steps, so one unlucky batch does not raise a finding.

    Example:
        >>> from chainrule.diagnostics import Thresholds
        >>> Thresholds(dead_fraction=0.3).dead_fraction
        0.3
    """

    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    update_ratio: float = 1e-5
    step_growth: float = 1e3
    dead_fraction: float = 0.5
    saturated_fraction: float = 0.5
    window: int = 3

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or \
                    not math.isfinite(v):
                raise ValueError(f"Thresholds: {f.name} must be a positive finite number, got "
                                 f"{v!r}")
        if not isinstance(self.window, int):
            raise ValueError(f"Thresholds: window must be an int, got {self.window!r}")
        for name in ("dead_fraction", "saturated_fraction"):
            if getattr(self, name) >= 1:
                raise ValueError(f"Thresholds: {name} must be below 1, got "
                                 f"{getattr(self, name)}")
        if self.vanishing_ratio >= 1 or self.exploding_ratio <= 1:
            raise ValueError("Thresholds: vanishing_ratio must be below 1 and exploding_ratio "
                             f"above 1, got {self.vanishing_ratio} and {self.exploding_ratio}")


@dataclass(frozen=True)
class LayerInfo:
    """A monitored (leaf) module: its dotted path in the model, class name, activation kind
    ("relu", "sigmoid", "tanh" or None), whether it owns a weight matrix (Linear, Conv ...),
    and for those the weight scale ``std(w) * sqrt(fan_in)`` when the monitor was attached."""

    path: str
    type: str
    kind: str | None = None
    weight: bool = False
    init_gain: float | None = None

    @property
    def name(self) -> str:
        """The path, or "(model)" for the model itself."""
        return self.path or "(model)"


@dataclass(frozen=True)
class ParamInfo:
    """A monitored parameter: its dotted name, the path of the module that owns it, its shape,
    and whether it is a weight matrix (2 or more dims)."""

    name: str
    layer: str
    shape: tuple
    weight: bool = False


@dataclass(frozen=True)
class Finding:
    """One problem the report found.

    Attributes:
        kind: "vanishing", "exploding", "dead", "saturated" or "nonfinite".
        layer: dotted path of the module concerned ("" for the model itself).
        value: the figure that crossed the threshold (a ratio, a fraction or a count).
        message: one line naming the layer, the figure and the remedies that fit.
        step: the recorded step the figure refers to (the last one for figures over several).
    """

    kind: str
    layer: str
    value: float
    message: str
    step: int | None = None


# ---------------------------------------------------------------------------- detection
def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def _fmt(v: float) -> str:
    if v is None or not math.isfinite(v):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.1e}"


class _Remedies:
    """The remedies of the seed's table, phrased for the model at hand."""

    def __init__(self, report: Report):
        kinds = {layer.kind for layer in report.layers}
        types = {layer.type for layer in report.layers}
        self.squashing = bool(kinds & {"sigmoid", "tanh"})
        self.has_norm = any("Norm" in t for t in types)
        gains = [layer.init_gain for layer in report.layers
                 if layer.weight and layer.init_gain is not None and math.isfinite(layer.init_gain)]
        self.gain_lo = min(gains) if gains else None
        self.gain_hi = max(gains) if gains else None

    def _init(self, what: str) -> str:
        if self.gain_lo is None:
            return f"{what} initialisation"
        span = (_fmt(self.gain_lo) if math.isclose(self.gain_lo, self.gain_hi, rel_tol=0.05)
                else f"{_fmt(self.gain_lo)}..{_fmt(self.gain_hi)}")
        return (f"{what} initialisation (the weights started at std*sqrt(fan_in) = {span}; "
                "Xavier gives ~1, He ~1.41)")

    def _norm(self) -> list[str]:
        return [] if self.has_norm else ["layer or batch normalisation"]

    def vanishing(self) -> str:
        items = []
        if self.squashing:
            items.append("a ReLU-family activation instead of sigmoid/tanh")
        items.append(self._init("Xavier (tanh) or He (ReLU)"))
        items.append("residual connections")
        items += self._norm()
        return "; ".join(items)

    def exploding(self) -> str:
        items = ["gradient clipping (nn.utils.clip_grad_norm_)",
                 self._init("Xavier (tanh) or He (ReLU)")]
        items += self._norm()
        items.append("a lower learning rate")
        return "; ".join(items)

    def dead(self) -> str:
        items = ["a ReLU-family activation that keeps a gradient below 0 (LeakyReLU, ELU, GELU)",
                 self._init("He")]
        items += ["batch normalisation before the activation"] if not self.has_norm else []
        items.append("a lower learning rate")
        return "; ".join(items)

    def saturated(self) -> str:
        items = ["a ReLU-family activation", self._init("Xavier")]
        items += self._norm()
        return "; ".join(items)

    def nonfinite(self) -> str:
        items = ["gradient clipping (nn.utils.clip_grad_norm_)", "a lower learning rate"]
        items += self._norm()
        items.append("run one step under chainrule.autograd.detect_anomaly() to find the op")
        return "; ".join(items)


def _depth_findings(r: Report, th: Thresholds, rem: _Remedies) -> list[Finding]:
    cols = [i for i, layer in enumerate(r.layers) if layer.weight]
    g = r.layer_stats["grad_norm"]
    cols = [i for i in cols if np.isfinite(g[:, i]).any()]
    if len(cols) < 2:
        return []
    first, last = cols[0], cols[-1]
    ratios = _depth_ratios(r, first, last)
    ok = np.isfinite(ratios)
    if not ok.any():
        return []
    steps = r.steps[ok]
    ratios = ratios[ok]
    med = float(np.median(ratios))
    r0, s0 = float(ratios[0]), int(steps[0])
    out = []
    fl, ll = r.layers[first], r.layers[last]
    n = len(ratios)
    over = f"median over {n} recorded steps" if n > 1 else f"at step {s0}"
    for kind, bad, thr in (("vanishing", lambda v: v < th.vanishing_ratio, th.vanishing_ratio),
                           ("exploding", lambda v: v > th.exploding_ratio, th.exploding_ratio)):
        if bad(med):
            value, where, step = med, over, int(steps[-1])
        elif bad(r0):
            value, where, step = r0, f"at step {s0}, {_fmt(med)} as the {over}", s0
        else:
            continue
        verb = "fell" if kind == "vanishing" else "grew"
        remedies = rem.vanishing() if kind == "vanishing" else rem.exploding()
        msg = (f"{kind} gradients: the output-gradient norm of the first weight layer "
               f"'{fl.name}' ({fl.type}) is {_fmt(value)} times that of the last, '{ll.name}' "
               f"({where}): it {verb} by more than the {_fmt(thr)} threshold across "
               f"{len(cols)} weight layers. Remedies: {remedies}.")
        out.append(Finding(kind, fl.path, value, msg, step))
    return out


def _depth_ratios(r: Report, first: int, last: int) -> np.ndarray:
    g = r.layer_stats["grad_norm"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = g[:, first] / g[:, last]
    ratios[~(g[:, last] > 0)] = np.nan
    return ratios


def _others(names: list[str], worst: str) -> str:
    rest = [n for n in names if n != worst]
    if not rest:
        return ""
    shown = ", ".join(f"'{n}'" for n in rest[:4]) + (f" and {len(rest) - 4} more"
                                                      if len(rest) > 4 else "")
    return f" Also over the threshold: {shown}."


def _update_findings(r: Report, th: Thresholds, rem: _Remedies) -> list[Finding]:
    u = r.param_stats["update_ratio"]
    hits = []
    for j, p in enumerate(r.params):
        if not p.weight:
            continue
        vals = _finite(u[:, j])
        if vals.size and float(np.median(vals)) < th.update_ratio:
            hits.append((float(np.median(vals)), j, vals.size))
    if not hits:
        return []
    med, j, n = min(hits)
    p = r.params[j]
    layer = r.layer_by_path.get(p.layer)
    lname = f"'{p.layer or '(model)'}'" + (f" ({layer.type})" if layer else "")
    others = _others([r.params[k].name for _, k, _ in hits], p.name)
    msg = (f"vanishing updates: the weight '{p.name}' of layer {lname} moves by a median "
           f"{_fmt(med)} of its norm per step (||delta w|| / ||w|| over {n} steps; below "
           f"{_fmt(th.update_ratio)} a layer barely learns).{others} "
           f"Remedies: {rem.vanishing()}; or a larger learning rate.")
    return [Finding("vanishing", p.layer, med, msg, int(r.steps[-1]))]


def _growth_findings(r: Report, th: Thresholds, rem: _Remedies) -> list[Finding]:
    g = r.param_stats["grad_norm"]
    if g.shape[0] < 3 or g.shape[1] == 0:
        return []
    with np.errstate(invalid="ignore"):
        sq = np.where(np.isfinite(g), g * g, 0.0)
    have = np.isfinite(g).any(axis=1)
    total = np.where(have, np.sqrt(sq.sum(axis=1)), np.nan)
    k = min(5, g.shape[0] - 1)
    base = _finite(total[:k])
    later = total[k:]
    if base.size == 0 or not np.isfinite(later).any():
        return []
    b = float(np.median(base))
    if not b > 0:
        return []
    i = int(np.nanargmax(later))
    growth = float(later[i] / b)
    if not growth > th.step_growth:
        return []
    step = int(r.steps[k + i])
    # name the weight layer whose output gradient grew the most by that step
    lg = r.layer_stats["grad_norm"]
    best, best_g = "", -1.0
    for c, layer in enumerate(r.layers):
        if not layer.weight:
            continue
        lb = _finite(lg[:k, c])
        if lb.size and lb.max() > 0 and np.isfinite(lg[k + i, c]):
            gr = float(lg[k + i, c] / np.median(lb))
            if gr > best_g:
                best, best_g = layer.path, gr
    where = f"layer '{best or '(model)'}' grew most ({_fmt(best_g)}x)" if best_g > 0 else \
        "all layers"
    msg = (f"exploding gradients over steps: the total gradient norm reached {_fmt(growth)} "
           f"times its median over the first {k} recorded steps by step {step} (threshold "
           f"{_fmt(th.step_growth)}x); {where}. Remedies: {rem.exploding()}.")
    return [Finding("exploding", best, growth, msg, step)]


def _nonfinite_findings(r: Report, rem: _Remedies) -> list[Finding]:
    ls, ps = r.layer_stats, r.param_stats
    act = np.nan_to_num(ls["act_nan"]) + np.nan_to_num(ls["act_inf"])
    grd = np.nan_to_num(ls["grad_nan"]) + np.nan_to_num(ls["grad_inf"])
    pgr = np.nan_to_num(ps["grad_nan"]) + np.nan_to_num(ps["grad_inf"])
    for s in range(len(r.steps)):
        step = int(r.steps[s])
        hit = None
        if (act[s] > 0).any():
            cols = np.flatnonzero(act[s] > 0)
            c = int(cols[0])
            hit = (r.layers[c], act[s, c], "in its output (forward)", len(cols))
        elif (grd[s] > 0).any():
            cols = np.flatnonzero(grd[s] > 0)
            c = int(cols[-1])  # backward runs from the last layer: the last one is the origin
            hit = (r.layers[c], grd[s, c], "in the gradient of its output (backward)", len(cols))
        elif (pgr[s] > 0).any():
            cols = np.flatnonzero(pgr[s] > 0)
            j = int(cols[-1])
            p = r.params[j]
            layer = r.layer_by_path.get(p.layer) or LayerInfo(p.layer, "?")
            hit = (layer, pgr[s, j], f"in the gradient of '{p.name}'", len(cols))
        if hit is None:
            continue
        layer, count, what, n_bad = hit
        others = f" ({n_bad - 1} more also affected)" if n_bad > 1 else ""
        msg = (f"non-finite values: layer '{layer.name}' ({layer.type}) holds {int(count)} "
               f"NaN/Inf value(s) {what} at step {step}, the first recorded step with any"
               f"{others}. Remedies: {rem.nonfinite()}.")
        return [Finding("nonfinite", layer.path, float(count), msg, step)]
    return []


def _unit_findings(r: Report, th: Thresholds, rem: _Remedies) -> list[Finding]:
    hits: dict[str, list] = {"dead": [], "saturated": []}
    for c, layer in enumerate(r.layers):
        if layer.kind == "relu":
            metric, limit, kind = "dead_fraction", th.dead_fraction, "dead"
        elif layer.kind in ("sigmoid", "tanh"):
            metric, limit, kind = "saturated_fraction", th.saturated_fraction, "saturated"
        else:
            continue
        col = r.layer_stats[metric][:, c]
        idx = np.flatnonzero(np.isfinite(col))[-th.window:]
        if idx.size and float(col[idx].min()) > limit:
            hits[kind].append((float(col[idx].min()), c, idx))
    out = []
    for kind, found in hits.items():
        if not found:
            continue
        value, c, idx = max(found, key=lambda h: (h[0], -h[1]))
        layer = r.layers[c]
        span = (f"step {int(r.steps[idx[0]])}" if idx.size == 1 else
                f"each of the last {idx.size} recorded steps")
        others = _others([r.layers[k].name for _, k, _ in found], layer.name)
        if kind == "dead":
            msg = (f"dead units: {value:.0%} of the units of ReLU layer '{layer.name}' output 0 "
                   f"for every example of the batch in {span} (threshold "
                   f"{th.dead_fraction:.0%}); they pass no gradient.{others} Remedies: "
                   f"{rem.dead()}.")
        else:
            band = ("|tanh| > 0.99" if layer.kind == "tanh" else
                    "sigmoid within 0.01 of 0 or 1")
            msg = (f"saturated units: {value:.0%} of the outputs of {layer.kind} layer "
                   f"'{layer.name}' are saturated ({band}) in {span} (threshold "
                   f"{th.saturated_fraction:.0%}); their local gradient is under 1/25 of its "
                   f"peak.{others} Remedies: {rem.saturated()}.")
        out.append(Finding(kind, layer.path, value, msg, int(r.steps[idx[-1]])))
    return out


def detect(report: Report, thresholds: Thresholds | None = None) -> list[Finding]:
    """The findings for the statistics in ``report`` under ``thresholds`` (the defaults when
    None), in the order: non-finite, exploding, vanishing, dead, saturated.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> from chainrule.diagnostics import GradientMonitor, Thresholds, detect
        >>> net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        >>> _ = nn.init.zeros_(net[0].weight), nn.init.constant_(net[0].bias, -1.0)
        >>> with GradientMonitor(net) as mon:  # every pre-activation is -1: all units dead
        ...     net(chainrule.ones(4, 3)).sum().backward()
        >>> [(f.kind, f.layer, f.value) for f in detect(mon.report())]
        [('dead', '1', 1.0)]
        >>> detect(mon.report(), Thresholds(dead_fraction=0.99))[0].kind
        'dead'
    """
    th = thresholds or Thresholds()
    if not isinstance(th, Thresholds):
        raise TypeError(f"detect: thresholds must be a Thresholds, got {type(th).__name__}")
    if len(report.steps) == 0:
        return []
    rem = _Remedies(report)
    found = _nonfinite_findings(report, rem)
    depth = _depth_findings(report, th, rem)
    found += [f for f in depth if f.kind == "exploding"]
    if not any(f.kind == "exploding" for f in found):
        found += _growth_findings(report, th, rem)
    found += [f for f in depth if f.kind == "vanishing"]
    found += _update_findings(report, th, rem)
    found += _unit_findings(report, th, rem)
    return found


# ---------------------------------------------------------------------------- the report
def _json_value(v):
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def _cell(v, kind: str = "g") -> str:
    if v is None or not np.isfinite(v):
        return "-"
    if kind == "pct":
        return f"{100 * v:.0f}%"
    if kind == "int":
        return str(int(v))
    return _fmt(float(v))


@dataclass
class Report:
    """Statistics recorded by a :class:`GradientMonitor` and the findings drawn from them.

    Attributes:
        layers: the monitored leaf modules, in the order of their first forward call.
        params: the monitored parameters, in ``named_parameters()`` order.
        steps: the recorded step numbers (int array).
        layer_stats: metric name -> array (len(steps), len(layers)); NaN where not measured.
            Metrics: act_mean, act_std, act_nan, act_inf, dead_fraction, saturated_fraction,
            grad_norm (norm of the gradient of the layer's output), grad_nan, grad_inf.
        param_stats: metric name -> array (len(steps), len(params)): grad_norm, grad_nan,
            grad_inf, weight_norm (before the step), update_ratio (||delta w|| / ||w||).
        samples: layer path -> {"first": (step, values), "last": (step, values)}: a small
            random sample of the layer's output values at the first recorded step and at the
            latest sampled one (one recorded step in 10 is sampled), for histograms.
        thresholds: the thresholds the findings were drawn with.
        findings: the :class:`Finding` list, drawn from the statistics on construction.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> from chainrule.diagnostics import GradientMonitor
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
        >>> with GradientMonitor(net) as mon:
        ...     net(chainrule.randn(8, 4)).sum().backward()
        >>> r = mon.report()
        >>> r.layer_stats["grad_norm"].shape, r.ok
        ((1, 3), True)
    """

    layers: list[LayerInfo]
    params: list[ParamInfo]
    steps: np.ndarray
    layer_stats: dict[str, np.ndarray]
    param_stats: dict[str, np.ndarray]
    samples: dict = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    findings: list[Finding] = field(init=False, default_factory=list)

    def __post_init__(self):
        self.layer_by_path = {layer.path: layer for layer in self.layers}
        self.findings = detect(self, self.thresholds)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{f.kind}@{f.layer or '(model)'}" for f in self.findings)
        return (f"Report({len(self.steps)} recorded steps, {len(self.layers)} layers, "
                f"{len(self.params)} parameters, findings: [{kinds}])")

    @property
    def ok(self) -> bool:
        """True when there is no finding."""
        return not self.findings

    def gradient_ratio(self, step: int | None = None) -> float:
        """Output-gradient norm of the first weight layer over that of the last one, at the
        recorded step ``step`` (default: the first recorded step, i.e. at initialisation when
        the monitor was attached before training). NaN when not measured.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
            >>> with GradientMonitor(net) as mon:
            ...     net(chainrule.ones(3, 2)).sum().backward()
            >>> r = mon.report()
            >>> g = r.layer_stats["grad_norm"][0]
            >>> bool(abs(r.gradient_ratio() - g[0] / g[1]) < 1e-12)
            True
        """
        cols = [i for i, layer in enumerate(self.layers) if layer.weight]
        if len(cols) < 2 or len(self.steps) == 0:
            return float("nan")
        if step is None:
            s = 0
        else:
            hits = np.flatnonzero(self.steps == step)
            if hits.size == 0:
                raise ValueError(f"gradient_ratio: step {step} was not recorded; recorded steps "
                                 f"are {self.steps.tolist()}")
            s = int(hits[0])
        return float(_depth_ratios(self, cols[0], cols[-1])[s])

    def _weight_param(self, path: str) -> int | None:
        name = f"{path}.weight" if path else "weight"
        for j, p in enumerate(self.params):
            if p.name == name:
                return j
        return None

    def to_table(self) -> str:
        """The report as text for a terminal: one row per layer at the last recorded step
        (activation mean/std, dead or saturated share, NaN/Inf count, output-gradient norm,
        weight-gradient norm, update ratio), then the findings, each on its own line.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
            >>> with GradientMonitor(net) as mon:
            ...     net(chainrule.ones(3, 2)).sum().backward()
            >>> print(mon.report().to_table().splitlines()[0])
            gradient health: 1 recorded step (step 0), 2 layers, 2 parameters
        """
        n = len(self.steps)
        head = (f"gradient health: {n} recorded step{'s' if n != 1 else ''}"
                + (f" (step {int(self.steps[0])})" if n == 1 else
                   f" (steps {int(self.steps[0])}..{int(self.steps[-1])})" if n else "")
                + f", {len(self.layers)} layers, {len(self.params)} parameters")
        lines = [head]
        if n:
            s = n - 1
            ls, ps = self.layer_stats, self.param_stats
            cols = ("layer", "type", "act mean", "act std", "dead/sat", "nan/inf",
                    "out-grad norm", "w-grad norm", "update ratio")
            rows = []
            for c, layer in enumerate(self.layers):
                ds = ls["dead_fraction"][s, c] if layer.kind == "relu" else \
                    ls["saturated_fraction"][s, c]
                bad = np.nansum([ls["act_nan"][s, c], ls["act_inf"][s, c],
                                 ls["grad_nan"][s, c], ls["grad_inf"][s, c]])
                j = self._weight_param(layer.path)
                rows.append((layer.name, layer.type, _cell(ls["act_mean"][s, c]),
                             _cell(ls["act_std"][s, c]), _cell(ds, "pct"),
                             str(int(bad)) if bad else "0",
                             _cell(ls["grad_norm"][s, c]),
                             _cell(ps["grad_norm"][s, j]) if j is not None else "-",
                             _cell(ps["update_ratio"][s, j]) if j is not None else "-"))
            widths = [max(len(cols[k]), *(len(r[k]) for r in rows)) if rows else len(cols[k])
                      for k in range(len(cols))]

            def line(vals):
                return "  ".join(v.ljust(w) if k < 2 else v.rjust(w)
                                 for k, (v, w) in enumerate(zip(vals, widths))).rstrip()

            lines.append(f"at step {int(self.steps[s])}:")
            lines.append(line(cols))
            lines.append(line(["-" * w for w in widths]))
            lines += [line(r) for r in rows]
            ratio = self.gradient_ratio()
            if np.isfinite(ratio):
                lines.append(f"first/last weight-layer gradient ratio at step "
                             f"{int(self.steps[0])}: {_fmt(ratio)}")
        if self.findings:
            lines.append(f"findings ({len(self.findings)}):")
            lines += [f"  [{f.kind}] {f.message}" for f in self.findings]
        else:
            lines.append("findings: none (no vanishing, exploding, dead, saturated or "
                         "non-finite signal over the thresholds)")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON lines: one object per recorded step (``"record": "step"``, with
        per-layer and per-parameter statistics), then one per finding (``"record":
        "finding"``). NaN (not measured) is written as null.

        Example:
            >>> import json, chainrule
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Linear(2, 1)
            >>> with GradientMonitor(net) as mon:
            ...     net(chainrule.ones(3, 2)).sum().backward()
            >>> rec = json.loads(mon.report().to_json().splitlines()[0])
            >>> rec["record"], rec["step"], sorted(rec["params"])
            ('step', 0, ['bias', 'weight'])
        """
        out = []
        for s, step in enumerate(self.steps):
            layers = {}
            for c, layer in enumerate(self.layers):
                d = {"type": layer.type}
                for m in LAYER_METRICS:
                    v = self.layer_stats[m][s, c]
                    d[m] = (int(v) if np.isfinite(v) else None) if m in _COUNT_METRICS else \
                        _json_value(v)
                layers[layer.name] = d
            params = {}
            for j, p in enumerate(self.params):
                d = {}
                for m in PARAM_METRICS:
                    v = self.param_stats[m][s, j]
                    d[m] = (int(v) if np.isfinite(v) else None) if m in _COUNT_METRICS else \
                        _json_value(v)
                params[p.name] = d
            out.append(json.dumps({"record": "step", "step": int(step), "layers": layers,
                                   "params": params}, allow_nan=False))
        for f in self.findings:
            d = {"record": "finding", **asdict(f)}
            d["value"] = _json_value(d["value"])
            out.append(json.dumps(d, allow_nan=False))
        return "\n".join(out) + ("\n" if out else "")

    def plot(self, path: str, max_histograms: int = 6) -> str:
        """Write a PNG to ``path``: the output-gradient norm of each weight layer over the
        recorded steps (log scale, coloured by depth), the gradient-norm profile across the
        layers at the first and last recorded steps, and histograms of the sampled activations
        of up to ``max_histograms`` layers (activation layers first). Needs matplotlib
        (``pip install 'chainrule[plot]'``); returns ``path``.

        Example:
            >>> import os, tempfile, chainrule
            >>> from chainrule import nn
            >>> from chainrule.diagnostics import GradientMonitor
            >>> net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
            >>> with GradientMonitor(net) as mon:
            ...     net(chainrule.randn(8, 2)).sum().backward()
            >>> p = mon.report().plot(os.path.join(tempfile.mkdtemp(), "health.png"))
            >>> os.path.getsize(p) > 0
            True
        """
        try:
            from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
            from matplotlib.figure import Figure  # noqa: PLC0415
        except ImportError:
            raise ImportError("Report.plot needs matplotlib, which is not installed: "
                              "pip install 'chainrule[plot]' (or pip install matplotlib); "
                              "to_table() and to_json() work without it") from None
        if not isinstance(max_histograms, int) or max_histograms < 0:
            raise ValueError(f"Report.plot: max_histograms must be a non-negative int, got "
                             f"{max_histograms!r}")
        hist_layers = self._histogram_layers(max_histograms)
        nh = len(hist_layers)
        ncols = max(2, min(nh, 3))
        nrows = 1 + (nh + ncols - 1) // ncols
        fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
        FigureCanvasAgg(fig)
        gs = fig.add_gridspec(nrows, ncols)
        ax_t = fig.add_subplot(gs[0, : ncols // 2 + (ncols % 2)])
        ax_p = fig.add_subplot(gs[0, ncols // 2 + (ncols % 2):])
        self._plot_over_steps(ax_t, fig)
        self._plot_profile(ax_p)
        for k, layer in enumerate(hist_layers):
            ax = fig.add_subplot(gs[1 + k // ncols, k % ncols])
            self._plot_histogram(ax, layer)
        fig.suptitle("gradient health" + (f": {len(self.findings)} finding(s)" if self.findings
                                          else ": no findings"))
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        return path

    def _grad_columns(self) -> list[int]:
        g = self.layer_stats["grad_norm"]
        cols = [c for c, layer in enumerate(self.layers)
                if layer.weight and np.isfinite(g[:, c]).any()]
        if not cols:
            cols = [c for c in range(len(self.layers)) if np.isfinite(g[:, c]).any()]
        return cols

    def _plot_over_steps(self, ax, fig) -> None:
        g = self.layer_stats["grad_norm"]
        cols = self._grad_columns()
        import matplotlib  # noqa: PLC0415

        cmap = matplotlib.colormaps["viridis"]
        for k, c in enumerate(cols):
            y = g[:, c]
            ok = np.isfinite(y) & (y > 0)
            if ok.any():
                ax.plot(self.steps[ok], y[ok], marker="." if len(self.steps) < 30 else None,
                        color=cmap(k / max(1, len(cols) - 1)), lw=1,
                        label=self.layers[c].name if len(cols) <= 8 else None)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("||d loss / d layer output||")
        ax.set_title("gradient norm per layer over steps\n(dark: first layer, yellow: last)",
                     fontsize=9)
        if 0 < len(cols) <= 8:
            ax.legend(fontsize=7)

    def _plot_profile(self, ax) -> None:
        g = self.layer_stats["grad_norm"]
        cols = self._grad_columns()
        if cols and len(self.steps):
            x = np.arange(len(cols))
            for s, style in ((0, "o-"), (len(self.steps) - 1, "s--")):
                y = g[s, cols]
                ok = np.isfinite(y) & (y > 0)
                if ok.any():
                    ax.plot(x[ok], y[ok], style, ms=3, label=f"step {int(self.steps[s])}")
            ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.set_xlabel("weight layer (input -> output)")
        ax.set_ylabel("gradient norm")
        ax.set_title("gradient norm across layers\n(zeros, e.g. underflow, are not drawn)",
                     fontsize=9)

    def _histogram_layers(self, k: int) -> list[LayerInfo]:
        have = [layer for layer in self.layers if layer.path in self.samples]
        acts = [layer for layer in have if layer.kind is not None]
        pool = acts if acts else have
        if len(pool) <= k:
            return pool[:k]
        pick = np.unique(np.linspace(0, len(pool) - 1, k).round().astype(int))
        return [pool[i] for i in pick]

    def _plot_histogram(self, ax, layer: LayerInfo) -> None:
        sm = self.samples[layer.path]
        for key, alpha in (("first", 0.5), ("last", 0.5)):
            if key not in sm:
                continue
            step, vals = sm[key]
            vals = vals[np.isfinite(vals)]
            if vals.size:
                ax.hist(vals, bins=40, alpha=alpha, label=f"step {step}")
            if sm.get("first", (None,))[0] == sm.get("last", (None,))[0]:
                break
        ax.set_title(f"activations of '{layer.name}' ({layer.type})", fontsize=9)
        ax.legend(fontsize=7)
