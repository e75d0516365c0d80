"""Backend "c": max pooling's forward ops over two threads, each running the impl's NumPy
folds (one vectorised pass per kernel offset) on half of the images.

NumPy releases the GIL inside its loops, so the two halves run at once; the impls themselves
(``primitives/conv.py``: ``max_pool``, ``max_pool_index``, ``window_scatter``) do the work,
and every image's result is the impl's, bitwise. Only where the kernels' OpenMP pool has two
or more threads and the call is big enough (``_SPLIT_BYTES`` in its first array); otherwise, and for
other array modules, the impl runs on the calling thread.
"""

from __future__ import annotations

import collections
import functools
from concurrent.futures import ThreadPoolExecutor

from ..backend import np

PRIMS = ("max_pool", "max_pool_index", "window_scatter")

# calls that were split over two threads, by primitive (tests read it)
TAKEN: collections.Counter = collections.Counter()

# bytes of the first array argument from which a call is split
_SPLIT_BYTES = 1 << 16

_DECL = "int chainrule_pool_threads(void);"
_C = """
#include <omp.h>
int chainrule_pool_threads(void) { return omp_get_max_threads(); }
"""


def source() -> tuple[str, str]:
    """(declarations, C source): only a function reading OpenMP's thread count.

    Example:
        >>> "chainrule_pool_threads" in source()[0]
        True
    """
    return _DECL, _C


@functools.cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="chainrule-pool")


def wrappers(lib, ffi) -> dict:
    """``{name: impl}`` for :data:`PRIMS`: the impl on two halves of the batch at once where
    OpenMP has two threads or more, else the impl.

    Example:
        >>> from chainrule.jit import kcache, render_c
        >>> mod, _ = kcache.load(*source())  # doctest: +SKIP
        >>> pool = wrappers(mod.lib, mod.ffi)["max_pool"]  # doctest: +SKIP
        >>> pool(np, np.arange(16.0).reshape(1, 1, 4, 4), kernel=(2, 2), stride=(2, 2),
        ...      padding=((0, 0), (0, 0)), dilation=(1, 1))[0, 0]  # doctest: +SKIP
        array([[ 5.,  7.],
               [13., 15.]])
    """
    from ..primitives import REGISTRY  # noqa: PLC0415 - the impls as registered

    threads = lib.chainrule_pool_threads()

    def make(name, batched):
        impl = REGISTRY[name].impl

        def split(xp, *args, **params):
            x = args[0]
            if (threads < 2 or xp is not np or type(x) is not np.ndarray
                    or x.nbytes < _SPLIT_BYTES or x.shape[0] < 2):
                return impl(xp, *args, **params)
            h = x.shape[0] // 2
            first = _executor().submit(impl, xp, *(a[:h] for a in args[:batched]),
                                       *args[batched:], **params)
            rest = impl(xp, *(a[h:] for a in args[:batched]), *args[batched:], **params)
            head = first.result()
            TAKEN[name] += 1
            return np.concatenate((head, rest))

        return split

    return {"max_pool": make("max_pool", 1), "max_pool_index": make("max_pool_index", 2),
            "window_scatter": make("window_scatter", 2)}
