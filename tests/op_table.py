"""THE op table: one row per op (or per operator / indexing variant) drives the op tests.

Each :class:`OpInfo` row names the op and gives

* ``op``: the chainrule callable, ``ref``: an independent NumPy reference and ``torch``: the
  same call in PyTorch (``torch(torch_module, *args, **kwargs)``; the oracle tests use it
  where PyTorch is installed);
* ``samples(maker)``: sample inputs (0-d, size-1 and broadcasting cases) drawn through a
  :class:`Maker`, which produces arrays of the dtype under test and honours domain
  constraints (``low``/``high`` for log and sqrt, ``kinks``/``away`` to keep samples off the
  kinks of abs/relu/floor, ``distinct`` to avoid ties in max/argmax);
* ``dtypes``: the dtypes the forward pass is checked in (float64 is also the dtype of every
  derivative check), capability flags and expected errors (the forward tolerances are
  per dtype, ``FWD_TOL``).

Flags that say which checks a row takes part in:

* ``grad``: reverse mode against central differences (float64, random directions);
* ``gradgrad``: second order (the backward recorded with ``create_graph=True``);
* ``fast``: the fast-path kernels (``chainrule.primitives.fast.KERNELS``) that the row's
  samples reach (forward or first-order backward, float32 or float64), with ``big``: extra
  samples large enough to reach them, used only by the test that runs every row with fast
  paths on and off (tests/test_fast_paths.py), which checks that each named kernel is reached;
* ``prim``: the primitive that the op hands its positional arguments to unchanged; the row's
  float64 samples then also drive that primitive's transform tests (forward mode against
  finite differences and reverse mode, vmap against a loop, batched rules:
  tests/func/test_func_primitives.py). Primitives whose ops reshape their arguments get
  :class:`PS` rows of their own (the "primitive samples" section at the end).

Adding an op = one function in ``chainrule.ops`` + one row here (with ``prim=`` when it is a new
primitive: a block in ``chainrule/primitives/`` with its ``kind=``). test_ops checks that every
public op has a row and test_func_primitives that every primitive has samples.

Example:
    >>> from op_table import OP_TABLE, by_name
    >>> by_name("exp").ref is not None
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

import chainrule
import chainrule.nn.functional as F
from chainrule.backend import Device
from chainrule.errors import ShapeError
from chainrule.primitives import REGISTRY
from chainrule.primitives.movement import IndexArg

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
NUMERIC = FLOATS + ("int64",)
ALL = FLOATS + INTS + ("bool",)

# forward tolerances (rtol, atol) by the dtype of chainrule's result; the reference is computed
# in float64 from the same (float32-representable) inputs
FWD_TOL = {"float32": (1e-5, 1e-6), "float64": (1e-9, 1e-12)}


# ================================================================ samples
@dataclass(frozen=True)
class Arg:
    """An array argument: becomes a chainrule/torch tensor (NumPy array for the reference).

    ``grad`` says whether it takes part in derivative checks (only float arrays can).
    """

    array: np.ndarray
    grad: bool = True

    def __post_init__(self):
        object.__setattr__(self, "array", np.asarray(self.array))

    def __repr__(self):
        return f"Arg({self.array.dtype}{list(self.array.shape)})"


@dataclass
class Sample:
    """One call: positional args (Arg or plain Python values) and keyword args.

    ``kink`` marks samples that sit on a kink or a tie on purpose: no finite-difference checks
    there, but the PyTorch oracle still compares the gradient (the subgradient convention).
    """

    args: tuple
    kwargs: dict = field(default_factory=dict)
    desc: str = ""
    kink: bool = False

    def __repr__(self):
        return self.desc or f"{self.args!r} {self.kwargs!r}"


class Maker:
    """Draws sample arrays of one dtype with a fixed seed.

    ``t`` follows the dtype under test (floats uniform in [low, high], integers in the same
    range, bools at random); ``index``/``mask`` are always int64/bool and never differentiable.
    """

    def __init__(self, dtype: str, seed: int = 0):
        self.dtype = np.dtype(dtype)
        self.rng = np.random.default_rng(seed)

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    def t(self, shape, low=-2.0, high=2.0, *, kinks=(), away=0.0, distinct=False,
          grad=True) -> Arg:
        """An array of the dtype under test, kept ``away`` from each of ``kinks``."""
        shape = tuple(shape)
        n = math.prod(shape)
        kind = self.dtype.kind
        if kind == "b":
            a = self.rng.random(shape) < 0.5
        elif kind in "iu":
            lo, hi = math.ceil(low), math.floor(high)
            if distinct:
                vals = np.arange(lo, lo + max(n, hi - lo + 1))
                a = self.rng.permutation(vals)[:n].reshape(shape)
            else:
                choices = np.array([v for v in range(lo, hi + 1)
                                    if all(abs(v - k) > away for k in kinks)])
                a = self.rng.choice(choices, size=shape)
        else:
            if distinct:
                # evenly spaced values, shuffled, with jitter well below the spacing
                grid = np.linspace(low, high, max(n, 2))[:n] if n > 1 else np.array([low])
                step = (high - low) / max(n, 2)
                a = self.rng.permutation(grid) + self.rng.uniform(-0.2, 0.2, n) * step
                a = a.reshape(shape)
            else:
                a = self.rng.uniform(low, high, size=shape)
            for _ in range(1000):
                bad = np.zeros(shape, dtype=bool)
                for k in kinks:
                    bad |= np.abs(a - k) < away
                if not bad.any():
                    break
                a = np.where(bad, self.rng.uniform(low, high, size=shape), a)
            else:
                raise RuntimeError("Maker.t: could not keep samples away from the kinks")
        return Arg(np.asarray(a).astype(self.dtype), grad and kind == "f")

    def values(self, values, grad=True) -> Arg:
        """Given values in the dtype under test."""
        return Arg(np.asarray(values).astype(self.dtype), grad and self.is_float)

    def float(self, shape, low=-2.0, high=2.0, *, grad=True) -> Arg:
        """Always floating point (the dtype under test when it is a float, else float32)."""
        d = self.dtype if self.is_float else np.dtype(np.float32)
        return Arg(self.rng.uniform(low, high, size=tuple(shape)).astype(d), grad)

    def index(self, shape, high, low=0) -> Arg:
        """An int64 index array with entries in [low, high)."""
        return Arg(self.rng.integers(low, high, size=tuple(shape)).astype(np.int64), False)

    def mask(self, shape) -> Arg:
        """A bool array with at least one True and one False where there is room."""
        shape = tuple(shape)
        m = self.rng.random(shape) < 0.5
        flat = m.reshape(-1)
        if flat.size >= 2:
            flat[0], flat[-1] = True, False
        return Arg(m, False)

    def apart(self, sa, sb, gap=0.15, **kw) -> tuple[Arg, Arg]:
        """Two arrays whose broadcast elements differ by more than ``gap`` (no ties)."""
        for _ in range(1000):
            a, b = self.t(sa, **kw), self.t(sb, **kw)
            if self.dtype.kind == "b":
                return a, b
            d = np.abs(a.array.astype(np.float64) - b.array.astype(np.float64))
            if d.size == 0 or d.min() > gap:
                return a, b
        raise RuntimeError("Maker.apart: could not draw tie-free samples")


# ================================================================ rows
@dataclass
class ErrorInput:
    """A call that must fail with ``error`` and a message matching every regex in ``match``."""

    sample: Sample
    error: type
    match: tuple[str, ...] = ()


@dataclass
class OpInfo:
    """One row of the op table (see the module docstring)."""

    name: str
    op: Callable
    ref: Callable | None
    samples: Callable[[Maker], Iterable[Sample]]
    torch: Callable | None = None
    dtypes: tuple[str, ...] = FLOATS
    method: str | None = None
    grad: bool = True
    gradgrad: bool = True
    errors: Callable[[Maker], Iterable[ErrorInput]] | None = None
    torch_grad: bool = True
    keeps_float_dtype: bool = True
    prim: str | None = None
    big: Callable[[Maker], Iterable[Sample]] | None = None
    fast: tuple[str, ...] = ()

    def __repr__(self):
        return f"OpInfo({self.name})"

    def __post_init__(self):
        self.gradgrad = self.gradgrad and self.grad

    def fwd_tol(self, dtype: str) -> tuple[float, float]:
        return FWD_TOL.get(dtype, (0.0, 0.0))


OP_TABLE: list[OpInfo] = []


def add(*rows: OpInfo) -> None:
    for r in rows:
        if any(o.name == r.name for o in OP_TABLE):
            raise ValueError(f"op table: row {r.name!r} defined twice")
        OP_TABLE.append(r)


def by_name(name: str) -> OpInfo:
    """The row called ``name``."""
    for r in OP_TABLE:
        if r.name == name:
            return r
    raise KeyError(name)


def T(name: str) -> Callable:
    """``torch.<name>`` as a row's torch callable."""
    return lambda tm, *a, **k: getattr(tm, name)(*a, **k)


def TF(name: str) -> Callable:
    """``torch.nn.functional.<name>``."""
    return lambda tm, *a, **k: getattr(tm.nn.functional, name)(*a, **k)


def same(fn: Callable) -> Callable:
    """A lambda that runs unchanged in PyTorch (operators, methods, indexing)."""
    return lambda tm, *a, **k: fn(*a, **k)


# ---------------------------------------------------------------- sample builders
UNARY_SHAPES = [(), (1,), (5,), (2, 3)]
BINARY_SHAPES = [((), ()), ((4,), ()), ((), (4,)), ((2, 3), (3,)), ((2, 1), (1, 3)),
                 ((1,), (2, 3)), ((2, 3), (2, 3)), ((3,), (2, 1, 3))]


def unary(low=-2.0, high=2.0, kinks=(), away=0.0, shapes=UNARY_SHAPES, **kwargs):
    def gen(m: Maker):
        for s in shapes:
            yield Sample((m.t(s, low, high, kinks=kinks, away=away),), dict(kwargs), f"{s}")
    return gen


def binary(lhs=None, rhs=None, shapes=BINARY_SHAPES, scalars=(), rscalars=(), apart=False):
    lhs, rhs = lhs or {}, rhs or {}

    def gen(m: Maker):
        for sa, sb in shapes:
            if apart:
                a, b = m.apart(sa, sb, **lhs)
            else:
                a, b = m.t(sa, **lhs), m.t(sb, **rhs)
            yield Sample((a, b), desc=f"{sa}, {sb}")
        for s in scalars:
            yield Sample((m.t((2, 3), **lhs), s), desc=f"(2, 3), {s!r}")
        for s in rscalars:
            yield Sample((s, m.t((2, 3), **rhs)), desc=f"{s!r}, (2, 3)")
    return gen


def _away_int(m: Maker, shape):
    return m.t(shape, -3, 3, kinks=(0,), away=0.5)


def _quotient_pair(m: Maker, sa, sb):
    """x, y with y away from 0 and x / y away from integers (floor/mod are smooth there)."""
    if not m.is_float:
        return m.t(sa, -9, 9), _away_int(m, sb)
    y = m.t(sb, -2.0, 2.0, kinks=(0.0,), away=0.5)
    shape = np.broadcast_shapes(sa, sb)
    q = m.rng.integers(-3, 3, size=shape) + m.rng.uniform(0.2, 0.8, size=shape)
    x = q * y.array.astype(np.float64)
    # x has the broadcast shape; reduce it to sa by taking a slice where sa has size 1
    idx = tuple(slice(0, 1) if n == 1 else slice(None) for n in (1,) * (len(shape) - len(sa))
                + tuple(sa))
    x = x[idx].reshape(sa)
    return Arg(x.astype(m.dtype), True), y


def quotient(shapes=BINARY_SHAPES, scalars=(), rscalars=()):
    def gen(m: Maker):
        for sa, sb in shapes:
            if math.prod(sa) < math.prod(np.broadcast_shapes(sa, sb)):
                continue  # x must carry the broadcast shape to keep x / y off integers
            a, b = _quotient_pair(m, sa, sb)
            yield Sample((a, b), desc=f"{sa}, {sb}")
        for s in scalars:  # x / s off integers
            if m.is_float:
                q = m.rng.integers(-3, 3, size=(2, 3)) + m.rng.uniform(0.2, 0.8, size=(2, 3))
                yield Sample((m.values(q * s), s), desc=f"(2, 3), {s!r}")
            else:
                yield Sample((m.t((2, 3), -9, 9), s), desc=f"(2, 3), {s!r}")
        for s in rscalars:
            y = m.t((2, 3), -2.0, 2.0, kinks=(0.0,), away=0.5) if m.is_float else \
                _away_int(m, (2, 3))
            if m.is_float:  # s / y off integers: nudge y
                q = np.floor(s / y.array.astype(np.float64)) + 0.5
                y = m.values(s / q)
            yield Sample((s, y), desc=f"{s!r}, (2, 3)")
    return gen


# ---------------------------------------------------------------- references
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _zero_d(f):
    """Apply a reference written for >= 1-D arrays to a 0-d array as to a 1-element one."""
    def g(x, axis, *a, **k):
        if x.ndim == 0:
            return f(x.reshape(1), 0, *a, **k).reshape(())
        return f(x, axis, *a, **k)
    return g


