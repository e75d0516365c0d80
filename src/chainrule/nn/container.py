"""Containers: ``Sequential``, ``ModuleList``, ``ModuleDict``, ``ParameterList``,
``ParameterDict``.

Example:
    >>> import chainrule
    >>> from chainrule import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> net(chainrule.ones(3, 4)).shape, len(net), net[1]
    ((3, 2), 3, ReLU())
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping

from ..tensor import Tensor
from .module import Module, _addindent
from .parameter import Parameter

__all__ = ["ModuleDict", "ModuleList", "ParameterDict", "ParameterList", "Sequential"]


def _abs_index(idx, size: int, owner: str) -> int:
    """A non-negative position from an int index, IndexError naming the container."""
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"{owner}: index {idx} is out of range for length {size}")
    return idx % size


def _reset_modules(module: Module, items: list) -> None:
    """Replace ``module``'s submodules by ``items`` ((name, module) pairs), keeping the
    instance __dict__ mirror in step."""
    d = module.__dict__
    for k in d["_modules"]:
        d.pop(k, None)
    d["_modules"] = {}
    for k, m in items:
        module.add_module(k, m)


class Sequential(Module):
    """Modules called in order, each on the previous one's output. Built from modules as
    arguments (named "0", "1", ...) or from an ``OrderedDict`` of named modules.

    Supports ``len``, iteration, integer indexing (a module) and slicing (a new Sequential
    sharing the modules), ``append``, ``insert``, ``extend``, ``pop`` and ``del``.

    Example:
        >>> import chainrule
        >>> from collections import OrderedDict
        >>> from chainrule import nn
        >>> net = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 3)), ("act", nn.Tanh())]))
        >>> net
        Sequential(
          (fc): Linear(in_features=2, out_features=3, bias=True)
          (act): Tanh()
        )
        >>> net[:1]
        Sequential(
          (fc): Linear(in_features=2, out_features=3, bias=True)
        )
    """

    def __init__(self, *args: Module):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], Mapping) and not isinstance(args[0], Module):
            for key, m in args[0].items():
                self.add_module(key, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def forward(self, input):
        """Apply the modules in order."""
        for m in self._modules.values():
            input = m(input)
        return input

    def __getitem__(self, idx: int | slice) -> Module | Sequential:
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        keys = list(self._modules)
        return self._modules[keys[_abs_index(idx, len(keys), "Sequential")]]

    def __setitem__(self, idx: int, module: Module) -> None:
        keys = list(self._modules)
        setattr(self, keys[_abs_index(idx, len(keys), "Sequential")], module)

    def __delitem__(self, idx: int | slice) -> None:
        items = list(self._modules.items())
        if isinstance(idx, slice):
            del items[idx]
        else:
            del items[_abs_index(idx, len(items), "Sequential")]
        # renumber, as PyTorch does, so that indices stay 0..n-1
        _reset_modules(self, [(str(i), m) for i, (_, m) in enumerate(items)])

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise TypeError(f"unsupported operand: Sequential + {type(other).__name__} (add "
                            "another Sequential)")
        return Sequential(*self, *other)

    def __iadd__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise TypeError(f"unsupported operand: Sequential += {type(other).__name__}")
        return self.extend(other)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end; returns self.

        Example:
            >>> from chainrule import nn
            >>> len(nn.Sequential(nn.ReLU()).append(nn.Tanh()))
            2
        """
        self.add_module(str(len(self)), module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Insert ``module`` before position ``index``; returns self.

        Example:
            >>> from chainrule import nn
            >>> nn.Sequential(nn.ReLU()).insert(0, nn.Tanh())[0]
            Tanh()
        """
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.insert: expected a Module, got {type(module).__name__}")
        n = len(self)
        if not -n <= index <= n:
            raise IndexError(f"Sequential.insert: index {index} is out of range for length {n}")
        mods = list(self._modules.values())
        mods.insert(index, module)
        _reset_modules(self, [(str(i), m) for i, m in enumerate(mods)])
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        """Append every module of ``modules``; returns self.

        Example:
            >>> from chainrule import nn
            >>> len(nn.Sequential().extend([nn.ReLU(), nn.Tanh()]))
            2
        """
        for m in modules:
            self.append(m)
        return self

    def pop(self, key: int | slice) -> Module | Sequential:
        """Remove and return the module(s) at ``key``.

        Example:
            >>> from chainrule import nn
            >>> nn.Sequential(nn.ReLU(), nn.Tanh()).pop(0)
            ReLU()
        """
        v = self[key]
        del self[key]
        return v


class ModuleList(Module):
    """A list of submodules (registered, so their parameters are the list's). It has no
    forward: iterate over it in your own.

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(2)])
        >>> x = chainrule.ones(1, 3)
        >>> for layer in layers:
        ...     x = layer(x)
        >>> x.shape, len(list(layers.parameters()))
        ((1, 3), 4)
        >>> layers
        ModuleList(
          (0-1): 2 x Linear(in_features=3, out_features=3, bias=True)
        )
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx: int | slice) -> Module | ModuleList:
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_abs_index(idx, len(self), "ModuleList"))]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, str(_abs_index(idx, len(self), "ModuleList")), module)

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            del mods[idx]
        else:
            del mods[_abs_index(idx, len(mods), "ModuleList")]
        _reset_modules(self, [(str(i), m) for i, m in enumerate(mods)])

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; returns self.

        Example:
            >>> from chainrule import nn
            >>> len(nn.ModuleList().append(nn.ReLU()))
            1
        """
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules``; returns self.

        Example:
            >>> from chainrule import nn
            >>> len(nn.ModuleList().extend([nn.ReLU(), nn.Tanh()]))
            2
        """
        if not isinstance(modules, Iterable):
            raise TypeError(f"ModuleList.extend should be called with an iterable of modules, "
                            f"but got {type(modules).__name__}")
        for m in list(modules):
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before position ``index``.

        Example:
            >>> from chainrule import nn
            >>> ml = nn.ModuleList([nn.ReLU()]); ml.insert(0, nn.Tanh()); ml[0]
            Tanh()
        """
        mods = list(self._modules.values())
        mods.insert(index, module)
        _reset_modules(self, [(str(i), m) for i, m in enumerate(mods)])

    def pop(self, key: int | slice) -> Module | ModuleList:
        """Remove and return the module(s) at ``key``.

        Example:
            >>> from chainrule import nn
            >>> nn.ModuleList([nn.ReLU(), nn.Tanh()]).pop(-1)
            Tanh()
        """
        v = self[key]
        del self[key]
        return v

    def __repr__(self) -> str:
        reprs = [repr(m) for m in self]
        if not reprs:
            return self._get_name() + "()"
        # runs of identical consecutive modules are shown once, as "(i-j): n x Module(...)"
        blocks = []  # [start, end, repr]
        for i, r in enumerate(reprs):
            if blocks and blocks[-1][2] == r:
                blocks[-1][1] = i
            else:
                blocks.append([i, i, r])
        lines = []
        for start, end, r in blocks:
            line = f"({start}): {r}" if start == end else \
                f"({start}-{end}): {end - start + 1} x {r}"
            lines.append(_addindent(line, 2))
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"


class ModuleDict(Module):
    """An ordered dict of named submodules (registered under their keys).

    Example:
        >>> from chainrule import nn
        >>> heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "reg": nn.Linear(4, 1)})
        >>> list(heads), heads["reg"]
        (['cls', 'reg'], Linear(in_features=4, out_features=1, bias=True))
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]
        self.__dict__.pop(key, None)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def clear(self) -> None:
        """Remove every entry.

        Example:
            >>> from chainrule import nn
            >>> d = nn.ModuleDict({"a": nn.ReLU()}); d.clear(); len(d)
            0
        """
        _reset_modules(self, [])

    def pop(self, key: str) -> Module:
        """Remove and return the module under ``key``.

        Example:
            >>> from chainrule import nn
            >>> d = nn.ModuleDict({"a": nn.ReLU()}); d.pop("a"), len(d)
            (ReLU(), 0)
        """
        v = self[key]
        del self[key]
        return v

    def keys(self):
        """The keys, in insertion order.

        Example:
            >>> from chainrule import nn
            >>> list(nn.ModuleDict({"b": nn.ReLU(), "a": nn.Tanh()}).keys())
            ['b', 'a']
        """
        return self._modules.keys()

    def items(self):
        """(key, module) pairs, in insertion order.

        Example:
            >>> from chainrule import nn
            >>> list(nn.ModuleDict({"act": nn.ReLU()}).items())
            [('act', ReLU())]
        """
        return self._modules.items()

    def values(self):
        """The modules, in insertion order.

        Example:
            >>> from chainrule import nn
            >>> list(nn.ModuleDict({"act": nn.ReLU()}).values())
            [ReLU()]
        """
        return self._modules.values()

    def update(self, modules: Mapping[str, Module] | Iterable) -> None:
        """Add entries from a mapping or an iterable of (key, module) pairs.

        Example:
            >>> from chainrule import nn
            >>> d = nn.ModuleDict(); d.update([("a", nn.ReLU())]); list(d)
            ['a']
        """
        if isinstance(modules, (Mapping, ModuleDict)):
            for k, m in modules.items():
                self[k] = m
            return
        if not isinstance(modules, Iterable):
            raise TypeError(f"ModuleDict.update should be called with a mapping or an iterable "
                            f"of key/value pairs, but got {type(modules).__name__}")
        for j, pair in enumerate(modules):
            if not isinstance(pair, Iterable) or isinstance(pair, (str, Module)):
                raise TypeError(f"ModuleDict.update: element #{j} should be a (key, module) "
                                f"pair, got {type(pair).__name__}")
            pair = tuple(pair)
            if len(pair) != 2:
                raise ValueError(f"ModuleDict.update: element #{j} has length {len(pair)}; 2 "
                                 "is required")
            self[pair[0]] = pair[1]


