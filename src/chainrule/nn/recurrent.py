"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and the single-step ``RNNCell``, ``LSTMCell``,
``GRUCell``, with PyTorch's parameter names, shapes, gate layouts and initialisation, so that a
PyTorch ``state_dict`` loads one to one and gives the same outputs.

Parameters of layer ``k`` (``_reverse`` appended for the backward direction of a
bidirectional layer), with ``G = gates * hidden_size`` (gates: 1 for RNN, 4 for LSTM in the
order i, f, g, o, 3 for GRU in the order r, z, n):

* ``weight_ih_l{k}``: ``(G, input_size)`` for k = 0, ``(G, num_directions * hidden_size)``
  after; ``weight_hh_l{k}``: ``(G, hidden_size)``;
* ``bias_ih_l{k}``, ``bias_hh_l{k}``: ``(G,)`` (absent with ``bias=False``).

All are drawn from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), as in PyTorch.

Each layer and direction runs as one fused scan over the sequence (see
``chainrule.ops.recurrent``): the input projection of all time steps is one matrix product.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> lstm = nn.LSTM(10, 20, num_layers=2, batch_first=True)
    >>> out, (h, c) = lstm(chainrule.randn(3, 7, 10))
    >>> out.shape, h.shape, c.shape
    ((3, 7, 20), (2, 3, 20), (2, 3, 20))
    >>> list(lstm.state_dict())[:4]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
