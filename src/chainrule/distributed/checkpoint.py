"""Checkpoints in a distributed run: rank 0 writes (atomically, with ``chainrule.io.save``),
every rank loads the bytes rank 0 read, so all ranks resume from identical state.

Only rank 0 touches the file, so the ranks need no shared file system. Both calls are
collective (every rank calls them) and raise the same error on every rank when rank 0's read
or write fails, so no rank waits for a file that will never come.

Example (under ``mpiexec -n 2``)::

    dist.save_checkpoint({"model": ddp.state_dict(), "optimizer": opt.state_dict()}, path)
    state = dist.load_checkpoint(path)      # identical on every rank
"""

from __future__ import annotations

import io as _pyio
import os
from typing import Any

from .. import io as _io
from .comm import DistributedError
from .group import current


def save_checkpoint(obj: Any, path: str | os.PathLike) -> None:
    """Rank 0 saves ``obj`` to ``path`` atomically (``chainrule.io.save``); the other ranks
    wait until it is on disk. Every rank calls it; the other ranks' ``obj`` is not used."""
    comm = current("save_checkpoint")
    err = None
    if comm.rank == 0:
        try:
            _io.save(obj, path)
        except Exception as e:  # reported to every rank below
            err = e
    outcome = comm.allgather_object(None if err is None else _describe(err))[0]
    if err is not None:
        raise err
    if outcome is not None:
        raise DistributedError(f"save_checkpoint: rank 0 could not write {os.fspath(path)!r}: "
                               f"{outcome}")


def load_checkpoint(path: str | os.PathLike, map_location=None) -> Any:
    """Rank 0 reads ``path``; every rank decodes the same bytes (``chainrule.io.load``).
    Every rank calls it and gets identical tensors."""
    comm = current("load_checkpoint")
    data, err = None, None
    if comm.rank == 0:
        try:
            with open(os.fspath(path), "rb") as f:
                data = f.read()
        except OSError as e:
            err = e
    data, problem = comm.allgather_object((data, None if err is None else _describe(err)))[0]
    if err is not None:
        raise err
    if problem is not None:
        raise DistributedError(f"load_checkpoint: rank 0 could not read {os.fspath(path)!r}: "
                               f"{problem}")
    buf = _pyio.BytesIO(data)
    buf.name = os.fspath(path)
    return _io.load(buf, map_location=map_location)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
