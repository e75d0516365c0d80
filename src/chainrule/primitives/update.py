"""Optimiser updates as primitives, so that a trace of a training step sees them.

Each writes the new values into some of its inputs in place (declared by ``inplace=``: the
parameter and the optimiser's state buffers) and returns the parameter. The hyperparameters
are inputs (Python numbers), not params, because they may change from step to step (a
learning-rate schedule, Adam's step count); only the structure of the rule (nesterov,
maximize, amsgrad ...) is a param. The arithmetic is the optimisers' own, operation for
operation, so results are bit-identical to writing the arrays directly, with one exception:
SGD's last step, ``p -= lr * g``, is :func:`descend`, one BLAS ``?axpy`` pass computing
``p + (-lr) * g``, rounded once where the BLAS fuses the multiply-add (NumPy's OpenBLAS on
x86-64 with FMA), and its momentum buffer one ``?axpby`` pass (bitwise NumPy's two), where
:mod:`chainrule.backend.blas` takes them. Not differentiable (optimisers run under
``no_grad``), and not batched by vmap.

Example:
    >>> import numpy as np
    >>> from chainrule.primitives import REGISTRY
    >>> p, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    >>> REGISTRY["sgd_update"].impl(np, p, g, None, 0.1, 0.0, 0.0, 0.0, nesterov=False,
    ...                             maximize=False, first=False)
    array([0.95, 2.05])
    >>> p  # written in place
    array([0.95, 2.05])
"""

from __future__ import annotations

from ..backend import blas
from .core import Primitive
from .shapes import like_input


def regularised(xp, p, g, maximize, weight_decay, out=None):
    """The gradient a rule sees: ``-g`` when maximising, plus ``weight_decay * p`` (in ``out``
    or a fresh array when either applies; ``g`` itself, never written to, otherwise)."""
    if not maximize and weight_decay == 0:
        return g
    if out is None:
        out = xp.empty_like(g)  # a fresh array (a 0-d one stays an array)
    if weight_decay == 0:
        return xp.negative(g, out=out)
    xp.multiply(p, weight_decay, out=out)
    if maximize:
        out -= g
    else:
        out += g
    return out


def _lerp_into(xp, a, g, w, tmp):
    """a = lerp(a, g, w) in place, in PyTorch's two-sided form."""
    xp.subtract(g, a, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1 - w
        xp.subtract(g, tmp, out=a)


def _add_ratio(xp, p, x, scale, denom):
    """p += (x * scale) / denom, in that order (the optimisers' final step)."""
    num = xp.multiply(x, scale, out=xp.empty_like(p))
    num /= denom
    p += num
    return p


def descend(xp, p, g, lr):
    """``p -= lr * g`` in place: one BLAS ``?axpy`` pass, ``p + (-lr) * g``, where
    :func:`chainrule.backend.blas.axpy` takes it (contiguous float32/float64 NumPy arrays, a
    Python number ``lr``; rounded once where that BLAS fuses the multiply-add), else NumPy's
    two passes ``p - (g * lr)``. Returns ``p``.

    Example:
        >>> import numpy as np
        >>> descend(np, np.ones(2), np.array([1.0, -1.0]), 0.25)
        array([0.75, 1.25])
    """
    if not (type(lr) in (int, float) and blas.axpy(-lr, g, p)):
        p -= xp.multiply(g, lr, out=xp.empty_like(p))
    return p


def _sgd(xp, p, g, buf, lr, momentum, dampening, weight_decay, *, nesterov, maximize, first):
    g = regularised(xp, p, g, maximize, weight_decay)
    if buf is not None:
        if first:  # the buffer starts as the first gradient
            xp.copyto(buf, g)
        elif dampening != 0 or not blas.axpby1(g, momentum, buf):
            # NumPy's two passes (where taken, axpby1 did them as one, bitwise the same)
            buf *= momentum
            if dampening == 0:
                buf += g
            else:
                buf += xp.multiply(g, 1 - dampening, out=xp.empty_like(p))
        if nesterov:
            tmp = xp.multiply(buf, momentum, out=xp.empty_like(p))
            g = xp.add(g, tmp, out=tmp)
        else:
            g = buf
    return descend(xp, p, g, lr)


sgd_update = Primitive(
    "sgd_update", _sgd, vjp=[None] * 8, differentiable=False, kind="update",
    inplace=(0, 2), shape=like_input)


def _adam(xp, p, g, m, v, vmax, lr, beta1, beta2, eps, weight_decay, step, *, decoupled,
          maximize):
    if weight_decay != 0 and decoupled:
        p *= 1 - lr * weight_decay
        g = regularised(xp, p, g, maximize, 0)
    else:
        g = regularised(xp, p, g, maximize, weight_decay)
    tmp = xp.empty_like(p)
    _lerp_into(xp, m, g, 1 - beta1, tmp)
    # v = b2 * v + (1 - b2) * g * g
    v *= beta2
    xp.multiply(g, 1 - beta2, out=tmp)
    tmp *= g
    v += tmp
    if vmax is not None:
        v = xp.maximum(vmax, v, out=vmax)
    step_size = lr / (1 - beta1**step)
    denom = xp.sqrt(v, out=tmp)
    denom /= (1 - beta2**step) ** 0.5
    denom += eps
    return _add_ratio(xp, p, m, -step_size, denom)


adam_update = Primitive(
    "adam_update", _adam, vjp=[None] * 12, differentiable=False, kind="update",
    inplace=(0, 2, 3, 4), shape=like_input)


def _adagrad(xp, p, g, s, lr, lr_decay, weight_decay, eps, step, *, maximize):
    g = regularised(xp, p, g, maximize, weight_decay)
    clr = lr / (1 + (step - 1) * lr_decay)
    tmp = xp.multiply(g, g, out=xp.empty_like(p))
    s += tmp
    std = xp.sqrt(s, out=tmp)
    std += eps
    return _add_ratio(xp, p, g, -clr, std)


adagrad_update = Primitive(
    "adagrad_update", _adagrad, vjp=[None] * 9, differentiable=False, kind="update",
    inplace=(0, 2), shape=like_input)


def _rmsprop(xp, p, g, v, avg, buf, lr, alpha, eps, weight_decay, momentum, *, maximize):
    g = regularised(xp, p, g, maximize, weight_decay)
    tmp = xp.empty_like(p)
    v *= alpha
    xp.multiply(g, 1 - alpha, out=tmp)
    tmp *= g
    v += tmp
    if avg is not None:  # centered
        _lerp_into(xp, avg, g, 1 - alpha, tmp)
        xp.multiply(avg, avg, out=tmp)
        xp.subtract(v, tmp, out=tmp)
        s = xp.sqrt(tmp, out=tmp)
    else:
        s = xp.sqrt(v, out=tmp)
    s += eps
    if buf is not None:
        buf *= momentum
        xp.divide(g, s, out=s)
        buf += s
        xp.multiply(buf, lr, out=s)
        p -= s
        return p
    return _add_ratio(xp, p, g, -lr, s)


rmsprop_update = Primitive(
    "rmsprop_update", _rmsprop, vjp=[None] * 11, differentiable=False, kind="update",
    inplace=(0, 2, 3, 4), shape=like_input)
