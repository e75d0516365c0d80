"""The Optimizer base: groups, state, zero_grad, step(closure), state_dict, errors."""

import numpy as np
import pytest

import chainrule
from chainrule import optim
from chainrule.optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop


def P(*shape, seed=0, dtype=chainrule.float64):
    rng = np.random.default_rng(seed)
    return chainrule.tensor(rng.normal(size=shape), dtype=dtype, requires_grad=True)


def set_grads(params, seed):
    rng = np.random.default_rng(seed)
    for p in params:
        p.grad = chainrule.tensor(rng.normal(size=p.shape), dtype=p.dtype)


ALL = [
    (SGD, dict(lr=0.1, momentum=0.9)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (AdamW, dict(lr=0.01)),
    (RMSprop, dict(lr=0.01, momentum=0.5, centered=True)),
    (Adagrad, dict(lr=0.1)),
]


# ---------------------------------------------------------------- construction and groups
def test_params_as_generator_list_and_groups():
    a, b = P(2), P(3)
    opt = SGD(p for p in [a, b])
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["params"][1] is b
    opt = SGD([{"params": a}, {"params": [b], "momentum": 0.5}], lr=0.2)
    assert opt.param_groups[0]["params"] == [a]
    assert opt.param_groups[0]["momentum"] == 0 and opt.param_groups[1]["momentum"] == 0.5
    assert opt.param_groups[1]["lr"] == 0.2
    assert opt.defaults["lr"] == 0.2


def test_named_parameters():
    a, b = P(2), P(3)
    opt = Adam([("w", a), ("b", b)])
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.param_groups[0]["params"][0] is a
    with pytest.raises(ValueError, match="with names, or none"):
        Adam([("w", a), b])


@pytest.mark.parametrize("bad,exc,msg", [
    (lambda: P(2), TypeError, "single tensor of shape"),
    (lambda: [], ValueError, "empty parameter list"),
    (lambda: {P(2)}, TypeError, "not a set"),
    (lambda: [P(2), 3.0], TypeError, "parameter 1 of the group is a float"),
    (lambda: [P(2) * 2], ValueError, "non-leaf"),
    (lambda: {"params": [P(2)]}, TypeError, "got a dict"),
])
def test_bad_params(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        SGD(bad(), lr=0.1)


def test_duplicate_parameters_are_errors():
    a, b = P(2), P(3)
    with pytest.raises(ValueError, match=r"twice \(at positions 0 and 2\)"):
        SGD([a, b, a], lr=0.1)
    opt = SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="already in parameter group 0"):
        opt.add_param_group({"params": [b, a]})
    assert len(opt.param_groups) == 1  # nothing half-added
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0


def test_add_param_group_errors():
    opt = SGD([P(2)], lr=0.1)
    with pytest.raises(TypeError, match="must be a dict"):
        opt.add_param_group([P(2)])
    with pytest.raises(ValueError, match="no 'params'"):
        opt.add_param_group({"lr": 0.1})


def test_required_hyperparameter():
    class Plain(Optimizer):
        def __init__(self, params, lr=optim.required):
            super().__init__(params, {"lr": lr})

        def update(self, p, g, state, group):
            p -= group["lr"] * g

    with pytest.raises(ValueError, match="required optimization parameter lr"):
        Plain([P(2)])
    w = chainrule.tensor([1.0, 2.0], requires_grad=True)
    opt = Plain([{"params": [w], "lr": 0.5}])
    w.grad = chainrule.tensor([1.0, 1.0])
    opt.step()
    assert w.tolist() == [0.5, 1.5]


def test_subclass_without_update_is_an_error():
    class Nothing(Optimizer):
        pass

    with pytest.raises(TypeError, match=r"must define update\(param, grad, state, group\)"):
        Nothing([P(2)], {})


@pytest.mark.parametrize("cls,kw,msg", [
    (SGD, dict(lr=-1.0), "SGD: invalid learning rate -1.0"),
    (SGD, dict(momentum=-0.1), "invalid momentum"),
    (SGD, dict(nesterov=True), "Nesterov momentum requires"),
    (SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "zero dampening"),
    (Adam, dict(betas=(1.0, 0.999)), r"Adam: invalid beta parameter at index 0 1.0"),
    (Adam, dict(betas=(0.9, -0.1)), "beta parameter at index 1"),
    (Adam, dict(eps=-1e-8), "invalid epsilon"),
    (AdamW, dict(weight_decay=-1), "AdamW: invalid weight_decay"),
    (RMSprop, dict(alpha=-0.5), "RMSprop: invalid alpha"),
    (Adagrad, dict(lr_decay=-1), "Adagrad: invalid lr_decay"),
    (Adagrad, dict(initial_accumulator_value=-1), "initial_accumulator_value"),
])
def test_bad_hyperparameters(cls, kw, msg):
    with pytest.raises(ValueError, match=msg):
        cls([P(2)], **kw)


def test_tensor_hyperparameters_are_refused():
    with pytest.raises(TypeError, match="Adam: learning rate must be a real number, got Tensor"):
        Adam([P(2)], lr=chainrule.tensor(0.1))


def test_defaults_follow_pytorch():
    p = [P(2)]
    assert SGD(p).defaults["lr"] == 1e-3
    assert Adam(p).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                    amsgrad=False, maximize=False, decoupled_weight_decay=False)
    assert AdamW(p).defaults["weight_decay"] == 1e-2
    assert AdamW(p).defaults["decoupled_weight_decay"] is True
    d = RMSprop(p).defaults
    assert (d["lr"], d["alpha"], d["eps"]) == (1e-2, 0.99, 1e-8)
    d = Adagrad(p).defaults
    assert (d["lr"], d["eps"], d["initial_accumulator_value"]) == (1e-2, 1e-10, 0)


