"""Deep MLPs for gradient-health experiments, and a short training run on the bundled digits
that returns the monitor's report (what ``chainrule diagnose`` and
``examples/gradient_health.py`` run).

The model is ``stem -> blocks -> head``: ``stem`` maps the 64 pixels to ``width``, each of
the ``depth - 2`` blocks maps ``width`` to ``width``, ``head`` maps to the 10 classes, so
``depth`` counts the Linear layers. A block is ``activation(norm(linear(x)))``, plus ``x`` when
``residual``; with a norm layer the Linear has no bias (the norm's shift replaces it).

Initialisations (weights; biases are set to zero except for "default"):

- ``default``: PyTorch's Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
- ``normal-small``: N(0, 0.01^2), the "small random numbers" of early practice.
- ``xavier``: Glorot normal, N(0, 2 / (fan_in + fan_out)) (gain 1).
- ``he``: He normal, N(0, 2 / fan_in).
- ``unit``: N(0, 1), unit variance whatever the width.

Example:
    >>> from chainrule.diagnostics import build_mlp
    >>> net = build_mlp(depth=4, width=16, activation="tanh", init="xavier", norm="layer")
    >>> [name for name, _ in net.named_children()]
    ['stem', 'blocks', 'head']
    >>> net.blocks[0]
    Block(
      (linear): Linear(in_features=16, out_features=16, bias=False)
      (norm): LayerNorm((16,), eps=1e-05, elementwise_affine=True, bias=True)
      (act): Tanh()
    )
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .. import random as _random
from ..autograd.grad_mode import no_grad
from ..nn import functional as F
from ..nn import init as _init
from ..nn.activation import GELU, ReLU, Sigmoid, Tanh
from ..nn.container import ModuleList
from ..nn.linear import Linear
from ..nn.module import Module
from ..nn.norm import BatchNorm1d, LayerNorm
from ..tensor import Tensor
from .monitor import GradientMonitor
from .report import Report, Thresholds

__all__ = ["ACTIVATIONS", "INITS", "NORMS", "Block", "DeepMLP", "RunResult", "build_mlp",
           "run_digits"]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "gelu": GELU}
INITS = ("default", "normal-small", "xavier", "he", "unit")
NORMS = ("none", "layer", "batch")


class Block(Module):
    """``act(norm(linear(x)))``, plus ``x`` when ``residual`` (needs in == out features).

    Example:
        >>> import chainrule
        >>> from chainrule.diagnostics.models import Block
        >>> Block(4, 4, "relu", "none", residual=True)(chainrule.ones(2, 4)).shape
        (2, 4)
    """

    def __init__(self, in_features: int, out_features: int, activation: str, norm: str,
                 residual: bool = False):
        super().__init__()
        if residual and in_features != out_features:
            raise ValueError(f"Block: a residual block needs in_features == out_features, got "
                             f"{in_features} and {out_features}")
        self.residual = residual
        self.linear = Linear(in_features, out_features, bias=norm == "none")
        if norm == "layer":
            self.norm = LayerNorm(out_features)
        elif norm == "batch":
            self.norm = BatchNorm1d(out_features)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        """The block's output."""
        h = self.linear(x)
        if "norm" in self._modules:
            h = self.norm(h)
        h = self.act(h)
        return x + h if self.residual else h

    def extra_repr(self) -> str:
        return "residual=True" if self.residual else ""


