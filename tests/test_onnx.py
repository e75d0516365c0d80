"""chainrule.onnx.export: models exported from the jit's captured program, checked with
onnx.checker and run in onnxruntime against chainrule (float32, max abs difference <= 1e-5),
at the traced size and, where dynamic_axes say so, at other sizes; errors for what cannot be
exported, naming the op and the model line, and leaving no file behind."""

import inspect
import io
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.onnx import ExportError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5


def _flat(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _leaves(out):
    found = []
    for o in _flat(out):
        found += _leaves(o) if isinstance(o, (tuple, list)) else [o]
    return found


def _check(model, args, tmp_path, others=(), tol=TOL, **kw):
    """Export, check the file, and compare onnxruntime with chainrule on ``args`` and on
    each tuple in ``others`` (other sizes); returns the loaded proto."""
    path = tmp_path / "model.onnx"
    was_training = model.training
    cr.onnx.export(model, args, str(path), **kw)
    assert model.training == was_training  # the export puts the train/eval flags back
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    model.eval()
    for a in (args, *others):
        with cr.no_grad():
            ref = _leaves(model(*a))
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, a)})
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            assert g.shape == tuple(r.shape) and g.dtype == r.numpy().dtype
            err = np.abs(g.astype(np.float64) - r.numpy().astype(np.float64)).max()
            assert err <= tol, err
    return proto


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_mlp_with_a_dynamic_batch(tmp_path):
    cr.manual_seed(0)
    model = cr.nn.Sequential(cr.nn.Linear(6, 16), cr.nn.ReLU(), cr.nn.Linear(16, 16),
                             cr.nn.Tanh(), cr.nn.Linear(16, 3))
    proto = _check(model, (cr.randn(4, 6),), tmp_path, others=[(cr.randn(7, 6),),
                                                               (cr.randn(1, 6),)],
                   input_names=["x"], output_names=["logits"],
                   dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    assert _dims(proto.graph.input[0]) == ["batch", 6]
    assert _dims(proto.graph.output[0]) == ["batch", 3]
    # parameters are initializers named by their state_dict keys
    assert {i.name for i in proto.graph.initializer} >= set(model.state_dict())


def test_mlp_without_dynamic_axes_has_fixed_shapes(tmp_path):
    model = cr.nn.Sequential(cr.nn.Linear(3, 2))
    proto = _check(model, (cr.randn(5, 3),), tmp_path)
    assert _dims(proto.graph.input[0]) == [5, 3] and _dims(proto.graph.output[0]) == [5, 2]
    sess = ort.InferenceSession(proto.SerializeToString())
    with pytest.raises(Exception, match=r"[Dd]imension"):
        sess.run(None, {"input": np.zeros((4, 3), np.float32)})


class LeNet(cr.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = cr.nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = cr.nn.Conv2d(6, 16, 5)
        self.bn = cr.nn.BatchNorm2d(16)
        self.f1 = cr.nn.Linear(16 * 5 * 5, 32)
        self.f2 = cr.nn.Linear(32, 10)

    def forward(self, x):
        x = cr.nn.functional.max_pool2d(cr.relu(self.c1(x)), 2)
        x = cr.nn.functional.avg_pool2d(cr.relu(self.bn(self.c2(x))), 2)
        return self.f2(cr.relu(self.f1(x.flatten(1))))


def test_lenet_conv_pool_batchnorm_dynamic_batch(tmp_path):
    cr.manual_seed(1)
    model = LeNet()
    model.bn.running_mean.data = cr.randn(16) * 0.1
    model.bn.running_var.data = cr.rand(16) + 0.5
    model.train()  # exported in eval mode (running statistics), then put back
    proto = _check(model, (cr.randn(2, 1, 28, 28),), tmp_path,
                   others=[(cr.randn(5, 1, 28, 28),)], dynamic_axes={"input": {0: "n"}})
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "MaxPool", "AveragePool"} <= ops


@pytest.mark.parametrize("activation,batch_first", [("relu", True), ("gelu", False)])
def test_transformer_encoder_dynamic_batch_and_sequence(tmp_path, activation, batch_first):
    cr.manual_seed(2)
    layer = cr.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, activation=activation,
                                          batch_first=batch_first)
    model = cr.nn.TransformerEncoder(layer, 2, norm=cr.nn.LayerNorm(16))
    shape = (lambda b, t: (b, t, 16)) if batch_first else (lambda b, t: (t, b, 16))
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    proto = _check(model, (cr.randn(*shape(2, 5)),), tmp_path,
                   others=[(cr.randn(*shape(3, 9)),), (cr.randn(*shape(1, 2)),)],
                   input_names=["src"], dynamic_axes={"src": axes})
    assert "LayerNormalization" in {n.op_type for n in proto.graph.node}