@_zero_d
def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@_zero_d
def _np_logsumexp(x, axis, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


def _axis(dim, x=None):
    """NumPy's axis for a chainrule dim (a 0-d array has none: dim 0 / -1 mean 'all')."""
    if x is not None and x.ndim == 0:
        return None
    return tuple(dim) if isinstance(dim, list) else dim


def _np_norm(x, p="fro", dim=None, keepdim=False):
    a = np.abs(x)
    if p in ("fro", 2):
        r = np.sqrt(np.sum(a * a, axis=dim, keepdims=keepdim))
    elif p == math.inf:
        r = np.max(a, axis=dim, keepdims=keepdim)
    elif p == -math.inf:
        r = np.min(a, axis=dim, keepdims=keepdim)
    else:
        r = np.sum(a ** p, axis=dim, keepdims=keepdim) ** (1.0 / p)
    return r


def _np_squeeze(x, dim=None):
    if dim is None:
        return np.squeeze(x)
    dims = dim if isinstance(dim, tuple) else (dim,)
    dims = tuple(d % max(x.ndim, 1) for d in dims)
    keep = [n for i, n in enumerate(x.shape) if not (i in dims and n == 1)]
    return x.reshape(keep)


def _np_split(x, size, dim=0):
    n = x.shape[dim]
    if isinstance(size, int):
        bounds = list(range(size, n, size))
    else:
        bounds = list(np.cumsum(size)[:-1])
    return tuple(np.split(x, bounds, axis=dim))


def _np_chunk(x, chunks, dim=0):
    n = x.shape[dim]
    return _np_split(x, -(-n // chunks), dim)


def _np_gather(x, dim, index):
    sl = tuple(slice(0, n) if i != dim % x.ndim else slice(None)
               for i, n in enumerate(index.shape))
    return np.take_along_axis(x[sl], index, axis=dim)


def _np_pad(x, pad, value=0.0):
    nd = x.ndim
    widths = [[0, 0] for _ in range(nd)]
    for k in range(len(pad) // 2):
        widths[nd - 1 - k] = [pad[2 * k], pad[2 * k + 1]]
    crop = tuple(slice(-lo if lo < 0 else 0, n + hi if hi < 0 else n)
                 for n, (lo, hi) in zip(x.shape, widths))
    x = x[crop]
    return np.pad(x, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=value)


def _np_layer_norm(x, shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda a: a}[reduction](loss)


def _np_log_softmax(x, axis):
    return x - _np_logsumexp(x, axis, keepdims=True)


def _np_nll(logp, target, weight=None, ignore_index=-100, reduction="mean"):
    cdim = 1 if logp.ndim > 1 else 0
    nclass = logp.shape[cdim]
    w = np.ones(nclass) if weight is None else weight
    valid = target != ignore_index
    safe = np.where(valid, target, 0)
    picked = np.take_along_axis(logp, np.expand_dims(safe, cdim), axis=cdim).squeeze(cdim)
    wt = w[safe] * valid
    loss = -picked * wt
    if reduction == "mean":
        return loss.sum() / wt.sum()
    return _reduce(loss, reduction)


def _np_cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean",
                      label_smoothing=0.0):
    cdim = 1 if x.ndim > 1 else 0
    logp = _np_log_softmax(x, cdim)
    nll = _np_nll(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    nclass = x.shape[cdim]
    shape = [1] * x.ndim
    shape[cdim] = nclass
    w = np.ones(nclass) if weight is None else weight
    valid = target != ignore_index
    smooth = -(logp * w.reshape(shape)).sum(axis=cdim) * valid
    if reduction == "mean":
        safe = np.where(valid, target, 0)
        s = smooth.sum() / (w[safe] * valid).sum()
    else:
        s = _reduce(smooth, reduction)
    return nll * (1 - label_smoothing) + s * label_smoothing / nclass


def _np_bce(p, t, weight=None, reduction="mean"):
    loss = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log(1 - p), -100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _np_bce_logits(x, t, weight=None, reduction="mean", pos_weight=None):
    logsig = -np.log1p(np.exp(-x))
    log1msig = -x + logsig
    pw = 1.0 if pos_weight is None else pos_weight
    loss = -(pw * t * logsig + (1 - t) * log1msig)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x, beta=1.0, threshold=20.0):
    bx = beta * x
    return np.where(bx > threshold, x, np.log1p(np.exp(np.minimum(bx, threshold))) / beta)


def _np_setitem(index_fn):
    def ref(x, v, *idx):
        y = x.copy()
        y[index_fn(*idx)] = v
        return y
    return ref


def _copy_set(index_fn):
    """``y = x * 1; y[index] = v``: the same code runs in chainrule, NumPy and PyTorch."""
    def fn(x, v, *idx):
        y = x * 1
        y[index_fn(*idx)] = v
        return y
    return fn


# ================================================================ elementwise unary
KINKS_INT = (-2.0, -1.0, 0.0, 1.0, 2.0)
KINKS_HALF = (-1.5, -0.5, 0.5, 1.5)

add(
    OpInfo("abs", chainrule.abs, np.abs, unary(kinks=(0.0,), away=0.1), T("abs"),
           dtypes=FLOATS + INTS, method="abs"),
    OpInfo("neg", chainrule.neg, np.negative, unary(), T("neg"), dtypes=FLOATS + INTS,
           method="neg"),
    OpInfo("exp", chainrule.exp, np.exp, unary(), T("exp"), dtypes=NUMERIC, method="exp"),
    OpInfo("log", chainrule.log, np.log, unary(0.2, 3.0), T("log"), dtypes=NUMERIC,
           method="log"),
    OpInfo("log1p", chainrule.log1p, np.log1p, unary(-0.5, 2.0), T("log1p"), method="log1p"),
    OpInfo("expm1", chainrule.expm1, np.expm1, unary(), T("expm1"), method="expm1"),
    OpInfo("sqrt", chainrule.sqrt, np.sqrt, unary(0.2, 3.0), T("sqrt"), dtypes=NUMERIC,
           method="sqrt"),
    OpInfo("rsqrt", chainrule.rsqrt, lambda x: 1.0 / np.sqrt(x), unary(0.2, 3.0), T("rsqrt"),
           dtypes=NUMERIC, method="rsqrt"),
    OpInfo("sin", chainrule.sin, np.sin, unary(-3.0, 3.0), T("sin"), dtypes=NUMERIC,
           method="sin"),
    OpInfo("cos", chainrule.cos, np.cos, unary(-3.0, 3.0), T("cos"), dtypes=NUMERIC,
           method="cos"),
    OpInfo("tanh", chainrule.tanh, np.tanh, unary(), T("tanh"), dtypes=NUMERIC, method="tanh"),
    OpInfo("sigmoid", chainrule.sigmoid, _sigmoid, unary(-4.0, 4.0), T("sigmoid"),
           dtypes=NUMERIC, method="sigmoid"),
    OpInfo("sigmoid_extreme", chainrule.sigmoid, _sigmoid,
           lambda m: [Sample((m.values([-100.0, -30.0, 0.0, 30.0, 100.0]),), desc="tails")],
           T("sigmoid")),
    OpInfo("relu", chainrule.relu, lambda x: np.maximum(x, 0).astype(x.dtype),
           unary(kinks=(0.0,), away=0.1), T("relu"), dtypes=FLOATS + ("int64",), method="relu"),
    OpInfo("sign", chainrule.sign, np.sign, unary(kinks=(0.0,), away=0.1), T("sign"),
           dtypes=FLOATS + ("int64",), method="sign"),
    # torch_grad off: PyTorch's gradient of sgn is a ZeroTensor that .numpy() refuses; the
    # (zero) gradient is still checked by the gradchecks
    OpInfo("sgn", chainrule.sgn, np.sign, unary(kinks=(0.0,), away=0.1), T("sgn"),
           dtypes=FLOATS + ("int64",), method="sgn", torch_grad=False),
    OpInfo("floor", chainrule.floor, np.floor, unary(-2.5, 2.5, KINKS_INT, 0.1), T("floor"),
           method="floor"),
    OpInfo("ceil", chainrule.ceil, np.ceil, unary(-2.5, 2.5, KINKS_INT, 0.1), T("ceil"),
           method="ceil"),
    OpInfo("round", chainrule.round, np.round, unary(-2.5, 2.5, KINKS_HALF, 0.1), T("round"),
           method="round"),
    OpInfo("round_half_even", chainrule.round, np.round,
           lambda m: [Sample((m.values([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]),),
                             desc="halves", kink=True)], T("round")),
    OpInfo("round_decimals", lambda x, decimals: chainrule.round(x, decimals=decimals),
           lambda x, decimals: np.round(x, decimals),
           lambda m: [Sample((m.t((2, 3), -2.0, 2.0),), {"decimals": 1}, "decimals=1")],
           lambda tm, x, decimals: tm.round(x, decimals=decimals)),
    OpInfo("erf", chainrule.erf, _erf, unary(-3.0, 3.0), T("erf"), method="erf"),
    OpInfo("square", chainrule.square, np.square, unary(), T("square"), dtypes=NUMERIC,
           method="square"),
    OpInfo("log2", chainrule.log2, np.log2, unary(0.2, 3.0), T("log2"), method="log2"),
    OpInfo("trunc", chainrule.trunc, np.trunc, unary(-2.5, 2.5, KINKS_INT, 0.1), T("trunc"),
           method="trunc"),
)


def _torch_logaddexp(tm, a, b):
    """torch.logaddexp takes no Python numbers: they become tensors of the other's dtype."""
    a = a if isinstance(a, tm.Tensor) else tm.tensor(a, dtype=b.dtype)
    b = b if isinstance(b, tm.Tensor) else tm.tensor(b, dtype=a.dtype)
    return tm.logaddexp(a, b)


def _clamp_samples(m: Maker):
    k = dict(kinks=(-0.5, 0.5), away=0.1)
    yield Sample((m.t((2, 3), **k), -0.5, 0.5), desc="min, max")
    yield Sample((m.t(()), -0.5, 0.5), desc="0-d")
    yield Sample((m.t((5,), **k),), {"min": -0.5}, "min only")
    yield Sample((m.t((5,), **k),), {"max": 0.5}, "max only")
    if m.is_float:
        lo, x = m.apart((3,), (2, 3))
        hi = Arg(lo.array + np.asarray(2.0, lo.array.dtype), True)
        if np.abs(x.array - hi.array).min() > 0.15:
            yield Sample((x, lo, hi), desc="tensor bounds, broadcast")


add(
    OpInfo("clamp", chainrule.clamp, lambda x, min=None, max=None: np.clip(x, min, max),
           _clamp_samples, T("clamp"), dtypes=NUMERIC, method="clamp",
           errors=lambda m: [ErrorInput(Sample((m.t((2,)),)), ValueError, ("clamp",))]),
    OpInfo("clip", chainrule.clip, lambda x, min=None, max=None: np.clip(x, min, max),
           _clamp_samples, T("clip"), method="clip"),
)

# ================================================================ operators
DIV_RHS = dict(kinks=(0.0,), away=0.5)
POS = dict(low=0.3, high=2.0)

add(
    OpInfo("__add__", lambda a, b: a + b, lambda a, b: a + b,
           binary(scalars=(2.5, 3), rscalars=(2.5, 3)), same(lambda a, b: a + b),
           dtypes=NUMERIC + ("bool",),
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((4,)))), ShapeError,
                                        ("add", r"\(2, 3\)", r"\(4,\)"))]),
    OpInfo("__sub__", lambda a, b: a - b, lambda a, b: a - b,
           binary(scalars=(2.5, 3), rscalars=(2.5, 3)), same(lambda a, b: a - b),
           dtypes=NUMERIC),
    OpInfo("__mul__", lambda a, b: a * b, lambda a, b: a * b,
           binary(scalars=(2.5, 3), rscalars=(2.5, 3)), same(lambda a, b: a * b),
           dtypes=NUMERIC + ("bool",)),
    OpInfo("__truediv__", lambda a, b: a / b, lambda a, b: a / b,
           binary(rhs=DIV_RHS, lhs=DIV_RHS, scalars=(2.5, 3), rscalars=(2.5, 3)),
           same(lambda a, b: a / b), dtypes=NUMERIC),
    OpInfo("__floordiv__", lambda a, b: a // b, lambda a, b: np.floor_divide(a, b),
           quotient(scalars=(1.5, 2), rscalars=(2.5,)), same(lambda a, b: a // b),
           dtypes=NUMERIC, torch_grad=False),
    OpInfo("__mod__", lambda a, b: a % b, lambda a, b: np.remainder(a, b),
           quotient(scalars=(1.5, 2)), same(lambda a, b: a % b), dtypes=NUMERIC),
    # PyTorch has no derivative for remainder(Scalar, Tensor): compare values only
    OpInfo("__rmod__", lambda a, b: a % b, lambda a, b: np.remainder(a, b),
           quotient(shapes=(), rscalars=(2.5, 3)), same(lambda a, b: a % b), dtypes=NUMERIC,
           torch_grad=False),
    OpInfo("__pow__", lambda a, b: a ** b, lambda a, b: np.power(a, b),
           binary(lhs=POS, rhs=dict(low=-2.0, high=2.0),
                  scalars=(2, 3, 0.5, -1, 2.5), rscalars=(2.0, 0.5)),
           same(lambda a, b: a ** b), dtypes=FLOATS),
    OpInfo("__pow__int", lambda a, b: a ** b, lambda a, b: np.power(a, b),
           binary(lhs=dict(low=0, high=3), rhs=dict(low=0, high=3), scalars=(2,),
                  rscalars=(2,)),
           same(lambda a, b: a ** b), dtypes=("int64",), grad=False),
    OpInfo("__neg__", lambda a: -a, lambda a: -a, unary(), same(lambda a: -a),
           dtypes=FLOATS + INTS),
    OpInfo("__abs__", lambda a: abs(a), np.abs, unary(kinks=(0.0,), away=0.1),
           same(lambda a: abs(a)), dtypes=FLOATS + INTS),
    OpInfo("__matmul__", lambda a, b: a @ b, np.matmul,
           lambda m: [Sample((m.t((2, 3)), m.t((3, 4))), desc="2-D @ 2-D"),
                      Sample((m.t((3,)), m.t((3, 2))), desc="1-D @ 2-D")],
           same(lambda a, b: a @ b), dtypes=NUMERIC),
)

for _name, _fn in [("eq", lambda a, b: a == b), ("ne", lambda a, b: a != b),
                   ("lt", lambda a, b: a < b), ("le", lambda a, b: a <= b),
                   ("gt", lambda a, b: a > b), ("ge", lambda a, b: a >= b)]:
    add(OpInfo(f"__{_name}__", _fn, _fn,
               binary(lhs=dict(low=-2, high=2), rhs=dict(low=-2, high=2),
                      scalars=(0.5, 1), rscalars=(0.5, 1)),
               same(_fn), dtypes=NUMERIC + ("bool",), grad=False))
    add(OpInfo(_name, getattr(chainrule, _name), _fn,
               binary(shapes=BINARY_SHAPES[:4], scalars=(0.5,)), T(_name),
               dtypes=NUMERIC, method=_name, grad=False))

for _name, _fn in [("__and__", lambda a, b: a & b), ("__or__", lambda a, b: a | b),
                   ("__xor__", lambda a, b: a ^ b)]:
    add(OpInfo(_name, _fn, _fn, binary(shapes=BINARY_SHAPES[:5]), same(_fn), dtypes=("bool",),
               grad=False))
add(OpInfo("__invert__", lambda a: ~a, lambda a: ~a, unary(), same(lambda a: ~a),
           dtypes=("bool", "int64"), grad=False))

# ================================================================ elementwise binary
add(
    OpInfo("add", chainrule.add, np.add, binary(scalars=(2.5,)), T("add"), dtypes=NUMERIC,
           method="add"),
    OpInfo("add_alpha", lambda a, b: chainrule.add(a, b, alpha=2),
           lambda a, b: a + 2 * b, binary(shapes=BINARY_SHAPES[:4]),
           lambda tm, a, b: tm.add(a, b, alpha=2), dtypes=NUMERIC),
    OpInfo("sub", chainrule.sub, np.subtract, binary(scalars=(2.5,)), T("sub"),
           dtypes=NUMERIC, method="sub"),
    OpInfo("sub_alpha", lambda a, b: chainrule.sub(a, b, alpha=0.5),
           lambda a, b: a - 0.5 * b, binary(shapes=BINARY_SHAPES[:4]),
           lambda tm, a, b: tm.sub(a, b, alpha=0.5)),
    OpInfo("mul", chainrule.mul, np.multiply, binary(scalars=(2.5,)), T("mul"),
           dtypes=NUMERIC, method="mul"),
    OpInfo("div", chainrule.div, np.divide, binary(lhs=DIV_RHS, rhs=DIV_RHS, scalars=(2.5,)),
           T("div"), dtypes=NUMERIC, method="div"),
    OpInfo("div_trunc", lambda a, b: chainrule.div(a, b, rounding_mode="trunc"),
           lambda a, b: np.trunc(a / b).astype(np.result_type(a, b)),
           quotient(shapes=BINARY_SHAPES[:4]),
           lambda tm, a, b: tm.div(a, b, rounding_mode="trunc"), dtypes=NUMERIC,
           torch_grad=False),
    OpInfo("div_floor", lambda a, b: chainrule.div(a, b, rounding_mode="floor"),
           np.floor_divide, quotient(shapes=BINARY_SHAPES[:4]),
           lambda tm, a, b: tm.div(a, b, rounding_mode="floor"), dtypes=NUMERIC,
           torch_grad=False),
    OpInfo("pow", chainrule.pow, np.power,
           binary(lhs=POS, rhs=dict(low=-2.0, high=2.0), scalars=(2, 0.5)),
           T("pow"), method="pow"),
    OpInfo("logaddexp", chainrule.logaddexp, np.logaddexp,
           binary(lhs={"low": -3.0, "high": 3.0}, rhs={"low": -3.0, "high": 3.0},
                  scalars=(0.5,)),
           _torch_logaddexp, method="logaddexp", prim="logaddexp"),
    OpInfo("maximum", chainrule.maximum, np.maximum, binary(apart=True), T("maximum"),
           dtypes=NUMERIC, method="maximum"),
    OpInfo("minimum", chainrule.minimum, np.minimum, binary(apart=True), T("minimum"),
           dtypes=NUMERIC, method="minimum"),
    OpInfo("maximum_ties", chainrule.maximum, np.maximum,
           lambda m: [Sample((m.values([1.0, 2.0, 3.0]), m.values([1.0, 0.0, 3.0])),
                             desc="ties", kink=True)], T("maximum")),
    OpInfo("minimum_ties", chainrule.minimum, np.minimum,
           lambda m: [Sample((m.values([1.0, 2.0, 3.0]), m.values([1.0, 0.0, 3.0])),
                             desc="ties", kink=True)], T("minimum")),
    OpInfo("remainder", chainrule.remainder, np.remainder,
           quotient(shapes=BINARY_SHAPES[:4]), T("remainder"), dtypes=NUMERIC,
           method="remainder"),
    OpInfo("floor_divide", chainrule.floor_divide, np.floor_divide,
           quotient(shapes=BINARY_SHAPES[:4]), T("floor_divide"), dtypes=NUMERIC,
           torch_grad=False),
)


def _where_samples(m: Maker):
    yield Sample((m.mask((2, 3)), m.t((2, 3)), m.t((2, 3))), desc="same shapes")
    yield Sample((m.mask((2, 1)), m.t((1, 3)), m.t((3,))), desc="broadcast")
    yield Sample((m.mask(()), m.t(()), m.t(())), desc="0-d")
    yield Sample((m.mask((4,)), m.t((4,)), 0.0), desc="scalar other")


add(OpInfo("where", chainrule.where, np.where, _where_samples, T("where"), dtypes=NUMERIC))

# ================================================================ reductions
RED_SHAPE = (2, 3, 4)


def reduce_samples(dims=(None, 0, -1, (0, 2), 1), keepdim=True, zero_d=True, size1=True,
                   shape=RED_SHAPE, distinct=False, low=-2.0, high=2.0, **kw):
    def gen(m: Maker):
        for d in dims:
            s = {} if d is None else {"dim": d}
            yield Sample((m.t(shape, low, high, distinct=distinct),), {**s, **kw},
                         f"dim={d}")
        if keepdim:
            yield Sample((m.t(shape, low, high, distinct=distinct),),
                         {"dim": 1, "keepdim": True, **kw}, "keepdim")
        if zero_d:
            yield Sample((m.t((), low, high),), dict(kw), "0-d")
            yield Sample((m.t((), low, high),), {"dim": 0, **kw}, "0-d dim=0")
        if size1:
            yield Sample((m.t((1,), low, high),), {"dim": 0, **kw}, "size-1")
    return gen


def _dim_error(op_name):
    return lambda m: [ErrorInput(Sample((m.t((2, 3)),), {"dim": 2}), IndexError,
                                 (op_name, "out of range"))]


