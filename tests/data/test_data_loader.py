"""DataLoader and collate."""

import collections

import numpy as np
import pytest

import chainrule
from chainrule.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    default_convert,
    random_split,
)


def gen(seed):
    return chainrule.Generator().manual_seed(seed)


def per_sample(batch):
    """The general collate path (a different function object disables the fast path)."""
    return default_collate(batch)


def make_ds(n=37):
    x = chainrule.arange(n * 3).reshape(n, 3).float() / 7.0
    y = chainrule.arange(n) % 4
    return TensorDataset(x, y)


def as_np(batches):
    return [[t.numpy() for t in b] for b in batches]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for ba, bb in zip(a, b):
        assert len(ba) == len(bb)
        for ta, tb in zip(ba, bb):
            assert ta.dtype == tb.dtype and ta.shape == tb.shape
            np.testing.assert_array_equal(ta, tb)


# ------------------------------------------------------------------ len and order
@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 64, 1797])
@pytest.mark.parametrize("bs", [1, 10, 64])
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_matches_batches(n, bs, drop_last):
    ds = TensorDataset(chainrule.zeros(n, 2))
    loader = DataLoader(ds, batch_size=bs, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches)
    expected = n // bs if drop_last else -(-n // bs)
    assert len(loader) == expected
    sizes = [b[0].shape[0] for b in batches]
    assert all(s == bs for s in sizes[:-1])
    if drop_last and sizes:
        assert sizes[-1] == bs


def test_unshuffled_batches_follow_dataset_order():
    ds = make_ds()
    xs = np.concatenate([x.numpy() for x, _ in DataLoader(ds, batch_size=8)])
    np.testing.assert_array_equal(xs, ds.tensors[0].numpy())


def test_shuffle_is_a_permutation_reproducible_by_generator_seed():
    ds = make_ds()
    order = lambda g: np.concatenate(
        [x.numpy()[:, 0] for x, _ in DataLoader(ds, batch_size=5, shuffle=True, generator=g)])
    a, b, c = order(gen(0)), order(gen(0)), order(gen(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.sort(a), np.sort(ds.tensors[0].numpy()[:, 0]))


def test_shuffle_epochs_differ_and_manual_seed_reproduces():
    ds = make_ds()
    loader = DataLoader(ds, batch_size=5, shuffle=True)
    epoch = lambda: np.concatenate([y.numpy() * 0 + x.numpy()[:, 0] for x, y in loader])
    chainrule.manual_seed(123)
    e1, e2 = epoch(), epoch()
    chainrule.manual_seed(123)
    np.testing.assert_array_equal(epoch(), e1)
    np.testing.assert_array_equal(epoch(), e2)
    assert not np.array_equal(e1, e2)


# ------------------------------------------------------------------ fast path
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_fast_path_equals_per_sample_path(shuffle, drop_last):
    ds = make_ds()
    kw = dict(batch_size=8, shuffle=shuffle, drop_last=drop_last)
    fast = as_np(DataLoader(ds, generator=gen(7), **kw))
    slow = as_np(DataLoader(ds, generator=gen(7), collate_fn=per_sample, **kw))
    assert_same_batches(fast, slow)


def test_fast_path_through_subsets_and_custom_batch_sampler():
    ds = make_ds()
    train, _ = random_split(ds, [0.7, 0.3], generator=gen(0))
    nested = Subset(train, [5, 0, -1, 3, 3])
    for d in (train, nested):
        fast = as_np(DataLoader(d, batch_size=4, shuffle=True, generator=gen(2)))
        slow = as_np(DataLoader(d, batch_size=4, shuffle=True, generator=gen(2),
                                collate_fn=per_sample))
        assert_same_batches(fast, slow)
    custom = [[3, 1], (0,), np.array([2, 2, 4])]
    fast = as_np(DataLoader(ds, batch_sampler=custom))
    slow = as_np(DataLoader(ds, batch_sampler=custom, collate_fn=per_sample))
    assert_same_batches(fast, slow)


def test_fast_path_does_no_per_sample_indexing(monkeypatch):
    ds = make_ds()

    def forbidden(self, index):
        raise AssertionError("per-sample __getitem__ called on the fast path")

    monkeypatch.setattr(TensorDataset, "__getitem__", forbidden)
    batches = list(DataLoader(ds, batch_size=8, shuffle=True, generator=gen(0)))
    assert sum(x.shape[0] for x, _ in batches) == len(ds)
    assert isinstance(batches[0], list) and batches[0][1].dtype == chainrule.int64


def test_fast_path_batches_are_copies():
    ds = make_ds(8)
    x, _ = next(iter(DataLoader(ds, batch_size=4)))
    x.numpy()[:] = -1.0
    assert float(ds.tensors[0].numpy().min()) >= 0.0


def test_dataset_tensors_requiring_grad_keep_the_graph():
    w = chainrule.ones(6, 2, requires_grad=True)
    loader = DataLoader(TensorDataset(w), batch_size=3)
    (xb,) = next(iter(loader))
    assert xb.requires_grad
    xb.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [[1, 1]] * 3 + [[0, 0]] * 3)


