"""L-BFGS: Rosenbrock, the two-loop recursion against the explicit BFGS matrix, the line
search, agreement with torch.optim.LBFGS, state_dict, errors."""

import numpy as np
import pytest

import chainrule
from chainrule.optim import LBFGS, SGD
from chainrule.optim.lbfgs import _cubic_minimizer, _strong_wolfe

START = [-1.5, 2.0]
TIGHT = dict(max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
             line_search_fn="strong_wolfe")


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def minimise(kw, steps=1, lib="chainrule", start=START):
    """Run LBFGS on Rosenbrock; return the losses of every closure call and the final point."""
    if lib == "torch":
        torch = pytest.importorskip("torch")
        x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([x], **kw)
    else:
        x = chainrule.tensor(start, dtype=chainrule.float64, requires_grad=True)
        opt = LBFGS([x], **kw)
    losses = []

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        losses.append(loss.item())
        return loss

    for _ in range(steps):
        opt.step(closure)
    return np.array(losses), np.array(x.tolist()), opt


def test_rosenbrock_strong_wolfe_converges():
    losses, x, opt = minimise(TIGHT)
    assert np.max(np.abs(x - 1.0)) < 1e-6
    assert losses[-1] < 1e-12
    st = opt.state[opt.param_groups[0]["params"][0]]
    assert st["func_evals"] == len(losses) and st["n_iter"] < 100


def test_rosenbrock_fixed_step_converges():
    losses, x, _ = minimise(dict(lr=0.5, max_iter=50, tolerance_change=1e-15,
                                 tolerance_grad=1e-12), steps=10)
    assert np.max(np.abs(x - 1.0)) < 1e-6 and losses[-1] < 1e-12


@pytest.mark.parametrize("kw,steps", [
    (dict(line_search_fn="strong_wolfe"), 3),  # default tolerances and max_iter
    (TIGHT, 1),
    (dict(TIGHT, history_size=4), 1),  # the history ring buffer wraps many times
    (dict(lr=0.5, max_iter=20), 6),  # no line search, several calls
])
def test_trajectory_matches_torch(kw, steps):
    want, xt, topt = minimise(kw, steps, lib="torch")
    got, x, opt = minimise(kw, steps)
    # same control flow: the same number of closure calls and iterations
    assert len(got) == len(want)
    tst = topt.state[topt.param_groups[0]["params"][0]]
    st = opt.state[opt.param_groups[0]["params"][0]]
    assert (st["func_evals"], st["n_iter"]) == (tst["func_evals"], tst["n_iter"])
    # round-off differences between the two libraries are amplified along the curved valley,
    # but the runs stay together: losses agree to 1e-6 relative (or 1e-10 absolute, near 0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(x, xt, rtol=1e-6)


def test_trajectory_matches_torch_to_roundoff_at_first():
    """The first iterations agree to round-off: the same algorithm step for step."""
    want, _, _ = minimise(TIGHT, lib="torch")
    got, _, _ = minimise(TIGHT)
    np.testing.assert_allclose(got[:12], want[:12], rtol=1e-13)


# ---------------------------------------------------------------- the two-loop recursion
def explicit_inverse_hessian(pairs, h0):
    n = pairs[0][0].size
    H = h0 * np.eye(n)
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


@pytest.mark.parametrize("history_size,npairs", [(10, 4), (3, 3), (3, 8), (5, 13)])
def test_two_loop_equals_explicit_bfgs_matrix(history_size, npairs):
    rng = np.random.default_rng(history_size * 100 + npairs)
    n = 6
    A = rng.normal(size=(n, n))
    A = A @ A.T + n * np.eye(n)  # SPD: s.y > 0
    opt = LBFGS([chainrule.zeros(n, dtype=chainrule.float64, requires_grad=True)],
                history_size=history_size)
    state = {}
    pairs = []
    for _ in range(npairs):
        s = rng.normal(size=n)
        y = A @ s
        opt._push_history(state, y, s, 1.0 / (y @ s), history_size)
        pairs.append((s, y))
    kept = pairs[-history_size:]
    assert state["hist_len"] == len(kept)
    s, y = kept[-1]
    h0 = (s @ y) / (y @ y)
    g = rng.normal(size=n)
    d = opt._two_loop(g, state, h0)
    np.testing.assert_allclose(d, -explicit_inverse_hessian(kept, h0) @ g, rtol=1e-10)
    if len(kept) == n:  # n pairs from one quadratic: H is its exact inverse Hessian
        np.testing.assert_allclose(d, -np.linalg.solve(A, g), rtol=1e-8)


def test_cubic_minimizer():
    # f(x) = (x - 1)^3 - 3 (x - 1) + 7 has a local minimum at x = 2
    f = lambda x: (x - 1) ** 3 - 3 * (x - 1) + 7
    df = lambda x: 3 * (x - 1) ** 2 - 3
    for a, b in [(1.2, 3.0), (3.0, 1.2), (1.5, 2.5)]:
        assert _cubic_minimizer(a, f(a), df(a), b, f(b), df(b)) == pytest.approx(2.0)
    # clipped to the bounds; no real minimum or degenerate data: the midpoint of the bounds
    assert _cubic_minimizer(1.2, f(1.2), df(1.2), 3.0, f(3.0), df(3.0), (2.5, 4.0)) == 2.5
    assert _cubic_minimizer(0, 0, -1, 1, -1, -1, (0.0, 1.0)) == 0.5  # straight line
    assert _cubic_minimizer(1, 0, -1, 1, 0, -1, (0.0, 1.0)) == 0.5  # x1 == x2


