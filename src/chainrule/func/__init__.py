"""Function transforms (JAX's and ``torch.func``'s): grad, value_and_grad, vjp, jvp,
linearize, jacrev, jacfwd, hessian, hvp, vmap; custom_vjp; functional_call; pytrees.

Every transform takes and returns functions, works on pytrees of tensors and composes with
the others to any depth.

Example:
    >>> import chainrule
    >>> from chainrule import func
    >>> x = chainrule.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> func.vmap(func.grad(lambda r: (r ** 2).sum()))(x)
    tensor([[2., 4.],
            [6., 8.]])
"""

from .custom import custom_vjp
from .pytree import tree_flatten, tree_leaves, tree_map, tree_unflatten
from .stateless import functional_call
from .transforms import (
    grad,
    hessian,
    hvp,
    jacfwd,
    jacrev,
    jvp,
    linearize,
    value_and_grad,
    vjp,
    vmap,
)

__all__ = ["custom_vjp", "functional_call", "grad", "hessian", "hvp", "jacfwd", "jacrev",
           "jvp", "linearize", "tree_flatten", "tree_leaves", "tree_map", "tree_unflatten",
           "value_and_grad", "vjp", "vmap"]