add(
    OpInfo("sum", chainrule.sum, lambda x, dim=None, keepdim=False:
           np.sum(x, axis=_axis(dim, x), keepdims=keepdim, dtype=np.int64 if x.dtype.kind in "bi"
                  else None), reduce_samples(), T("sum"), dtypes=ALL, method="sum",
           errors=_dim_error("sum"), fast=("blas_sum",),
           big=lambda m: [Sample((m.t((64, 8, 10)),), {"dim": (0, 2)}, "blas lead+trail"),
                          Sample((m.t((1024, 8)),), {"dim": 0}, "blas lead")]),
    OpInfo("sum_dtype", lambda x: chainrule.sum(x, dtype=chainrule.float64),
           lambda x: np.sum(x.astype(np.float64)), unary(shapes=[(2, 3)]),
           lambda tm, x: tm.sum(x, dtype=tm.float64), dtypes=("float32", "int64"), grad=False,
           keeps_float_dtype=False),
    OpInfo("mean", chainrule.mean, lambda x, dim=None, keepdim=False:
           np.mean(x, axis=_axis(dim, x), keepdims=keepdim), reduce_samples(), T("mean"),
           method="mean", errors=_dim_error("mean")),
    OpInfo("var", chainrule.var,
           lambda x, dim=None, correction=1, keepdim=False:
           np.var(x, axis=dim, ddof=correction, keepdims=keepdim),
           reduce_samples(dims=(None, 0, (0, 2)), zero_d=False, size1=False), T("var"),
           method="var"),
    OpInfo("var_correction", chainrule.var,
           lambda x, dim=None, correction=1, keepdim=False:
           np.var(x, axis=dim, ddof=correction, keepdims=keepdim),
           lambda m: [Sample((m.t((3, 4)),), {"dim": 1, "correction": c}, f"correction={c}")
                      for c in (0, 1, 2)], T("var")),
    OpInfo("std", chainrule.std,
           lambda x, dim=None, correction=1, keepdim=False:
           np.std(x, axis=dim, ddof=correction, keepdims=keepdim),
           lambda m: [Sample((m.t((3, 4)),), {"dim": d, "correction": c, "keepdim": k},
                             f"dim={d} correction={c}")
                      for d, c, k in [(None, 1, False), (1, 0, False), (0, 2, True)]],
           T("std"), method="std"),
    OpInfo("prod", chainrule.prod, lambda x, dim=None, keepdim=False:
           np.prod(x, axis=_axis(dim, x), keepdims=keepdim, dtype=np.int64 if x.dtype.kind in "bi"
                   else None),
           lambda m: [Sample((m.t((2, 3), 0.5, 1.5),), {}, "all"),
                      Sample((m.t((2, 3), 0.5, 1.5),), {"dim": 1}, "dim=1"),
                      Sample((m.t((2, 3), 0.5, 1.5),), {"dim": 0, "keepdim": True}, "keepdim"),
                      Sample((m.t(()),), {}, "0-d"),
                      Sample((m.values([[0.0, 2.0, 3.0], [1.5, 0.0, 0.0]]),), {"dim": 1},
                             "one and two zeros"),
                      Sample((m.values([2.0, 0.0, -1.5]),), {}, "a zero"),
                      Sample((m.values([[0.0, 0.0, 0.0], [0.0, 1.5, -2.0]]),), {"dim": 1},
                             "three zeros")],
           T("prod"), dtypes=NUMERIC, method="prod"),
    OpInfo("amax", chainrule.amax, lambda x, dim=None, keepdim=False:
           np.max(x, axis=_axis(dim, x), keepdims=keepdim),
           reduce_samples(dims=(None, 0, -1, (0, 2)), distinct=True),
           lambda tm, x, dim=(), keepdim=False: tm.amax(x, dim=dim, keepdim=keepdim),
           dtypes=NUMERIC, method="amax"),
    OpInfo("amin", chainrule.amin, lambda x, dim=None, keepdim=False:
           np.min(x, axis=_axis(dim, x), keepdims=keepdim),
           reduce_samples(dims=(None, 0, -1, (0, 2)), distinct=True),
           lambda tm, x, dim=(), keepdim=False: tm.amin(x, dim=dim, keepdim=keepdim),
           dtypes=NUMERIC, method="amin"),
    OpInfo("amax_ties", chainrule.amax, lambda x, dim=None, keepdim=False:
           np.max(x, axis=dim, keepdims=keepdim),
           lambda m: [Sample((m.values([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]),), {"dim": 1},
                             "ties share the gradient", kink=True)],
           lambda tm, x, dim=(), keepdim=False: tm.amax(x, dim=dim, keepdim=keepdim)),
    OpInfo("max", chainrule.max, lambda x: np.max(x),
           lambda m: [Sample((m.t(s, distinct=True),), desc=f"{s}")
                      for s in [(), (5,), (2, 3)]], T("max"), dtypes=NUMERIC + ("bool",),
           method="max"),
    OpInfo("max_dim", chainrule.max,
           lambda x, dim, keepdim=False: (np.max(x, axis=_axis(dim, x), keepdims=keepdim),
                                          np.argmax(x, axis=_axis(dim, x), keepdims=keepdim)),
           lambda m: [Sample((m.t((2, 3, 4), distinct=True),), {"dim": d, "keepdim": k},
                             f"dim={d} keepdim={k}") for d, k in [(0, False), (-1, True),
                                                                  (1, False)]]
           + [Sample((m.t((), distinct=True),), {"dim": 0}, "0-d")],
           T("max"), dtypes=NUMERIC, method="max"),
    OpInfo("max_dim_ties", lambda x, dim: chainrule.max(x, dim).values,
           lambda x, dim: np.max(x, axis=dim),
           lambda m: [Sample((m.values([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]),), {"dim": 1},
                             "ties: gradient to the returned index", kink=True)],
           lambda tm, x, dim: tm.max(x, dim).values),
    OpInfo("max_binary", chainrule.max, np.maximum,
           lambda m: [Sample(m.apart((2, 3), (3,)), desc="max(a, b)")], T("max")),
    OpInfo("min", chainrule.min, lambda x: np.min(x),
           lambda m: [Sample((m.t(s, distinct=True),), desc=f"{s}")
                      for s in [(), (5,), (2, 3)]], T("min"), dtypes=NUMERIC, method="min"),
    OpInfo("min_dim", chainrule.min,
           lambda x, dim, keepdim=False: (np.min(x, axis=dim, keepdims=keepdim),
                                          np.argmin(x, axis=dim, keepdims=keepdim)),
           lambda m: [Sample((m.t((2, 3, 4), distinct=True),), {"dim": d, "keepdim": k},
                             f"dim={d} keepdim={k}") for d, k in [(0, False), (-1, True)]],
           T("min"), dtypes=NUMERIC, method="min"),
    OpInfo("argmax", chainrule.argmax,
           lambda x, dim=None, keepdim=False: np.argmax(x, axis=_axis(dim, x), keepdims=keepdim),
           lambda m: [Sample((m.t((2, 3, 4), distinct=True),), kw, f"{kw}")
                      for kw in [{}, {"dim": 0}, {"dim": -1, "keepdim": True}, {"dim": 1}]]
           + [Sample((m.t((), distinct=True),), {}, "0-d")],
           T("argmax"), dtypes=NUMERIC, method="argmax", grad=False),
    OpInfo("argmin", chainrule.argmin,
           lambda x, dim=None, keepdim=False: np.argmin(x, axis=dim, keepdims=keepdim),
           lambda m: [Sample((m.t((2, 3, 4), distinct=True),), kw, f"{kw}")
                      for kw in [{}, {"dim": 0}, {"dim": -1, "keepdim": True}]],
           T("argmin"), dtypes=NUMERIC, method="argmin", grad=False),
    OpInfo("logsumexp", chainrule.logsumexp,
           lambda x, dim, keepdim=False: _np_logsumexp(x, _axis(dim), keepdim),
           lambda m: [Sample((m.t((2, 3, 4)),), {"dim": d, "keepdim": k}, f"dim={d}")
                      for d, k in [(0, False), (-1, True), ((0, 2), False)]]
           + [Sample((m.values([[1000.0, 1000.0], [-1000.0, 5.0]]),), {"dim": 1}, "large"),
              Sample((m.t(()),), {"dim": 0}, "0-d")],
           T("logsumexp"), method="logsumexp"),
    OpInfo("softmax", chainrule.softmax, lambda x, dim: _np_softmax(x, dim),
           lambda m: [Sample((m.t((2, 3, 4)),), {"dim": d}, f"dim={d}") for d in (0, 1, -1)]
           + [Sample((m.t(()),), {"dim": 0}, "0-d"),
              Sample((m.values([[1000.0, 0.0, -1000.0]]),), {"dim": 1}, "large")],
           T("softmax"), method="softmax"),
    OpInfo("log_softmax", chainrule.log_softmax, lambda x, dim: _np_log_softmax(x, dim),
           lambda m: [Sample((m.t((2, 3, 4)),), {"dim": d}, f"dim={d}") for d in (0, 1, -1)]
           + [Sample((m.t(()),), {"dim": 0}, "0-d"),
              Sample((m.values([[1000.0, 0.0, -1000.0]]),), {"dim": 1}, "large")],
           T("log_softmax"), method="log_softmax",
           errors=_dim_error("log_softmax")),
    OpInfo("cumsum", chainrule.cumsum,
           lambda x, dim: np.cumsum(x, axis=dim if x.ndim else None,
                                    dtype=np.int64 if x.dtype.kind in "bi" else None
                                    ).reshape(x.shape),
           lambda m: [Sample((m.t((2, 3, 4)),), {"dim": d}, f"dim={d}") for d in (0, 1, -1)]
           + [Sample((m.t(()),), {"dim": 0}, "0-d")],
           T("cumsum"), dtypes=ALL, method="cumsum"),
    OpInfo("norm", chainrule.norm, _np_norm,
           lambda m: [Sample((m.t((2, 3), kinks=(0.0,), away=0.1),), kw, f"{kw}")
                      for kw in [{}, {"p": 1}, {"p": 3}, {"p": 2, "dim": 1},
                                 {"p": 1, "dim": 0, "keepdim": True},
                                 {"p": math.inf}, {"p": -math.inf}, {"p": 2.5, "dim": (0, 1)}]],
           T("norm"), method="norm"),
)

# PyTorch's conventions at points where the calculus has no answer: a zero gradient for the
# norm of a zero vector, the std of a constant and x ** 0 at x = 0 (never NaN)
add(
    OpInfo("norm_at_zero", chainrule.norm, _np_norm,
           lambda m: [Sample((m.values(np.zeros((2, 3))),), kw, f"zeros {kw}", kink=True)
                      for kw in [{}, {"p": 3}, {"p": 1}]]
           + [Sample((m.values([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]]),), {"dim": 1},
                     "one zero row", kink=True)],
           T("norm")),
    OpInfo("std_constant", chainrule.std,
           lambda x, dim=None, correction=1, keepdim=False:
           np.std(x, axis=dim, ddof=correction, keepdims=keepdim),
           lambda m: [Sample((m.values([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]]),), {"dim": 1},
                             "a constant row", kink=True)],
           T("std")),
    OpInfo("pow_zero_exponent", chainrule.pow, np.power,
           lambda m: [Sample((m.values([0.0, 1.0, 2.0]), m.values([0.0, 0.0, 2.0])),
                             desc="tensor exponent", kink=True),
                      Sample((m.values([0.0, 1.0, 2.0]), 0.0), desc="x ** 0.0", kink=True)],
           T("pow")),
)

# ================================================================ shape
add(
    OpInfo("reshape", lambda x, *s: chainrule.reshape(x, *s),
           lambda x, *s: np.reshape(x, s[0] if len(s) == 1 else s),
           lambda m: [Sample((m.t((2, 3)), (3, 2)), desc="(2,3)->(3,2)"),
                      Sample((m.t((2, 3)), -1), desc="-1"),
                      Sample((m.t((2, 3)), 1, 6, 1), desc="varargs"),
                      Sample((m.t(()), (1,)), desc="0-d -> (1,)"),
                      Sample((m.t((1,)), ()), desc="(1,) -> 0-d"),
                      Sample((m.t((2, 3, 2)), (3, -1)), desc="(3, -1)")],
           lambda tm, x, *s: tm.reshape(x, s[0] if len(s) == 1 and isinstance(s[0], tuple)
                                        else s), dtypes=ALL, method="reshape",
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), (4, 2))), ShapeError,
                                        ("reshape", r"\[4, 2\]", "6"))]),
    OpInfo("view", lambda x, *s: x.view(*s), lambda x, *s: np.reshape(x, s),
           lambda m: [Sample((m.t((2, 3)), 3, 2), desc="(3, 2)"),
                      Sample((m.t((2, 3)), -1), desc="-1")],
           same(lambda x, *s: x.view(*s)), dtypes=ALL),
    OpInfo("flatten", chainrule.flatten,
           lambda x, start_dim=0, end_dim=-1: x.reshape(
               x.shape[:start_dim % max(x.ndim, 1)] + (-1,)
               + x.shape[end_dim % max(x.ndim, 1) + 1:]) if x.ndim else x.reshape(1),
           lambda m: [Sample((m.t((2, 3, 4)),), {}, "all"),
                      Sample((m.t((2, 3, 4)),), {"start_dim": 1}, "start 1"),
                      Sample((m.t((2, 3, 4)),), {"end_dim": 1}, "end 1"),
                      Sample((m.t(()),), {}, "0-d")],
           T("flatten"), dtypes=ALL, method="flatten"),
    OpInfo("squeeze", chainrule.squeeze, _np_squeeze,
           lambda m: [Sample((m.t((1, 3, 1)),), {}, "all"),
                      Sample((m.t((1, 3, 1)),), {"dim": -1}, "dim=-1"),
                      Sample((m.t((1, 3, 1)),), {"dim": 1}, "not size 1: no-op"),
                      Sample((m.t((1, 3, 1)),), {"dim": (0, 2)}, "tuple"),
                      Sample((m.t(()),), {}, "0-d")],
           T("squeeze"), dtypes=ALL, method="squeeze"),
    OpInfo("unsqueeze", chainrule.unsqueeze, lambda x, dim: np.expand_dims(x, dim),
           lambda m: [Sample((m.t((2, 3)),), {"dim": d}, f"dim={d}") for d in (0, 1, 2, -1, -3)]
           + [Sample((m.t(()),), {"dim": 0}, "0-d")],
           T("unsqueeze"), dtypes=ALL, method="unsqueeze",
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)),), {"dim": 3}), IndexError,
                                        ("unsqueeze", "out of range"))]),
    OpInfo("transpose", chainrule.transpose, lambda x, a, b: np.swapaxes(x, a, b),
           lambda m: [Sample((m.t((2, 3)), 0, 1), desc="2-D"),
                      Sample((m.t((2, 3, 4)), -1, 0), desc="3-D"),
                      Sample((m.t((3,)), 0, -1), desc="1-D")],
           T("transpose"), dtypes=ALL, method="transpose"),
    OpInfo("permute", lambda x, *d: chainrule.permute(x, *d),
           lambda x, *d: np.transpose(x, d[0] if len(d) == 1 else d),
           lambda m: [Sample((m.t((2, 3, 4)), (2, 0, 1)), desc="tuple"),
                      Sample((m.t((2, 3, 4)), 1, 2, 0), desc="varargs"),
                      Sample((m.t((2, 3)), (-1, 0)), desc="negative")],
           same(lambda x, *d: x.permute(*d)), dtypes=ALL, method="permute",
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), (0,))), ShapeError,
                                        ("permute",))]),
    OpInfo("T", lambda x: x.T, lambda x: x.T,
           lambda m: [Sample((m.t(s),), desc=f"{s}") for s in [(2, 3), (1, 4)]],
           same(lambda x: x.T), dtypes=ALL),
    OpInfo("mT", lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2),
           lambda m: [Sample((m.t(s),), desc=f"{s}") for s in [(2, 3), (2, 3, 4)]],
           same(lambda x: x.mT), dtypes=ALL),
    OpInfo("t", chainrule.t, lambda x: x.T,
           lambda m: [Sample((m.t(s),), desc=f"{s}") for s in [(2, 3), (3,)]],
           T("t"), dtypes=FLOATS, method="t"),
    OpInfo("expand", lambda x, *s: x.expand(*s), lambda x, *s: np.broadcast_to(
               x, tuple(x.shape[i - (len(s) - x.ndim)] if n == -1 else n
                        for i, n in enumerate(s))),
           lambda m: [Sample((m.t((3, 1)), 3, 4), desc="(3,1)->(3,4)"),
                      Sample((m.t((3, 1)), -1, 4), desc="-1"),
                      Sample((m.t((3,)), 2, 3), desc="new leading dim"),
                      Sample((m.t(()), 2, 3), desc="0-d")],
           same(lambda x, *s: x.expand(*s)), dtypes=ALL),
    OpInfo("broadcast_to", chainrule.broadcast_to, np.broadcast_to,
           lambda m: [Sample((m.t((3, 1)), (2, 3, 4)), desc="(3,1)->(2,3,4)"),
                      Sample((m.t(()), (2,)), desc="0-d"),
                      Sample((m.t((1,)), (1,)), desc="same")],
           T("broadcast_to"), dtypes=ALL, method="broadcast_to",
           errors=lambda m: [ErrorInput(Sample((m.t((3,)), (4,))), ShapeError,
                                        ("broadcast_to", r"\(3,\)", r"\(4,\)"))]),
    OpInfo("repeat", lambda x, *r: x.repeat(*r), lambda x, *r: np.tile(x, r),
           lambda m: [Sample((m.t((3,)), 2), desc="(3,) x2"),
                      Sample((m.t((2, 3)), 2, 1), desc="(2,1)"),
                      Sample((m.t((2, 3)), 2, 1, 3), desc="new leading dim"),
                      Sample((m.t(()), 3), desc="0-d")],
           same(lambda x, *r: x.repeat(*r)), dtypes=ALL),
    OpInfo("cat", lambda *ts, dim=0: chainrule.cat(list(ts), dim),
           lambda *ts, dim=0: np.concatenate(ts, axis=dim),
           lambda m: [Sample((m.t((2, 3)), m.t((1, 3)), m.t((4, 3))), {}, "dim 0"),
                      Sample((m.t((2, 3)), m.t((2, 1))), {"dim": 1}, "dim 1"),
                      Sample((m.t((2, 3)), m.t((2, 2))), {"dim": -1}, "dim -1"),
                      Sample((m.t((3,)),), {}, "one tensor")],
           lambda tm, *ts, dim=0: tm.cat(list(ts), dim), dtypes=ALL,
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((2, 4))), {"dim": 0}),
                                        ShapeError, ("cat", r"\(2, 3\)", r"\(2, 4\)"))]),
    OpInfo("stack", lambda *ts, dim=0: chainrule.stack(list(ts), dim),
           lambda *ts, dim=0: np.stack(ts, axis=dim),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 3))), {}, "dim 0"),
                      Sample((m.t((2, 3)), m.t((2, 3)), m.t((2, 3))), {"dim": 2}, "dim 2"),
                      Sample((m.t((2, 3)), m.t((2, 3))), {"dim": -1}, "dim -1"),
                      Sample((m.t(()), m.t(())), {}, "0-d")],
           lambda tm, *ts, dim=0: tm.stack(list(ts), dim), dtypes=ALL,
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((3, 2)))), ShapeError,
                                        ("stack", r"\(2, 3\)", r"\(3, 2\)"))]),
    OpInfo("split", chainrule.split, _np_split,
           lambda m: [Sample((m.t((5, 2)), 2), desc="size 2"),
                      Sample((m.t((2, 5)), [1, 4]), {"dim": 1}, "sections"),
                      Sample((m.t((2, 6)), 3), {"dim": -1}, "even")],
           T("split"), dtypes=ALL, method="split",
           errors=lambda m: [ErrorInput(Sample((m.t((5,)), [2, 2])), ShapeError,
                                        ("split", "5"))]),
    OpInfo("chunk", chainrule.chunk, _np_chunk,
           lambda m: [Sample((m.t((5, 2)), 2), desc="2 chunks"),
                      Sample((m.t((2, 6)), 3), {"dim": 1}, "3 chunks")],
           T("chunk"), dtypes=ALL, method="chunk"),
    OpInfo("unbind", chainrule.unbind, lambda x, dim=0: tuple(np.moveaxis(x, dim, 0)),
           lambda m: [Sample((m.t((2, 3)),), desc="dim 0"),
                      Sample((m.t((2, 3)),), {"dim": 1}, "dim 1")],
           T("unbind"), dtypes=FLOATS, method="unbind"),
    OpInfo("flip", chainrule.flip, lambda x, dims: np.flip(x, axis=tuple(dims)),
           lambda m: [Sample((m.t((2, 3, 4)), [0]), desc="[0]"),
                      Sample((m.t((2, 3, 4)), [0, -1]), desc="[0, -1]"),
                      Sample((m.t((3,)), (0,)), desc="1-D")],
           T("flip"), dtypes=ALL, method="flip"),
    OpInfo("gather", chainrule.gather, _np_gather,
           lambda m: [Sample((m.t((3, 4)), 1, m.index((3, 5), 4)), desc="dim 1, repeats"),
                      Sample((m.t((3, 4)), 0, m.index((2, 4), 3)), desc="dim 0"),
                      Sample((m.t((3, 4)), -1, m.index((2, 2), 4)), desc="smaller index"),
                      Sample((m.t((2, 3, 4)), 2, m.index((2, 3, 1), 4)), desc="3-D")],
           T("gather"), dtypes=NUMERIC, method="gather",
           errors=lambda m: [ErrorInput(Sample((m.t((3, 4)), 1, Arg(np.array([[4]]), False))),
                                        IndexError, ("gather", "out of range"))]),
    OpInfo("index_select", chainrule.index_select,
           lambda x, dim, index: np.take(x, index, axis=dim),
           lambda m: [Sample((m.t((4, 3)), 0, Arg(np.array([3, 0, 3, 1]), False)),
                             desc="dim 0, repeats"),
                      Sample((m.t((4, 3)), 1, Arg(np.array([2]), False)), desc="dim 1"),
                      Sample((m.t((2, 3, 4)), -1, Arg(np.array([0, 0]), False)), desc="-1")],
           T("index_select"), dtypes=NUMERIC, method="index_select"),
    OpInfo("masked_fill", chainrule.masked_fill,
           lambda x, mask, value: np.where(mask, value, x).astype(x.dtype),
           lambda m: [Sample((m.t((2, 3)), m.mask((2, 3)), 0.5 if m.is_float else 5),
                             desc="same shape"),
                      Sample((m.t((2, 3)), m.mask((3,)), -1.0 if m.is_float else 1),
                             desc="broadcast mask")]
           + ([Sample((m.t((2, 3)), m.mask((2, 1)), m.t(())), desc="0-d tensor value")]
              if m.is_float else []),
           T("masked_fill"), dtypes=NUMERIC, method="masked_fill"),
    OpInfo("tril", chainrule.tril, lambda x, diagonal=0: np.tril(x, diagonal),
           lambda m: [Sample((m.t((3, 4)),), {"diagonal": k}, f"diagonal={k}")
                      for k in (0, 1, -1)]
           + [Sample((m.t((2, 3, 3)),), {}, "batched")],
           T("tril"), dtypes=ALL, method="tril"),
    OpInfo("triu", chainrule.triu, lambda x, diagonal=0: np.triu(x, diagonal),
           lambda m: [Sample((m.t((3, 4)),), {"diagonal": k}, f"diagonal={k}")
                      for k in (0, 1, -2)]
           + [Sample((m.t((2, 3, 3)),), {}, "batched")],
           T("triu"), dtypes=ALL, method="triu"),
)

