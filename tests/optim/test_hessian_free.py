"""HessianFree: curvature-vector products against explicit matrices, the Levenberg-Marquardt
rule, warm starts, Rosenbrock, a short deep-autoencoder run, state_dict, errors, doctests."""

import doctest
import math

import numpy as np
import pytest

import chainrule
import chainrule.nn.functional as F
from chainrule import nn
from chainrule.func import hessian, jacrev
from chainrule.optim import SGD, HessianFree

f64 = chainrule.float64


def t64(a, rg=False):
    return chainrule.tensor(np.asarray(a, dtype=np.float64), dtype=f64, requires_grad=rg)


def flat(tensors):
    return np.concatenate([np.asarray(t.tolist(), dtype=np.float64).ravel() for t in tensors])


# ---------------------------------------------------------------- a tiny network
def tiny_net(seed=0, n=5):
    rng = np.random.default_rng(seed)
    X = t64(rng.normal(size=(n, 3)))
    params = [t64(rng.normal(size=(4, 3)), True), t64(rng.normal(size=4), True),
              t64(rng.normal(size=(3, 4)), True), t64(rng.normal(size=3), True)]

    def model(W1, b1, W2, b2, x=X):
        return F.linear(F.linear(x, W1, b1).tanh(), W2, b2)

    vs = [t64(rng.normal(size=p.shape)) for p in params]
    return X, params, model, vs, rng


def explicit_jacobian(model, params):
    """J = dz/dtheta as a (numel(z), numel(theta)) matrix, by reverse mode (jacrev)."""
    J = jacrev(model, argnums=tuple(range(len(params))))(*params)
    z = model(*params)
    m = int(np.prod(z.shape))
    return np.concatenate([np.asarray(j.tolist()).reshape(m, -1) for j in J], axis=1), z