# ------------------------------------------------------------------ other datasets
class Dicts(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return {"x": np.full(2, i, dtype=np.float32), "label": i % 2, "name": f"s{i}"}


def test_dict_samples_collate_field_by_field():
    batches = list(DataLoader(Dicts(), batch_size=2))
    assert len(batches) == 3
    b = batches[0]
    assert b["x"].shape == (2, 2) and b["x"].dtype == chainrule.float32
    assert b["label"].tolist() == [0, 1] and b["name"] == ["s0", "s1"]


class Stream(IterableDataset):
    def __init__(self, n, with_len=True):
        self.n = n
        self.with_len = with_len

    def __iter__(self):
        return ((float(i), i) for i in range(self.n))

    def __len__(self):
        if not self.with_len:
            raise TypeError("no len")
        return self.n


def test_iterable_dataset_batches_in_stream_order():
    loader = DataLoader(Stream(7), batch_size=3)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert batches[2][1].tolist() == [6]
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    assert len(list(DataLoader(Stream(7), batch_size=3, drop_last=True))) == 2
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)
    with pytest.raises(ValueError, match="expected unspecified sampler option"):
        DataLoader(Stream(3), sampler=[0, 1])


def test_batch_size_none_converts_single_samples():
    loader = DataLoader(Dicts(), batch_size=None)
    items = list(loader)
    assert len(loader) == 5 and len(items) == 5
    assert items[3]["x"].shape == (2,) and items[3]["label"] == 1


