"""Distance modules (PyTorch's ``torch.nn`` names): CosineSimilarity, PairwiseDistance.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> nn.CosineSimilarity(dim=0)(chainrule.ones(3), chainrule.ones(3))
    tensor(1.)
"""

from __future__ import annotations

from . import functional as F
from .activation import _EX, _fn_module

__all__ = ["CosineSimilarity", "PairwiseDistance"]


CosineSimilarity = _fn_module("CosineSimilarity", F.cosine_similarity, ["dim", "eps"],
                              {"dim": 1, "eps": 1e-8},
                              "Cosine of the angle between x1 and x2 along ``dim``." + _EX
                              + "        >>> x = chainrule.ones(1, 3)\n"
                                "        >>> nn.CosineSimilarity()(x, x)\n"
                                "        tensor([1.])\n    ", module=__name__)


PairwiseDistance = _fn_module("PairwiseDistance", F.pairwise_distance, ["p", "eps", "keepdim"],
                              {"p": 2.0, "eps": 1e-6, "keepdim": False},
                              "p-norm of x1 - x2 + eps along the last dimension." + _EX
                              + "        >>> nn.PairwiseDistance(eps=0.0)(chainrule.zeros(1, 2),"
                                " chainrule.ones(1, 2))\n        tensor([1.4142])\n    ",
                              module=__name__)