@pytest.mark.parametrize("jvp_mode", ["forward", "reverse"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_gauss_newton_product_equals_explicit(jvp_mode, loss):
    _, params, model, vs, rng = tiny_net()
    J, z = explicit_jacobian(model, params)
    n, k = z.shape
    zn = np.asarray(z.tolist())
    if loss == "mse":
        target = t64(rng.normal(size=(n, k)))
        loss_fn = lambda out: F.mse_loss(out, target)
        HL = 2.0 / (n * k) * np.eye(n * k)  # the Hessian of the mean of squares
    else:
        target = chainrule.tensor(rng.integers(0, k, n))
        loss_fn = lambda out: F.cross_entropy(out, target)
        p = np.exp(zn - zn.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        HL = np.zeros((n * k, n * k))  # block diagonal: (diag(p_i) - p_i p_i^T) / n per row
        for i in range(n):
            HL[i * k:(i + 1) * k, i * k:(i + 1) * k] = (np.diag(p[i]) - np.outer(p[i], p[i])) / n
    want = J.T @ HL @ J @ flat(vs)
    opt = HessianFree(params, curvature="gauss-newton", jvp_mode=jvp_mode)
    got = opt.curvature_vector_product(lambda: (model(*params), loss_fn), vs)
    assert [tuple(g.shape) for g in got] == [tuple(p.shape) for p in params]
    assert all(g.dtype == f64 for g in got)
    np.testing.assert_allclose(flat(got), want, rtol=1e-10, atol=1e-13)
    # G is positive semi-definite: v.Gv >= 0
    assert flat(vs) @ flat(got) >= 0


def test_gauss_newton_product_matches_torch():
    torch = pytest.importorskip("torch")
    X, params, model, vs, rng = tiny_net(1)
    target = rng.normal(size=(5, 3))
    opt = HessianFree(params)
    got = flat(opt.curvature_vector_product(
        lambda: (model(*params), lambda z: F.mse_loss(z, t64(target))), vs))
    tp = [torch.tensor(np.asarray(p.tolist()), requires_grad=True) for p in params]
    tX, tT = torch.tensor(np.asarray(X.tolist())), torch.tensor(target)

    def tmodel(W1, b1, W2, b2):
        return torch.nn.functional.linear(torch.tanh(torch.nn.functional.linear(tX, W1, b1)),
                                          W2, b2)

    tv = tuple(torch.tensor(np.asarray(v.tolist())) for v in vs)
    z, jv = torch.autograd.functional.jvp(tmodel, tuple(tp), tv)
    _, hv = torch.autograd.functional.hvp(lambda o: torch.nn.functional.mse_loss(o, tT),
                                          z.detach(), jv)
    want = torch.autograd.grad(tmodel(*tp), tp, grad_outputs=hv.clone())
    np.testing.assert_allclose(got, np.concatenate([w.numpy().ravel() for w in want]),
                               rtol=1e-10)


@pytest.mark.parametrize("jvp_mode", ["forward", "reverse"])
def test_hessian_product_equals_explicit(jvp_mode):
    _, params, model, vs, rng = tiny_net(2)
    target = t64(rng.normal(size=(5, 3)))

    def f(*ps):
        return F.mse_loss(model(*ps), target) + (ps[0] ** 3).sum() * 0.1

    H = hessian(f, argnums=tuple(range(4)))(*params)
    sizes = [int(np.prod(p.shape)) for p in params]
    Hm = np.block([[np.asarray(H[i][j].tolist()).reshape(sizes[i], sizes[j])
                    for j in range(4)] for i in range(4)])
    opt = HessianFree(params, curvature="hessian", jvp_mode=jvp_mode)
    got = opt.curvature_vector_product(lambda: f(*params), vs)
    np.testing.assert_allclose(flat(got), Hm @ flat(vs), rtol=1e-10, atol=1e-13)


def test_product_on_a_curvature_minibatch():
    """Mini-batch curvature: the product is G of the batch that curvature_fn evaluates."""
    X, params, model, vs, rng = tiny_net(3, n=8)
    target = t64(rng.normal(size=(8, 3)))
    sub = slice(2, 5)
    Xs, Ts = X[sub], target[sub]
    J, z = explicit_jacobian(lambda *ps: model(*ps, x=Xs), params)
    want = J.T @ (2.0 / z.numel() * J) @ flat(vs)
    opt = HessianFree(params)
    got = opt.curvature_vector_product(
        lambda: (model(*params, x=Xs), lambda o: F.mse_loss(o, Ts)), vs)
    np.testing.assert_allclose(flat(got), want, rtol=1e-10)


def test_unused_parameter_gets_zero_curvature():
    w = t64([1.0, 2.0], True)
    unused = t64([3.0], True)
    opt = HessianFree([w, unused])
    got = opt.curvature_vector_product(lambda: (w * 3, lambda z: (z ** 2).sum()),
                                       [t64([1.0, 1.0]), t64([1.0])])
    np.testing.assert_allclose(flat(got), [18.0, 18.0, 0.0])


# ---------------------------------------------------------------- the damping rule
A2 = np.array([[3.0, 1.0], [1.0, 2.0]])
B2 = np.array([1.0, -1.0])


def quadratic_problem(scale, lam, **kw):
    """f(w) = 1/2 w.A w - b.w, with curvature_fn returning scale * f (so B = scale * A)."""
    w = t64([0.5, 0.5], True)
    A, b = t64(A2), t64(B2)

    def f():
        return 0.5 * (w * (A @ w)).sum() - (b * w).sum()

    opt = HessianFree([w], curvature="hessian", damping=lam, **kw)

    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss

    return w, opt, closure, (lambda: f() * scale)


@pytest.mark.parametrize("scale,factor", [(1.0, 2 / 3), (2 / 3, 1.0), (0.4, 1.5)])
def test_levenberg_marquardt_rule(scale, factor):
    """With B = c A (and small lambda) the model's step gives rho ~ 2 - 1/c: 1 (a good model:
    lambda * 2/3), 0.5 (lambda unchanged), -0.5 (a bad model: lambda * 3/2)."""
    lam = 1e-3
    w, opt, closure, curv = quadratic_problem(scale, lam, backtrack=False, line_search=False)
    w0 = np.array(w.tolist())
    g = A2 @ w0 - B2
    f = lambda x: 0.5 * x @ A2 @ x - B2 @ x
    x = -np.linalg.solve(scale * A2 + lam * np.eye(2), g)  # CG solves 2-D exactly
    rho = (f(w0 + x) - f(w0)) / (g @ x + 0.5 * x @ (scale * A2) @ x)
    opt.step(closure, curv)
    st = opt.state[w]
    assert st["rho"] == pytest.approx(rho, rel=1e-8)
    assert abs(rho - (2 - 1 / scale)) < 0.01
    assert opt.damping == pytest.approx(lam * factor, rel=1e-12)
    np.testing.assert_allclose(w.tolist(), w0 + x, rtol=1e-10)


def test_damping_floor_and_fixed_damping():
    w, opt, closure, curv = quadratic_problem(1.0, 1e-3, min_damping=9e-4)
    opt.step(closure, curv)
    assert opt.damping == 9e-4  # 1e-3 * 2/3 clipped at the floor
    w, opt, closure, curv = quadratic_problem(1.0, 1e-3, adapt_damping=False)
    opt.step(closure, curv)
    assert opt.damping == 1e-3 and opt.state[w]["rho"] == pytest.approx(1.0, rel=1e-6)


def test_line_search_rejects_a_bad_step():
    """A curvature 100x too small overshoots: the line search shrinks the step, lambda grows."""
    w, opt, closure, curv = quadratic_problem(0.01, 1e-6, backtrack=False, max_ls=3)
    before = float(closure())
    opt.step(closure, curv)
    st = opt.state[w]
    assert st["step_size"] == 0.0 and st["rho"] < 0.25  # 0.8^3 is not enough: rejected
    assert float(closure()) == before
    assert opt.damping == pytest.approx(1.5e-6)
    w, opt, closure, curv = quadratic_problem(0.01, 1e-6, backtrack=False)
    opt.step(closure, curv)
    assert 0 < opt.state[w]["step_size"] < 1 and float(closure()) < before


# ---------------------------------------------------------------- CG details
def test_warm_start_uses_decayed_previous_solution():
    rng = np.random.default_rng(0)
    n = 12
    M = rng.normal(size=(n, n))
    A = t64(M @ M.T + np.eye(n))
    w = t64(rng.normal(size=n), True)
    opt = HessianFree([w], curvature="hessian", max_cg_iters=3, damping=0.1, cg_decay=0.5)
    f = lambda: 0.5 * (w * (A @ w)).sum()

    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss

    seen = []
    product = opt._product

    def spy(fn, vs, curvature, mode):
        seen.append(np.concatenate([np.asarray(v).ravel() for v in vs]))
        return product(fn, vs, curvature, mode)

    opt._product = spy
    opt.step(closure, f)
    st = opt.state[w]
    assert st["cg_iters"] == 3 and st["curvature_products"] == 3
    last = np.array(st["cg_init"].tolist())
    seen.clear()
    opt.step(closure, f)
    np.testing.assert_allclose(seen[0], 0.5 * last, rtol=1e-12)  # A x0 with x0 = 0.5 x_prev
    # cg_decay=0: a cold start, the first product is along -g
    opt2 = HessianFree([w], curvature="hessian", max_cg_iters=3, cg_decay=0.0)
    seen.clear()
    opt2._product = spy
    closure()
    g = np.array(w.grad.tolist())
    opt2.step(closure, f)
    np.testing.assert_allclose(seen[0], -g, rtol=1e-12)


def test_cg_relative_progress_rule_stops_early():
    """On a well-conditioned problem CG stops by the relative-progress rule, long before
    max_cg_iters (and never before its k = 10 look-back window)."""
    rng = np.random.default_rng(1)
    n = 200
    d = t64(np.linspace(1.0, 50.0, n))
    w = t64(rng.normal(size=n), True)
    f = lambda: 0.5 * (d * w * w).sum() + (w ** 4).sum() * 1e-3
    opt = HessianFree([w], curvature="hessian", damping=1e-4, cg_tol=5e-4)

    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss

    opt.step(closure, f)
    assert 10 < opt.state[w]["cg_iters"] < 100


def test_negative_curvature_falls_back_to_the_gradient():
    """Hessian curvature at a saddle: CG meets non-positive curvature at once and the step
    goes along -g (then the line search), still lowering f."""
    w = t64([0.3, 0.0], True)
    f = lambda: -(w[0] ** 2) + w[1] ** 2 + w[0] ** 4
    opt = HessianFree([w], curvature="hessian", damping=1e-3)

    def closure():
        opt.zero_grad()
        loss = f()
        loss.backward()
        return loss

    before = float(closure())
    opt.step(closure, f)
    assert float(closure()) < before
    assert opt.state[w]["cg_iters"] == 0


# ---------------------------------------------------------------- proofs, shortened
def rosenbrock_run(curvature, steps=60):
    x = t64([-1.2, 1.0], True)
    opt = HessianFree([x], curvature=curvature, damping=1.0, tolerance_grad=1e-12)

    def loss_of():
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    def closure():
        opt.zero_grad()
        loss = loss_of()
        loss.backward()
        return loss

    if curvature == "gauss-newton":
        def curvature_fn():
            return chainrule.stack([1 - x[0], 10 * (x[1] - x[0] ** 2)]), \
                lambda r: (r ** 2).sum()
    else:
        curvature_fn = loss_of
    for _ in range(steps):
        opt.step(closure, curvature_fn)
    return np.array(x.tolist()), float(loss_of()), opt.state[x]


@pytest.mark.parametrize("curvature", ["gauss-newton", "hessian"])
def test_rosenbrock_reaches_the_minimum(curvature):
    x, loss, st = rosenbrock_run(curvature)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-8)
    assert loss < 1e-16
    assert st["n_iter"] < 60  # stopped moving once the gradient vanished


def test_rosenbrock_beats_sgd_per_gradient_evaluation():
    _, hf_loss, st = rosenbrock_run("gauss-newton", steps=25)
    cost = st["func_evals"] + 2 * st["curvature_products"]
    x = t64([-1.2, 1.0], True)
    opt = SGD([x], lr=1e-3, momentum=0.9)
    for _ in range(int(cost)):
        opt.zero_grad()
        ((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2).backward()
        opt.step()
    sgd_loss = float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)
    assert hf_loss < 1e-3 * sgd_loss


def test_deep_autoencoder_loss_drops_well_below_start():
    """A shortened version of the example: 8 Linear layers (tanh, sigmoid output) on 300
    digits, gradient on all of them, Gauss-Newton curvature on a quarter, cycled."""
    from chainrule.data import load_digits

    X, _ = load_digits()
    X = X[:300]
    chainrule.manual_seed(0)
    sizes = (64, 32, 16, 8, 4, 8, 16, 32, 64)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b), nn.Tanh() if i < len(sizes) - 2 else nn.Sigmoid()]
    model = nn.Sequential(*layers)
    opt = HessianFree(model.parameters(), damping=1e-3)

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(model(X), X)
        loss.backward()
        return loss

    start = float(closure())
    mean_image = float(F.mse_loss(X.mean(0, keepdim=True).expand(300, 64), X))
    for k in range(25):
        xc = X[(k % 4) * 75:(k % 4 + 1) * 75]
        opt.step(closure, lambda xc=xc: (model(xc), lambda z: F.mse_loss(z, xc)))
    end = float(closure())
    assert math.isfinite(end)
    # well below the plateau of predicting the mean image (itself ~0.4 of the start)
    assert end < 0.7 * mean_image < 0.5 * start


