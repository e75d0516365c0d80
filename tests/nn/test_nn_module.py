"""nn.Module and nn.Parameter: registry, traversal, state_dict, hooks, modes, dtype, repr."""

import copy
from collections import OrderedDict

import numpy as np
import pytest

import chainrule
from chainrule import nn


class Block(nn.Module):
    """A residual block with a buffer, as the docs show it."""

    def __init__(self, d=3):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.register_buffer("count", chainrule.zeros((), dtype=chainrule.int64))
        self.register_buffer("scratch", chainrule.zeros(d), persistent=False)

    def forward(self, x):
        return x + self.fc(self.norm(x)).relu()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(2, 3)
        self.blocks = nn.Sequential(Block(), Block())
        self.head = nn.Linear(3, 1, bias=False)
        self.scale = nn.Parameter(chainrule.ones(1))

    def forward(self, x):
        return self.head(self.blocks(self.inp(x))) * self.scale


# ---------------------------------------------------------------- Parameter
def test_parameter_takes_over_data_and_requires_grad():
    t = chainrule.tensor([1.0, 2.0])
    p = nn.Parameter(t)
    assert isinstance(p, chainrule.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf
    assert p._data is t._data  # no copy
    t[0] = 5.0  # shared memory and version counter
    assert p.tolist() == [5.0, 2.0] and p._version == t._version
    assert repr(p) == "Parameter containing:\ntensor([5., 2.], requires_grad=True)"
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    assert nn.Parameter().shape == (0,)


def test_parameter_ops_give_plain_tensors_and_deepcopy_keeps_type():
    p = nn.Parameter(chainrule.ones(2))
    assert type(p * 2) is chainrule.Tensor
    assert type(p.detach()) is chainrule.Tensor
    q = copy.deepcopy(p)
    assert type(q) is nn.Parameter and q.requires_grad and q._data is not p._data
    assert q.tolist() == p.tolist()


def test_parameter_refuses_integer_grad():
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(chainrule.tensor([1, 2]))
    assert nn.Parameter(chainrule.tensor([1, 2]), requires_grad=False).dtype == chainrule.int64


# ---------------------------------------------------------------- registry
def test_named_parameters_buffers_modules():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "inp.weight", "inp.bias", "blocks.0.fc.weight", "blocks.0.fc.bias",
                     "blocks.0.norm.weight", "blocks.0.norm.bias", "blocks.1.fc.weight",
                     "blocks.1.fc.bias", "blocks.1.norm.weight", "blocks.1.norm.bias",
                     "head.weight"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in net.named_parameters(prefix="m")][:2] == ["m.scale", "m.inp.weight"]
    assert [n for n, _ in net.named_buffers()] == ["blocks.0.count", "blocks.0.scratch",
                                                   "blocks.1.count", "blocks.1.scratch"]
    assert [n for n, _ in net.named_children()] == ["inp", "blocks", "head"]
    assert [n for n, _ in net.named_modules()] == [
        "", "inp", "blocks", "blocks.0", "blocks.0.fc", "blocks.0.norm", "blocks.1",
        "blocks.1.fc", "blocks.1.norm", "head"]
    assert len(list(net.parameters())) == 12
    assert len(list(net.buffers())) == 4
    assert len(list(net.children())) == 3
    assert len(list(net.modules())) == 10


