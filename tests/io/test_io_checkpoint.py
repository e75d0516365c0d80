"""chainrule.io: safetensors checkpoints."""

import io
import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy as stnp

import chainrule
from chainrule.io import CheckpointError, load, save
from chainrule.io import checkpoint as ckpt

DTYPES = ["float32", "float64", "float16", "int32", "int64", "int16", "int8", "uint8", "bool"]
SHAPES = [(), (0,), (0, 3), (5,), (2, 3, 4)]


def random_array(dtype, shape, seed=0):
    """Every bit pattern is fair game (NaNs with payloads, infinities, -0.0)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


def bits(a):
    return (a.dtype, a.shape, np.ascontiguousarray(a).tobytes())


@pytest.fixture
def path(tmp_path):
    return tmp_path / "ckpt.safetensors"


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_tensor_round_trip_is_bit_exact(path, dtype, shape):
    a = random_array(dtype, shape)
    t = chainrule.from_numpy(a)
    save(t, path)
    back = load(path)
    assert isinstance(back, chainrule.Tensor)
    assert back.dtype == t.dtype and back.shape == shape
    assert bits(back.numpy()) == bits(a)


def test_non_contiguous_tensor_round_trip(path):
    a = np.arange(24, dtype=np.float64).reshape(4, 6)[::2, 1::2].T
    save({"v": chainrule.tensor(a)}, path)
    np.testing.assert_array_equal(load(path)["v"].numpy(), a)


def test_loaded_tensors_are_plain_writable_cpu_leaves(path):
    w = chainrule.randn(3, 2, requires_grad=True)
    save({"w": w}, path)
    back = load(path)["w"]
    assert not back.requires_grad and back.is_leaf and back.device == chainrule.device("cpu")
    back.numpy()[0, 0] = 1.0  # writable
    np.testing.assert_array_equal(load(path)["w"].numpy(), w.detach().numpy())


def test_state_dict_is_stored_under_its_own_keys(path):
    sd = {"fc1.weight": chainrule.randn(4, 3), "fc1.bias": chainrule.zeros(4),
          "bn.num_batches_tracked": chainrule.tensor(7)}
    save(sd, path)
    raw = stnp.load_file(str(path))
    assert set(raw) == set(sd)
    for k, t in sd.items():
        assert bits(raw[k]) == bits(t.numpy())
    back = load(path)
    assert list(back) == list(sd)  # order kept
    for k in sd:
        assert bits(back[k].numpy()) == bits(sd[k].numpy())


def test_pytorch_reads_the_weights(path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    sd = {"layer.weight": chainrule.randn(2, 5), "layer.bias": chainrule.randn(2)}
    save(sd, path)
    got = load_file(str(path))
    assert set(got) == set(sd)
    for k in sd:
        assert got[k].dtype == torch.float32
        np.testing.assert_array_equal(got[k].numpy(), sd[k].numpy())


def optimizer_like_state():
    return {
        "state": {0: {"step": chainrule.tensor(20.0), "exp_avg": chainrule.randn(3, 2),
                      "exp_avg_sq": chainrule.rand(3, 2)},
                  1: {"step": chainrule.tensor(20.0), "momentum_buffer": None}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                          "weight_decay": 0, "amsgrad": False, "maximize": False,
                          "foreach": None, "params": [0, 1], "name": "héllo ✓"}],
    }


def assert_tree_equal(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, chainrule.Tensor):
        assert bits(a.numpy()) == bits(b.numpy())
    elif isinstance(a, np.ndarray):
        assert bits(a) == bits(b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert type(k) is type(next(x for x in b if x == k))
            assert_tree_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_tree_equal(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b)
    else:
        assert a == b


def test_nested_structures_round_trip(path):
    obj = {
        "model": {"w": chainrule.randn(2, 2)},
        "optimizer": optimizer_like_state(),
        "epoch": 12, "best": 0.975, "done": True, "note": None,
        "specials": [float("nan"), float("inf"), float("-inf"), -0.0, 1e300, 5e-324],
        "big": 2 ** 127 + 3, "neg": -(2 ** 70),
        "keys": {1: "int", 2.5: "float", None: "none", False: "bool", (1, "a"): "tuple"},
        "rng": chainrule.Generator().manual_seed(3).get_state(),
        "array": np.arange(6, dtype=np.int32).reshape(2, 3),
        "empty": [[], (), {}],
        "np_scalars": [np.float32(0.5), np.int64(3), np.bool_(True)],
    }
    save(obj, path)
    back = load(path)
    expected = dict(obj)
    expected["np_scalars"] = [0.5, 3, True]  # NumPy scalars come back as Python numbers
    assert_tree_equal(expected, back)
    assert stnp.load_file(str(path))["model.w"].shape == (2, 2)


def test_generator_state_round_trip_continues_the_stream(path):
    g = chainrule.Generator().manual_seed(5)
    g.np.random(3)
    save({"rng": g.get_state()}, path)
    expected = g.np.random(4)
    h = chainrule.Generator().set_state(load(path)["rng"])
    np.testing.assert_array_equal(h.np.random(4), expected)


def test_name_collisions_and_reserved_names(path):
    a, b, c = chainrule.ones(1), chainrule.zeros(1), chainrule.full((1,), 2.0)
    obj = {"a.b": a, "a": {"b": b}, "__metadata__": c}
    save(obj, path)
    back = load(path)
    assert back["a.b"].item() == 1.0 and back["a"]["b"].item() == 0.0
    assert back["__metadata__"].item() == 2.0
    assert len(stnp.load_file(str(path))) == 3


def test_file_objects(tmp_path):
    buf = io.BytesIO()
    save({"x": chainrule.arange(4)}, buf)
    buf.seek(0)
    assert load(buf)["x"].tolist() == [0, 1, 2, 3]


def test_overwrite_and_permissions(path):
    save({"x": chainrule.zeros(2)}, path)
    save({"x": chainrule.ones(3)}, path)
    assert load(path)["x"].tolist() == [1.0, 1.0, 1.0]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_map_location(path):
    save({"x": chainrule.ones(2)}, path)
    assert load(path, map_location="cpu")["x"].device == chainrule.device("cpu")
    assert load(path, map_location=chainrule.device("cpu"))["x"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown device"):
        load(path, map_location="gpu")


def test_foreign_safetensors_file_loads_as_dict(path):
    stnp.save_file({"b": np.ones(2, np.float32), "a": np.arange(3)}, str(path),
                   metadata={"format": "np"})
    back = load(path)
    assert set(back) == {"a", "b"} and back["a"].tolist() == [0, 1, 2]


# ------------------------------------------------------------------ what cannot be saved
class HasStateDict:
    def state_dict(self):
        return {}


@pytest.mark.parametrize("obj,match", [
    ({"m": HasStateDict()}, r"HasStateDict at obj\['m'\] \(save its state_dict\(\) instead\)"),
    ([1, {2, 3}], r"builtins.set at obj\[1\]"),
    ({"f": print}, "builtin_function_or_method"),
    ({"a": np.array(["x"])}, r"array at obj\['a'\] has dtype <U1"),
    ({"c": 1 + 2j}, "builtins.complex"),
    ({frozenset(): 1}, "dict key"),
])
def test_unsupported_objects_are_refused(path, obj, match):
    with pytest.raises(TypeError, match=match):
        save(obj, path)
    assert not path.exists()


def test_reference_cycle_is_refused(path):
    a = []
    a.append(a)
    with pytest.raises(ValueError, match="reference cycle"):
        save({"a": a}, path)
    shared = [1]
    save({"x": shared, "y": shared}, path)  # the same object twice is fine
    assert load(path) == {"x": [1], "y": [1]}


# ------------------------------------------------------------------ missing, truncated, corrupt
def test_missing_file_names_it(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save({"x": chainrule.ones(1)}, tmp_path / "no_dir" / "x.safetensors")


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


@pytest.fixture
def good_file(path):
    save({"w": chainrule.randn(16, 8), "opt": optimizer_like_state(), "epoch": 3}, path)
    return path


@pytest.mark.parametrize("keep", [0, 3, 8, 20, -200, -1])
def test_truncated_file_gives_checkpoint_error(good_file, keep):
    data = good_file.read_bytes()
    good_file.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(CheckpointError, match=str(good_file.name)):
        load(good_file)


def test_flipped_data_byte_fails_the_checksum(good_file):
    data = bytearray(good_file.read_bytes())
    data[-5] ^= 0x10  # inside the tensor data
    good_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load(good_file)


@pytest.mark.parametrize("content", [b"", b"hello world, not a checkpoint",
                                     b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......",
                                     b"\x04\x00\x00\x00\x00\x00\x00\x00[1]\x20",
                                     pickle.dumps({"x": 1})])
def test_garbage_gives_checkpoint_error(path, content):
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=path.name):
        load(path)


def _file_with_metadata(path, meta, tensors=None):
    stnp.save_file(tensors or {"t": np.zeros(2, np.float32)}, str(path), metadata=meta)


@pytest.mark.parametrize("tree,match", [
    ({"tensor": "missing"}, "not in the file"),
    ({"bogus": 1}, "unexpected node"),
    ({"dict": [[1]]}, r"\[key, value\] pair"),
    ({"dict": [[[1, 2], 3]]}, "unhashable dict key"),
    ({"tensor": "t", "extra": 1}, "unexpected node"),
])
def test_malformed_structure_gives_checkpoint_error(path, tree, match):
    _file_with_metadata(path, {"chainrule.format": "1", "chainrule.tree": json.dumps(tree)})
    with pytest.raises(CheckpointError, match=match):
        load(path)


def test_bad_tree_json_and_newer_version(path):
    _file_with_metadata(path, {"chainrule.format": "1", "chainrule.tree": "{oops"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(path)
    _file_with_metadata(path, {"chainrule.format": "2", "chainrule.tree": "null"})
    with pytest.raises(CheckpointError, match="format version '2' is not supported"):
        load(path)


def test_unsupported_dtype_in_foreign_file(path):
    stnp.save_file({"u": np.arange(3, dtype=np.uint32)}, str(path))
    with pytest.raises(CheckpointError, match="unsupported dtype"):
        load(path)


def test_loading_never_unpickles(good_file, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert load(good_file)["epoch"] == 3


# ------------------------------------------------------------------ atomicity
def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("failing", ["serialize", "fsync", "replace"])
def test_failed_save_leaves_previous_checkpoint_and_no_temp_file(good_file, monkeypatch,
                                                                 failing):
    before = good_file.read_bytes()
    folder = good_file.parent
    seen = {}

    def fail(*args, **kwargs):
        seen["listing"] = _listing(folder)  # the temporary file exists at this point
        raise OSError(f"simulated failure in {failing}")

    if failing == "serialize":
        def serializer_fails(arrays, metadata):
            seen["listing"] = _listing(folder)
            raise RuntimeError("serialiser failed midway")
        monkeypatch.setattr(ckpt, "_serialize", serializer_fails)
        error = RuntimeError
    elif failing == "fsync":
        monkeypatch.setattr(ckpt.os, "fsync", fail)
        error = OSError
    else:
        monkeypatch.setattr(ckpt.os, "replace", fail)
        error = OSError
    with pytest.raises(error):
        save({"w": chainrule.zeros(16, 8)}, good_file)
    assert len(seen["listing"]) == 2 and any(n.endswith(".tmp") for n in seen["listing"])
    assert good_file.read_bytes() == before
    assert _listing(folder) == [good_file.name]
    assert load(good_file)["epoch"] == 3


def test_crash_mid_save_in_another_process_keeps_the_old_checkpoint(good_file):
    before = good_file.read_bytes()
    code = (
        "import os, chainrule.io.checkpoint as c, chainrule\n"
        "real = c._serialize\n"
        "def crash(arrays, meta):\n"
        "    real(arrays, meta)\n"
        "    os._exit(17)  # dies with the temporary file half-made\n"
        "c._serialize = crash\n"
        f"c.save({{'w': chainrule.zeros(4)}}, {str(good_file)!r})\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert r.returncode == 17, r.stderr.decode()
    leftovers = [n for n in _listing(good_file.parent) if n != good_file.name]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # it died mid-save
    assert good_file.read_bytes() == before
    assert load(good_file)["epoch"] == 3


def test_next_save_removes_killed_saves_temp_files_but_not_a_live_writers(good_file):
    # a killed writer's leftover (its pid no longer runs) goes; a live process's stays
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    folder, base = good_file.parent, good_file.name
    stale = folder / f".{base}.{dead}.0123456789ab.tmp"
    live = folder / f".{base}.{os.getppid()}.0123456789ab.tmp"
    other = folder / f".other.safetensors.{dead}.0123456789ab.tmp"
    for f in (stale, live, other):
        f.write_bytes(b"half a checkpoint")
    save({"epoch": 4}, good_file)
    assert not stale.exists()
    assert live.exists() and other.exists()  # a concurrent writer's file, another target's
    assert load(good_file) == {"epoch": 4}


def test_same_state_gives_the_same_file_bytes_in_every_process(tmp_path):
    # the safetensors library writes its header maps in an order that changes per process
    code = ("import sys, chainrule\n"
            "chainrule.io.save({'b': chainrule.ones(2), 'a': chainrule.arange(3), 'n': 1},"
            " sys.argv[1])\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    files = []
    for i in range(5):
        f = tmp_path / f"{i}.safetensors"
        subprocess.run([sys.executable, "-c", code, str(f)], env=env, check=True, timeout=120)
        files.append(f.read_bytes())
    assert all(b == files[0] for b in files)
    assert load(tmp_path / "0.safetensors")["n"] == 1


# ------------------------------------------------------------------ GPU
def _cuda():
    from chainrule.backend import cuda_available

    return cuda_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU with CuPy")
def test_cuda_save_and_map_location(path):
    t = chainrule.randn(3, 4).to("cuda")
    save({"t": t}, path)
    on_cpu = load(path)["t"]
    assert on_cpu.device == chainrule.device("cpu")
    on_gpu = load(path, map_location="cuda")["t"]
    assert on_gpu.device == chainrule.device("cuda:0")
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), t.cpu().numpy())
