"""PyTorch-compatibility of the Tensor surface (issue 14): legacy constructors, new_* methods,
type(), format(), range indexing, size= on factories, and sampling (multinomial, bernoulli,
normal). Where PyTorch is installed, the same calls are made in it and compared."""

import numpy as np
import pytest

import chainrule

try:
    import torch
except ImportError:  # pragma: no cover - the oracle is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")


def _same(a, b):
    """chainrule tensor ``a`` equals torch tensor ``b``: shape, dtype name and values."""
    assert tuple(a.shape) == tuple(b.shape)
    assert a.dtype.name == str(b.dtype).replace("torch.", "")
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---------------------------------------------------------------- constructors
CONSTRUCTOR_CALLS = [
    ("Tensor", (16,)), ("Tensor", (3, 4)), ("Tensor", ()), ("Tensor", ([1, 2],)),
    ("Tensor", ([[1.5], [2.0]],)), ("FloatTensor", (2, 3)), ("FloatTensor", ([1, 2],)),
    ("LongTensor", ([1, 2],)), ("LongTensor", (3,)), ("DoubleTensor", ([0.5],)),
    ("BoolTensor", ([1, 0],)), ("IntTensor", ([4],)), ("ByteTensor", ([7],)),
    ("HalfTensor", ([1.0],)),
]


@needs_torch
@pytest.mark.parametrize("name,args", CONSTRUCTOR_CALLS, ids=lambda v: repr(v))
def test_legacy_constructors_match_torch(name, args):
    a, b = getattr(chainrule, name)(*args), getattr(torch, name)(*args)
    assert tuple(a.shape) == tuple(b.shape)
    assert a.dtype.name == str(b.dtype).replace("torch.", "")
    if args and isinstance(args[0], list):  # sizes give uninitialised memory in PyTorch
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tensor_of_an_int_is_a_shape_not_a_scalar():
    t = chainrule.Tensor(16)
    assert t.shape == (16,) and t.dtype == chainrule.float32
    assert float(t.abs().sum()) == 0.0  # zero-filled here (PyTorch leaves it uninitialised)


def test_tensor_of_a_tensor_keeps_its_dtype():
    assert chainrule.Tensor(chainrule.tensor([1, 2])).dtype == chainrule.int64


def test_typed_constructors_work_with_isinstance():
    assert isinstance(chainrule.zeros(2), chainrule.FloatTensor)
    assert not isinstance(chainrule.zeros(2), chainrule.LongTensor)
    assert isinstance(chainrule.arange(3), chainrule.LongTensor)
    assert not isinstance(np.zeros(2), chainrule.FloatTensor)


def test_constructor_refuses_a_mix_of_sizes_and_data():
    with pytest.raises(TypeError, match=r"FloatTensor.*sizes"):
        chainrule.FloatTensor([1, 2], 3)


# ---------------------------------------------------------------- methods
@needs_torch
def test_new_methods_follow_the_source_dtype_and_match_torch():
    for mod, src in ((chainrule, chainrule.ones(2, dtype=chainrule.float64)),
                     (torch, torch.ones(2, dtype=torch.float64))):
        out = [src.new_zeros(2, 3), src.new_zeros((2,)), src.new_ones(3),
               src.new_full((2, 2), 7), src.new_tensor([1, 2]), src.new_empty(4).shape,
               src.new_zeros(2, dtype=mod.int64), src.new_tensor([1.5], dtype=mod.float32)]
        if mod is chainrule:
            ours = out
        else:
            theirs = out
    for a, b in zip(ours, theirs):
        if isinstance(b, torch.Size):
            assert tuple(a) == tuple(b)
        else:
            _same(a, b)


@needs_torch
def test_type_names_and_casts_match_torch():
    for dt in ("float32", "float64", "int64", "int32", "bool", "uint8", "float16"):
        a, b = chainrule.zeros(2, dtype=dt), torch.zeros(2, dtype=getattr(torch, dt))
        assert a.type() == b.type()
    a, b = chainrule.tensor([1.7, -2.2]), torch.tensor([1.7, -2.2])
    for target in ("float64", "int64"):
        _same(a.type(getattr(chainrule, target)), b.type(getattr(torch, target)))
    _same(a.type("torch.LongTensor"), b.type("torch.LongTensor"))
    _same(a.type(chainrule.DoubleTensor), b.type(torch.DoubleTensor))
    assert a.nelement() == b.nelement() == 2


@needs_torch
@pytest.mark.parametrize("spec", [".4f", ".2e", "", "8.3f", "g"])
def test_format_of_a_0d_tensor_matches_torch(spec):
    assert format(chainrule.tensor(3.14159), spec) == format(torch.tensor(3.14159), spec)
    assert f"{chainrule.tensor(2.5).sum():{spec}}" == f"{torch.tensor(2.5).sum():{spec}}"