def test_strong_wolfe_conditions_hold():
    rng = np.random.default_rng(0)
    A = np.diag([1.0, 10.0, 100.0])
    x0 = rng.normal(size=3)
    fg = lambda x: (0.5 * x @ A @ x + np.sum(x**4), A @ x + 4 * x**3)
    f0, g0 = fg(x0)
    d = -g0
    gtd = g0 @ d
    for t0 in (1e-4, 1.0, 50.0):
        f, g, t, evals = _strong_wolfe(lambda t: fg(x0 + t * d), t0, d, f0, g0, gtd)
        assert f <= f0 + 1e-4 * t * gtd
        assert abs(g @ d) <= 0.9 * abs(gtd)
        np.testing.assert_allclose(fg(x0 + t * d)[0], f)
        assert 1 <= evals <= 25


def test_line_search_respects_max_eval():
    x = chainrule.tensor(START, dtype=chainrule.float64, requires_grad=True)
    opt = LBFGS([x], max_iter=50, max_eval=7, line_search_fn="strong_wolfe")
    calls = []

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        calls.append(1)
        return loss

    for k in range(1, 4):
        opt.step(closure)
        assert len(calls) <= 7 * k


# ---------------------------------------------------------------- several tensors
def test_least_squares_over_several_tensors():
    rng = np.random.default_rng(0)
    X0, Y0 = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    W = chainrule.zeros(3, 2, dtype=chainrule.float64, requires_grad=True)
    b = chainrule.zeros(2, dtype=chainrule.float64, requires_grad=True)
    unused = chainrule.ones(4, dtype=chainrule.float64, requires_grad=True)  # grad stays None
    X, Y = chainrule.tensor(X0), chainrule.tensor(Y0)
    opt = LBFGS([W, unused, b], line_search_fn="strong_wolfe", max_iter=100,
                tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = ((X @ W + b - Y) ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    sol, *_ = np.linalg.lstsq(np.hstack([X0, np.ones((20, 1))]), Y0, rcond=None)
    np.testing.assert_allclose(W.detach().numpy(), sol[:3], atol=1e-8)
    np.testing.assert_allclose(b.detach().numpy(), sol[3], atol=1e-8)
    assert unused.tolist() == [1.0] * 4


# ---------------------------------------------------------------- state_dict
def test_resume_from_state_dict():
    kw = dict(TIGHT, history_size=5, max_iter=4)
    _, x_straight, _ = minimise(kw, steps=6)

    _, x_half, opt = minimise(kw, steps=3)
    sd = opt.state_dict()
    st = sd["state"][0]
    for v in st.values():
        assert isinstance(v, (chainrule.Tensor, int, float))
    assert st["old_dirs"].shape[1] == 2 and st["hist_len"] == 5
    x = chainrule.tensor(x_half.tolist(), dtype=chainrule.float64, requires_grad=True)
    opt2 = LBFGS([x], **kw)
    opt2.load_state_dict(sd)

    def closure():
        opt2.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    for _ in range(3):
        opt2.step(closure)
    np.testing.assert_array_equal(np.array(x.tolist()), x_straight)


# ---------------------------------------------------------------- errors
def test_errors():
    x = chainrule.zeros(2, requires_grad=True)
    y = chainrule.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="parameter groups"):
        LBFGS([{"params": [x]}, {"params": [y]}])
    opt = LBFGS([x])
    with pytest.raises(ValueError, match="parameter groups"):
        opt.add_param_group({"params": [y]})
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="line_search_fn must be None or 'strong_wolfe'"):
        LBFGS([x], line_search_fn="armijo")
    with pytest.raises(ValueError, match="history_size must be a positive integer"):
        LBFGS([x], history_size=0)
    with pytest.raises(ValueError, match="max_iter"):
        LBFGS([x], max_iter=0)


def test_already_optimal_returns_at_once():
    x = chainrule.ones(2, dtype=chainrule.float64, requires_grad=True)
    opt = LBFGS([x], line_search_fn="strong_wolfe")
    calls = []

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        calls.append(1)
        return loss

    assert opt.step(closure).item() == 0.0 and len(calls) == 1
    assert x.tolist() == [1.0, 1.0]


def test_lbfgs_beats_sgd_on_rosenbrock_per_evaluation():
    """A sanity check of the curvature model: far fewer evaluations than gradient descent."""
    losses, _, _ = minimise(dict(line_search_fn="strong_wolfe", max_iter=40))
    x = chainrule.tensor(START, dtype=chainrule.float64, requires_grad=True)
    opt = SGD([x], lr=1e-3, momentum=0.9)
    for _ in range(len(losses)):
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        opt.step()
    assert losses[-1] < 1e-3 * loss.item()