def test_shared_parameters_and_modules_listed_once():
    lin = nn.Linear(2, 2)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert [n for n, _ in seq.named_parameters(remove_duplicate=False)] == [
        "0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
    assert len(list(seq.named_modules(remove_duplicate=False))) == 4
    # state_dict keeps both names, like PyTorch
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_attribute_registration_rules():
    m = nn.Module()
    m.w = nn.Parameter(chainrule.ones(2))
    m.sub = nn.ReLU()
    m.register_buffer("b", chainrule.zeros(1))
    m.plain = 3
    assert list(m._parameters) == ["w"] and list(m._modules) == ["sub"]
    assert list(m._buffers) == ["b"] and m.plain == 3
    # replacing a buffer with a tensor keeps it a buffer; None is allowed
    m.b = chainrule.ones(2)
    assert m._buffers["b"].shape == (2,) and m.b is m._buffers["b"]
    m.w = None
    assert m.w is None and "w" in m._parameters
    assert list(m.parameters()) == []
    # a parameter slot only takes Parameters or None
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter 'w'"):
        m.w = chainrule.ones(2)
    with pytest.raises(TypeError, match="as child module 'sub'"):
        m.sub = 3
    with pytest.raises(TypeError, match="as buffer 'b'"):
        m.b = [1.0]
    # a plain attribute can become a parameter (it leaves __dict__)
    m.plain = nn.Parameter(chainrule.zeros(1))
    assert "plain" in m._parameters and m.plain is m._parameters["plain"]
    # moving a name between kinds drops the old registration
    m.sub = nn.Parameter(chainrule.zeros(1))
    assert "sub" not in m._modules and "sub" in m._parameters


def test_registration_errors():
    m = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="must not contain a dot"):
        m.register_parameter("a.b", None)
    with pytest.raises(KeyError, match="must not be an empty string"):
        m.register_buffer("", None)
    with pytest.raises(TypeError, match="should be a string"):
        m.register_buffer(3, None)
    with pytest.raises(KeyError, match="attribute 'in_features' already exists"):
        m.register_parameter("in_features", None)
    with pytest.raises(KeyError, match="attribute 'forward' already exists"):
        m.add_module("forward", nn.ReLU())
    with pytest.raises(TypeError, match="not a Module subclass"):
        m.add_module("x", 3)
    with pytest.raises(TypeError, match="Parameter or None required"):
        m.register_parameter("p", chainrule.ones(1))
    nonleaf = nn.Parameter(chainrule.ones(1), requires_grad=False)
    nonleaf.add_(chainrule.ones(1, requires_grad=True))  # recorded: now a non-leaf
    with pytest.raises(ValueError, match="non-leaf"):
        m.register_parameter("p", nonleaf)
    with pytest.raises(TypeError, match="Tensor or None required"):
        m.register_buffer("b", np.ones(2))

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(chainrule.ones(1))

    with pytest.raises(AttributeError, match=r"before Module\.__init__"):
        Early()


def test_getattr_delattr_and_missing_forward():
    m = nn.Linear(2, 2)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope
    del m.bias
    assert "bias" not in m._parameters and not hasattr(m, "bias")
    m.x = 1
    del m.x
    assert not hasattr(m, "x")
    with pytest.raises(AttributeError, match=r'missing the required "forward"'):
        nn.ModuleList([nn.ReLU()])(chainrule.ones(1))


def test_get_submodule_parameter_buffer():
    net = Net()
    assert net.get_submodule("blocks.1.fc") is net.blocks[1].fc
    assert net.get_submodule("") is net
    assert net.get_parameter("blocks.0.norm.bias") is net.blocks[0].norm.bias
    assert net.get_buffer("blocks.1.count") is net.blocks[1].count
    with pytest.raises(AttributeError, match="no submodule `nope`"):
        net.get_submodule("blocks.nope")
    with pytest.raises(AttributeError, match="no parameter `zzz`"):
        net.get_parameter("inp.zzz")
    with pytest.raises(AttributeError, match="no buffer `weight`"):
        net.get_buffer("inp.weight")


# ---------------------------------------------------------------- state_dict
def test_state_dict_round_trip():
    a, b = Net(), Net()
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd)[:3] == ["scale", "inp.weight", "inp.bias"]
    assert "blocks.0.count" in sd and "blocks.0.scratch" not in sd  # non-persistent left out
    assert all(type(v) is chainrule.Tensor and not v.requires_grad for v in sd.values())
    assert sd["inp.weight"]._data is a.inp.weight._data  # shares memory
    assert isinstance(a.state_dict(keep_vars=True)["inp.weight"], nn.Parameter)
    w_before = b.inp.weight
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert repr(res) == "<All keys matched successfully>"
    assert b.inp.weight is w_before  # loaded in place
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and np.array_equal(v.numpy(), v2.numpy())
    x = chainrule.randn(4, 2)
    assert np.array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    # loaded values are copies: changing the source later does not touch b
    sd["scale"].fill_(7.0)
    assert a.scale.item() == 7.0 and b.scale.item() == 1.0


def test_load_state_dict_accepts_arrays_and_casts():
    m = nn.Linear(2, 1).double()
    m.load_state_dict({"weight": np.array([[1.0, 2.0]], dtype=np.float32),
                       "bias": chainrule.tensor([0.5])})
    assert m.weight.dtype == chainrule.float64 and m.weight.tolist() == [[1.0, 2.0]]
    assert m.bias.tolist() == [0.5]