def test_format_of_a_vector_refuses_a_number_spec_and_names_the_fix():
    t = chainrule.ones(3)
    assert f"{t}" == repr(t)
    with pytest.raises(TypeError, match=r"'.4f'.*\(3,\).*item\(\)"):
        format(t, ".4f")


@needs_torch
def test_indexing_with_a_range_matches_torch():
    x = np.arange(24.0).reshape(4, 6)
    a, b = chainrule.tensor(x), torch.tensor(x)
    for idx in (range(2), (slice(None), range(1, 6, 2)), range(0), (range(3), 2)):
        _same(a[idx], b[idx])
    a[range(1, 3)] = 0.0
    b[range(1, 3)] = 0.0
    _same(a, b)


def test_indexing_with_a_range_is_differentiable():
    x = chainrule.ones(4, 2, requires_grad=True)
    x[range(1, 3)].sum().backward()
    assert x.grad[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("name", ["zeros", "ones", "empty", "rand", "randn"])
def test_factories_take_the_size_keyword(name):
    fn = getattr(chainrule, name)
    assert fn(size=(2, 3)).shape == (2, 3)
    assert fn(size=[4]).shape == (4,)
    with pytest.raises(TypeError, match=f"{name}: size given both"):
        fn(2, size=(3,))


# ---------------------------------------------------------------- sampling
def test_multinomial_is_reproducible_under_manual_seed():
    w = chainrule.tensor([[0.1, 0.2, 0.7], [1.0, 1.0, 0.5]])
    draws = []
    for _ in range(2):
        chainrule.manual_seed(123)
        draws.append((chainrule.multinomial(w, 2).tolist(),
                      chainrule.multinomial(w, 5, replacement=True).tolist()))
    assert draws[0] == draws[1]
    g1, g2 = chainrule.Generator().manual_seed(5), chainrule.Generator().manual_seed(5)
    assert (chainrule.multinomial(w, 3, generator=g1).tolist()
            == chainrule.multinomial(w, 3, generator=g2).tolist())


def test_multinomial_with_replacement_follows_the_weights():
    chainrule.manual_seed(0)
    w = chainrule.tensor([1.0, 0.0, 3.0, 4.0])
    n = 40000
    s = chainrule.multinomial(w, n, replacement=True)
    assert s.dtype == chainrule.int64 and s.shape == (n,)
    freq = np.bincount(s.numpy(), minlength=4) / n
    p = np.array([1.0, 0.0, 3.0, 4.0]) / 8
    # 5 standard deviations of a binomial proportion
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), freq


def test_multinomial_without_replacement_is_successive_sampling():
    chainrule.manual_seed(1)
    w = np.array([1.0, 2.0, 0.0, 5.0])
    first, second = np.zeros(4), np.zeros(4)
    n = 20000
    s = chainrule.multinomial(chainrule.tensor(np.tile(w, (n, 1))), 2).numpy()
    assert s.shape == (n, 2) and np.all(s[:, 0] != s[:, 1]) and not np.any(s == 2)
    np.add.at(first, s[:, 0], 1)
    np.add.at(second, s[:, 1], 1)
    p1 = w / w.sum()
    # P(second = j) = sum_i p_i * w_j / (W - w_i)
    p2 = np.array([sum(p1[i] * w[j] / (w.sum() - w[i]) for i in range(4) if i != j)
                   for j in range(4)])
    for freq, p in ((first / n, p1), (second / n, p2)):
        assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (freq, p)


@needs_torch
def test_multinomial_shapes_and_dtypes_match_torch():
    for args in (([0.2, 0.8], 1), ([[0.2, 0.8], [0.5, 0.5]], 2), ([0.1, 0.9], 6, True)):
        a = chainrule.multinomial(chainrule.tensor(args[0]), *args[1:])
        b = torch.multinomial(torch.tensor(args[0]), *args[1:])
        assert tuple(a.shape) == tuple(b.shape) and a.dtype.name == str(b.dtype)[6:]


@pytest.mark.parametrize("weights,k,kw,match", [
    ([0.5, -0.1], 1, {}, "non-negative"),
    ([0.0, 0.0], 1, {}, "positive sum"),
    ([0.5, float("nan")], 1, {}, "finite"),
    ([1.0, 0.0, 1.0], 3, {}, "fewer than 3 categories"),
    ([1.0, 1.0], 3, {}, "3 samples without replacement from 2"),
    ([1.0, 1.0], 0, {"replacement": True}, "positive int"),
    ([[[1.0]]], 1, {}, "1-D or 2-D"),
])
def test_multinomial_errors_name_the_problem(weights, k, kw, match):
    with pytest.raises(ValueError, match=match):
        chainrule.multinomial(chainrule.tensor(weights), k, **kw)


