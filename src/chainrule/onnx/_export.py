"""The exporter: trace, find which literals depend on the dynamic axes, map ops, check, write.

Dynamic axes. A trace bakes every size into the program (a reshape's ``shape=(64, 150)``, a
slice's stop, an ``np.zeros((64, 6))``). The exporter traces the model once more per dynamic
axis name, with that axis one larger, and once with every dynamic axis two larger; the
programs must have the same ops. An integer literal that differs between them is a size: it
is fitted as ``k * prod(size_i)`` (or ``k * size + c`` when one axis is involved), checked
against the last trace, and emitted as ONNX shape arithmetic (``Shape``, ``Gather``, ``Mul``,
``Add``) on the graph's inputs, so the file runs at any size. A literal that varies in a way
this cannot express, a float that depends on a size (a mean over a dynamic axis), or a
program whose structure changes with the size is refused, naming the op and the model line.
"""

from __future__ import annotations

import io
import math
import os
import tempfile

from ..backend import np

_EXPORTING = [False]


class ExportError(ValueError):
    """An ONNX export that cannot be done (an op with no mapping, a size that cannot be made
    dynamic, a bad argument). The message names the op and the model line."""


def is_in_onnx_export() -> bool:
    """True while :func:`export` is tracing the model (as ``torch.onnx.is_in_onnx_export``).

    Example:
        >>> import chainrule as cr
        >>> cr.onnx.is_in_onnx_export()
        False
    """
    return _EXPORTING[0]


def _need_onnx():
    try:
        import onnx  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - the dev extra installs it
        raise ImportError("chainrule.onnx.export needs the onnx package: pip install "
                          "'chainrule[onnx]' (or pip install onnx)") from e
    return onnx


# ---------------------------------------------------------------------- sizes
class Dim:
    """An integer that depends on the dynamic axes: ``c + k * prod(size[s] ** e)``; ``value``
    is what it was in the first trace (the one at the arguments' own sizes)."""

    __slots__ = ("c", "exps", "k", "value")

    def __init__(self, value, k, exps, c=0):
        self.value = value
        self.k = k
        self.exps = exps  # {symbol: exponent}
        self.c = c

    def plus(self, n: int) -> Dim:
        return Dim(self.value + n, self.k, self.exps, self.c + n)

    def __repr__(self):
        terms = "*".join(f"{s}" if e == 1 else f"{s}^{e}" for s, e in self.exps.items())
        return f"Dim({self.k}*{terms}{'+' if self.c >= 0 else ''}{self.c})"


def _fit(values, symbols, base, first, last):
    """A Dim for an int literal seen as ``values`` (one per trace: base, one per symbol, the
    all-changed check), or None when no fit predicts the check."""
    v0 = values[0]
    exps = {}
    affine = None
    for i, s in enumerate(symbols):
        vi = values[1 + i]
        if vi == v0:
            continue
        s0, s1 = base[s], first[s]
        if v0 != 0 and vi * s0 == v0 * s1:
            exps[s] = 1
        else:
            k, r = divmod(vi - v0, s1 - s0)
            if r or affine is not None:
                return None
            affine = (s, k, v0 - k * s0)
    if affine is not None:
        if exps:
            return None
        s, k, c = affine
        d = Dim(v0, k, {s: 1}, c)
    else:
        den = math.prod(base[s] for s in exps)
        k, r = divmod(v0, den)
        if r:
            return None
        d = Dim(v0, k, exps, 0)
    check = d.c + d.k * math.prod(last[s] ** e for s, e in d.exps.items())
    return d if check == values[-1] else None


# ---------------------------------------------------------------------- tracing
def _trace(model, args, sites):
    """The captured forward program of ``model(*args)`` (no grad, guards dropped, dead code
    removed) and the jit's records of where each op came from."""
    from .. import no_grad  # noqa: PLC0415
    from ..jit import trace as _jtrace  # noqa: PLC0415
    from ..jit.capture import Roots, flatten  # noqa: PLC0415
    from ..jit.passes import eliminate_dead_code  # noqa: PLC0415
    from ..jit.session import run_trace  # noqa: PLC0415

    def forward(*xs):
        return model(*xs)

    leaves: list = []
    flatten((args, {}), leaves)
    _jtrace.SITES[0] = sites
    try:
        with no_grad():
            tr = run_trace("forward", forward, args, {}, leaves, Roots(forward), True)
    except _jtrace.GraphBreakError as e:
        raise ExportError(f"onnx.export: the model cannot be captured: {e.reason} at "
                          f"{e.where}") from None
    finally:
        _jtrace.SITES[0] = None
    g = tr.graph.replace(guards=[])  # checks of the traced values; ONNX has no asserts
    return eliminate_dead_code(g), tr.result


