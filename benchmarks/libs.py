"""Library adapters for the benchmark runner: one small entry per library.

An adapter says which modules the library needs (so the runner can list it as skipped, with
why, without importing it), which workload family it runs (``workloads.py``), and how to
build the namespace the workload code is written against:

    family     ``torchlike`` (same model code as chainrule and PyTorch), ``jax`` or ``numpy``
    tensor     NumPy array -> the library's array (``requires_grad`` for torchlike leaves)
    np         the library's array -> NumPy array (for the check values)
    item       scalar -> float
    compile    how the library compiles a function or module (identity when eager)
    compile_step   how it compiles a whole step, backward and optimizer step included
               (identity for all but chainrule-jit: chainrule.jit returns detached outputs,
               so it captures the step, not the forward)
    compiled   True for the compiled libraries (they skip the in-process extra products)
    nn, F, optim, grad, jvp, hvp, no_grad   for torchlike; F is a small shim for JAX

A new library is one more entry in ``LIBRARIES``: its family, what it needs, and a loader
that returns the namespace (``chainrule-jit`` is the chainrule namespace with
``compile_step`` set to ``chainrule.jit(fullgraph=True, backend="numpy")`` and
``compiled=True``; ``chainrule-jit-c`` the same with ``backend="c"``, the fused C kernels).

    >>> list(LIBRARIES)
    ['chainrule', 'chainrule-jit', 'chainrule-jit-c', 'torch', 'torch.compile', 'jax', 'numpy']
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace


@dataclass
class Library:
    """An adapter: its family, the modules it needs and its namespace loader."""

    name: str
    family: str
    needs: tuple
    load: Callable  # threads (int or None) -> namespace
    note: str = ""

    def missing(self) -> str | None:
        """Why this library cannot run here (None when it can); imports nothing."""
        for mod in self.needs:
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed"
        if self.name == "torch.compile" and not (shutil.which("gcc") or shutil.which("cc")):
            return "no C compiler (torch.compile's inductor needs gcc)"
        if self.name == "chainrule-jit-c":
            from chainrule.jit import cbackend

            return cbackend.unavailable()
        return None


def _identity(f):
    return f


def _chainrule(threads, compiled=False, backend="numpy"):
    import chainrule
    import chainrule.nn.functional as F
    from chainrule import func, nn, optim
    from chainrule.autograd import grad

    step = (lambda f: chainrule.jit(f, fullgraph=True, backend=backend)) if compiled else _identity
    return SimpleNamespace(
        family="torchlike", lib=chainrule, nn=nn, F=F, optim=optim, grad=grad, jvp=func.jvp,
        hvp=func.hvp, no_grad=chainrule.no_grad, compile=_identity, compile_step=step,
        compiled=compiled,
        tensor=lambda a, requires_grad=False: chainrule.tensor(a.copy(),
                                                               requires_grad=requires_grad),
        np=lambda t: t.detach().numpy(), item=lambda t: float(t.item()))


def _torch(threads, compiled=False):
    import torch
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)

    def hvp(f, primals, tangents):
        g = torch.func.grad(f, argnums=tuple(range(len(primals))))
        return torch.func.jvp(g, tuple(primals), tuple(tangents))[1]

    return SimpleNamespace(
        family="torchlike", lib=torch, nn=torch.nn, F=F, optim=torch.optim,
        grad=torch.autograd.grad, jvp=torch.func.jvp, hvp=hvp, no_grad=torch.no_grad,
        compile=torch.compile if compiled else _identity, compile_step=_identity,
        compiled=compiled,
        tensor=lambda a, requires_grad=False: torch.from_numpy(a.copy()).requires_grad_(
            requires_grad),
        np=lambda t: t.detach().numpy(), item=lambda t: float(t.item()))


def _jax(threads):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")

    def conv2d(x, w, b, padding=0):
        out = jax.lax.conv_general_dilated(x, w, (1, 1), [(padding, padding)] * 2)
        return out + b[None, :, None, None]

    def max_pool2d(x, k):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, k, k), (1, 1, k, k),
                                     "VALID")

    def cross_entropy(z, y):
        logp = jax.nn.log_softmax(z, axis=-1)
        return -jnp.take_along_axis(logp, y[:, None], axis=-1).mean()

    def layer_norm(x, w, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + eps) * w + b

    F = SimpleNamespace(linear=lambda x, w, b: x @ w.T + b, relu=jax.nn.relu,
                        cross_entropy=cross_entropy, conv2d=conv2d, max_pool2d=max_pool2d,
                        layer_norm=layer_norm)
    return SimpleNamespace(family="jax", lib=jax, F=F, compiled=True, tensor=jnp.asarray,
                           np=lambda a: __import__("numpy").asarray(a), item=float)


def _numpy(threads):
    import numpy

    return SimpleNamespace(family="numpy", lib=numpy, compiled=False, tensor=lambda a: a,
                           np=numpy.asarray, item=float)


LIBRARIES: dict[str, Library] = {lib.name: lib for lib in (
    Library("chainrule", "torchlike", ("numpy",), _chainrule),
    Library("chainrule-jit", "torchlike", ("numpy",), lambda t: _chainrule(t, compiled=True),
            "chainrule, the whole step (forward, backward, optimizer) under chainrule.jit "
            "(numpy backend)"),
    Library("chainrule-jit-c", "torchlike", ("numpy", "cffi"),
            lambda t: _chainrule(t, compiled=True, backend="c"),
            "chainrule.jit with backend 'c' (fused C kernels, OpenMP)"),
    Library("torch", "torchlike", ("torch",), _torch, "PyTorch eager"),
    Library("torch.compile", "torchlike", ("torch",), lambda t: _torch(t, compiled=True),
            "PyTorch, the model or loss function under torch.compile (inductor)"),
    Library("jax", "jax", ("jax", "jaxlib"), _jax, "JAX, the whole step under jax.jit"),
    Library("numpy", "numpy", ("numpy",), _numpy, "hand-written forward and backward"),
)}

COMPILED = ("torch.compile", "jax")  # the compiled anchors (quick mode may shorten them)


def load(name: str, threads: int | None = None):
    """The namespace of library ``name``; ``threads`` is the thread setting (None: default)."""
    ns = LIBRARIES[name].load(threads)
    ns.name = name
    return ns