def test_lstm_two_layers_and_bidirectional_gru(tmp_path):
    cr.manual_seed(3)
    lstm = cr.nn.LSTM(5, 7, num_layers=2, batch_first=True)
    proto = _check(lstm, (cr.randn(3, 4, 5),), tmp_path,
                   others=[(cr.randn(2, 9, 5),), (cr.randn(6, 1, 5),)],
                   input_names=["x"], output_names=["y", "h_n", "c_n"],
                   dynamic_axes={"x": {0: "batch", 1: "time"}, "y": {0: "batch", 1: "time"}})
    assert "Scan" in {n.op_type for n in proto.graph.node}
    assert _dims(proto.graph.output[1])[1] == "h_n_dim1"  # a batch-sized axis, found dynamic
    gru = cr.nn.GRU(5, 6, bidirectional=True)
    _check(gru, (cr.randn(4, 3, 5),), tmp_path, others=[(cr.randn(8, 2, 5),)],
           dynamic_axes={"input": {0: "time", 1: "batch"}})
    rnn = cr.nn.RNN(5, 4, nonlinearity="relu", batch_first=True)
    _check(rnn, (cr.randn(2, 3, 5),), tmp_path, others=[(cr.randn(3, 5, 5),)],
           dynamic_axes={"input": {0: "b", 1: "t"}})


class Tokens(cr.nn.Module):
    """Embeddings (of tokens, of positions), dropout (off in eval), elementwise ops, slicing,
    a log-softmax, two outputs."""

    def __init__(self):
        super().__init__()
        self.emb = cr.nn.Embedding(20, 8)
        self.pos = cr.nn.Embedding(16, 8)
        self.drop = cr.nn.Dropout(0.3)
        self.fc = cr.nn.Linear(8, 5)

    def forward(self, ids):
        h = self.emb(ids) + self.pos(cr.arange(ids.shape[1]))  # positions: a sized arange
        h = self.drop(cr.tanh(h)) * cr.sigmoid(h) + h.exp().log1p() / 3
        y = self.fc(h)
        return cr.nn.functional.log_softmax(y, dim=-1), h[:, -1, 2:5].clamp(min=-0.1)


def test_token_model_with_integer_inputs(tmp_path):
    cr.manual_seed(4)
    rng = np.random.default_rng(0)
    ids = cr.tensor(rng.integers(0, 20, (3, 4)))
    _check(Tokens(), (ids,), tmp_path, others=[(cr.tensor(rng.integers(0, 20, (5, 7))),)],
           dynamic_axes={"input": {0: "b", 1: "t"}})


class Sorted(cr.nn.Module):
    def forward(self, x):
        y = x * 2
        return y.sort(dim=1)[0]  # the line the error must name (np.argsort has no mapping)


class BatchMean(cr.nn.Module):
    def forward(self, x):
        return x.mean(0)  # divides by the batch size: a float baked from a dynamic size


def _line_of(cls, text):
    src, start = inspect.getsourcelines(cls.forward)
    return start + next(i for i, s in enumerate(src) if text in s)