# ---------------------------------------------------------------- step and zero_grad
@pytest.mark.parametrize("cls,kw", ALL)
def test_step_updates_in_place_without_graph(cls, kw):
    a, b, c = P(3, 2), P(4, seed=1), P(2, seed=2)
    opt = cls([a, b, c], **kw)
    set_grads([a, b], 5)  # c has no gradient: skipped
    data_a, grad_a = a._data, a.grad._data.copy()
    c_before = c.detach().numpy().copy()
    v_a, v_c = a._version, c._version
    opt.step()
    assert a._data is data_a  # written in place
    assert a._version == v_a + 1 and c._version == v_c
    assert a.is_leaf and a.grad_fn is None and a.requires_grad
    np.testing.assert_array_equal(a.grad._data, grad_a)  # the gradient is left alone
    np.testing.assert_array_equal(c.detach().numpy(), c_before)
    assert c not in opt.state or not opt.state[c] or cls is Adagrad


def test_gradient_untouched_with_maximize_and_weight_decay():
    for cls, kw in [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)),
                    (Adam, dict(weight_decay=0.1, maximize=True)),
                    (RMSprop, dict(weight_decay=0.1, maximize=True, momentum=0.3)),
                    (Adagrad, dict(weight_decay=0.1, maximize=True))]:
        a = P(3)
        a.grad = chainrule.tensor([1.0, 2.0, 3.0], dtype=chainrule.float64)
        opt = cls([a], **kw)
        opt.step()
        opt.step()
        assert a.grad.tolist() == [1.0, 2.0, 3.0]


def test_momentum_buffer_does_not_alias_gradient():
    a = P(3)
    a.grad = chainrule.tensor([1.0, 2.0, 3.0], dtype=chainrule.float64)
    opt = SGD([a], lr=0.1, momentum=0.9)
    opt.step()
    a.grad._data[:] = 0
    assert opt.state[a]["momentum_buffer"].tolist() == [1.0, 2.0, 3.0]


def test_step_closure_runs_with_grad_enabled_and_returns_loss():
    w = chainrule.tensor([3.0], requires_grad=True)
    opt = SGD([w], lr=0.25)
    seen = []

    def closure():
        opt.zero_grad()
        seen.append(chainrule.is_grad_enabled())
        loss = (w * w).sum()
        loss.backward()
        return loss

    with chainrule.no_grad():
        loss = opt.step(closure)
    assert seen == [True]
    assert loss.item() == 9.0 and w.item() == 1.5
    assert opt.step() is None


