"""chainrule.io.load_pytorch: torch.save files read bit-exactly, without PyTorch's unpickler,
and refused (with nothing run) when they ask for anything outside the allowlist."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import chainrule
from chainrule import nn
from chainrule.io import CheckpointError, load_pytorch

torch = pytest.importorskip("torch", reason="PyTorch writes the files these tests read")

TORCH_DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                torch.int16, torch.int8, torch.uint8, torch.bool]


def bits(a):
    """The raw bytes of an array (NaN payloads, -0.0 and all)."""
    a = np.array(a, order="C", copy=True)
    return a.reshape(-1).view(np.uint8).tobytes(), a.dtype.name, a.shape


def torch_bits(t):
    flat = t.contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint8).tobytes(), "bfloat16", tuple(t.shape)
    a = flat.numpy()
    return a.view(np.uint8).tobytes(), a.dtype.name, tuple(t.shape)


def random_tensor(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 100).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=g, dtype=torch.int64).to(dtype)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
def test_dtypes_views_and_shared_storages_bit_exact(tmp_path, dtype):
    base = random_tensor(dtype, (6, 8), seed=1)
    sd = {
        "base": base,
        "rows": base[2:5],                 # shares base's storage, offset 16
        "cols": base[1:, 3::2],            # offset and strides
        "t": base.t(),                     # transposed strides
        "expanded": base[0, :1].expand(3, 4),  # stride 0
        "scalar": base[3, 3],              # 0-d view with offset
        "empty": base[:0],
        "own": random_tensor(dtype, (5,), seed=2),
    }
    path = tmp_path / "sd.pt"
    torch.save(sd, path)
    got = load_pytorch(path)
    assert list(got) == list(sd)
    for k, v in sd.items():
        assert isinstance(got[k], chainrule.Tensor)
        assert bits(got[k].numpy()) == torch_bits(v), k
    # special float values survive
    if dtype.is_floating_point:
        special = torch.tensor([float("nan"), float("inf"), -0.0, 1e-7], dtype=dtype)
        torch.save({"s": special}, path)
        assert bits(load_pytorch(path)["s"].numpy()) == torch_bits(special)


def test_bfloat16_bit_exact(tmp_path):
    pytest.importorskip("ml_dtypes", reason="bfloat16 needs the bf16 extra")
    t = random_tensor(torch.bfloat16, (4, 6), seed=3)
    torch.save({"w": t, "v": t[1:, ::3]}, tmp_path / "b.pt")
    got = load_pytorch(tmp_path / "b.pt")
    assert got["w"].dtype is chainrule.bfloat16
    assert bits(got["w"].numpy()) == torch_bits(t)
    assert bits(got["v"].numpy()) == torch_bits(t[1:, ::3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64, torch.bool],
                         ids=str)
def test_legacy_format_bit_exact(tmp_path, dtype):
    base = random_tensor(dtype, (5, 6), seed=6)
    sd = {"base": base, "view": base[1:, ::2], "t": base.t(), "own": random_tensor(dtype, (3,), 7)}
    torch.save(sd, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert (tmp_path / "old.pt").read_bytes()[:1] == b"\x80"  # a pickle, not a zip
    got = load_pytorch(tmp_path / "old.pt")
    for k, v in sd.items():
        assert bits(got[k].numpy()) == torch_bits(v), k


def test_legacy_format_malicious_pickle_is_refused(tmp_path):
    """A legacy-format file whose object pickle runs os.system: refused, nothing runs."""
    marker = tmp_path / "pwned"
    f = io.BytesIO()
    for record in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(record, f, protocol=2)
    pickle.dump({"w": _Payload(marker)}, f, protocol=2)
    pickle.dump([], f, protocol=2)
    (tmp_path / "evil.pt").write_bytes(f.getvalue())
    with pytest.raises(CheckpointError, match="system"):
        load_pytorch(tmp_path / "evil.pt")
    assert not marker.exists()
    # and in the records before the object, where no global at all is allowed
    g = io.BytesIO()
    pickle.dump(_Payload(marker), g, protocol=2)
    (tmp_path / "evil2.pt").write_bytes(g.getvalue())
    with pytest.raises(CheckpointError, match="system"):
        load_pytorch(tmp_path / "evil2.pt")
    assert not marker.exists()


def test_big_endian_file(tmp_path):
    """byteorder 'big' files (as written on big-endian hosts): rewrite a saved file's storages
    and its byteorder entry, then load."""
    t = random_tensor(torch.float32, (3, 4), seed=4)
    i = random_tensor(torch.int64, (5,), seed=5)
    src, dst = tmp_path / "le.pt", tmp_path / "be.pt"
    torch.save({"t": t, "i": i}, src)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("byteorder"):
                data = b"big"
            elif "/data/" in info.filename and not info.filename.endswith("serialization_id"):
                key = info.filename.rsplit("/", 1)[1]
                width = 4 if key == "0" else 8
                data = np.frombuffer(data, f"<u{width}").astype(f">u{width}").tobytes()
            zout.writestr(info, data)
    got = load_pytorch(dst)
    np.testing.assert_array_equal(got["t"].numpy(), t.numpy())
    np.testing.assert_array_equal(got["i"].numpy(), i.numpy())


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.emb = torch.nn.Embedding(10, 8)
        self.fc = torch.nn.Linear(4 * 5 * 5 + 8, 3)
        self.ln = torch.nn.LayerNorm(3)


class CrNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(4 * 5 * 5 + 8, 3)
        self.ln = nn.LayerNorm(3)

    def forward(self, x, idx, lib):
        h = lib.relu(self.bn(self.conv(x))).flatten(1)
        h = lib.cat([h, self.emb(idx)], 1)
        return self.ln(self.fc(h))


def test_state_dict_of_torch_module_drops_into_chainrule_module(tmp_path):
    torch.manual_seed(0)
    tnet = TorchNet()
    tnet.train()
    x = torch.randn(6, 1, 5, 5)
    idx = torch.randint(0, 10, (6,))
    CrNet.forward(tnet, x, idx, torch)  # updates BatchNorm's running stats and counter
    tnet.eval()
    torch.save(tnet.state_dict(), tmp_path / "net.pt")
    sd = load_pytorch(tmp_path / "net.pt")
    assert sd["bn.num_batches_tracked"].dtype is chainrule.int64
    assert int(sd["bn.num_batches_tracked"]) == 1
    cnet = CrNet()
    result = cnet.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in tnet.state_dict().items():
        assert bits(cnet.state_dict()[k].numpy()) == torch_bits(v), k
    cnet.eval()
    out = cnet(chainrule.tensor(x.numpy()), chainrule.tensor(idx.numpy()), chainrule)
    with torch.no_grad():
        ref = CrNet.forward(tnet, x, idx, torch)
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_parameters_nested_containers_and_numbers(tmp_path):
    p = torch.nn.Parameter(torch.ones(2))
    obj = {"model": {"w": p}, "step": 7, "lr": 0.5, "names": ["a", "b"], "pair": (1, None)}
    torch.save(obj, tmp_path / "c.pt")
    got = load_pytorch(tmp_path / "c.pt")
    assert got["model"]["w"].requires_grad and got["model"]["w"].tolist() == [1.0, 1.0]
    assert (got["step"], got["lr"], got["names"], got["pair"]) == (7, 0.5, ["a", "b"], (1, None))


class _Payload:
    """Unpickling this runs ``os.system("touch <marker>")``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def _zip_with_pickle(path, payload_bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


@pytest.mark.parametrize("payload, name", [(_Payload, "system"), (_Exec, "exec")])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload, name):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"weight": payload(marker)}, protocol=2)
    # sanity: the payload really does create the file when unpickled normally
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(payload(probe), protocol=2))
    assert probe.exists()
    path = tmp_path / "evil.pt"
    _zip_with_pickle(path, evil)
    with pytest.raises(CheckpointError, match=name) as e:
        load_pytorch(path)
    assert "not on the allowlist" in str(e.value)
    assert not marker.exists()


