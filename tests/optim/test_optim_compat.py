"""The rest of torch.optim (issue 14): Adadelta, Adamax, NAdam, RAdam, ASGD, Rprop follow
PyTorch's trajectory on the same gradients (20 float64 steps, 1e-10 relative; float32 to
float32 rounding), state included; SparseAdam refuses with a pointer to Adam."""

import numpy as np
import pytest
from test_optim_rules import STEPS, run_chainrule, run_torch

import chainrule
from chainrule import optim

CASES = [
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("Adadelta", dict(lr=0.5, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.1, eps=1e-3)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("NAdam", dict(lr=0.01)),
    ("NAdam", dict(lr=0.01, momentum_decay=0.05, weight_decay=0.1)),
    ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01, betas=(0.9, 0.6), weight_decay=0.1)),  # rho_t > 5 from step 7
    ("RAdam", dict(lr=0.01, betas=(0.8, 0.5), weight_decay=0.1, decoupled_weight_decay=True)),
    ("ASGD", dict(lr=0.05)),
    ("ASGD", dict(lr=0.05, lambd=0.01, alpha=0.5, t0=5, weight_decay=0.1)),
    ("ASGD", dict(lr=0.05, t0=3, maximize=True)),
    ("Rprop", dict()),
    ("Rprop", dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2))),
    ("Rprop", dict(lr=0.1, maximize=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, kw in CASES]


def _run_torch_float64(name, kw):
    """PyTorch keeps NAdam's mu_product and ASGD's eta/mu as scalar tensors of the default
    dtype (float32 unless changed), so the float64 comparison runs with float64 as PyTorch's
    default dtype."""
    torch = pytest.importorskip("torch")
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return run_torch(name, kw)
    finally:
        torch.set_default_dtype(prev)


@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_trajectory_and_state_match_torch(name, kw):
    want, topt = _run_torch_float64(name, kw)
    got, opt = run_chainrule(name, kw)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-300)
    for p, tp in zip(opt.param_groups[0]["params"], topt.param_groups[0]["params"]):
        tstate = topt.state[tp]
        assert set(opt.state[p]) == set(tstate)
        for key, val in opt.state[p].items():
            tval = tstate[key]
            if key == "step":
                assert val == float(tval) == STEPS
            elif isinstance(val, float):
                np.testing.assert_allclose(val, float(tval), rtol=1e-10)
            else:
                np.testing.assert_allclose(val.numpy(), tval.double().numpy(), rtol=1e-10,
                                           atol=1e-300)


@pytest.mark.parametrize("name,kw", CASES[::3], ids=IDS[::3])
def test_float32_matches_torch(name, kw):
    want, _ = run_torch(name, kw, dtype="float32")
    got, opt = run_chainrule(name, kw, dtype=chainrule.float32)
    for p in opt.param_groups[0]["params"]:
        assert p.dtype == chainrule.float32
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"])
def test_state_dict_round_trip_continues_the_trajectory(name):
    _, opt = run_chainrule(name, {}, steps=3)
    params = opt.param_groups[0]["params"]
    sd = opt.state_dict()
    opt2 = getattr(optim, name)(params)
    opt2.load_state_dict(sd)
    before = [p.detach().numpy().copy() for p in params]
    for o in (opt, opt2):
        for p, b in zip(params, before):
            with chainrule.no_grad():
                p.copy_(chainrule.tensor(b))
            p.grad = chainrule.ones_like(p)
        o.step()
        if o is opt:
            after = [p.detach().numpy().copy() for p in params]
    for p, a in zip(params, after):
        np.testing.assert_array_equal(p.detach().numpy(), a)


@pytest.mark.parametrize("name,kw,match", [
    ("Adadelta", dict(rho=1.5), "rho"), ("Adamax", dict(betas=(1.0, 0.9)), "beta"),
    ("NAdam", dict(momentum_decay=-1), "momentum_decay"), ("RAdam", dict(eps=-1), "epsilon"),
    ("ASGD", dict(lr=-1), "learning rate"), ("Rprop", dict(etas=(1.5, 1.2)), "etas"),
])
def test_bad_hyperparameters_are_named(name, kw, match):
    with pytest.raises(ValueError, match=f"{name}.*{match}"):
        getattr(optim, name)([chainrule.zeros(2, requires_grad=True)], **kw)


def test_sparse_adam_refuses_and_points_to_adam():
    with pytest.raises(NotImplementedError, match=r"SparseAdam.*sparse gradients.*optim\.Adam"):
        optim.SparseAdam([chainrule.zeros(2, requires_grad=True)])
