"""``torch.nn.utils.rnn``: ``pad_sequence`` (and ``unpad_sequence``) for batching sequences of
different lengths. Packed sequences are not supported: chainrule's RNNs run on padded batches,
so ``pack_padded_sequence`` and friends raise and say how to do without them.

Example:
    >>> import chainrule
    >>> from chainrule.nn.utils.rnn import pad_sequence
    >>> pad_sequence([chainrule.ones(2), chainrule.ones(3)], batch_first=True)
    tensor([[1., 1., 0.],
            [1., 1., 1.]])
"""

from __future__ import annotations

from ... import ops
from ...errors import ShapeError
from ...tensor import Tensor

__all__ = ["PackedSequence", "pack_padded_sequence", "pack_sequence", "pad_packed_sequence",
           "pad_sequence", "unpad_sequence"]


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stack tensors of shape (L_i, *) into (B, L_max, *) (``batch_first``) or
    (L_max, B, *), filling with ``padding_value``; differentiable.

    Example:
        >>> import chainrule
        >>> from chainrule.nn.utils.rnn import pad_sequence
        >>> pad_sequence([chainrule.ones(1), chainrule.ones(2)]).shape
        (2, 2)
    """
    seqs = list(sequences)
    if not seqs:
        raise ValueError("pad_sequence: expected a non-empty list of tensors")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got "
                         f"{padding_side!r}")
    trailing = tuple(seqs[0].shape[1:])
    for s in seqs:
        if s.ndim == 0 or tuple(s.shape[1:]) != trailing:
            raise ShapeError(f"pad_sequence: every sequence must be (L, {trailing}...), got "
                             f"shapes {[tuple(t.shape) for t in seqs]}")
    n = max(s.shape[0] for s in seqs)
    rows = []
    for s in seqs:
        extra = n - s.shape[0]
        widths = [0, 0] * len(trailing) + ([0, extra] if padding_side == "right" else [extra, 0])
        rows.append(ops.pad(s, widths, value=padding_value) if extra else s)
    return ops.stack(rows, 0 if batch_first else 1)


def unpad_sequence(padded_sequences: Tensor, lengths, batch_first: bool = False) -> list:
    """The sequences back from a padded batch and their ``lengths``.

    Example:
        >>> import chainrule
        >>> from chainrule.nn.utils.rnn import unpad_sequence
        >>> [t.shape for t in unpad_sequence(chainrule.zeros(2, 3), [1, 3], batch_first=True)]
        [(1,), (3,)]
    """
    x = padded_sequences if batch_first else ops.transpose(padded_sequences, 0, 1)
    lengths = lengths.tolist() if isinstance(lengths, Tensor) else list(lengths)
    return [x[i, :int(n)] for i, n in enumerate(lengths)]


def _refuse(name: str):
    def fn(*args, **kwargs):
        raise NotImplementedError(
            f"nn.utils.rnn.{name}: packed sequences are not supported; chainrule's RNNs run on "
            "padded batches: pad with pad_sequence, run the RNN on the padded tensor, and "
            "take each sequence's outputs up to its length (or mask the loss)")
    fn.__name__ = name
    fn.__doc__ = "Not supported (raises NotImplementedError): use :func:`pad_sequence`."
    return fn


pack_padded_sequence = _refuse("pack_padded_sequence")
pad_packed_sequence = _refuse("pad_packed_sequence")
pack_sequence = _refuse("pack_sequence")
PackedSequence = _refuse("PackedSequence")
