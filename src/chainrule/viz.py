"""The backward graph as Graphviz DOT text, rendered to SVG/PNG when Graphviz is installed.

Each op node shows its backward name and, per input, the shape and dtype and whether the node
saved that input for backward ("saved") or only its shape ("shape only"); leaves that require
grad are boxes with their shape; the output is a double octagon.

Example:
    >>> import chainrule
    >>> from chainrule.viz import to_dot
    >>> w = chainrule.ones(3, requires_grad=True)
    >>> dot = to_dot((w * 2).exp().sum())
    >>> dot.splitlines()[0], "ExpBackward" in dot, "saved output" in dot
    ('digraph backward {', True, True)
"""

from __future__ import annotations

import shutil
import subprocess

from .autograd.graph import Aval, Node
from .backend import from_numpy_dtype
from .tensor import Tensor


def _desc(a) -> str:
    if isinstance(a, tuple):  # the outputs of a multiple_results primitive
        return ", ".join(_desc(x) for x in a)
    if isinstance(a, Aval) or hasattr(a, "shape"):
        dt = a.dtype
        name = from_numpy_dtype(dt).name if not hasattr(dt, "is_floating_point") else dt.name
        return f"{tuple(a.shape)} {name}"
    return repr(a)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def to_dot(tensor: Tensor, name: str = "backward") -> str:
    """DOT text for the graph that ``tensor.backward()`` would traverse.

    Example:
        >>> import chainrule
        >>> from chainrule.viz import to_dot
        >>> "digraph" in to_dot(chainrule.ones(1, requires_grad=True) * 3)
        True
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"to_dot expects a Tensor, got {type(tensor).__name__}")
    lines = [f"digraph {name} {{", '  node [fontname="Helvetica", fontsize=10];']
    ids: dict = {}

    def nid(obj) -> str:
        if id(obj) not in ids:
            ids[id(obj)] = f"n{len(ids)}"
        return ids[id(obj)]

    out_label = f"output\\n{tuple(tensor.shape)} {tensor.dtype.name}"
    lines.append(f'  out [label="{out_label}", shape=doubleoctagon];')
    root = tensor._node if tensor._node is not None else tensor
    lines.append(f"  {nid(root)} -> out;")
    seen = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, Node):
            rows = [obj.prim.node_name]
            if hasattr(obj.prim, "index"):  # the output node of a multi-output primitive
                rows[0] += f" (output {obj.prim.index})"
            saved_in = obj.prim.save_in and not obj.freed
            for i, a in enumerate(obj.saved_in):
                tag = "saved" if saved_in and not isinstance(a, Aval) else "shape only"
                if not hasattr(a, "shape") and not isinstance(a, Aval):
                    tag = "constant"
                rows.append(f"in{i}: {_desc(a)} ({tag})")
            if obj.saved_out is not None:
                rows.append(f"saved output: {_desc(obj.saved_out)}")
            if obj.params:
                shown = {k: v for k, v in obj.params.items() if k not in ("index", "idx")}
                if shown:
                    text = str(shown)
                    rows.append(text if len(text) <= 80 else text[:77] + "...")
            label = "\\n".join(_esc(r) for r in rows)
            lines.append(f'  {nid(obj)} [label="{label}", shape=ellipse];')
            for i, e in enumerate(obj.edges):
                if e is None:
                    continue
                lines.append(f'  {nid(e)} -> {nid(obj)} [label="{i}"];')
                stack.append(e)
        else:  # a leaf tensor
            label = f"leaf\\n{tuple(obj.shape)} {obj.dtype.name}"
            lines.append(f'  {nid(obj)} [label="{label}", shape=box, style=filled, '
                         'fillcolor=lightblue];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(tensor: Tensor, path: str, fmt: str | None = None) -> str:
    """Write the graph to ``path`` (.dot always; .svg/.png through Graphviz's ``dot``).

    Returns the path written. Raises RuntimeError naming the missing program when an image is
    asked for and Graphviz is not installed.

    Example:
        >>> import chainrule, os, tempfile
        >>> from chainrule.viz import render
        >>> p = render(chainrule.ones(1, requires_grad=True) * 2,
        ...            os.path.join(tempfile.mkdtemp(), "g.dot"))
        >>> p.endswith(".dot")
        True
    """
    text = to_dot(tensor)
    fmt = fmt or path.rsplit(".", 1)[-1]
    if fmt == "dot":
        with open(path, "w") as f:
            f.write(text)
        return path
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render: unknown format {fmt!r} (use .dot, .svg, .png or .pdf)")
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(f"rendering to .{fmt} needs Graphviz's 'dot' program, which is not "
                           "installed (apt-get install graphviz); to_dot() gives the text")
    subprocess.run([exe, f"-T{fmt}", "-o", path], input=text.encode(), check=True)
    return path