def _resized(args, changes):
    """``args`` with some axes resized: ``changes`` {(arg index, axis): new size}; values are
    the original ones repeated cyclically along the axis (token ids stay valid)."""
    from ..tensor import _wrap  # noqa: PLC0415

    out = []
    for i, a in enumerate(args):
        data = a._data
        for (j, axis), n in changes.items():
            if j == i:
                data = np.take(data, np.arange(n) % data.shape[axis], axis=axis)
        out.append(_wrap(np.ascontiguousarray(data)) if data is not a._data else a)
    return tuple(out)


def _site_text(sites, op):
    user, lib = sites.get(op.outs[0], ("<unknown>", None)) if op.outs else ("<unknown>", None)
    return f"{user}" + (f" (in {lib})" if lib else "")


class _Walk:
    """Compares the op templates of several traces of one program, leaf by leaf."""

    def __init__(self, graphs, symbols, sizes, sites):
        self.graphs = graphs
        self.symbols = symbols
        self.base, self.first, self.last = sizes
        self.sites = sites
        self.const_dims: dict = {}  # base const Var -> tuple of (int | Dim) (a resized const)

    def run(self):
        g0 = self.graphs[0]
        for g in self.graphs[1:]:
            if len(g.ops) != len(g0.ops) or any(
                    a.name != b.name or a.kind != b.kind for a, b in zip(g0.ops, g.ops)):
                where = next((k for k, (a, b) in enumerate(zip(g0.ops, g.ops))
                              if a.name != b.name or a.kind != b.kind),
                             min(len(g.ops), len(g0.ops)))
                at = ""
                if where < len(g0.ops):
                    bad = g0.ops[where]
                    at = f": op {where} ({bad.name}, {_site_text(self.sites, bad)})"
                raise ExportError(
                    "onnx.export: dynamic_axes: the traced program changes with the size of a "
                    f"dynamic axis (its ops differ at another size{at}); export without "
                    "dynamic_axes, at the size you will run")
        new_ops = []
        for k, op in enumerate(g0.ops):
            others = [g.ops[k] for g in self.graphs[1:]]
            args = self._leaf(op, op.args, [o.args for o in others], [g for g in self.graphs])
            kwargs = self._leaf(op, op.kwargs, [o.kwargs for o in others], self.graphs)
            new_ops.append(op.copy(args=args, kwargs=kwargs))
        g = g0.replace(ops=new_ops)
        g.var_dyn = {}  # Var -> the axes whose size differs between the traces
        for k, op in enumerate(g0.ops):
            for j, v in enumerate(op.outs):
                if v.shape is None:
                    continue
                axes = {a for a in range(len(v.shape)) for gk in self.graphs[1:]
                        if gk.ops[k].outs[j].shape[a] != v.shape[a]}
                if axes:
                    g.var_dyn[v] = axes
        g.out_dyn = [{a for a in range(len(o.shape)) if any(
            getattr(gk.outputs[k], "shape", None) is None or gk.outputs[k].shape[a] != o.shape[a]
            for gk in self.graphs[1:])} if getattr(o, "shape", None) is not None else set()
            for k, o in enumerate(g0.outputs)]
        return g

    def _fail(self, op, what):
        raise ExportError(f"onnx.export: dynamic_axes: {op.name} at {_site_text(self.sites, op)}"
                          f" uses {what}, which depends on the dynamic axes in a way the "
                          "exporter cannot express; export without dynamic_axes (a fixed "
                          "size), or change the model")

    def _leaf(self, op, t0, ts, graphs):
        from ..jit.ir import Var  # noqa: PLC0415

        if isinstance(t0, Var):
            if t0 in graphs[0].consts:
                shapes = [graphs[0].consts[t0].shape] + [
                    g.consts[t].shape if isinstance(t, Var) and t in g.consts else None
                    for g, t in zip(graphs[1:], ts)]
                if any(s is None for s in shapes[1:]):
                    self._fail(op, "a constant array")
                if any(s != shapes[0] for s in shapes[1:]):
                    dims = tuple(self._int(op, [s[i] for s in shapes], "a constant's shape")
                                 if len({s[i] for s in shapes}) > 1 else shapes[0][i]
                                 for i in range(len(shapes[0])))
                    self.const_dims[t0] = dims
            return t0
        if isinstance(t0, bool) or t0 is None or isinstance(t0, str):
            if any(t != t0 for t in ts):
                self._fail(op, f"the value {t0!r}")
            return t0
        if isinstance(t0, (int, np.integer)):
            if all(t == t0 for t in ts):
                return t0
            return self._int(op, [int(t0)] + [int(t) for t in ts], f"the integer {t0}")
        if isinstance(t0, (float, np.floating)):
            if any(t != t0 for t in ts):
                self._fail(op, f"the number {t0!r} (a size turned into a float: a mean or a "
                               "scale over a dynamic axis)")
            return t0
        if isinstance(t0, slice):
            parts = [self._leaf(op, getattr(t0, f), [getattr(t, f) for t in ts], graphs)
                     for f in ("start", "stop", "step")]
            return slice(*parts)
        if isinstance(t0, (tuple, list)):
            if any(not isinstance(t, (tuple, list)) or len(t) != len(t0) for t in ts):
                self._fail(op, f"the sequence {t0!r}")
            return type(t0)(self._leaf(op, x, [t[i] for t in ts], graphs)
                            for i, x in enumerate(t0))
        if isinstance(t0, dict):
            return {k: self._leaf(op, x, [t[k] for t in ts], graphs) for k, x in t0.items()}
        return t0

    def _int(self, op, values, what):
        d = _fit(values, self.symbols, self.base, self.first, self.last)
        if d is None:
            self._fail(op, what)
        return d


