"""Pytrees: nested tuples, lists, dicts (and namedtuples) with arbitrary leaves.

The transforms in :mod:`chainrule.func` accept and return pytrees of tensors: the structure
is flattened into a list of leaves plus a :class:`TreeDef`, the transform works on the flat
list, and the result is rebuilt with :func:`tree_unflatten`.

Conventions (JAX's, except for dict order):

* containers are ``tuple``, ``list``, ``dict`` (and ``OrderedDict``) and namedtuples; every
  other object, ``Tensor`` included, is a leaf;
* ``None`` is an empty container (it has no leaves), so optional outputs pass through;
* dicts keep their insertion order (as PyTorch's pytrees do); two dicts match when they have
  the same keys, whatever the order.

Example:
    >>> from chainrule.func.pytree import tree_flatten, tree_unflatten, tree_map
    >>> leaves, spec = tree_flatten({"a": 1, "b": (2, [3, None])})
    >>> leaves
    [1, 2, 3]
    >>> tree_unflatten(spec, [x * 10 for x in leaves])
    {'a': 10, 'b': (20, [30, None])}
    >>> tree_map(lambda x, y: x + y, (1, {"k": 2}), (10, {"k": 20}))
    (11, {'k': 22})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TreeDef", "tree_flatten", "tree_leaves", "tree_map", "tree_structure",
           "tree_unflatten"]


class TreeDef:
    """The structure of a pytree: a node kind, its metadata and its children's TreeDefs.

    ``kind`` is one of "leaf", "none", "tuple", "list", "dict", "namedtuple".

    Example:
        >>> from chainrule.func.pytree import tree_structure
        >>> tree_structure((1, [2, 3])).num_leaves
        3
    """

    __slots__ = ("children", "kind", "meta", "num_leaves")

    def __init__(self, kind: str, meta: Any, children: tuple):
        self.kind = kind
        self.meta = meta
        self.children = children
        self.num_leaves = 1 if kind == "leaf" else sum(c.num_leaves for c in children)

    def __eq__(self, other) -> bool:
        if not isinstance(other, TreeDef) or self.kind != other.kind:
            return False
        if self.kind == "dict":
            if set(self.meta) != set(other.meta):
                return False
            pos = {k: i for i, k in enumerate(other.meta)}
            return all(c == other.children[pos[k]] for k, c in zip(self.meta, self.children))
        return self.meta == other.meta and self.children == other.children

    def __hash__(self):
        return hash((self.kind, self.num_leaves))

    def __repr__(self):
        if self.kind == "leaf":
            return "*"
        if self.kind == "none":
            return "None"
        if self.kind == "dict":
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.meta, self.children)) + "}"
        inner = ", ".join(repr(c) for c in self.children)
        if self.kind == "list":
            return f"[{inner}]"
        if self.kind == "namedtuple":
            return f"{self.meta.__name__}({inner})"
        return f"({inner}{',' if len(self.children) == 1 else ''})"


_LEAF = TreeDef("leaf", None, ())
_NONE = TreeDef("none", None, ())


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _flatten(tree, leaves: list) -> TreeDef:
    if tree is None:
        return _NONE
    t = type(tree)
    if t is tuple:
        return TreeDef("tuple", len(tree), tuple(_flatten(c, leaves) for c in tree))
    if t is list:
        return TreeDef("list", len(tree), tuple(_flatten(c, leaves) for c in tree))
    if isinstance(tree, dict):
        keys = tuple(tree)
        return TreeDef("dict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    if _is_namedtuple(tree):
        return TreeDef("namedtuple", t, tuple(_flatten(c, leaves) for c in tree))
    leaves.append(tree)
    return _LEAF


def tree_flatten(tree: Any) -> tuple[list, TreeDef]:
    """Leaves of ``tree`` (depth first, left to right) and its structure.

    Example:
        >>> from chainrule.func.pytree import tree_flatten
        >>> tree_flatten([1, (2, 3)])[0]
        [1, 2, 3]
    """
    leaves: list = []
    spec = _flatten(tree, leaves)
    return leaves, spec


def tree_leaves(tree: Any) -> list:
    """The leaves of ``tree``, in flattening order.

    Example:
        >>> from chainrule.func.pytree import tree_leaves
        >>> tree_leaves({"w": 1, "b": [2, None]})
        [1, 2]
    """
    return tree_flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    """The :class:`TreeDef` of ``tree``.

    Example:
        >>> from chainrule.func.pytree import tree_structure
        >>> tree_structure((1, 2))
        (*, *)
    """
    return tree_flatten(tree)[1]


def _unflatten(spec: TreeDef, it):
    kind = spec.kind
    if kind == "leaf":
        return next(it)
    if kind == "none":
        return None
    children = [_unflatten(c, it) for c in spec.children]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(spec.meta, children))
    return spec.meta(*children)


def tree_unflatten(spec: TreeDef, leaves) -> Any:
    """Rebuild a pytree of structure ``spec`` from ``leaves``.

    Example:
        >>> from chainrule.func.pytree import tree_flatten, tree_unflatten
        >>> _, spec = tree_flatten({"a": (0, 0)})
        >>> tree_unflatten(spec, [5, 6])
        {'a': (5, 6)}
    """
    leaves = list(leaves)
    if len(leaves) != spec.num_leaves:
        raise ValueError(f"tree_unflatten: the structure {spec!r} has {spec.num_leaves} leaves, "
                         f"got {len(leaves)}")
    return _unflatten(spec, iter(leaves))


def flatten_up_to(spec: TreeDef, tree: Any, what: str = "tree") -> list:
    """Cut ``tree`` at the leaves of ``spec``: one subtree per leaf of ``spec`` (a leaf of
    ``spec`` may match a whole subtree of ``tree``). Raises ValueError naming both structures
    when ``tree`` does not have ``spec``'s structure at the top.

    Example:
        >>> from chainrule.func.pytree import flatten_up_to, tree_structure
        >>> flatten_up_to(tree_structure((0, 0)), ((1, 2), {"a": 3}))
        [(1, 2), {'a': 3}]
    """
    out: list = []
    _cut(spec, tree, out, what, tree)
    return out


def _cut(spec: TreeDef, tree, out: list, what: str, whole):
    kind = spec.kind
    if kind == "leaf":
        out.append(tree)
        return
    if kind == "none":
        if tree is not None:
            raise ValueError(f"{what}: expected None, got {type(tree).__name__} in {whole!r}")
        return
    if kind == "dict":
        if not isinstance(tree, dict) or set(tree) != set(spec.meta):
            raise ValueError(f"{what}: expected a dict with keys {list(spec.meta)}, got "
                             f"{_describe(tree)}")
        for k, c in zip(spec.meta, spec.children):
            _cut(c, tree[k], out, what, whole)
        return
    want = {"tuple": tuple, "list": list}.get(kind, spec.meta)
    ok = isinstance(tree, want) and (kind != "tuple" or not _is_namedtuple(tree)) \
        and len(tree) == len(spec.children)
    if not ok:
        raise ValueError(f"{what}: expected a {want.__name__} of length {len(spec.children)}, "
                         f"got {_describe(tree)}")
    for c, sub in zip(spec.children, tree):
        _cut(c, sub, out, what, whole)


def _describe(x) -> str:
    if isinstance(x, dict):
        return f"a dict with keys {list(x)}"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of length {len(x)}"
    return f"a {type(x).__name__}"


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` to every leaf of ``tree`` (and the matching leaves of ``rest``, which
    must have the same structure); returns a tree of ``tree``'s structure.

    Example:
        >>> from chainrule.func.pytree import tree_map
        >>> tree_map(lambda x: x * 2, {"a": [1, 2], "b": None})
        {'a': [2, 4], 'b': None}
    """
    leaves, spec = tree_flatten(tree)
    others = []
    for i, r in enumerate(rest):
        r_spec = tree_structure(r)
        if r_spec != spec:
            raise ValueError(f"tree_map: tree {i + 1} has structure {r_spec!r}, but the first "
                             f"has {spec!r}")
        others.append(flatten_up_to(spec, r, "tree_map"))
    return tree_unflatten(spec, [fn(*args) for args in zip(leaves, *others)])
