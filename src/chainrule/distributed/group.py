"""The default process group: creating it, asking about it, ending it, and taking the job down
when a rank hits an uncaught exception.

Example:
    >>> import chainrule.distributed as dist
    >>> dist.is_initialized()
    False
    >>> try:
    ...     dist.get_rank()
    ... except dist.DistributedError as e:
    ...     print(str(e)[:58])
    get_rank: the default process group is not initialized; ca
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import signal
import sys

from .comm import Communicator, DistributedError

BACKENDS = ("mpi",)
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)

_group: Communicator | None = None
_prev_excepthook = None


def is_available() -> bool:
    """True when a backend can be used here (mpi4py imports).

    Example:
        >>> import chainrule.distributed as dist
        >>> isinstance(dist.is_available(), bool)
        True
    """
    try:
        from .mpi import load_mpi  # noqa: PLC0415

        load_mpi()
    except ImportError:
        return False
    return True


def init_process_group(backend: str = "mpi", init_method=None, timeout=None,
                       world_size: int = -1, rank: int = -1, store=None,
                       group_name: str = "") -> None:
    """Join the job's default process group (PyTorch's ``init_process_group``).

    With the ``"mpi"`` backend the rank and world size come from the MPI launcher
    (``mpiexec -n 4 python train.py``); ``world_size``/``rank``, when given, must agree with
    it. ``timeout`` (a ``datetime.timedelta``, default 30 minutes) bounds every wait: a
    collective that has not completed by then raises an error naming the ranks that did not
    join it, and an uncaught exception on any rank ends the whole job.

    Example:
        >>> import chainrule.distributed as dist
        >>> try:
        ...     dist.init_process_group("gloo")
        ... except ValueError as e:
        ...     print(str(e)[:52])
        init_process_group: unknown backend 'gloo'; chainrul
    """
    global _group
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"init_process_group: unknown backend {backend!r}; chainrule has "
                         "'mpi' (CPU tensors, through mpi4py); 'nccl' comes with the GPU backend")
    if init_method not in (None, "env://") or store is not None:
        raise ValueError("init_process_group: the 'mpi' backend takes the job from the MPI "
                         "launcher; init_method and store are not used with it")
    if _group is not None:
        raise DistributedError("init_process_group: the default process group is already "
                               "initialized; call destroy_process_group() first")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if not isinstance(timeout, datetime.timedelta):
        raise TypeError(f"init_process_group: timeout must be a datetime.timedelta, got "
                        f"{type(timeout).__name__}")
    if timeout.total_seconds() <= 0:
        raise ValueError(f"init_process_group: timeout must be positive, got {timeout}")
    from .mpi import MPICommunicator  # noqa: PLC0415

    comm = MPICommunicator(timeout.total_seconds())
    for name, given, actual in (("world_size", world_size, comm.size), ("rank", rank, comm.rank)):
        if given not in (-1, None) and given != actual:
            comm.close()
            raise ValueError(f"init_process_group: {name}={given}, but the MPI launcher "
                             f"started this process with {name} {actual}")
    _group = comm
    _install_fault_handler()


def destroy_process_group(group=None) -> None:
    """Leave the default process group; ``init_process_group`` may be called again.

    Collective: every rank calls it. It frees the shared-memory windows of the group (its
    argument checks', every DistributedDataParallel's gradient buckets) after a barrier that
    times out, naming the ranks that never came, as any collective does; a model wrapped in
    DistributedDataParallel before must be wrapped again after a new ``init_process_group``.
    """
    global _group
    _check_group(group, "destroy_process_group")
    if _group is not None:
        _group.close(free_windows=True)
        _group = None


def is_initialized() -> bool:
    """True between ``init_process_group`` and ``destroy_process_group``."""
    return _group is not None


def current(what: str, group=None) -> Communicator:
    """The default group's communicator, or a clear error when there is none."""
    _check_group(group, what)
    if _group is None:
        raise DistributedError(
            f"{what}: the default process group is not initialized; call "
            'chainrule.distributed.init_process_group("mpi") first (and launch with mpiexec -n N '
            "python script.py)")
    return _group


def _check_group(group, what: str) -> None:
    if group is not None and group is not _group:
        raise ValueError(f"{what}: only the default process group (group=None) exists in "
                         "chainrule.distributed so far")


def get_rank(group=None) -> int:
    """This process's rank in the group (0 .. world_size - 1)."""
    return current("get_rank", group).rank


def get_world_size(group=None) -> int:
    """The number of processes in the group."""
    return current("get_world_size", group).size


def get_backend(group=None) -> str:
    """The group's backend name (``"mpi"``)."""
    return current("get_backend", group).backend


# ------------------------------------------------------------------ faults
def _install_fault_handler() -> None:
    """An uncaught exception on any rank ends the whole job (the others would wait for it)."""
    global _prev_excepthook
    if _prev_excepthook is None:
        _prev_excepthook = sys.excepthook
        sys.excepthook = _excepthook
        atexit.register(_at_exit)


def _excepthook(etype, value, tb) -> None:
    prev = _prev_excepthook or sys.__excepthook__
    prev(etype, value, tb)
    group = _group
    if group is not None:
        msg = str(value).splitlines()[0] if str(value) else ""
        group.abort(f"{etype.__name__}: {msg}" if msg else etype.__name__)


def _at_exit() -> None:
    # a clean end: leave the group so MPI finalizes without pending communicators. Under
    # hydra's -disable-auto-cleanup every rank's exit sends SIGUSR1 to the others; Python's
    # shutdown restores the default action (terminate) for handlers it set, but not SIG_IGN
    global _group
    if _prev_excepthook is not None and hasattr(signal, "SIGUSR1"):
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if _group is not None:
        _group.close()
        _group = None