# ---------------------------------------------------------------- bookkeeping
def test_counters_and_returned_loss():
    w, opt, closure, curv = quadratic_problem(1.0, 1e-3)
    first = opt.step(closure, curv)
    st = opt.state[w]
    assert float(first) == pytest.approx(0.5 * 0.5 ** 2 * A2.sum())
    assert st["n_iter"] == 1 and st["curvature_products"] == st["cg_iters"] == 2
    assert st["func_evals"] >= 2  # the start and at least one trial point
    assert st["loss"] == pytest.approx(float(closure()))


def test_nothing_moves_at_a_stationary_point():
    w, opt, closure, curv = quadratic_problem(1.0, 1e-3)
    with chainrule.no_grad():
        w.copy_(t64(np.linalg.solve(A2, B2)))
    before = w.tolist()
    opt.step(closure, curv)
    assert w.tolist() == before and opt.state[w].get("n_iter", 0) == 0


def test_state_dict_round_trip_continues_identically():
    def make():
        return quadratic_problem(1.0, 0.5, max_cg_iters=1)

    w1, opt1, c1, f1 = make()
    for _ in range(2):
        opt1.step(c1, f1)
    w2, opt2, c2, f2 = make()
    with chainrule.no_grad():
        w2.copy_(w1)
    opt2.load_state_dict(opt1.state_dict())
    assert opt2.damping == opt1.damping
    opt1.step(c1, f1)
    opt2.step(c2, f2)
    assert w2.tolist() == w1.tolist()


