"""Gradient health: per-layer, per-step statistics of activations, gradients and updates,
and reports of vanishing/exploding gradients, dead and saturated units and non-finite values.

``GradientMonitor(model)`` attaches through hooks (and ``remove()`` or leaving its ``with``
block detaches them); ``mon.report()`` gives a :class:`Report` with ``.findings``,
``.to_table()``, ``.to_json()`` and ``.plot(path)``. ``chainrule diagnose`` runs a deep MLP on
the bundled digits under a chosen configuration and prints the report. The thresholds and the
reasoning behind them are in ``docs/diagnostics.md``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> from chainrule.diagnostics import GradientMonitor, build_mlp
    >>> net = build_mlp(depth=12, width=32, activation="sigmoid", init="normal-small")
    >>> with GradientMonitor(net) as mon:
    ...     x, y = chainrule.rand(64, 64), chainrule.randint(0, 10, (64,))
    ...     nn.functional.cross_entropy(net(x), y).backward()
    >>> [(f.kind, f.layer) for f in mon.report().findings]
    [('vanishing', 'stem.linear')]
"""

from .models import Block, DeepMLP, RunResult, build_mlp, init_weights, run_digits
from .monitor import GradientMonitor
from .report import KINDS, Finding, LayerInfo, ParamInfo, Report, Thresholds, detect

__all__ = ["KINDS", "Block", "DeepMLP", "Finding", "GradientMonitor", "LayerInfo", "ParamInfo",
           "Report", "RunResult", "Thresholds", "build_mlp", "detect", "init_weights",
           "run_digits"]
