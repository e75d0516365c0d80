"""PyTorch's ``torch.nn.modules`` namespace, so that ported code naming a class by its file
(``torch.nn.modules.linear.Linear``, ``torch.nn.modules.module.Module``) finds chainrule's
class; every name here is the one in ``chainrule.nn``. The submodules are made from the table
below (PyTorch's file name: the classes chainrule has from it).

Example:
    >>> import chainrule
    >>> from chainrule.nn.modules.linear import Linear
    >>> Linear is chainrule.nn.Linear, chainrule.nn.modules.rnn.LSTM is chainrule.nn.LSTM
    (True, True)
"""

import sys as _sys
import types as _types

_nn = vars(_sys.modules[__name__.rpartition(".")[0]])  # chainrule.nn (its classes exist)

FILES = {
    "activation": ("CELU ELU GELU SELU Hardsigmoid Hardswish Hardtanh LeakyReLU LogSigmoid "
                   "LogSoftmax Mish MultiheadAttention ReLU ReLU6 Sigmoid SiLU Softmax Softmin "
                   "Softplus Softsign Tanh GLU Hardshrink PReLU Softmax2d Softshrink Tanhshrink "
                   "Threshold"),
    "batchnorm": "BatchNorm1d BatchNorm2d",
    "container": "ModuleDict ModuleList ParameterDict ParameterList Sequential",
    "conv": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d",
    "distance": "CosineSimilarity PairwiseDistance",
    "dropout": "Dropout Dropout1d Dropout2d Dropout3d",
    "flatten": "Flatten Unflatten",
    "instancenorm": "InstanceNorm1d InstanceNorm2d InstanceNorm3d",
    "linear": "Bilinear Identity Linear",
    "loss": ("BCELoss BCEWithLogitsLoss CrossEntropyLoss HuberLoss KLDivLoss L1Loss MSELoss "
             "NLLLoss SmoothL1Loss CosineEmbeddingLoss HingeEmbeddingLoss MarginRankingLoss "
             "MultiLabelSoftMarginLoss PoissonNLLLoss SoftMarginLoss TripletMarginLoss "
             "GaussianNLLLoss"),
    "module": "Module",
    "normalization": "GroupNorm LayerNorm RMSNorm",
    "padding": "ConstantPad1d ConstantPad2d ConstantPad3d ZeroPad1d ZeroPad2d ZeroPad3d",
    "pixelshuffle": "PixelShuffle PixelUnshuffle",
    "pooling": ("AdaptiveAvgPool1d AdaptiveAvgPool2d AvgPool1d AvgPool2d MaxPool1d MaxPool2d "
                "AdaptiveAvgPool3d AvgPool3d MaxPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d "
                "AdaptiveMaxPool3d"),
    "rnn": "GRU LSTM RNN GRUCell LSTMCell RNNBase RNNCell RNNCellBase",
    "sparse": "Embedding",
    "transformer": ("Transformer TransformerDecoder TransformerDecoderLayer TransformerEncoder "
                    "TransformerEncoderLayer"),
    "upsampling": "Upsample",
}

for _file, _names in FILES.items():
    _mod = _types.ModuleType(f"{__name__}.{_file}",
                             f"PyTorch's torch.nn.modules.{_file}: chainrule.nn's classes.")
    _mod.__all__ = _names.split()
    for _n in _mod.__all__:
        setattr(_mod, _n, _nn[_n])
        globals()[_n] = _nn[_n]
    _sys.modules[_mod.__name__] = _mod
    globals()[_file] = _mod
