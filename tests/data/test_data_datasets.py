"""Datasets, random_split and samplers."""

import numpy as np
import pytest

import chainrule
from chainrule.data import (
    BatchSampler,
    ChainDataset,
    ConcatDataset,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    random_split,
)


def gen(seed):
    return chainrule.Generator().manual_seed(seed)


# ------------------------------------------------------------------ TensorDataset
def test_tensor_dataset_items_are_rows():
    x = chainrule.arange(12).reshape(4, 3).float()
    y = chainrule.tensor([5, 6, 7, 8])
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    xi, yi = ds[2]
    assert xi.tolist() == [6.0, 7.0, 8.0] and int(yi) == 7
    assert [int(b) for _, b in (ds[i] for i in range(4))] == [5, 6, 7, 8]
    assert "(4, 3)" in repr(ds)


def test_tensor_dataset_size_mismatch_names_sizes():
    with pytest.raises(ValueError, match=r"tensor 0: 5, tensor 1: 4"):
        TensorDataset(chainrule.zeros(5, 2), chainrule.zeros(4))


def test_tensor_dataset_bad_inputs():
    with pytest.raises(TypeError, match=r"argument 1 is a numpy.ndarray.*from_numpy"):
        TensorDataset(chainrule.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="0-dimensional"):
        TensorDataset(chainrule.tensor(1.0))
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


# ------------------------------------------------------------------ Subset / Concat / Chain
def test_subset_maps_indices():
    s = Subset(list("abcdef"), [4, 1, 1])
    assert len(s) == 3
    assert [s[i] for i in range(3)] == ["e", "b", "b"]
    assert s[-1] == "b"


def test_concat_dataset_indexing_and_errors():
    ds = ConcatDataset([[0, 1, 2], [], [3, 4]])
    assert len(ds) == 5 and ds.cumulative_sizes == [3, 3, 5]
    assert [ds[i] for i in range(5)] == [0, 1, 2, 3, 4]
    assert [ds[-i] for i in range(1, 6)] == [4, 3, 2, 1, 0]
    with pytest.raises(IndexError, match="out of range"):
        ds[5]
    with pytest.raises(IndexError, match="out of range"):
        ds[-6]
    with pytest.raises(ValueError, match="empty"):
        ConcatDataset([])


