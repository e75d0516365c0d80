"""PyTorch's ``torch.utils.data.dataloader``: the names of :mod:`chainrule.data.dataloader`."""

from ...data.dataloader import *  # noqa: F403
from ...data.dataloader import __all__  # noqa: F401
from ...data.worker import WorkerInfo, get_worker_info  # noqa: F401
