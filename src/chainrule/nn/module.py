"""``Module``: the base class of layers and models (PyTorch's ``torch.nn.Module``).

A module keeps three registries, filled through attribute assignment: ``_parameters``
(:class:`~chainrule.nn.Parameter` objects), ``_buffers`` (tensors that are state but not
learned, e.g. BatchNorm's running statistics) and ``_modules`` (submodules). From them come
``parameters()``, ``state_dict()``, ``train()/eval()``, ``to(dtype)`` and the nested repr.

Registered items are also kept in the instance ``__dict__`` so that ``self.weight`` inside
``forward`` is a plain attribute read (no ``__getattr__`` detour); the registries are the
source of truth and are changed only through ``register_*``, ``add_module``, attribute
assignment and ``del``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> class Affine(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = nn.Parameter(chainrule.ones(2))
    ...         self.register_buffer("calls", chainrule.zeros(()))
    ...     def forward(self, x):
    ...         return x * self.scale
    >>> m = Affine()
    >>> [name for name, _ in m.named_parameters()], list(m.state_dict())
    (['scale'], ['scale', 'calls'])
    >>> m(chainrule.tensor([1.0, 2.0]))
    tensor([1., 2.], grad_fn=<MulBackward>)
"""

from __future__ import annotations

import itertools
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from ..backend import Device, as_device, as_dtype
from ..tensor import Tensor, _wrap
from .parameter import Parameter

__all__ = ["Module", "RemovableHandle"]

_hook_ids = itertools.count()


class RemovableHandle:
    """The handle that a hook registration returns; ``remove()`` unregisters the hook.
    Also a context manager that removes the hook on exit.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> m = nn.Identity()
        >>> seen = []
        >>> with m.register_forward_hook(lambda mod, args, out: seen.append(out.shape)):
        ...     _ = m(chainrule.ones(2))
        >>> _ = m(chainrule.ones(3)); seen
        [(2,)]
    """

    __slots__ = ("extra_sets", "hooks_dict", "id")

    def __init__(self, hooks_dict: dict, extra_sets: tuple = ()):
        self.hooks_dict = hooks_dict
        self.extra_sets = extra_sets
        self.id = next(_hook_ids)

    def remove(self) -> None:
        """Unregister the hook (a second call does nothing)."""
        self.hooks_dict.pop(self.id, None)
        for s in self.extra_sets:
            s.discard(self.id)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _IncompatibleKeys(NamedTuple):
    missing_keys: list
    unexpected_keys: list

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")

    __str__ = __repr__


def _addindent(s: str, n: int) -> str:
    """Indent every line of ``s`` but the first by ``n`` spaces."""
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    pad = " " * n
    return lines[0] + "\n" + "\n".join(pad + line for line in lines[1:])


def _check_name(kind: str, name, module: Module, registry: dict) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
    if not name:
        raise KeyError(f"{kind} name must not be an empty string")
    if "." in name:
        raise KeyError(f"{kind} name must not contain a dot, got {name}")
    if name not in registry and (name in module.__dict__ or hasattr(type(module), name)):
        raise KeyError(f"attribute '{name}' already exists in {type(module).__name__}")


def _parse_to(args: tuple, kwargs: dict):
    """(device, dtype) from Module.to's overloads: to(device), to(dtype), to(device, dtype),
    to(tensor), with device=/dtype= keywords."""
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"Module.to() got unexpected keyword argument(s) {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, bool):  # non_blocking, positionally
            continue
        elif isinstance(a, Device):
            device = a
        elif isinstance(a, str):
            try:
                dtype = as_dtype(a)
            except TypeError:
                device = a
        else:
            dtype = a
    if device is not None:
        device = as_device(device)
    if dtype is not None:
        dtype = as_dtype(dtype)
        if not dtype.is_floating_point:
            raise TypeError(f"Module.to only accepts floating point dtypes, but got desired "
                            f"dtype={dtype}")
    return device, dtype