def test_whole_model_pickle_is_refused_naming_the_class(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_pytorch(tmp_path / "model.pt")


def test_unsupported_dtypes_are_named(tmp_path):
    torch.save({"c": torch.ones(2, dtype=torch.complex64)}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"ComplexFloat tensor .*chainrule reads"):
        load_pytorch(tmp_path / "c.pt")
    torch.save({"u": torch.ones(2, dtype=torch.uint16)}, tmp_path / "u.pt")
    with pytest.raises(CheckpointError, match="uint16"):
        load_pytorch(tmp_path / "u.pt")


def test_crafted_storage_beyond_bounds_is_refused(tmp_path):
    """A tensor whose size/stride would read past its storage: refused, never read."""
    t = torch.arange(4.0)
    torch.save({"t": t}, tmp_path / "ok.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as z:
        prefix = z.namelist()[0].split("/")[0]
        pkl = z.read(f"{prefix}/data.pkl")
        files = {n: z.read(n) for n in z.namelist()}
    # size (4,) -> (400,): the pickle stores it as a tuple of one int
    bad = pkl.replace(b"K\x04\x85", b"M\x90\x01\x85")
    assert bad != pkl
    files[f"{prefix}/data.pkl"] = bad
    with zipfile.ZipFile(tmp_path / "bad.pt", "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError, match="past the end of storage"):
        load_pytorch(tmp_path / "bad.pt")


def test_truncated_and_foreign_files(tmp_path):
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "good.pt")
    raw = (tmp_path / "good.pt").read_bytes()
    for cut in (len(raw) // 2, len(raw) - 30, 10):
        (tmp_path / "cut.pt").write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match=r"truncated or corrupt|not a torch\.save"):
            load_pytorch(tmp_path / "cut.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError, match=r"not one that torch\.save wrote"):
        load_pytorch(tmp_path / "other.zip")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="neither a zip archive"):
        load_pytorch(tmp_path / "text.pt")
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.randn(50, 50)}, legacy, _use_new_zipfile_serialization=False)
    raw = legacy.read_bytes()
    for cut in (len(raw) - 7, len(raw) // 2, 30):
        (tmp_path / "cut.pt").write_bytes(raw[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_pytorch(tmp_path / "cut.pt")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(CheckpointError, match=r"not a torch\.save file"):
        load_pytorch(tmp_path / "plain.pkl")
    # a storage entry shorter than the pickle says
    with zipfile.ZipFile(tmp_path / "good.pt") as zin, \
            zipfile.ZipFile(tmp_path / "short.pt", "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info, data[:-4] if info.filename.endswith("/data/0") else data)
    with pytest.raises(CheckpointError, match="holds 16380 bytes"):
        load_pytorch(tmp_path / "short.pt")
    with pytest.raises(FileNotFoundError):
        load_pytorch(tmp_path / "absent.pt")


def test_reads_from_memory_buffer_are_not_needed():
    # load_pytorch takes a path (torch.save's default use); a buffer is a clear TypeError
    with pytest.raises(TypeError):
        load_pytorch(io.BytesIO(b""))


def test_chainrule_load_reads_a_torch_save_file(tmp_path):
    """``import chainrule as torch; torch.load(path)`` of a file real PyTorch wrote goes through
    the allowlist reader: the same tensors as load_pytorch, bit-exact, moved by map_location."""
    sd = torch.nn.Linear(3, 2).state_dict()
    path = tmp_path / "linear.pt"
    torch.save(sd, path)
    loaded = chainrule.load(str(path), map_location="cpu")
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        assert bits(loaded[k].numpy()) == torch_bits(v)
