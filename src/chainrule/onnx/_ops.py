"""From the captured program to ONNX: the graph builder and the table of op mappings.

A mapping is ``fn(b, op, *args, **kwargs) -> name or [names]``: ``args`` and ``kwargs`` are the
op's templates (``prim`` ops without the leading array module), holding jit ``Var``s where
arrays flow in, literals elsewhere, and :class:`~chainrule.onnx._export.Dim` where a literal is a
size that depends on the dynamic axes. It returns the ONNX value name of each of ``op.outs``,
in order (a primitive with several outputs returns a list), each with the out's dtype.

Primitives with several outputs map to one value name per output: ``self_attention``
(``O``, ``P^T``), ``lstm_scan`` (hidden states, cell states, gates), ``gru_scan`` (hidden
states, hidden-side pre-activations ``r, z, hn``, candidates ``n``); ``rnn_scan`` has one.
"""

from __future__ import annotations

import math

from ..backend import np
from ._export import Dim, ExportError, _site_text

MIN_OPSET, MAX_OPSET = 17, 21
_I64_MAX = 2 ** 63 - 1
_I64_MIN = -2 ** 63


def _is_dim(x) -> bool:
    return isinstance(x, Dim)


class Builder:
    """Accumulates nodes and initializers; names every value."""

    def __init__(self, onnx, opset, graph, sites, sym_src):
        self.onnx = onnx
        self.h = onnx.helper
        self.opset = opset
        self.graph = graph
        self.sites = sites
        self.sym_src = sym_src  # symbol -> (input value name, axis)
        self.nodes: list = []
        self.inits: list = []
        self.names: dict = {}  # Var -> value name
        self.n = 0
        self.cache: dict = {}
        self.op = None
        self.arg_axes: dict = {}  # input Var -> its dynamic axes
        self.const_dims = getattr(graph, "const_dims", {})
        self.var_dyn = getattr(graph, "var_dyn", {})  # Var -> its dynamic axes

    def dynamic_axes_of(self, x) -> set:
        """The axes of ``x`` whose size depends on the dynamic axes (empty for a literal)."""
        if self.graph.inputs and x in self.arg_axes:
            return self.arg_axes[x]
        return self.var_dyn.get(x, set())

    # ------------------------------------------------------------------ names and nodes
    def fresh(self, hint="v") -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def node(self, op_type, inputs, n_out=1, into=None, **attrs):
        """Append a node; its output name (or names when ``n_out > 1``)."""
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        nd = self.h.make_node(op_type, [i if i is not None else "" for i in inputs], outs,
                              name=self.fresh("n_" + op_type), **attrs)
        (self.nodes if into is None else into).append(nd)
        return outs[0] if n_out == 1 else outs

    def tensor_type(self, dtype) -> int:
        try:
            return self.h.np_dtype_to_tensor_dtype(np.dtype(dtype))
        except (KeyError, TypeError, ValueError):
            raise self.error(f"dtype {np.dtype(dtype)} has no ONNX type here") from None

    def const(self, value, dtype=None, hint="c") -> str:
        arr = np.asarray(value, dtype=dtype)
        key = None
        if arr.size <= 16:
            key = ("const", arr.dtype.str, arr.shape, arr.tobytes())
            if key in self.cache:
                return self.cache[key]
        name = self.fresh(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(arr.copy(order="C"), name))
        if key is not None:
            self.cache[key] = name
        return name

    def error(self, what) -> ExportError:
        op = self.op
        where = f" at {_site_text(self.sites, op)}" if op is not None else ""
        name = f"{op.kind} op '{op.name}'" if op is not None else "the model"
        return ExportError(f"onnx.export: {name}{where}: {what}")

    # ------------------------------------------------------------------ values
    def val(self, x, dtype=None) -> str:
        """The value name of a Var (an input, a constant, an earlier op's output) or of a
        literal (a constant of ``dtype``)."""
        from ..jit.ir import Var  # noqa: PLC0415

        if isinstance(x, Var):
            if x in self.names:
                return self.names[x]
            if x in self.graph.consts:
                name = self._const_var(x)
                self.names[x] = name
                return name
            raise self.error(f"reads {x}, which no earlier op produced")
        if _is_dim(x):
            return self.cast(self.node("Squeeze", [self.dim(x)]), np.int64, dtype or np.int64)
        if isinstance(x, (bool, int, float, np.generic)):
            return self.const(np.asarray(x, dtype=dtype))
        raise self.error(f"an argument {x!r} of type {type(x).__name__} is not supported")

    def _const_var(self, v) -> str:
        arr = np.asarray(self.graph.consts[v])
        dims = self.const_dims.get(v)
        if dims is None:
            return self.const(arr, hint="const")
        flat = arr.reshape(-1)
        if flat.size == 0 or not (flat == flat[0]).all():
            raise self.error(f"a constant array of shape {arr.shape} whose shape depends on the "
                             "dynamic axes and whose values are not all equal (it cannot be "
                             "rebuilt at another size); export without dynamic_axes")
        fill = self.onnx.numpy_helper.from_array(np.asarray(flat[:1]), self.fresh("fill"))
        return self.node("ConstantOfShape", [self.ints(dims)], value=fill)

    def dtype_of(self, x, default=None):
        from ..jit.ir import Var  # noqa: PLC0415

        if isinstance(x, Var):
            return np.dtype(x.dtype)
        return default

    def cast(self, name, have, want) -> str:
        if want is None or np.dtype(have) == np.dtype(want):
            return name
        return self.node("Cast", [name], to=self.tensor_type(want))

    def as_dtype(self, x, want) -> str:
        have = self.dtype_of(x)
        if have is None:
            return self.val(x, dtype=want)
        return self.cast(self.val(x), have, want)

    # ------------------------------------------------------------------ sizes
    def dim(self, d) -> str:
        """A 1-D int64 tensor of one element holding ``d`` (an int or a Dim)."""
        if not _is_dim(d):
            return self.const(np.asarray([int(d)], dtype=np.int64))
        key = ("dim", d.k, tuple(sorted(d.exps.items())), d.c)
        if key in self.cache:
            return self.cache[key]
        acc = None
        for sym, e in sorted(d.exps.items()):
            src, axis = self.sym_src[sym]
            skey = ("sym", sym)
            if skey not in self.cache:
                shape = self.node("Shape", [src])
                self.cache[skey] = self.node("Gather", [shape, self.const(
                    np.asarray([axis], dtype=np.int64))], axis=0)
            for _ in range(e):
                acc = self.cache[skey] if acc is None else self.node("Mul", [acc,
                                                                             self.cache[skey]])
        if acc is None:
            acc = self.const(np.asarray([0], dtype=np.int64))
        if d.k != 1:
            acc = self.node("Mul", [acc, self.const(np.asarray([d.k], dtype=np.int64))])
        if d.c:
            acc = self.node("Add", [acc, self.const(np.asarray([d.c], dtype=np.int64))])
        self.cache[key] = acc
        return acc

    def ints(self, seq) -> str:
        """A 1-D int64 tensor of ``seq`` (ints and Dims): a constant when nothing is dynamic,
        otherwise a Concat of the sizes computed from the inputs' shapes."""
        seq = [seq] if isinstance(seq, (int, np.integer, Dim)) else list(seq)
        if not any(_is_dim(x) for x in seq):
            return self.const(np.asarray([int(x) for x in seq], dtype=np.int64).reshape(-1))
        return self.node("Concat", [self.dim(x) for x in seq], axis=0)

    def static(self, x, what):
        """``x`` with no Dim in it, or a clear error (a size ONNX needs as an attribute)."""
        if _is_dim(x) or (isinstance(x, (tuple, list)) and any(_is_dim(i) for i in x)):
            raise self.error(f"{what} depends on the dynamic axes, and ONNX takes it as a fixed "
                             "attribute; export without dynamic_axes for this model")
        return x

    def reduce(self, op_type, x, axes, keepdims):
        """A reduction over ``axes`` (None: all), with axes as an attribute or an input as the
        opset wants."""
        kd = int(bool(keepdims))
        if axes is None:
            return self.node(op_type, [x], keepdims=kd)
        axes = [int(a) for a in ([axes] if isinstance(axes, int) else axes)]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.const(np.asarray(axes, dtype=np.int64))],
                             keepdims=kd)
        return self.node(op_type, [x], axes=axes, keepdims=kd)