def _as_array(value):
    """The array behind a state_dict value (Tensor or NumPy array), else None."""
    if isinstance(value, Tensor):
        return value._data
    if backend.is_array(value) or isinstance(value, np.generic):
        return value
    return None


class Module:
    """Base class for all layers and models: subclass it, assign parameters, buffers and
    submodules as attributes in ``__init__`` (after ``super().__init__()``) and write
    ``forward``. Calling the module runs its forward pre-hooks, ``forward`` and its forward
    hooks.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> class MLP(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc1 = nn.Linear(4, 8)
        ...         self.fc2 = nn.Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.fc2(self.fc1(x).relu())
        >>> net = MLP()
        >>> net(chainrule.ones(3, 4)).shape
        (3, 2)
        >>> net
        MLP(
          (fc1): Linear(in_features=4, out_features=8, bias=True)
          (fc2): Linear(in_features=8, out_features=2, bias=True)
        )
    """

    training: bool

    def __init__(self) -> None:
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_non_persistent_buffers_set"] = set()
        d["_modules"] = {}
        d["_forward_pre_hooks"] = OrderedDict()
        d["_forward_pre_hooks_with_kwargs"] = set()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_hooks_with_kwargs"] = set()
        d["_forward_hooks_always_called"] = set()

    # ------------------------------------------------------------------ calling
    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict):
        for hid, hook in list(self._forward_pre_hooks.items()):
            if hid in self._forward_pre_hooks_with_kwargs:
                res = hook(self, args, kwargs)
                if res is not None:
                    if not (isinstance(res, tuple) and len(res) == 2):
                        raise RuntimeError(f"forward pre-hook must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {res!r}")
                    args, kwargs = res
            else:
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        called = set()
        result = None
        try:
            result = self.forward(*args, **kwargs)
            for hid, hook in list(self._forward_hooks.items()):
                called.add(hid)
                if hid in self._forward_hooks_with_kwargs:
                    res = hook(self, args, kwargs, result)
                else:
                    res = hook(self, args, result)
                if res is not None:
                    result = res
        except Exception:
            for hid, hook in list(self._forward_hooks.items()):
                if hid in self._forward_hooks_always_called and hid not in called:
                    try:
                        if hid in self._forward_hooks_with_kwargs:
                            hook(self, args, kwargs, result)
                        else:
                            hook(self, args, result)
                    except Exception as e:  # the forward's own error is the one to report
                        warnings.warn(f"forward hook with always_call=True raised {e!r} while "
                                      "handling another exception; it was silenced",
                                      stacklevel=2)
            raise
        return result

    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """Run ``hook(module, args)`` before each forward; it may return new args (a tuple, or
        a single value that becomes a 1-tuple). With ``with_kwargs=True`` the hook is called
        as ``hook(module, args, kwargs)`` and may return ``(args, kwargs)``.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> m = nn.Identity()
            >>> h = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
            >>> m(chainrule.ones(2))
            tensor([2., 2.])
            >>> h.remove(); m(chainrule.ones(2))
            tensor([1., 1.])
        """
        handle = RemovableHandle(self._forward_pre_hooks, (self._forward_pre_hooks_with_kwargs,))
        self._forward_pre_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs.add(handle.id)
        if prepend:
            self._forward_pre_hooks.move_to_end(handle.id, last=False)
        return handle

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False,
                              with_kwargs: bool = False,
                              always_call: bool = False) -> RemovableHandle:
        """Run ``hook(module, args, output)`` after each forward; a non-None return value
        replaces the output. ``with_kwargs=True``: ``hook(module, args, kwargs, output)``.
        ``always_call=True``: also run when forward raised (with output None).

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> m = nn.Linear(2, 2)
            >>> shapes = []
            >>> h = m.register_forward_hook(lambda mod, args, out: shapes.append(out.shape))
            >>> _ = m(chainrule.ones(5, 2)); shapes
            [(5, 2)]
        """
        handle = RemovableHandle(self._forward_hooks, (self._forward_hooks_with_kwargs,
                                                       self._forward_hooks_always_called))
        self._forward_hooks[handle.id] = hook
        if with_kwargs:
            self._forward_hooks_with_kwargs.add(handle.id)
        if always_call:
            self._forward_hooks_always_called.add(handle.id)
        if prepend:
            self._forward_hooks.move_to_end(handle.id, last=False)
        return handle

    # ------------------------------------------------------------------ registration
    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a Parameter, or None for an absent one such as a disabled bias)
        under ``name``; same as assigning it as an attribute.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> m = nn.Module()
            >>> m.register_parameter("w", nn.Parameter(chainrule.ones(1)))
            >>> [n for n, _ in m.named_parameters()]
            ['w']
        """
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        _check_name("parameter", name, self, d["_parameters"])
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter "
                            f"'{name}' (chainrule.nn.Parameter or None required)")
        if param is not None and param._node is not None:
            raise ValueError(f"cannot assign non-leaf Tensor to parameter '{name}'; make it a "
                             "leaf with nn.Parameter(t.detach()) or compute it in forward()")
        d["_parameters"][name] = param
        d[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register a tensor that is module state but not a parameter (e.g. running means).
        Persistent buffers are part of ``state_dict()``; all buffers follow ``to()``.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> m = nn.Module()
            >>> m.register_buffer("steps", chainrule.zeros((), dtype=chainrule.int64))
            >>> m.register_buffer("cache", chainrule.zeros(3), persistent=False)
            >>> list(m.state_dict()), [n for n, _ in m.named_buffers()]
            (['steps'], ['steps', 'cache'])
        """
        d = self.__dict__
        if "_buffers" not in d:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        _check_name("buffer", name, self, d["_buffers"])
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer "
                            f"'{name}' (chainrule.Tensor or None required)")
        d["_buffers"][name] = tensor
        if persistent:
            d["_non_persistent_buffers_set"].discard(name)
        else:
            d["_non_persistent_buffers_set"].add(name)
        d[name] = tensor

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a submodule under ``name`` (same as assigning it as an attribute).

        Example:
            >>> from chainrule import nn
            >>> m = nn.Module()
            >>> m.add_module("act", nn.ReLU())
            >>> m.act
            ReLU()
        """
        d = self.__dict__
        if "_modules" not in d:
            raise AttributeError("cannot assign module before Module.__init__() call")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        _check_name("module", name, self, d["_modules"])
        d["_modules"][name] = module
        d[name] = module

    register_module = add_module

    def _discard(self, name: str, keep: str) -> None:
        """Forget ``name`` in __dict__ and in every registry but ``keep`` (where a
        re-registration then keeps its position, as in PyTorch)."""
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg != keep:
                d[reg].pop(name, None)
        if keep != "_buffers":
            d["_non_persistent_buffers_set"].discard(name)
        d.pop(name, None)

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            self._discard(name, "_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(chainrule.nn.Parameter or None expected)")
            params[name] = None
            d[name] = None
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            self._discard(name, "_modules")
            d["_modules"][name] = value
            d[name] = value
        elif params is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module "
                                f"'{name}' (chainrule.nn.Module or None expected)")
            d["_modules"][name] = None
            d[name] = None
        elif params is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(chainrule.Tensor or None expected)")
            d["_buffers"][name] = value
            d[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # only reached when normal lookup fails: registered items live in __dict__ too
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                return r[name]
        if name == "forward":
            raise AttributeError(f'Module [{type(self).__name__}] is missing the required '
                                 '"forward" function')
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            r = d.get(reg)
            if r is not None and name in r:
                del r[name]
                d["_non_persistent_buffers_set"].discard(name)
                d.pop(name, None)
                return
        object.__delattr__(self, name)

    # ------------------------------------------------------------------ traversal
    def _named_members(self, get: Callable, prefix: str, recurse: bool,
                       remove_duplicate: bool) -> Iterator[tuple[str, Any]]:
        seen = set()
        mods = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                if recurse else [(prefix, self)])
        for mod_prefix, mod in mods:
            for k, v in get(mod).items():
                if v is None:
                    continue
                if remove_duplicate:
                    if id(v) in seen:
                        continue
                    seen.add(id(v))
                yield (mod_prefix + "." + k if mod_prefix else k), v

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(name, parameter) pairs, submodules' included (dotted names) when ``recurse``;
        a parameter shared by two modules is listed once unless ``remove_duplicate=False``.

        Example:
            >>> from chainrule import nn
            >>> [n for n, _ in nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).named_parameters()]
            ['0.weight', '0.bias', '1.weight', '1.bias']
        """
        return self._named_members(lambda m: m._parameters, prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """The parameters (see :meth:`named_parameters`).

        Example:
            >>> from chainrule import nn
            >>> sum(p.numel() for p in nn.Linear(3, 2).parameters())
            8
        """
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(name, buffer) pairs, persistent or not.

        Example:
            >>> from chainrule import nn
            >>> [n for n, _ in nn.BatchNorm1d(3).named_buffers()]
            ['running_mean', 'running_var', 'num_batches_tracked']
        """
        return self._named_members(lambda m: m._buffers, prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """The buffers (see :meth:`named_buffers`).

        Example:
            >>> from chainrule import nn
            >>> len(list(nn.BatchNorm1d(3).buffers()))
            3
        """
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for the direct submodules.

        Example:
            >>> from chainrule import nn
            >>> [n for n, _ in nn.Sequential(nn.ReLU(), nn.Tanh()).named_children()]
            ['0', '1']
        """
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self) -> Iterator[Module]:
        """The direct submodules.

        Example:
            >>> from chainrule import nn
            >>> list(nn.Sequential(nn.ReLU()).children())
            [ReLU()]
        """
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(name, module) for this module ('' ) and every submodule, depth first.

        Example:
            >>> from chainrule import nn
            >>> [n for n, _ in nn.Sequential(nn.Linear(1, 1), nn.ReLU()).named_modules()]
            ['', '0', '1']
        """
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + "." + name if prefix else name,
                                       remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every submodule.

        Example:
            >>> from chainrule import nn
            >>> len(list(nn.Sequential(nn.Linear(1, 1), nn.ReLU()).modules()))
            3
        """
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path ``target`` ('' is self).

        Example:
            >>> from chainrule import nn
            >>> nn.Sequential(nn.Sequential(nn.ReLU())).get_submodule("0.0")
            ReLU()
        """
        if target == "":
            return self
        mod = self
        for item in target.split("."):
            if item not in mod.__dict__.get("_modules", {}):
                raise AttributeError(f"{mod._get_name()} has no submodule `{item}` (looking up "
                                     f"{target!r})")
            mod = mod._modules[item]
            if not isinstance(mod, Module):
                raise AttributeError(f"`{item}` is not an nn.Module (looking up {target!r})")
        return mod

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target``.

        Example:
            >>> from chainrule import nn
            >>> nn.Sequential(nn.Linear(2, 3)).get_parameter("0.bias").shape
            (3,)
        """
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters or mod._parameters[name] is None:
            raise AttributeError(f"{mod._get_name()} has no parameter `{name}` (looking up "
                                 f"{target!r})")
        return mod._parameters[name]

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at dotted path ``target``.

        Example:
            >>> from chainrule import nn
            >>> nn.Sequential(nn.BatchNorm1d(2)).get_buffer("0.running_var")
            tensor([1., 1.])
        """
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._buffers or mod._buffers[name] is None:
            raise AttributeError(f"{mod._get_name()} has no buffer `{name}` (looking up "
                                 f"{target!r})")
        return mod._buffers[name]

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``training=True``) here and in every submodule; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Dropout().train(False).training
            False
        """
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be boolean, got {mode!r}")
        self.__dict__["training"] = mode
        for m in self.children():  # through train(), so that overrides in children apply
            m.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)``; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.BatchNorm1d(2).eval().training
            False
        """
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (freeze with False); returns self.

        Example:
            >>> from chainrule import nn
            >>> m = nn.Linear(2, 2).requires_grad_(False)
            >>> any(p.requires_grad for p in m.parameters())
            False
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the parameters' gradients: to None (default) or to zeros in place.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> m = nn.Linear(2, 1)
            >>> m(chainrule.ones(1, 2)).sum().backward()
            >>> m.zero_grad(); m.weight.grad is None
            True
        """
        for p in self.parameters():
            g = p._grad
            if g is None:
                continue
            if set_to_none:
                p._grad = None
            else:
                if g._node is not None or g._rg:
                    g = p._grad = g.detach()
                g._data.fill(0)
                g._bump()

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first) and then on self; returns self.

        Example:
            >>> from chainrule import nn
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
            >>> def init(m):
            ...     if isinstance(m, nn.Linear):
            ...         nn.init.zeros_(m.bias)
            >>> net.apply(init)[0].bias
            Parameter containing:
            tensor([0., 0.], requires_grad=True)
        """
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ dtype / device
    def _apply(self, fn: Callable) -> Module:
        """Replace every parameter's and buffer's array by ``fn(array)`` (identity of the
        Parameter objects kept, so optimizers holding them stay valid); grads follow."""
        for m in self.modules():
            for t in itertools.chain(m._parameters.values(), m._buffers.values()):
                if t is None:
                    continue
                new = fn(t._data)
                if new is not t._data:
                    t._data = new
                g = t._grad
                if g is not None:
                    gnew = fn(g._data)
                    if gnew is not g._data:
                        t._grad = _wrap(gnew)
        return self

    def to(self, *args, **kwargs) -> Module:
        """Move and/or cast parameters and buffers in place: ``to(dtype)``, ``to(device)``,
        ``to(device, dtype)``, ``to(tensor)``. Only floating-point tensors change dtype.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> nn.BatchNorm1d(2).to(chainrule.float64).running_mean.dtype
            chainrule.float64
        """
        device, dtype = _parse_to(args, kwargs)

        def convert(a):
            if device is not None:
                a = backend.to_device(a, device)
            if dtype is not None and a.dtype.kind in "fV" and a.dtype != dtype.np:
                a = a.astype(dtype.np)
            return a

        return self._apply(convert)

    def _cast_floats(self, dtype) -> Module:
        npd = dtype.np
        return self._apply(lambda a: a.astype(npd) if a.dtype.kind in "fV" and a.dtype != npd
                           else a)

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(1, 1).double().float().weight.dtype
            chainrule.float32
        """
        return self._cast_floats(backend.float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(1, 1).double().weight.dtype
            chainrule.float64
        """
        return self._cast_floats(backend.float64)

    def half(self) -> Module:
        """Cast floating-point parameters and buffers to float16; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(1, 1).half().bias.dtype
            chainrule.float16
        """
        return self._cast_floats(backend.float16)

    def bfloat16(self) -> Module:
        """Cast floating-point parameters and buffers to bfloat16 (the ``bf16`` extra).

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(1, 1).bfloat16().weight.dtype
            chainrule.bfloat16
        """
        return self._cast_floats(backend.bfloat16_dtype())

    def cpu(self) -> Module:
        """Move parameters and buffers to the CPU; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(1, 1).cpu().weight.device
            device(type='cpu')
        """
        return self.to("cpu")

    def cuda(self, device: int | str | Device | None = None) -> Module:
        """Move parameters and buffers to a GPU (``cuda``, or ``cuda:N`` for an int);
        returns self. Needs CuPy and a GPU."""
        if device is None:
            device = "cuda"
        elif isinstance(device, int):
            device = f"cuda:{device}"
        return self.to(device)

    # ------------------------------------------------------------------ state
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()

    def state_dict(self, *, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> OrderedDict:
        """An ordered dict from dotted names to the parameters and persistent buffers
        (detached tensors sharing memory with the module, unless ``keep_vars``).

        Example:
            >>> from chainrule import nn
            >>> list(nn.BatchNorm1d(2).state_dict())
            ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']
        """
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, m in self._modules.items():
            if m is not None:
                m.state_dict(destination=destination, prefix=prefix + name + ".",
                             keep_vars=keep_vars)
        return destination

    def _local_state(self) -> dict:
        out = {k: v for k, v in self._parameters.items() if v is not None}
        for k, v in self._buffers.items():
            if v is not None and k not in self._non_persistent_buffers_set:
                out[k] = v
        return out

    def _check_state(self, state_dict: Mapping, prefix: str, missing: list, unexpected: list,
                     errors: list, plan: list) -> None:
        """Match this module's own entries against ``state_dict``; queue the copies."""
        local = self._local_state()
        for name, t in local.items():
            key = prefix + name
            if key not in state_dict:
                missing.append(key)
                continue
            value = state_dict[key]
            arr = _as_array(value)
            if arr is None:
                errors.append(f'While copying the parameter named "{key}", expected a Tensor or '
                              f"array from checkpoint but received {type(value).__name__}")
                continue
            if tuple(arr.shape) != tuple(t.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(arr.shape)} from checkpoint, the shape in current model "
                              f"is {tuple(t.shape)}.")
                continue
            plan.append((self, name, t, value, arr))
        for key in state_dict:
            if not key.startswith(prefix):
                continue
            head, dot, _ = key[len(prefix):].partition(".")
            if dot:
                if head not in self._modules:
                    unexpected.append(key)
            elif head not in local:
                unexpected.append(key)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy parameters and buffers from ``state_dict`` (as made by :meth:`state_dict`),
        in place (values are cast to each tensor's dtype and moved to its device).

        With ``strict`` (default) missing or unexpected keys are an error. Shape mismatches
        are always an error. Errors name every offending key, and nothing is loaded when
        there is an error. Returns ``(missing_keys, unexpected_keys)``. ``assign=True`` makes
        the module hold the given tensors (wrapped as Parameters) instead of copying.

        Example:
            >>> from chainrule import nn
            >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
            >>> b.load_state_dict(a.state_dict())
            <All keys matched successfully>
            >>> bool((a.weight == b.weight).all())
            True
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected state_dict to be dict-like, got "
                            f"{type(state_dict).__name__}")
        missing, unexpected, errors, plan = [], [], [], []
        for prefix, m in self.named_modules(remove_duplicate=False):
            m._check_state(state_dict, prefix + "." if prefix else "", missing, unexpected,
                           errors, plan)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t"
                               + "\n\t".join(errors))
        for mod, name, t, value, arr in plan:
            if assign:
                v = value if isinstance(value, Tensor) else _wrap(arr)
                if isinstance(t, Parameter):
                    if not isinstance(v, Parameter):
                        v = Parameter(v.detach(), requires_grad=t.requires_grad)
                    mod.register_parameter(name, v)
                else:
                    mod._buffers[name] = v
                    mod.__dict__[name] = v
            else:
                dst = t._data
                src = arr
                if backend.device_of(src) != backend.device_of(dst):
                    src = backend.to_device(src, backend.device_of(dst))
                backend.get_array_module(dst).copyto(dst, src, casting="unsafe")
                t._bump()
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The module's own settings for its repr (override in layers); '' by default.

        Example:
            >>> from chainrule import nn
            >>> nn.Linear(2, 3).extra_repr()
            'in_features=2, out_features=3, bias=True'
        """
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({k}): " + _addindent(repr(m), 2) for k, m in self._modules.items()]
        lines = extra_lines + child_lines
        s = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                s += extra_lines[0]
            else:
                s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"
