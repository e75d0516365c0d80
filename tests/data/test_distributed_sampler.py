"""DistributedSampler without MPI (num_replicas/rank given): PyTorch's padding, drop_last,
shuffle, seed and set_epoch semantics; the same order as torch's where torch is installed."""

import numpy as np
import pytest

import chainrule as cr
import chainrule.distributed as dist
from chainrule.data import DataLoader, DistributedSampler, TensorDataset

CASES = [(n, k, drop) for n in (0, 1, 5, 7, 10, 13) for k in (1, 2, 3, 4) for drop in (False, True)]


@pytest.mark.parametrize("n,k,drop", CASES)
def test_unshuffled_matches_torch(n, k, drop):
    torch_data = pytest.importorskip("torch.utils.data", reason="torch is the oracle")
    for r in range(k):
        ours = DistributedSampler(range(n), num_replicas=k, rank=r, shuffle=False,
                                  drop_last=drop)
        theirs = torch_data.DistributedSampler(range(n), num_replicas=k, rank=r,
                                               shuffle=False, drop_last=drop)
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs)


@pytest.mark.parametrize("n,k,drop", [(10, 3, False), (10, 3, True), (7, 2, False), (8, 4, True)])
def test_shuffled_partition(n, k, drop):
    parts = []
    for r in range(k):
        s = DistributedSampler(range(n), num_replicas=k, rank=r, seed=5, drop_last=drop)
        s.set_epoch(3)
        got = list(s)
        assert len(got) == len(s)
        parts.append(got)
    flat = sorted(i for p in parts for i in p)
    if drop:  # disjoint, every rank the same count, the tail of the permutation dropped
        assert len(set(flat)) == len(flat) == k * (n // k)
    else:  # every index at least once, padded with repeats to a multiple of k
        assert set(flat) == set(range(n)) and len(flat) == k * -(-n // k)
    assert all(len(p) == len(parts[0]) for p in parts)


def test_epoch_and_seed_change_the_order_the_same_way_on_every_rank():
    def order(seed, epoch, rank):
        s = DistributedSampler(range(20), num_replicas=2, rank=rank, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0, 0) == order(0, 0, 0)  # deterministic (every rank computes the same)
    assert order(0, 0, 0) != order(0, 1, 0)  # set_epoch reshuffles
    assert order(0, 0, 0) != order(1, 0, 0)  # the seed matters
    assert sorted(order(0, 4, 0) + order(0, 4, 1)) == list(range(20))
    assert list(DistributedSampler(range(6), num_replicas=2, rank=0, shuffle=False)) == [0, 2, 4]


def test_with_dataloader():
    ds = TensorDataset(cr.arange(10).float())
    seen = []
    for r in range(2):
        loader = DataLoader(ds, batch_size=2,
                            sampler=DistributedSampler(ds, num_replicas=2, rank=r, seed=1))
        seen += [x for (b,) in loader for x in b.tolist()]
        assert len(loader) == 3
    assert sorted(seen) == [float(i) for i in range(10)]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"invalid rank 2, rank should be in the interval \[0, 1"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="rank must be an int"):
        DistributedSampler(range(4), num_replicas=2, rank=1.0)
    with pytest.raises(TypeError, match="shuffle should be a boolean"):
        DistributedSampler(range(4), num_replicas=2, rank=0, shuffle="yes")
    with pytest.raises(TypeError, match="epoch must be an int"):
        DistributedSampler(range(4), num_replicas=2, rank=0).set_epoch(None)
    # without num_replicas/rank it needs the process group
    assert not dist.is_initialized()
    with pytest.raises(dist.DistributedError, match="DistributedSampler: the default process"):
        DistributedSampler(range(4))
    np.testing.assert_array_equal(
        DistributedSampler(range(0), num_replicas=3, rank=1)._index_array(), [])