def test_multinomial_refuses_integer_weights():
    with pytest.raises(TypeError, match="floating point"):
        chainrule.multinomial(chainrule.tensor([1, 2]), 1)


def test_bernoulli_and_normal():
    chainrule.manual_seed(0)
    p = chainrule.full((20000,), 0.3)
    b = chainrule.bernoulli(p)
    assert b.dtype == chainrule.float32 and abs(float(b.mean()) - 0.3) < 0.02
    x = chainrule.zeros(10000).bernoulli_(0.75)
    assert abs(float(x.mean()) - 0.75) < 0.02
    z = chainrule.normal(chainrule.full((20000,), 2.0), 0.5)
    assert abs(float(z.mean()) - 2.0) < 0.02 and abs(float(z.std()) - 0.5) < 0.02
    assert chainrule.normal(0.0, 1.0, (2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        chainrule.bernoulli(chainrule.tensor([1.5]))


_DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
           "float32", "float64"]


@needs_torch
def test_dtype_helpers_match_torch():
    """promote_types, can_cast and result_type (tensors of each dimension, Python numbers) give
    PyTorch's answer for every pair of dtypes."""
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")
    for a in _DTYPES:
        ca, ta = getattr(chainrule, a), getattr(torch, a)
        for b in _DTYPES:
            cb, tb = getattr(chainrule, b), getattr(torch, b)
            assert chainrule.promote_types(ca, cb).name == str(
                torch.promote_types(ta, tb)).removeprefix("torch."), (a, b)
            assert chainrule.can_cast(ca, cb) == torch.can_cast(ta, tb), (a, b)
            for shape_b in [(2,), ()]:
                got = chainrule.result_type(chainrule.zeros(2, dtype=ca),
                                            chainrule.zeros(shape_b, dtype=cb))
                want = torch.result_type(torch.zeros(2, dtype=ta), torch.zeros(shape_b, dtype=tb))
                assert got.name == str(want).removeprefix("torch."), (a, b, shape_b)
        for s in (True, 3, 2.5):
            got = chainrule.result_type(chainrule.zeros(2, dtype=ca), s)
            want = torch.result_type(torch.zeros(2, dtype=ta), s)
            assert got.name == str(want).removeprefix("torch."), (a, s)


@needs_torch
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4), (1,)])
def test_numel_matches_torch(shape):
    x = chainrule.zeros(shape, dtype=chainrule.int64)
    want = torch.numel(torch.zeros(shape))
    assert chainrule.numel(x) == x.numel() == want and type(chainrule.numel(x)) is int
    assert chainrule.numel(np.zeros(shape)) == want  # array-likes, as the other ops take them


@needs_torch
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("op,args", [
    ("sinh", ([11.5, -11.2],)), ("cosh", ([11.5, -11.2],)),  # exp(11.5) overflows float16
    ("hypot", ([300.0, 250.0], [400.0, 260.0])),  # 300**2 overflows float16
    ("exp2", ([15.3, -14.7],)), ("logit", ([0.999, 0.001],)),
    ("fmod", ([2.99, -7.01], [1.0, 2.33])),  # a 16-bit quotient would round up to 3
    ("cumprod", ([1.01] * 64, 0)),
])
def test_16_bit_composites_compute_in_float32_as_torch(op, args, dtype):
    """Composites of several ops round once, as PyTorch's 16-bit kernels do: no overflow of an
    intermediate, no digits lost between steps (the op-table samples stay in [-2, 2])."""
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")
    cd, td = getattr(chainrule, dtype), getattr(torch, dtype)
    ours = getattr(chainrule, op)(*(chainrule.tensor(a).to(cd) if isinstance(a, list) else a
                                    for a in args))
    theirs = getattr(torch, op)(*(torch.tensor(a).to(td) if isinstance(a, list) else a
                                  for a in args))
    assert ours.dtype is cd
    np.testing.assert_allclose(ours.float().numpy(), theirs.float().numpy(),
                               rtol=2.0 ** -10 if dtype == "float16" else 2.0 ** -7)


def _f(m):
    return m.nn.functional


