"""Multi-process data loading: ``DataLoader(num_workers=N)`` runs N worker processes, as
PyTorch does.

The main process walks the sampler and hands batches of indices to the workers round-robin,
keeping at most ``prefetch_factor * num_workers`` batches in flight; each worker fetches its
samples, collates them and sends the batch back; the main process yields the batches in
sampler order. With an ``IterableDataset`` every worker iterates its own copy of the dataset
(split the work with :func:`get_worker_info`, as in PyTorch) and the batches come round-robin.

Seeding, as PyTorch: each epoch (or once, with ``persistent_workers``) a base seed is drawn
from the loader's generator (chainrule's default generator when there is none); worker ``i``
seeds chainrule (and NumPy's legacy global generator, through ``chainrule.manual_seed``) and
Python's ``random`` with ``base_seed + i`` before ``worker_init_fn(i)`` runs. The same
``chainrule.manual_seed`` therefore gives the same batches and the same in-worker draws.

Example:
    >>> from chainrule.data import get_worker_info
    >>> get_worker_info() is None  # in the main process
    True
"""

from __future__ import annotations

import multiprocessing
import queue
import random as _pyrandom
import traceback
from dataclasses import dataclass
from typing import Any

from .. import random as _random

__all__ = ["WorkerInfo", "get_worker_info"]

_WORKER_INFO = None


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process knows about itself: its ``id`` (0..num_workers-1),
    ``num_workers``, its ``seed`` and its copy of the ``dataset``."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


def get_worker_info() -> WorkerInfo | None:
    """In a DataLoader worker process, its :class:`WorkerInfo`; None in the main process.

    Example:
        >>> from chainrule.data import get_worker_info
        >>> print(get_worker_info())
        None
    """
    return _WORKER_INFO


class _Failure:
    """An exception raised in a worker, carried to the main process as text."""

    def __init__(self, worker_id: int, exc: BaseException):
        self.worker_id = worker_id
        self.exc_type = type(exc)
        self.text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def reraise(self):
        msg = (f"Caught {self.exc_type.__name__} in DataLoader worker process "
               f"{self.worker_id}. Original traceback:\n{self.text}")
        try:
            err = self.exc_type(msg)
        except Exception:  # an exception class that does not take one message
            err = RuntimeError(msg)
        raise err


class _StreamEnd:
    """Sent by a worker whose IterableDataset is exhausted."""


def _worker_loop(dataset, iterable: bool, auto_collation: bool, batch_size, drop_last,
                 collate_fn, worker_id: int, num_workers: int, seed: int, worker_init_fn,
                 index_queue, result_queue):
    global _WORKER_INFO
    _WORKER_INFO = WorkerInfo(worker_id, num_workers, seed, dataset)
    _random.manual_seed(seed)
    _pyrandom.seed(seed)
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
        stream = _stream(dataset, auto_collation, batch_size, drop_last, collate_fn) \
            if iterable else None
    except BaseException as e:  # reported on the first task
        init_error = _Failure(worker_id, e)
    else:
        init_error = None
    while True:
        task = index_queue.get()
        if task is None:
            break
        if task == "reset":  # a new epoch for a persistent worker
            if iterable and init_error is None:
                stream = _stream(dataset, auto_collation, batch_size, drop_last, collate_fn)
            continue
        key, indices = task
        if init_error is not None:
            result_queue.put((key, init_error))
            continue
        try:
            if iterable:
                out = next(stream, _StreamEnd)
                out = _StreamEnd() if out is _StreamEnd else out
            elif auto_collation:
                out = collate_fn([dataset[i] for i in indices])
            else:
                out = collate_fn(dataset[indices])
        except BaseException as e:
            out = _Failure(worker_id, e)
        result_queue.put((key, out))


def _stream(dataset, auto_collation, batch_size, drop_last, collate_fn):
    """The batches (or converted samples) of an IterableDataset, one at a time."""
    if not auto_collation:
        for sample in dataset:
            yield collate_fn(sample)
        return
    batch = []
    for sample in dataset:
        batch.append(sample)
        if len(batch) == batch_size:
            yield collate_fn(batch)
            batch = []
    if batch and not drop_last:
        yield collate_fn(batch)


