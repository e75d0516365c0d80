"""The bundled digits data set."""

import hashlib
import pathlib

import numpy as np
import pytest

import chainrule
from chainrule.data import DataLoader, TensorDataset, digits_split, load_digits

PKG = pathlib.Path(chainrule.__file__).parent
# sklearn.datasets.load_digits().target counts per class (sklearn 1.9.1)
CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_shapes_dtypes_and_range():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == chainrule.float32
    assert y.shape == (1797,) and y.dtype == chainrule.int64
    x = X.numpy()
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.unique(x * 16), np.arange(17))  # exactly k/16
    assert np.bincount(y.numpy()).tolist() == CLASS_COUNTS
    assert not X.requires_grad


def test_unnormalized_keeps_integer_pixel_values():
    Xr, _ = load_digits(normalize=False)
    X, _ = load_digits()
    assert Xr.dtype == chainrule.float32 and Xr.numpy().max() == 16.0
    np.testing.assert_array_equal(Xr.numpy() / 16, X.numpy())


def test_calls_return_fresh_tensors():
    X1, y1 = load_digits()
    X1.numpy()[:] = -5
    y1.numpy()[:] = -5
    X2, y2 = load_digits()
    assert X2.numpy().min() == 0.0 and y2.numpy().min() == 0


def test_matches_scikit_learn_copy():
    datasets = pytest.importorskip("sklearn.datasets")
    ref = datasets.load_digits()
    Xr, y = load_digits(normalize=False)
    np.testing.assert_array_equal(Xr.numpy(), ref.data.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), ref.target)
    ours = hashlib.sha256(Xr.numpy().astype(np.uint8).tobytes()).hexdigest()
    theirs = hashlib.sha256(ref.images.astype(np.uint8).tobytes()).hexdigest()
    assert ours == theirs
    assert np.bincount(ref.target).tolist() == CLASS_COUNTS


def test_bundled_files_and_attribution():
    with np.load(PKG / "data" / "digits.npz", allow_pickle=False) as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (1797, 8, 8)
        assert z["targets"].dtype == np.uint8 and z["targets"].shape == (1797,)
    text = (PKG / "data" / "DIGITS_LICENSE.md").read_text()
    for needle in ("Alpaydin", "Kaynak", "1998", "UCI Machine Learning Repository", "CC BY 4.0"):
        assert needle in text


def test_package_sources_do_not_import_sklearn():
    for path in PKG.rglob("*.py"):
        src = path.read_text()
        assert "import sklearn" not in src and "from sklearn" not in src, path


def _rows(ds):
    return np.concatenate([ds.tensors[0].numpy(), ds.tensors[1].numpy()[:, None]], axis=1)


def test_split_sizes_stratification_and_cover():
    train, test = digits_split()
    assert isinstance(train, TensorDataset) and isinstance(test, TensorDataset)
    assert (len(train), len(test)) == (1438, 359)
    counts = np.bincount(test.tensors[1].numpy(), minlength=10)
    assert np.all(np.abs(counts - np.array(CLASS_COUNTS) * 0.2) < 1)
    # the two sets are exactly the full set, as a multiset of (pixels, label) rows
    X, y = load_digits()
    full = np.concatenate([X.numpy(), y.numpy()[:, None]], axis=1)
    both = np.concatenate([_rows(train), _rows(test)])
    key = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_array_equal(key(both), key(full))


def test_split_is_fixed_by_seed():
    a_test = digits_split(seed=0)[1]
    b_test = digits_split(seed=0)[1]
    c_test = digits_split(seed=1)[1]
    np.testing.assert_array_equal(_rows(a_test), _rows(b_test))
    assert not np.array_equal(_rows(a_test), _rows(c_test))
    chainrule.manual_seed(99)  # the global seed plays no part
    np.testing.assert_array_equal(_rows(digits_split(seed=0)[1]), _rows(a_test))


def test_split_fraction_and_errors():
    train, test = digits_split(test_fraction=0.5)
    assert len(test) == round(1797 * 0.5) and len(train) + len(test) == 1797
    for bad in (0, 1, 1.5, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="test_fraction"):
            digits_split(test_fraction=bad)
    with pytest.raises(ValueError, match="seed"):
        digits_split(seed=-1)
    with pytest.raises(ValueError, match="empty test set"):
        digits_split(test_fraction=1e-6)


def test_loader_over_digits():
    train, _ = digits_split()
    loader = DataLoader(train, batch_size=64, shuffle=True,
                        generator=chainrule.Generator().manual_seed(0))
    assert len(loader) == 23
    seen = sum(x.shape[0] for x, _ in loader)
    assert seen == 1438