# ================================================================ linear algebra
MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 1, 2, 3), (3, 3, 2)),
                 ((1, 2, 3), (2, 3, 2))]
add(
    OpInfo("matmul", chainrule.matmul, np.matmul,
           lambda m: [Sample((m.t(a), m.t(b)), desc=f"{a} @ {b}") for a, b in MATMUL_SHAPES],
           T("matmul"), dtypes=NUMERIC, method="matmul",
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((4, 2)))), ShapeError,
                                        ("matmul", r"\(2, 3\)", r"\(4, 2\)")),
                             ErrorInput(Sample((m.t(()), m.t((2,)))), ShapeError,
                                        ("matmul",))]),
    OpInfo("mm", chainrule.mm, np.matmul,
           lambda m: [Sample((m.t((2, 3)), m.t((3, 4))))], T("mm"), method="mm"),
    OpInfo("bmm", chainrule.bmm, np.matmul,
           lambda m: [Sample((m.t((2, 2, 3)), m.t((2, 3, 4))))], T("bmm"), method="bmm"),
    OpInfo("dot", chainrule.dot, np.dot, lambda m: [Sample((m.t((4,)), m.t((4,))))],
           T("dot"), method="dot"),
    OpInfo("outer", chainrule.outer, np.outer,
           lambda m: [Sample((m.t((3,)), m.t((2,)))), Sample((m.t((1,)), m.t((4,))))],
           T("outer"), dtypes=NUMERIC, method="outer"),
)

EINSUM = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
          ("i,i->", [(4,), (4,)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]),
          ("ij->j", [(2, 3)]), ("i,j->ij", [(2,), (3,)]), ("ij,jk", [(2, 3), (3, 2)]),
          ("...ij,...jk->...ik", [(2, 2, 3), (3, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)]),
          ("bi,oij,bj->bo", [(2, 3), (4, 3, 2), (2, 2)])]
add(OpInfo("einsum", lambda eq, *ops: chainrule.einsum(eq, *ops),
           lambda eq, *ops: np.einsum(eq, *ops),
           lambda m: [Sample((eq, *[m.t(s) for s in shapes]), desc=eq) for eq, shapes in EINSUM],
           T("einsum"), dtypes=NUMERIC,
           errors=lambda m: [ErrorInput(Sample(("ij,jk->ik", m.t((2, 3)), m.t((4, 2)))),
                                        ShapeError, ("einsum", "j"))]))

# ================================================================ indexing


def _getitem(name, index_fn, samples, dtypes=ALL, torch=True, **kw):
    fn = lambda x, *idx: x[index_fn(*idx)]
    return OpInfo(f"getitem_{name}", fn, fn, samples, same(fn) if torch else None, dtypes=dtypes,
                  **kw)


def _x(shape):
    return lambda m: [Sample((m.t(shape),), desc=f"{shape}")]


add(
    _getitem("int", lambda: 1, _x((3, 4))),
    _getitem("neg_int", lambda: -1, _x((3, 4))),
    _getitem("ints", lambda: (1, 2), _x((3, 4))),
    _getitem("slice", lambda: slice(1, None), _x((3, 4))),
    _getitem("step_slice", lambda: (slice(None), slice(None, None, 2)), _x((3, 5))),
    _getitem("negative_step", lambda: slice(None, None, -1), _x((4,)), torch=False),
    _getitem("empty_slice", lambda: slice(2, 1), _x((3, 4))),
    _getitem("none", lambda: None, _x((3,))),
    _getitem("slice_none", lambda: (slice(None), None, 1), _x((3, 4))),
    _getitem("ellipsis", lambda: (Ellipsis, 1), _x((2, 3, 4))),
    _getitem("ellipsis_none", lambda: (1, Ellipsis, None), _x((2, 3, 4))),
    _getitem("0d_ellipsis", lambda: Ellipsis, _x(())),
    _getitem("0d_none", lambda: None, _x(())),
    _getitem("list", lambda: [0, 2, 0], _x((3, 2))),
    _getitem("int_tensor", lambda i: i,
             lambda m: [Sample((m.t((4, 3)), Arg(np.array([3, 0, 3, 1]), False)),
                               desc="repeats"),
                        Sample((m.t((4, 3)), m.index((2, 3), 4)), desc="2-D index"),
                        Sample((m.t((4,)), Arg(np.array(2), False)), desc="0-d index")],
             big=lambda m: [Sample((m.t((8, 5)), m.index((40,), 8)), desc="embedding")],
             fast=("rows_add",)),
    _getitem("neg_int_tensor", lambda i: i,
             lambda m: [Sample((m.t((4, 3)), Arg(np.array([-1, 0, -4, -1, 3]), False)),
                               desc="negative, repeated"),
                        Sample((m.t((4, 3)), m.index((2, 2), 4, low=-4)), desc="2-D")],
             errors=lambda m: [
                 ErrorInput(Sample((m.t((4, 3)), Arg(np.array([0.0, 1.0]), False))),
                            IndexError, ("getitem", "must be long, int or bool",
                                         "float", r"index of shape \(2,\)",
                                         r"tensor of shape \(4, 3\)")),
                 ErrorInput(Sample((m.t((4, 3)), Arg(np.array([1, -5]), False))),
                            IndexError, ("getitem", "-5", "out of bounds", "size 4"))]),
    _getitem("tensor_and_slice", lambda i: (i, slice(1, 3)),
             lambda m: [Sample((m.t((4, 3)), Arg(np.array([3, -1, 0]), False)))]),
    _getitem("tensor_ints", lambda i: (i, 1, -1),
             lambda m: [Sample((m.t((4, 3, 2)), Arg(np.array([0, 3]), False)))],
             errors=lambda m: [
                 ErrorInput(Sample((m.t((4, 3)), Arg(np.array([0]), False))), IndexError,
                            ("getitem", "too many indices", "2-dimensional", "3"))]),
    _getitem("int_tensor_dim1", lambda i: (slice(None), i),
             lambda m: [Sample((m.t((2, 4)), Arg(np.array([1, 1, 0]), False)))]),
    _getitem("bool_mask", lambda k: k,
             lambda m: [Sample((m.t((3, 4)), m.mask((3, 4))), desc="full mask"),
                        Sample((m.t((3, 4)), m.mask((3,))), desc="row mask")]),
    _getitem("bool_mask_dim1", lambda k: (slice(None), k),
             lambda m: [Sample((m.t((2, 4)), m.mask((4,))))]),
    _getitem("mixed_tensor_slice", lambda i: (i, slice(1, None)),
             lambda m: [Sample((m.t((4, 3)), Arg(np.array([2, 0, 2]), False)))]),
    _getitem("mixed_int_tensor", lambda i: (1, i),
             lambda m: [Sample((m.t((2, 4)), Arg(np.array([3, 3, 0]), False)))]),
    _getitem("mixed_none_ellipsis", lambda i: (Ellipsis, None, i),
             lambda m: [Sample((m.t((2, 4)), Arg(np.array([0, 3]), False)))]),
    _getitem("two_tensors", lambda i, j: (i, j),
             lambda m: [Sample((m.t((3, 4)), Arg(np.array([[0], [2]]), False),
                                Arg(np.array([1, 3, 1]), False)), desc="broadcast indices")]),
    _getitem("split_tensors", lambda i, j: (i, slice(None), j),
             lambda m: [Sample((m.t((3, 2, 4)), Arg(np.array([0, 2]), False),
                                Arg(np.array([1, 3]), False)))]),
)


def _setitem(name, index_fn, samples, dtypes=NUMERIC):
    fn = _copy_set(index_fn)
    return OpInfo(f"setitem_{name}", fn, _np_setitem(index_fn), samples, same(fn),
                  dtypes=dtypes)


add(
    _setitem("int", lambda: 1, lambda m: [Sample((m.t((3, 4)), m.t((4,))), desc="row"),
                                          Sample((m.t((3, 4)), m.t((1,))), desc="broadcast")]),
    _setitem("slice", lambda: (slice(None), slice(1, 3)),
             lambda m: [Sample((m.t((3, 4)), m.t((3, 2))), desc="block"),
                        Sample((m.t((3, 4)), m.t(())), desc="0-d value")]),
    _setitem("scalar", lambda: (0, slice(None)),
             lambda m: [Sample((m.t((3, 4)), 1.5 if m.is_float else 7))]),
    _setitem("ellipsis", lambda: (Ellipsis, 0),
             lambda m: [Sample((m.t((2, 3)), m.t((2,))))]),
    _setitem("none", lambda: (None, 1),
             lambda m: [Sample((m.t((3, 2)), m.t((1, 2))))]),
    _setitem("int_tensor", lambda i: i,
             lambda m: [Sample((m.t((4, 3)), m.t((2, 3)), Arg(np.array([3, 0]), False)),
                               desc="rows"),
                        Sample((m.t((4, 3)), m.t((3,)), Arg(np.array([2, 1]), False)),
                               desc="broadcast value")]),
    _setitem("bool_mask", lambda k: k,
             lambda m: [Sample((m.t((3, 4)), m.t(()), Arg(np.eye(3, 4, dtype=bool), False)),
                               desc="0-d value"),
                        Sample((m.t((3, 4)), m.t((3,)), Arg(np.eye(3, 4, dtype=bool), False)),
                               desc="one value per True"),
                        Sample((m.t((3, 2)), m.t((2, 2)),
                                Arg(np.array([True, False, True]), False)), desc="row mask")]),
    _setitem("neg_int_tensor", lambda i: i,
             lambda m: [Sample((m.t((4, 3)), m.t((2, 3)), Arg(np.array([-1, 0]), False)),
                               desc="rows")]),
    _setitem("mixed", lambda i: (i, slice(0, 2)),
             lambda m: [Sample((m.t((4, 3)), m.t((2, 2)), Arg(np.array([1, 3]), False)))]),
)

# ================================================================ nn.functional


def _act_samples(kinks=(0.0,), away=0.1, low=-3.0, high=3.0, **kw):
    def gen(m: Maker):
        for s in [(), (4,), (2, 3)]:
            yield Sample((m.t(s, low, high, kinks=kinks, away=away),), dict(kw), f"{s}")
    return gen


def _loss_samples(m: Maker):
    for red in ("mean", "sum", "none"):
        yield Sample((m.t((3, 4)), m.t((3, 4))), {"reduction": red}, red)
    yield Sample((m.t(()), m.t(())), {}, "0-d")


def _gelu_ref(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


add(
    OpInfo("F.pad", F.pad, lambda x, pad, value=0.0: _np_pad(x, pad, value),
           lambda m: [Sample((m.t((2, 3)), (1, 2)), desc="last dim"),
                      Sample((m.t((2, 3)), (1, 1, 2, 0)), desc="two dims"),
                      Sample((m.t((2, 3, 4)), (0, 1)), {"value": 1.5}, "value"),
                      Sample((m.t((2, 5)), (-1, 2)), desc="negative crops")],
           TF("pad"), dtypes=NUMERIC),
    OpInfo("F.linear", F.linear, lambda x, w, b=None: x @ w.T + (0 if b is None else b),
           lambda m: [Sample((m.t((2, 3)), m.t((4, 3)), m.t((4,))), desc="bias"),
                      Sample((m.t((2, 3)), m.t((4, 3))), desc="no bias"),
                      Sample((m.t((3,)), m.t((4, 3)), m.t((4,))), desc="1-D input"),
                      Sample((m.t((2, 2, 3)), m.t((4, 3)), m.t((4,))), desc="3-D input")],
           TF("linear"),
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((4, 2)))), ShapeError,
                                        ("linear", r"\(2, 3\)", r"\(4, 2\)"))]),
    OpInfo("F.relu", F.relu, lambda x: np.maximum(x, 0), _act_samples(), TF("relu")),
    OpInfo("F.leaky_relu", F.leaky_relu,
           lambda x, negative_slope=0.01: np.where(x > 0, x, negative_slope * x),
           lambda m: list(_act_samples()(m)) + list(_act_samples(negative_slope=0.2)(m)),
           TF("leaky_relu")),
    OpInfo("F.elu", F.elu, lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(x)),
           lambda m: list(_act_samples()(m)) + list(_act_samples(alpha=0.5)(m))
           + [Sample((m.values([-200.0, 200.0]),), desc="large")],
           TF("elu")),
    OpInfo("F.gelu", F.gelu, _gelu_ref,
           lambda m: list(_act_samples(kinks=())(m))
           + list(_act_samples(kinks=(), approximate="tanh")(m)),
           TF("gelu"), fast=("gelu", "gelu_backward")),
    OpInfo("F.silu", F.silu, lambda x: x * _sigmoid(x), _act_samples(kinks=()), TF("silu")),
    OpInfo("F.softplus", F.softplus, _softplus,
           lambda m: list(_act_samples(kinks=())(m))
           + list(_act_samples(kinks=(2.0,), beta=10.0, threshold=20.0)(m))
           + [Sample((m.values([-100.0, 30.0]),), desc="large")],
           TF("softplus")),
    OpInfo("F.sigmoid", F.sigmoid, _sigmoid, _act_samples(kinks=()), TF("sigmoid")),
    OpInfo("F.tanh", F.tanh, np.tanh, _act_samples(kinks=()), TF("tanh")),
    OpInfo("F.softmax", F.softmax, lambda x, dim: _np_softmax(x, dim),
           lambda m: [Sample((m.t((2, 3)),), {"dim": d}, f"dim={d}") for d in (0, -1)],
           TF("softmax")),
    OpInfo("F.log_softmax", F.log_softmax, lambda x, dim: _np_log_softmax(x, dim),
           lambda m: [Sample((m.t((2, 3)),), {"dim": d}, f"dim={d}") for d in (0, -1)],
           TF("log_softmax")),
    OpInfo("F.one_hot", F.one_hot,
           lambda t, num_classes=-1: np.eye(t.max() + 1 if num_classes == -1 else num_classes,
                                            dtype=np.int64)[t],
           lambda m: [Sample((m.index((4,), 3),), desc="inferred"),
                      Sample((m.index((2, 3), 3),), {"num_classes": 5}, "num_classes"),
                      Sample((Arg(np.array(2), False), 4), desc="0-d")],
           TF("one_hot"), dtypes=("int64",), grad=False),
    OpInfo("F.mse_loss", F.mse_loss,
           lambda x, y, reduction="mean": _reduce((x - y) ** 2, reduction),
           _loss_samples, TF("mse_loss"),
           errors=lambda m: [ErrorInput(Sample((m.t((2, 3)), m.t((4,)))), ShapeError,
                                        ("mse_loss", "cannot be broadcast"))]),
    OpInfo("F.cross_entropy", F.cross_entropy, _np_cross_entropy,
           lambda m: [Sample((m.t((4, 3)), m.index((4,), 3)), desc="(N, C)"),
                      Sample((m.t((3,)), Arg(np.array(1), False)), desc="(C,) and 0-d target"),
                      Sample((m.t((2, 3, 4)), m.index((2, 4), 3)), desc="(N, C, d)"),
                      Sample((m.t((4, 3)), m.index((4,), 3)), {"reduction": "sum"}, "sum"),
                      Sample((m.t((4, 3)), m.index((4,), 3)), {"reduction": "none"}, "none"),
                      Sample((m.t((4, 3)), m.index((4,), 3), m.t((3,), 0.5, 2.0, grad=False)),
                             desc="weight"),
                      Sample((m.t((4, 3)), Arg(np.array([0, -100, 2, 1]), False)),
                             {"ignore_index": -100}, "ignore_index"),
                      Sample((m.t((4, 3)), m.index((4,), 3)), {"label_smoothing": 0.1},
                             "label_smoothing"),
                      Sample((m.values([[1e4, 0.0, -1e4]]), Arg(np.array([2]), False)),
                             desc="large logits")],
           TF("cross_entropy"),
           errors=lambda m: [ErrorInput(Sample((m.t((4, 3)), m.index((3,), 3))), ShapeError,
                                        ("cross_entropy", r"\(4, 3\)", r"\(3,\)")),
                             ErrorInput(Sample((m.t((4, 3)), Arg(np.array([0, 1, 3, 0]),
                                                                 False))),
                                        IndexError, ("out of bounds", "3"))]),
    OpInfo("F.nll_loss", F.nll_loss, _np_nll,
           lambda m: [Sample((m.t((4, 3), -3.0, 0.0), m.index((4,), 3)), desc="(N, C)"),
                      Sample((m.t((4, 3), -3.0, 0.0), m.index((4,), 3),
                              m.t((3,), 0.5, 2.0, grad=False)), desc="weight"),
                      Sample((m.t((4, 3), -3.0, 0.0), m.index((4,), 3)),
                             {"reduction": "sum"}, "sum"),
                      Sample((m.t((4, 3), -3.0, 0.0), Arg(np.array([1, 5, 5, 0]), False)),
                             {"ignore_index": 5}, "ignore_index")],
           TF("nll_loss")),
    OpInfo("F.binary_cross_entropy", F.binary_cross_entropy, _np_bce,
           lambda m: [Sample((m.t((3, 4), 0.05, 0.95), m.t((3, 4), 0.0, 1.0, grad=False)),
                             {"reduction": r}, r) for r in ("mean", "sum", "none")]
           + [Sample((m.t((4,), 0.05, 0.95), m.t((4,), 0.0, 1.0, grad=False),
                      m.t((4,), 0.5, 2.0, grad=False)), desc="weight")],
           # p = 0 or 1 (logs clamped at -100) has its own test in test_ops
           TF("binary_cross_entropy")),
    OpInfo("F.binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits,
           _np_bce_logits,
           lambda m: [Sample((m.t((3, 4), -3.0, 3.0), m.t((3, 4), 0.0, 1.0)),
                             {"reduction": r}, r) for r in ("mean", "sum", "none")]
           + [Sample((m.t((4,)), m.t((4,), 0.0, 1.0), m.t((4,), 0.5, 2.0, grad=False)),
                     desc="weight"),
              Sample((m.t((2, 3)), m.t((2, 3), 0.0, 1.0)),
                     {"pos_weight": m.t((3,), 0.5, 3.0, grad=False)}, "pos_weight"),
              Sample((m.values([-200.0, 200.0]), m.values([1.0, 0.0], grad=False)),
                     desc="large logits")],
           TF("binary_cross_entropy_with_logits")),
    OpInfo("F.layer_norm", F.layer_norm, _np_layer_norm,
           lambda m: [Sample((m.t((2, 4)), (4,)), desc="last dim"),
                      Sample((m.t((2, 3, 4)), (3, 4), m.t((3, 4)), m.t((3, 4))),
                             desc="two dims, affine"),
                      Sample((m.t((3, 5)), (5,), m.t((5,)), m.t((5,))), {"eps": 1e-3},
                             "eps")],
           TF("layer_norm"), fast=("layer_norm_rows", "layer_norm_vjp_rows"),
           errors=lambda m: [ErrorInput(Sample((m.t((2, 4)), (3,))), ShapeError,
                                        ("layer_norm", r"\(3,\)", r"\(2, 4\)"))]),
)