# ---------------------------------------------------------------------- elementwise
_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "tanh": "Tanh", "sigmoid": "Sigmoid",
          "relu": "Relu", "sqrt": "Sqrt", "abs": "Abs", "erf": "Erf", "sin": "Sin",
          "cos": "Cos", "floor": "Floor", "ceil": "Ceil", "sign": "Sign",
          "logical_not": "Not", "isnan": "IsNaN", "isinf": "IsInf", "copy": "Identity",
          # NumPy's names
          "negative": "Neg", "absolute": "Abs", "reciprocal": "Reciprocal"}
_ARITH = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow",
          "maximum": "Max", "minimum": "Min",
          "subtract": "Sub", "multiply": "Mul", "true_divide": "Div", "divide": "Div",
          "power": "Pow", "fmax": "Max", "fmin": "Min"}
_COMPARE = {"eq": "Equal", "lt": "Less", "gt": "Greater", "le": "LessOrEqual",
            "ge": "GreaterOrEqual", "ne": "NotEqual",
            "equal": "Equal", "less": "Less", "greater": "Greater", "less_equal": "LessOrEqual",
            "greater_equal": "GreaterOrEqual", "not_equal": "NotEqual"}
_LOGIC = {"logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}


def _out_dtype(op, k=0):
    return np.dtype(op.outs[k].dtype)


def _unary(onnx_op):
    def lower(b, op, x, **kw):
        if kw:
            raise b.error(f"unsupported parameters {sorted(kw)}")
        dt = _out_dtype(op)
        if onnx_op in ("Not", "IsNaN", "IsInf"):
            return b.node(onnx_op, [b.val(x)])
        return b.node(onnx_op, [b.as_dtype(x, dt)])
    return lower


def _arith(onnx_op):
    def lower(b, op, x, y, **kw):
        _no_kw(b, kw)
        dt = _out_dtype(op)
        return b.node(onnx_op, [b.as_dtype(x, dt), b.as_dtype(y, dt)])
    return lower


def _compare(onnx_op):
    def lower(b, op, x, y, **kw):
        _no_kw(b, kw)
        dts = [b.dtype_of(v) for v in (x, y) if b.dtype_of(v) is not None]
        dt = np.result_type(*dts) if dts else np.result_type(x, y)
        a, c = b.as_dtype(x, dt), b.as_dtype(y, dt)
        if onnx_op == "NotEqual":
            return b.node("Not", [b.node("Equal", [a, c])])
        return b.node(onnx_op, [a, c])
    return lower


def _logic(onnx_op):
    def lower(b, op, x, y, **kw):
        _no_kw(b, kw)
        return b.node(onnx_op, [b.as_dtype(x, np.bool_), b.as_dtype(y, np.bool_)])
    return lower


def _no_kw(b, kw):
    kw = {k: v for k, v in kw.items() if not (k == "dtype" and v is None) and k != "casting"}
    if kw:
        raise b.error(f"unsupported arguments {sorted(kw)}")


def _expm1(b, op, x):
    dt = _out_dtype(op)
    return b.node("Sub", [b.node("Exp", [b.as_dtype(x, dt)]), b.const(1, dt)])


def _log1p(b, op, x):
    dt = _out_dtype(op)
    return b.node("Log", [b.node("Add", [b.as_dtype(x, dt), b.const(1, dt)])])


def _square(b, op, x, **kw):
    _no_kw(b, kw)
    v = b.as_dtype(x, _out_dtype(op))
    return b.node("Mul", [v, v])


def _float_only(b, op):
    dt = _out_dtype(op)
    if dt.kind != "f":
        raise b.error(f"on {dt} (integer rounding differs from ONNX's); only floating "
                      "inputs are mapped")
    return dt


def _floor_divide(b, op, x, y):
    dt = _float_only(b, op)
    return b.node("Floor", [b.node("Div", [b.as_dtype(x, dt), b.as_dtype(y, dt)])])


def _remainder(b, op, x, y):  # NumPy's: the sign of the divisor, x - floor(x / y) * y
    dt = _float_only(b, op)
    a, c = b.as_dtype(x, dt), b.as_dtype(y, dt)
    q = b.node("Floor", [b.node("Div", [a, c])])
    return b.node("Sub", [a, b.node("Mul", [q, c])])


def _logaddexp(b, op, x, y):  # max + log1p(exp(-|x - y|))
    dt = _out_dtype(op)
    a, c = b.as_dtype(x, dt), b.as_dtype(y, dt)
    tail = b.node("Exp", [b.node("Neg", [b.node("Abs", [b.node("Sub", [a, c])])])])
    return b.node("Add", [b.node("Max", [a, c]), b.node("Log", [b.node("Add", [
        tail, b.const(1, dt)])])])


def _cumsum(b, op, x, axis):
    dt = _out_dtype(op)
    return b.node("CumSum", [b.as_dtype(x, dt), b.const(np.int64(int(axis)))])


def _where(b, op, c, x, y):
    dt = _out_dtype(op)
    return b.node("Where", [b.as_dtype(c, np.bool_), b.as_dtype(x, dt), b.as_dtype(y, dt)])


def _identity(b, op, x, *rest, **kw):
    return b.node("Identity", [b.val(x)])


def _cast(b, op, x, dtype=None, **kw):
    return b.node("Cast", [b.val(x)], to=b.tensor_type(_out_dtype(op)))


def _gelu(b, op, x):
    dt = _out_dtype(op)
    v = b.as_dtype(x, dt)
    phi = b.node("Add", [b.node("Erf", [b.node("Mul", [v, b.const(1 / math.sqrt(2), dt)])]),
                         b.const(1, dt)])
    return b.node("Mul", [b.node("Mul", [v, phi]), b.const(0.5, dt)])


# ---------------------------------------------------------------------- products, norms
def _linear(b, op, x, w, bias):
    y = b.node("MatMul", [b.val(x), b.node("Transpose", [b.val(w)], perm=[1, 0])])
    return y if bias is None else b.node("Add", [y, b.val(bias)])


def _matmul(b, op, x, y):
    dt = _out_dtype(op)
    return b.node("MatMul", [b.as_dtype(x, dt), b.as_dtype(y, dt)])


def _einsum(b, op, *xs, equation):
    dt = _out_dtype(op)
    return b.node("Einsum", [b.as_dtype(x, dt) for x in xs], equation=equation)


def _softmax(onnx_op):
    def lower(b, op, x, axis):
        return b.node(onnx_op, [b.val(x)], axis=int(axis))
    return lower


def _layer_norm(b, op, x, axes, eps):
    r = len(x.shape)
    axes = sorted(a % r for a in ([axes] if isinstance(axes, int) else axes))
    if axes != list(range(r - len(axes), r)):
        raise b.error(f"normalises over axes {axes}, not the trailing ones (ONNX's "
                      "LayerNormalization)")
    if b.dynamic_axes_of(x) & set(axes):
        raise b.error("normalises over a dynamic axis (its weight has that axis's size); "
                      "export without dynamic_axes for this model")
    dt = np.dtype(x.dtype)
    scale = b.const(np.ones([x.shape[a] for a in axes], dtype=dt))
    return b.node("LayerNormalization", [b.val(x), scale], axis=axes[0], epsilon=float(eps))


def _reducer(onnx_op):
    def lower(b, op, x, axes, keepdims):
        return b.reduce(onnx_op, b.as_dtype(x, _out_dtype(op)), axes, keepdims)
    return lower


# ---------------------------------------------------------------------- convolution, pooling
def _pads(padding):
    return [int(lo) for lo, _ in padding] + [int(hi) for _, hi in padding]


def _conv(b, op, x, w, bias, stride, padding, dilation, groups):
    ins = [b.val(x), b.val(w)] + ([] if bias is None else [b.val(bias)])
    return b.node("Conv", ins, strides=list(stride), pads=_pads(padding),
                  dilations=list(dilation), group=int(groups))


def _conv_transpose(b, op, y, w, bias, stride, padding, dilation, groups, size):
    b.static(size, "a transposed convolution's output size")
    kernel = w.shape[2:]
    full = [int(s) + lo + hi for s, (lo, hi) in zip(size, padding)]
    natural = [st * (n - 1) + d * (k - 1) + 1
               for st, n, d, k in zip(stride, y.shape[2:], dilation, kernel)]
    extra = [f - n for f, n in zip(full, natural)]  # PyTorch's output_padding
    if any(e < 0 for e in extra):
        raise b.error(f"output size {tuple(size)} is smaller than the transposed "
                      "convolution's natural size")
    ins = [b.val(y), b.val(w)] + ([] if bias is None else [b.val(bias)])
    return b.node("ConvTranspose", ins, strides=list(stride), pads=_pads(padding),
                  dilations=list(dilation), group=int(groups), output_padding=extra)


def _max_pool(b, op, x, kernel, stride, padding, dilation):
    return b.node("MaxPool", [b.val(x)], kernel_shape=list(kernel), strides=list(stride),
                  pads=_pads(padding), dilations=list(dilation))


def _window_sum(b, op, x, kernel, stride, padding, dilation, scale):
    attrs = {}
    if any(d != 1 for d in dilation):
        if b.opset < 19:
            raise b.error("a dilated average pool needs opset_version >= 19")
        attrs["dilations"] = list(dilation)
    y = b.node("AveragePool", [b.val(x)], kernel_shape=list(kernel), strides=list(stride),
               pads=_pads(padding), count_include_pad=1, **attrs)
    factor = float(scale) * math.prod(kernel)  # the pool averages; window_sum scales the sum
    if factor == 1.0:
        return y
    return b.node("Mul", [y, b.const(factor, _out_dtype(op))])


# ---------------------------------------------------------------------- movement
def _reshape(b, op, x, shape=None, *more, **kw):
    if more or isinstance(shape, (int, Dim)):  # ndarray.reshape(2, 3)
        shape = (shape, *more)
    if shape is None:
        shape = kw.get("shape", kw.get("newshape"))
    shape = list(shape)
    dyn = [i for i, s in enumerate(shape) if _is_dim(s)]
    if len(dyn) == 1 and -1 not in shape:
        shape[dyn[0]] = -1  # the one size the others leave
    attrs = {"allowzero": 1} if any(not _is_dim(s) and s == 0 for s in shape) else {}
    return b.node("Reshape", [b.val(x), b.ints(shape)], **attrs)


def _permute(b, op, x, axes=None, *more):
    if more or isinstance(axes, int):
        axes = (axes, *more)
    r = len(x.shape)
    perm = list(range(r))[::-1] if axes is None else [int(a) % r for a in axes]
    return b.node("Transpose", [b.val(x)], perm=perm)


def _swapaxes(b, op, x, a1, a2):
    r = len(x.shape)
    perm = list(range(r))
    perm[a1 % r], perm[a2 % r] = perm[a2 % r], perm[a1 % r]
    return b.node("Transpose", [b.val(x)], perm=perm)


def _ravel(b, op, x, *rest):
    return b.node("Reshape", [b.val(x), b.ints([-1])])


def _squeeze(b, op, x, axis=None):
    r = len(x.shape)
    if axis is None:
        axes = [i for i, s in enumerate(x.shape) if s == 1]
        if b.dynamic_axes_of(x) & set(axes):
            raise b.error("squeeze() without an axis on a dynamic axis of size 1 in the trace "
                          "(whether it is squeezed depends on the size); trace at another "
                          "size or name the axis")
    else:
        axes = [int(a) % r for a in ([axis] if isinstance(axis, int) else axis)]
    return b.node("Squeeze", [b.val(x), b.ints(axes)])


def _getitem(b, op, x, index):
    from ..jit.ir import Var  # noqa: PLC0415

    idx = index if isinstance(index, tuple) else (index,)
    r = len(x.shape)
    arrays = [i for i, e in enumerate(idx) if isinstance(e, Var)]
    if arrays:
        rest = [e for i, e in enumerate(idx) if i not in arrays]
        if len(arrays) != 1 or any(not (isinstance(e, slice) and e == slice(None)) for e in rest):
            raise b.error("advanced indexing other than one integer array index (the rest "
                          "full slices) has no mapping")
        ia = idx[arrays[0]]
        if np.dtype(ia.dtype) == np.bool_:
            raise b.error("boolean-mask indexing (a data-dependent shape) has no mapping")
        return b.node("Gather", [b.val(x), b.as_dtype(ia, np.int64)], axis=arrays[0])
    n_real = sum(1 for e in idx if e is not None and e is not Ellipsis)
    if sum(1 for e in idx if e is Ellipsis) > 1:
        raise b.error("an index with two Ellipses")
    full = []
    for e in idx:
        if e is Ellipsis:
            full += [slice(None)] * (r - n_real)
        else:
            full.append(e)
    full += [slice(None)] * (r - sum(1 for e in full if e is not None))
    starts, ends, axes, steps, squeeze, unsq = [], [], [], [], [], []
    ax = out_pos = 0
    for e in full:
        if e is None:
            unsq.append(out_pos)
            out_pos += 1
            continue
        if isinstance(e, slice):
            if e != slice(None):
                step = 1 if e.step is None else e.step
                b.static(step, "a slice step")
                start = e.start if e.start is not None else (0 if step > 0 else _I64_MAX)
                stop = e.stop if e.stop is not None else (_I64_MAX if step > 0 else _I64_MIN)
                starts.append(start)
                ends.append(stop)
                axes.append(ax)
                steps.append(step)
            out_pos += 1
        elif isinstance(e, (int, np.integer, Dim)):
            starts.append(e)
            ends.append(e.plus(1) if _is_dim(e) else (_I64_MAX if int(e) == -1 else int(e) + 1))
            axes.append(ax)
            steps.append(1)
            squeeze.append(ax)
        else:
            raise b.error(f"an index entry {e!r} has no mapping")
        ax += 1
    y = b.val(x)
    if axes:
        y = b.node("Slice", [y, b.ints(starts), b.ints(ends), b.ints(axes), b.ints(steps)])
    if squeeze:
        y = b.node("Squeeze", [y, b.ints(squeeze)])
    if unsq:
        y = b.node("Unsqueeze", [y, b.ints(unsq)])
    if y == b.val(x):
        y = b.node("Identity", [y])
    return y


def _getitem_prim(b, op, x, *arrays, index):
    """The getitem primitive: its index arrays (inputs) back in their places."""
    from ..primitives.movement import fill_index  # noqa: PLC0415

    return _getitem(b, op, x, fill_index(index if isinstance(index, tuple) else (index,), arrays))


def _concatenate(b, op, *xs, axis=0, **kw):
    if len(xs) == 1 and isinstance(xs[0], (tuple, list)):  # np.concatenate(seq, axis=...)
        xs = xs[0]
    _no_kw(b, {k: v for k, v in kw.items() if k != "out" or v is not None})
    dt = _out_dtype(op)
    return b.node("Concat", [b.as_dtype(x, dt) for x in xs], axis=int(axis))


def _broadcast_to(b, op, x, shape):
    return b.node("Expand", [b.val(x), b.ints(shape)])


def _pad(b, op, x, widths, value=0):
    pads = [w[0] for w in widths] + [w[1] for w in widths]
    return b.node("Pad", [b.val(x), b.ints(pads), b.const(value, _out_dtype(op))],
                  mode="constant")


def _flip(b, op, x, axes):
    r = len(x.shape)
    axes = [int(a) % r for a in ([axes] if isinstance(axes, int) else axes)]
    n = len(axes)
    return b.node("Slice", [b.val(x), b.ints([-1] * n), b.ints([_I64_MIN] * n), b.ints(axes),
                            b.ints([-1] * n)])


def _gather(b, op, x, idx, axis):
    return b.node("GatherElements", [b.val(x), b.as_dtype(idx, np.int64)], axis=int(axis))


def _like(value):
    def lower(b, op, x):
        dt = _out_dtype(op)
        fill = b.onnx.numpy_helper.from_array(np.asarray([value], dtype=dt), b.fresh("fill"))
        return b.node("ConstantOfShape", [b.node("Shape", [b.val(x)])], value=fill)
    return lower


# ---------------------------------------------------------------------- creation (np.*)
def _creation(value):
    def lower(b, op, shape, *rest, dtype=None, **kw):
        fill_value = rest[0] if rest else kw.get("fill_value", value)
        if b.dtype_of(fill_value) is not None:
            raise b.error("a fill value read from an array has no mapping")
        dt = _out_dtype(op)
        fill = b.onnx.numpy_helper.from_array(np.asarray([fill_value], dtype=dt),
                                              b.fresh("fill"))
        return b.node("ConstantOfShape", [b.ints(shape)], value=fill)
    return lower


def _arange(b, op, *args, dtype=None, **kw):
    start, stop, step = (0, args[0], 1) if len(args) == 1 else (
        args[0], args[1], args[2] if len(args) > 2 else 1)
    dt = _out_dtype(op)
    return b.node("Range", [b.as_dtype(v, dt) for v in (start, stop, step)])


def _asarray(b, op, x, dtype=None, *rest, **kw):
    return b.cast(b.node("Identity", [b.val(x)]), b.dtype_of(x, _out_dtype(op)), _out_dtype(op))


# ---------------------------------------------------------------------- attention, scans
def _self_attention(b, op, qkv, bias, dmask, heads, scale, seq_first):
    dt = np.dtype(qkv.dtype)
    x = b.val(qkv)
    if seq_first:
        x = b.node("Transpose", [x], perm=[1, 0, 2])
    x5 = b.node("Reshape", [x, b.ints([0, 0, 3, int(heads), -1])])  # (N, L, 3, H, D)
    q, k, v = (b.node("Transpose", [b.node("Gather", [x5, b.const(np.int64(i))], axis=2)],
                      perm=[0, 2, 1, 3]) for i in range(3))  # (N, H, L, D)
    s = b.node("MatMul", [b.node("Mul", [q, b.const(scale, dt)]),
                          b.node("Transpose", [k], perm=[0, 1, 3, 2])])  # (N, H, Lq, Lk)
    if bias is not None:
        s = b.node("Add", [s, b.as_dtype(bias, dt)])
    p = b.node("Softmax", [s], axis=-1)
    pd = p if dmask is None else b.node("Mul", [p, b.as_dtype(dmask, dt)])
    o = b.node("MatMul", [pd, v])  # (N, H, L, D)
    o = b.node("Transpose", [o], perm=[2, 0, 1, 3] if seq_first else [0, 2, 1, 3])
    o = b.node("Reshape", [o, b.ints([0, 0, -1])])  # (N, L, E), or (L, N, E)
    return [o, b.node("Transpose", [p], perm=[0, 1, 3, 2])]


def _scan(b, op, body_nodes, body_in, body_out, states, xs, reverse, n_states):
    """A Scan node over axis 0 of ``xs`` (one scan input) carrying ``states``; the body's
    outputs after the ``n_states`` states are stacked over time (indexed by time also when
    ``reverse``) and returned, one name each."""
    h = b.h
    dt = b.tensor_type(op.outs[0].dtype)
    graph = h.make_graph(body_nodes, b.fresh("scan_body"),
                         [h.make_tensor_value_info(n, dt, None) for n in body_in],
                         [h.make_tensor_value_info(n, dt, None) for n in body_out])
    d = [1] if reverse else [0]
    n_scan = len(body_out) - n_states
    outs = b.node("Scan", [*states, xs], n_out=len(body_out), body=graph, num_scan_inputs=1,
                  scan_input_directions=d, scan_output_directions=d * n_scan)
    return list(outs[n_states:])


def _lstm_scan(b, op, xg, w, h0, c0, reverse):
    H = w.shape[1]
    w_t = b.node("Transpose", [b.val(w)], perm=[1, 0])
    split = b.ints([H] * 4)
    body: list = []
    hi, ci, xi = b.fresh("h"), b.fresh("c"), b.fresh("x")
    a = b.node("Add", [b.node("MatMul", [hi, w_t], into=body), xi], into=body)
    gi, gf, gg, go = b.node("Split", [a, split], n_out=4, into=body, axis=1)
    i = b.node("Sigmoid", [gi], into=body)
    f = b.node("Sigmoid", [gf], into=body)
    g = b.node("Tanh", [gg], into=body)
    o = b.node("Sigmoid", [go], into=body)
    c = b.node("Add", [b.node("Mul", [f, ci], into=body), b.node("Mul", [i, g], into=body)],
               into=body)
    hn = b.node("Mul", [o, b.node("Tanh", [c], into=body)], into=body)
    acts = b.node("Concat", [i, f, g, o], axis=1, into=body)
    h_out, c_out, h_y, c_y = (b.node("Identity", [v], into=body) for v in (hn, c, hn, c))
    return _scan(b, op, body, [hi, ci, xi], [h_out, c_out, h_y, c_y, acts],
                 [b.val(h0), b.val(c0)], b.val(xg), reverse, 2)


def _gru_scan(b, op, xg, w, bias, h0, reverse):
    H = w.shape[1]
    w_t = b.node("Transpose", [b.val(w)], perm=[1, 0])
    split = b.ints([H] * 3)
    bv = b.val(bias)
    body: list = []
    hi, xi = b.fresh("h"), b.fresh("x")
    hg = b.node("Add", [b.node("MatMul", [hi, w_t], into=body), bv], into=body)
    hr, hz, hn = b.node("Split", [hg, split], n_out=3, into=body, axis=1)
    xr, xz, xn = b.node("Split", [xi, split], n_out=3, into=body, axis=1)
    r = b.node("Sigmoid", [b.node("Add", [hr, xr], into=body)], into=body)
    z = b.node("Sigmoid", [b.node("Add", [hz, xz], into=body)], into=body)
    n = b.node("Tanh", [b.node("Add", [xn, b.node("Mul", [r, hn], into=body)], into=body)],
               into=body)
    h_new = b.node("Add", [n, b.node("Mul", [z, b.node("Sub", [hi, n], into=body)], into=body)],
                   into=body)
    hgs = b.node("Concat", [r, z, hn], axis=1, into=body)
    h_out, h_y = (b.node("Identity", [h_new], into=body) for _ in range(2))
    return _scan(b, op, body, [hi, xi], [h_out, h_y, hgs, n], [b.val(h0)], b.val(xg), reverse, 1)


def _rnn_scan(b, op, xg, w, h0, nonlinearity, reverse):
    w_t = b.node("Transpose", [b.val(w)], perm=[1, 0])
    body: list = []
    hi, xi = b.fresh("h"), b.fresh("x")
    pre = b.node("Add", [b.node("MatMul", [hi, w_t], into=body), xi], into=body)
    h_new = b.node("Tanh" if nonlinearity == "tanh" else "Relu", [pre], into=body)
    h_out, y = (b.node("Identity", [h_new], into=body) for _ in range(2))
    return _scan(b, op, body, [hi, xi], [h_out, y], [b.val(h0)], b.val(xg), reverse, 1)


# ---------------------------------------------------------------------- tables
PRIMS = {
    **{k: _unary(v) for k, v in _UNARY.items() if k in (
        "neg", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "erf", "sin", "cos",
        "floor", "ceil", "sign", "logical_not", "isnan", "isinf", "copy")},
    **{k: _arith(v) for k, v in _ARITH.items() if k in (
        "add", "sub", "mul", "div", "pow", "maximum", "minimum")},
    **{k: _compare(v) for k, v in _COMPARE.items() if k in ("eq", "lt", "gt", "le", "ge", "ne")},
    **{k: _logic(v) for k, v in _LOGIC.items()},
    "expm1": _expm1, "log1p": _log1p, "where": _where, "cast": _cast, "to_device": _identity,
    "gelu": _gelu, "linear": _linear, "matmul": _matmul, "einsum": _einsum,
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
    "layer_norm": _layer_norm, "sum": _reducer("ReduceSum"), "amax": _reducer("ReduceMax"),
    "amin": _reducer("ReduceMin"), "prod": _reducer("ReduceProd"),
    "conv": _conv, "conv_transpose": _conv_transpose, "max_pool": _max_pool,
    "floor_divide": _floor_divide, "remainder": _remainder, "logaddexp": _logaddexp,
    "cumsum": _cumsum, "window_sum": _window_sum,
    "reshape": _reshape, "permute": _permute, "getitem": _getitem_prim,
    "concatenate": _concatenate, "broadcast_to": _broadcast_to, "pad": _pad, "flip": _flip,
    "gather": _gather, "ones_like": _like(1), "zeros_like": _like(0),
    "self_attention": _self_attention, "lstm_scan": _lstm_scan, "gru_scan": _gru_scan,
    "rnn_scan": _rnn_scan,
}
UFUNCS = {
    **{f"np.{k}": _unary(v) for k, v in _UNARY.items() if k in (
        "negative", "absolute", "exp", "log", "tanh", "sqrt", "sin", "cos", "floor", "ceil",
        "sign", "logical_not", "isnan", "isinf", "reciprocal")},
    **{f"np.{k}": _arith(v) for k, v in _ARITH.items() if k in (
        "add", "subtract", "multiply", "true_divide", "divide", "power", "maximum", "minimum",
        "fmax", "fmin")},
    **{f"np.{k}": _compare(v) for k, v in _COMPARE.items() if k in (
        "equal", "less", "greater", "less_equal", "greater_equal", "not_equal")},
    **{f"np.{k}": _logic(v) for k, v in _LOGIC.items()},
    "np.square": _square, "np.expm1": _expm1, "np.log1p": _log1p,
}
FUNCS = {
    "np.ones": _creation(1), "np.zeros": _creation(0), "np.full": _creation(None),
    "np.arange": _arange, "np.where": _where, "np.concatenate": _concatenate,
    "np.asarray": _asarray, "np.ascontiguousarray": _asarray, "np.array": _asarray,
    "np.asanyarray": _asarray, "np.matmul": _matmul, "np.transpose": _permute,
    "np.reshape": _reshape, "np.swapaxes": _swapaxes, "np.squeeze": _squeeze,
    "np.broadcast_to": _broadcast_to,
}
METHODS = {
    "ndarray.reshape": _reshape, "ndarray.transpose": _permute, "ndarray.swapaxes": _swapaxes,
    "ndarray.copy": _identity, "ndarray.astype": _cast, "ndarray.__getitem__": _getitem,
    "ndarray.ravel": _ravel, "ndarray.flatten": _ravel, "ndarray.squeeze": _squeeze,
    "ndarray.__copy__": _identity, "ndarray.__deepcopy__": _identity,
}


def _lower(b, op):
    b.op = op
    if op.writes:
        raise b.error("writes an array in place, which an ONNX graph cannot express")
    table = {"prim": PRIMS, "ufunc": UFUNCS, "func": FUNCS, "method": METHODS}.get(op.kind)
    fn = None if table is None else table.get(op.name)
    if fn is None:
        what = {"rng_draw": "a random draw (is a dropout or a sampler active? the model is "
                            "exported in eval mode)",
                "scalar": "Python arithmetic on a dynamic number"}.get(
                    "scalar" if op.kind == "scalar" else op.name, "")
        raise b.error(f"has no ONNX mapping{'; ' + what if what else ''} (mapped: "
                      "docs/onnx.md)")
    args = op.args[1:] if op.kind == "prim" else op.args
    try:
        res = fn(b, op, *args, **op.kwargs)
    except ExportError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise b.error(f"cannot be mapped with these arguments ({type(e).__name__}: {e})") from e
    res = [res] if isinstance(res, str) else list(res)
    if len(res) != len(op.outs):
        raise b.error(f"the mapping gave {len(res)} outputs for {len(op.outs)}")
    for v, name in zip(op.outs, res):
        b.names[v] = name


def _state_name(desc, used):
    name = desc[len("model."):] if desc.startswith("model.") else desc
    base, k = name, 1
    while name in used:
        k += 1
        name = f"{base}_{k}"
    used.add(name)
    return name


def build(graph, args, in_names, out_names, in_axes, out_axes, opset, sites, model):
    """The ``onnx.ModelProto`` of ``graph``."""
    import onnx  # noqa: PLC0415

    h = onnx.helper
    sym_src = {}
    for (i, a), s in sorted(in_axes.items()):
        sym_src.setdefault(s, (in_names[i], a))
    b = Builder(onnx, opset, graph, sites, sym_src)
    inputs = []
    used = set(in_names) | set(out_names)
    for inp in graph.inputs:
        if inp.kind == "arg":
            i = inp.get
            name = in_names[i]
            shape = [in_axes.get((i, a), n) for a, n in enumerate(args[i].shape)]
            inputs.append(h.make_tensor_value_info(name, b.tensor_type(args[i]._data.dtype),
                                                   shape))
            b.names[inp.var] = name
            b.arg_axes[inp.var] = {a for (j, a) in in_axes if j == i}
        elif inp.kind == "state":
            value = np.asarray(inp.get())
            name = _state_name(inp.desc, used)
            b.inits.append(onnx.numpy_helper.from_array(value.copy(order="C"), name))
            b.names[inp.var] = name
        else:
            raise ExportError(f"onnx.export: the program reads the Python number {inp.desc} "
                              "as an input; an exported graph has only tensor inputs")
    for op in graph.ops:
        _lower(b, op)
    b.op = None
    outputs = []
    out_dyn = getattr(graph, "out_dyn", None)
    for k, (o, name) in enumerate(zip(graph.outputs, out_names)):
        if not hasattr(o, "shape") or o.shape is None:
            raise ExportError(f"onnx.export: output {k} of the model is {o!r}, not a tensor "
                              "computed from the inputs")
        src = b.val(o)
        b.nodes.append(h.make_node("Identity", [src], [name], name=b.fresh("n_output")))
        shape = []
        for a, n in enumerate(o.shape):
            if (k, a) in out_axes:
                shape.append(out_axes[(k, a)])
            elif out_dyn is not None and a in out_dyn[k]:
                shape.append(f"{name}_dim{a}")
            else:
                shape.append(n)
        outputs.append(h.make_tensor_value_info(name, b.tensor_type(o.dtype), shape))
    g = h.make_graph(b.nodes, type(model).__name__ if hasattr(model, "modules") else "model",
                     inputs, outputs, initializer=b.inits)
    proto = h.make_model(g, opset_imports=[h.make_opsetid("", opset)],
                         producer_name="chainrule")
    proto.ir_version = min(proto.ir_version, 10)
    return proto