def test_sampler_and_batch_sampler_arguments():
    ds = make_ds(6)
    loader = DataLoader(ds, sampler=[5, 4, 3], batch_size=2)
    assert [y.tolist() for _, y in loader] == [[1, 0], [3]]
    bs = BatchSampler(SequentialSampler(ds), 4, drop_last=False)
    assert len(DataLoader(ds, batch_sampler=bs)) == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler=[0], shuffle=True), "sampler option is mutually exclusive with shuffle"),
    (dict(batch_sampler=[[0]], batch_size=2), "batch_sampler option is mutually exclusive"),
    (dict(batch_sampler=[[0]], drop_last=True), "batch_sampler option is mutually exclusive"),
    (dict(batch_size=None, drop_last=True), "batch_size=None"),
    (dict(batch_size=0), "batch_size should be a positive integer"),
    (dict(batch_size=2.0), "batch_size should be a positive integer"),
    (dict(drop_last="yes"), "drop_last should be a boolean"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataLoader(make_ds(4), **kwargs)


def test_bad_generator():
    with pytest.raises(TypeError, match=r"chainrule\.Generator"):
        DataLoader(make_ds(4), shuffle=True, generator=np.random.default_rng(0))


# ------------------------------------------------------------------ collate vs PyTorch
Point = collections.namedtuple("Point", "a b")

SAMPLES = {
    "floats": [1.5, 2.0, -3.25],
    "ints": [1, 2, 3],
    "bools": [True, False, True],
    "arrays": [np.arange(6, dtype=np.float32).reshape(2, 3) + i for i in range(3)],
    "np_scalars": [np.float32(1.5), np.float32(2.5), np.float32(3.5)],
    "np_int_scalars": [np.int16(1), np.int16(2), np.int16(3)],
    "tuples": [(1.0, 2), (3.0, 4), (5.0, 6)],
    "lists": [[1, np.ones(2)], [2, np.zeros(2)], [3, np.ones(2)]],
    "dicts": [{"x": 1.0, "y": {"z": np.uint8(i)}} for i in range(3)],
    "namedtuples": [Point(i, float(i)) for i in range(3)],
    "strings": ["a", "b", "c"],
}


def _to_np(x, torch):
    if isinstance(x, torch.Tensor):
        return ("T", str(x.dtype).replace("torch.", ""), x.numpy())
    if isinstance(x, chainrule.Tensor):
        return ("T", x.dtype.name, x.numpy())
    if isinstance(x, dict):
        return ("D", {k: _to_np(v, torch) for k, v in x.items()})
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return ("N", type(x).__name__, [_to_np(v, torch) for v in x])
    if isinstance(x, list):
        return ("L", [_to_np(v, torch) for v in x])
    return ("V", x)


def _assert_tree_equal(a, b):
    assert a[0] == b[0]
    if a[0] == "T":
        assert a[1] == b[1], (a[1], b[1])
        np.testing.assert_array_equal(a[2], b[2])
    elif a[0] == "D":
        assert list(a[1]) == list(b[1])
        for k in a[1]:
            _assert_tree_equal(a[1][k], b[1][k])
    elif a[0] in ("L", "N"):
        items_a, items_b = a[-1], b[-1]
        assert len(items_a) == len(items_b)
        for x, y in zip(items_a, items_b):
            _assert_tree_equal(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_default_collate_matches_pytorch(kind):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate

    batch = SAMPLES[kind]
    ours = _to_np(default_collate(batch), torch)
    theirs = _to_np(torch_collate(batch), torch)
    _assert_tree_equal(ours, theirs)


def test_default_collate_stacks_tensors_and_checks():
    out = default_collate([chainrule.ones(2, dtype=chainrule.float64), chainrule.zeros(2)])
    assert out.shape == (2, 2) and out.dtype == chainrule.float64  # promoted as torch.stack
    with pytest.raises(ValueError, match="equal size"):
        default_collate([chainrule.ones(2), chainrule.ones(3)])
    with pytest.raises(ValueError, match="equal shapes"):
        default_collate([np.ones(2), np.ones(3)])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal"):
        default_collate([[1, 2], [1]])
    with pytest.raises(TypeError, match=r"found builtins\.object"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(ValueError, match="empty batch"):
        default_collate([])


def test_default_convert():
    out = default_convert((np.arange(3), {"s": "t", "v": np.float64(2.0)}, 4))
    assert isinstance(out, list) and out[0].tolist() == [0, 1, 2]
    assert out[1]["s"] == "t" and out[1]["v"].dtype == chainrule.float64 and out[2] == 4
    p = default_convert(Point(np.ones(1), 2))
    assert isinstance(p, Point) and isinstance(p.a, chainrule.Tensor)


# ------------------------------------------------------------------ GPU
def _cuda():
    from chainrule.backend import cuda_available

    return cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU with CuPy")
def test_fast_path_on_gpu_tensors():
    ds = make_ds()
    gds = TensorDataset(*(t.to("cuda") for t in ds.tensors))
    fast = list(DataLoader(gds, batch_size=8, shuffle=True, generator=gen(0)))
    cpu = list(DataLoader(ds, batch_size=8, shuffle=True, generator=gen(0)))
    assert fast[0][0].device == chainrule.device("cuda:0")
    assert_same_batches([[t.cpu().numpy() for t in b] for b in fast], as_np(cpu))
