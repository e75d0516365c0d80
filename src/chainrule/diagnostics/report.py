"""The gradient-health report: the recorded statistics and the findings, rendered as a
terminal table, JSON lines and a PNG figure (the detection itself is in
:mod:`chainrule.diagnostics.findings`; its names stay importable from here).

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
from dataclasses import asdict, dataclass, field

import numpy as np

from .findings import KINDS, Finding, LayerInfo, ParamInfo, Thresholds, _depth_ratios, _fmt, detect

__all__ = ["KINDS", "Finding", "LayerInfo", "ParamInfo", "Report", "Thresholds", "detect"]

LAYER_METRICS = ("act_mean", "act_std", "act_nan", "act_inf", "dead_fraction",
                 "saturated_fraction", "grad_norm", "grad_nan", "grad_inf")
PARAM_METRICS = ("grad_norm", "grad_nan", "grad_inf", "weight_norm", "update_ratio")
_COUNT_METRICS = {"act_nan", "act_inf", "grad_nan", "grad_inf"}



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