# ---------------------------------------------------------------------- arguments
def _check_path(f):
    """A path (str or PathLike) whose folder exists and is writable, or a writable binary
    file object; raises a clear error before any work is done."""
    if hasattr(f, "write"):
        return None
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"onnx.export: f must be a path or a writable binary file object, got "
                        f"{type(f).__name__}")
    path = os.fspath(f)
    if os.path.isdir(path):
        raise ExportError(f"onnx.export: {path!r} is a directory; give a file path")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ExportError(f"onnx.export: cannot write {path!r}: folder {folder!r} does not "
                          "exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ExportError(f"onnx.export: cannot write {path!r}: permission denied")
    return path


def _check_args(model, args):
    from ..nn import Module  # noqa: PLC0415
    from ..tensor import Tensor  # noqa: PLC0415

    if not callable(model):
        raise TypeError(f"onnx.export: model must be a chainrule.nn.Module (or a callable), got "
                        f"{type(model).__name__}")
    if isinstance(args, Tensor):
        args = (args,)
    if not isinstance(args, (tuple, list)) or not args:
        raise TypeError(f"onnx.export: args must be a Tensor or a non-empty tuple of Tensors "
                        f"(the example inputs), got {type(args).__name__}")
    for i, a in enumerate(args):
        if not isinstance(a, Tensor):
            raise TypeError(f"onnx.export: args[{i}] is a {type(a).__name__}; every example "
                            "input must be a chainrule Tensor")
    if len({id(a) for a in args}) != len(args):
        raise ExportError("onnx.export: the same tensor is passed twice in args; pass a copy")
    return tuple(args), isinstance(model, Module)


def _names(given, n, default, what):
    if given is None:
        return [default if n == 1 else f"{default}_{i}" for i in range(n)]
    given = list(given)
    if len(given) != n or not all(isinstance(x, str) and x for x in given):
        raise ExportError(f"onnx.export: {what} must be {n} non-empty string(s) (the model "
                          f"has {n}), got {given!r}")
    if len(set(given)) != len(given):
        raise ExportError(f"onnx.export: {what} has a repeated name: {given!r}")
    return given


def _axes(dynamic_axes, in_names, out_names, args, out_ranks):
    """{(input index, axis): symbol} and {(output index, axis): symbol} from ``dynamic_axes``
    (``{name: {axis: symbol}}`` or ``{name: [axes]}`` as in PyTorch)."""
    ins, outs = {}, {}
    if dynamic_axes is None:
        return ins, outs
    if not isinstance(dynamic_axes, dict):
        raise ExportError(f"onnx.export: dynamic_axes must be a dict {{name: {{axis: "
                          f"name}}}}, got {type(dynamic_axes).__name__}")
    for name, spec in dynamic_axes.items():
        if name in in_names:
            i, rank, table = in_names.index(name), args[in_names.index(name)].ndim, ins
        elif out_names is None:  # inputs only (before the trace: outputs are not known yet)
            continue
        elif name in out_names:
            i, rank, table = out_names.index(name), out_ranks[out_names.index(name)], outs
        else:
            raise ExportError(f"onnx.export: dynamic_axes names {name!r}, which is neither an "
                              f"input ({in_names}) nor an output ({out_names})")
        if isinstance(spec, (list, tuple)):
            spec = {a: f"{name}_dynamic_axes_{a}" for a in spec}
        if not isinstance(spec, dict):
            raise ExportError(f"onnx.export: dynamic_axes[{name!r}] must be a dict {{axis: "
                              f"name}} or a list of axes, got {spec!r}")
        for a, sym in spec.items():
            if not isinstance(a, int) or isinstance(a, bool) or not -rank <= a < rank:
                raise ExportError(f"onnx.export: dynamic_axes[{name!r}]: axis {a!r} is out "
                                  f"of range for a tensor of rank {rank}")
            if not isinstance(sym, str) or not sym:
                raise ExportError(f"onnx.export: dynamic_axes[{name!r}][{a}] must be a name "
                                  f"(str), got {sym!r}")
            table[(i, a % rank)] = sym
    return ins, outs


# ---------------------------------------------------------------------- export
def export(model, args=(), f=None, *, input_names=None, output_names=None, dynamic_axes=None,
           opset_version=None, export_params=True, verbose=False, do_constant_folding=True,
           training=None, **kwargs):
    """Export ``model``'s inference graph for the example ``args`` to the ONNX file ``f``.

    The model runs once in eval mode under ``no_grad`` (its train/eval flags are put back
    afterwards), traced by the jit's recorder; each op of the captured program is mapped to
    ONNX operators (chainrule primitives by name and parameters, NumPy-level ops by function);
    parameters and buffers become initializers named by their ``state_dict`` keys. The model
    is checked with ``onnx.checker`` (full check, with shape inference) before anything is
    written, and written whole (a temporary file renamed into place), so a failed export
    leaves no file.

    Args:
        model: a ``chainrule.nn.Module`` (or a callable taking tensors).
        args: the example input(s): a Tensor or a tuple of Tensors.
        f: the path to write (str or PathLike), or a writable binary file object.
        input_names, output_names: names of the graph's inputs and outputs (default
            ``input``/``input_i``, ``output``/``output_i``).
        dynamic_axes: ``{name: {axis: "symbol"}}`` (or ``{name: [axes]}``) marking axes whose
            size may differ at run time; inputs sharing a symbol share the size. Sizes the
            program computes from them become shape arithmetic in the graph (see
            docs/onnx.md); a size that cannot be expressed is refused with the op and line.
        opset_version: the ONNX opset (default 17; 17 to 21 are supported).
        export_params, do_constant_folding, verbose, training, dynamo: accepted for
            PyTorch's signature; parameters are always exported, ``training`` other than
            None / eval and ``dynamo=True`` are refused (the export is of inference graphs,
            from the jit's trace).

    Returns:
        The ``onnx.ModelProto`` that was written.

    Raises:
        ExportError: an op with no ONNX mapping (naming the op and the model's file:line),
            a size dynamic_axes cannot express, bad names or axes, an unwritable path.
        TypeError: ``args`` that are not Tensors, a model that is not callable.

    Example:
        >>> import io
        >>> import chainrule as cr
        >>> buf = io.BytesIO()
        >>> _ = cr.onnx.export(cr.nn.Linear(3, 2), cr.randn(1, 3), buf)
        >>> len(buf.getvalue()) > 0
        True
    """
    if kwargs.pop("dynamo", None):
        raise ExportError("onnx.export: dynamo=True (PyTorch's other exporter) is not "
                          "supported; chainrule exports from its jit's trace (leave it False)")
    if kwargs:
        raise TypeError(f"onnx.export: unexpected argument(s) {sorted(kwargs)} (supported: "
                        "input_names, output_names, dynamic_axes, opset_version)")
    if f is None:
        raise TypeError("onnx.export: f (the file to write) is required")
    if training not in (None, False) and str(training).split(".")[-1].upper() not in (
            "EVAL", "PRESERVE"):
        raise ExportError("onnx.export: only inference graphs are exported (training mode "
                          f"{training!r} is not supported)")
    if not export_params:
        raise ExportError("onnx.export: export_params=False is not supported (the parameters "
                          "are the graph's initializers)")
    del verbose, do_constant_folding
    onnx = _need_onnx()
    from . import _ops  # noqa: PLC0415

    opset = 17 if opset_version is None else opset_version
    if not isinstance(opset, int) or not _ops.MIN_OPSET <= opset <= _ops.MAX_OPSET:
        raise ExportError(f"onnx.export: opset_version {opset_version!r} is not supported "
                          f"(supported: {_ops.MIN_OPSET} to {_ops.MAX_OPSET})")
    path = _check_path(f)
    args, is_module = _check_args(model, args)
    in_names = _names(input_names, len(args), "input", "input_names")

    in_axes, _ = _axes(dynamic_axes, in_names, None, args, None)
    base = _base_sizes(in_axes, args)

    modes = [(m, m.training) for m in model.modules()] if is_module else []
    for m, _ in modes:
        m.training = False
    _EXPORTING[0] = True
    sites: dict = {}
    try:
        graph, result = _trace(model, args, sites)
        outs = [o for o in graph.outputs]
        out_names = _names(output_names, len(outs), "output", "output_names")
        ranks = [len(o.shape) if getattr(o, "shape", None) is not None else 0 for o in outs]
        in_axes, out_axes = _axes(dynamic_axes, in_names, out_names, args, ranks)
        if in_axes:
            graph = _dynamic(model, args, graph, in_axes, base, sites)
        proto = _ops.build(graph, args, in_names, out_names, in_axes, out_axes, opset, sites,
                           model)
    finally:
        _EXPORTING[0] = False
        for m, t in modes:
            m.training = t
    del result
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # onnx raises its own ValidationError / InferenceError types
        raise ExportError(f"onnx.export: the exported model fails onnx.checker (a bug of the "
                          f"exporter; please report it): {e}") from e
    data = proto.SerializeToString()
    if path is None:
        f.write(data)
    else:
        _write_whole(path, data)
    return proto


def _base_sizes(in_axes, args):
    """{symbol: its size in the example inputs}; axes sharing a symbol must agree."""
    base = {}
    for (i, a), s in in_axes.items():
        n = args[i].shape[a]
        if base.setdefault(s, n) != n:
            raise ExportError(f"onnx.export: dynamic_axes: the axes named {s!r} have different "
                              f"sizes in the example inputs ({base[s]} and {n})")
    return base


def _dynamic(model, args, graph, in_axes, base, sites):
    """The base graph with size-dependent int literals replaced by :class:`Dim`s."""
    symbols = sorted(set(in_axes.values()))
    first = {s: n + 1 for s, n in base.items()}
    last = {s: n + 2 for s, n in base.items()}
    graphs = [graph]
    for s in symbols + [None]:
        sizes = last if s is None else {**base, s: first[s]}
        changes = {(i, a): sizes[sym] for (i, a), sym in in_axes.items()}
        g, _ = _trace(model, _resized(args, changes), {})
        graphs.append(g)
    walk = _Walk(graphs, symbols, (base, first, last), sites)
    g = walk.run()
    g.const_dims = walk.const_dims
    return g


def _write_whole(path, data):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".onnx-export-", dir=folder)
    try:
        with io.FileIO(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
