"""ZeroRedundancyOptimizer: optimiser state sharded over the ranks (PyTorch's, after ZeRO
stage 1, Rajbhandari et al. 2020).

Each parameter is owned by one rank (parameters are assigned largest first to the rank with
the fewest elements so far, per group). Each rank runs the wrapped optimiser on the parameters
it owns only, so it holds only their state (Adam's two moments: 8 bytes per float32 element),
then every parameter is broadcast from its owner. With gradients already averaged
(DistributedDataParallel), the result is the same as running the plain optimiser on every rank,
and the memory for the optimiser state per rank falls as 1 / world_size.

Example (under ``mpiexec -n 2``)::

    model = DistributedDataParallel(net)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=optim.Adam, lr=1e-3)
    ...
    opt.consolidate_state_dict(to=0)       # every rank calls it
    if dist.get_rank() == 0:
        torch_like = opt.state_dict()      # the plain optimiser's format
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..backend import is_array
from ..distributed.group import current
from ..tensor import Tensor, _wrap
from .optimizer import Optimizer


class ZeroRedundancyOptimizer(Optimizer):
    """Wrap ``optimizer_class`` so that each rank keeps the state of its shard only.

    Args:
        params: tensors or parameter groups, as for any optimiser (the same on every rank).
        optimizer_class: the optimiser to run on each shard (``optim.Adam`` ...).
        process_group: None (the default group).
        **defaults: the wrapped optimiser's hyperparameters.

    Attributes:
        optim: this rank's optimiser over the parameters it owns (None when it owns none).
    """

    def __init__(self, params: Iterable, optimizer_class: Callable, process_group=None,
                 parameters_as_bucket_view: bool = False, overlap_with_ddp: bool = False,
                 **defaults: Any):
        comm = current("ZeroRedundancyOptimizer", process_group)
        if parameters_as_bucket_view or overlap_with_ddp:
            raise ValueError("ZeroRedundancyOptimizer: parameters_as_bucket_view and "
                             "overlap_with_ddp are not supported; leave them False")
        if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, Optimizer)):
            raise TypeError(f"ZeroRedundancyOptimizer: optimizer_class must be a chainrule "
                            f"optimiser class (optim.Adam ...), got {optimizer_class!r}")
        super().__init__(params, defaults)
        self._comm = comm
        self.optimizer_class = optimizer_class
        self._all_states = None
        # owner[i]: the rank that updates global parameter i (counting through the groups)
        self._params = [p for g in self.param_groups for p in g["params"]]
        self._owner = _partition(self.param_groups, comm.size)
        mine = [{**{k: v for k, v in g.items() if k != "params"},
                 "params": [p for p in g["params"] if self._owner[id(p)] == comm.rank]}
                for g in self.param_groups]
        self.optim = (optimizer_class(mine, **defaults)
                      if any(g["params"] for g in mine) else None)

    def _local_params(self, rank: int) -> list:
        """The global indices of ``rank``'s parameters, in its optimiser's order."""
        return [i for i, p in enumerate(self._params) if self._owner[id(p)] == rank]

    def step(self, closure: Callable[[], Any] | None = None):
        """Update this rank's shard with the wrapped optimiser, then broadcast every
        parameter from its owner."""
        loss = None
        if self.optim is not None:
            for g, local in zip(self.param_groups, self.optim.param_groups):
                for k, v in g.items():  # schedulers change the outer groups
                    if k != "params":
                        local[k] = v
            loss = self.optim.step(closure)
        elif closure is not None:
            loss = closure()
        works = [(p, self._comm.broadcast(_contiguous(p), self._owner[id(p)]))
                 for p in self._params]
        for p, w in works:
            w.wait()
            p._bump()
        return loss

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather every rank's shard of the state on rank ``to`` (every rank calls it)."""
        local = self.optim.state_dict() if self.optim is not None else {"state": {}}
        shards = self._comm.allgather_object(_to_host(local["state"]))
        self._all_states = shards if self._comm.rank == to else None

    def state_dict(self) -> dict[str, Any]:
        """The whole state in the plain optimiser's format (after ``consolidate_state_dict``
        on this rank)."""
        if self._all_states is None:
            raise RuntimeError("ZeroRedundancyOptimizer.state_dict: the optimizer state has not "
                               "been consolidated on this rank; call consolidate_state_dict(to="
                               f"{self._comm.rank}) on all ranks first")
        state = {}
        for rank, shard in enumerate(self._all_states):
            for local_i, global_i in enumerate(self._local_params(rank)):
                if local_i in shard:
                    state[global_i] = _from_host(shard[local_i])
        sd = super().state_dict()
        sd["state"] = dict(sorted(state.items()))
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a whole state (as ``state_dict()`` gives, or a plain optimiser's): every rank
        keeps the part it owns."""
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or len(groups) != len(self.param_groups):
            raise ValueError("ZeroRedundancyOptimizer.load_state_dict: the state dict must have "
                             f"{len(self.param_groups)} param_groups, as this optimiser")
        for g, saved in zip(self.param_groups, groups):
            for k, v in saved.items():
                if k != "params":
                    g[k] = v
        if self.optim is None:
            return
        mine = self._local_params(self._comm.rank)
        local_groups, start = [], 0
        for g, saved in zip(self.optim.param_groups, groups):
            n = len(g["params"])
            local_groups.append({**{k: v for k, v in saved.items() if k != "params"},
                                 "params": list(range(start, start + n))})
            start += n
        state = {li: state_dict["state"][gi] for li, gi in enumerate(mine)
                 if gi in state_dict["state"]}
        self.optim.load_state_dict({"state": state, "param_groups": local_groups})


def _partition(groups: list, size: int) -> dict:
    """id(param) -> owner rank: per group, largest first, to the least-loaded rank."""
    owner = {}
    load = [0] * size
    for g in groups:
        for p in sorted(g["params"], key=lambda t: -t.numel()):
            r = min(range(size), key=lambda k: (load[k], k))
            owner[id(p)] = r
            load[r] += p.numel()
    return owner


def _contiguous(p: Tensor):
    if not p._data.flags.c_contiguous:
        raise ValueError(f"ZeroRedundancyOptimizer: parameter of shape {tuple(p.shape)} is not "
                         "contiguous; it cannot be broadcast in place")
    return p._data


def _to_host(x):
    """Tensors as ("tensor", array) pairs for pickling between ranks."""
    if isinstance(x, Tensor):
        return ("__tensor__", x._data)
    if isinstance(x, dict):
        return {k: _to_host(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_host(v) for v in x)
    return x


def _from_host(x):
    if isinstance(x, tuple) and len(x) == 2 and x[0] == "__tensor__" and is_array(x[1]):
        return _wrap(x[1])
    if isinstance(x, dict):
        return {k: _from_host(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_from_host(v) for v in x)
    return x
