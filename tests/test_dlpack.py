"""chainrule.from_dlpack and Tensor.__dlpack__: zero-copy exchange with NumPy and PyTorch."""

import numpy as np
import pytest

import chainrule

torch = pytest.importorskip("torch", reason="PyTorch is the DLPack peer of these tests")


def test_numpy_roundtrip_shares_memory():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = chainrule.from_dlpack(a)
    assert t.dtype is chainrule.float32 and t.shape == (2, 3)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    t[1, 2] = -1.0
    assert a[1, 2] == -1.0
    b = np.from_dlpack(t)
    b[0, 1] = 7.0
    assert t[0, 1].item() == 7.0 and a[0, 1] == 7.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.int64,
                                   torch.int32, torch.uint8, torch.bool])
def test_torch_to_chainrule_shares_memory(dtype):
    src = torch.arange(12).reshape(3, 4).to(dtype)
    t = chainrule.from_dlpack(src)
    assert t.dtype.name == str(dtype).split(".")[1]
    np.testing.assert_array_equal(t.numpy(), src.numpy())
    with torch.no_grad():
        src[2, 3] = 1
    assert t[2, 3].item() == src[2, 3].item()
    t[0, 0] = True if dtype == torch.bool else 5
    assert src[0, 0].item() == t[0, 0].item()


def test_chainrule_to_torch_shares_memory():
    t = chainrule.arange(6.0).reshape(2, 3)
    s = torch.from_dlpack(t)
    assert s.dtype == torch.float32 and tuple(s.shape) == (2, 3)
    s[1, 1] = 100.0
    assert t[1, 1].item() == 100.0
    t.add_(1.0)
    assert s[0, 0].item() == 1.0
    assert t.__dlpack_device__() == (1, 0)


def test_noncontiguous_source_keeps_strides_as_torch_does():
    src = torch.arange(20.0).reshape(4, 5)[:, 1::2]
    assert not src.is_contiguous()
    t = chainrule.from_dlpack(src)
    ref = torch.from_dlpack(src)  # PyTorch's own import: zero-copy, strided
    np.testing.assert_array_equal(t.numpy(), ref.numpy())
    assert not t.is_contiguous()
    src[3, 1] = -5.0
    assert t[3, 1].item() == -5.0
    # and back: a strided chainrule view exports zero-copy too
    base = chainrule.arange(20.0).reshape(4, 5)
    s = torch.from_dlpack(base[:, ::2])
    assert s.stride() == (5, 2)
    s[0, 1] = 99.0
    assert base[0, 2].item() == 99.0


def test_read_only_source_is_shared_and_refuses_writes():
    a = np.arange(4.0)
    a.flags.writeable = False
    t = chainrule.from_dlpack(a)  # PyTorch imports read-only NumPy data too
    assert torch.from_dlpack(a).tolist() == t.tolist()
    for write in (lambda: t.add_(1.0), lambda: t.__setitem__(0, 3.0), lambda: t.fill_(0),
                  lambda: t.normal_()):
        with pytest.raises(ValueError, match="read-only"):
            write()
    np.testing.assert_array_equal(a, [0.0, 1.0, 2.0, 3.0])  # nothing written
    c = t.clone()
    c.add_(1.0)
    assert c.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_capsule_consumed_twice_is_a_clear_error():
    src = torch.arange(3.0)
    cap = torch.utils.dlpack.to_dlpack(src)
    t = chainrule.from_dlpack(cap)
    src[0] = 9.0
    assert t[0].item() == 9.0
    with pytest.raises(BufferError, match="already consumed"):
        chainrule.from_dlpack(cap)


def test_bad_sources():
    with pytest.raises(TypeError, match="no __dlpack__"):
        chainrule.from_dlpack([1, 2, 3])
    with pytest.raises(TypeError, match=r"bfloat16|dtype"):
        chainrule.from_dlpack(torch.ones(2, dtype=torch.bfloat16))
    if getattr(chainrule, "bfloat16", None) is not None:
        with pytest.raises(BufferError, match="bfloat16"):
            torch.from_dlpack(chainrule.ones(2, dtype=chainrule.bfloat16))
    x = chainrule.ones(2, requires_grad=True)
    with pytest.raises(BufferError, match="requires grad"):
        torch.from_dlpack(x)
    assert torch.from_dlpack(x.detach()).tolist() == [1.0, 1.0]


def test_tensor_passes_through():
    x = chainrule.ones(2)
    assert chainrule.from_dlpack(x) is x