# ================================================================ issue 14: PyTorch compatibility
def _np_sort(x, dim=-1, descending=False):
    x = np.asarray(x)
    idx = np.argsort(-x if descending else x, axis=dim, kind="stable")
    return np.take_along_axis(x, idx, axis=dim), idx


def _np_topk(x, k, dim=-1, largest=True, sorted=True):
    v, i = _np_sort(x, dim, largest)
    sl = (slice(None),) * (dim % x.ndim) + (slice(0, k),)
    return v[sl], i[sl]


def _np_kthvalue(x, k, dim=-1, keepdim=False):
    v, i = _np_sort(x, dim)
    sl = (slice(None),) * (dim % x.ndim) + (slice(k - 1, k),)
    v, i = v[sl], i[sl]
    return (v, i) if keepdim else (v.squeeze(dim), i.squeeze(dim))


def _np_roll(x, shifts, dims=None):
    return np.roll(x, shifts, axis=dims)


def _np_diag_embed(x, offset=0):
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), x.dtype)
    for i in range(x.shape[-1]):
        r, c = (i, i + offset) if offset >= 0 else (i - offset, i)
        out[..., r, c] = x[..., i]
    return out


def _np_diag(x, diagonal=0):
    return _np_diag_embed(x, diagonal) if x.ndim == 1 else np.diagonal(x, diagonal).copy()


def _sort_samples(extra=()):
    def gen(m: Maker):
        return [Sample((m.t((5,), distinct=True),), dict(extra), "1-D"),
                Sample((m.t((3, 4), distinct=True),), dict(extra, dim=0), "dim 0"),
                Sample((m.t((2, 3, 4), distinct=True),), dict(extra, dim=-1), "dim -1")]
    return gen


add(
    OpInfo("sort", chainrule.sort, _np_sort,
           lambda m: [s for d in (False, True) for s in _sort_samples({"descending": d})(m)],
           T("sort"), dtypes=NUMERIC, method="sort"),
    OpInfo("argsort", chainrule.argsort, lambda x, dim=-1, descending=False:
           _np_sort(x, dim, descending)[1], _sort_samples({"descending": True}), T("argsort"),
           dtypes=NUMERIC, method="argsort", grad=False),
    OpInfo("topk", chainrule.topk, _np_topk,
           lambda m: [Sample((m.t((6,), distinct=True), 3), desc="k=3"),
                      Sample((m.t((3, 4), distinct=True), 2), {"dim": 0}, "dim 0"),
                      Sample((m.t((3, 4), distinct=True), 2), {"largest": False}, "smallest"),
                      Sample((m.t((2, 3, 4), distinct=True), 4), {"dim": -1}, "k=n"),
                      Sample((m.t((3, 4), distinct=True), 0), desc="k=0")],
           T("topk"), dtypes=NUMERIC, method="topk",
           errors=lambda m: [ErrorInput(Sample((m.t((3,)), 4)), IndexError,
                                        ("topk", "k=4", "size 3"))]),
    OpInfo("topk_ties", lambda x, k: chainrule.topk(x, k).values,
           lambda x, k: _np_topk(x, k)[0],
           lambda m: [Sample((m.values([1.0, 3.0, 3.0, 0.0]), 2), desc="ties", kink=True)],
           lambda tm, x, k: tm.topk(x, k).values),
    OpInfo("kthvalue", chainrule.kthvalue, _np_kthvalue,
           lambda m: [Sample((m.t((5,), distinct=True), 2), desc="1-D"),
                      Sample((m.t((3, 4), distinct=True), 3), {"dim": 0, "keepdim": True},
                             "dim 0 keepdim")],
           T("kthvalue"), dtypes=FLOATS, method="kthvalue"),
    OpInfo("roll", chainrule.roll, _np_roll,
           lambda m: [Sample((m.t((5,)), 2), desc="1-D"),
                      Sample((m.t((2, 3)), -1), desc="flattened"),
                      Sample((m.t((2, 3)), (1, 4)), {"dims": (0, 1)}, "two dims"),
                      Sample((m.t((2, 3)), 7), {"dims": -1}, "shift > size")],
           T("roll"), dtypes=ALL, method="roll"),
    OpInfo("narrow", chainrule.narrow, lambda x, dim, start, length: np.take(
               x, range(start % x.shape[dim], start % x.shape[dim] + length), axis=dim),
           lambda m: [Sample((m.t((5,)), 0, 1, 3), desc="1-D"),
                      Sample((m.t((3, 4)), 1, -2, 2), desc="negative start"),
                      Sample((m.t((3, 4)), 0, 0, 0), desc="empty")],
           T("narrow"), dtypes=ALL, method="narrow",
           errors=lambda m: [ErrorInput(Sample((m.t((3,)), 0, 2, 2)), IndexError,
                                        ("narrow", "size 3"))]),
    OpInfo("diag", chainrule.diag, _np_diag,
           lambda m: [Sample((m.t((3,)),), desc="vector"),
                      Sample((m.t((3,)),), {"diagonal": 1}, "vector, above"),
                      Sample((m.t((3,)), -2), desc="vector, below"),
                      Sample((m.t((3, 4)),), desc="matrix"),
                      Sample((m.t((3, 4)), 2), desc="matrix, above"),
                      Sample((m.t((3, 4)), -1), desc="matrix, below")],
           T("diag"), dtypes=ALL, method="diag",
           errors=lambda m: [ErrorInput(Sample((m.t((2, 2, 2)),)), ShapeError,
                                        ("diag", r"\(2, 2, 2\)"))]),
    OpInfo("diagonal", chainrule.diagonal,
           lambda x, offset=0, dim1=0, dim2=1: np.diagonal(x, offset, dim1, dim2).copy(),
           lambda m: [Sample((m.t((3, 4)),), desc="2-D"),
                      Sample((m.t((2, 3, 4)),), {"offset": -1, "dim1": 1, "dim2": 2},
                             "batched"),
                      Sample((m.t((2, 3, 4)), 1, 2, 0), desc="dims reversed")],
           T("diagonal"), dtypes=ALL, method="diagonal"),
    OpInfo("diag_embed", chainrule.diag_embed, _np_diag_embed,
           lambda m: [Sample((m.t((2, 3)),), desc="batched"),
                      Sample((m.t((3,)), -1), desc="below")],
           T("diag_embed"), dtypes=NUMERIC, method="diag_embed"),
    OpInfo("trace", chainrule.trace, np.trace,
           lambda m: [Sample((m.t((3, 3)),), desc="square"),
                      Sample((m.t((2, 4)),), desc="wide")],
           T("trace"), method="trace"),
    OpInfo("movedim", chainrule.movedim, np.moveaxis,
           lambda m: [Sample((m.t((2, 3, 4)), 0, -1), desc="one"),
                      Sample((m.t((2, 3, 4)), (0, 1), (2, 0)), desc="two")],
           T("movedim"), dtypes=ALL, method="movedim"),
    OpInfo("tile", chainrule.tile, np.tile,
           lambda m: [Sample((m.t((2, 3)), (2,)), desc="fewer reps"),
                      Sample((m.t((3,)), (2, 2)), desc="more reps")],
           T("tile"), dtypes=ALL, method="tile"),
)


def _np_scatter_add(x, dim, index, src):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        tgt = list(pos)
        tgt[dim] = index[pos]
        out[tuple(tgt)] += src[pos]
    return out


def _np_scatter(x, dim, index, src):
    out = x.copy()
    for pos in np.ndindex(*index.shape):
        tgt = list(pos)
        tgt[dim] = index[pos]
        out[tuple(tgt)] = src[pos] if isinstance(src, np.ndarray) else src
    return out


def _np_index_add(x, dim, index, source, alpha=1):
    out = np.moveaxis(x.copy(), dim, 0)
    src = np.moveaxis(source, dim, 0)
    for i, j in enumerate(index):
        out[j] += alpha * src[i]
    return np.moveaxis(out, 0, dim)


def _np_index_copy(x, dim, index, source):
    out = np.moveaxis(x.copy(), dim, 0)
    src = np.moveaxis(source, dim, 0)
    for i, j in enumerate(index):
        out[j] = src[i]
    return np.moveaxis(out, 0, dim)


def _np_unfold(x, dim, size, step):
    n = x.shape[dim]
    wins = [np.take(x, range(s, s + size), axis=dim) for s in range(0, n - size + 1, step)]
    return np.moveaxis(np.stack(wins, axis=dim), dim + 1, -1)


def _binary_pos(m: Maker):
    return [Sample((m.t((2, 3), 0.3, 2.0), m.t((3,), 0.3, 2.0)), desc="broadcast"),
            Sample((m.t((4,), 0.3, 2.0), m.t((4,), 0.3, 2.0)), desc="same")]


add(
    OpInfo("addmm", chainrule.addmm,
           lambda i, a, b, beta=1, alpha=1: beta * i + alpha * (a @ b),
           lambda m: [Sample((m.t((2, 4)), m.t((2, 3)), m.t((3, 4))), desc="plain"),
                      Sample((m.t((4,)), m.t((2, 3)), m.t((3, 4))), {"beta": 0.5, "alpha": 2},
                             "broadcast, scaled")],
           T("addmm"), method="addmm"),
    OpInfo("baddbmm", chainrule.baddbmm,
           lambda i, a, b, beta=1, alpha=1: beta * i + alpha * (a @ b),
           lambda m: [Sample((m.t((2, 2, 4)), m.t((2, 2, 3)), m.t((2, 3, 4))),
                             {"alpha": 0.5}, "batched")],
           T("baddbmm"), method="baddbmm"),
    OpInfo("addcmul", chainrule.addcmul, lambda i, a, b, value=1: i + value * a * b,
           lambda m: [Sample((m.t((2, 3)), m.t((3,)), m.t((2, 1))), {"value": 0.5}, "bcast")],
           T("addcmul"), method="addcmul"),
    OpInfo("addcdiv", chainrule.addcdiv, lambda i, a, b, value=1: i + value * a / b,
           lambda m: [Sample((m.t((2, 3)), m.t((3,)), m.t((2, 1), 0.5, 2.0)), {"value": -2},
                             "bcast")],
           T("addcdiv"), method="addcdiv"),
    OpInfo("lerp", chainrule.lerp, lambda a, b, w: a + w * (b - a),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 3)), 0.3), desc="scalar weight"),
                      Sample((m.t((2, 3)), m.t((3,)), m.t((2, 3))), desc="tensor weight")],
           T("lerp"), method="lerp"),
    OpInfo("reciprocal", chainrule.reciprocal, lambda x: 1 / x,
           unary(0.3, 2.0), T("reciprocal"), method="reciprocal"),
    OpInfo("log10", chainrule.log10, np.log10, unary(0.3, 3.0), T("log10"), method="log10"),
    OpInfo("exp2", chainrule.exp2, np.exp2, unary(), T("exp2"), method="exp2"),
    OpInfo("sinh", chainrule.sinh, np.sinh, unary(), T("sinh"), method="sinh"),
    OpInfo("cosh", chainrule.cosh, np.cosh, unary(), T("cosh"), method="cosh"),
    OpInfo("hypot", chainrule.hypot, np.hypot, _binary_pos, T("hypot"), method="hypot"),
    OpInfo("logit", chainrule.logit, lambda x, eps=None: np.log(x / (1 - x)),
           unary(0.1, 0.9), T("logit"), method="logit"),
    OpInfo("fmod", chainrule.fmod, np.fmod,
           lambda m: [Sample((m.t((2, 3), -3.0, 3.0, kinks=(-2.0, 0.0, 2.0), away=0.1),
                              m.values(2)), desc="scalar"),
                      Sample((m.t((4,), -3.0, 3.0, kinks=(0.0,), away=0.1),
                              m.values([1.5, -1.5, 2.5, 3.0], grad=False)), desc="tensor")],
           T("fmod"), dtypes=FLOATS + ("int64",), method="fmod", gradgrad=True),
    OpInfo("clamp_min", chainrule.clamp_min, np.maximum,
           lambda m: [Sample((m.t((2, 3), kinks=(0.2,), away=0.05), 0.2), desc="scalar")],
           T("clamp_min"), method="clamp_min"),
    OpInfo("clamp_max", chainrule.clamp_max, np.minimum,
           lambda m: [Sample((m.t((2, 3), kinks=(0.2,), away=0.05), 0.2), desc="scalar")],
           T("clamp_max"), method="clamp_max"),
    OpInfo("nan_to_num", chainrule.nan_to_num,
           lambda x, **k: np.nan_to_num(x, nan=k.get("nan", 0.0), posinf=k.get("posinf"),
                                        neginf=k.get("neginf")),
           lambda m: [Sample((m.t((2, 3)),), desc="finite"),
                      Sample((Arg(np.array([np.nan, 1.0, np.inf, -np.inf]).astype(m.dtype),
                                  False),), {"nan": 2.0, "posinf": 9.0, "neginf": -7.0},
                             "non-finite")],
           T("nan_to_num"), method="nan_to_num"),
    OpInfo("isclose", chainrule.isclose,
           lambda a, b, **k: np.isclose(a, b, rtol=k.get("rtol", 1e-5), atol=k.get("atol", 1e-8)),
           lambda m: [Sample((m.values([1.0, 2.0, 3.0]), m.values([1.0, 2.05, 4.0])),
                             {"rtol": 0.05}, "mixed")],
           T("isclose"), method="isclose", grad=False),
    OpInfo("diff", chainrule.diff, lambda x, n=1, dim=-1: np.diff(x, n=n, axis=dim),
           lambda m: [Sample((m.t((2, 5)),), desc="last dim"),
                      Sample((m.t((4, 3)),), {"n": 2, "dim": 0}, "second order, dim 0")],
           T("diff"), dtypes=NUMERIC, method="diff"),
    OpInfo("scatter_add", chainrule.scatter_add, _np_scatter_add,
           lambda m: [Sample((m.t((3, 4)), 0, Arg(np.array([[0, 1, 2, 0], [2, 2, 0, 1]]), False),
                              m.t((2, 4))), desc="dim 0, repeats"),
                      Sample((m.t((3, 4)), 1, Arg(np.array([[3, 0], [1, 1]]), False),
                              m.t((2, 2))), desc="dim 1, smaller index")],
           T("scatter_add"), dtypes=NUMERIC, method="scatter_add"),
    OpInfo("scatter", chainrule.scatter, _np_scatter,
           lambda m: [Sample((m.t((3, 4)), 0, Arg(np.array([[0, 1, 2, 0], [2, 0, 1, 1]]), False),
                              m.t((2, 4))), desc="dim 0, distinct targets"),
                      Sample((m.t((3, 4)), 1, Arg(np.array([[3], [0]]), False), 1.5 if
                              m.is_float else 2), desc="scalar src")],
           T("scatter"), dtypes=NUMERIC, method="scatter"),
    OpInfo("index_add", chainrule.index_add, _np_index_add,
           lambda m: [Sample((m.t((4, 3)), 0, Arg(np.array([0, 3, 0]), False), m.t((3, 3))),
                             desc="repeats"),
                      Sample((m.t((2, 4)), 1, Arg(np.array([1, 2]), False), m.t((2, 2))),
                             {"alpha": 2}, "alpha")],
           T("index_add"), dtypes=NUMERIC, method="index_add"),
    OpInfo("index_fill", chainrule.index_fill,
           lambda x, d, i, v: _np_scatter(x, d, np.broadcast_to(
               np.expand_dims(i, [k for k in range(x.ndim) if k != d]),
               tuple(len(i) if k == d else x.shape[k] for k in range(x.ndim))), v),
           lambda m: [Sample((m.t((3, 4)), 1, Arg(np.array([0, 2]), False), -1), desc="dim 1")],
           T("index_fill"), dtypes=NUMERIC, method="index_fill"),
    OpInfo("index_copy", chainrule.index_copy, _np_index_copy,
           lambda m: [Sample((m.t((4, 2)), 0, Arg(np.array([3, 1]), False), m.t((2, 2))),
                             desc="dim 0")],
           T("index_copy"), dtypes=NUMERIC, method="index_copy"),
    OpInfo("masked_select", chainrule.masked_select, lambda x, m: x[np.broadcast_to(m, x.shape)],
           lambda m: [Sample((m.t((2, 3)), m.mask((2, 3))), desc="same shape"),
                      Sample((m.t((2, 3)), m.mask((3,))), desc="broadcast mask")],
           T("masked_select"), dtypes=ALL, method="masked_select"),
    OpInfo("repeat_interleave", chainrule.repeat_interleave,
           lambda x, r, dim=None: np.repeat(x, r, axis=dim),
           lambda m: [Sample((m.t((2, 3)), 2), desc="flattened"),
                      Sample((m.t((2, 3)), Arg(np.array([1, 0, 3]), False)), {"dim": 1},
                             "counts")],
           T("repeat_interleave"), dtypes=ALL, method="repeat_interleave"),
    OpInfo("select", chainrule.select, lambda x, d, i: np.take(x, i, axis=d),
           lambda m: [Sample((m.t((2, 3, 4)), 1, -1), desc="dim 1")],
           T("select"), dtypes=ALL, method="select"),
    OpInfo("unfold", lambda x, d, s, st: x.unfold(d, s, st), _np_unfold,
           lambda m: [Sample((m.t((7,)), 0, 3, 2), desc="1-D"),
                      Sample((m.t((2, 5, 3)), 1, 2, 1), desc="middle dim")],
           same(lambda x, d, s, st: x.unfold(d, s, st)), dtypes=ALL),
    OpInfo("nonzero", chainrule.nonzero, lambda x: np.argwhere(x),
           lambda m: [Sample((m.values([[0, 1, 0], [2, 0, 3]]),), desc="2-D")],
           T("nonzero"), dtypes=ALL, method="nonzero", grad=False),
    OpInfo("count_nonzero", chainrule.count_nonzero,
           lambda x, dim=None: np.count_nonzero(x, axis=dim),
           lambda m: [Sample((m.values([[0, 1, 0], [2, 0, 3]]),), {"dim": 1}, "dim 1")],
           T("count_nonzero"), dtypes=ALL, method="count_nonzero", grad=False),
    OpInfo("argwhere", chainrule.argwhere, np.argwhere,
           lambda m: [Sample((m.values([[0, 1, 0], [2, 0, 3]]),), desc="2-D"),
                      Sample((m.values([0, 0]),), desc="none"),
                      Sample((m.values(5),), desc="0-d")],
           T("argwhere"), dtypes=ALL, method="argwhere", grad=False),
    OpInfo("unique", lambda x: chainrule.unique(x, return_inverse=True, return_counts=True),
           lambda x: np.unique(x, return_inverse=True, return_counts=True),
           lambda m: [Sample((m.values([3, 1, 3, 2, 1]),), desc="repeats")],
           lambda tm, x: tm.unique(x, return_inverse=True, return_counts=True),
           dtypes=NUMERIC, grad=False),
)