class DeepMLP(Module):
    """``head(blocks(stem(x)))``: see :func:`build_mlp`.

    Example:
        >>> import chainrule
        >>> from chainrule.diagnostics.models import DeepMLP
        >>> DeepMLP(3, 8, "relu", "none", False, 64, 10)(chainrule.ones(5, 64)).shape
        (5, 10)
    """

    def __init__(self, depth: int, width: int, activation: str, norm: str, residual: bool,
                 in_features: int, num_classes: int):
        super().__init__()
        self.stem = Block(in_features, width, activation, norm)
        self.blocks = ModuleList([Block(width, width, activation, norm, residual)
                                  for _ in range(depth - 2)])
        self.head = Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape (batch, num_classes)."""
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"build_mlp: {name} must be one of {', '.join(choices)}; got {value!r}")


def init_weights(model: Module, init: str) -> Module:
    """Re-initialise the weights of every Linear in ``model`` with the scheme ``init`` (see
    the module docstring) and zero their biases; "default" leaves them as they are. Returns
    the model.

    Example:
        >>> from chainrule import nn
        >>> from chainrule.diagnostics.models import init_weights
        >>> net = init_weights(nn.Sequential(nn.Linear(400, 400)), "unit")
        >>> round(float(net[0].weight.std()), 1), float(net[0].bias.abs().max())
        (1.0, 0.0)
    """
    _check_choice("init", init, INITS)
    if init == "default":
        return model
    for m in model.modules():
        if not isinstance(m, Linear):
            continue
        w = m.weight
        if init == "normal-small":
            _init.normal_(w, 0.0, 0.01)
        elif init == "xavier":
            _init.xavier_normal_(w)
        elif init == "he":
            _init.kaiming_normal_(w, nonlinearity="relu")
        else:
            _init.normal_(w, 0.0, 1.0)
        if m.bias is not None:
            _init.zeros_(m.bias)
    return model


def build_mlp(depth: int = 20, width: int = 64, activation: str = "relu", init: str = "he",
              norm: str = "none", residual: bool = False, in_features: int = 64,
              num_classes: int = 10) -> DeepMLP:
    """A ``depth``-Linear-layer MLP of the given ``width`` (see the module docstring), with
    ``activation`` in relu/tanh/sigmoid/gelu, ``init`` in default/normal-small/xavier/he/unit,
    ``norm`` in none/layer/batch, and optional residual connections around the hidden blocks.

    Example:
        >>> from chainrule.diagnostics import build_mlp
        >>> net = build_mlp(depth=20, width=32)
        >>> sum(1 for name, _ in net.named_parameters() if name.endswith("weight"))
        20
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ValueError(f"build_mlp: depth must be an int >= 2 (it counts the Linear layers), "
                         f"got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"build_mlp: width must be a positive int, got {width!r}")
    _check_choice("activation", activation, tuple(ACTIVATIONS))
    _check_choice("init", init, INITS)
    _check_choice("norm", norm, NORMS)
    net = DeepMLP(depth, width, activation, norm, bool(residual), in_features, num_classes)
    return init_weights(net, init)


@dataclass
class RunResult:
    """What :func:`run_digits` measured.

    Attributes:
        report: the monitor's :class:`Report` over the run.
        gradient_ratio: first/last weight-layer output-gradient norm at step 0 (initialisation).
        test_accuracy: accuracy on the held-out digits after training (NaN if not evaluated).
        final_loss: mean training loss over the last epoch's worth of steps (NaN if none).
        steps: optimizer steps taken.
        seconds: wall time of the run.
        model: the trained model.
    """

    report: Report
    gradient_ratio: float
    test_accuracy: float
    final_loss: float
    steps: int
    seconds: float
    model: Module


def run_digits(depth: int = 20, width: int = 64, activation: str = "relu", init: str = "he",
               norm: str = "none", residual: bool = False, clip: float | None = None,
               steps: int = 20, batch_size: int = 64, lr: float = 1e-3,
               optimizer: str = "adam", seed: int = 0, every: int = 1,
               evaluate: bool = True, thresholds: Thresholds | None = None) -> RunResult:
    """Build :func:`build_mlp` (seeded with ``seed``), train it for ``steps`` optimizer steps
    on the bundled digits (default 80/20 split; batches drawn from ``seed``) with a
    :class:`GradientMonitor` attached, optionally clipping the gradient norm to ``clip``, and
    return the report, the gradient ratio at initialisation and the test accuracy.

    Example:
        >>> from chainrule.diagnostics import run_digits
        >>> res = run_digits(depth=4, width=16, steps=3)
        >>> res.report.steps.tolist(), 0.0 <= res.test_accuracy <= 1.0
        ([0, 1, 2], True)
    """
    from .. import optim  # noqa: PLC0415 - optim builds on nn; imported when a run needs it
    from ..data import digits_split  # noqa: PLC0415
    from ..nn.utils import clip_grad_norm_  # noqa: PLC0415

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"run_digits: steps must be a positive int, got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"run_digits: batch_size must be an int >= 2, got {batch_size!r}")
    if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"run_digits: clip must be a positive number or None, got {clip!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"run_digits: lr must be a positive number, got {lr!r}")
    opts = {"adam": optim.Adam, "sgd": optim.SGD}
    if optimizer not in opts:
        raise ValueError(f"run_digits: optimizer must be one of adam, sgd; got {optimizer!r}")
    _random.manual_seed(seed)
    model = build_mlp(depth, width, activation, init, norm, residual)
    opt = (optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else optim.Adam(model.parameters(), lr=lr))
    train, test = digits_split(0.2, 0)
    x_train, y_train = train.tensors
    n = x_train.shape[0]
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    pos = 0
    losses = []
    t0 = time.perf_counter()
    model.train()
    with GradientMonitor(model, optimizer=opt, every=every, thresholds=thresholds) as mon:
        for _ in range(steps):
            if pos + batch_size > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            if clip is not None:
                clip_grad_norm_(model.parameters(), clip)
            opt.step()
            mon.step()
            losses.append(float(loss))
    seconds = time.perf_counter() - t0
    acc = float("nan")
    if evaluate:
        x_test, y_test = test.tensors
        model.eval()
        with no_grad():
            acc = float((model(x_test).argmax(1) == y_test).float().mean())
        model.train()
    report = mon.report()
    per_epoch = max(1, n // batch_size)
    tail = [v for v in losses[-per_epoch:] if math.isfinite(v)]
    final = float(np.mean(tail)) if tail else float("nan")
    return RunResult(report, report.gradient_ratio(), acc, final, steps, seconds, model)
