"""Per-primitive samples for the transform tests: every primitive in ``REGISTRY`` has rows.

Each :class:`PS` row names a primitive and gives ``make(rng)``, which draws the inputs (NumPy
arrays become tensors; Python scalars stay scalars) with fixed shapes and the sample's domain
constraints (positive for log, away from kinks and ties, valid indices), and optionally a
``call`` that applies the primitive (default: ``REGISTRY[name](*inputs, **params)``). Index
arrays that a primitive takes as params are passed as tensor inputs and unwrapped by
``call``, so vmap can batch them too.

``make`` is called once per example when building batches, so it must keep shapes fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import chainrule
from chainrule.backend import Device
from chainrule.primitives import REGISTRY


@dataclass
class PS:
    name: str
    make: Callable
    params: dict = field(default_factory=dict)
    call: Callable | None = None
    desc: str = ""
    nodiff: tuple = ()  # float inputs that are not differentiated (e.g. masks given as floats)
    rtol: float = 1e-6  # finite differences vs forward mode
    eps: float = 1e-6  # finite-difference step
    fd: bool = True

    def __post_init__(self):
        if self.call is None:
            name, params = self.name, self.params
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


SAMPLES: list[PS] = []


def add(*rows):
    # primitives come and go while the table grows: rows for unregistered names are dropped
    # (the coverage test checks the other direction: every registered primitive has rows)
    SAMPLES.extend(r for r in rows if r.name in REGISTRY)


# ---------------------------------------------------------------- unary, smooth
for _n in ("neg", "exp", "expm1", "sin", "cos", "tanh", "sigmoid", "erf"):
    add(PS(_n, args(N(2, 3)), desc="2x3"), PS(_n, args(N()), desc="0d"))
add(PS("gelu", args(N(2, 3))), PS("gelu", args(N(4)), desc="vec"),
    PS("gelu_backward", args(N(2, 3), N(2, 3)),
       call=lambda g, x: P["gelu_backward"](g, x, P["gelu"](x))),
    PS("gelu_backward", args(N(3), N(2, 3)),
       call=lambda g, x: P["gelu_backward"](g, x, P["gelu"](x)), desc="bcast"))
for _n in ("log", "log1p", "sqrt"):
    add(PS(_n, args(pos(2, 3))), PS(_n, args(pos(4)), desc="vec"))
add(PS("relu", args(away(2, 3))), PS("abs", args(away(2, 3))), PS("sign", args(away(3, 2))))
add(PS("floor", args(frac(2, 3))), PS("ceil", args(frac(2, 3))),
    PS("round", args(lambda r: r.integers(-3, 3, (2, 3)) + r.uniform(-0.3, 0.3, (2, 3))),
       params={"decimals": 0}),
    PS("round", args(lambda r: r.integers(-30, 30, (3,)) / 10 + r.uniform(-0.03, 0.03, 3)),
       params={"decimals": 1}, desc="decimals"))

# ---------------------------------------------------------------- binary
for _n in ("add", "sub", "mul"):
    add(PS(_n, args(N(2, 3), N(2, 3))), PS(_n, args(N(2, 3), N(3)), desc="bcast"),
        PS(_n, args(N(2, 1, 3), N(4, 1)), desc="bcast2"), PS(_n, args(N(3), 2.5), desc="scalar"))
add(PS("div", args(N(2, 3), away(2, 3))), PS("div", args(N(2, 3), away(3)), desc="bcast"),
    PS("div", args(1.5, away(3)), desc="scalar"))
add(PS("pow", args(pos(2, 3), N(2, 3))), PS("pow", args(pos(3), 3), desc="int-exp"),
    PS("pow", args(2.0, N(3)), desc="scalar-base"),
    PS("pow", args(pos(2, 3), N(3)), desc="bcast"))
add(PS("maximum", pair_apart(2, 3)), PS("minimum", pair_apart(2, 3)),
    PS("maximum", args(away(2, 3), 0.0), desc="scalar"))


def _remainder_args(r):
    y = r.uniform(1.0, 2.0, (2, 3))
    return [y * (r.integers(-2, 3, (2, 3)) + r.uniform(0.2, 0.8, (2, 3))), y]


add(PS("remainder", _remainder_args), PS("floor_divide", _remainder_args))
add(PS("where", args(bools(2, 3), N(2, 3), N(3))),
    PS("where", args(bools(3), N(2, 3), 0.0), desc="scalar"))

# ---------------------------------------------------------------- not differentiable
for _n in ("eq", "ne", "lt", "le", "gt", "ge"):
    add(PS(_n, lambda r: [np.round(r.standard_normal((2, 3))), np.round(r.standard_normal(3))]))
for _n in ("logical_and", "logical_or", "logical_xor"):
    add(PS(_n, args(bools(2, 3), bools(3))))
add(PS("logical_not", args(bools(2, 3))), PS("bitwise_not", args(ints(2, 3, lo=-5, hi=5))))
for _n in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    add(PS(_n, args(ints(2, 3, lo=-8, hi=8), ints(3, lo=-8, hi=8))))


def _specials(r):
    x = r.standard_normal((2, 3))
    x[0, 1] = np.nan
    x[1, 2] = np.inf
    return [x]


for _n in ("isnan", "isinf", "isfinite"):
    add(PS(_n, _specials))
add(PS("zeros_like", args(N(2, 3))), PS("ones_like", args(N(2, 3))))
add(PS("argmax", args(distinct(3, 4)), params={"axis": 1, "keepdims": False}),
    PS("argmax", args(distinct(3, 4)), params={"axis": None, "keepdims": False}, desc="all"),
    PS("argmin", args(distinct(3, 4)), params={"axis": 0, "keepdims": True}, desc="keep"),
    PS("argmin", args(distinct(2, 3)), params={"axis": None, "keepdims": True}, desc="allkeep"))

# ---------------------------------------------------------------- dtype and device
add(PS("cast", args(N(2, 3)), params={"dtype": chainrule.float32}, desc="f32", rtol=1e-4,
       eps=1e-2),
    PS("cast", args(ints(2, 3)), params={"dtype": chainrule.float64}, desc="int"),
    PS("cast", args(N(3)), params={"dtype": chainrule.float64}, desc="same"),
    PS("to_device", args(N(2, 3)), params={"device": Device("cpu"), "source": Device("cpu")}),
    PS("copy", args(N(2, 3))))

# ---------------------------------------------------------------- linear algebra
add(PS("matmul", args(N(2, 3), N(3, 4))),
    PS("matmul", args(N(2, 2, 3), N(3, 4)), desc="batched"),
    PS("matmul", args(N(1, 2, 3), N(2, 3, 4)), desc="bcast"),
    PS("einsum", args(N(2, 3), N(3, 4)), params={"equation": "ij,jk->ik"}),
    PS("einsum", args(N(2, 3, 4), N(2, 4)), params={"equation": "bij,bj->bi"}, desc="batch"),
    PS("einsum", args(N(2, 3), N(3, 4), N(4)), params={"equation": "ij,jk,k->i"}, desc="3ops"),
    PS("einsum", args(N(2, 3)), params={"equation": "ij->j"}, desc="sum"))

# ---------------------------------------------------------------- movement
add(PS("reshape", args(N(2, 3)), params={"shape": (3, 2)}),
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


def _gi(index_fn):
    """A getitem call whose index is built from tensor inputs after the first."""
    return lambda x, *ix: P["getitem"](x, index=index_fn(*[i._data for i in ix]))


add(PS("getitem", args(N(3, 4)), params={"index": (slice(0, 2), 1)}, desc="basic"),
    PS("getitem", args(N(3, 4)), params={"index": (Ellipsis, None, slice(1, 3))}, desc="none"),
    PS("getitem", args(N(3, 4), ints(2, hi=3)), call=_gi(lambda i: (i,)), desc="adv0"),
    PS("getitem", args(N(3, 4, 5), ints(2, 2, hi=4)),
       call=_gi(lambda i: (slice(None), i)), desc="adv-mid"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=3), ints(2, hi=5)),
       call=_gi(lambda i, j: (i, slice(None), j)), desc="adv-split"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=5)),
       call=_gi(lambda j: (1, slice(None), j)), desc="int-adv"),
    PS("getitem", args(N(3, 4, 5), ints(2, hi=4), ints(2, hi=5)),
       call=_gi(lambda i, j: (slice(1, 3), i, j)), desc="adv-pair"))


def _st(index_fn, shape):
    return lambda g, *ix: P["scatter_to"](g, shape=shape,
                                           index=index_fn(*[i._data for i in ix]))


add(PS("scatter_to", args(N(2)), params={"shape": (3, 4), "index": (slice(0, 2), 1)},
       desc="basic"),
    PS("scatter_to", args(N(4, 4), ints(4, hi=3)), call=_st(lambda i: (i,), (3, 4)),
       desc="adv-repeat"),
    PS("scatter_to", args(N(3, 2, 2, 5), ints(2, 2, hi=4)),
       call=_st(lambda i: (slice(None), i), (3, 4, 5)), desc="adv-mid"),
    PS("scatter_to", args(N(2, 4), ints(2, hi=3), ints(2, hi=5)),
       call=_st(lambda i, j: (i, slice(None), j), (3, 4, 5)), desc="adv-split"))


def _ip(index_fn):
    return lambda x, v, *ix: P["index_put"](x, v, index=index_fn(*[i._data for i in ix]))


def _distinct_rows(n, hi):
    return lambda r: r.permutation(hi)[:n].astype(np.int64)


add(PS("index_put", args(N(3, 4), N(2)), params={"index": (slice(0, 2), 1)}, desc="basic"),
    PS("index_put", args(N(3, 4), N(4)), params={"index": (1,)}, desc="row-bcast"),
    PS("index_put", args(N(3, 4), N(2, 4), _distinct_rows(2, 3)), call=_ip(lambda i: (i,)),
       desc="adv"),
    PS("index_put", args(N(3, 4, 5), N(2, 4), _distinct_rows(2, 3), _distinct_rows(2, 5)),
       call=_ip(lambda i, j: (i, slice(None), j)), desc="adv-split"),
    PS("index_put", lambda r: [r.standard_normal((3, 4)), 0.0],
       params={"index": (slice(None), 2)}, desc="scalar"))

add(PS("gather", args(N(3, 4), ints(3, 2)),
       call=lambda x, i: P["gather"](x, idx=i._data, axis=1)),
    PS("gather", args(N(4, 3), ints(2, 3)),
       call=lambda x, i: P["gather"](x, idx=i._data, axis=0), desc="axis0"),
    PS("scatter_add", args(N(3, 2), ints(3, 2)),
       call=lambda g, i: P["scatter_add"](g, idx=i._data, shape=(3, 4), axis=1)))

# ---------------------------------------------------------------- reductions and scans
for _n in ("sum", "prod"):
    add(PS(_n, args(N(2, 3)), params={"axes": None, "keepdims": False}, desc="all"),
        PS(_n, args(N(2, 3, 4)), params={"axes": (0, 2), "keepdims": True}, desc="keep"),
        PS(_n, args(N(2, 3)), params={"axes": (1,), "keepdims": False}, desc="ax1"))
for _n in ("amax", "amin"):
    add(PS(_n, args(distinct(2, 3)), params={"axes": None, "keepdims": False}, desc="all"),
        PS(_n, args(distinct(2, 3, 4)), params={"axes": (1,), "keepdims": True}, desc="keep"),
        PS(_n, args(distinct(3, 4)), params={"axes": (0,), "keepdims": False}, desc="ax0"))
add(PS("cumsum", args(N(2, 3)), params={"axis": 1}),
    PS("cumsum", args(N(4)), params={"axis": 0}, desc="vec"))
for _n in ("softmax", "log_softmax"):
    add(PS(_n, args(N(2, 3)), params={"axis": 1}), PS(_n, args(N(3, 2)), params={"axis": 0},
                                                       desc="ax0"))

# ---------------------------------------------------------------- convolution and pooling
G2 = {"stride": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "groups": 1}
G2s = {"stride": (2, 1), "padding": ((0, 1), (1, 0)), "dilation": (1, 2), "groups": 2}
G1 = {"stride": (2,), "padding": ((1, 1),), "dilation": (1,), "groups": 1}
add(PS("conv", args(N(2, 3, 4, 4), N(4, 3, 3, 3), N(4)), params=G2),
    PS("conv", args(N(1, 4, 5, 4), N(2, 2, 2, 2), None), params=G2s, desc="strided-groups"),
    PS("conv", args(N(2, 2, 6), N(3, 2, 3), N(3)), params=G1, desc="1d"),
    PS("conv_transpose", args(N(2, 4, 4, 4), N(4, 3, 3, 3), N(3)),
       params={**G2, "size": (4, 4)}),
    PS("conv_transpose", args(N(2, 3, 3), N(3, 2, 3), None),
       params={**G1, "size": (6,)}, desc="1d"),
    PS("conv_weight", args(N(2, 3, 4, 4), N(2, 4, 4, 4)), params={**G2, "kernel": (3, 3)}),
    PS("conv_weight", args(N(2, 2, 6), N(2, 3, 3)), params={**G1, "kernel": (3,)}, desc="1d"))
PG = {"kernel": (2, 2), "stride": (2, 2), "padding": ((0, 0), (0, 0)), "dilation": (1, 1)}
PG3 = {"kernel": (3,), "stride": (1,), "padding": ((1, 1),), "dilation": (1,)}
add(PS("max_pool", args(distinct(2, 3, 4, 4)), params=PG),
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


def by_name(name: str) -> list[PS]:
    return [s for s in SAMPLES if s.name == name]


# ---------------------------------------------------------------- fused attention
def _causal(L):
    return np.where(np.tri(L, dtype=bool), 0.0, -np.inf)


def _dmask(r):
    return (r.random((2, 2, 4, 4)) > 0.3) / 0.7


ATT = {"heads": 2, "scale": 0.5, "seq_first": False}
add(PS("linear", args(N(3, 4), N(5, 4), N(5))),
    PS("linear", args(N(2, 3, 4), N(5, 4), None), desc="3d-nobias"))
add(PS("layer_norm", args(N(3, 4)), params={"axes": (1,), "eps": 1e-5}),
    PS("layer_norm", args(N(2, 3, 4)), params={"axes": (1, 2), "eps": 1e-3}, desc="two-axes"))
add(PS("self_attention", args(N(2, 4, 12), None, None), params=ATT),
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


add(PS("rnn_scan", lambda r: [0.5 * r.standard_normal((3, 2, 2)),
                              0.5 * r.standard_normal((2, 2)), 0.5 * r.standard_normal((2, 2))],
       params={"nonlinearity": "tanh", "reverse": False}),
    PS("rnn_scan", lambda r: [0.5 * r.standard_normal((3, 2, 2)),
                              0.5 * r.standard_normal((2, 2)), 0.5 * r.standard_normal((2, 2))],
       params={"nonlinearity": "tanh", "reverse": True}, desc="reverse"),
    PS("lstm_scan", lambda r: _rec(4)(r) + _states(2)(r), params={"reverse": False}),
    PS("lstm_scan", lambda r: _rec(4)(r) + _states(2)(r), params={"reverse": True},
       desc="reverse"),
    PS("gru_scan", lambda r: _rec(3, extra=1)(r) + _states(1)(r), params={"reverse": False}),
    PS("gru_scan", lambda r: _rec(3, extra=1)(r) + _states(1)(r), params={"reverse": True},
       desc="reverse"))