_AUTOCAST_CALLS = {  # issue 14's ops that PyTorch's CPU autocast lists (lower or float32)
    "addmm": lambda m, x: m.addmm(x, x, x),
    "baddbmm": lambda m, x: m.baddbmm(x[None], x[None], x[None]),
    "prelu": lambda m, x: _f(m).prelu(x, x[0, :1]),
    "trace": lambda m, x: m.trace(x),
    "cdist": lambda m, x: m.cdist(x, x),
    "margin_ranking_loss": lambda m, x: _f(m).margin_ranking_loss(x, x, x.sign()),
    "cosine_embedding_loss": lambda m, x: _f(m).cosine_embedding_loss(x, x, x[:, 0].sign()),
    "hinge_embedding_loss": lambda m, x: _f(m).hinge_embedding_loss(x, x.sign()),
    "soft_margin_loss": lambda m, x: _f(m).soft_margin_loss(x, x.sign()),
    "poisson_nll_loss": lambda m, x: _f(m).poisson_nll_loss(x, x.abs()),
    "triplet_margin_loss": lambda m, x: _f(m).triplet_margin_loss(x, x, -x),
}


@needs_torch
@pytest.mark.parametrize("name", list(_AUTOCAST_CALLS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_autocast_policy_of_the_new_ops_matches_torch(name, dtype):
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra (ml_dtypes)")
    a = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32)
    with chainrule.autocast("cpu", dtype=chainrule.bfloat16):
        ours = _AUTOCAST_CALLS[name](chainrule, chainrule.tensor(a).to(dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs = _AUTOCAST_CALLS[name](torch, torch.from_numpy(a).to(getattr(torch, dtype)))
    assert ours.dtype.name == str(theirs.dtype).removeprefix("torch.")


def test_scatter_add_uses_the_index_shaped_part_of_a_larger_src():
    x = chainrule.scatter_add(chainrule.zeros(2, 3), 1, chainrule.tensor([[2, 2]]),
                              chainrule.tensor([[1.0, 2.0, 100.0], [100.0, 100.0, 100.0]]))
    assert x.tolist() == [[0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]


def test_nan_to_num_defaults_to_the_dtype_limits():
    x = chainrule.nan_to_num(chainrule.tensor([float("nan"), float("inf"), -float("inf")]))
    info = np.finfo(np.float32)
    assert x.tolist() == [0.0, float(info.max), float(info.min)]


@pytest.mark.parametrize("op,args,err,match", [
    ("scatter_add", (chainrule.zeros(3), 0, chainrule.tensor([3]), chainrule.ones(1)),
     IndexError, "out of range"),
    ("index_add", (chainrule.zeros(3, 2), 0, chainrule.tensor([0]), chainrule.ones(2, 2)),
     chainrule.errors.ShapeError, r"source shape \(2, 2\)"),
    ("repeat_interleave", (chainrule.ones(3), chainrule.tensor([1, 2])), ValueError,
     "3 counts"),
    ("unfold", (chainrule.ones(3), 0, 4, 1), ValueError, "size 4"),
    ("scatter", (chainrule.zeros(3), 0, chainrule.tensor([0.5]), 1.0), TypeError,
     "integer tensor"),
])
def test_indexing_composites_name_bad_input(op, args, err, match):
    with pytest.raises(err, match=match):
        getattr(chainrule, op)(*args)


def test_inplace_variants_write_into_self_and_record_the_graph():
    w = chainrule.tensor([1.0, 2.0], requires_grad=True)
    y = w * 1
    y.exp_().lerp_(chainrule.zeros(2), 0.5)
    y.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 0.5 * np.exp([1.0, 2.0]), rtol=1e-6)
    z = chainrule.zeros(3)
    assert z.index_fill_(0, chainrule.tensor([1]), 4.0) is z and z.tolist() == [0.0, 4.0, 0.0]


@needs_torch
@pytest.mark.parametrize("kw", [dict(precision=2), dict(sci_mode=True),
                                dict(precision=6, sci_mode=False), dict(profile="short"),
                                dict(linewidth=30)])
def test_set_printoptions_matches_torch(kw):
    x = np.array([[1.23456789, -20.5, 3e-3], [4.0, 5.5, 6.25]], dtype=np.float32)
    try:
        chainrule.set_printoptions(**kw)
        torch.set_printoptions(**kw)
        assert repr(chainrule.tensor(x)) == repr(torch.tensor(x))
    finally:
        chainrule.set_printoptions(profile="default")
        torch.set_printoptions(profile="default")
    assert repr(chainrule.tensor([1.5])) == "tensor([1.5000])"


def test_set_printoptions_refuses_bad_values():
    with pytest.raises(ValueError, match="profile must be one of"):
        chainrule.set_printoptions(profile="long")
    with pytest.raises(ValueError, match="precision must be non-negative"):
        chainrule.set_printoptions(precision=-1)
