"""Environment namespaces and sparse matrices for ported PyTorch programs (issue 14):
torch.cuda / accelerator / backends / onnx / compile / utils.data / utils.tensorboard and
torch.sparse, compared with PyTorch where installed."""

import glob
import os
import warnings

import numpy as np
import pytest

import chainrule
from chainrule.testing import gradcheck, gradgradcheck

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (the oracle) is not installed")


# ---------------------------------------------------------------- cuda / accelerator / backends
def test_cuda_answers_truthfully():
    avail = chainrule.cuda.is_available()
    assert avail == chainrule.backend.cuda_available()
    assert (chainrule.cuda.device_count() > 0) == avail
    assert chainrule.accelerator.is_available() == avail
    assert chainrule.accelerator.current_accelerator() == (chainrule.device("cuda") if avail
                                                           else None)
    chainrule.cuda.manual_seed(0)
    chainrule.cuda.manual_seed_all(0)
    chainrule.cuda.empty_cache()
    if not avail:
        assert chainrule.cuda.memory_allocated() == 0
        with pytest.raises(RuntimeError, match=r"synchronize: no CUDA device.*'gpu' extra"):
            chainrule.cuda.synchronize()


def test_cuda_manual_seed_does_not_touch_the_default_generator():
    chainrule.manual_seed(5)
    a = chainrule.rand(3)
    chainrule.manual_seed(5)
    chainrule.cuda.manual_seed_all(99)
    assert chainrule.rand(3).tolist() == a.tolist()


@needs_torch
def test_backends_flags_exist_with_torch_defaults():
    pairs = [("cuda.matmul.allow_tf32", False), ("cudnn.benchmark", None),
             ("cudnn.deterministic", None), ("cudnn.enabled", None)]
    for path, _ in pairs:
        ours, theirs = chainrule.backends, torch.backends
        for part in path.split("."):
            ours, theirs = getattr(ours, part), getattr(theirs, part)
        assert ours == theirs, path
    assert chainrule.backends.mps.is_available() is False
    assert chainrule.backends.cudnn.is_available() is False
    import chainrule.backends.cudnn as cudnn

    cudnn.benchmark = True
    try:
        assert chainrule.backends.cudnn.benchmark is True
    finally:
        cudnn.benchmark = False


def test_precision_and_determinism_switches_are_recorded():
    chainrule.set_float32_matmul_precision("high")
    assert chainrule.get_float32_matmul_precision() == "high"
    chainrule.set_float32_matmul_precision("highest")
    with pytest.raises(ValueError, match="'highest', 'high' or 'medium'"):
        chainrule.set_float32_matmul_precision("fast")
    chainrule.use_deterministic_algorithms(True)
    assert chainrule.are_deterministic_algorithms_enabled()
    chainrule.use_deterministic_algorithms(False)
    assert chainrule.get_num_threads() >= 1


@needs_torch
def test_finfo_iinfo_size_dtype_match_torch():
    for name in ("float32", "float64", "float16"):
        assert chainrule.finfo(getattr(chainrule, name)).eps == torch.finfo(
            getattr(torch, name)).eps
    assert chainrule.iinfo(chainrule.int64).max == torch.iinfo(torch.int64).max
    assert chainrule.Size([2, 3]) == torch.Size([2, 3]) and chainrule.Size([2, 3]).numel() == 6
    assert isinstance(chainrule.float32, chainrule.dtype)


def test_onnx_export_writes_a_model(tmp_path):
    # the export itself is tested in tests/test_onnx.py (needs the onnx extra)
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    chainrule.onnx.export(chainrule.nn.Linear(2, 2), (chainrule.ones(1, 2),), str(path))
    assert path.stat().st_size > 0 and not chainrule.onnx.is_in_onnx_export()


def test_compile_is_the_identity_with_a_one_time_note():
    from chainrule import _torch_env

    _torch_env._STATE["compile_noted"] = False
    model = chainrule.nn.Linear(2, 2)
    with pytest.warns(UserWarning, match="no JIT"):
        assert chainrule.compile(model) is model
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note comes once
        assert chainrule.compile(mode="max-autotune")(model) is model

        @chainrule.compile
        def f(x):
            return x + 1

        assert f(chainrule.ones(1)).item() == 2.0


def test_utils_data_is_chainrule_data():
    import chainrule.utils.data.dataloader as dl
    from chainrule.utils.data import DataLoader, get_worker_info

    assert DataLoader is chainrule.data.DataLoader and dl.DataLoader is DataLoader
    assert get_worker_info is chainrule.data.get_worker_info


def test_summary_writer_writes_event_files_tensorboard_can_read(tmp_path):
    pytest.importorskip("tensorboardX")
    from chainrule.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path)) as w:
        for step in range(3):
            w.add_scalar("loss", chainrule.tensor(1.0 / (step + 1)), step)
        w.add_scalars("pair", {"a": chainrule.tensor(1.0), "b": 2.0}, 0)
        w.add_histogram("weights", chainrule.randn(50), 0)
        assert w.log_dir == str(tmp_path)
    files = glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
    assert files
    from tensorboardX.event_file_writer import event_pb2  # read the records back

    values = []
    with open(files[0], "rb") as fh:
        data = fh.read()
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 8], "little")
        ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        values += [(v.tag, round(v.simple_value, 6)) for v in ev.summary.value
                   if v.HasField("simple_value")]
    assert [v for v in values if v[0] == "loss"] == [("loss", 1.0), ("loss", 0.5),
                                                     ("loss", 0.333333)]