def _np_cos_sim(a, b, dim=1, eps=1e-8):
    return (a * b).sum(dim) / np.maximum(np.linalg.norm(a, axis=dim) *
                                         np.linalg.norm(b, axis=dim), eps)


def _np_pdist(a, b, p=2.0, eps=1e-6, keepdim=False):
    return np.linalg.norm(a - b + eps, ord=p, axis=-1, keepdims=keepdim)


def _sign_target(m: Maker, shape):
    return Arg(np.where(m.rng.random(shape) < 0.5, -1.0, 1.0).astype(m.dtype), False)


add(
    OpInfo("F.glu", F.glu, lambda x, dim=-1: np.split(x, 2, dim)[0] * _sigmoid(
               np.split(x, 2, dim)[1]),
           lambda m: [Sample((m.t((2, 4)),), desc="last"),
                      Sample((m.t((4, 3)),), {"dim": 0}, "dim 0")], TF("glu")),
    OpInfo("F.hardshrink", F.hardshrink, lambda x, lambd=0.5: np.where(np.abs(x) > lambd, x, 0),
           unary(kinks=(-0.5, 0.5), away=0.1), TF("hardshrink")),
    OpInfo("F.softshrink", F.softshrink,
           lambda x, lambd=0.5: np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd,
                                                                        0)),
           unary(kinks=(-0.5, 0.5), away=0.1), TF("softshrink")),
    OpInfo("F.tanhshrink", F.tanhshrink, lambda x: x - np.tanh(x), unary(), TF("tanhshrink")),
    OpInfo("F.threshold", F.threshold, lambda x, t, v: np.where(x > t, x, v),
           lambda m: [Sample((m.t((2, 3), kinks=(0.3,), away=0.1), 0.3, -1.0), desc="2-D")],
           TF("threshold")),
    OpInfo("F.prelu", F.prelu,
           lambda x, w: np.where(x >= 0, x, (w.reshape((-1,) + (1,) * (x.ndim - 2))
                                              if w.size > 1 else w) * x),
           lambda m: [Sample((m.t((2, 3, 4), kinks=(0.0,), away=0.1), m.t((1,), 0.1, 0.5)),
                             desc="one weight"),
                      Sample((m.t((2, 3, 4), kinks=(0.0,), away=0.1), m.t((3,), 0.1, 0.5)),
                             desc="per channel")], TF("prelu")),
    OpInfo("F.cosine_similarity", F.cosine_similarity, _np_cos_sim,
           lambda m: [Sample((m.t((3, 4)), m.t((3, 4))), desc="dim 1"),
                      Sample((m.t((3, 4)), m.t((4,))), {"dim": -1}, "broadcast")],
           TF("cosine_similarity")),
    OpInfo("F.pairwise_distance", F.pairwise_distance, _np_pdist,
           lambda m: [Sample((m.t((3, 4)), m.t((3, 4))), desc="p=2"),
                      Sample((m.t((3, 4)), m.t((3, 4))), {"p": 3.0, "keepdim": True}, "p=3")],
           TF("pairwise_distance")),
    OpInfo("F.margin_ranking_loss", F.margin_ranking_loss,
           lambda a, b, y, margin=0.0, reduction="mean": _reduce(
               np.maximum(0, -y * (a - b) + margin), reduction),
           lambda m: [Sample((*m.apart((5,), (5,)), _sign_target(m, (5,))), {}, "mean"),
                      Sample((*m.apart((5,), (5,)), _sign_target(m, (5,))),
                             {"reduction": "sum"}, "sum")], TF("margin_ranking_loss")),
    OpInfo("F.hinge_embedding_loss", F.hinge_embedding_loss,
           lambda x, y, margin=1.0, reduction="mean": _reduce(
               np.where(y == 1, x, np.maximum(0, margin - x)), reduction),
           lambda m: [Sample((m.t((6,), kinks=(1.0,), away=0.1), _sign_target(m, (6,))),
                             desc="mean")], TF("hinge_embedding_loss")),
    OpInfo("F.soft_margin_loss", F.soft_margin_loss,
           lambda x, y, reduction="mean": _reduce(np.log1p(np.exp(-y * x)), reduction),
           lambda m: [Sample((m.t((2, 3)), _sign_target(m, (2, 3))), desc="mean")],
           TF("soft_margin_loss")),
    OpInfo("F.cosine_embedding_loss", F.cosine_embedding_loss,
           lambda a, b, y, margin=0.0, reduction="mean": _reduce(np.where(
               y == 1, 1 - _np_cos_sim(a, b, -1), np.maximum(0, _np_cos_sim(a, b, -1) - margin)),
               reduction),
           lambda m: [Sample((m.t((4, 3)), m.t((4, 3)), Arg(np.array([1.0, -1, 1, -1]).astype(
               m.dtype), False)), {"margin": -0.9}, "mixed")], TF("cosine_embedding_loss")),
    OpInfo("F.triplet_margin_loss", F.triplet_margin_loss,
           lambda a, p, n, margin=1.0, reduction="mean": _reduce(np.maximum(
               _np_pdist(a, p) - _np_pdist(a, n) + margin, 0), reduction),
           lambda m: [Sample((m.t((4, 3)), m.t((4, 3)), m.t((4, 3))), {"margin": 5.0}, "mean")],
           TF("triplet_margin_loss")),
    OpInfo("F.poisson_nll_loss", F.poisson_nll_loss,
           lambda x, t, log_input=True, reduction="mean": _reduce(
               np.exp(x) - t * x if log_input else x - t * np.log(x + 1e-8), reduction),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 3), 0.0, 3.0, grad=False)), desc="log input"),
                      Sample((m.t((2, 3), 0.5, 2.0), m.t((2, 3), 0.0, 3.0, grad=False)),
                             {"log_input": False}, "rates")], TF("poisson_nll_loss")),
    OpInfo("F.multilabel_soft_margin_loss", F.multilabel_soft_margin_loss,
           lambda x, t, reduction="mean": _reduce(-(t * np.log(_sigmoid(x)) + (1 - t) * np.log(
               _sigmoid(-x))).mean(-1), reduction),
           lambda m: [Sample((m.t((3, 4)), Arg((m.rng.random((3, 4)) < 0.5).astype(m.dtype),
                                                False)), desc="mean")],
           TF("multilabel_soft_margin_loss")),
)


def _np_cumprod_rows(m: Maker):
    return [Sample((m.t((5,), 0.5, 1.5),), {"dim": 0}, "1-D"),
            Sample((m.t((2, 4)),), {"dim": 1}, "2-D, signs"),
            Sample((m.values([[2.0, 0.0, 3.0], [1.0, 2.0, 0.0]]),), {"dim": 1}, "zeros")]


add(
    OpInfo("broadcast_tensors", lambda *t: chainrule.broadcast_tensors(*t),
           lambda *t: tuple(np.broadcast_arrays(*t)),
           lambda m: [Sample((m.t((3, 1)), m.t((2,)), m.t(())), desc="three")],
           T("broadcast_tensors"), dtypes=ALL),
    OpInfo("meshgrid", lambda *t, indexing="ij": chainrule.meshgrid(*t, indexing=indexing),
           lambda *t, indexing="ij": tuple(np.meshgrid(*t, indexing=indexing)),
           lambda m: [Sample((m.t((2,)), m.t((3,))), {"indexing": "ij"}, "ij"),
                      Sample((m.t((2,)), m.t((3,)), m.t((4,))), {"indexing": "xy"}, "xy")],
           lambda tm, *t, indexing="ij": tm.meshgrid(*t, indexing=indexing), dtypes=ALL),
    OpInfo("cartesian_prod", lambda *t: chainrule.cartesian_prod(*t),
           lambda *t: np.stack([g.reshape(-1) for g in np.meshgrid(*t, indexing="ij")], 1),
           lambda m: [Sample((m.t((2,)), m.t((3,))), desc="two")],
           T("cartesian_prod"), dtypes=NUMERIC),
    OpInfo("std_mean", chainrule.std_mean,
           lambda x, dim=None, keepdim=False: (np.std(x, axis=dim, ddof=1, keepdims=keepdim),
                                               np.mean(x, axis=dim, keepdims=keepdim)),
           lambda m: [Sample((m.t((3, 4)),), {"dim": 1}, "dim 1"),
                      Sample((m.t((3, 4)),), {}, "all")], T("std_mean")),
    OpInfo("tensordot", chainrule.tensordot, lambda a, b, dims=2: np.tensordot(a, b, axes=dims),
           lambda m: [Sample((m.t((2, 3, 4)), m.t((3, 4, 2))), desc="dims=2"),
                      Sample((m.t((2, 3)), m.t((3, 2))), {"dims": ([1], [0])}, "pairs")],
           T("tensordot")),
    OpInfo("kron", chainrule.kron, np.kron,
           lambda m: [Sample((m.t((2, 3)), m.t((2, 2))), desc="2-D"),
                      Sample((m.t((3,)), m.t((2, 2))), desc="mixed ranks")],
           T("kron"), dtypes=NUMERIC, method="kron"),
    OpInfo("cross", chainrule.cross, lambda a, b, dim=-1: np.cross(a, b, axis=dim),
           lambda m: [Sample((m.t((4, 3)), m.t((4, 3))), {"dim": 1}, "rows"),
                      Sample((m.t((3, 2)), m.t((3, 1))), {"dim": 0}, "broadcast")],
           T("cross"), method="cross"),
    OpInfo("rot90", chainrule.rot90, lambda x, k=1, dims=(0, 1): np.rot90(x, k, dims),
           lambda m: [Sample((m.t((2, 3)),), {"k": k}, f"k={k}") for k in (1, 2, 3, -1)]
           + [Sample((m.t((2, 3, 4)),), {"dims": (2, 0)}, "dims (2, 0)")],
           T("rot90"), dtypes=ALL, method="rot90"),
    OpInfo("cumprod", chainrule.cumprod, lambda x, dim: np.cumprod(x, axis=dim),
           _np_cumprod_rows, T("cumprod"), dtypes=NUMERIC, method="cumprod"),
    OpInfo("cdist", chainrule.cdist,
           lambda a, b, p=2.0: np.linalg.norm(a[..., :, None, :] - b[..., None, :, :], ord=p,
                                              axis=-1),
           lambda m: [Sample((m.t((3, 2)), m.t((4, 2))), desc="p=2"),
                      Sample((m.t((2, 3, 2)), m.t((2, 2, 2))), {"p": 1.5}, "batched p=1.5")],
           T("cdist")),
    OpInfo("frac", chainrule.frac, lambda x: x - np.trunc(x), unary(kinks=KINKS_INT, away=0.1),
           T("frac"), method="frac"),
    OpInfo("bincount", chainrule.bincount,
           lambda x, minlength=0: np.bincount(x, minlength=minlength),
           lambda m: [Sample((m.values([0, 3, 3, 1]),), {"minlength": 6}, "minlength")],
           T("bincount"), dtypes=INTS, grad=False),
    OpInfo("histc", chainrule.histc,
           lambda x, bins, min, max: np.histogram(x, bins, (min, max))[0].astype(x.dtype),
           lambda m: [Sample((m.t((20,)),), {"bins": 4, "min": -2.0, "max": 2.0}, "range")],
           T("histc"), method="histc", grad=False),
    OpInfo("searchsorted", chainrule.searchsorted,
           lambda s, v, right=False: np.searchsorted(s, v, side="right" if right else "left"),
           lambda m: [Sample((m.values([1, 3, 5, 7]), m.values([0, 3, 8])), {}, "left"),
                      Sample((m.values([1, 3, 5, 7]), m.values([0, 3, 8])), {"right": True},
                             "right")],
           T("searchsorted"), dtypes=NUMERIC, grad=False),
    OpInfo("bucketize", chainrule.bucketize,
           lambda v, b, right=False: np.searchsorted(b, v, side="right" if right else "left"),
           lambda m: [Sample((m.values([0, 3, 8]), m.values([1, 3, 5])), {}, "left")],
           T("bucketize"), dtypes=NUMERIC, grad=False),
)