def test_load_state_dict_strict_errors_name_keys_and_load_nothing():
    m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    before = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    bad = OrderedDict(m.state_dict())
    bad = {k: chainrule.ones(*v.shape) for k, v in bad.items()}
    del bad["1.bias"]
    bad["extra.weight"] = chainrule.ones(1)
    bad["0.weight"] = chainrule.ones(4, 2)
    with pytest.raises(RuntimeError) as ei:
        m.load_state_dict(bad)
    msg = str(ei.value)
    assert msg.startswith("Error(s) in loading state_dict for Sequential:")
    assert 'Missing key(s) in state_dict: "1.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert ("size mismatch for 0.weight: copying a param with shape (4, 2) from checkpoint, "
            "the shape in current model is (3, 2).") in msg
    # nothing half-done: the keys that did match were not loaded either
    for k, v in m.state_dict().items():
        assert np.array_equal(v.numpy(), before[k]), k


def test_load_state_dict_non_strict_returns_keys_but_shapes_still_checked():
    m = nn.Linear(2, 2)
    res = m.load_state_dict({"weight": chainrule.zeros(2, 2), "foo": chainrule.ones(1),
                             "weight.sub": chainrule.ones(1)}, strict=False)
    assert res.missing_keys == ["bias"]
    assert res.unexpected_keys == ["foo", "weight.sub"]
    assert m.weight.abs().sum().item() == 0
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        m.load_state_dict({"weight": chainrule.zeros(3, 2)}, strict=False)
    with pytest.raises(RuntimeError, match=r'expected a Tensor or array .* received list'):
        m.load_state_dict({"weight": [[1.0, 2.0], [3.0, 4.0]], "bias": chainrule.zeros(2)})
    with pytest.raises(TypeError, match="dict-like"):
        m.load_state_dict([("weight", chainrule.zeros(2, 2))])


def test_load_state_dict_assign():
    m = nn.BatchNorm1d(2)
    w = chainrule.tensor([3.0, 4.0])
    rm = chainrule.tensor([1.0, 1.0])
    sd = dict(m.state_dict())
    sd["weight"], sd["running_mean"] = w, rm
    m.load_state_dict(sd, assign=True)
    assert isinstance(m.weight, nn.Parameter) and m.weight._data is w._data
    assert m.weight.requires_grad
    assert m.running_mean is rm and m._buffers["running_mean"] is rm
    assert [n for n, _ in m.named_parameters()] == ["weight", "bias"]


# ---------------------------------------------------------------- modes, grads, dtype
def test_train_eval_propagate():
    net = Net()
    assert net.training and net.blocks[0].fc.training
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="boolean"):
        net.train("yes")