def test_summary_writer_add_graph_says_why_not(tmp_path):
    pytest.importorskip("tensorboardX")
    from chainrule.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    with pytest.raises(NotImplementedError, match="add_graph"):
        w.add_graph(chainrule.nn.Linear(1, 1))
    w.close()


# ---------------------------------------------------------------- sparse
def _adjacency(seed=0, n=5, nnz=9, dtype="float64"):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.integers(0, n, nnz), rng.integers(0, n, nnz)])
    return idx, rng.uniform(0.5, 1.5, nnz).astype(dtype)


@needs_torch
@pytest.mark.parametrize("k", [1, 3])
def test_sparse_mm_matches_torch_with_gradients(k):
    idx, val = _adjacency()
    x = np.random.default_rng(1).normal(size=(5, k))
    vs = chainrule.tensor(val, requires_grad=True)
    xs = chainrule.tensor(x, requires_grad=True)
    a = chainrule.sparse_coo_tensor(idx, vs, (5, 5))
    y = chainrule.sparse.mm(a, xs)
    vt = torch.tensor(val, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.sparse.mm(torch.sparse_coo_tensor(torch.tensor(idx), vt, (5, 5),
                                                 check_invariants=True), xt)
    np.testing.assert_allclose(y.detach().numpy(), yt.detach().numpy(), rtol=1e-12)
    g = np.random.default_rng(2).normal(size=(5, k))
    y.backward(chainrule.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xs.grad.numpy(), xt.grad.numpy(), rtol=1e-12)
    tg = vt.grad.to_dense() if vt.grad.is_sparse else vt.grad  # torch: dense values grad
    np.testing.assert_allclose(vs.grad.numpy(), tg.numpy(), rtol=1e-12)
    for op in (lambda s, d: chainrule.spmm(s, d), lambda s, d: s @ d):
        np.testing.assert_allclose(op(a, xs).detach().numpy(), yt.detach().numpy(), rtol=1e-12)


def test_sparse_mm_gradients_first_and_second_order():
    idx, val = _adjacency()
    x = chainrule.tensor(np.random.default_rng(3).normal(size=(5, 2)), requires_grad=True)
    v = chainrule.tensor(val, requires_grad=True)

    def f(v, x):
        return chainrule.sparse.mm(chainrule.sparse_coo_tensor(idx, v, (5, 5)), x).tanh()

    assert gradcheck(f, (v, x))
    assert gradgradcheck(f, (v, x))
    d = chainrule.tensor(np.random.default_rng(4).normal(size=(2, 5)), requires_grad=True)
    assert gradcheck(lambda d, v: chainrule.sparse.mm(d, chainrule.sparse_coo_tensor(
        idx, v, (5, 5))), (d, v))


@needs_torch
def test_to_sparse_to_dense_and_coalesce_match_torch():
    dense = np.array([[0.0, 2.0, 0.0], [3.0, 0.0, 4.0]])
    s, t = chainrule.tensor(dense).to_sparse(), torch.tensor(dense).to_sparse()
    assert s._nnz() == t._nnz() and s.shape == tuple(t.shape)
    np.testing.assert_array_equal(s.indices().numpy(), t.indices().numpy())
    np.testing.assert_array_equal(s.values().numpy(), t.values().numpy())
    idx = [[0, 1, 0], [2, 0, 2]]  # a duplicate entry
    a = chainrule.sparse_coo_tensor(idx, [1.0, 2.0, 3.0], (2, 3))
    b = torch.sparse_coo_tensor(idx, [1.0, 2.0, 3.0], (2, 3), check_invariants=True)
    np.testing.assert_array_equal(a.to_dense().numpy(), b.to_dense().numpy())
    ac, bc = a.coalesce(), b.coalesce()
    np.testing.assert_array_equal(ac.indices().numpy(), bc.indices().numpy())
    np.testing.assert_array_equal(ac.values().numpy(), bc.values().numpy())
    np.testing.assert_array_equal(a.t().to_dense().numpy(), b.t().to_dense().numpy())
    assert chainrule.sparse_coo_tensor([[0, 4]], [1.0, 1.0]).shape == (5,)
    assert not chainrule.ones(1).is_sparse and a.is_sparse


def test_to_sparse_keeps_the_gradient_path():
    x = chainrule.tensor([[0.0, 2.0], [3.0, 0.0]], requires_grad=True)
    y = chainrule.sparse.mm(x.to_sparse(), chainrule.ones(2, 1))
    y.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("args,err,match", [
    (([[0, 1]], [1.0]), chainrule.errors.ShapeError, "2 indices but 1 values"),
    (([[0, 5]], [1.0, 2.0], (3,)), IndexError, "out of range"),
    (([0, 1], [1.0, 2.0]), chainrule.errors.ShapeError, "2-D integer array"),
    (([[0]], [[1.0]]), chainrule.errors.ShapeError, "hybrid"),
])
def test_sparse_bad_input_is_named(args, err, match):
    with pytest.raises(err, match=match):
        chainrule.sparse_coo_tensor(*args)


def test_sparse_mm_shape_mismatch_is_named():
    a = chainrule.sparse_coo_tensor([[0], [1]], [1.0], (2, 2))
    with pytest.raises(chainrule.errors.ShapeError, match=r"\(2, 2\).*\(3, 1\)"):
        chainrule.sparse.mm(a, chainrule.ones(3, 1))


# ---------------------------------------------------------------- names chainrule lacks
@pytest.mark.parametrize("module,name,match", [
    (chainrule, "distributions", r"torch\.distributions is not implemented.*multinomial"),
    (chainrule, "complex64", "complex dtypes"),
    (chainrule, "no_such_thing", r"torch\.no_such_thing is not implemented.*Porting"),
    (chainrule.nn, "FractionalMaxPool2d", r"torch\.nn\.FractionalMaxPool2d is not implemented"),
    (chainrule.nn.functional, "unfold", r"torch\.nn\.functional\.unfold is not implemented"),
])
def test_missing_pytorch_names_say_so(module, name, match):
    with pytest.raises(AttributeError, match=match):
        getattr(module, name)
    assert not hasattr(module, name)


def test_submodules_load_on_first_use():
    assert chainrule.func.vjp is not None and chainrule.nn.Linear is not None
    with pytest.raises(AttributeError, match="has no attribute '__wrapped__'"):
        chainrule.__wrapped__


# ---------------------------------------------------------------- rnn utils, Variable
def test_pad_sequence_matches_torch_and_is_differentiable():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)) for n in (3, 1, 4)]
    for kw in ({}, {"batch_first": True, "padding_value": -1.0},
               {"batch_first": True, "padding_side": "left"}):
        ours = chainrule.nn.utils.rnn.pad_sequence([chainrule.tensor(s) for s in seqs], **kw)
        theirs = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], **kw)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    xs = [chainrule.tensor(s, requires_grad=True) for s in seqs]
    chainrule.nn.utils.rnn.pad_sequence(xs).sum().backward()
    assert all(x.grad.shape == x.shape and float(x.grad.sum()) == x.numel() for x in xs)
    back = chainrule.nn.utils.rnn.unpad_sequence(
        chainrule.nn.utils.rnn.pad_sequence([chainrule.tensor(s) for s in seqs]), [3, 1, 4])
    assert [tuple(b.shape) for b in back] == [(3, 2), (1, 2), (4, 2)]