"""

from __future__ import annotations

import math
import numbers
import warnings

from .. import ops
from ..errors import ShapeError
from ..ops import recurrent as R
from ..ops._amp import STATE as _AMP
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNBase", "RNNCell", "RNNCellBase"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _check_size(op: str, name: str, value, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        what = "greater than zero" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {what}, got {value}")


def _check_nonlinearity(op: str, nonlinearity: str) -> None:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{op}: unknown nonlinearity {nonlinearity!r}. Select from 'tanh' or "
                         "'relu'.")


def _amp_casts(x: Tensor) -> bool:
    """True when an autocast region casts ``x`` (a floating tensor of its device type)."""
    st = _AMP
    return (st.enabled and x.device.type == st.device_type and x._data.dtype.kind in "fV"
            and x._data.dtype.itemsize < 8)


def _check_dtype(op: str, x: Tensor, weight: Tensor) -> None:
    if x._data.dtype != weight._data.dtype:
        raise TypeError(f"{op}: input dtype ({x.dtype.name}) does not match weight dtype "
                        f"({weight.dtype.name}). Convert the input with "
                        f"input.to({weight.dtype.name}) or the model with "
                        f"model.to({x.dtype.name})")


class RNNBase(Module):
    """The shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`: parameter
    creation (names, shapes, order and init as in PyTorch), argument checks, and the loop over
    layers and directions.

    Args:
        mode: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``.
        input_size: features of the input ``x``.
        hidden_size: features of the hidden state ``h``.
        num_layers: stacked recurrent layers (the input of layer k > 0 is the output of k-1).
        bias: with ``False`` the layers have no ``bias_ih`` / ``bias_hh``.
        batch_first: inputs and outputs are ``(batch, seq, feature)`` instead of
            ``(seq, batch, feature)`` (hidden states keep ``(layers * directions, batch, H)``).
        dropout: dropout probability on the outputs of every layer but the last (training only).
        bidirectional: also run each layer from the end of the sequence to the start and
            concatenate the two directions' outputs (feature size ``2 * hidden_size``).
        device, dtype: of the parameters.

    Example:
        >>> from chainrule import nn
        >>> nn.RNNBase("GRU", 4, 8, num_layers=2).weight_ih_l1.shape
        (24, 8)
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__()
        if mode not in _GATES:
            raise ValueError(f"RNNBase: unrecognized RNN mode {mode!r}; expected one of "
                             f"{sorted(_GATES)}")
        op = type(self).__name__
        _check_size(op, "input_size", input_size, 0)
        _check_size(op, "hidden_size", hidden_size, 1)
        _check_size(op, "num_layers", num_layers, 1)
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=2)
        self.mode = mode
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        self._all_weights = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                names = []
                for kind, shape in shapes:
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, Parameter(ops.empty(*shape, device=device, dtype=dtype)))
                    names.append(name)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

        Example:
            >>> from chainrule import nn
            >>> rnn = nn.RNN(3, 4); rnn.reset_parameters()
            >>> bool(rnn.weight_hh_l0.abs().max() <= 0.5)
            True
        """
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self) -> None:
        """Kept for code written for PyTorch, where it packs the weights into one cuDNN
        buffer; chainrule's scans read the parameters as they are, so there is nothing to do.

        Example:
            >>> from chainrule import nn
            >>> nn.LSTM(2, 3).flatten_parameters()
        """

    @property
    def all_weights(self) -> list[list[Parameter]]:
        """The parameters per layer and direction, each ``[w_ih, w_hh(, b_ih, b_hh)]``.

        Example:
            >>> from chainrule import nn
            >>> [len(ws) for ws in nn.GRU(2, 3, bidirectional=True).all_weights]
            [4, 4]
        """
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    # ------------------------------------------------------------------ forward
    def _prepare(self, input, states: list) -> tuple[Tensor, list, bool]:
        """Check the input and initial states; lift unbatched ones to a batch of one."""
        op = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (2, 3):
            raise ShapeError(f"{op}: Expected input to be 2D or 3D, got {input.ndim}D instead")
        batched = input.ndim == 3
        # under autocast, LSTM and RNN cast their input, states and weights to the low dtype
        # (PyTorch's CPU list); GRU runs in its input's dtype
        check = not (self.mode != "GRU" and _amp_casts(input))
        if check:
            _check_dtype(op, input, self.weight_ih_l0)
        if input.shape[-1] != self.input_size:
            raise ShapeError(f"{op}: input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {input.shape[-1]}")
        batch_dim = 0 if self.batch_first else 1
        x = input if batched else input.unsqueeze(batch_dim)
        B = x.shape[batch_dim]
        directions = 2 if self.bidirectional else 1
        expected = (self.num_layers * directions, B, self.hidden_size)
        lifted = []
        for k, h in enumerate(states):
            if h is None:
                lifted.append(None)
                continue
            if not isinstance(h, Tensor):
                raise TypeError(f"{op}: initial states must be Tensors, got {type(h).__name__}")
            want = 3 if batched else 2
            if h.ndim != want:
                kind = "batched 3-D" if batched else "unbatched 2-D"
                raise ShapeError(f"{op}: For {kind} input, hx should also be {want}-D but got "
                                 f"{h.ndim}-D tensor")
            h = h if batched else h.unsqueeze(1)
            if tuple(h.shape) != expected:
                which = f"hidden[{k}]" if len(states) > 1 else "hidden"
                got = tuple(h.shape) if batched else tuple(h.shape[::2])
                want_shape = expected if batched else expected[::2]
                raise ShapeError(f"{op}: Expected {which} size {want_shape}, got {got}")
            if check:
                _check_dtype(op, h, self.weight_ih_l0)
            lifted.append(h)
        return x, lifted, batched

    def _run(self, x: Tensor, states: list) -> tuple[Tensor, list[list[Tensor]]]:
        """All layers and directions; returns the output and, per state, the final values."""
        directions = 2 if self.bidirectional else 1
        finals: list[list[Tensor]] = [[] for _ in states]
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                idx = layer * directions + direction
                params = [getattr(self, name) for name in self._all_weights[idx]]
                w_ih, w_hh = params[0], params[1]
                b_ih, b_hh = (params[2], params[3]) if self.bias else (None, None)
                init_states = [None if s is None else s[idx] for s in states]
                out, last = self._layer(x, init_states, w_ih, w_hh, b_ih, b_hh,
                                        reverse=direction == 1)
                outs.append(out)
                for k, h in enumerate(last):
                    finals[k].append(h)
            x = outs[0] if directions == 1 else ops.cat(outs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, finals

    def _layer(self, x, init_states, w_ih, w_hh, b_ih, b_hh, reverse):
        """One layer in one direction: (output, [final state, ...])."""
        if self.mode == "LSTM":
            out, (h, c) = R.lstm_layer(x, tuple(init_states), w_ih, w_hh, b_ih, b_hh,
                                       reverse=reverse, batch_first=self.batch_first)
            return out, (h, c)
        if self.mode == "GRU":
            out, h = R.gru_layer(x, init_states[0], w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                 batch_first=self.batch_first)
            return out, (h,)
        out, h = R.rnn_layer(x, init_states[0], w_ih, w_hh, b_ih, b_hh,
                             nonlinearity="tanh" if self.mode == "RNN_TANH" else "relu",
                             reverse=reverse, batch_first=self.batch_first)
        return out, (h,)

    def _forward_states(self, input, states: list) -> tuple[Tensor, list[Tensor]]:
        x, states, batched = self._prepare(input, states)
        out, finals = self._run(x, states)
        stacked = [ops.stack(f, dim=0) for f in finals]
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
            stacked = [s.squeeze(1) for s in stacked]
        return out, stacked


class RNN(RNNBase):
    """Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``, act = tanh or
    relu, stacked ``num_layers`` deep, optionally bidirectional.

    Args:
        input_size, hidden_size, num_layers: sizes, as in :class:`RNNBase`.
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.
        bias, batch_first, dropout, bidirectional, device, dtype: as in :class:`RNNBase`.

    ``forward(input, hx=None)``: input ``(L, B, input_size)`` (``(B, L, input_size)`` with
    ``batch_first``, or unbatched ``(L, input_size)``); hx ``(num_layers * directions, B,
    hidden_size)`` or None for zeros. Returns ``(output, h_n)``: output ``(L, B, directions *
    hidden_size)`` (the last layer's hidden state at every step) and ``h_n`` (the final hidden
    state of every layer and direction).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> rnn = nn.RNN(4, 8, num_layers=2, nonlinearity="relu", bidirectional=True)
        >>> out, h = rnn(chainrule.randn(5, 3, 4))
        >>> out.shape, h.shape
        ((5, 3, 16), (4, 3, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None):
        _check_nonlinearity("RNN", nonlinearity)
        mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the sequence; returns ``(output, h_n)``."""
        out, (h,) = self._forward_states(input, [hx])
        return out, h


class LSTM(RNNBase):
    """Long short-term memory, PyTorch's gate layout (i, f, g, o):

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of ``x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh``;
    ``c_t = f * c_{t-1} + i * g``; ``h_t = o * tanh(c_t)``.

    Args: as in :class:`RNNBase` (``input_size, hidden_size, num_layers=1, bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None``).

    ``forward(input, hx=None)``: hx is ``(h_0, c_0)``, each ``(num_layers * directions, B,
    hidden_size)``, or None for zeros. Returns ``(output, (h_n, c_n))``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> lstm = nn.LSTM(4, 8, bidirectional=True)
        >>> out, (h, c) = lstm(chainrule.randn(5, 4))  # unbatched (L, input_size)
        >>> out.shape, h.shape, c.shape
        ((5, 16), (2, 8), (2, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run the sequence; returns ``(output, (h_n, c_n))``."""
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("LSTM: hx must be a tuple (h_0, c_0) of tensors")
        elif (hx[0] is None) != (hx[1] is None):
            raise TypeError("LSTM: hx must give both h_0 and c_0 (or be None)")
        out, (h, c) = self._forward_states(input, list(hx))
        return out, (h, c)


class GRU(RNNBase):
    """Gated recurrent unit, PyTorch's gate layout (r, z, n):

    ``r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)``, likewise ``z``;
    ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``; ``h_t = (1 - z) * n + z * h_{t-1}``.

    Args: as in :class:`RNNBase`. ``forward(input, hx=None)`` returns ``(output, h_n)``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> gru = nn.GRU(4, 8, num_layers=2, batch_first=True)
        >>> out, h = gru(chainrule.randn(3, 5, 4))
        >>> out.shape, h.shape
        ((3, 5, 8), (2, 3, 8))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run the sequence; returns ``(output, h_n)``."""
        out, (h,) = self._forward_states(input, [hx])
        return out, h


# ---------------------------------------------------------------- cells
class RNNCellBase(Module):
    """The shared parameters of the cells: ``weight_ih (chunks * hidden, input)``,
    ``weight_hh (chunks * hidden, hidden)``, ``bias_ih`` and ``bias_hh`` ``(chunks *
    hidden,)``, all from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

    Example:
        >>> from chainrule import nn
        >>> nn.RNNCellBase(3, 5, bias=True, num_chunks=4).weight_hh.shape
        (20, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None):
        super().__init__()
        op = type(self).__name__
        _check_size(op, "input_size", input_size, 0)
        _check_size(op, "hidden_size", hidden_size, 1)
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        g = num_chunks * hidden_size
        self.weight_ih = Parameter(ops.empty(g, input_size, device=device, dtype=dtype))
        self.weight_hh = Parameter(ops.empty(g, hidden_size, device=device, dtype=dtype))
        if bias:
            self.bias_ih = Parameter(ops.empty(g, device=device, dtype=dtype))
            self.bias_hh = Parameter(ops.empty(g, device=device, dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

        Example:
            >>> from chainrule import nn
            >>> cell = nn.GRUCell(2, 4); cell.reset_parameters()
            >>> bool(cell.weight_ih.abs().max() <= 0.5)
            True
        """
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _lift(self, input, states: list) -> tuple[Tensor, list, bool]:
        """Check the input and states; unbatched (1-D) ones become a batch of one."""
        op = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2):
            raise ShapeError(f"{op}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        _check_dtype(op, input, self.weight_ih)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        out = []
        for h in states:
            if h is None:
                h = ops.zeros(x.shape[0], self.hidden_size, dtype=x.dtype, device=x.device)
            else:
                if not isinstance(h, Tensor):
                    raise TypeError(f"{op}: hidden states must be Tensors, got "
                                    f"{type(h).__name__}")
                if h.ndim != input.ndim:
                    raise ShapeError(f"{op}: Expected hidden to be {input.ndim}D like the input, "
                                     f"got {h.ndim}D (input {tuple(input.shape)}, hidden "
                                     f"{tuple(h.shape)})")
                h = h if batched else h.unsqueeze(0)
            out.append(h)
        return x, out, batched


class RNNCell(RNNCellBase):
    """One Elman RNN step: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    Args:
        input_size, hidden_size: feature sizes; bias: with ``False`` no biases;
        nonlinearity: ``"tanh"`` or ``"relu"``; device, dtype: of the parameters.

    ``forward(input, hx=None)``: input ``(B, input_size)`` or ``(input_size,)``, hx
    ``(B, hidden_size)`` / ``(hidden_size,)`` or None for zeros; returns ``h'``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> cell = nn.RNNCell(3, 5)
        >>> h = cell(chainrule.randn(2, 3))
        >>> cell(chainrule.randn(2, 3), h).shape
        (2, 5)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        _check_nonlinearity("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """One step; returns the new hidden state."""
        x, (h,), batched = self._lift(input, [hx])
        cell = R.rnn_tanh_cell if self.nonlinearity == "tanh" else R.rnn_relu_cell
        out = cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return out if batched else out.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step (gates i, f, g, o): ``c' = f * c + i * g``, ``h' = o * tanh(c')``.

    Args: ``input_size, hidden_size, bias=True, device=None, dtype=None``.

    ``forward(input, hx=None)``: hx is ``(h, c)`` or None for zeros; returns ``(h', c')``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> cell = nn.LSTMCell(3, 5)
        >>> h, c = cell(chainrule.randn(2, 3))
        >>> h, c = cell(chainrule.randn(2, 3), (h, c))
        >>> h.shape, c.shape
        ((2, 5), (2, 5))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor,
                hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step; returns ``(h', c')``."""
        if hx is None:
            hx = (None, None)
        elif not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError("LSTMCell: hx must be a tuple (h, c) of tensors")
        x, (h, c), batched = self._lift(input, list(hx))
        h, c = R.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih,
                           self.bias_hh)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step (gates r, z, n): ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))``,
    ``h' = (1 - z) * n + z * h``.

    Args: ``input_size, hidden_size, bias=True, device=None, dtype=None``.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> cell = nn.GRUCell(3, 5)
        >>> cell(chainrule.randn(3)).shape  # unbatched
        (5,)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """One step; returns the new hidden state."""
        x, (h,), batched = self._lift(input, [hx])
        out = R.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return out if batched else out.squeeze(0)
