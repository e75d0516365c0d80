"""Data-parallel training over MPI: process groups and collectives on tensors, with
``torch.distributed``'s names and semantics.

Launch one process per rank with MPI (``pip install 'chainrule[dist]'`` brings mpi4py and the
``mpich`` wheel with its ``mpiexec``)::

    import datetime
    import chainrule as cr
    import chainrule.distributed as dist

    dist.init_process_group("mpi", timeout=datetime.timedelta(minutes=5))
    model = cr.nn.parallel.DistributedDataParallel(Net())
    sampler = cr.data.DistributedSampler(dataset, shuffle=True, seed=0)
    ...
    dist.destroy_process_group()

    $ mpiexec -n 4 python train.py

The communicator behind the group is an interface (``chainrule.distributed.comm``) with one
implementation today, MPI for CPU tensors (``chainrule.distributed.mpi``); NCCL through CuPy
fits the same interface. Faults never hang a job: every wait has a deadline, a rank that fails
takes the job down, and errors name the ranks (docs/distributed.md).

Example:
    >>> import chainrule.distributed as dist
    >>> dist.is_initialized(), dist.ReduceOp.SUM
    (False, <ReduceOp.SUM: 'sum'>)
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .collectives import (
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    irecv,
    isend,
    recv,
    reduce_scatter,
    reduce_scatter_tensor,
    send,
)
from .comm import Communicator, DistributedError, ReduceOp, Work
from .group import (
    destroy_process_group,
    get_backend,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
)

__all__ = [
    "Communicator", "DistributedError", "ReduceOp", "Work", "all_gather",
    "all_gather_into_tensor", "all_gather_object", "all_reduce", "barrier", "broadcast",
    "broadcast_object_list", "destroy_process_group", "get_backend", "get_rank",
    "get_world_size", "init_process_group", "irecv", "is_available", "is_initialized", "isend",
    "load_checkpoint", "recv", "reduce_scatter", "reduce_scatter_tensor", "save_checkpoint",
    "send",
]