def test_float32_parameters():
    w = chainrule.tensor([0.5, -0.5], requires_grad=True)
    t = chainrule.tensor([1.0, 2.0])
    opt = HessianFree([w], damping=1e-4)

    def closure():
        opt.zero_grad()
        loss = ((w * 2 - t) ** 2).sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure, lambda: (w * 2, lambda z: ((z - t) ** 2).sum()))
    assert w.dtype == chainrule.float32
    np.testing.assert_allclose(w.tolist(), [0.5, 1.0], atol=1e-4)


# ---------------------------------------------------------------- errors
def test_bad_constructor_arguments():
    w = t64([1.0], True)
    with pytest.raises(ValueError, match="curvature must be one of"):
        HessianFree([w], curvature="fisher")
    with pytest.raises(ValueError, match="jvp_mode must be one of"):
        HessianFree([w], jvp_mode="sideways")
    with pytest.raises(ValueError, match="invalid damping"):
        HessianFree([w], damping=-1.0)
    with pytest.raises(ValueError, match="invalid cg_decay"):
        HessianFree([w], cg_decay=1.5)
    with pytest.raises(ValueError, match="max_cg_iters must be a positive integer"):
        HessianFree([w], max_cg_iters=0)
    with pytest.raises(TypeError, match="parameter 0 has dtype int64"):
        HessianFree([chainrule.tensor([1, 2])])
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        HessianFree([{"params": [w]}, {"params": [t64([2.0], True)]}])


