"""Loss modules: thin wrappers over the loss functions of ``chainrule.nn.functional``.

Every loss takes ``reduction``: 'mean' (default), 'sum' or 'none' (per-element losses).
Class weights and ``pos_weight`` are registered as buffers (so they follow ``.to()`` and
appear in ``state_dict()``), as in PyTorch. PyTorch's deprecated ``size_average`` and
``reduce`` arguments are not accepted; pass ``reduction`` by keyword.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> loss_fn = nn.CrossEntropyLoss()
    >>> logits = chainrule.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    >>> loss = loss_fn(logits, chainrule.tensor([0]))
    >>> round(loss.item(), 4)
    0.2413
    >>> loss.backward(); logits.grad.shape
    (1, 3)
"""

from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .activation import _EX
from .module import Module

__all__ = [
    "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "HuberLoss", "KLDivLoss", "L1Loss",
    "MSELoss", "NLLLoss", "SmoothL1Loss",
    # issue 14 (PyTorch compatibility)
    "CosineEmbeddingLoss", "GaussianNLLLoss", "HingeEmbeddingLoss", "MarginRankingLoss",
    "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "SoftMarginLoss", "TripletMarginLoss",
]

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction: str = "mean", allowed: tuple = _REDUCTIONS):
        super().__init__()
        if reduction not in allowed:
            raise ValueError(f"{type(self).__name__}: reduction must be one of "
                             f"{', '.join(repr(r) for r in allowed)}, got {reduction!r}")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(f"{type(self).__name__}: weight must be a Tensor or None, got "
                            f"{type(weight).__name__}")
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error: (input - target)^2, reduced.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.MSELoss()(chainrule.tensor([1.0, 3.0]), chainrule.tensor([0.0, 0.0]))
        tensor(5.)
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against ``target`` (same shape)."""
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error: |input - target|, reduced.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.L1Loss(reduction="sum")(chainrule.tensor([1.0, -3.0]), chainrule.zeros(2))
        tensor(4.)
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against ``target`` (same shape)."""
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = input - target).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.SmoothL1Loss()(chainrule.tensor([0.5, 3.0]), chainrule.zeros(2))
        tensor(1.3125)
    """

    def __init__(self, *, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be non-negative, got {beta}")
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against ``target`` (same shape)."""
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta) (d = input - target).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.HuberLoss(delta=2.0)(chainrule.tensor([3.0]), chainrule.zeros(1))
        tensor(4.)
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        if delta <= 0:
            raise ValueError(f"HuberLoss: delta must be positive, got {delta}")
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of ``input`` against ``target`` (same shape)."""
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy of logits (N, C[, d1, ...]) against class indices (N[, d1, ...]) or
    class probabilities (same shape as the input), computed through log-softmax (stable for
    large logits). ``weight`` (C,) rescales classes, ``ignore_index`` targets are skipped
    (and left out of the mean), ``label_smoothing`` mixes the target with the uniform
    distribution.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.CrossEntropyLoss()(chainrule.tensor([[1e4, 0.0]]), chainrule.tensor([1]))
        tensor(10000.)
    """

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int = -100,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got "
                             f"{label_smoothing}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of logits ``input`` against ``target``."""
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices given log-probabilities (N, C[, d1, ...]);
    ``weight`` and ``ignore_index`` as in :class:`CrossEntropyLoss`.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.NLLLoss()(chainrule.tensor([[-1.0, -2.0]]), chainrule.tensor([1]))
        tensor(2.)
    """

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int = -100,
                 reduction: str = "mean"):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of log-probabilities ``input`` against class indices ``target``."""
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities: -(t log p + (1 - t) log(1 - p)), logs clamped
    at -100; ``weight`` multiplies each element's loss (broadcast).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.BCELoss()(chainrule.tensor([0.5]), chainrule.tensor([1.0]))
        tensor(0.6931)
    """

    def __init__(self, weight: Tensor | None = None, *, reduction: str = "mean"):
        super().__init__(weight, reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of probabilities ``input`` against ``target`` in [0, 1]."""
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid and binary cross-entropy in one stable expression. ``pos_weight`` (broadcast
    along the last dim, e.g. one value per class) multiplies the positive term; ``weight``
    multiplies each element's loss.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> loss = nn.BCEWithLogitsLoss(pos_weight=chainrule.tensor([2.0]))
        >>> loss(chainrule.tensor([0.0]), chainrule.tensor([1.0]))
        tensor(1.3863)
    """

    def __init__(self, weight: Tensor | None = None, *, reduction: str = "mean",
                 pos_weight: Tensor | None = None):
        super().__init__(reduction)
        for name, t in (("weight", weight), ("pos_weight", pos_weight)):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(f"BCEWithLogitsLoss: {name} must be a Tensor or None, got "
                                f"{type(t).__name__}")
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The loss of logits ``input`` against ``target`` in [0, 1]."""
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """KL divergence t (log t - input) with ``input`` log-probabilities and ``target``
    probabilities (log-probabilities with ``log_target=True``). ``reduction='batchmean'``
    (sum divided by the batch size) gives the true KL divergence; 'mean' averages over
    every element, as PyTorch's default does.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> p = chainrule.tensor([[0.25, 0.75]])
        >>> nn.KLDivLoss(reduction="batchmean")(p.log(), p)
        tensor(0.)
    """

    def __init__(self, *, reduction: str = "mean", log_target: bool = False):
        super().__init__(reduction, _REDUCTIONS + ("batchmean",))
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The divergence of ``target`` from ``input``."""
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class _FnLoss(_Loss):
    """A loss module over one functional with stored keyword arguments."""

    _fn = None
    _keys: tuple = ()
    _defaults: dict = {}

    def __init__(self, *args, reduction: str = "mean", **kwargs):
        super().__init__(reduction)
        for i, k in enumerate(self._keys):
            setattr(self, k, args[i] if i < len(args) else kwargs.get(k, self._defaults[k]))

    def forward(self, *inputs: Tensor) -> Tensor:
        """The reduced loss."""
        kw = {k: getattr(self, k) for k in self._keys}
        return type(self)._fn(*inputs, reduction=self.reduction, **kw)


def _loss_class(name, fn, keys, defaults, example):
    doc = (f"The module form of ``F.{fn.__name__}`` (see it for the formula)." + _EX
           + example + "\n    ")
    return type(name, (_FnLoss,), {"_fn": staticmethod(fn), "_keys": tuple(keys),
                                   "_defaults": dict(defaults), "__doc__": doc,
                                   "__module__": __name__})


_ONE = "chainrule.tensor([1.0])"


MarginRankingLoss = _loss_class(
    "MarginRankingLoss", F.margin_ranking_loss, ["margin"], {"margin": 0.0},
    f"        >>> nn.MarginRankingLoss()({_ONE}, {_ONE} * 2, {_ONE})\n        tensor(1.)")


HingeEmbeddingLoss = _loss_class(
    "HingeEmbeddingLoss", F.hinge_embedding_loss, ["margin"], {"margin": 1.0},
    f"        >>> nn.HingeEmbeddingLoss()({_ONE}, -{_ONE})\n        tensor(0.)")


SoftMarginLoss = _loss_class(
    "SoftMarginLoss", F.soft_margin_loss, [], {},
    f"        >>> nn.SoftMarginLoss()({_ONE} * 0, {_ONE})\n        tensor(0.6931)")


CosineEmbeddingLoss = _loss_class(
    "CosineEmbeddingLoss", F.cosine_embedding_loss, ["margin"], {"margin": 0.0},
    "        >>> x, y = chainrule.tensor([[1.0, 0.0]]), chainrule.tensor([[0.0, 1.0]])\n"
    f"        >>> nn.CosineEmbeddingLoss()(x, y, {_ONE})\n        tensor(1.)")


TripletMarginLoss = _loss_class(
    "TripletMarginLoss", F.triplet_margin_loss, ["margin", "p", "eps", "swap"],
    {"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": False},
    "        >>> a = chainrule.zeros(1, 2)\n"
    "        >>> nn.TripletMarginLoss(eps=0.0)(a, a, a + 3)\n        tensor(0.)")


PoissonNLLLoss = _loss_class(
    "PoissonNLLLoss", F.poisson_nll_loss, ["log_input", "full", "eps"],
    {"log_input": True, "full": False, "eps": 1e-8},
    f"        >>> nn.PoissonNLLLoss()({_ONE} * 0, {_ONE})\n        tensor(1.)")


MultiLabelSoftMarginLoss = _loss_class(
    "MultiLabelSoftMarginLoss", F.multilabel_soft_margin_loss, ["weight"], {"weight": None},
    "        >>> nn.MultiLabelSoftMarginLoss()(chainrule.zeros(1, 2), chainrule.ones(1, 2))\n"
    "        tensor(0.6931)")


class GaussianNLLLoss(_Loss):
    """Gaussian negative log-likelihood, the module form of ``F.gaussian_nll_loss``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> nn.GaussianNLLLoss()(chainrule.zeros(2), chainrule.zeros(2), chainrule.ones(2))
        tensor(0.)
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction)
        self.full, self.eps = full, eps

    def forward(self, input: Tensor, target: Tensor, var: Tensor) -> Tensor:
        """The loss of ``input`` (means) and ``var`` (variances) against ``target``."""
        return F.gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)
