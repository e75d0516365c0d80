"""The Optimizer base: parameter groups, per-parameter state, ``zero_grad``, ``state_dict``, and
the one loop that every first-order optimiser shares.

A first-order optimiser is two methods on raw arrays (NumPy or CuPy, never autograd tensors):

- ``init_state(param, state, group)`` fills the empty per-parameter ``state`` dict on the
  parameter's first step (buffers are ``Tensor`` objects, counters are Python numbers);
- ``update(param, grad, state, group)`` writes the new values into ``param`` (and its buffers)
  in place, reading the hyperparameters from ``group`` on every call, so schedulers and users
  may change them between steps. The built-in ones do it through an update primitive
  (``sgd_update``, ``adam_update`` ... in ``chainrule.primitives.update``), with the
  hyperparameters as its inputs, so that a trace of a training step sees the update.

``Optimizer.step`` walks the groups and the parameters that have a gradient, calls the two, and
bumps each parameter's version counter. No autograd graph is built.

Example:
    >>> import chainrule
    >>> from chainrule.optim import SGD
    >>> w = chainrule.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = SGD([w], lr=0.5)
    >>> (w * w).sum().backward()
    >>> opt.step()
    >>> w
    tensor([0., 0.], requires_grad=True)
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

from .. import backend
from ..autograd.grad_mode import enable_grad
from ..backend.fperrors import ieee
from ..primitives.update import regularised
from ..tensor import Tensor, _wrap

__all__ = ["Optimizer", "required"]


class _Required:
    """Sentinel default: the hyperparameter must be given (in the constructor or the group)."""

    def __repr__(self) -> str:
        return "<required parameter>"

    def __deepcopy__(self, memo):
        return self


required = _Required()


def _describe(p: Tensor) -> str:
    return f"tensor of shape {tuple(p.shape)} and dtype {p.dtype.name}"


class Optimizer:
    """Base class of all optimisers.

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts (parameter
            groups) with a ``"params"`` entry and per-group hyperparameters.
        defaults: the hyperparameters a group gets when it does not name them.

    Attributes:
        param_groups: list of dicts, each with ``"params"`` (a list of tensors) and the
            group's hyperparameters.
        state: per-parameter state, a dict keyed by the parameter tensor.
        defaults: the default hyperparameters.

    Subclasses define ``init_state`` and ``update`` (see the module docstring), or override
    ``step`` for algorithms that are not a per-parameter rule (LBFGS).

    Example:
        >>> import chainrule
        >>> from chainrule.optim import SGD
        >>> a = chainrule.zeros(2, requires_grad=True)
        >>> b = chainrule.zeros(3, requires_grad=True)
        >>> opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1, momentum=0.9)
        >>> [g["lr"] for g in opt.param_groups]
        [0.1, 0.01]
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        if type(self).step is Optimizer.step and not hasattr(self, "update"):
            raise TypeError(f"{type(self).__name__} must define update(param, grad, state, "
                            "group) or override step()")
        self.defaults = dict(defaults)
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        self._scratch: dict = {}
        if isinstance(params, Tensor):
            raise TypeError("params given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got a single {_describe(params)}; wrap it in a list")
        if isinstance(params, dict):
            raise TypeError("params given to the optimizer should be an iterable of Tensors or "
                            "dicts (parameter groups), but got a dict; pass [dict] for one group "
                            "or module.parameters() for the tensors")
        if isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters must be an ordered collection (a list), not a "
                            "set: the order of a set changes between runs")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones take the
        defaults). Raises ValueError when a tensor is already in this or another group.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import Adam
            >>> a = chainrule.zeros(2, requires_grad=True)
            >>> b = chainrule.zeros(2, requires_grad=True)
            >>> opt = Adam([a], lr=1e-3)
            >>> opt.add_param_group({"params": [b], "lr": 1e-4})
            >>> len(opt.param_groups), opt.param_groups[1]["betas"]
            (2, (0.9, 0.999))
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("param_group has no 'params' entry (the tensors to optimise)")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer parameters must be an ordered collection (a list), not a "
                            "set: the order of a set changes between runs")
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params):
                raise ValueError("all parameters of a group must be given with names, or none")
            params = [p[1] for p in params]
            group["param_names"] = names
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but parameter {i} of the "
                                f"group is a {type(p).__name__}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(f"can't optimize a non-leaf tensor (parameter {i} of the group, "
                                 f"{_describe(p)}); optimize the leaf it was computed from")
        seen: dict[int, int] = {}
        for i, p in enumerate(params):
            j = seen.setdefault(id(p), i)
            if j != i:
                raise ValueError(f"parameter group lists the same {_describe(p)} twice (at "
                                 f"positions {j} and {i})")
        for k, existing in enumerate(self.param_groups):
            if ("param_names" in existing) != ("param_names" in group):
                raise ValueError("all parameter groups must be given with names, or none")
            for p in existing["params"]:
                if id(p) in seen:
                    raise ValueError(f"a {_describe(p)} is already in parameter group {k}; "
                                     "some parameters appear in more than one group")
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        group["params"] = params
        self.param_groups.append(group)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimised tensors: to None (default), or to zeros in place.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import SGD
            >>> w = chainrule.ones(2, requires_grad=True)
            >>> (w * 3).sum().backward()
            >>> opt = SGD([w], lr=0.1)
            >>> opt.zero_grad(set_to_none=False); w.grad
            tensor([0., 0.])
            >>> opt.zero_grad(); w.grad is None
            True
        """
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if set_to_none:
                    p._grad = None
                else:
                    if g._node is not None:
                        g.detach_()
                    else:
                        g._rg = False
                    g._data.fill(0)
                    g._bump()

    # ------------------------------------------------------------------ the shared loop
    @ieee  # IEEE values without NumPy warnings, as the ops
    def step(self, closure: Callable[[], Any] | None = None):
        """One optimisation step over every parameter that has a gradient.

        Args:
            closure: optional; re-evaluates the model and returns the loss. It runs (with
                gradient recording on) before the update, and its loss is returned.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import SGD
            >>> w = chainrule.tensor([3.0], requires_grad=True)
            >>> opt = SGD([w], lr=0.25)
            >>> def closure():
            ...     opt.zero_grad()
            ...     loss = (w * w).sum()
            ...     loss.backward()
            ...     return loss
            >>> opt.step(closure).item(), w.item()
            (9.0, 1.5)
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        state = self.state
        init_state, update = self.init_state, self.update
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                s = state[p]
                data = p._data
                if not s:
                    init_state(data, s, group)
                update(data, g._data, s, group)
                p._bump()
        return loss

    def init_state(self, param, state: dict, group: dict) -> None:
        """Fill the empty per-parameter ``state`` on the first step (here: nothing)."""

    def _tmp(self, like, slot: int = 0):
        """A scratch array shaped like ``like``, reused across parameters and steps.

        One flat buffer per (slot, dtype, device) grows to the largest parameter; the update of
        one parameter finishes before the next one starts, so they can share it.
        """
        dev = None if type(like) is backend.np.ndarray else like.device.id
        key = (slot, like.dtype, dev)
        buf = self._scratch.get(key)
        n = like.size
        if buf is None or buf.size < n:
            xp = backend.get_array_module(like)
            buf = xp.empty(max(n, 1), dtype=like.dtype)
            self._scratch[key] = buf
        return buf[:n].reshape(like.shape)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state as ``{"state": ..., "param_groups": ...}``.

        Parameters are referred to by their index (counting through the groups in order), as in
        PyTorch. ``state`` maps an index to that parameter's state (tensors and Python numbers,
        shared with the optimiser, not copied); ``param_groups`` holds each group's
        hyperparameters with ``"params"`` the list of indices.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import SGD
            >>> w = chainrule.ones(2, requires_grad=True)
            >>> opt = SGD([w], lr=0.1, momentum=0.9)
            >>> (w * w).sum().backward(); opt.step()
            >>> sd = opt.state_dict()
            >>> sd["state"][0]["momentum_buffer"], sd["param_groups"][0]["params"]
            (tensor([2., 2.]), [0])
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        packed_state = {}
        for p, s in self.state.items():
            i = index.get(id(p)) if isinstance(p, Tensor) else None
            if i is not None:
                packed_state[i] = s
        return {"state": dict(sorted(packed_state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``: hyperparameters and per-parameter state, matched by index.

        Checks the number of groups and of parameters per group (and, for per-parameter
        optimisers, each state tensor's shape) before changing anything. Loaded state tensors are
        copies, cast to the parameter's dtype (floating-point state) and moved to its device.

        Example:
            >>> import chainrule
            >>> from chainrule.optim import Adam
            >>> w = chainrule.ones(2, requires_grad=True)
            >>> opt = Adam([w], lr=0.1)
            >>> (w * w).sum().backward(); opt.step()
            >>> opt2 = Adam([chainrule.ones(2, requires_grad=True)], lr=0.5)
            >>> opt2.load_state_dict(opt.state_dict())
            >>> opt2.param_groups[0]["lr"], opt2.state_dict()["state"][0]["step"]
            (0.1, 1)
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict expects a dict, got {type(state_dict).__name__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"loaded state dict has no {key!r} entry (it has "
                                 f"{sorted(map(str, state_dict))}); expected the output of "
                                 "Optimizer.state_dict()")
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter group(s), but "
                             f"the optimizer has {len(groups)}")
        for k, (g, sg) in enumerate(zip(groups, saved_groups)):
            if "params" not in sg:
                raise ValueError(f"loaded parameter group {k} has no 'params' entry")
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"loaded state dict's parameter group {k} has "
                                 f"{len(sg['params'])} parameter(s), but the optimizer's group "
                                 f"{k} has {len(g['params'])}")
        id_map = {}
        for g, sg in zip(groups, saved_groups):
            for i, p in zip(sg["params"], g["params"]):
                id_map[int(i)] = p
        new_state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            try:
                i = int(k)
            except (TypeError, ValueError):
                raise ValueError(f"loaded state has key {k!r}; expected parameter "
                                 "indices") from None
            if i not in id_map:
                raise ValueError(f"loaded state has an entry for parameter {i}, but the parameter "
                                 f"groups only have indices {sorted(id_map)}")
            if not isinstance(v, dict):
                raise TypeError(f"loaded state of parameter {i} is a {type(v).__name__}, "
                                "expected a dict")
            p = id_map[i]
            new_state[p] = {key: self._cast_state(p, i, key, val) for key, val in v.items()}
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            ng = {k: deepcopy(v) for k, v in sg.items() if k != "params"}
            for name, default in self.defaults.items():
                ng.setdefault(name, default)
            if "param_names" in g and "param_names" not in ng:
                ng["param_names"] = g["param_names"]
            new_groups.append(ng)
        # everything checked and built: now change the optimiser
        self.state = new_state
        for g, ng in zip(groups, new_groups):
            params = g["params"]
            g.clear()
            g.update(ng)
            g["params"] = params

    _per_param_state = True  # state tensors have the parameter's shape (checked on load)

    def _cast_state(self, p: Tensor, index: int, key, value):
        """A copy of one loaded state value, on the parameter's device and (float) dtype."""
        if isinstance(value, dict):
            return {k: self._cast_state(p, index, k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast_state(p, index, key, v) for v in value)
        if isinstance(value, Tensor):
            arr = value._data
        elif backend.is_array(value):
            arr = value
        else:
            return value
        if key == "step" and arr.size == 1:  # a count saved as a tensor (PyTorch keeps one)
            v = float(arr.reshape(()).item())
            return int(v) if v.is_integer() else v
        if self._per_param_state and arr.ndim > 0 and arr.shape != p._data.shape:
            raise ValueError(f"loaded state {key!r} of parameter {index} has shape "
                             f"{tuple(arr.shape)}, but the parameter is a {_describe(p)}")
        arr = backend.to_device(arr, p.device)
        xp = backend.get_array_module(arr)
        dtype = p._data.dtype if (arr.dtype.kind in "fV" and p._data.dtype.kind in "fV") \
            else arr.dtype
        return _wrap(xp.array(arr, dtype=dtype, copy=True))

    # ------------------------------------------------------------------ repr
    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def _regularised_grad(opt: Optimizer, p, g, maximize: bool, weight_decay: float):
    """The gradient an update rule sees: ``-g`` when maximising, plus ``weight_decay * p``,
    for optimisers that write their arrays directly (the built-in ones go through update
    primitives). Returns ``g`` itself when neither applies (never written to), else scratch
    slot 0."""
    if not maximize and weight_decay == 0:
        return g
    return regularised(backend.get_array_module(g), p, g, maximize, weight_decay,
                       out=opt._tmp(g, 0))


def _check_hyper(name: str, value, *, low: float = 0.0, high: float | None = None,
                 high_open: bool = False, opt: str) -> None:
    """Raise ValueError naming the optimiser and hyperparameter when ``value`` is out of range
    (TypeError when it is not a real number: tensor-valued hyperparameters are not supported)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{opt}: {name} must be a real number, got {type(value).__name__}")
    ok = value >= low and (high is None or (value < high if high_open else value <= high))
    if not ok:
        rng = f">= {low}" if high is None else f"in [{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{opt}: invalid {name} {value!r}; expected a value {rng}")