class _WorkerPool:
    """The worker processes of one DataLoader (kept between epochs when persistent)."""

    def __init__(self, loader, base_seed: int):
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = multiprocessing.get_context()
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        self.result_queue = ctx.Queue()
        self.index_queues, self.procs = [], []
        n = loader.num_workers
        for i in range(n):
            q = ctx.Queue()
            p = ctx.Process(target=_worker_loop, daemon=True, args=(
                loader.dataset, loader._iterable, loader._auto_collation, loader.batch_size,
                loader.drop_last, loader.collate_fn, i, n, base_seed + i,
                loader.worker_init_fn, q, self.result_queue))
            p.start()
            self.index_queues.append(q)
            self.procs.append(p)
        self.timeout = loader.timeout
        self.epoch = 0

    def get(self):
        """The next (key, result) from any worker; raises if one died or time ran out."""
        waited = 0.0
        step = 0.25 if not self.timeout else min(0.25, self.timeout)
        while True:
            try:
                return self.result_queue.get(timeout=step)
            except queue.Empty:
                waited += step
                for i, p in enumerate(self.procs):
                    if not p.is_alive():
                        self.shutdown()
                        raise RuntimeError(f"DataLoader worker {i} (pid {p.pid}) exited "
                                           f"unexpectedly with exit code {p.exitcode}") from None
                if self.timeout and waited >= self.timeout:
                    self.shutdown(wait=False)
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds "
                                       "waiting for a batch from its workers") from None

    def shutdown(self, wait: bool = True):
        """Stop the workers: ask them to finish (``wait``), else terminate them."""
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for p in self.procs:
            p.join(timeout=5 if wait else 0)
            if p.is_alive():
                p.terminate()
                p.join()
        for q in (*self.index_queues, self.result_queue):
            q.close()
            q.join_thread()
        self.procs = []

    def __del__(self):
        if getattr(self, "procs", None):
            self.shutdown()


def iterate(loader, pool: _WorkerPool, new_epoch: bool):
    """One epoch of batches from the pool, in order."""
    pool.epoch += 1
    epoch = pool.epoch
    if new_epoch:
        for q in pool.index_queues:
            q.put("reset")
    n = len(pool.procs)
    depth = loader.prefetch_factor * n
    buffered = {}
    sent = received = arrived = 0  # tasks sent, results yielded, results off the queue

    def fetch(want):
        nonlocal arrived
        while want not in buffered:
            key, out = pool.get()
            if key[0] == epoch:
                buffered[key] = out
                arrived += 1
        return buffered.pop(want)

    try:
        if loader._iterable:
            active = list(range(n))
            turn = 0
            pending = {}  # key -> worker

            def send():
                nonlocal sent
                w = active[turn % len(active)]
                pool.index_queues[w].put(((epoch, sent), None))
                pending[(epoch, sent)] = w
                sent += 1

            while active or pending:
                while active and len(pending) < depth:
                    send()
                    turn += 1
                if not pending:
                    break
                want = (epoch, received)
                out = fetch(want)
                w = pending.pop(want)
                received += 1
                if isinstance(out, _Failure):
                    out.reraise()
                if isinstance(out, _StreamEnd):
                    if w in active:
                        active.remove(w)
                    continue
                yield out
            return
        tasks = iter(loader._index_tasks())
        exhausted = False
        while True:
            while not exhausted and sent - received < depth:
                try:
                    indices = next(tasks)
                except StopIteration:
                    exhausted = True
                    break
                pool.index_queues[sent % n].put(((epoch, sent), indices))
                sent += 1
            if received == sent:
                return
            out = fetch((epoch, received))
            received += 1
            if isinstance(out, _Failure):
                out.reraise()
            yield out
    finally:
        if not loader.persistent_workers:
            pool.shutdown()
        else:  # drain what is still in flight, so the next epoch starts clean
            while arrived < sent:
                key, _ = pool.get()
                arrived += key[0] == epoch