def test_an_op_with_no_mapping_names_the_op_and_the_model_line(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError) as e:
        cr.onnx.export(Sorted(), (cr.randn(2, 3),), str(path))
    msg = str(e.value)
    assert "func op 'np.argsort'" in msg and "has no ONNX mapping" in msg
    assert f"{os.path.abspath(__file__)}:{_line_of(Sorted, 'sort(dim=1)')}" in msg
    assert not path.exists() and os.listdir(tmp_path) == []


def test_a_size_that_cannot_be_dynamic_is_refused_with_the_line(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"dynamic_axes.*(mul|div).*"
                                          + str(_line_of(BatchMean, "mean"))):
        cr.onnx.export(BatchMean(), (cr.randn(4, 3),), str(path),
                       dynamic_axes={"input": {0: "n"}})
    assert not path.exists()
    _check(BatchMean(), (cr.randn(4, 3),), tmp_path)  # at a fixed size it exports


class SqueezeAll(cr.nn.Module):
    def forward(self, x):
        return (x * 2).squeeze()  # traced at batch 1, the batch axis is squeezed too


def test_a_program_that_changes_with_the_size_is_refused(tmp_path):
    with pytest.raises(ExportError, match=r"changes with the size of a dynamic axis.*"
                                          + str(_line_of(SqueezeAll, "squeeze"))):
        cr.onnx.export(SqueezeAll(), (cr.randn(1, 3),), str(tmp_path / "m.onnx"),
                       dynamic_axes={"input": {0: "b"}})
    _check(SqueezeAll(), (cr.randn(2, 1, 3),), tmp_path, others=[(cr.randn(5, 1, 3),)],
           dynamic_axes={"input": {0: "b"}})


def test_a_failed_export_leaves_an_existing_file_untouched(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(ExportError):
        cr.onnx.export(Sorted(), (cr.randn(2, 3),), str(path))
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.onnx"]


def test_bad_arguments_give_clear_errors(tmp_path):
    model = cr.nn.Linear(3, 2)
    x = cr.randn(2, 3)
    with pytest.raises(ExportError, match="does not exist"):
        cr.onnx.export(model, (x,), str(tmp_path / "no" / "m.onnx"))
    with pytest.raises(ExportError, match="is a directory"):
        cr.onnx.export(model, (x,), str(tmp_path))
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ExportError, match="permission denied"):
                cr.onnx.export(model, (x,), str(ro / "m.onnx"))
        finally:
            ro.chmod(0o700)
    with pytest.raises(TypeError, match=r"args\[0\] is a ndarray"):
        cr.onnx.export(model, (np.zeros((2, 3), np.float32),), str(tmp_path / "m.onnx"))
    with pytest.raises(TypeError, match="args must be a Tensor"):
        cr.onnx.export(model, (), str(tmp_path / "m.onnx"))
    with pytest.raises(ExportError, match="input_names must be 1"):
        cr.onnx.export(model, (x,), str(tmp_path / "m.onnx"), input_names=["a", "b"])
    with pytest.raises(ExportError, match="neither an input"):
        cr.onnx.export(model, (x,), str(tmp_path / "m.onnx"), dynamic_axes={"z": {0: "b"}})
    with pytest.raises(ExportError, match="axis 2 is out of range"):
        cr.onnx.export(model, (x,), str(tmp_path / "m.onnx"),
                       dynamic_axes={"input": {2: "b"}})
    with pytest.raises(ExportError, match="opset_version 9"):
        cr.onnx.export(model, (x,), str(tmp_path / "m.onnx"), opset_version=9)
    with pytest.raises(TypeError, match="unexpected argument"):
        cr.onnx.export(model, (x,), str(tmp_path / "m.onnx"), keep_initializers=True)
    assert os.listdir(tmp_path) == (["ro"] if os.geteuid() != 0 else [])


