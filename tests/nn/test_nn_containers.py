"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict."""

from collections import OrderedDict

import numpy as np
import pytest

import chainrule
from chainrule import nn


def test_sequential_forward_index_slice_len_iter():
    a, r, b = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = nn.Sequential(a, r, b)
    x = chainrule.randn(5, 3)
    np.testing.assert_allclose(seq(x).detach().numpy(), b(r(a(x))).detach().numpy())
    assert len(seq) == 3 and list(seq) == [a, r, b]
    assert seq[0] is a and seq[-1] is b
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [r, b]
    assert list(sub._modules) == ["1", "2"]  # slices keep names, as in PyTorch
    with pytest.raises(IndexError, match="index 3 is out of range"):
        seq[3]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight",
                                                      "2.bias"]


def test_sequential_ordered_dict_and_mutation():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(seq._modules) == ["fc", "act"] and seq.fc is seq[0]
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias"]
    seq.append(nn.ReLU())
    assert list(seq._modules) == ["fc", "act", "2"]
    seq[1] = nn.Sigmoid()
    assert isinstance(seq.act, nn.Sigmoid)
    del seq[0]  # renumbers, as PyTorch does
    assert list(seq._modules) == ["0", "1"] and not hasattr(seq, "fc")
    assert isinstance(seq[0], nn.Sigmoid)
    seq.insert(0, nn.Identity())
    assert [type(m).__name__ for m in seq] == ["Identity", "Sigmoid", "ReLU"]
    seq.insert(-1, nn.Tanh())
    assert [type(m).__name__ for m in seq] == ["Identity", "Sigmoid", "Tanh", "ReLU"]
    popped = seq.pop(1)
    assert isinstance(popped, nn.Sigmoid) and len(seq) == 3
    seq.extend([nn.ELU()])
    both = seq + nn.Sequential(nn.GELU())
    assert len(both) == 5 and isinstance(both[-1], nn.GELU)
    seq += nn.Sequential(nn.SiLU())
    assert len(seq) == 5
    with pytest.raises(TypeError, match="Sequential"):
        seq + [nn.ReLU()]
    with pytest.raises(IndexError):
        seq.insert(10, nn.ReLU())


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.ReLU())
    layers.extend([nn.Tanh()])
    assert [type(m).__name__ for m in layers] == ["Linear"] * 3 + ["ReLU", "Tanh"]
    assert isinstance(layers[-1], nn.Tanh)
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    layers[0] = nn.Identity()
    assert isinstance(layers[0], nn.Identity)
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2", "3"]
    layers.insert(1, nn.GELU())
    assert isinstance(layers[1], nn.GELU) and list(layers._modules) == [str(i) for i in
                                                                        range(5)]
    assert isinstance(layers.pop(1), nn.GELU)
    layers += [nn.SiLU()]
    combined = layers + nn.ModuleList([nn.ELU()])
    assert len(combined) == len(layers) + 1
    with pytest.raises(TypeError, match="iterable"):
        layers.extend(nn.ReLU())
    with pytest.raises(IndexError):
        layers[99]


def test_module_list_repr_groups_repeats():
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)] + [nn.ReLU()])
    assert repr(ml) == ("ModuleList(\n"
                        "  (0-2): 3 x Linear(in_features=2, out_features=2, bias=True)\n"
                        "  (3): ReLU()\n)")
    assert repr(nn.ModuleList()) == "ModuleList()"
    assert repr(nn.Sequential()) == "Sequential()"


def test_module_dict():
    d = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.ReLU()})
    assert list(d) == ["a", "b"] and list(d.keys()) == ["a", "b"]
    assert "a" in d and "z" not in d and len(d) == 2
    assert isinstance(d["b"], nn.ReLU)
    d["c"] = nn.Tanh()
    assert [k for k, _ in d.items()] == ["a", "b", "c"]
    assert [type(v).__name__ for v in d.values()] == ["Linear", "ReLU", "Tanh"]
    d.update([("e", nn.GELU())])
    d.update(OrderedDict(f=nn.SiLU()))
    assert list(d) == ["a", "b", "c", "e", "f"]
    assert isinstance(d.pop("b"), nn.ReLU) and "b" not in d and not hasattr(d, "b")
    del d["c"]
    assert list(d) == ["a", "e", "f"]
    assert [n for n, _ in d.named_parameters()] == ["a.weight", "a.bias"]
    assert repr(nn.ModuleDict({"a": nn.ReLU()})) == "ModuleDict(\n  (a): ReLU()\n)"
    d.clear()
    assert len(d) == 0 and list(d.parameters()) == []
    with pytest.raises(KeyError, match="already exists"):
        d["keys"] = nn.ReLU()  # would shadow a method
    with pytest.raises(ValueError, match="length 3"):
        d.update([("a", nn.ReLU(), 1)])
    with pytest.raises(TypeError, match="pair"):
        d.update([nn.ReLU()])


def test_parameter_list():
    pl = nn.ParameterList([chainrule.ones(2, 3), nn.Parameter(chainrule.zeros(3))])
    assert len(pl) == 2 and all(isinstance(p, nn.Parameter) for p in pl)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"]
    pl.append(chainrule.ones(1))
    pl.extend([chainrule.ones(4)])
    pl += [chainrule.ones(5)]
    assert [p.shape for p in pl] == [(2, 3), (3,), (1,), (4,), (5,)]
    assert pl[-1].shape == (5,) and isinstance(pl[1:3], nn.ParameterList)
    pl[0] = chainrule.full((2,), 7.0)
    assert pl[0].tolist() == [7.0, 7.0] and isinstance(pl[0], nn.Parameter)
    small = nn.ParameterList([chainrule.ones(3, 4), chainrule.ones(3)])
    assert repr(small) == ("ParameterList(\n"
                           "    (0): Parameter containing: [chainrule.float32 of size 3x4]\n"
                           "    (1): Parameter containing: [chainrule.float32 of size 3]\n)")
    with pytest.raises(TypeError, match="Parameter or Tensor"):
        pl.append(3.0)
    with pytest.raises(TypeError, match="iterable"):
        pl.extend(chainrule.ones(2))

    class UsesList(nn.Module):
        def __init__(self):
            super().__init__()
            self.ws = nn.ParameterList([chainrule.ones(2) for _ in range(2)])

    assert list(UsesList().state_dict()) == ["ws.0", "ws.1"]


def test_parameter_dict():
    pd = nn.ParameterDict({"w": chainrule.ones(2), "b": chainrule.zeros(1)})
    assert list(pd) == ["w", "b"] and isinstance(pd["w"], nn.Parameter)
    assert "w" in pd and pd.get("zz") is None and len(pd) == 2
    pd["c"] = nn.Parameter(chainrule.ones(3))
    pd.update([("d", chainrule.ones(1))])
    assert list(pd.keys()) == ["w", "b", "c", "d"]
    assert [n for n, _ in pd.named_parameters()] == ["w", "b", "c", "d"]
    assert pd.pop("b").shape == (1,) and "b" not in pd
    del pd["c"]
    assert list(pd) == ["w", "d"]
    assert "(w): Parameter containing: [chainrule.float32 of size 2]" in repr(pd)
    pd.clear()
    assert len(pd) == 0
    with pytest.raises(ValueError, match="length 1"):
        pd.update([("x",)])
