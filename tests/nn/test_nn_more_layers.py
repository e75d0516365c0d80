"""The extra torch.nn layers and losses (issue 14) against PyTorch: same output for the same
input and parameters, same repr-relevant arguments, gradients of learnable weights."""

import numpy as np
import pytest

import chainrule
from chainrule import nn

torch = pytest.importorskip("torch")

X4 = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
X5 = np.random.default_rng(1).normal(size=(1, 2, 4, 4, 4))
V = np.random.default_rng(2).normal(size=(4, 6))
W = np.random.default_rng(3).normal(size=(4, 6))

LAYERS = [
    ("GLU", (), {}, V), ("GLU", (0,), {}, V), ("Hardshrink", (0.3,), {}, V),
    ("Softshrink", (), {"lambd": 0.2}, V), ("Tanhshrink", (), {}, V),
    ("Threshold", (0.1, 20.0), {}, V), ("Softmax2d", (), {}, X4),
    ("ZeroPad2d", ((1, 2, 0, 1),), {}, X4), ("ZeroPad1d", (2,), {}, V),
    ("ConstantPad3d", (1, 3.5), {}, X5), ("ConstantPad2d", ((1, 0, 2, 0), -1.0), {}, X4),
    ("MaxPool3d", (2,), {}, X5), ("AvgPool3d", (2,), {"stride": 1}, X5),
    ("AdaptiveAvgPool3d", ((1, 2, 3),), {}, X5),
]


@pytest.mark.parametrize("name,args,kw,x", LAYERS, ids=[f"{n}{a}" for n, a, _, _ in LAYERS])
def test_layer_matches_torch(name, args, kw, x):
    ours = getattr(nn, name)(*args, **kw)(chainrule.tensor(x))
    theirs = getattr(torch.nn, name)(*args, **kw)(torch.tensor(x))
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("name,kw", [("CosineSimilarity", {"dim": 1}),
                                     ("PairwiseDistance", {"p": 1.0})])
def test_distances_match_torch(name, kw):
    ours = getattr(nn, name)(**kw)(chainrule.tensor(V), chainrule.tensor(W))
    theirs = getattr(torch.nn, name)(**kw)(torch.tensor(V), torch.tensor(W))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-12)


def test_prelu_learns_its_slope_like_torch():
    x = np.random.default_rng(4).normal(size=(2, 3, 5))
    ours, theirs = nn.PReLU(3, init=0.1), torch.nn.PReLU(3, init=0.1).double()
    ours.weight = nn.Parameter(chainrule.tensor(theirs.weight.detach().numpy()))
    yo, yt = ours(chainrule.tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=1e-12)
    (yo * yo).sum().backward()
    (yt * yt).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-10)
    assert repr(ours) == repr(theirs)


LOSSES = [
    ("MarginRankingLoss", {"margin": 0.2}, lambda m: (V[:, 0], W[:, 0], np.sign(V[:, 1]))),
    ("HingeEmbeddingLoss", {"reduction": "sum"}, lambda m: (V, np.sign(W))),
    ("SoftMarginLoss", {}, lambda m: (V, np.sign(W))),
    ("CosineEmbeddingLoss", {"margin": 0.1}, lambda m: (V, W, np.sign(V[:, 0]))),
    ("TripletMarginLoss", {"margin": 3.0, "swap": True}, lambda m: (V, W, V * 0.5 + 1)),
    ("PoissonNLLLoss", {"full": True}, lambda m: (V, np.abs(W) * 3)),
    ("MultiLabelSoftMarginLoss", {}, lambda m: (V, (W > 0).astype(float))),
]