def test_zero_grad_and_requires_grad_():
    net = Net()
    net(chainrule.randn(3, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and p.grad.abs().sum().item() == 0 for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    net.requires_grad_()
    assert all(p.requires_grad for p in net.parameters())


def test_apply_visits_children_first():
    order = []
    net = nn.Sequential(nn.Linear(1, 1), nn.Sequential(nn.ReLU()))
    net.apply(lambda m: order.append(type(m).__name__))
    assert order == ["Linear", "ReLU", "Sequential", "Sequential"]


def test_to_dtype_keeps_parameter_identity_and_int_buffers():
    net = Net()
    params = list(net.parameters())
    net(chainrule.randn(2, 2)).sum().backward()
    assert net.to(chainrule.float64) is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == chainrule.float64 for p in net.parameters())
    assert all(p.grad.dtype == chainrule.float64 for p in net.parameters())
    assert net.blocks[0].count.dtype == chainrule.int64  # only floats change dtype
    assert net.blocks[0].scratch.dtype == chainrule.float64
    out = net(chainrule.randn(2, 2, dtype=chainrule.float64))
    assert out.dtype == chainrule.float64
    net.float()
    assert net.inp.weight.dtype == chainrule.float32
    net.to(dtype="float64")
    assert net.inp.weight.dtype == chainrule.float64
    net.to(chainrule.zeros(1, dtype=chainrule.float32))
    assert net.inp.weight.dtype == chainrule.float32
    net.half()
    assert net.head.weight.dtype == chainrule.float16
    assert net.to("cpu").inp.weight.device == chainrule.device("cpu")
    assert net.cpu() is net
    with pytest.raises(TypeError, match="floating point"):
        net.to(chainrule.int64)
    with pytest.raises(TypeError, match="unexpected keyword"):
        net.to(memory_format=None)


def test_deepcopy_module_is_independent():
    net = Net()
    twin = copy.deepcopy(net)
    assert twin.inp.weight is not net.inp.weight
    assert twin.inp.weight is twin._modules["inp"]._parameters["weight"]
    assert twin.inp.weight is twin.inp.__dict__["weight"]
    with chainrule.no_grad():
        twin.inp.weight.fill_(0.0)
    assert net.inp.weight.abs().sum().item() > 0


# ---------------------------------------------------------------- hooks
def test_forward_hooks_order_modify_and_remove():
    m = nn.Linear(2, 2)
    calls = []

    def pre(mod, args):
        calls.append("pre")
        return (args[0] * 0,)

    def pre_first(mod, args):
        calls.append("pre_first")

    def post(mod, args, out):
        calls.append("post")
        assert args[0].abs().sum().item() == 0
        return out + 100

    h1 = m.register_forward_pre_hook(pre)
    h0 = m.register_forward_pre_hook(pre_first, prepend=True)
    h2 = m.register_forward_hook(post)
    out = m(chainrule.ones(1, 2))
    assert calls == ["pre_first", "pre", "post"]
    np.testing.assert_allclose(out.detach().numpy(), m.bias.detach().numpy()[None] + 100,
                               rtol=1e-6)
    for h in (h0, h1, h2):
        h.remove()
    h2.remove()  # twice is fine
    calls.clear()
    m(chainrule.ones(1, 2))
    assert calls == []


def test_forward_hooks_with_kwargs_and_single_value_return():
    class Scale(nn.Module):
        def forward(self, x, *, factor=1.0):
            return x * factor

    m = Scale()
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"factor": 3.0}),
                                with_kwargs=True)
    seen = {}
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.update(kwargs),
                            with_kwargs=True)
    assert m(chainrule.ones(1)).item() == 3.0 and seen == {"factor": 3.0}
    m2 = nn.Identity()
    m2.register_forward_pre_hook(lambda mod, args: args[0] + 1)  # non-tuple: becomes (x,)
    assert m2(chainrule.zeros(1)).item() == 1.0
    m3 = Scale()
    m3.register_forward_pre_hook(lambda mod, args, kwargs: 5, with_kwargs=True)
    with pytest.raises(RuntimeError, match="tuple of"):
        m3(chainrule.ones(1))


def test_forward_hook_always_call_runs_on_error():
    class Boom(nn.Module):
        def forward(self, x):
            raise ValueError("boom")

    m = Boom()
    seen = []
    m.register_forward_hook(lambda mod, args, out: seen.append(out), always_call=True)
    m.register_forward_hook(lambda mod, args, out: seen.append("never"))
    with pytest.raises(ValueError, match="boom"):
        m(chainrule.ones(1))
    assert seen == [None]


def test_hook_handle_context_manager():
    m = nn.Identity()
    seen = []
    with m.register_forward_hook(lambda mod, a, o: seen.append(1)):
        m(chainrule.ones(1))
    m(chainrule.ones(1))
    assert seen == [1]


# ---------------------------------------------------------------- repr
def test_nested_repr_like_pytorch():
    net = Net()
    expected = """Net(
  (inp): Linear(in_features=2, out_features=3, bias=True)
  (blocks): Sequential(
    (0): Block(
      (fc): Linear(in_features=3, out_features=3, bias=True)
      (norm): LayerNorm((3,), eps=1e-05, elementwise_affine=True, bias=True)
    )
    (1): Block(
      (fc): Linear(in_features=3, out_features=3, bias=True)
      (norm): LayerNorm((3,), eps=1e-05, elementwise_affine=True, bias=True)
    )
  )
  (head): Linear(in_features=3, out_features=1, bias=False)
)"""
    assert repr(net) == expected
    assert repr(nn.Module()) == "Module()"

    class Multi(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def extra_repr(self):
            return "a=1\nb=2"

    assert repr(Multi()) == "Multi(\n  a=1\n  b=2\n  (act): ReLU()\n)"


def test_module_call_overhead_is_small():
    # the call path with no hooks is two dict truth tests and forward
    m = nn.Identity()
    x = chainrule.ones(1)
    assert m(x) is x
    assert not m._forward_pre_hooks and not m._forward_hooks


def test_train_calls_children_overrides():
    class FrozenNorm(nn.Module):
        """Keeps its BatchNorm in eval mode, a common PyTorch idiom."""

        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

        def train(self, mode=True):
            super().train(mode)
            self.bn.eval()
            return self

    net = nn.Sequential(nn.Linear(2, 2), FrozenNorm())
    net.train()
    assert net[0].training and net[1].training and not net[1].bn.training
