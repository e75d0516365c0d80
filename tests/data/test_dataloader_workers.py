"""DataLoader with worker processes (issue 14): the same batches as in-process loading, seeded
per worker as PyTorch (reproducible under manual_seed), worker_init_fn / get_worker_info,
IterableDataset splitting, persistent workers, prefetch, errors carried from the workers, dead
workers and timeouts; RandomSampler with a huge num_samples drawn lazily."""

import os
import time

import numpy as np
import pytest

import chainrule
from chainrule.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    TensorDataset,
    get_worker_info,
)


class Probe(Dataset):
    """Each sample: its index, the worker id, the worker pid and one draw from chainrule."""

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        info = get_worker_info()
        return (i, -1 if info is None else info.id, os.getpid(), float(chainrule.rand(1)))


def _rows(loader):
    return [tuple(t.tolist() for t in b) for b in loader]


def test_batches_equal_in_process_loading():
    ds = TensorDataset(chainrule.arange(23.0).reshape(23, 1), chainrule.arange(23))
    for kw in (dict(batch_size=4), dict(batch_size=5, drop_last=True), dict(batch_size=None)):
        ref = _rows(DataLoader(ds, **kw))
        assert _rows(DataLoader(ds, num_workers=2, **kw)) == ref
    g0, g1 = chainrule.Generator().manual_seed(7), chainrule.Generator().manual_seed(7)
    assert (_rows(DataLoader(ds, batch_size=4, shuffle=True, generator=g0))
            == _rows(DataLoader(ds, batch_size=4, shuffle=True, generator=g1, num_workers=3)))


def test_workers_are_real_processes_seeded_per_worker_and_reproducible():
    def run():
        chainrule.manual_seed(123)
        return _rows(DataLoader(Probe(), batch_size=2, shuffle=True, num_workers=2))
    a, b = run(), run()
    # same seed: same order, same workers, same in-worker draws (in fresh processes)
    assert [(x[0], x[1], x[3]) for x in a] == [(x[0], x[1], x[3]) for x in b]
    pids = {p for batch in a for p in batch[2]}
    assert os.getpid() not in pids and len(pids) == 2
    ids = [batch[1][0] for batch in a]
    assert ids == [0, 1, 0, 1, 0]  # batches go round-robin and come back in order
    draws = {w: [r for batch in a if batch[1][0] == w for r in batch[3]] for w in (0, 1)}
    assert draws[0][:2] != draws[1][:2]  # each worker has its own seed
    chainrule.manual_seed(124)
    c = _rows(DataLoader(Probe(), batch_size=2, shuffle=True, num_workers=2))
    assert [x[3] for x in c] != [x[3] for x in a]


