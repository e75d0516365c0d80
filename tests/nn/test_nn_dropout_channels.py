"""Channel dropout (issue 14): nn.Dropout1d/2d/3d and F.dropout1d/2d/3d zero whole channels,
scale the kept ones by 1/(1-p), pass gradients through the same mask, and follow PyTorch's
shape rules (compared with PyTorch where installed)."""

import numpy as np
import pytest

import chainrule
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.errors import ShapeError

CASES = [(nn.Dropout1d, (4, 16, 5), 1), (nn.Dropout1d, (16, 5), 1),
         (nn.Dropout2d, (4, 16, 3, 3), 2), (nn.Dropout3d, (2, 16, 2, 2, 2), 3),
         (nn.Dropout3d, (16, 2, 2, 2), 3)]


@pytest.mark.parametrize("cls,shape,nd", CASES, ids=lambda v: str(v))
def test_whole_channels_are_dropped_and_the_rest_scaled(cls, shape, nd):
    p = 0.25
    x = chainrule.randn(*shape, dtype=chainrule.float64, requires_grad=True)
    y = cls(p)(x)
    ratio = (y / x).detach().numpy().reshape(shape[:len(shape) - nd] + (-1,))
    per_channel = ratio[..., 0]
    assert np.allclose(ratio, per_channel[..., None])  # one factor per channel
    assert set(np.round(np.unique(per_channel), 12)) <= {0.0, round(1 / (1 - p), 12)}
    assert 0 < (per_channel == 0).sum() < per_channel.size
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (y / x).detach().numpy())


def test_channel_keep_rate_follows_p():
    y = F.dropout2d(chainrule.ones(200, 50, 1, 1), 0.3)
    assert abs(float((y == 0).float().mean()) - 0.3) < 0.02


@pytest.mark.parametrize("cls", [nn.Dropout1d, nn.Dropout2d, nn.Dropout3d])
def test_eval_and_p_zero_are_the_identity_and_p_one_zeroes(cls):
    shape = {nn.Dropout1d: (2, 3, 4), nn.Dropout2d: (2, 3, 4, 4),
             nn.Dropout3d: (2, 3, 2, 2, 2)}[cls]
    x = chainrule.randn(*shape)
    assert cls(0.5).eval()(x) is x
    assert cls(0.0)(x) is x
    assert float(cls(1.0)(x).abs().sum()) == 0.0


def test_inplace_writes_into_the_input():
    x = chainrule.ones(4, 8, 3)
    y = nn.Dropout1d(0.5, inplace=True)(x)
    assert y is x and set(np.unique(x.numpy())) <= {0.0, 2.0}


@pytest.mark.parametrize("fn,shape", [(F.dropout1d, (2, 3, 4, 5)), (F.dropout1d, (3,)),
                                      (F.dropout2d, (2, 3)), (F.dropout3d, (2, 3, 4))])
def test_wrong_rank_names_the_op_and_shape(fn, shape):
    with pytest.raises(ShapeError, match=fn.__name__ + r".*" + str(shape).replace("(", r"\(")
                       .replace(")", r"\)")):
        fn(chainrule.ones(*shape), 0.5)


def test_bad_p_is_refused():
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout3d(chainrule.ones(1, 1, 1, 1, 1), 1.5)


def test_dropout2d_on_3d_input_reads_it_as_n_c_l_like_torch():
    torch = pytest.importorskip("torch")
    x = chainrule.ones(8, 16, 5)
    with pytest.warns(UserWarning, match="dropout2d.*3-D"):
        y = F.dropout2d(x, 0.5)
    r = y.numpy()
    assert np.all(r == r[..., :1])  # one decision per (N, C), not per N
    assert 0 < (r[..., 0] == 0).sum() < r[..., 0].size
    with pytest.warns(UserWarning):
        t = torch.nn.functional.dropout2d(torch.ones(8, 16, 5), 0.5).numpy()
    assert np.all(t == t[..., :1])


def test_module_reprs_match_torch():
    torch = pytest.importorskip("torch")
    for name in ("Dropout1d", "Dropout2d", "Dropout3d"):
        assert repr(getattr(nn, name)(0.2)) == repr(getattr(torch.nn, name)(0.2))
