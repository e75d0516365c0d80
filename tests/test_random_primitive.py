"""Random numbers as a primitive (``rng_draw``): the generator's state goes in as a key and
comes back advanced. Its numbers are those of the generator's own NumPy stream, which eager
draws take directly (so every seed gives what it gave before the primitive existed); the key
round-trips exactly; draws from several threads do not mix; bad keys and methods are refused
by name."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.errors import ShapeError
from chainrule.func import vmap
from chainrule.func.batching import BatchingError
from chainrule.primitives import REGISTRY, Aval
from chainrule.primitives.random import key_of, state_of

CASES = [("random", (), (2, 3)), ("standard_normal", (), (4,)), ("uniform", (-1.0, 2.0), (5,)),
         ("normal", (0.5, 2.0), (2, 2)), ("exponential", (0.7,), (3,)),
         ("integers", (3, 9), (6,)), ("permutation", (7,), None)]


@pytest.mark.parametrize("method,args,size", CASES, ids=[c[0] for c in CASES])
def test_draw_gives_the_numpy_stream_and_advances_the_state_alike(method, args, size):
    g = cr.Generator().manual_seed(123)
    ref = np.random.Generator(np.random.PCG64(123))
    prim = REGISTRY["rng_draw"]
    for k in range(4):  # eager draws and primitive applications, taking turns
        if k % 2:
            vals, key = prim(g.key(), method=method, args=args, size=size)
            got = vals.numpy()
            g.set_key(key.numpy())
        else:
            got = g.draw(method, *args, size=size)
        fn = getattr(ref, method)
        want = fn(*args) if size is None else fn(*args, size=size)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
        assert g.get_state() == ref.bit_generator.state
    vals, key = prim(g.key(), method=method, args=args, size=size)
    shape_rule = REGISTRY["rng_draw"].abstract_eval(Aval((6,), np.dtype(np.int64)),
                                                    method=method, args=args, size=size)
    assert [tuple(a.shape) for a in shape_rule] == [tuple(vals.shape), (6,)]
    assert not vals.requires_grad and key.dtype == cr.int64


def test_seeded_figures_are_unchanged():
    """What a seed gave before rng_draw: NumPy's PCG64 stream, op after op."""
    cr.manual_seed(0)
    a, b = cr.rand(3), cr.randn(2, 2)
    c, d = cr.randint(0, 10, (4,)), cr.randperm(5)
    x = cr.ones(64)
    m = F.dropout(x, 0.3)
    ref = np.random.Generator(np.random.PCG64(0))
    np.testing.assert_array_equal(a.numpy(), ref.random((3,)).astype(np.float32))
    np.testing.assert_array_equal(b.numpy(), ref.standard_normal((2, 2)).astype(np.float32))
    np.testing.assert_array_equal(c.numpy(), ref.integers(0, 10, size=(4,)))
    np.testing.assert_array_equal(d.numpy(), ref.permutation(5))
    keep = ref.random((64,)) >= 0.3
    np.testing.assert_array_equal(m.numpy(), keep.astype(np.float32) * np.float32(1 / 0.7))


def test_key_round_trips_every_state_field():
    bg = np.random.PCG64(7)
    np.random.Generator(bg).integers(0, 10, size=3, dtype=np.int32)  # leaves a buffered word
    st = bg.state
    assert st["has_uint32"] == 1
    key = key_of(st)
    assert key.dtype == np.int64 and key.shape == (6,)
    assert state_of(key) == st
    g = cr.Generator()
    g.set_key(key)
    assert g.get_state() == st


def test_threads_draw_their_own_streams():
    seeds = [1, 2, 3, 4]
    out = {}

    prim = REGISTRY["rng_draw"]

    def work(s):  # the primitive's per-thread bit generator, set from each thread's keys
        key = cr.Generator().manual_seed(s).key()
        parts = []
        for _ in range(40):
            vals, k = prim(key, method="random", args=(), size=(50,))
            parts.append(vals.numpy())
            key = k.numpy()
        out[s] = np.concatenate(parts)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in seeds:
        np.testing.assert_array_equal(out[s], np.random.Generator(np.random.PCG64(s))
                                      .random(2000))


def test_bad_keys_and_methods_are_refused_by_name():
    prim = REGISTRY["rng_draw"]
    key = cr.Generator().manual_seed(0).key()
    with pytest.raises(ShapeError, match="rng_draw: unknown method 'gamma'"):
        prim.abstract_eval(key, method="gamma", args=(), size=(2,))
    with pytest.raises(ShapeError, match="6 int64 words"):
        prim.abstract_eval(np.zeros(4, dtype=np.int64), method="random", args=(), size=(2,))
    with pytest.raises(BatchingError, match="batch of generator keys"):
        vmap(lambda k: prim(k, method="random", args=(), size=(2,))[0])(
            cr.tensor(np.stack([key, key])))
