"""Recurrent cells and single recurrent layers as functions (PyTorch's gate layouts).

Cells (one time step, composites of primitives; the oracle for the fused scans):
:func:`rnn_tanh_cell`, :func:`rnn_relu_cell`, :func:`lstm_cell`, :func:`gru_cell`.

Layers (one layer, one direction, a whole sequence): :func:`rnn_layer`, :func:`lstm_layer`,
:func:`gru_layer`. Each projects the inputs of all time steps in one matrix product and runs
the recurrence in one fused primitive (``chainrule.primitives.recurrent``); the modules in
``chainrule.nn`` (``RNN``, ``LSTM``, ``GRU``) stack them into layers and directions.

Gate layouts and formulas, as in PyTorch (weights ``(gates * hidden, in)``):

* RNN:  ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``, act = tanh or relu.
* LSTM: gates ``i, f, g, o``; ``c' = f * c + i * g``, ``h' = o * tanh(c')`` with i, f, o
  sigmoid and g tanh of ``x W_ih^T + b_ih + h W_hh^T + b_hh``.
* GRU:  gates ``r, z, n``; ``r, z = sigmoid(x W_i{r,z}^T + b_i{r,z} + h W_h{r,z}^T +
  b_h{r,z})``, ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``,
  ``h' = (1 - z) * n + z * h``.

Example:
    >>> import chainrule
    >>> from chainrule.ops.recurrent import lstm_cell
    >>> x, h, c = chainrule.ones(2, 3), chainrule.zeros(2, 4), chainrule.zeros(2, 4)
    >>> w_ih, w_hh = chainrule.ones(16, 3) * 0.1, chainrule.ones(16, 4) * 0.1
    >>> h1, c1 = lstm_cell(x, (h, c), w_ih, w_hh)
    >>> h1.shape, c1.shape
    ((2, 4), (2, 4))
"""

from __future__ import annotations

from ..errors import ShapeError
from ..primitives import movement as PM
from ..primitives import recurrent as PR
from ..tensor import Tensor
from ._amp import autocast_lower
from ._util import cast
from .creation import ones, zeros
from .elementwise import _t, relu, sigmoid, tanh
from .linalg import matmul
from .nn import linear
from .shape import cat, chunk

__all__ = [
    "gru_cell", "gru_layer", "lstm_cell", "lstm_layer", "rnn_layer", "rnn_relu_cell",
    "rnn_tanh_cell",
]


# ---------------------------------------------------------------- argument checks
def _check_float(op: str, tensors: dict) -> None:
    """All given tensors share one floating dtype and one device."""
    ref_name, ref = next(iter(tensors.items()))
    if ref._data.dtype.kind not in "fV":
        raise TypeError(f"{op}: {ref_name} must be a floating-point tensor, got "
                        f"{ref.dtype.name}")
    for name, t in tensors.items():
        if t._data.dtype != ref._data.dtype:
            raise TypeError(f"{op}: {name} has dtype {t.dtype.name} but {ref_name} has "
                            f"{ref.dtype.name}; convert one of them with .to(dtype)")
        if t.device != ref.device:
            raise TypeError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}")


def _check_weights(op: str, gates: int, w_ih, w_hh, b_ih, b_hh) -> int:
    """Check the weight and bias shapes of one cell; returns the hidden size."""
    if w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise ShapeError(f"{op}: weight_hh must have shape ({gates} * hidden_size, hidden_size), "
                         f"got {tuple(w_hh.shape)}")
    hidden = w_hh.shape[1]
    if w_ih.ndim != 2 or w_ih.shape[0] != gates * hidden:
        raise ShapeError(f"{op}: weight_ih must have shape ({gates * hidden}, input_size) to "
                         f"match weight_hh {tuple(w_hh.shape)}, got {tuple(w_ih.shape)}")
    for name, b in (("bias_ih", b_ih), ("bias_hh", b_hh)):
        if b is not None and tuple(b.shape) != (gates * hidden,):
            raise ShapeError(f"{op}: {name} must have shape ({gates * hidden},), got "
                             f"{tuple(b.shape)}")
    return hidden


def _check_cell(op: str, gates: int, x, hx: dict, w_ih, w_hh, b_ih, b_hh) -> None:
    hidden = _check_weights(op, gates, w_ih, w_hh, b_ih, b_hh)
    if x.ndim not in (1, 2):
        raise ShapeError(f"{op}: input must be 1-D (input_size,) or 2-D (batch, input_size), "
                         f"got shape {tuple(x.shape)}")
    if x.shape[-1] != w_ih.shape[1]:
        raise ShapeError(f"{op}: input has inconsistent input_size: got {x.shape[-1]} expected "
                         f"{w_ih.shape[1]} (input {tuple(x.shape)}, weight_ih "
                         f"{tuple(w_ih.shape)})")
    want = x.shape[:-1] + (hidden,)
    for name, h in hx.items():
        if tuple(h.shape) != want:
            raise ShapeError(f"{op}: {name} must have shape {want} for input of shape "
                             f"{tuple(x.shape)}, got {tuple(h.shape)}")
    tensors = {"input": x, **hx, "weight_ih": w_ih, "weight_hh": w_hh}
    if b_ih is not None:
        tensors["bias_ih"] = b_ih
    if b_hh is not None:
        tensors["bias_hh"] = b_hh
    _check_float(op, tensors)