class Count(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return i * i


def test_dataset_add_and_chain():
    both = Squares(3) + Squares(2)
    assert isinstance(both, ConcatDataset) and [both[i] for i in range(5)] == [0, 1, 4, 0, 1]
    chained = Count(2) + Count(3)
    assert isinstance(chained, ChainDataset)
    assert list(chained) == [0, 1, 0, 1, 2] and len(chained) == 5
    with pytest.raises(TypeError, match="ChainDataset"):
        ConcatDataset([Count(2)])


# ------------------------------------------------------------------ random_split
def test_random_split_partitions_and_is_seeded():
    parts = random_split(range(20), [5, 15], generator=gen(3))
    assert [len(p) for p in parts] == [5, 15]
    assert sorted(list(parts[0]) + list(parts[1])) == list(range(20))
    again = random_split(range(20), [5, 15], generator=gen(3))
    assert list(again[0]) == list(parts[0])
    other = random_split(range(20), [5, 15], generator=gen(4))
    assert list(other[0]) != list(parts[0])


def test_random_split_default_generator_follows_manual_seed():
    chainrule.manual_seed(11)
    a = list(random_split(range(30), [10, 20])[0])
    chainrule.manual_seed(11)
    b = list(random_split(range(30), [10, 20])[0])
    assert a == b


@pytest.mark.parametrize("n,fracs", [(10, [0.3, 0.3, 0.4]), (11, [0.3, 0.3, 0.4]),
                                     (7, [0.5, 0.5]), (1797, [0.8, 0.2]), (5, [0.1, 0.9])])
def test_random_split_fraction_lengths_match_pytorch(n, fracs):
    torch = pytest.importorskip("torch")
    ours = [len(p) for p in random_split(range(n), fracs, generator=gen(0))]
    theirs = [len(p) for p in torch.utils.data.random_split(range(n), fracs)]
    assert ours == theirs


def test_random_split_errors():
    with pytest.raises(ValueError, match="sum to 9, but the dataset has 10"):
        random_split(range(10), [4, 5])
    with pytest.raises(ValueError, match="non-negative"):
        random_split(range(10), [-1, 11])
    with pytest.raises(ValueError, match="non-negative integers or fractions"):
        random_split(range(10), [0.5, 0.4])
    with pytest.raises(TypeError, match=r"chainrule\.Generator"):
        random_split(range(10), [5, 5], generator=np.random.default_rng(0))


def test_random_split_zero_length_fraction_warns():
    with pytest.warns(UserWarning) as record:
        parts = random_split(range(2), [0.9, 0.05, 0.05], generator=gen(0))
    messages = [str(w.message) for w in record]
    assert any("index 1 is 0" in m for m in messages)
    assert any("index 2 is 0" in m for m in messages)
    assert [len(p) for p in parts] == [2, 0, 0]


# ------------------------------------------------------------------ samplers
def test_sequential_sampler():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    assert len(SequentialSampler(range(4))) == 4


def test_random_sampler_permutes_and_reproduces():
    a = list(RandomSampler(range(50), generator=gen(1)))
    b = list(RandomSampler(range(50), generator=gen(1)))
    assert a == b and sorted(a) == list(range(50)) and a != list(range(50))
    s = RandomSampler(range(50), generator=gen(1))
    e1, e2 = list(s), list(s)
    assert e1 == a and e2 != e1  # the generator advances: each epoch differs


def test_random_sampler_default_generator_follows_manual_seed():
    s = RandomSampler(range(40))
    chainrule.manual_seed(5)
    a = list(s)
    b = list(s)
    chainrule.manual_seed(5)
    assert list(s) == a and list(s) == b and a != b


def test_random_sampler_num_samples_and_replacement():
    s = RandomSampler(range(4), num_samples=10, generator=gen(0))
    idx = list(s)
    assert len(s) == 10 and len(idx) == 10
    assert sorted(idx[:8]) == [0, 0, 1, 1, 2, 2, 3, 3]  # whole permutations first
    r = list(RandomSampler(range(3), replacement=True, num_samples=300, generator=gen(0)))
    assert len(r) == 300 and set(r) == {0, 1, 2}
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(range(3), replacement=1)


def test_subset_random_sampler():
    s = SubsetRandomSampler([3, 9, 27, 81], generator=gen(2))
    got = list(s)
    assert sorted(got) == [3, 9, 27, 81] and len(s) == 4


def test_weighted_random_sampler():
    s = WeightedRandomSampler([0.0, 3.0, 1.0, 0.0], 4000, generator=gen(0))
    idx = np.array(list(s))
    assert set(idx.tolist()) <= {1, 2}
    assert abs((idx == 1).mean() - 0.75) < 0.03  # 4000 draws: sd ~ 0.007
    w = WeightedRandomSampler(chainrule.tensor([1.0, 1.0, 1.0]), 3, replacement=False,
                              generator=gen(0))
    assert sorted(w) == [0, 1, 2]
    with pytest.raises(ValueError, match="without replacement from 1 non-zero"):
        WeightedRandomSampler([1.0, 0.0], 2, replacement=False)
    with pytest.raises(ValueError, match="non-negative"):
        WeightedRandomSampler([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="sum to zero"):
        WeightedRandomSampler([0.0, 0.0], 2)


def test_batch_sampler():
    assert list(BatchSampler(range(7), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(SequentialSampler(range(7)), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    for n in range(0, 12):
        for bs in (1, 3, 5):
            for drop in (False, True):
                b = BatchSampler(SequentialSampler(range(n)), bs, drop)
                assert len(b) == len(list(b))
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean"):
        BatchSampler(range(3), 2, 1)
