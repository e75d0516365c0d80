"""torch.save / torch.load semantics (issue 14): tensor containers go to safetensors; whole
objects are pickled with a warning and load only with weights_only=False or an allow-list
(chainrule.serialization.add_safe_globals / safe_globals), as in PyTorch 2.6+."""

import io
import pickle

import numpy as np
import pytest

import chainrule
from chainrule import nn

pytestmark = pytest.mark.filterwarnings("ignore:save.*is pickled:UserWarning")


def _roundtrip(obj, **load_kw):
    buf = io.BytesIO()
    chainrule.save(obj, buf)
    buf.seek(0)
    return buf, chainrule.load(buf, **load_kw)


def test_state_dicts_stay_safetensors():
    sd = nn.Linear(3, 2).state_dict()
    buf, back = _roundtrip(sd)
    assert not buf.getvalue().startswith(b"CHAINRULE-PICKLE")
    import safetensors.numpy  # the file is a plain safetensors file

    assert set(safetensors.numpy.load(buf.getvalue())) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k].numpy(), sd[k].numpy())


def test_whole_module_saves_with_a_warning_and_loads_with_weights_only_false(tmp_path):
    torch_seed_model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    path = tmp_path / "model.pt"
    with pytest.warns(UserWarning, match=r"Sequential is not a tensor container, so it is "
                                         r"pickled.*weights_only=False.*state_dict"):
        chainrule.save(torch_seed_model, path)
    model = chainrule.load(path, weights_only=False)
    assert isinstance(model, nn.Sequential) and isinstance(model[0].weight, nn.Parameter)
    x = chainrule.randn(2, 3)
    np.testing.assert_array_equal(model(x).detach().numpy(),
                                  torch_seed_model(x).detach().numpy())
    model(x).sum().backward()  # the loaded model trains
    assert model[0].weight.grad is not None


def test_weights_only_load_of_a_pickle_is_refused_with_the_fix():
    buf = io.BytesIO()
    with pytest.warns(UserWarning):
        chainrule.save(nn.Linear(2, 2), buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError,
                       match=r"refused the global chainrule\.nn\.linear\.Linear.*"
                             r"weights_only=False.*add_safe_globals\(\[Linear\]\)"):
        chainrule.load(buf)


def test_allow_list_lets_named_classes_through():
    buf = io.BytesIO()
    with pytest.warns(UserWarning):
        chainrule.save(nn.Linear(2, 2), buf)
    data = buf.getvalue()
    with chainrule.serialization.safe_globals([nn.Linear]):
        assert isinstance(chainrule.load(io.BytesIO(data)), nn.Linear)
    with pytest.raises(pickle.UnpicklingError):  # only inside the block
        chainrule.load(io.BytesIO(data))
    chainrule.serialization.add_safe_globals([nn.Linear])
    try:
        assert isinstance(chainrule.load(io.BytesIO(data)), nn.Linear)
    finally:
        chainrule.serialization.clear_safe_globals()
    assert chainrule.serialization.get_safe_globals() == []


def test_views_and_nonleaf_tensors_pickle_like_any_tensor():
    x = chainrule.arange(6.0).reshape(2, 3)
    w = chainrule.ones(3, requires_grad=True)
    for t in (x.t(), x[:, 1], x.reshape(3, 2), x.permute(1, 0)[::2], w * 2):
        back = pickle.loads(pickle.dumps(t))
        assert back.shape == t.shape and back.dtype == t.dtype and back.is_leaf
        np.testing.assert_array_equal(back.detach().numpy(), t.detach().numpy())
    assert pickle.loads(pickle.dumps(w)).requires_grad


def test_torch_pickles_the_same_cases():
    torch = pytest.importorskip("torch")
    x = torch.arange(6.0).reshape(2, 3)
    for t in (x.t(), x[:, 1]):
        assert pickle.loads(pickle.dumps(t)).shape == t.shape


def test_a_module_that_cannot_be_pickled_names_the_fix():
    m = nn.Linear(2, 2)
    m.f = lambda v: v  # a lambda attribute cannot be pickled
    with pytest.warns(UserWarning), pytest.raises(TypeError, match=r"cannot pickle.*state_dict"):
        chainrule.save(m, io.BytesIO())


def test_io_save_stays_strict():
    with pytest.raises(TypeError, match=r"save its state_dict\(\) instead"):
        chainrule.io.save(nn.Linear(2, 2), io.BytesIO())


def test_map_location_applies_to_pickled_objects():
    _, back = _roundtrip({"m": nn.Linear(2, 2), "n": 3}, weights_only=False,
                         map_location="cpu")
    assert back["n"] == 3 and back["m"].weight.device.type == "cpu"
