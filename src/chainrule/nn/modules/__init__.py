"""PyTorch's ``torch.nn.modules`` namespace, so that ported code naming a class by its file
(``torch.nn.modules.linear.Linear``, ``torch.nn.modules.module.Module``) finds chainrule's
class; every name here is the one in ``chainrule.nn``.

Example:
    >>> import chainrule
    >>> chainrule.nn.modules.linear.Linear is chainrule.nn.Linear
    True
"""

from . import (
    activation,
    batchnorm,
    container,
    conv,
    dropout,
    flatten,
    linear,
    loss,
    module,
    normalization,
    pooling,
    rnn,
    sparse,
    transformer,
    upsampling,
)
from .activation import *
from .batchnorm import *
from .container import *
from .conv import *
from .dropout import *
from .flatten import *
from .linear import *
from .loss import *
from .module import *
from .normalization import *
from .pooling import *
from .rnn import *
from .sparse import *
from .transformer import *
from .upsampling import *