def _as_parameter(value) -> Parameter:
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value.detach(), requires_grad=value.is_floating_point())
    raise TypeError(f"expected a Parameter or Tensor, got {type(value).__name__}")


def _param_line(key, p: Tensor) -> str:
    size = "x".join(str(s) for s in p.shape)
    dev = "" if p.device.type == "cpu" else f" ({p.device})"
    kind = "Parameter" if isinstance(p, Parameter) else "Tensor"
    return f"  ({key}): {kind} containing: [{p.dtype!r} of size {size}{dev}]"


class ParameterList(Module):
    """A list of parameters (tensors are wrapped as Parameters), registered under "0", "1"...

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> ps = nn.ParameterList([chainrule.ones(2, 3), chainrule.zeros(3)])
        >>> len(list(ps.parameters())), ps[0].requires_grad
        (2, True)
        >>> ps
        ParameterList(
            (0): Parameter containing: [chainrule.float32 of size 2x3]
            (1): Parameter containing: [chainrule.float32 of size 3]
        )
    """

    def __init__(self, values: Iterable[Tensor] | None = None):
        super().__init__()
        if values is not None:
            self.extend(values)

    def __getitem__(self, idx: int | slice) -> Parameter | ParameterList:
        if isinstance(idx, slice):
            return type(self)(list(self._parameters.values())[idx])
        return self._parameters[str(_abs_index(idx, len(self), "ParameterList"))]

    def __setitem__(self, idx: int, param: Tensor) -> None:
        self.register_parameter(str(_abs_index(idx, len(self), "ParameterList")),
                                _as_parameter(param))

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._parameters.values())

    def __iadd__(self, values: Iterable[Tensor]) -> ParameterList:
        return self.extend(values)

    def append(self, value: Tensor) -> ParameterList:
        """Add a parameter at the end; returns self.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> len(nn.ParameterList().append(chainrule.ones(1)))
            1
        """
        self.register_parameter(str(len(self)), _as_parameter(value))
        return self

    def extend(self, values: Iterable[Tensor]) -> ParameterList:
        """Append every tensor of ``values``; returns self.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> len(nn.ParameterList().extend([chainrule.ones(1), chainrule.ones(2)]))
            2
        """
        if not isinstance(values, Iterable) or isinstance(values, Tensor):
            raise TypeError(f"ParameterList.extend should be called with an iterable of "
                            f"tensors, but got {type(values).__name__}")
        for v in list(values):
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return "\n".join(_param_line(i, p) for i, p in enumerate(self))


