"""``sys.modules["torch"] = chainrule`` (or any other name bound to chainrule in
``sys.modules``) makes ``import torch.nn.functional as F`` and ``from torch.utils.data import
DataLoader`` find chainrule's submodules, instead of loading chainrule's files a second time
under the alias (which would give two copies of every class).

Example:
    >>> import sys, chainrule
    >>> sys.modules["pt_alias_demo"] = chainrule
    >>> from pt_alias_demo.nn.functional import relu
    >>> relu is chainrule.nn.functional.relu
    True
    >>> for k in [k for k in sys.modules if k.startswith("pt_alias_demo")]:
    ...     del sys.modules[k]
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["AliasFinder", "install"]


class AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``alias.sub.mod`` to ``chainrule.sub.mod`` when ``sys.modules["alias"]`` is
    chainrule itself."""

    def find_spec(self, fullname, path=None, target=None):
        top, _, rest = fullname.partition(".")
        if not rest or top == "chainrule":
            return None
        root = sys.modules.get(top)
        if root is None or root is not sys.modules.get("chainrule"):
            return None
        real = "chainrule." + rest
        if real not in sys.modules and importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=real)

    _KEPT = ("__name__", "__spec__", "__loader__", "__package__", "__file__", "__path__",
             "__cached__")

    def create_module(self, spec):
        module = importlib.import_module(spec.origin)
        # the import system stamps the alias's name and spec on the module it is given;
        # remember chainrule's own, to put them back in exec_module
        spec.loader_state = {k: module.__dict__[k] for k in self._KEPT if k in module.__dict__}
        return module

    def exec_module(self, module):
        """Nothing to run (the module is chainrule's, already executed): restore its own
        name and spec."""
        module.__dict__.update(module.__spec__.loader_state)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())  # before the path finder, which would load
        # chainrule's files a second time through the alias's __path__
