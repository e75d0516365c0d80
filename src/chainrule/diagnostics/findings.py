"""Detection for the gradient-health report: the :class:`Thresholds`, the :class:`Finding`
records, and :func:`detect`, which reads a :class:`~chainrule.diagnostics.report.Report`'s
statistics and returns the findings (rendering is in :mod:`chainrule.diagnostics.report`).
Every threshold is explained in ``docs/diagnostics.md``.

Example:
    >>> from chainrule.diagnostics.findings import KINDS, Thresholds
    >>> Thresholds().dead_fraction, KINDS[0]
    (0.5, 'vanishing')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .report import Report

__all__ = ["KINDS", "Finding", "LayerInfo", "ParamInfo", "Thresholds", "detect"]

KINDS = ("vanishing", "exploding", "dead", "saturated", "nonfinite")


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