def _np_pixel_shuffle(x, r):
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c // (r * r), r, r, h, w)
    n = len(lead)
    return y.transpose(*range(n), n, n + 3, n + 1, n + 4, n + 2).reshape(
        *lead, c // (r * r), h * r, w * r)


def _np_pixel_unshuffle(x, r):
    *lead, c, h, w = x.shape
    y = x.reshape(*lead, c, h // r, r, w // r, r)
    n = len(lead)
    return y.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3).reshape(
        *lead, c * r * r, h // r, w // r)


add(
    OpInfo("F.softmin", F.softmin, lambda x, dim: _np_softmax(-x, dim),
           lambda m: [Sample((m.t((2, 3)),), {"dim": d}, f"dim={d}") for d in (0, -1)],
           TF("softmin")),
    OpInfo("F.pixel_shuffle", F.pixel_shuffle, _np_pixel_shuffle,
           lambda m: [Sample((m.t((2, 8, 2, 3)), 2), desc="batched"),
                      Sample((m.t((9, 1, 2)), 3), desc="unbatched")],
           TF("pixel_shuffle"), dtypes=ALL),
    OpInfo("F.pixel_unshuffle", F.pixel_unshuffle, _np_pixel_unshuffle,
           lambda m: [Sample((m.t((2, 2, 4, 6)), 2), desc="batched")],
           TF("pixel_unshuffle"), dtypes=ALL),
)


def _np_adaptive_max(x, out):
    nd = len(out)
    lead = x.shape[:x.ndim - nd]
    res = np.empty(lead + tuple(out), x.dtype)
    for cell in np.ndindex(*out):
        sl = tuple(slice((i * n) // o, -((-(i + 1) * n) // o))
                   for i, n, o in zip(cell, x.shape[x.ndim - nd:], out))
        res[(Ellipsis,) + cell] = x[(Ellipsis,) + sl].max(axis=tuple(range(-nd, 0)))
    return res


add(
    OpInfo("F.adaptive_max_pool1d", F.adaptive_max_pool1d,
           lambda x, o: _np_adaptive_max(x, (o,)),
           lambda m: [Sample((m.t((2, 3, 7), distinct=True), 3), desc="7 -> 3")],
           TF("adaptive_max_pool1d")),
    OpInfo("F.adaptive_max_pool2d", F.adaptive_max_pool2d,
           lambda x, o: _np_adaptive_max(x, o),
           lambda m: [Sample((m.t((1, 2, 5, 4), distinct=True), (2, 3)), desc="(5, 4) -> (2, 3)"),
                      Sample((m.t((2, 4, 3), distinct=True), (1, 1)), desc="unbatched global")],
           TF("adaptive_max_pool2d")),
    OpInfo("F.gaussian_nll_loss", F.gaussian_nll_loss,
           lambda x, t, v, full=False, reduction="mean": _reduce(
               0.5 * (np.log(v) + (x - t) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0),
               reduction),
           lambda m: [Sample((m.t((3, 2)), m.t((3, 2), grad=False), m.t((3, 2), 0.5, 2.0)),
                             desc="heteroscedastic"),
                      Sample((m.t((3, 2)), m.t((3, 2), grad=False), m.t((3, 1), 0.5, 2.0)),
                             {"full": True, "reduction": "sum"}, "shared var, full")],
           TF("gaussian_nll_loss")),
)


def _np_interp_linear(x, size=None, scale_factor=None, mode="linear", align_corners=None):
    """Separable linear interpolation by PyTorch's source-index rule, one point at a time."""
    nd = x.ndim - 2
    outs = (size,) * nd if isinstance(size, int) else size
    sfs = (scale_factor,) * nd if not isinstance(scale_factor, (tuple, list)) else scale_factor
    if outs is None:
        outs = tuple(int(np.floor(n * f)) for n, f in zip(x.shape[2:], sfs))
    y = x
    for d in range(nd):
        n, o = y.shape[2 + d], outs[d]
        cols = []
        for i in range(o):
            if align_corners:
                src = i * (n - 1) / (o - 1) if o > 1 else 0.0
            else:
                scale = 1.0 / sfs[d] if scale_factor is not None else n / o
                src = max((i + 0.5) * scale - 0.5, 0.0)
            i0 = min(int(np.floor(src)), n - 1)
            i1, w = min(i0 + 1, n - 1), src - i0
            cols.append(np.take(y, i0, axis=2 + d) * (1 - w) + np.take(y, i1, axis=2 + d) * w)
        y = np.stack(cols, axis=2 + d)
    return y


add(
    OpInfo("F.interpolate_linear", F.interpolate, _np_interp_linear,
           lambda m: [Sample((m.t((1, 2, 5)),), {"size": 8, "mode": "linear"}, "linear up"),
                      Sample((m.t((2, 1, 4, 3)),), {"size": (3, 5), "mode": "bilinear",
                                                     "align_corners": True}, "bilinear corners"),
                      Sample((m.t((1, 1, 3, 4)),), {"scale_factor": 1.5, "mode": "bilinear"},
                             "bilinear scale"),
                      Sample((m.t((1, 1, 2, 3, 2)),), {"size": (3, 2, 4), "mode": "trilinear"},
                             "trilinear")],
           TF("interpolate")),
)


# ---------------------------------------------------------------- the rest of chainrule.ops
for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    add(OpInfo(_name, getattr(chainrule, _name), getattr(np, _name),
               binary(shapes=BINARY_SHAPES[:5]), T(_name), dtypes=INTS + ("bool",), grad=False,
               method=_name))
for _name in ("logical_and", "logical_or", "logical_xor"):
    add(OpInfo(_name, getattr(chainrule, _name), getattr(np, _name),
               binary(shapes=BINARY_SHAPES[:5]), T(_name), dtypes=ALL, grad=False,
               method=_name))
add(OpInfo("bitwise_not", chainrule.bitwise_not, np.invert, unary(), T("bitwise_not"),
           dtypes=INTS + ("bool",), grad=False, method="bitwise_not"),
    OpInfo("logical_not", chainrule.logical_not, np.logical_not, unary(), T("logical_not"),
           dtypes=ALL, grad=False, method="logical_not"))


def _nonfinite(m: Maker):
    x = m.t((2, 3)).array.copy()
    x[0, 1], x[1, 2], x[0, 0] = np.nan, np.inf, -np.inf
    return [Sample((Arg(x, False),), desc="nan, inf"), Sample((m.t((4,)),), desc="finite")]


for _name in ("isnan", "isinf", "isfinite"):
    add(OpInfo(_name, getattr(chainrule, _name), getattr(np, _name), _nonfinite, T(_name),
               grad=False, method=_name))
add(OpInfo("all", chainrule.all, lambda x, dim=None, keepdim=False: np.all(
               x, axis=dim, keepdims=keepdim),
           lambda m: [Sample((m.mask((2, 3)),), desc="all"),
                      Sample((m.mask((2, 3)), 1), desc="dim 1"),
                      Sample((Arg(np.ones((2, 3), bool), False), 0, True), desc="keepdim")],
           T("all"), dtypes=("bool",), grad=False, method="all"),
    OpInfo("any", chainrule.any, lambda x, dim=None, keepdim=False: np.any(
               x, axis=dim, keepdims=keepdim),
           lambda m: [Sample((m.mask((2, 3)),), desc="all"),
                      Sample((m.mask((2, 3)), 1), desc="dim 1"),
                      Sample((Arg(np.zeros((2, 3), bool), False), 0, True), desc="keepdim")],
           T("any"), dtypes=("bool",), grad=False, method="any"),
    # allclose and equal answer a Python bool: the rows wrap it in a tensor
    OpInfo("allclose", lambda a, b: chainrule.tensor(chainrule.allclose(a, b)),
           lambda a, b: np.asarray(np.allclose(a, b)),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 3))), desc="apart"),
                      Sample((m.values([1.0, 2.0]), m.values([1.0, 2.0 + 1e-9])), desc="close")],
           lambda tm, a, b: tm.tensor(tm.allclose(a, b)), grad=False),
    OpInfo("equal", lambda a, b: chainrule.tensor(chainrule.equal(a, b)),
           lambda a, b: np.asarray(a.shape == b.shape and bool((a == b).all())),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 3))), desc="differ"),
                      Sample((m.values([1.0, 2.0]), m.values([1.0, 2.0])), desc="same")],
           lambda tm, a, b: tm.tensor(tm.equal(a, b)), grad=False),
    OpInfo("clone", chainrule.clone, np.copy, unary(), T("clone"), dtypes=ALL),
    OpInfo("to_device", lambda x: chainrule.to_device(x, "cpu"), np.copy, unary(),
           lambda tm, x: x.to("cpu")),
    OpInfo("cast", lambda x: chainrule.cast(x, chainrule.float64), lambda x: x, unary(),
           lambda tm, x: x.to(tm.float64), keeps_float_dtype=False),
    OpInfo("zeros_like", chainrule.zeros_like, np.zeros_like, unary(), T("zeros_like"),
           dtypes=ALL, grad=False),
    OpInfo("ones_like", chainrule.ones_like, np.ones_like, unary(), T("ones_like"),
           dtypes=ALL, grad=False),
    OpInfo("full_like", chainrule.full_like, np.full_like,
           lambda m: [Sample((m.t((2, 3)), 1.5), desc="(2, 3)")], T("full_like"), grad=False),
    OpInfo("concat", lambda *ts, dim=0: chainrule.concat(list(ts), dim),
           lambda *ts, dim=0: np.concatenate(ts, axis=dim),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 1))), {"dim": 1}, "dim 1")],
           lambda tm, *ts, dim=0: tm.concat(list(ts), dim)),
    OpInfo("concatenate", lambda *ts, axis=0: chainrule.concatenate(list(ts), axis),
           lambda *ts, axis=0: np.concatenate(ts, axis=axis),
           lambda m: [Sample((m.t((1, 3)), m.t((2, 3))), {}, "axis 0")],
           lambda tm, *ts, axis=0: tm.concatenate(list(ts), axis)),
    OpInfo("hstack", lambda *ts: chainrule.hstack(list(ts)), lambda *ts: np.hstack(ts),
           lambda m: [Sample((m.t((2, 3)), m.t((2, 1))), desc="2-D"),
                      Sample((m.t((3,)), m.t((2,))), desc="1-D")],
           lambda tm, *ts: tm.hstack(list(ts))),
    OpInfo("vstack", lambda *ts: chainrule.vstack(list(ts)), lambda *ts: np.vstack(ts),
           lambda m: [Sample((m.t((2, 3)), m.t((1, 3))), desc="2-D"),
                      Sample((m.t((3,)), m.t((3,))), desc="1-D")],
           lambda tm, *ts: tm.vstack(list(ts))),
    OpInfo("expand_as", chainrule.expand_as, lambda x, o: np.broadcast_to(x, o.shape),
           lambda m: [Sample((m.t((3, 1)), m.t((2, 3, 4), grad=False)), desc="(3,1)->(2,3,4)")],
           lambda tm, x, o: x.expand_as(o), method="expand_as"),
    OpInfo("reshape_as", chainrule.reshape_as, lambda x, o: np.reshape(x, o.shape),
           lambda m: [Sample((m.t((2, 3)), m.t((3, 2), grad=False)), desc="(2,3)->(3,2)")],
           lambda tm, x, o: x.reshape_as(o), method="reshape_as"),
    OpInfo("view_as", chainrule.view_as, lambda x, o: np.reshape(x, o.shape),
           lambda m: [Sample((m.t((2, 3)), m.t((6,), grad=False)), desc="(2,3)->(6,)")],
           lambda tm, x, o: x.view_as(o), method="view_as"),
    OpInfo("unflatten", chainrule.unflatten, lambda x, d, s: np.reshape(
               x, x.shape[:d % x.ndim] + tuple(s) + x.shape[d % x.ndim + 1:]),
           lambda m: [Sample((m.t((2, 6)), 1, (2, 3)), desc="dim 1"),
                      Sample((m.t((6, 2)), 0, (3, -1)), desc="-1")],
           lambda tm, x, d, s: tm.unflatten(x, d, s), method="unflatten"),
    OpInfo("take_along_dim", chainrule.take_along_dim,
           lambda x, i, d: np.take_along_axis(x, i, axis=d),
           lambda m: [Sample((m.t((3, 4)), m.index((3, 2), 4), 1), desc="dim 1")],
           T("take_along_dim"), method="take_along_dim"),
    OpInfo("var_mean", chainrule.var_mean,
           lambda x, dim=None: (np.var(x, axis=dim, ddof=1), np.mean(x, axis=dim)),
           lambda m: [Sample((m.t((3, 4)),), desc="all"), Sample((m.t((3, 4)), 1), desc="dim")],
           T("var_mean")),
)

NO_ROW = {
    **dict.fromkeys("""arange as_tensor empty empty_like eye from_numpy full linspace ones
        rand rand_like randint randn randn_like randperm zeros""".split(),
                    "a factory (no differentiable input); tested in tests/test_tensor.py"),
    **dict.fromkeys("broadcast_shapes normalize_dim normalize_dims".split(),
                    "an argument helper on shapes and dims, not an op on tensors"),
    **dict.fromkeys("bernoulli multinomial normal".split(),
                    "a random sampler (no gradient, no reference to compare draws with); "
                    "tested in tests/test_compat_tensor.py (seeding, distribution, shapes and "
                    "dtypes against PyTorch, errors)"),
    **dict.fromkeys("can_cast promote_types result_type".split(),
                    "a dtype helper (dtypes in, a dtype or bool out); tested against PyTorch "
                    "in tests/test_compat_tensor.py"),
    "numel": "a shape query returning a Python int (rows hold tensor results); tested "
             "against PyTorch in tests/test_compat_tensor.py",
    "from_dlpack": "a factory (wraps another library's array); tested in tests/test_dlpack.py",
}
"""Public names of chainrule.ops that have no row, each with the reason; every other public op
must have one (test_ops.test_every_public_op_has_a_row)."""

# every op the foundation issue lists (its "Ops" paragraph, the nn.functional list, the
# operators); test_ops checks that each has a row (by row name or method name)
ISSUE_OPS = """abs neg exp log log1p expm1 sqrt rsqrt sin cos tanh sigmoid relu sign floor ceil
    round clamp clip maximum minimum where pow sum mean var std prod max min amax amin argmax argmin
    logsumexp softmax log_softmax cumsum norm reshape view flatten squeeze unsqueeze transpose
    permute expand broadcast_to repeat cat stack split chunk flip gather index_select
    masked_fill tril triu matmul einsum outer T mT
    F.pad F.linear F.relu F.leaky_relu F.elu F.gelu F.silu F.softplus F.sigmoid F.tanh
    F.softmax F.log_softmax F.one_hot F.mse_loss F.cross_entropy F.nll_loss
    F.binary_cross_entropy F.binary_cross_entropy_with_logits F.layer_norm
    __add__ __sub__ __mul__ __truediv__ __floordiv__ __mod__ __pow__ __matmul__ __neg__
    __abs__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__
    getitem_int getitem_slice getitem_none getitem_ellipsis getitem_int_tensor
    getitem_bool_mask getitem_mixed_tensor_slice setitem_int setitem_slice setitem_int_tensor
    setitem_bool_mask setitem_mixed""".split()


def rows(flag: str | None = None) -> list[OpInfo]:
    """Rows with ``flag`` set (all rows for None), e.g. ``rows("grad")``."""
    return [r for r in OP_TABLE if flag is None or getattr(r, flag)]


def dtype_params(flag: str | None = None) -> list[tuple[OpInfo, str]]:
    """(row, dtype) pairs for the forward tests."""
    return [(r, d) for r in rows(flag) for d in r.dtypes]


def samples(row: OpInfo, dtype: str, seed: int = 0) -> list[Sample]:
    """The row's samples in ``dtype`` (deterministic for a seed)."""
    return list(row.samples(Maker(dtype, seed)))


# ================================================================ materialising samples
def _convert(sample: Sample, conv):
    return (tuple(conv(a) for a in sample.args),
            {k: conv(v) for k, v in sample.kwargs.items()})


def chainrule_call(sample: Sample, requires_grad: bool = True, device=None):
    """(args, kwargs, grad_inputs): chainrule tensors (on ``device``) for the Args; float Args
    marked ``grad`` require grad when ``requires_grad``."""
    grads = []

    def conv(a):
        if not isinstance(a, Arg):
            return a
        t = chainrule.tensor(a.array, device=device)
        if requires_grad and a.grad and a.array.dtype.kind == "f":
            t.requires_grad_()
            grads.append(t)
        return t

    args, kwargs = _convert(sample, conv)
    return args, kwargs, grads


def numpy_call(sample: Sample, upcast: bool = True):
    """(args, kwargs) for the NumPy reference; float arrays upcast to float64."""
    def conv(a):
        if not isinstance(a, Arg):
            return a
        x = a.array.copy()
        return x.astype(np.float64) if upcast and x.dtype.kind == "f" else x

    return _convert(sample, conv)


def torch_call(sample: Sample, torch, requires_grad: bool = True):
    """(args, kwargs, grad_inputs) for PyTorch, mirroring :func:`chainrule_call`."""
    grads = []

    def conv(a):
        if not isinstance(a, Arg):
            return a
        t = torch.from_numpy(a.array.copy())
        if requires_grad and a.grad and a.array.dtype.kind == "f":
            t.requires_grad_()
            grads.append(t)
        return t

    args, kwargs = _convert(sample, conv)
    return args, kwargs, grads


def outputs(out) -> list:
    """A result (tensor, array, scalar, tuple or namedtuple of them) as a flat list."""
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in outputs(x)]
    return [out]


# ================================================================ primitive samples
# The transform tests (tests/func/test_func_primitives.py: jvp against finite differences and
# vjp, vmap against a loop, batched rules) run on each primitive directly. Every primitive in
# REGISTRY has samples here: a row's ``prim=`` gives them for the primitive its op wraps (see
# OpInfo.prim, derived at the end of this file); PS rows below give the others, with the
# parameters and call conventions that only the primitive has.


def joined(outs):
    """The outputs of a multi-output primitive, flattened and concatenated."""
    return chainrule.cat([o.reshape(-1) for o in outs])


@dataclass
class PS:
    """Samples of one primitive for the transform tests.

    ``make(rng)`` draws the inputs (NumPy arrays become tensors; Python scalars stay scalars)
    with fixed shapes and the sample's domain constraints (positive for log, away from kinks
    and ties, valid indices); it is called once per example when building vmap batches, so it
    must keep shapes fixed. ``call`` applies the primitive (default:
    ``REGISTRY[name](*inputs, **params)``). Index arrays are integer inputs (not
    differentiated; vmap batches them as any other input).
    """

    name: str
    make: Callable
    params: dict = field(default_factory=dict)
    call: Callable | None = None
    desc: str = ""
    nodiff: tuple = ()  # float inputs that are not differentiated (e.g. masks given as floats)
    rtol: float = 1e-6  # finite differences vs forward mode
    eps: float = 1e-6  # finite-difference step
    vmap: bool = True  # False for primitives that refuse vmap (in-place optimiser updates)
    fast: tuple = ()  # the fast-path kernels these samples reach (see OpInfo.fast)

    def __post_init__(self):
        if self.call is None:
            name, params = self.name, self.params
            if getattr(REGISTRY.get(name), "multi", False):
                # several outputs: joined flat, so the transform tests (random directions
                # over the joined result) check the rules of every output at once
                self.call = lambda *xs: joined(REGISTRY[name](*xs, **params))
            else:
                self.call = lambda *xs: REGISTRY[name](*xs, **params)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}" if self.desc else self.name

    def diff_indices(self, arrays) -> list:
        return [i for i, a in enumerate(arrays)
                if isinstance(a, np.ndarray) and a.dtype.kind == "f" and i not in self.nodiff]


P = REGISTRY


def N(*shape):
    return lambda r: r.standard_normal(shape)


def pos(*shape, lo=0.5, hi=2.0):
    return lambda r: r.uniform(lo, hi, shape)


def away(*shape, gap=0.2):
    """Normal values kept at least ``gap`` away from zero."""
    def f(r):
        x = r.standard_normal(shape)
        return np.where(np.abs(x) < gap, np.sign(x + 1e-9) * (gap + r.uniform(0, 0.5, shape)), x)
    return f


def frac(*shape, lo=0.2, hi=0.8):
    """k + u with integer k and u in (lo, hi): away from integers."""
    return lambda r: r.integers(-3, 3, shape) + r.uniform(lo, hi, shape)


def ints(*shape, lo=0, hi=4, dtype=np.int64):
    return lambda r: r.integers(lo, hi, shape).astype(dtype)


def bools(*shape):
    return lambda r: r.random(shape) > 0.5


def distinct(*shape):
    """Values with no ties (a permutation, scaled and shifted)."""
    n = int(np.prod(shape)) if shape else 1
    return lambda r: (r.permutation(n).reshape(shape) * 0.37 - n * 0.1 + r.uniform(0, 0.05))


def args(*makers):
    return lambda r: [m(r) if callable(m) else m for m in makers]


def pair_apart(*shape):
    """(x, y) with |x - y| >= 0.2 everywhere (no ties for max/min)."""
    def f(r):
        x = r.standard_normal(shape)
        d = away(*shape)(r)
        return [x, x + d]
    return f


PRIM_SAMPLES: list[PS] = []


def add_prim(*rows: PS) -> None:
    # primitives come and go while the table grows: rows for unregistered names are dropped
    # (the coverage test checks the other direction: every registered primitive has rows)
    PRIM_SAMPLES.extend(r for r in rows if r.name in REGISTRY)


# ---------------------------------------------------------------- unary, smooth
for _n in ("neg", "exp", "expm1", "sin", "cos", "tanh", "sigmoid", "erf"):
    add_prim(PS(_n, args(N(2, 3)), desc="2x3"), PS(_n, args(N()), desc="0d"))
add_prim(PS("gelu", args(N(2, 3))), PS("gelu", args(N(4)), desc="vec"),
    PS("gelu_backward", args(N(2, 3), N(2, 3)),
       call=lambda g, x: P["gelu_backward"](g, x, P["gelu"](x))),
    PS("gelu_backward", args(N(3), N(2, 3)),
       call=lambda g, x: P["gelu_backward"](g, x, P["gelu"](x)), desc="bcast"))
for _n in ("log", "log1p", "sqrt"):
    add_prim(PS(_n, args(pos(2, 3))), PS(_n, args(pos(4)), desc="vec"))
add_prim(PS("relu", args(away(2, 3))), PS("abs", args(away(2, 3))), PS("sign", args(away(3, 2))))
add_prim(PS("floor", args(frac(2, 3))), PS("ceil", args(frac(2, 3))),
    PS("round", args(lambda r: r.integers(-3, 3, (2, 3)) + r.uniform(-0.3, 0.3, (2, 3))),
       params={"decimals": 0}),
    PS("round", args(lambda r: r.integers(-30, 30, (3,)) / 10 + r.uniform(-0.03, 0.03, 3)),
       params={"decimals": 1}, desc="decimals"))

# ---------------------------------------------------------------- binary
for _n in ("add", "sub", "mul"):
    add_prim(PS(_n, args(N(2, 3), N(2, 3))), PS(_n, args(N(2, 3), N(3)), desc="bcast"),
        PS(_n, args(N(2, 1, 3), N(4, 1)), desc="bcast2"), PS(_n, args(N(3), 2.5), desc="scalar"))
add_prim(PS("div", args(N(2, 3), away(2, 3))), PS("div", args(N(2, 3), away(3)), desc="bcast"),
    PS("div", args(1.5, away(3)), desc="scalar"))
add_prim(PS("pow", args(pos(2, 3), N(2, 3))), PS("pow", args(pos(3), 3), desc="int-exp"),
    PS("pow", args(2.0, N(3)), desc="scalar-base"),
    PS("pow", args(pos(2, 3), N(3)), desc="bcast"))