# ---------------------------------------------------------------- cells
def _rnn_cell(op, act, input, hx, w_ih, w_hh, b_ih, b_hh):
    x, h = _t(input), _t(hx)
    _check_cell(op, 1, x, {"hx": h}, w_ih, w_hh, b_ih, b_hh)
    return act(linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh))


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One Elman RNN step: ``tanh(input W_ih^T + b_ih + hx W_hh^T + b_hh)``.

    Args:
        input: ``(batch, input_size)`` or ``(input_size,)``.
        hx: the hidden state, ``(batch, hidden_size)`` or ``(hidden_size,)``.
        w_ih, w_hh: ``(hidden_size, input_size)`` and ``(hidden_size, hidden_size)``.
        b_ih, b_hh: ``(hidden_size,)`` each, or None.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import rnn_tanh_cell
        >>> rnn_tanh_cell(chainrule.ones(1, 2), chainrule.zeros(1, 3), chainrule.ones(3, 2),
        ...               chainrule.ones(3, 3)).shape
        (1, 3)
    """
    return _rnn_cell("rnn_tanh_cell", tanh, input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One Elman RNN step with ReLU: ``relu(input W_ih^T + b_ih + hx W_hh^T + b_hh)``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import rnn_relu_cell
        >>> rnn_relu_cell(chainrule.ones(2), chainrule.zeros(1), chainrule.ones(1, 2),
        ...               chainrule.ones(1, 1))
        tensor([2.])
    """
    return _rnn_cell("rnn_relu_cell", relu, input, hx, w_ih, w_hh, b_ih, b_hh)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[Tensor, Tensor]:
    """One LSTM step (gates i, f, g, o): returns ``(h', c')``.

    ``i, f, g, o = split(input W_ih^T + b_ih + h W_hh^T + b_hh)``;
    ``c' = sigmoid(f) * c + sigmoid(i) * tanh(g)``; ``h' = sigmoid(o) * tanh(c')``.

    Args:
        input: ``(batch, input_size)`` or ``(input_size,)``.
        hx: the pair ``(h, c)``, each ``(batch, hidden_size)`` or ``(hidden_size,)``.
        w_ih, w_hh: ``(4 * hidden_size, input_size)`` and ``(4 * hidden_size, hidden_size)``.
        b_ih, b_hh: ``(4 * hidden_size,)`` each, or None.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import lstm_cell
        >>> h, c = lstm_cell(chainrule.zeros(3), (chainrule.zeros(2), chainrule.ones(2)),
        ...                  chainrule.zeros(8, 3), chainrule.zeros(8, 2))
        >>> c  # forget gate sigmoid(0) = 0.5 halves the cell state
        tensor([0.5000, 0.5000])
    """
    x = _t(input)
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError("lstm_cell: hx must be a pair (h, c) of tensors")
    h, c = _t(hx[0]), _t(hx[1])
    _check_cell("lstm_cell", 4, x, {"h": h, "c": c}, w_ih, w_hh, b_ih, b_hh)
    i, f, g, o = chunk(linear(x, w_ih, b_ih) + linear(h, w_hh, b_hh), 4, dim=-1)
    c1 = sigmoid(f) * c + sigmoid(i) * tanh(g)
    return sigmoid(o) * tanh(c1), c1


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """One GRU step (gates r, z, n): returns ``h'``.

    ``r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)``, likewise z;
    ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``; ``h' = (1 - z) * n + z * h``.

    Args:
        input: ``(batch, input_size)`` or ``(input_size,)``.
        hx: ``(batch, hidden_size)`` or ``(hidden_size,)``.
        w_ih, w_hh: ``(3 * hidden_size, input_size)`` and ``(3 * hidden_size, hidden_size)``.
        b_ih, b_hh: ``(3 * hidden_size,)`` each, or None.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import gru_cell
        >>> gru_cell(chainrule.zeros(3), chainrule.ones(2), chainrule.zeros(6, 3),
        ...          chainrule.zeros(6, 2))  # z = 0.5, n = 0: h' = h / 2
        tensor([0.5000, 0.5000])
    """
    x, h = _t(input), _t(hx)
    _check_cell("gru_cell", 3, x, {"hx": h}, w_ih, w_hh, b_ih, b_hh)
    i_r, i_z, i_n = chunk(linear(x, w_ih, b_ih), 3, dim=-1)
    h_r, h_z, h_n = chunk(linear(h, w_hh, b_hh), 3, dim=-1)
    r = sigmoid(i_r + h_r)
    z = sigmoid(i_z + h_z)
    n = tanh(i_n + r * h_n)
    return n + z * (h - n)