def test_packed_sequences_refuse_with_the_padded_alternative():
    with pytest.raises(NotImplementedError, match=r"pack_padded_sequence.*pad_sequence"):
        chainrule.nn.utils.rnn.pack_padded_sequence(chainrule.zeros(3, 2, 1), [3, 2])


def test_variable_and_autograd_gradcheck_names():
    x = chainrule.autograd.Variable(chainrule.ones(2), requires_grad=True)
    assert x.requires_grad and isinstance(x, chainrule.Tensor)
    y = chainrule.tensor([1.0, 2.0], dtype=chainrule.float64, requires_grad=True)
    assert chainrule.autograd.gradcheck(lambda t: (t.sin() * t).sum(), (y,), eps=1e-6)
    assert chainrule.autograd.gradgradcheck(lambda t: (t.sin() * t).sum(), (y,))


# ---------------------------------------------------------------- torch.autograd.functional
def _f_tensor(lib):
    return lambda x: (x ** 3).sum() * 0.5 + (x[0] * x[1])


@pytest.mark.parametrize("which", ["jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"])
def test_autograd_functional_matches_torch(which):
    torch = pytest.importorskip("torch")
    x = np.array([0.5, -1.5, 2.0])
    v = np.array([1.0, 0.5, -2.0])

    def run(lib, mod):
        xt, vt = lib.tensor(x), lib.tensor(v)
        f = _f_tensor(lib)
        g = (lambda t: t.sin() * t[0]) if which in ("jacobian", "jvp", "vjp") else f
        if which == "jacobian":
            return [mod.jacobian(g, xt)]
        if which == "hessian":
            return [mod.hessian(f, xt)]
        if which == "vjp":
            return list(mod.vjp(g, xt, vt))
        if which == "jvp":
            return list(mod.jvp(g, xt, vt))
        return list(getattr(mod, which)(f, xt, vt))

    ours = run(chainrule, chainrule.autograd.functional)
    theirs = run(torch, torch.autograd.functional)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_autograd_functional_tuple_inputs_match_torch():
    torch = pytest.importorskip("torch")
    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])

    def run(lib):
        return lib.autograd.functional.jacobian(lambda p, q: p * q.exp(),
                                                (lib.tensor(a), lib.tensor(b)))
    for o, t in zip(run(chainrule), run(torch)):
        np.testing.assert_allclose(o.numpy(), t.numpy(), rtol=1e-12)