add_prim(PS("maximum", pair_apart(2, 3)), PS("minimum", pair_apart(2, 3)),
    PS("maximum", args(away(2, 3), 0.0), desc="scalar"))


def _remainder_args(r):
    y = r.uniform(1.0, 2.0, (2, 3))
    return [y * (r.integers(-2, 3, (2, 3)) + r.uniform(0.2, 0.8, (2, 3))), y]


add_prim(PS("remainder", _remainder_args), PS("floor_divide", _remainder_args))
add_prim(PS("where", args(bools(2, 3), N(2, 3), N(3))),
    PS("where", args(bools(3), N(2, 3), 0.0), desc="scalar"))

# ---------------------------------------------------------------- not differentiable
for _n in ("eq", "ne", "lt", "le", "gt", "ge"):
    add_prim(PS(_n, lambda r: [np.round(r.standard_normal((2, 3))),
                               np.round(r.standard_normal(3))]))
for _n in ("logical_and", "logical_or", "logical_xor"):
    add_prim(PS(_n, args(bools(2, 3), bools(3))))
add_prim(PS("logical_not", args(bools(2, 3))), PS("bitwise_not", args(ints(2, 3, lo=-5, hi=5))))
for _n in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    add_prim(PS(_n, args(ints(2, 3, lo=-8, hi=8), ints(3, lo=-8, hi=8))))


def _specials(r):
    x = r.standard_normal((2, 3))
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    return [x]


for _n in ("isnan", "isinf", "isfinite"):
    add_prim(PS(_n, _specials))
add_prim(PS("zeros_like", args(N(2, 3))), PS("ones_like", args(N(2, 3))))
add_prim(PS("argmax", args(distinct(3, 4)), params={"axis": 1, "keepdims": False}),
    PS("argmax", args(distinct(3, 4)), params={"axis": None, "keepdims": False}, desc="all"),
    PS("argmin", args(distinct(3, 4)), params={"axis": 0, "keepdims": True}, desc="keep"),
    PS("argmin", args(distinct(2, 3)), params={"axis": None, "keepdims": True}, desc="allkeep"))

# ---------------------------------------------------------------- dtype and device
add_prim(PS("cast", args(N(2, 3)), params={"dtype": chainrule.float32}, desc="f32", rtol=1e-4,
       eps=1e-2),
    PS("cast", args(ints(2, 3)), params={"dtype": chainrule.float64}, desc="int"),
    PS("cast", args(N(3)), params={"dtype": chainrule.float64}, desc="same"),
    PS("to_device", args(N(2, 3)), params={"device": Device("cpu"), "source": Device("cpu")}),
    PS("copy", args(N(2, 3))))

# ---------------------------------------------------------------- linear algebra
add_prim(PS("matmul", args(N(2, 3), N(3, 4))),
    PS("matmul", args(N(2, 2, 3), N(3, 4)), desc="batched"),
    PS("matmul", args(N(1, 2, 3), N(2, 3, 4)), desc="bcast"),
    PS("einsum", args(N(2, 3), N(3, 4)), params={"equation": "ij,jk->ik"}),
    PS("einsum", args(N(2, 3, 4), N(2, 4)), params={"equation": "bij,bj->bi"}, desc="batch"),
    PS("einsum", args(N(2, 3), N(3, 4), N(4)), params={"equation": "ij,jk,k->i"}, desc="3ops"),
    PS("einsum", args(N(2, 3)), params={"equation": "ij->j"}, desc="sum"))

# ---------------------------------------------------------------- movement
add_prim(PS("reshape", args(N(2, 3)), params={"shape": (3, 2)}),
    PS("reshape", args(N()), params={"shape": (1, 1)}, desc="0d"),
    PS("permute", args(N(2, 3, 4)), params={"axes": (2, 0, 1)}),
    PS("broadcast_to", args(N(3)), params={"shape": (2, 3)}),
    PS("broadcast_to", args(N(2, 1)), params={"shape": (4, 2, 3)}, desc="lead"),
    PS("sum_to", args(N(2, 3)), params={"shape": (3,)}),
    PS("sum_to", args(N(4, 2, 3)), params={"shape": (1, 3)}, desc="keep"),
    PS("sum_to", args(N(2, 3)), params={"shape": (2, 3)}, desc="same"),
    PS("flip", args(N(2, 3)), params={"axes": (1,)}),
    PS("flip", args(N(2, 3, 2)), params={"axes": (0, 2)}, desc="two"),
    PS("pad", args(N(2, 3)), params={"widths": ((1, 0), (0, 2)), "value": 0.0}),
    PS("pad", args(N(3)), params={"widths": ((2, 1),), "value": 1.5}, desc="value"),
    PS("concatenate", args(N(2, 3), N(2, 1)), params={"axis": 1}),
    PS("concatenate", args(N(1, 2), N(2, 2), N(3, 2)), params={"axis": 0}, desc="three"))


A0, A1 = IndexArg(0), IndexArg(1)  # the places of index inputs 0 and 1 in an index template

add_prim(PS("getitem", args(N(3, 4)), params={"index": (slice(0, 2), 1)}, desc="basic"),
    PS("getitem", args(N(3, 4)), params={"index": (Ellipsis, None, slice(1, 3))}, desc="none"),
    PS("getitem", args(N(3, 4), ints(2, hi=3)), params={"index": (A0,)}, desc="adv0"),
    PS("getitem", args(N(3, 4), ints(3, lo=-3, hi=3)), params={"index": (A0,)},
       desc="adv-negative"),
    PS("getitem", args(N(3, 4, 5), ints(2, 2, hi=4)), params={"index": (slice(None), A0)},
       desc="adv-mid"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=3), ints(2, hi=5)),
       params={"index": (A0, slice(None), A1)}, desc="adv-split"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=5)), params={"index": (1, slice(None), A0)},
       desc="int-adv"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=4), ints(2, hi=5)),
       params={"index": (slice(1, 3), A0, A1)}, desc="adv-pair"),
    PS("getitem", args(N(3, 4), ints(2, 1, hi=3), ints(3, hi=4)), params={"index": (A0, A1)},
       desc="adv-broadcast"))

add_prim(PS("scatter_to", args(N(2)), params={"shape": (3, 4), "index": (slice(0, 2), 1)},
       desc="basic"),
    PS("scatter_to", args(N(4, 4), ints(4, hi=3)), params={"shape": (3, 4), "index": (A0,)},
       desc="adv-repeat"),
    PS("scatter_to", args(N(5, 4), ints(5, lo=-3, hi=3)),
       params={"shape": (3, 4), "index": (A0,)}, desc="adv-negative-repeat"),
    PS("scatter_to", args(N(3, 2, 2, 5), ints(2, 2, hi=4)),
       params={"shape": (3, 4, 5), "index": (slice(None), A0)}, desc="adv-mid"),
    PS("scatter_to", args(N(2, 4), ints(2, hi=3), ints(2, hi=5)),
       params={"shape": (3, 4, 5), "index": (A0, slice(None), A1)}, desc="adv-split"))


def _distinct_rows(n, hi, lo=0):
    return lambda r: (r.permutation(hi - lo)[:n] + lo).astype(np.int64)


add_prim(PS("index_put", args(N(3, 4), N(2)), params={"index": (slice(0, 2), 1)}, desc="basic"),
    PS("index_put", args(N(3, 4), N(4)), params={"index": (1,)}, desc="row-bcast"),
    PS("index_put", args(N(3, 4), N(2, 4), _distinct_rows(2, 3)), params={"index": (A0,)},
       desc="adv"),
    PS("index_put", args(N(3, 4), N(2, 4), _distinct_rows(2, 0, lo=-3)),
       params={"index": (A0,)}, desc="adv-negative"),
    PS("index_put", args(N(3, 4, 5), N(2, 4), _distinct_rows(2, 3), _distinct_rows(2, 5)),
       params={"index": (A0, slice(None), A1)}, desc="adv-split"),
    PS("index_put", lambda r: [r.standard_normal((3, 4)), 0.0],
       params={"index": (slice(None), 2)}, desc="scalar"))

add_prim(PS("gather", args(N(3, 4), ints(3, 2)), params={"axis": 1}),
    PS("gather", args(N(4, 3), ints(2, 3)), params={"axis": 0}, desc="axis0"),
    PS("scatter_add", args(N(3, 2), ints(3, 2)), params={"shape": (3, 4), "axis": 1}))

# ---------------------------------------------------------------- reductions and scans
for _n in ("sum", "prod"):
    add_prim(PS(_n, args(N(2, 3)), params={"axes": None, "keepdims": False}, desc="all"),
        PS(_n, args(N(2, 3, 4)), params={"axes": (0, 2), "keepdims": True}, desc="keep"),
        PS(_n, args(N(2, 3)), params={"axes": (1,), "keepdims": False}, desc="ax1"))
for _n in ("amax", "amin"):
    add_prim(PS(_n, args(distinct(2, 3)), params={"axes": None, "keepdims": False}, desc="all"),
        PS(_n, args(distinct(2, 3, 4)), params={"axes": (1,), "keepdims": True}, desc="keep"),
        PS(_n, args(distinct(3, 4)), params={"axes": (0,), "keepdims": False}, desc="ax0"))
add_prim(PS("cumsum", args(N(2, 3)), params={"axis": 1}),
    PS("cumsum", args(N(4)), params={"axis": 0}, desc="vec"))
for _n in ("softmax", "log_softmax"):
    add_prim(PS(_n, args(N(2, 3)), params={"axis": 1}), PS(_n, args(N(3, 2)), params={"axis": 0},
                                                       desc="ax0"))

# ---------------------------------------------------------------- convolution and pooling
G2 = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}
G2s = {"stride": (2, 1), "padding": ((0, 1), (1, 0)), "dilation": (1, 2), "groups": 2}
G1 = {"stride": (2,), "padding": ((1, 1),), "dilation": (1,), "groups": 1}
add_prim(PS("conv", args(N(2, 3, 4, 4), N(4, 3, 3, 3), N(4)), params=G2,
            fast=("conv_flat", "conv_transpose_flat")),
    PS("conv", args(N(1, 4, 5, 4), N(2, 2, 2, 2), None), params=G2s, desc="strided-groups"),
    PS("conv", args(N(2, 2, 6), N(3, 2, 3), N(3)), params=G1, desc="1d"),
    PS("conv_transpose", args(N(2, 4, 4, 4), N(4, 3, 3, 3), N(3)),
       params={**G2, "size": (4, 4)}, fast=("conv_flat", "conv_transpose_flat")),
    PS("conv_transpose", args(N(2, 3, 3), N(3, 2, 3), None),
       params={**G1, "size": (6,)}, desc="1d"),
    PS("conv_weight", args(N(2, 3, 4, 4), N(2, 4, 4, 4)), params={**G2, "kernel": (3, 3)}),
    PS("conv_weight", args(N(2, 2, 6), N(2, 3, 3)), params={**G1, "kernel": (3,)}, desc="1d"))
PG = {"kernel": (2, 2), "stride": (2, 2), "padding": ((0, 0), (0, 0)), "dilation": (1, 1)}
PG3 = {"kernel": (3,), "stride": (1,), "padding": ((1, 1),), "dilation": (1,)}
add_prim(PS("max_pool", args(distinct(2, 3, 4, 4)), params=PG),
    PS("max_pool", args(distinct(2, 2, 5)), params=PG3, desc="1d-overlap"),
    PS("max_pool_index", args(distinct(2, 3, 4, 4)),
       call=lambda x: P["max_pool_index"](x, P["max_pool"](x, **PG), **PG)),
    PS("window_gather", args(N(2, 3, 4, 4), ints(2, 3, 2, 2, hi=4)),
       call=lambda x, i: P["window_gather"](x, i, **PG)),
    PS("window_scatter", args(N(2, 3, 2, 2), ints(2, 3, 2, 2, hi=4)),
       call=lambda g, i: P["window_scatter"](g, i, size=(4, 4), **PG)),
    PS("window_scatter", args(N(2, 2, 5), ints(2, 2, 5, hi=3)),
       call=lambda g, i: P["window_scatter"](g, i, size=(5,), **PG3), desc="1d-overlap"),
    PS("window_sum", args(N(2, 3, 4, 4)), params={**PG, "scale": 0.25}),
    PS("window_sum", args(N(2, 2, 5)), params={**PG3, "scale": 1.0}, desc="1d"),
    PS("window_sum_t", args(N(2, 3, 2, 2)), params={**PG, "scale": 0.25, "size": (4, 4)}),
    PS("window_sum_t", args(N(2, 2, 5)), params={**PG3, "scale": 1.0, "size": (5,)},
       desc="1d"))


def prim_samples(name: str) -> list[PS]:
    """The primitive samples of primitive ``name``."""
    return [s for s in PRIM_SAMPLES if s.name == name]


# ---------------------------------------------------------------- fused attention
def _causal(L):
    return np.where(np.tri(L, dtype=bool), 0.0, -np.inf)


def _dmask(r):
    return (r.random((2, 2, 4, 4)) > 0.3) / 0.7


ATT = {"heads": 2, "scale": 0.5, "seq_first": False}
add_prim(PS("linear", args(N(3, 4), N(5, 4), N(5))),
    PS("linear", args(N(2, 3, 4), N(5, 4), None), desc="3d-nobias"))
add_prim(PS("layer_norm", args(N(3, 4)), params={"axes": (1,), "eps": 1e-5},
            fast=("layer_norm_rows", "layer_norm_vjp_rows")),
    PS("layer_norm", args(N(2, 3, 4)), params={"axes": (1, 2), "eps": 1e-3}, desc="two-axes"))
add_prim(PS("self_attention", args(N(2, 4, 12), None, None), params=ATT,
            fast=("self_attention_vjp",)),
    PS("self_attention", args(N(2, 4, 12), N(4, 4), None), params=ATT, desc="bias"),
    PS("self_attention", lambda r: [r.standard_normal((4, 2, 12)), _causal(4), _dmask(r)],
       params={**ATT, "seq_first": True}, nodiff=(1, 2), desc="seqfirst-causal-dropout"),
    PS("self_attention", args(N(2, 4, 12), N(2, 1, 4, 4), None), params=ATT,
       desc="per-sample-bias"))


# ---------------------------------------------------------------- recurrent scans
def _rec(G, L=3, B=2, H=2, extra=0):
    """xg (L, B, G*H), w (G*H, H), biases, states; small values keep the gates unsaturated."""
    def f(r):
        xs = [0.5 * r.standard_normal((L, B, G * H)), 0.5 * r.standard_normal((G * H, H))]
        xs += [0.3 * r.standard_normal(G * H) for _ in range(extra)]
        return xs
    return f


def _states(k, B=2, H=2):
    return lambda r: [0.5 * r.standard_normal((B, H)) for _ in range(k)]


add_prim(PS("rnn_scan", lambda r: [0.5 * r.standard_normal((3, 2, 2)),
                              0.5 * r.standard_normal((2, 2)), 0.5 * r.standard_normal((2, 2))],
       params={"nonlinearity": "tanh", "reverse": False}),
    PS("rnn_scan", lambda r: [0.5 * r.standard_normal((3, 2, 2)),
                              0.5 * r.standard_normal((2, 2)), 0.5 * r.standard_normal((2, 2))],
       params={"nonlinearity": "tanh", "reverse": True}, desc="reverse"),
    PS("lstm_scan", lambda r: _rec(4)(r) + _states(2)(r), params={"reverse": False},
       fast=("lstm_backward",)),
    PS("lstm_scan", lambda r: _rec(4)(r) + _states(2)(r), params={"reverse": True},
       desc="reverse"),
    PS("gru_scan", lambda r: _rec(3, extra=1)(r) + _states(1)(r), params={"reverse": False},
       fast=("gru_backward",)),
    PS("gru_scan", lambda r: _rec(3, extra=1)(r) + _states(1)(r), params={"reverse": True},
       desc="reverse"))



def _row_prim_samples(row: OpInfo) -> list[PS]:
    """PS rows for ``row.prim`` from the row's float64 samples: the op passes its positional
    arguments to the primitive unchanged (samples with keyword arguments are skipped)."""
    found = []
    for k, s in enumerate(row.samples(Maker("float64"))):
        if s.kwargs or s.kink:
            continue

        def make(r, k=k):
            drawn = list(row.samples(Maker("float64", seed=int(r.integers(2 ** 31)))))[k]
            return [a.array if isinstance(a, Arg) else a for a in drawn.args]

        found.append(PS(row.prim, make, desc=f"{row.name}-{s.desc or k}"))
    return found


for _row in OP_TABLE:
    if _row.prim is not None:
        add_prim(*_row_prim_samples(_row))


# ---------------------------------------------------------------- optimiser updates
# (in place, not differentiable, refused by vmap; the optimisers' tests check the values)
add_prim(
    PS("sgd_update", lambda r: [r.standard_normal((2, 3)), r.standard_normal((2, 3)),
                                r.standard_normal((2, 3)), 0.1, 0.9, 0.0, 0.01],
       params={"nesterov": True, "maximize": False, "first": False}, vmap=False),
    PS("adam_update", lambda r: [r.standard_normal((3,)), r.standard_normal((3,)),
                                 r.standard_normal((3,)), r.uniform(0.1, 1, (3,)), None,
                                 1e-3, 0.9, 0.999, 1e-8, 0.0, 3],
       params={"decoupled": False, "maximize": False}, vmap=False),
    PS("adagrad_update", lambda r: [r.standard_normal((4,)), r.standard_normal((4,)),
                                    r.uniform(0.1, 1, (4,)), 0.1, 0.0, 0.0, 1e-10, 2],
       params={"maximize": False}, vmap=False),
    PS("rmsprop_update", lambda r: [r.standard_normal((2, 2)), r.standard_normal((2, 2)),
                                    r.uniform(0.5, 1, (2, 2)), r.uniform(-0.3, 0.3, (2, 2)), None,
                                    0.01, 0.99, 1e-8, 0.0, 0.0],
       params={"maximize": False}, vmap=False))


# ---------------------------------------------------------------- random numbers
# rng_draw: the generator's state in as a key, the numbers and the advanced state out (not
# differentiable; a batched key is refused by vmap). ``call`` keeps the numbers; the state
# output is checked in tests/test_random_primitive.py and tests/jit.
def _key(r):
    from chainrule.primitives.random import key_of

    return key_of(np.random.PCG64(int(r.integers(2 ** 32))).state)


def _draw(**params):
    return lambda key: REGISTRY["rng_draw"](key, **params)[0]


add_prim(*[PS("rng_draw", lambda r: [_key(r)], params=p, call=_draw(**p), vmap=False,
              desc=p["method"])
           for p in ({"method": "random", "args": (), "size": (2, 3)},
                     {"method": "standard_normal", "args": (), "size": (4,)},
                     {"method": "integers", "args": (0, 5), "size": (3,)},
                     {"method": "permutation", "args": (6,), "size": None})])