def test_zero_grad():
    a, b = P(2), P(3)
    opt = SGD([a, b], lr=0.1)
    (a.sum() * 2 + b.sum()).backward()
    g = a.grad
    opt.zero_grad(set_to_none=False)
    assert a.grad is g and a.grad.tolist() == [0.0, 0.0] and b.grad.tolist() == [0.0] * 3
    assert not a.grad.requires_grad
    opt.zero_grad()
    assert a.grad is None and b.grad is None
    opt.zero_grad()  # no gradients: fine


def test_zero_grad_detaches_a_grad_with_history():
    x = chainrule.tensor([2.0], requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.grad_fn is not None
    opt = SGD([x], lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert x.grad.grad_fn is None and x.grad.tolist() == [0.0]


def test_training_converges():
    rng = np.random.default_rng(0)
    X = chainrule.tensor(rng.normal(size=(64, 3)))
    w_true = chainrule.tensor([[1.0], [-2.0], [0.5]], dtype=chainrule.float64)
    y = X @ w_true
    for cls, kw in ALL:
        w = chainrule.zeros(3, 1, dtype=chainrule.float64, requires_grad=True)
        opt = cls([w], **dict(kw, lr=kw["lr"] * (10 if cls in (Adam, AdamW) else 1)))
        for _ in range(300):
            opt.zero_grad()
            loss = ((X @ w - y) ** 2).mean()
            loss.backward()
            opt.step()
        assert loss.item() < 1e-2, (cls.__name__, loss.item())


def test_repr():
    opt = SGD([P(2)], lr=0.1)
    r = repr(opt)
    assert r.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.1" in r and "params" not in r


# ---------------------------------------------------------------- state_dict
@pytest.mark.parametrize("cls,kw", ALL)
def test_state_dict_layout(cls, kw):
    a, b, c = P(3, 2), P(4, seed=1), P(2, seed=2)
    opt = cls([{"params": [a, b]}, {"params": [c], "lr": 0.5}], **kw)
    set_grads([a, c], 1)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.5
    assert set(sd["state"]) == ({0, 1, 2} if cls is Adagrad else {0, 2})
    for st in sd["state"].values():
        for v in st.values():
            assert isinstance(v, (chainrule.Tensor, int, float))
    assert sd["state"][0]["step" if cls is not SGD else "momentum_buffer"] is not None
    assert "params" in opt.param_groups[0]  # packing did not change the optimizer


@pytest.mark.parametrize("cls,kw", ALL)
def test_resume_from_state_dict_is_exact(cls, kw):
    def make():
        a, b = P(3, 2), P(4, seed=1)
        return [a, b], cls([{"params": [a]}, {"params": [b], "lr": 0.05}], **kw)

    params, opt = make()
    for t in range(6):
        set_grads(params, t)
        opt.step()
    straight = [p.detach().numpy().copy() for p in params]

    params, opt = make()
    for t in range(3):
        set_grads(params, t)
        opt.step()
    sd = opt.state_dict()
    saved = [p.detach().numpy().copy() for p in params]
    params2, opt2 = make()
    for p, s in zip(params2, saved):
        p._data[...] = s
    opt2.param_groups[0]["lr"] = 123.0  # overwritten by the load
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    for t in range(3, 6):
        set_grads(params2, t)
        opt2.step()
    for p, s in zip(params2, straight):
        np.testing.assert_array_equal(p.detach().numpy(), s)
    # the loaded state is a copy: the first optimiser is untouched by the second's steps
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, chainrule.Tensor):
                assert v is not opt2.state[params2[i]][k]


def test_load_state_dict_casts_to_parameter_dtype():
    a = P(3)
    opt = Adam([a], lr=0.1)
    set_grads([a], 0)
    opt.step()
    sd = opt.state_dict()
    b = P(3, dtype=chainrule.float32)
    opt32 = Adam([b], lr=0.1)
    opt32.load_state_dict(sd)
    st = opt32.state[b]
    assert st["exp_avg"].dtype == chainrule.float32 and st["step"] == 1
    np.testing.assert_allclose(st["exp_avg"].numpy(), sd["state"][0]["exp_avg"].numpy(),
                               rtol=1e-6)


def test_load_state_dict_turns_a_tensor_step_into_a_number():
    a = P(3)
    opt = Adam([a], lr=0.1)
    set_grads([a], 0)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["step"] = chainrule.tensor(1.0)  # as PyTorch stores it
    opt2 = Adam([P(3)], lr=0.1)
    opt2.load_state_dict(sd)
    p2 = opt2.param_groups[0]["params"][0]
    assert opt2.state[p2]["step"] == 1 and type(opt2.state[p2]["step"]) is int
    set_grads([p2], 1)
    opt2.step()
    assert opt2.state[p2]["step"] == 2


def test_load_state_dict_accepts_string_indices_and_arrays():
    a = P(3)
    opt = SGD([a], lr=0.1, momentum=0.9)
    sd = {"state": {"0": {"momentum_buffer": np.array([1.0, 2.0, 3.0])}},
          "param_groups": [{"lr": 0.3, "params": [0]}]}
    opt.load_state_dict(sd)
    assert opt.state[a]["momentum_buffer"].tolist() == [1.0, 2.0, 3.0]
    # missing hyperparameters come from the defaults
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.3


@pytest.mark.parametrize("mutate,msg", [
    (lambda sd: sd["param_groups"].append({"params": [9], "lr": 1}),
     r"2 parameter group\(s\), but the optimizer has 1"),
    (lambda sd: sd["param_groups"][0]["params"].append(7),
     r"parameter group 0 has 3 parameter\(s\), but the optimizer's group 0 has 2"),
    (lambda sd: sd["state"][0].__setitem__("exp_avg", chainrule.zeros(5)),
     r"loaded state 'exp_avg' of parameter 0 has shape \(5,\), but the parameter is a tensor "
     r"of shape \(3,\)"),
    (lambda sd: sd["state"].__setitem__(5, {}), "entry for parameter 5"),
    (lambda sd: sd.pop("param_groups"), "no 'param_groups' entry"),
    (lambda sd: sd["state"].__setitem__("x", {}), "key 'x'"),
])
def test_load_state_dict_errors_name_the_mismatch(mutate, msg):
    a, b = P(3), P(2)
    opt = Adam([a, b], lr=0.1)
    set_grads([a, b], 0)
    opt.step()
    sd = opt.state_dict()
    sd = {"state": {k: dict(v) for k, v in sd["state"].items()},
          "param_groups": [dict(g, params=list(g["params"])) for g in sd["param_groups"]]}
    mutate(sd)
    target = Adam([P(3), P(2)], lr=0.7)
    with pytest.raises(ValueError, match=msg):
        target.load_state_dict(sd)
    # nothing half-loaded
    assert target.param_groups[0]["lr"] == 0.7 and len(target.state) == 0


def test_adamw_keeps_decoupled_decay_after_load():
    a = P(3)
    opt = Adam([a], lr=0.1)
    w = AdamW([P(3)], lr=0.1)
    w.load_state_dict(opt.state_dict())
    assert w.param_groups[0]["decoupled_weight_decay"] is True


def test_state_switch_on_after_first_step():
    """Turning on amsgrad / centering / momentum later creates the missing buffers."""
    a = P(3)
    opt = RMSprop([a], lr=0.01)
    set_grads([a], 0)
    opt.step()
    opt.param_groups[0].update(centered=True, momentum=0.9)
    set_grads([a], 1)
    opt.step()
    assert {"grad_avg", "momentum_buffer"} <= set(opt.state[a])
    b = P(3)
    opt = Adam([b], lr=0.01)
    set_grads([b], 0)
    opt.step()
    opt.param_groups[0]["amsgrad"] = True
    set_grads([b], 1)
    opt.step()
    assert "max_exp_avg_sq" in opt.state[b]


@pytest.mark.parametrize("cls,kw", ALL)
def test_scalar_and_empty_parameters(cls, kw):
    a = chainrule.tensor(2.0, dtype=chainrule.float64, requires_grad=True)
    b = chainrule.zeros(0, 3, requires_grad=True)
    opt = cls([a, b], **kw)
    for _ in range(3):
        opt.zero_grad()
        (a * a + b.sum()).backward()
        opt.step()
    assert a.shape == () and 0 < a.item() < 2.0 and b.shape == (0, 3)