def test_file_objects_opsets_and_the_torch_name(tmp_path):
    model = cr.nn.Sequential(cr.nn.Linear(4, 4), cr.nn.GELU(), cr.nn.LayerNorm(4))
    x = cr.randn(3, 4)
    with cr.no_grad():
        ref = model(x).numpy()
    for opset in (17, 18, 21):
        buf = io.BytesIO()
        proto = cr.onnx.export(model, x, buf, opset_version=opset)
        assert proto.opset_import[0].version == opset
        got = ort.InferenceSession(buf.getvalue()).run(None, {"input": x.numpy()})[0]
        assert np.abs(got - ref).max() <= TOL
    assert not cr.onnx.is_in_onnx_export()


class CrossAttention(cr.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = cr.nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, q, kv):
        return self.attn(q, kv, kv)


def test_multihead_attention_two_inputs_two_sizes(tmp_path):
    cr.manual_seed(5)
    _check(CrossAttention(), (cr.randn(2, 3, 8), cr.randn(2, 5, 8)), tmp_path,
           others=[(cr.randn(4, 6, 8), cr.randn(4, 2, 8))], input_names=["q", "kv"],
           dynamic_axes={"q": {0: "b", 1: "t"}, "kv": {0: "b", 1: "s"}})


def test_float16_and_conv1d(tmp_path):
    cr.manual_seed(6)
    model = cr.nn.Sequential(cr.nn.Conv1d(3, 4, 3, padding=1), cr.nn.ReLU(), cr.nn.Flatten(),
                             cr.nn.Linear(40, 5)).to(cr.float16)
    # float16 keeps 11 bits: sums accumulated in another order differ in the last bit (2 ulps
    # at the outputs' magnitude, about 0.5)
    proto = _check(model, (cr.randn(2, 3, 10).to(cr.float16),), tmp_path, tol=1e-3)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


class Decoder(cr.nn.Module):
    """Transposed convolutions (stride, padding, output_padding, groups) and the float ops
    cumsum, floor_divide, remainder, logaddexp."""

    def __init__(self):
        super().__init__()
        self.up1 = cr.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)
        self.up2 = cr.nn.ConvTranspose2d(6, 2, 3, stride=1, padding=1, groups=2)

    def forward(self, z):
        y = self.up2(cr.relu(self.up1(z)))
        # floor and remainder on the input itself: on a computed value a rounding difference
        # (another BLAS) could move a floor by one
        return (y.cumsum(dim=3) + cr.logaddexp(y, y * 0.5),
                cr.remainder(z, 0.3) + cr.floor_divide(z, 0.7))


def test_transposed_convolutions_and_float_ops(tmp_path):
    cr.manual_seed(7)
    proto = _check(Decoder(), (cr.randn(2, 4, 5, 5),), tmp_path,
                   others=[(cr.randn(3, 4, 5, 5),)], dynamic_axes={"input": {0: "n"}})
    assert {"ConvTranspose", "CumSum"} <= {n.op_type for n in proto.graph.node}


class LSTMWithStates(cr.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = cr.nn.LSTM(3, 5, num_layers=2)

    def forward(self, x, h, c):
        y, (h2, c2) = self.lstm(x, (h, c))
        return y, h2, c2


def test_initial_states_as_inputs_share_the_batch_axis(tmp_path):
    """One symbol ("b") on three inputs, at axis 1 of each; the time axis only on x."""
    cr.manual_seed(8)
    _check(LSTMWithStates(), (cr.randn(4, 2, 3), cr.randn(2, 2, 5), cr.randn(2, 2, 5)),
           tmp_path, others=[(cr.randn(7, 3, 3), cr.randn(2, 3, 5), cr.randn(2, 3, 5))],
           input_names=["x", "h", "c"],
           dynamic_axes={"x": {0: "t", 1: "b"}, "h": {1: "b"}, "c": {1: "b"}})
    with pytest.raises(ExportError, match="'b' have different sizes"):
        cr.onnx.export(LSTMWithStates(), (cr.randn(4, 2, 3), cr.randn(2, 3, 5),
                                          cr.randn(2, 3, 5)), str(tmp_path / "x.onnx"),
                       input_names=["x", "h", "c"], dynamic_axes={"x": {1: "b"}, "h": {1: "b"}})