def test_bad_step_arguments():
    w = t64([1.0, 2.0], True)
    opt = HessianFree([w])

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()
    with pytest.raises(TypeError, match="needs curvature_fn"):
        opt.step(closure)
    with pytest.raises(TypeError, match=r"must return \(outputs, loss_fn\)"):
        opt.step(closure, lambda: (w ** 2).sum())
    with pytest.raises(TypeError, match=r"loss_fn .* must map the outputs to a single-element"):
        opt.step(closure, lambda: (w * 1, lambda z: z * 2))
    hopt = HessianFree([w], curvature="hessian")
    with pytest.raises(ValueError, match="single-element loss, got shape \\(2,\\)"):
        hopt.step(closure, lambda: w ** 2)
    with pytest.raises(TypeError, match="must return the loss as a Tensor"):
        hopt.step(closure, lambda: (w * 1, lambda z: z.sum()))
    assert w.tolist() == [1.0, 2.0]  # nothing moved on any of these
    with pytest.raises(ValueError, match="got 2 vector"):
        opt.curvature_vector_product(lambda: (w * 1, lambda z: z.sum()), [w, w])
    with pytest.raises(ValueError, match="tangent 0 has shape"):
        opt.curvature_vector_product(lambda: (w * 1, lambda z: z.sum()), [t64([1.0])])


def test_a_failing_closure_leaves_the_parameters_where_they_were():
    w, opt, closure, curv = quadratic_problem(1.0, 1e-3)
    calls = [0]

    def flaky():
        calls[0] += 1
        if calls[0] == 2:  # the first trial point
            raise RuntimeError("data loader died")
        return closure()

    before = w.tolist()
    with pytest.raises(RuntimeError, match="data loader died"):
        opt.step(flaky, curv)
    assert w.tolist() == before


def test_docstring_examples():
    import chainrule.optim.hessian_free as mod

    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
