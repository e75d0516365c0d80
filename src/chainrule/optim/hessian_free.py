"""Hessian-free optimisation (truncated Newton), in the style of Martens (2010).

J. Martens, "Deep learning via Hessian-free optimization", ICML 2010 (sections 4.1-4.6), and
J. Martens & I. Sutskever, "Training deep and recurrent networks with Hessian-free
optimization", 2012 (the line search of section 8.8).

Each step minimises a damped quadratic model of the objective ``f`` around ``theta``,

    phi(x) = g.x + 1/2 x.(B + lambda I) x,        g = grad f(theta),

by conjugate gradient, using only curvature-vector products ``B v`` (the matrix ``B`` is never
formed). ``B`` is either

* the Gauss-Newton matrix, for an objective ``f(theta) = L(z(theta))`` with ``z`` the model's
  outputs and ``L`` convex in ``z`` (mean squared error, cross-entropy on logits):
  ``G v = J^T (H_L (J v))`` with ``J = dz/dtheta``, ``H_L = d2L/dz2``. ``J v`` comes from one
  forward-mode pass through the model (each primitive's jvp rule), ``H_L u`` from a
  Hessian-vector product of ``L`` alone in output space, ``J^T w`` from one backward pass.
  ``G`` is positive semi-definite, so CG is always well posed; or
* the Hessian, ``H v`` by forward-over-reverse (a forward-mode pass through the gradient
  computation), which can be indefinite (CG then stops at the first direction of non-positive
  curvature).

``jvp_mode="reverse"`` computes the same products with reverse mode only (double backward,
and ``J v`` by the double-vjp trick): slower, kept as a cross-check and for the benchmark.

Example:
    >>> import chainrule
    >>> from chainrule.optim import HessianFree
    >>> w = chainrule.zeros(2, dtype=chainrule.float64, requires_grad=True)
    >>> A = chainrule.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]], dtype=chainrule.float64)
    >>> b = chainrule.tensor([1.0, 2.0, 3.0], dtype=chainrule.float64)
    >>> opt = HessianFree([w], damping=1e-6)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((A @ w - b) ** 2).sum()
    ...     loss.backward()
    ...     return loss
    >>> def curvature_fn():     # the model's outputs and the loss as a function of them
    ...     return A @ w, lambda z: ((z - b) ** 2).sum()
    >>> for _ in range(3):
    ...     _ = opt.step(closure, curvature_fn)
    >>> [round(v, 4) for v in w.tolist()]
    [-0.0714, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from .. import backend
from ..autograd import engine as _engine
from ..autograd import forward as _fwd
from ..autograd.grad_mode import enable_grad
from ..backend.fperrors import ieee
from ..tensor import Tensor, _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["HessianFree"]

_CURVATURES = ("gauss-newton", "hessian")
_JVP_MODES = ("forward", "reverse")


def _dot(a, b) -> float:
    return float(backend.get_array_module(a).dot(a, b))


class HessianFree(Optimizer):
    r"""Hessian-free (truncated Newton) optimiser: conjugate gradient on Gauss-Newton- or
    Hessian-vector products, with Levenberg-Marquardt damping (Martens, 2010).

    One ``step(closure, curvature_fn)``, with ``theta`` all parameters as one flat vector:

    1. ``f0 = closure()`` and ``g = grad f(theta)`` (the gradient batch).
    2. CG on ``(B + lambda I) x = -g``, i.e. minimising
       ``phi(x) = g.x + 1/2 x.(B + lambda I) x``, where ``B v`` is a curvature-vector product
       on whatever ``curvature_fn`` evaluates (it may be a smaller batch than the closure's:
       mini-batch curvature). CG starts from ``x0 = cg_decay * x_prev``, the previous step's
       last CG iterate (warm start), and stops at iteration ``i`` when (Martens, sec. 4.4)::

           i > k,  phi(x_i) < 0  and  (phi(x_i) - phi(x_{i-k})) / phi(x_i) < k * cg_tol,
           k = max(10, 0.1 i)

       or at ``max_cg_iters``, or when the residual vanishes, or (Hessian only) at a
       direction of non-positive curvature (keeping the iterate so far; on the very first
       direction, ``x = -s g`` with ``s = |g|^2 / |g.A g|``). ``phi(x_i) = 1/2 x_i.(r_i + g)``
       comes free from the CG residual ``r_i = (B + lambda I) x_i + g``.
    3. Backtracking over CG iterates (``backtrack=True``, Martens sec. 4.6): the iterates
       ``x_i`` for ``i = ceil(1.3^j)`` and the last one are kept; ``f`` is evaluated at
       ``theta + x`` from the last kept iterate backwards while it keeps decreasing, and the
       best is taken (one closure call each). With ``backtrack=False`` the last iterate.
    4. Levenberg-Marquardt damping, from the reduction ratio of that step ``x``::

           rho = (f(theta + x) - f0) / (g.x + 1/2 x.B x)      (the undamped model)
           lambda = lambda * 2/3   if rho > 3/4
           lambda = lambda * 3/2   if rho < 1/4

       (``x.B x`` needs no extra product: ``phi(x) - lambda |x|^2 / 2``).
    5. Line search (``line_search=True``, Martens & Sutskever 2012): ``alpha = lr``, shrunk by
       0.8 until ``f(theta + alpha x) <= f0 + 0.01 alpha g.x`` (at most ``max_ls`` closure
       calls); if none is found the step is rejected (``alpha = 0``). Then
       ``theta = theta + alpha x``. With ``line_search=False``, ``theta = theta + lr x``.

    Nothing moves when ``max |g| <= tolerance_grad``. The next step's warm start is the last
    CG iterate (not the backtracked one), as in Martens' code.

    The two callables:

    * ``closure()``: PyTorch's convention. Clears the gradients, computes the loss on the
      gradient batch, calls ``backward()`` and returns the loss. Also called to evaluate the
      objective at trial points (backtracking, line search), so each call counts as one
      gradient evaluation.
    * ``curvature_fn()``: evaluates the model on the curvature batch, without calling
      ``backward``. With ``curvature="gauss-newton"`` it returns ``(outputs, loss_fn)``:
      the model's output tensor ``z`` and a function ``loss_fn(z) -> loss`` convex in ``z``
      (for instance ``lambda z: F.mse_loss(z, target)``); with ``curvature="hessian"`` it
      returns the scalar loss. It is called once per curvature-vector product (with the
      parameters carrying tangents in forward mode) and must evaluate the same batch, with the
      same randomness, every time within a step; pick a new curvature batch between steps.

    Args:
        params: the tensors to optimise (one group).
        lr: the step length along the CG solution (default 1).
        damping: the initial Tikhonov damping ``lambda`` (default 1); it then adapts.
        curvature: ``"gauss-newton"`` (default) or ``"hessian"``.
        jvp_mode: ``"forward"`` (forward-mode ``J v``; forward-over-reverse ``H v``, default)
            or ``"reverse"`` (reverse mode only: double backward).
        max_cg_iters: CG iterations per step at most (default 250).
        cg_tol: ``epsilon`` of the relative-progress stopping rule (default 5e-4).
        cg_decay: the warm-start factor ``zeta`` (default 0.95; 0 starts CG from zero).
        adapt_damping: apply the Levenberg-Marquardt rule (default True).
        min_damping: ``lambda`` never drops below this (default 0).
        backtrack: CG-iterate backtracking (default True).
        line_search: the backtracking line search on the step length (default True).
        max_ls: closure calls of the line search at most (default 20).
        tolerance_grad: stop when the largest gradient entry is this small (default 1e-7).

    State (under the first parameter): ``damping`` (the current ``lambda``), ``rho``,
    ``step_size`` (``alpha``), ``cg_iters`` (of the last step), ``cg_init`` (the warm start, a
    flat tensor), ``n_iter`` (steps), ``func_evals`` (closure calls), ``curvature_products``
    (``B v`` products) and ``loss`` (``f`` at the new point, when evaluated).

    Example (the Rosenbrock function as a least-squares problem, Gauss-Newton curvature):
        >>> import chainrule
        >>> from chainrule.optim import HessianFree
        >>> x = chainrule.tensor([-1.2, 1.0], dtype=chainrule.float64, requires_grad=True)
        >>> opt = HessianFree([x], damping=1e-3)
        >>> def residuals():
        ...     return chainrule.stack([1 - x[0], 10 * (x[1] - x[0] ** 2)])
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = (residuals() ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> for _ in range(30):
        ...     _ = opt.step(closure, lambda: (residuals(), lambda r: (r ** 2).sum()))
        >>> [round(v, 6) for v in x.tolist()]
        [1.0, 1.0]
    """

    _per_param_state = False  # flat vectors, not parameter-shaped

    def __init__(self, params: Iterable, lr: float = 1.0, damping: float = 1.0,
                 curvature: str = "gauss-newton", jvp_mode: str = "forward",
                 max_cg_iters: int = 250, cg_tol: float = 5e-4, cg_decay: float = 0.95,
                 adapt_damping: bool = True, min_damping: float = 0.0, backtrack: bool = True,
                 line_search: bool = True, max_ls: int = 20, tolerance_grad: float = 1e-7):
        opt = "HessianFree"
        _check_hyper("learning rate", lr, opt=opt)
        _check_hyper("damping", damping, opt=opt)
        _check_hyper("min_damping", min_damping, opt=opt)
        _check_hyper("cg_tol", cg_tol, opt=opt)
        _check_hyper("cg_decay", cg_decay, high=1.0, opt=opt)
        _check_hyper("tolerance_grad", tolerance_grad, opt=opt)
        if curvature not in _CURVATURES:
            raise ValueError(f"HessianFree: curvature must be one of {_CURVATURES}, got "
                             f"{curvature!r}")
        if jvp_mode not in _JVP_MODES:
            raise ValueError(f"HessianFree: jvp_mode must be one of {_JVP_MODES}, got "
                             f"{jvp_mode!r}")
        for name, v in (("max_cg_iters", max_cg_iters), ("max_ls", max_ls)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"HessianFree: {name} must be a positive integer, got {v!r}")
        defaults = {"lr": lr, "damping": damping, "curvature": curvature,
                    "jvp_mode": jvp_mode, "max_cg_iters": max_cg_iters, "cg_tol": cg_tol,
                    "cg_decay": cg_decay, "adapt_damping": bool(adapt_damping),
                    "min_damping": min_damping, "backtrack": bool(backtrack),
                    "line_search": bool(line_search), "max_ls": max_ls,
                    "tolerance_grad": tolerance_grad}
        super().__init__(params, defaults)
        self._params = self.param_groups[0]["params"]
        for i, p in enumerate(self._params):
            if p._data.dtype.kind not in "fV":
                raise TypeError(f"HessianFree: parameter {i} has dtype {p.dtype.name}; only "
                                "floating-point tensors can be optimised")
        devices = {p.device for p in self._params}
        if len(devices) > 1:
            raise ValueError("HessianFree: all parameters must be on one device, got "
                             f"{sorted(map(str, devices))}")
        self._sizes = [p._data.size for p in self._params]

    def add_param_group(self, param_group: dict) -> None:
        """HessianFree takes a single parameter group; a second one raises ValueError."""
        if self.param_groups:
            raise ValueError("HessianFree doesn't support per-parameter options (parameter "
                             "groups): give all tensors in one group")
        super().add_param_group(param_group)

    @property
    def damping(self) -> float:
        """The current Tikhonov damping ``lambda`` (the initial one before the first step)."""
        st = self.state.get(self._params[0])
        if st and "damping" in st:
            return st["damping"]
        return float(self.param_groups[0]["damping"])

    # ------------------------------------------------------------------ flat vectors
    def _xp(self):
        return backend.get_array_module(self._params[0]._data)

    def _dtype(self):
        return self._xp().result_type(*[p._data.dtype for p in self._params])

    def _flat(self, arrays):
        """Concatenate per-parameter arrays (None = zeros) into one flat vector."""
        xp = self._xp()
        out = xp.empty(sum(self._sizes), dtype=self._dtype())
        off = 0
        for a, n in zip(arrays, self._sizes):
            if a is None:
                out[off:off + n] = 0
            else:
                out[off:off + n] = a.reshape(-1)
            off += n
        return out

    def _split(self, flat) -> list:
        """Per-parameter views of a flat vector, as tensors of each parameter's shape/dtype."""
        out = []
        off = 0
        for p, n in zip(self._params, self._sizes):
            a = flat[off:off + n].reshape(p._data.shape)
            if a.dtype != p._data.dtype:
                a = a.astype(p._data.dtype)
            out.append(_wrap(a))
            off += n
        return out

    def _flat_grad(self):
        return self._flat([None if p._grad is None else p._grad._data for p in self._params])

    def _set_params(self, base: list, t: float, d) -> None:
        """theta = base + t d (parameter by parameter)."""
        xp = self._xp()
        off = 0
        for p, b, n in zip(self._params, base, self._sizes):
            a = p._data
            xp.copyto(a, b)
            if t != 0:
                a += (d[off:off + n] * t).reshape(a.shape).astype(a.dtype, copy=False)
            off += n
            p._bump()

    # ------------------------------------------------------------------ curvature products
    def curvature_vector_product(self, curvature_fn: Callable, vectors: list) -> list:
        """``B v`` (undamped) for per-parameter tangents ``vectors``, with the optimiser's
        ``curvature`` and ``jvp_mode``; returns one tensor per parameter.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import HessianFree
            >>> w = chainrule.tensor([1.0, 2.0], dtype=chainrule.float64, requires_grad=True)
            >>> opt = HessianFree([w], curvature="hessian")
            >>> v = chainrule.tensor([1.0, 0.0], dtype=chainrule.float64)
            >>> opt.curvature_vector_product(lambda: (w ** 3).sum(), [v])
            [tensor([6., 0.], dtype=chainrule.float64)]
        """
        if not callable(curvature_fn):
            raise TypeError("HessianFree: curvature_fn must be callable, got "
                            f"{type(curvature_fn).__name__}")
        vectors = list(vectors)
        if len(vectors) != len(self._params):
            raise ValueError(f"HessianFree.curvature_vector_product: got {len(vectors)} "
                             f"vector(s) for {len(self._params)} parameter(s)")
        for i, (p, v) in enumerate(zip(self._params, vectors)):
            _fwd.check_tangent(p, v, "HessianFree.curvature_vector_product", i)
        group = self.param_groups[0]
        out = self._product(curvature_fn, [v._data for v in vectors], group["curvature"],
                            group["jvp_mode"])
        return [_wrap(a) for a in out]

    def _product(self, curvature_fn, vs: list, curvature: str, mode: str) -> list:
        """Per-parameter arrays of ``B v`` (vs: per-parameter arrays)."""
        params = self._params
        with enable_grad():
            if curvature == "hessian":
                if mode == "forward":
                    res = _hvp_forward(lambda: _scalar(curvature_fn()), params, vs)
                else:
                    res = _hvp_reverse(_scalar(curvature_fn()), params, vs)
            elif mode == "forward":
                res = self._gn_forward(curvature_fn, vs)
            else:
                res = self._gn_reverse(curvature_fn, vs)
        return [a if a is not None else self._xp().zeros_like(p._data)
                for a, p in zip(res, params)]

    def _gn_forward(self, curvature_fn, vs: list) -> list:
        """G v = J^T H_L J v: J v by one forward-mode pass, then H_L, then one vjp."""
        params = self._params
        level = _fwd.push(_fwd.JvpLevel())
        lid = level.id
        saved = [p._fw for p in params]
        try:
            for p, v in zip(params, vs):
                _fwd.set_payload(p, lid, _wrap(v))
            z, loss_fn = _outputs(curvature_fn())
            jv = _fwd.payload(z, lid)
            _fwd.strip(z, lid)
        finally:
            for p, fw in zip(params, saved):
                p._fw = fw
            _fwd.pop(level)
        if jv is None or not z._rg:  # the outputs do not depend on the parameters
            return [None] * len(params)
        u = _output_hvp(loss_fn, z, jv._data, "forward")
        gs = _engine.grad(z, params, grad_outputs=_wrap(u), allow_unused=True)
        return [None if g is None else g._data for g in gs]

    def _gn_reverse(self, curvature_fn, vs: list) -> list:
        """G v with reverse mode only: J v = d/du <J^T u, v> (double vjp), H_L, J^T."""
        params = self._params
        z, loss_fn = _outputs(curvature_fn())
        if not z._rg:
            return [None] * len(params)
        xp = backend.get_array_module(z._data)
        u = _wrap(xp.zeros_like(z._data))
        u._rg = True
        jtu = _engine.grad(z, params, grad_outputs=u, create_graph=True, retain_graph=True,
                           allow_unused=True)
        inner = None
        for g, v in zip(jtu, vs):
            if g is not None and g._rg:
                term = (g * _wrap(v)).sum()
                inner = term if inner is None else inner + term
        if inner is None:
            return [None] * len(params)
        (jv,) = _engine.grad(inner, u, allow_unused=True, materialize_grads=True)
        w = _output_hvp(loss_fn, z, jv._data, "reverse")
        gs = _engine.grad(z, params, grad_outputs=_wrap(w), allow_unused=True)
        return [None if g is None else g._data for g in gs]

    # ------------------------------------------------------------------ conjugate gradient
    def _cg(self, apply_a, g, x0, group, lam: float):
        """Minimise ``phi(x) = g.x + 1/2 x.A x`` by CG from ``x0`` (None: zero).

        Returns the kept iterates as ``(i, x, phi(x), |x|^2)`` tuples (``i = ceil(1.3^j)``
        and the last), the last iterate, and the number of iterations run.
        """
        xp = self._xp()
        max_iters, eps = group["max_cg_iters"], group["cg_tol"]
        if x0 is None:
            x = xp.zeros_like(g)
            r = g.copy()
        else:
            x = x0
            r = apply_a(x)
            r += g
        d = -r
        rr = _dot(r, r)
        tiny = _dot(g, g) * float(xp.finfo(g.dtype).eps) ** 2
        phis = [0.5 * _dot(x, r + g)]
        kept = []
        next_keep, j = 1, 0
        i = 0
        while i < max_iters:
            if rr <= tiny:  # converged to working precision
                break
            ad = apply_a(d)
            dad = _dot(d, ad)
            if not dad > 0:  # non-positive curvature (Hessian) or a breakdown
                if i == 0 and x0 is None:
                    # no iterate yet: the steepest-descent direction d = -g, with the CG step
                    # length for curvature |d.A d| (the line search then adjusts it);
                    # phi(s d) = s g.d + s^2/2 d.A d, with d.A d = dad known
                    s = rr / abs(dad) if dad != 0 else (1.0 / lam if lam > 0 else 1.0)
                    x = d * s
                    kept.append((1, x, s * _dot(g, d) + 0.5 * s * s * dad, _dot(x, x)))
                break
            alpha = rr / dad
            x = x + alpha * d
            r += alpha * ad
            rr_new = _dot(r, r)
            d *= rr_new / rr
            d -= r
            rr = rr_new
            i += 1
            phi = 0.5 * _dot(x, r + g)
            phis.append(phi)
            if i >= next_keep:
                kept.append((i, x, phi, _dot(x, x)))
                while next_keep <= i:
                    j += 1
                    next_keep = math.ceil(1.3 ** j)
            k = max(10, int(0.1 * i))
            if i > k and phi < 0 and (phi - phis[i - k]) / phi < k * eps:
                break
        if (i > 0 or x0 is not None) and (not kept or kept[-1][1] is not x):
            kept.append((i, x, phis[-1], _dot(x, x)))
        return kept, x, i

    # ------------------------------------------------------------------ the step
    @ieee  # IEEE values without NumPy warnings, as the ops
    def step(self, closure: Callable | None = None, curvature_fn: Callable | None = None):
        """One Hessian-free step; returns the closure's loss at the starting point.

        Args:
            closure: clears the gradients, computes the loss on the gradient batch, calls
                ``backward()`` and returns the loss (run with gradient recording on).
            curvature_fn: evaluates the model on the curvature batch without calling
                ``backward``; returns ``(outputs, loss_fn)`` for Gauss-Newton curvature or the
                scalar loss for Hessian curvature (see the class docstring).

        The parameters' ``.grad`` afterwards is that of the last closure call (a trial point
        of the backtracking or the line search). If a call raises, the parameters are put
        back where the step started.
        """
        if closure is None or not callable(closure):
            raise TypeError("HessianFree.step needs a closure that clears the gradients, "
                            "computes the loss, calls backward() and returns the loss")
        if curvature_fn is None or not callable(curvature_fn):
            raise TypeError("HessianFree.step needs curvature_fn: a function that evaluates the "
                            "model on the curvature batch and returns (outputs, loss_fn) for "
                            "curvature='gauss-newton', or the loss for curvature='hessian'")
        group = self.param_groups[0]
        for key in ("curvature", "jvp_mode"):
            allowed = _CURVATURES if key == "curvature" else _JVP_MODES
            if group[key] not in allowed:
                raise ValueError(f"HessianFree: {key} must be one of {allowed}, got "
                                 f"{group[key]!r}")
        state = self.state[self._params[0]]
        for key in ("func_evals", "curvature_products", "n_iter"):
            state.setdefault(key, 0)
        state.setdefault("damping", float(group["damping"]))
        xp = self._xp()

        def evaluate() -> float:
            with enable_grad():
                v = float(closure())
            state["func_evals"] += 1
            return v if math.isfinite(v) else math.inf

        with enable_grad():
            orig_loss = closure()
        state["func_evals"] += 1
        f0 = float(orig_loss)
        g = self._flat_grad()
        if not g.size or float(xp.abs(g).max()) <= group["tolerance_grad"]:
            return orig_loss
        state["n_iter"] += 1
        lam = state["damping"]
        curvature, mode = group["curvature"], group["jvp_mode"]

        def apply_a(v):
            state["curvature_products"] += 1
            bv = self._flat(self._product(curvature_fn, [t._data for t in self._split(v)],
                                          curvature, mode))
            if lam:
                bv += lam * v
            return bv

        x0 = None
        init = state.get("cg_init")
        if init is not None and group["cg_decay"] > 0 and init._data.shape == g.shape:
            x0 = init._data * group["cg_decay"]
            if not float(xp.abs(x0).max()) > 0:
                x0 = None
        kept, x_last, iters = self._cg(apply_a, g, x0, group, lam)
        state["cg_iters"] = iters
        state["cg_init"] = _wrap(x_last.astype(g.dtype, copy=True))
        base = [p._data.copy() for p in self._params]

        def f_at(x, t: float) -> float:
            self._set_params(base, t, x)
            return evaluate()

        if not kept:
            return orig_loss
        try:  # trial points move the parameters: put them back if the closure fails
            # CG-iterate backtracking: from the last kept iterate back while f keeps decreasing
            idx = len(kept) - 1
            f_best = f_at(kept[idx][1], 1.0)
            if group["backtrack"]:
                while idx > 0:
                    f_prev = f_at(kept[idx - 1][1], 1.0)
                    if not f_prev < f_best:
                        break
                    idx -= 1
                    f_best = f_prev
            _, x, phi, xx = kept[idx]
            model = phi - 0.5 * lam * xx  # g.x + 1/2 x.B x
            rho = (f_best - f0) / model if model < 0 else -math.inf
            state["rho"] = rho
            if group["adapt_damping"]:
                if rho > 0.75:
                    lam *= 2.0 / 3.0
                elif rho < 0.25:
                    lam *= 1.5
                state["damping"] = max(lam, float(group["min_damping"]))

            lr = float(group["lr"])
            gx = _dot(g, x)
            if group["line_search"]:
                t = lr
                f_new = f_best if lr == 1.0 else f_at(x, t)
                ls = 0
                while not f_new <= f0 + 1e-2 * t * gx:
                    ls += 1
                    if ls > group["max_ls"]:
                        t, f_new = 0.0, f0
                        break
                    t *= 0.8
                    f_new = f_at(x, t)
            else:
                t = lr
                f_new = f_best if lr == 1.0 else None
        except BaseException:
            self._set_params(base, 0.0, None)
            raise
        self._set_params(base, t, x)
        state["step_size"] = t
        state["loss"] = f_new
        return orig_loss


# ---------------------------------------------------------------- helpers
def _scalar(loss) -> Tensor:
    if not isinstance(loss, Tensor):
        raise TypeError("HessianFree: with curvature='hessian', curvature_fn must return the "
                        f"loss as a Tensor, got {type(loss).__name__}")
    if loss._data.size != 1:
        raise ValueError("HessianFree: with curvature='hessian', curvature_fn must return a "
                         f"single-element loss, got shape {tuple(loss.shape)}")
    return loss


def _outputs(res):
    if not (isinstance(res, tuple) and len(res) == 2 and isinstance(res[0], Tensor)
            and callable(res[1])):
        raise TypeError("HessianFree: with curvature='gauss-newton', curvature_fn must return "
                        "(outputs, loss_fn): the model's output Tensor and a function of it "
                        f"giving the loss; got {type(res).__name__}")
    z = res[0]
    if z._data.dtype.kind not in "fV":
        raise TypeError(f"HessianFree: the model outputs have dtype {z.dtype.name}; they must "
                        "be floating point")
    return res


def _hvp_forward(thunk, leaves, vs) -> list:
    """H v of ``thunk()`` (a scalar of ``leaves``) by forward-over-reverse: the gradient is
    computed inside a forward-mode level whose tangents ride on the leaves."""
    level = _fwd.push(_fwd.JvpLevel())
    lid = level.id
    saved = [x._fw for x in leaves]
    try:
        for x, v in zip(leaves, vs):
            _fwd.set_payload(x, lid, _wrap(v))
        loss = thunk()
        gs = _engine.grad(loss, leaves, create_graph=True, allow_unused=True)
        out = []
        for g in gs:
            t = None if g is None else _fwd.payload(g, lid)
            out.append(None if t is None else t._data)
    finally:
        for x, fw in zip(leaves, saved):
            x._fw = fw
        _fwd.pop(level)
    return out


def _hvp_reverse(loss, leaves, vs) -> list:
    """H v by double backward: grad of <grad loss, v>."""
    gs = _engine.grad(loss, leaves, create_graph=True, allow_unused=True)
    inner = None
    for g, v in zip(gs, vs):
        if g is not None and g._rg:
            term = (g * _wrap(v)).sum()
            inner = term if inner is None else inner + term
    if inner is None:
        return [None] * len(leaves)
    return [None if h is None else h._data
            for h in _engine.grad(inner, leaves, allow_unused=True)]


def _output_hvp(loss_fn, z, u, mode: str):
    """H_L u: the Hessian of ``loss_fn`` at the outputs ``z`` (values only) times ``u``."""
    leaf = _wrap(z._data)
    leaf._rg = True

    def thunk():
        loss = loss_fn(leaf)
        if not isinstance(loss, Tensor) or loss._data.size != 1:
            raise TypeError("HessianFree: loss_fn (the second item curvature_fn returns) must "
                            "map the outputs to a single-element loss Tensor, got "
                            f"{type(loss).__name__}"
                            + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor)
                               else ""))
        return loss

    if mode == "forward":
        (h,) = _hvp_forward(thunk, [leaf], [u])
    else:
        (h,) = _hvp_reverse(thunk(), [leaf], [u])
    if h is None:
        return backend.get_array_module(u).zeros_like(u)
    return h