class ParameterDict(Module):
    """An ordered dict of named parameters (tensors are wrapped as Parameters).

    Example:
        >>> import chainrule
        >>> from chainrule import nn
        >>> pd = nn.ParameterDict({"scale": chainrule.ones(2)})
        >>> [n for n, _ in pd.named_parameters()], "scale" in pd
        (['scale'], True)
    """

    def __init__(self, parameters: Mapping[str, Tensor] | Iterable | None = None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str) -> Parameter:
        return self._parameters[key]

    def __setitem__(self, key: str, value: Tensor) -> None:
        self.register_parameter(key, _as_parameter(value))

    def __delitem__(self, key: str) -> None:
        del self._parameters[key]
        self.__dict__.pop(key, None)

    def __len__(self) -> int:
        return len(self._parameters)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __contains__(self, key: str) -> bool:
        return key in self._parameters

    def keys(self):
        """The keys, in insertion order.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> list(nn.ParameterDict({"w": chainrule.ones(1)}).keys())
            ['w']
        """
        return self._parameters.keys()

    def items(self):
        """(key, parameter) pairs, in insertion order.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> [(k, p.shape) for k, p in nn.ParameterDict({"w": chainrule.ones(2)}).items()]
            [('w', (2,))]
        """
        return self._parameters.items()

    def values(self):
        """The parameters, in insertion order.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> [p.shape for p in nn.ParameterDict({"w": chainrule.ones(2)}).values()]
            [(2,)]
        """
        return self._parameters.values()

    def get(self, key: str, default=None):
        """The parameter under ``key``, or ``default``.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> nn.ParameterDict({"w": chainrule.ones(1)}).get("b", "absent")
            'absent'
        """
        return self._parameters.get(key, default)

    def pop(self, key: str) -> Parameter:
        """Remove and return the parameter under ``key``.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> pd = nn.ParameterDict({"a": chainrule.ones(1)}); _ = pd.pop("a"); len(pd)
            0
        """
        v = self[key]
        del self[key]
        return v

    def clear(self) -> None:
        """Remove every entry.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> pd = nn.ParameterDict({"w": chainrule.ones(1)}); pd.clear(); len(pd)
            0
        """
        for k in list(self._parameters):
            del self[k]

    def update(self, parameters: Mapping[str, Tensor] | Iterable) -> None:
        """Add entries from a mapping or an iterable of (key, tensor) pairs.

        Example:
            >>> import chainrule
            >>> from chainrule import nn
            >>> pd = nn.ParameterDict(); pd.update([("w", chainrule.ones(1))]); list(pd)
            ['w']
        """
        if isinstance(parameters, (Mapping, ParameterDict)):
            for k, v in parameters.items():
                self[k] = v
            return
        if not isinstance(parameters, Iterable):
            raise TypeError(f"ParameterDict.update should be called with a mapping or an "
                            f"iterable of key/value pairs, but got {type(parameters).__name__}")
        for j, pair in enumerate(parameters):
            pair = tuple(pair)
            if len(pair) != 2:
                raise ValueError(f"ParameterDict.update: element #{j} has length {len(pair)}; "
                                 "2 is required")
            self[pair[0]] = pair[1]

    def extra_repr(self) -> str:
        return "\n".join(_param_line(k, p) for k, p in self.items())