@pytest.mark.parametrize("name,kw,data", LOSSES, ids=[n for n, _, _ in LOSSES])
def test_losses_match_torch_with_gradients(name, kw, data):
    arrays = data(None)
    ours_in = [chainrule.tensor(a, requires_grad=(i == 0)) for i, a in enumerate(arrays)]
    theirs_in = [torch.tensor(a, requires_grad=(i == 0)) for i, a in enumerate(arrays)]
    lo = getattr(nn, name)(**kw)(*ours_in)
    lt = getattr(torch.nn, name)(**kw)(*theirs_in)
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-10)
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(ours_in[0].grad.numpy(), theirs_in[0].grad.numpy(), rtol=1e-9,
                               atol=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int or 4 ints"):
        nn.ZeroPad2d((1, 2))
    with pytest.raises(chainrule.errors.ShapeError, match=r"glu: dimension -1 must have an even"):
        nn.GLU()(chainrule.ones(2, 3))
    with pytest.raises(chainrule.errors.ShapeError, match=r"prelu: weight of shape \(2,\)"):
        nn.PReLU(2)(chainrule.ones(2, 3))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.SoftMarginLoss(reduction="avg")


@pytest.mark.parametrize("name,arg,shape", [("PixelShuffle", 2, (2, 8, 3, 3)),
                                            ("PixelUnshuffle", 3, (1, 2, 6, 3))])
def test_pixel_shuffle_layers_match_torch(name, arg, shape):
    x = np.random.default_rng(5).normal(size=shape)
    ours = getattr(nn, name)(arg)(chainrule.tensor(x))
    theirs = getattr(torch.nn, name)(arg)(torch.tensor(x))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert repr(getattr(nn, name)(arg)) == repr(getattr(torch.nn, name)(arg))


@pytest.mark.parametrize("name,shape,kw", [
    ("InstanceNorm1d", (2, 3, 5), {}), ("InstanceNorm1d", (3, 5), {"affine": True}),
    ("InstanceNorm2d", (2, 3, 4, 4), {"affine": True}),
    ("InstanceNorm2d", (2, 3, 4, 4), {"track_running_stats": True, "momentum": 0.3}),
    ("InstanceNorm3d", (1, 2, 3, 3, 3), {}),
])
def test_instance_norm_matches_torch_train_and_eval(name, shape, kw):
    x = np.random.default_rng(6).normal(size=shape) * 2 + 1
    nd = int(name[-2])
    c = shape[1] if len(shape) == nd + 2 else shape[0]
    ours = getattr(nn, name)(c, dtype=chainrule.float64, **kw)
    theirs = getattr(torch.nn, name)(c, **kw).double()
    xo, xt = chainrule.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=1e-9, atol=1e-10)
    (yo * yo.detach() ** 2).sum().backward()
    (yt * yt.detach() ** 2).sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    if kw.get("track_running_stats"):
        np.testing.assert_allclose(ours.running_mean.numpy(), theirs.running_mean.numpy(),
                                   rtol=1e-10)
        np.testing.assert_allclose(ours.running_var.numpy(), theirs.running_var.numpy(),
                                   rtol=1e-10)
        ours.eval()
        theirs.eval()
        np.testing.assert_allclose(ours(chainrule.tensor(x)).numpy(),
                                   theirs(torch.tensor(x)).detach().numpy(), rtol=1e-9)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("name,arg,shape", [("AdaptiveMaxPool1d", 3, (2, 3, 8)),
                                            ("AdaptiveMaxPool2d", (3, None), (1, 2, 7, 5)),
                                            ("AdaptiveMaxPool3d", 2, (1, 1, 5, 3, 4))])
def test_adaptive_max_pool_layers_match_torch(name, arg, shape):
    x = np.random.default_rng(7).normal(size=shape)
    xo, xt = chainrule.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = getattr(nn, name)(arg)(xo), getattr(torch.nn, name)(arg)(xt)
    np.testing.assert_array_equal(yo.detach().numpy(), yt.detach().numpy())
    yo.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xo.grad.numpy(), xt.grad.numpy())
    assert repr(getattr(nn, name)(arg)) == repr(getattr(torch.nn, name)(arg))


def test_gaussian_nll_loss_clamps_var_like_torch():
    x, t = np.array([0.5, -1.0, 2.0]), np.array([0.0, 0.0, 1.0])
    v = np.array([1e-9, 0.5, 2.0])
    vo, vt = chainrule.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    lo = nn.GaussianNLLLoss()(chainrule.tensor(x), chainrule.tensor(t), vo)
    lt = torch.nn.GaussianNLLLoss()(torch.tensor(x), torch.tensor(t), vt)
    np.testing.assert_allclose(lo.item(), lt.item(), rtol=1e-12)
    lo.backward()
    lt.backward()
    np.testing.assert_allclose(vo.grad.numpy(), vt.grad.numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="negative"):
        nn.GaussianNLLLoss()(chainrule.zeros(2), chainrule.zeros(2), chainrule.tensor([1.0, -1]))


@pytest.mark.parametrize("mode,shape,kw", [
    ("bilinear", (2, 3, 4, 5), dict(scale_factor=2)),
    ("bilinear", (2, 3, 4, 5), dict(size=(3, 7), align_corners=True)),
    ("trilinear", (1, 1, 2, 3, 4), dict(scale_factor=(2, 1.5, 0.5))),
    ("linear", (2, 2, 6), dict(scale_factor=1.7, recompute_scale_factor=True)),
])
def test_linear_interpolation_and_upsample_match_torch(mode, shape, kw):
    x = np.random.default_rng(8).normal(size=shape)
    xo, xt = chainrule.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yo = chainrule.nn.functional.interpolate(xo, mode=mode, **kw)
    yt = torch.nn.functional.interpolate(xt, mode=mode, **kw)
    np.testing.assert_allclose(yo.detach().numpy(), yt.detach().numpy(), rtol=1e-12,
                               atol=1e-12)
    g = np.random.default_rng(9).normal(size=yt.shape)
    yo.backward(chainrule.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(chainrule.errors.ShapeError, match=f"mode '{mode}' needs"):
        chainrule.nn.functional.interpolate(chainrule.ones(1, 1, 2, 2, 2, 2), mode=mode,
                                            size=2)
