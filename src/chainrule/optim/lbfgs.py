"""L-BFGS with an optional strong-Wolfe line search, PyTorch's ``torch.optim.LBFGS``.

The quasi-Newton direction comes from the two-loop recursion over the last ``history_size``
pairs ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k`` (Nocedal & Wright, *Numerical
Optimization*, 2nd ed., Algorithm 7.4), started from the scaled identity
``H0 = (s.y / y.y) I``. The line search is the bracketing-then-zoom search for a step that
satisfies the strong Wolfe conditions (Algorithms 3.5 and 3.6), with safeguarded cubic
interpolation as in Mark Schmidt's minFunc, whose choices PyTorch follows too.

Example:
    >>> import chainrule
    >>> from chainrule.optim import LBFGS
    >>> x = chainrule.tensor([-1.5, 2.0], dtype=chainrule.float64, requires_grad=True)
    >>> opt = LBFGS([x], max_iter=200, tolerance_change=1e-14, line_search_fn="strong_wolfe")
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> [round(v, 6) for v in x.tolist()]
    [1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from .. import backend
from ..autograd.grad_mode import enable_grad
from ..backend.fperrors import ieee
from ..tensor import _wrap
from .optimizer import Optimizer, _check_hyper

__all__ = ["LBFGS"]


def _amax(a) -> float:
    """max |a_i| as a Python float (0 for an empty array)."""
    if a.size == 0:
        return 0.0
    return float(backend.get_array_module(a).abs(a).max())


def _dot(a, b) -> float:
    return float(backend.get_array_module(a).dot(a, b))


def _cubic_minimizer(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                     bounds: tuple[float, float] | None = None) -> float:
    """Minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped to
    ``bounds`` (default: the interval between x1 and x2); the midpoint of the bounds when the
    cubic has no minimum there or the data are degenerate.

    With the points ordered so that x1 < x2 (Nocedal & Wright, eq. 3.59)::

        d1 = g1 + g2 - 3 (f1 - f2) / (x1 - x2)
        d2 = sqrt(d1**2 - g1 g2)
        x  = x2 - (x2 - x1) (g2 + d2 - d1) / (g2 - g1 + 2 d2)
    """
    lo, hi = bounds if bounds is not None else (min(x1, x2), max(x1, x2))
    if x1 > x2:
        x1, f1, g1, x2, f2, g2 = x2, f2, g2, x1, f1, g1
    try:
        d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
        disc = d1**2 - g1 * g2
        if disc >= 0:
            d2 = math.sqrt(disc)
            x = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
            if math.isfinite(x):
                return min(max(x, lo), hi)
    except (ZeroDivisionError, OverflowError):
        pass
    return (lo + hi) / 2.0


def _strong_wolfe(evaluate: Callable, t: float, d, f: float, g, gtd: float, c1: float = 1e-4,
                  c2: float = 0.9, tolerance_change: float = 1e-9, max_ls: int = 25):
    """Find a step ``t`` along ``d`` meeting the strong Wolfe conditions::

        f(x + t d) <= f(x) + c1 t g.d              (sufficient decrease)
        |g(x + t d).d| <= c2 |g.d|                 (curvature)

    ``evaluate(t)`` returns the loss and flat gradient at ``x + t d``. First the step grows
    (cubic extrapolation, at most 10x) until an interval is known to hold an acceptable step,
    then the interval shrinks (safeguarded cubic interpolation) until a step is accepted, the
    interval is shorter than ``tolerance_change`` (in max-norm of ``t d``), or ``max_ls``
    evaluations were spent. Returns ``(f_new, g_new, t, evaluations)``.
    """
    d_norm = _amax(d)
    f_new, g_new = evaluate(t)
    evals = 1
    gtd_new = _dot(g_new, d)
    prev = (0.0, f, g, gtd)
    done = False
    ls_iter = 0
    bracket = None
    # ---- bracketing: grow the step until [prev, current] brackets an acceptable step
    while ls_iter < max_ls:
        cur = (t, f_new, g_new, gtd_new)
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= prev[1]):
            bracket = [prev, cur]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket = [cur]
            done = True
            break
        if gtd_new >= 0:
            bracket = [prev, cur]
            break
        t_next = _cubic_minimizer(prev[0], prev[1], prev[3], t, f_new, gtd_new,
                                  bounds=(t + 0.01 * (t - prev[0]), t * 10))
        prev = cur
        t = t_next
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
    if bracket is None:  # out of evaluations while still growing
        bracket = [(0.0, f, g, gtd), (t, f_new, g_new, gtd_new)]
    # ---- zoom: shrink the bracket; `low` is its end with the lower loss
    insuf_progress = False
    low, high = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
    while not done and ls_iter < max_ls:
        (ta, fa, _, ga), (tb, fb, _, gb) = bracket
        if abs(tb - ta) * d_norm < tolerance_change:
            break
        t = _cubic_minimizer(ta, fa, ga, tb, fb, gb)
        t_lo, t_hi = min(ta, tb), max(ta, tb)
        eps = 0.1 * (t_hi - t_lo)
        if min(t_hi - t, t - t_lo) < eps:
            # too close to an end: move in, unless the previous step made enough progress
            if insuf_progress or t >= t_hi or t <= t_lo:
                t = t_hi - eps if abs(t - t_hi) < abs(t - t_lo) else t_lo + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = evaluate(t)
        evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1
        cur = (t, f_new, g_new, gtd_new)
        if f_new > f + c1 * t * gtd or f_new >= bracket[low][1]:
            bracket[high] = cur
            low, high = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high][0] - bracket[low][0]) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = cur
    t, f_new, g_new, _ = bracket[low]
    return f_new, g_new, t, evals


class LBFGS(Optimizer):
    """Limited-memory BFGS, PyTorch's ``torch.optim.LBFGS`` (interface and algorithm).

    ``step(closure)`` runs up to ``max_iter`` iterations (and ``max_eval`` evaluations of the
    closure). Each iteration, with flat gradient ``g``::

        d = -H g                      H: the L-BFGS inverse-Hessian estimate (two-loop
                                      recursion over the last history_size (s, y) pairs,
                                      H0 = (s.y / y.y) I; d = -g on the very first iteration)
        t = min(1, 1 / sum|g|) * lr   on the very first iteration, else t = lr
        t = strong_wolfe(t)           with line_search_fn="strong_wolfe"
        x = x + t d

    A pair is stored only when ``s.y > 1e-10`` (keeping ``H`` positive definite). Iterations
    stop when ``max|g| <= tolerance_grad``, when ``max|t d|`` or the change of the loss is below
    ``tolerance_change``, when ``g.d > -tolerance_change`` (not a descent direction), or at the
    iteration / evaluation limits. The history and the last direction persist across calls.

    Args:
        params: the tensors to optimise (one group only).
        lr: step length (default 1).
        max_iter: iterations per ``step`` (default 20).
        max_eval: closure evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad: stop when the largest gradient entry is this small (default 1e-7).
        tolerance_change: stop when steps or loss changes are this small (default 1e-9).
        history_size: number of (s, y) pairs kept (default 100).
        line_search_fn: None (fixed step ``lr``) or ``"strong_wolfe"``.

    The closure must clear the gradients, compute the loss, call ``backward`` and return the
    loss; ``step`` returns the loss of its first evaluation.

    State (under the first parameter): ``func_evals``, ``n_iter``, ``d``, ``t``, ``H_diag``,
    ``prev_flat_grad``, ``prev_loss``, and the history as ring buffers ``old_dirs`` (the y's)
    and ``old_stps`` (the s's), rows of a ``(capacity, n)`` tensor, ``ro`` (``1 / s.y``), with
    ``hist_len`` pairs starting at row ``hist_start``.

    Example:
        >>> import chainrule
        >>> from chainrule.optim import LBFGS
        >>> w = chainrule.zeros(3, dtype=chainrule.float64, requires_grad=True)
        >>> target = chainrule.tensor([1.0, -2.0, 3.0], dtype=chainrule.float64)
        >>> opt = LBFGS([w])
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((w - target) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> opt.step(closure).item()
        14.0
        >>> [round(v, 6) for v in w.tolist()]
        [1.0, -2.0, 3.0]
    """

    _per_param_state = False  # flat vectors, not parameter-shaped

    def __init__(self, params: Iterable, lr: float = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        _check_hyper("learning rate", lr, opt="LBFGS")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"LBFGS: max_iter must be a positive integer, got {max_iter!r}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if not isinstance(max_eval, int) or max_eval < 1:
            raise ValueError(f"LBFGS: max_eval must be a positive integer, got {max_eval!r}")
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError("LBFGS: history_size must be a positive integer, got "
                             f"{history_size!r}")
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                             f"{line_search_fn!r}")
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval,
                    "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                    "history_size": history_size, "line_search_fn": line_search_fn}
        super().__init__(params, defaults)
        self._params = self.param_groups[0]["params"]
        devices = {p.device for p in self._params}
        if len(devices) > 1:
            raise ValueError("LBFGS: all parameters must be on one device, got "
                             f"{sorted(map(str, devices))}")

    def add_param_group(self, param_group: dict) -> None:
        """LBFGS takes a single parameter group; a second one raises ValueError."""
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups): "
                             "give all tensors in one group")
        super().add_param_group(param_group)

    # ------------------------------------------------------------------ flat views
    def _gather_flat_grad(self):
        xp = backend.get_array_module(self._params[0]._data)
        parts = []
        for p in self._params:
            g = p._grad
            parts.append(xp.zeros(p._data.size, p._data.dtype) if g is None
                         else g._data.reshape(-1))
        return xp.concatenate(parts)

    def _add_direction(self, t: float, d) -> None:
        """x = x + t d, parameter by parameter."""
        offset = 0
        for p in self._params:
            a = p._data
            n = a.size
            a += d[offset:offset + n].reshape(a.shape) * t
            offset += n
            p._bump()

    def _set_params(self, values) -> None:
        for p, v in zip(self._params, values):
            backend.get_array_module(v).copyto(p._data, v)
            p._bump()

    @staticmethod
    def _evaluate(closure):
        with enable_grad():
            return closure()

    # ------------------------------------------------------------------ history
    @staticmethod
    def _history_rows(state) -> list[int]:
        k = state.get("hist_len", 0)
        if k == 0:
            return []
        start, cap = state["hist_start"], state["old_dirs"].shape[0]
        return [(start + i) % cap for i in range(k)]

    def _push_history(self, state, y, s, rho: float, history_size: int) -> None:
        xp = backend.get_array_module(y)
        k = state.get("hist_len", 0)
        cap = state["old_dirs"].shape[0] if k else 0
        if k < history_size and k == cap:  # full but allowed to grow: double the capacity
            new_cap = min(history_size, max(4, 2 * cap))
            rows = self._history_rows(state)
            new = {}
            for key, shape in (("old_dirs", (new_cap, y.size)), ("old_stps", (new_cap, y.size)),
                               ("ro", (new_cap,))):
                buf = xp.empty(shape, dtype=y.dtype)
                if rows:
                    buf[:k] = state[key]._data[rows]
                new[key] = _wrap(buf)
            state.update(new)
            state["hist_start"] = 0
            cap = new_cap
        if k >= history_size:  # drop the oldest pair
            row = state["hist_start"]
            state["hist_start"] = (row + 1) % cap
        else:
            row = (state["hist_start"] + k) % cap
            state["hist_len"] = k + 1
        state["old_dirs"]._data[row] = y
        state["old_stps"]._data[row] = s
        state["ro"]._data[row] = rho

    def _two_loop(self, flat_grad, state, h_diag: float):
        """d = -H g by the two-loop recursion over the stored (s, y) pairs."""
        xp = backend.get_array_module(flat_grad)
        q = xp.negative(flat_grad)
        rows = self._history_rows(state)
        if not rows:
            q *= h_diag
            return q
        ys, ss = state["old_dirs"]._data, state["old_stps"]._data
        ro = state["ro"]._data
        rho = (ro if type(ro) is backend.np.ndarray else ro.get()).tolist()
        tmp = xp.empty_like(q)
        alpha = {}
        for r in reversed(rows):
            a = alpha[r] = _dot(ss[r], q) * rho[r]
            q -= xp.multiply(ys[r], a, out=tmp)
        q *= h_diag
        for r in rows:
            beta = _dot(ys[r], q) * rho[r]
            q += xp.multiply(ss[r], alpha[r] - beta, out=tmp)
        return q

    # ------------------------------------------------------------------ the step
    @ieee  # IEEE values without NumPy warnings, as the ops
    def step(self, closure: Callable | None = None):
        """Run up to ``max_iter`` L-BFGS iterations; return the closure's first loss.

        Args:
            closure: re-evaluates the model: clears the gradients, computes the loss, calls
                ``backward()`` and returns the loss. It runs with gradient recording on.
        """
        if closure is None or not callable(closure):
            raise TypeError("LBFGS.step needs a closure that clears the gradients, computes "
                            "the loss, calls backward() and returns the loss")
        group = self.param_groups[0]
        lr = float(group["lr"])
        max_iter, max_eval = group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        line_search, history_size = group["line_search_fn"], group["history_size"]
        if line_search not in (None, "strong_wolfe"):
            raise ValueError(f"LBFGS: line_search_fn must be None or 'strong_wolfe', got "
                             f"{line_search!r}")
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = self._evaluate(closure)
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._gather_flat_grad()
        xp = backend.get_array_module(flat_grad)
        if _amax(flat_grad) <= tol_grad:
            return orig_loss

        d = state["d"]._data if "d" in state else None
        t = state.get("t")
        h_diag = state.get("H_diag", 1.0)
        prev_flat_grad = state["prev_flat_grad"]._data if "prev_flat_grad" in state else None
        prev_loss = state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = xp.negative(flat_grad)
                for key in ("old_dirs", "old_stps", "ro"):
                    state.pop(key, None)
                state["hist_len"] = state["hist_start"] = 0
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = _dot(y, s)
                if ys > 1e-10:
                    self._push_history(state, y, s, 1.0 / ys, history_size)
                    h_diag = ys / _dot(y, y)
                d = self._two_loop(flat_grad, state, h_diag)
            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                xp.copyto(prev_flat_grad, flat_grad)
            prev_loss = loss

            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = _dot(flat_grad, d)
            if gtd > -tol_change:  # not a descent direction
                break

            opt_cond = False
            evals = 0
            if line_search is not None:
                x_init = [p._data.copy() for p in self._params]

                def evaluate(step, x_init=x_init, d=d):
                    self._add_direction(step, d)
                    f_at = float(self._evaluate(closure))
                    g_at = self._gather_flat_grad()
                    self._set_params(x_init)
                    return f_at, g_at

                loss, flat_grad, t, evals = _strong_wolfe(evaluate, t, d, loss, flat_grad, gtd,
                                                          max_ls=max_eval - current_evals)
                self._add_direction(t, d)
                opt_cond = _amax(flat_grad) <= tol_grad
            else:
                self._add_direction(t, d)
                if n_iter != max_iter:
                    loss = float(self._evaluate(closure))
                    flat_grad = self._gather_flat_grad()
                    opt_cond = _amax(flat_grad) <= tol_grad
                    evals = 1
            current_evals += evals
            state["func_evals"] += evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if _amax(d) * abs(t) <= tol_change:
                break
            if abs(loss - prev_loss) < tol_change:
                break

        state["d"] = _wrap(d)
        state["t"] = t
        state["H_diag"] = h_diag
        state["prev_flat_grad"] = _wrap(prev_flat_grad)
        state["prev_loss"] = prev_loss
        return orig_loss
