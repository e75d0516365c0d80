"""``Embedding``: a lookup table of learnable vectors indexed by integers.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> emb = nn.Embedding(10, 3)
    >>> emb(chainrule.tensor([[1, 2], [3, 4]])).shape
    (2, 2, 3)
"""

from __future__ import annotations

from .. import ops
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """A table ``weight`` of shape (num_embeddings, embedding_dim), initialised from N(0, 1);
    calling it with integer indices of any shape returns the rows, shape
    ``indices.shape + (embedding_dim,)``. The gradient flows into the rows used.

    Args:
        padding_idx: a row that is initialised to zeros and never receives gradient.
        max_norm: rows looked up with a ``norm_type``-norm above this are rescaled to it, in
            place, before the lookup.
        _weight: an initial table to use instead of a random one.
        _freeze: make the table not require grad.

    PyTorch's ``scale_grad_by_freq`` and ``sparse`` options are not provided.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> emb = nn.Embedding(4, 2, padding_idx=0)
        >>> emb(chainrule.tensor([0, 3])).sum().backward()
        >>> emb.weight.grad
        tensor([[0., 0.],
                [0., 0.],
                [0., 0.],
                [1., 1.]])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, *,
                 _weight: Tensor | None = None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} must be within "
                                 f"num_embeddings ({num_embeddings})")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        if _weight is None:
            self.weight = Parameter(ops.empty(num_embeddings, embedding_dim, device=device,
                                              dtype=dtype), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight has shape {tuple(_weight.shape)}, expected "
                                 f"({num_embeddings}, {embedding_dim})")
            self.weight = Parameter(_weight.detach(), requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        """Re-draw the table from N(0, 1), with the padding row set to zeros.

        Example:
            >>> from chainrule import nn
            >>> emb = nn.Embedding(3, 2, padding_idx=1); emb.reset_parameters()
            >>> emb.weight[1].tolist()
            [0.0, 0.0]
        """
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with no_grad():
                self.weight._data[self.padding_idx] = 0
                self.weight._bump()

    def forward(self, input: Tensor) -> Tensor:
        """Look up the rows ``input`` (an integer tensor)."""
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type)

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True,
                        padding_idx: int | None = None, max_norm: float | None = None,
                        norm_type: float = 2.0) -> Embedding:
        """An Embedding holding a copy-free view of ``embeddings`` (2-D), frozen by default.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> emb = nn.Embedding.from_pretrained(chainrule.eye(3))
            >>> emb(chainrule.tensor([2])), emb.weight.requires_grad
            (tensor([[0., 0., 1.]]), False)
        """
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape "
                             f"{tuple(embeddings.shape)}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, _weight=embeddings,
                   _freeze=freeze)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        return s