# ---------------------------------------------------------------- layers
def _check_layer(op: str, gates: int, x, hx: dict, w_ih, w_hh, b_ih, b_hh,
                 batch_first: bool) -> tuple[int, int, int]:
    """Check one layer's arguments; returns (seq_len, batch, hidden)."""
    hidden = _check_weights(op, gates, w_ih, w_hh, b_ih, b_hh)
    if x.ndim != 3:
        layout = "(batch, seq, feature)" if batch_first else "(seq, batch, feature)"
        raise ShapeError(f"{op}: input must be 3-D {layout}, got shape {tuple(x.shape)}")
    L, B = (x.shape[1], x.shape[0]) if batch_first else x.shape[:2]
    if L == 0:
        raise ShapeError(f"{op}: expected sequence length to be larger than 0, got input of "
                         f"shape {tuple(x.shape)}")
    if x.shape[2] != w_ih.shape[1]:
        raise ShapeError(f"{op}: input.size(-1) must be equal to input_size. Expected "
                         f"{w_ih.shape[1]}, got {x.shape[2]}")
    for name, h in hx.items():
        if h is not None and tuple(h.shape) != (B, hidden):
            raise ShapeError(f"{op}: expected {name} of shape {(B, hidden)}, got "
                             f"{tuple(h.shape)}")
    tensors = {"input": x, "weight_ih": w_ih, "weight_hh": w_hh}
    tensors.update({k: v for k, v in (("bias_ih", b_ih), ("bias_hh", b_hh), *hx.items())
                    if v is not None})
    _check_float(op, tensors)
    return L, B, hidden


def _project(x: Tensor, w: Tensor, b, batch_first: bool) -> Tensor:
    """The input projection of every time step in one matrix product, time-major (L, B, G)
    (a view of the batch-first product with ``batch_first``). The bias rides in the product
    as an extra column of W against a column of ones (no separate pass over the result; its
    gradient comes out of the weight gradient's product)."""
    d0, d1, n_in = x.shape
    G = w.shape[0]
    rows = PM.reshape(x, shape=(d0 * d1, n_in))
    if b is not None:
        rows = cat([rows, ones(d0 * d1, 1, dtype=x.dtype, device=x.device)], dim=1)
        w = cat([w, PM.reshape(b, shape=(G, 1))], dim=1)
    y = PM.reshape(matmul(rows, PM.permute(w, axes=(1, 0))), shape=(d0, d1, G))
    return PM.permute(y, axes=(1, 0, 2)) if batch_first else y


def _bias_sum(b_ih, b_hh):
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def _state(h, x: Tensor, B: int, H: int) -> Tensor:
    return h if h is not None else zeros(B, H, dtype=x.dtype, device=x.device)


def _bias(b, x: Tensor, G: int) -> Tensor:
    return b if b is not None else zeros(G, dtype=x.dtype, device=x.device)


def _hidden_seq(hs: Tensor, batch_first: bool) -> Tensor:
    """A scan's hidden states (L, B, H), or as (B, L, H) with ``batch_first`` (a view)."""
    return PM.permute(hs, axes=(1, 0, 2)) if batch_first else hs


@autocast_lower  # PyTorch's CPU autocast runs rnn_tanh / rnn_relu in the low dtype
def rnn_layer(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *,
              nonlinearity: str = "tanh", reverse: bool = False,
              batch_first: bool = False) -> tuple[Tensor, Tensor]:
    """One Elman RNN layer over a whole sequence: returns ``(output, h_n)``.

    Args:
        input: ``(L, B, input_size)``, or ``(B, L, input_size)`` with ``batch_first``.
        hx: initial hidden state ``(B, hidden_size)``, or None for zeros.
        w_ih, w_hh, b_ih, b_hh: as in :func:`rnn_tanh_cell`.
        nonlinearity: ``"tanh"`` or ``"relu"``.
        reverse: run from the last time step to the first (outputs stay in time order;
            ``h_n`` is then the state after time step 0).

    Returns:
        ``output`` of shape ``(L, B, hidden_size)`` (``(B, L, hidden_size)`` with
        ``batch_first``) and the final hidden state ``h_n`` of shape ``(B, hidden_size)``.

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import rnn_layer
        >>> out, h = rnn_layer(chainrule.ones(5, 2, 3), None, chainrule.ones(4, 3) * 0.1,
        ...                    chainrule.ones(4, 4) * 0.1)
        >>> out.shape, h.shape
        ((5, 2, 4), (2, 4))
    """
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_layer: unknown nonlinearity {nonlinearity!r}; select from "
                         "'tanh' or 'relu'")
    x = _t(input)
    hx = None if hx is None else _t(hx)
    L, B, H = _check_layer("rnn_layer", 1, x, {"hx": hx}, w_ih, w_hh, b_ih, b_hh, batch_first)
    xg = _project(x, w_ih, _bias_sum(b_ih, b_hh), batch_first)
    y = PR.rnn_scan(xg, w_hh, _state(hx, x, B, H), nonlinearity=nonlinearity,
                    reverse=bool(reverse))
    h_n = PM.getitem(y, index=(0 if reverse else L - 1,))
    return (PM.permute(y, axes=(1, 0, 2)) if batch_first else y), h_n


