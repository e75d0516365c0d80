"""Optimisers (PyTorch's ``torch.optim``): SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax,
NAdam, RAdam, ASGD, Rprop, LBFGS, HessianFree,
and the learning-rate schedules in ``chainrule.optim.lr_scheduler``.

Each first-order optimiser is a per-parameter state init and an update rule on raw arrays,
written once as maths in its docstring; :class:`Optimizer` holds the parameter groups, the
state, ``zero_grad``, ``state_dict`` and the loop they share.

Example:
    >>> import chainrule
    >>> from chainrule import optim
    >>> w = chainrule.tensor([2.0, -1.0], requires_grad=True)
    >>> opt = optim.Adam([w], lr=0.1)
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    >>> for _ in range(20):
    ...     opt.zero_grad()
    ...     loss = (w * w).sum()
    ...     loss.backward()
    ...     opt.step()
    ...     sched.step()
    >>> bool(loss.item() < 0.5), sched.get_last_lr()
    (True, [0.025])
"""

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .hessian_free import HessianFree
from .lbfgs import LBFGS
from .optimizer import Optimizer, required
from .rmsprop import RMSprop
from .sgd import SGD
from .zero import ZeroRedundancyOptimizer

# isort: split
# ---- issue 14 (PyTorch compatibility): the rest of torch.optim
from .adadelta import Adadelta
from .adamax import Adamax
from .asgd import ASGD
from .nadam import NAdam, RAdam
from .rprop import Rprop, SparseAdam

__all__ = ["ASGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "HessianFree", "LBFGS",
           "NAdam", "Optimizer", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam",
           "ZeroRedundancyOptimizer", "lr_scheduler", "required"]