def test_worker_init_fn_and_worker_info():
    seen = []

    class Info(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            info = get_worker_info()
            return (info.id, info.num_workers, info.seed, info.dataset is not None,
                    int(os.environ.get("CR_WORKER_INIT", "-1")))

    def init(worker_id):
        os.environ["CR_WORKER_INIT"] = str(worker_id)

    rows = list(DataLoader(Info(), batch_size=None, num_workers=2, worker_init_fn=init))
    for wid, n, seed, has_ds, init_id in rows:
        assert n == 2 and has_ds and init_id == wid
        seen.append((wid, seed))
    seeds = dict(seen)
    assert seeds[1] == seeds[0] + 1  # base_seed + worker id, as PyTorch
    assert get_worker_info() is None and "CR_WORKER_INIT" not in os.environ


class Split(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


@pytest.mark.parametrize("kw", [dict(batch_size=2), dict(batch_size=3, drop_last=True),
                                dict(batch_size=None)])
def test_iterable_dataset_split_across_workers_matches_torch(kw):
    torch = pytest.importorskip("torch")

    class TSplit(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            return iter(range(info.id, 7, info.num_workers))

    def lists(loader):
        return [b if isinstance(b, int) else b.tolist() for b in loader]

    ours = lists(DataLoader(Split(7), num_workers=2, **kw))
    theirs = lists(torch.utils.data.DataLoader(TSplit(), num_workers=2, **kw))
    assert ours == theirs


def test_persistent_workers_keep_their_processes_between_epochs():
    dl = DataLoader(Probe(6), batch_size=2, num_workers=2, persistent_workers=True,
                    prefetch_factor=1)
    first = {p for b in _rows(dl) for p in b[2]}
    second = {p for b in _rows(dl) for p in b[2]}
    assert first == second and len(first) == 2
    it = iter(dl)  # an epoch left early leaves the workers ready for the next
    next(it)
    del it
    assert [b[0] for b in _rows(dl)] == [[0, 1], [2, 3], [4, 5]]
    dl2 = DataLoader(Probe(6), batch_size=2, num_workers=2)
    assert {p for b in _rows(dl2) for p in b[2]} != {p for b in _rows(dl2) for p in b[2]}


def test_persistent_iterable_dataset_restarts_each_epoch():
    dl = DataLoader(Split(5), batch_size=2, num_workers=2, persistent_workers=True)
    assert [b.tolist() for b in dl] == [b.tolist() for b in dl] == [[0, 2], [1, 3], [4]]


class Fails(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise KeyError(f"no sample {i}")
        return i


def test_an_error_in_a_worker_is_raised_with_its_type_and_traceback():
    with pytest.raises(KeyError, match=r"worker process 0(.|\n)*no sample 2"):
        list(DataLoader(Fails(), batch_size=1, num_workers=2))


def test_a_dead_worker_is_reported():
    class Dies(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            os._exit(3)

    with pytest.raises(RuntimeError, match=r"worker .* exited unexpectedly with exit code 3"):
        list(DataLoader(Dies(), num_workers=1))


def test_timeout_is_enforced():
    class Slow(Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            time.sleep(2)
            return i

    with pytest.raises(RuntimeError, match=r"timed out after 0\.3 seconds"):
        list(DataLoader(Slow(), num_workers=1, timeout=0.3))


@pytest.mark.parametrize("kw,match", [
    (dict(num_workers=-1), "num_workers"),
    (dict(prefetch_factor=2), "prefetch_factor"),
    (dict(num_workers=1, prefetch_factor=0), "prefetch_factor"),
    (dict(persistent_workers=True), "persistent_workers"),
    (dict(num_workers=1, multiprocessing_context="teleport"), "start method"),
    (dict(timeout=-1), "timeout"),
])
def test_bad_worker_options_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(Probe(), **kw)


def test_pin_memory_is_accepted_and_changes_nothing():
    ds = TensorDataset(chainrule.arange(6.0))
    assert _rows(DataLoader(ds, batch_size=4, pin_memory=True)) == _rows(DataLoader(ds, 4))


def test_random_sampler_with_replacement_is_drawn_lazily():
    s = RandomSampler(range(10), replacement=True, num_samples=10**10,
                      generator=chainrule.Generator().manual_seed(0))
    assert len(s) == 10**10
    start = time.perf_counter()
    it = iter(s)
    first = [next(it) for _ in range(100)]
    dl = DataLoader(TensorDataset(chainrule.arange(10)), batch_size=4, sampler=s)
    batch = next(iter(dl))
    assert time.perf_counter() - start < 1.0
    assert all(0 <= i < 10 for i in first) and batch[0].shape == (4,)
    big = RandomSampler(range(10), num_samples=10**10)  # without replacement: lazy too
    assert 0 <= next(iter(big)) < 10


def test_lazy_sampler_chunks_join_into_whole_batches():
    for replacement in (True, False):
        s = RandomSampler(range(7), replacement=replacement, num_samples=40,
                          generator=chainrule.Generator().manual_seed(1))
        s._CHUNK = 6  # batches of 4 span chunks
        flat = list(iter(RandomSampler(range(7), replacement=replacement, num_samples=40,
                                       generator=chainrule.Generator().manual_seed(1))))
        dl = DataLoader(TensorDataset(chainrule.arange(7)), batch_size=4, sampler=s)
        got = [i for (b,) in dl for i in b.tolist()]
        if not replacement:
            assert got == flat
        assert len(got) == 40 and np.all(np.array(got) < 7)