@autocast_lower  # and lstm: input, states and weights cast, outputs in the low dtype
def lstm_layer(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *,
               reverse: bool = False,
               batch_first: bool = False) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One LSTM layer over a whole sequence: returns ``(output, (h_n, c_n))``.

    Args:
        input: ``(L, B, input_size)``, or ``(B, L, input_size)`` with ``batch_first``.
        hx: ``(h0, c0)``, each ``(B, hidden_size)`` (either may be None), or None for zeros.
        w_ih, w_hh, b_ih, b_hh: as in :func:`lstm_cell`.
        reverse: run from the last time step to the first (outputs stay in time order).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import lstm_layer
        >>> out, (h, c) = lstm_layer(chainrule.ones(5, 2, 3), None, chainrule.ones(16, 3) * 0.1,
        ...                          chainrule.ones(16, 4) * 0.1)
        >>> out.shape, h.shape, c.shape
        ((5, 2, 4), (2, 4), (2, 4))
        >>> bool((out[-1] == h).all())
        True
    """
    x = _t(input)
    if hx is None:
        hx = (None, None)
    elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError("lstm_layer: hx must be a pair (h0, c0) or None")
    hx = tuple(None if h is None else _t(h) for h in hx)
    L, B, H = _check_layer("lstm_layer", 4, x, {"h0": hx[0], "c0": hx[1]}, w_ih, w_hh, b_ih,
                           b_hh, batch_first)
    xg = _project(x, w_ih, _bias_sum(b_ih, b_hh), batch_first)
    hs, cs, _ = PR.lstm_scan(xg, w_hh, _state(hx[0], x, B, H), _state(hx[1], x, B, H),
                             reverse=bool(reverse))
    last = 0 if reverse else L - 1
    return (_hidden_seq(hs, batch_first),
            (PM.getitem(hs, index=(last,)), PM.getitem(cs, index=(last,))))


def gru_layer(input, hx, w_ih, w_hh, b_ih=None, b_hh=None, *,
              reverse: bool = False, batch_first: bool = False) -> tuple[Tensor, Tensor]:
    """One GRU layer over a whole sequence: returns ``(output, h_n)``.

    Args:
        input: ``(L, B, input_size)``, or ``(B, L, input_size)`` with ``batch_first``.
        hx: initial hidden state ``(B, hidden_size)``, or None for zeros.
        w_ih, w_hh, b_ih, b_hh: as in :func:`gru_cell`.
        reverse: run from the last time step to the first (outputs stay in time order).

    Example:
        >>> import chainrule
        >>> from chainrule.ops.recurrent import gru_layer
        >>> out, h = gru_layer(chainrule.ones(2, 5, 3), None, chainrule.ones(12, 3) * 0.1,
        ...                    chainrule.ones(12, 4) * 0.1, batch_first=True)
        >>> out.shape, h.shape
        ((2, 5, 4), (2, 4))
    """
    x = _t(input)
    hx = None if hx is None else _t(hx)
    L, B, H = _check_layer("gru_layer", 3, x, {"hx": hx}, w_ih, w_hh, b_ih, b_hh, batch_first)
    xg = _project(x, w_ih, b_ih, batch_first)
    if xg._data.dtype != x._data.dtype:
        # under autocast the projection (a matmul) ran in the low dtype; gru is not on
        # PyTorch's autocast list: the recurrence runs in the input's dtype, as there
        xg = cast(xg, x.dtype)
    hs, _, _ = PR.gru_scan(xg, w_hh, _bias(b_hh, x, 3 * H), _state(hx, x, B, H),
                           reverse=bool(reverse))
    return _hidden_seq(hs, batch_first), PM.getitem(hs, index=(0 if reverse else L - 1,))
