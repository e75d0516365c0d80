"""Collectives over 2 MPI ranks against NumPy: each op, dtype, odd and empty sizes; async
work handles; send/recv; bad input (before init, wrong backend, mismatched shapes)."""

import pytest

import chainrule as cr
import chainrule.distributed as dist

pytestmark = pytest.mark.mpi

COLLECTIVES = """
import numpy as np
import chainrule as cr
import chainrule.distributed as dist

dist.init_process_group("mpi")
r, n = dist.get_rank(), dist.get_world_size()
assert n == 2 and dist.is_initialized() and dist.get_backend() == "mpi"
RED = {"SUM": lambda a: a.sum(0), "PRODUCT": lambda a: a.prod(0), "MIN": lambda a: a.min(0),
       "MAX": lambda a: a.max(0), "AVG": lambda a: a.mean(0),
       "BAND": lambda a: np.bitwise_and.reduce(a, 0), "BOR": lambda a: np.bitwise_or.reduce(a, 0),
       "BXOR": lambda a: np.bitwise_xor.reduce(a, 0)}
BOOL = {"SUM": lambda a: a.any(0), "MAX": lambda a: a.any(0), "MIN": lambda a: a.all(0),
        "PRODUCT": lambda a: a.all(0), "BAND": lambda a: a.all(0), "BOR": lambda a: a.any(0),
        "BXOR": lambda a: np.logical_xor.reduce(a, 0)}

def data(rank, dtype, shape):
    g = np.random.default_rng([rank, len(shape), int(np.prod(shape))])
    if dtype == "bool":
        return g.random(shape) < 0.5
    if np.dtype(dtype).kind in "iu":
        return g.integers(1, 5, shape).astype(dtype)
    return (g.random(shape) + 0.5).astype(dtype)

checked = 0
for dtype in ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]:
    kind = np.dtype(dtype).kind
    for shape in [(0,), (1,), (7,), (3, 5), (2, 0, 3)]:
        every = np.stack([data(k, dtype, shape) for k in range(n)])
        mine = every[r]
        for name in RED:
            if (name == "AVG") != (kind == "f") and name == "AVG":
                continue
            if name in ("BAND", "BOR", "BXOR") and kind == "f":
                continue
            t = cr.tensor(mine.copy())
            dist.all_reduce(t, op=getattr(dist.ReduceOp, name))
            want = (BOOL if kind == "b" else RED)[name](every).astype(dtype)
            tol = 1e-3 if dtype == "float16" else 1e-6
            np.testing.assert_allclose(t.numpy(), want, rtol=tol, err_msg=f"{name} {dtype} {shape}")
            assert t.dtype.name == dtype and t.shape == shape
            checked += 1
        # broadcast from each source
        for src in range(n):
            t = cr.tensor(mine.copy())
            dist.broadcast(t, src=src)
            np.testing.assert_array_equal(t.numpy(), every[src])
        # all_gather (list) and all_gather_into_tensor
        outs = [cr.tensor(np.zeros(shape, dtype)) for _ in range(n)]
        dist.all_gather(outs, cr.tensor(mine))
        for k in range(n):
            np.testing.assert_array_equal(outs[k].numpy(), every[k])
        big = cr.tensor(np.zeros((n * shape[0], *shape[1:]), dtype))
        dist.all_gather_into_tensor(big, cr.tensor(mine))
        np.testing.assert_array_equal(big.numpy(), every.reshape(big.shape))
        # reduce_scatter: input is world_size blocks of `shape`
        if kind != "b":
            blocks = np.stack([data(10 + k, dtype, (n, *shape)) for k in range(n)])
            out = cr.tensor(np.zeros(shape, dtype))
            dist.reduce_scatter(out, [cr.tensor(b) for b in blocks[r]])
            np.testing.assert_allclose(out.numpy(), blocks.sum(0)[r].astype(dtype),
                                       rtol=1e-3 if dtype == "float16" else 1e-6)
            out2 = cr.tensor(np.zeros(shape, dtype))
            flat = blocks[r].reshape(n * shape[0], *shape[1:]) if shape[0] else blocks[r][0]
            if shape[0]:
                dist.reduce_scatter_tensor(out2, cr.tensor(flat))
                np.testing.assert_allclose(out2.numpy(), out.numpy())

# AVG through reduce_scatter, MAX on a non-contiguous view written back in place
x = cr.tensor(np.arange(12.0).reshape(3, 4) * (r + 1))
v = x.t()
dist.all_reduce(v, op=dist.ReduceOp.MAX)
np.testing.assert_array_equal(x.numpy(), np.arange(12.0).reshape(3, 4) * n)
out = cr.zeros(3)
dist.reduce_scatter_tensor(out, cr.arange(6).float() + r, op=dist.ReduceOp.AVG)
np.testing.assert_allclose(out.numpy(), np.arange(6.0)[3 * r:3 * r + 3] + 0.5)

# async: several in flight, waited out of order
ts = [cr.full((5,), float(r + k)) for k in range(4)]
works = [dist.all_reduce(t, async_op=True) for t in ts]
for w in reversed(works):
    assert w.wait() is True and w.is_completed()
for k, t in enumerate(ts):
    np.testing.assert_array_equal(t.numpy(), np.full(5, float(2 * k + 1)))
w = dist.barrier(async_op=True)
w.wait()

# send / recv (and isend / irecv), odd sizes and empty
for size in (0, 1, 7):
    if r == 0:
        dist.send(cr.arange(size).float() + 1, dst=1, tag=size)
        back = cr.zeros(size)
        assert dist.recv(back, src=1) == 1
        np.testing.assert_array_equal(back.numpy(), -(np.arange(size) + 1.0))
    else:
        t = cr.zeros(size)
        assert dist.recv(t, tag=size) == 0
        dist.isend(-t, dst=0).wait()
        np.testing.assert_array_equal(t.numpy(), np.arange(size) + 1.0)

# bfloat16 (no MPI type): moved as bytes by broadcast and all_gather
bf = cr.tensor([1.5, -2.0, 3.25]).to(cr.bfloat16) * (r + 1)
dist.broadcast(bf, src=1)
assert bf.dtype == cr.bfloat16 and bf.float().tolist() == [3.0, -4.0, 6.5], bf
outs = [cr.zeros(3, dtype=cr.bfloat16) for _ in range(n)]
dist.all_gather(outs, cr.full((3,), float(r + 1)).to(cr.bfloat16))
assert [o.float().tolist() for o in outs] == [[1.0] * 3, [2.0] * 3]

objs = [None, None]
dist.all_gather_object(objs, {"rank": r})
assert objs == [{"rank": 0}, {"rank": 1}]
lst = [r, "x"] if r == 0 else [None]
dist.broadcast_object_list(lst, src=0)
assert lst == [0, "x"]
dist.barrier()
print(f"rank {r}: {checked} all_reduce checks passed", flush=True)
dist.destroy_process_group()
assert not dist.is_initialized()
"""


def test_collectives_against_numpy(mpirun):
    rc, out, _ = mpirun(COLLECTIVES)
    assert rc == 0, out
    assert "rank 0: " in out and "rank 1: " in out


BAD = """
import numpy as np
import chainrule as cr
import chainrule.distributed as dist

dist.init_process_group("mpi")
r = dist.get_rank()

def expect(exc, pattern, fn):
    try:
        fn()
    except exc as e:
        assert pattern in str(e), str(e)
        print(f"rank {r} ok: {e}", flush=True)
        return
    raise AssertionError(f"no {exc.__name__} for {pattern!r}")

# shapes differ across ranks: an error on both ranks, naming both shapes
expect(dist.DistributedError, "rank 0: all_reduce on shape (3,) float32, op=SUM; rank 1: "
       "all_reduce on shape (4,) float32, op=SUM", lambda: dist.all_reduce(cr.ones(3 + r)))
# the same with large tensors: the check must end before the data call starts (MPICH
# crashed when both started together and the mismatched data call was abandoned)
expect(dist.DistributedError, "rank 1: all_reduce on shape (300007,) float32",
       lambda: dist.all_reduce(cr.ones(300_000 + 7 * r)))
expect(dist.DistributedError, "rank 0: all_reduce on shape (300000,) float32, op=SUM; "
       "rank 1: broadcast on shape (300000,) float32, src=1",
       lambda: dist.all_reduce(cr.ones(300_000)) if r == 0 else
       dist.broadcast(cr.ones(300_000), src=1))
# dtypes differ
expect(dist.DistributedError, "different arguments",
       lambda: dist.broadcast(cr.ones(3, dtype=cr.float32 if r else cr.float64), src=0))
# different collectives
expect(dist.DistributedError, "rank 0: all_reduce",
       lambda: dist.all_reduce(cr.ones(2)) if r == 0 else dist.broadcast(cr.ones(2), src=0))
# different ops
expect(dist.DistributedError, "op=SUM; rank 1: all_reduce on shape (2,) float32, op=MAX",
       lambda: dist.all_reduce(cr.ones(2), op=dist.ReduceOp.MAX if r else dist.ReduceOp.SUM))
# recv into a tensor of the wrong size
if r == 0:
    dist.send(cr.ones(5), dst=1)
else:
    expect(dist.DistributedError, "same shape and dtype", lambda: dist.recv(cr.zeros(3), src=0))
dist.barrier()
# local checks
expect(TypeError, "AVG needs a floating-point",
       lambda: dist.all_reduce(cr.ones(2, dtype=cr.int64), op=dist.ReduceOp.AVG))
expect(TypeError, "integer or bool", lambda: dist.all_reduce(cr.ones(2), op=dist.ReduceOp.BAND))
expect(TypeError, "cannot reduce bfloat16 tensors",
       lambda: dist.all_reduce(cr.ones(2, dtype=cr.bfloat16)))
expect(TypeError, "cannot reduce bfloat16 tensors",
       lambda: dist.reduce_scatter_tensor(cr.ones(1, dtype=cr.bfloat16),
                                          cr.ones(2, dtype=cr.bfloat16)))
expect(ValueError, "unknown op", lambda: dist.all_reduce(cr.ones(2), op="median"))
expect(ValueError, "not a rank", lambda: dist.broadcast(cr.ones(2), src=2))
expect(ValueError, "list of world_size (2)", lambda: dist.all_gather([cr.ones(2)], cr.ones(2)))
expect(ValueError, "tensor_list[1] has shape (3,)",
       lambda: dist.all_gather([cr.ones(2), cr.ones(3)], cr.ones(2)))
expect(ValueError, "must hold world_size (2) times",
       lambda: dist.all_gather_into_tensor(cr.ones(3), cr.ones(2)))
expect(TypeError, "must be a chainrule Tensor", lambda: dist.all_reduce(np.ones(2)))
expect(ValueError, "is this rank", lambda: dist.send(cr.ones(2), dst=r))
expect(dist.DistributedError, "already initialized", lambda: dist.init_process_group("mpi"))
expect(ValueError, "only the default process group",
       lambda: dist.all_reduce(cr.ones(2), group=object()))
# the group still works after all of that
t = cr.ones(2)
dist.all_reduce(t)
assert t.tolist() == [2.0, 2.0]
dist.destroy_process_group()
expect(dist.DistributedError, "not initialized", lambda: dist.all_reduce(cr.ones(2)))
print(f"rank {r} done", flush=True)
"""


@pytest.mark.parametrize("board", ["1", "0"])
def test_bad_input_gives_clear_errors_on_every_rank(mpirun, monkeypatch, board):
    # argument checks through the shared-memory board (ranks on one node) and by message
    monkeypatch.setenv("CHAINRULE_SHM_CHECK", board)
    on = '(current("test").board is not None)'
    rc, out, _ = mpirun(BAD.replace("r = dist.get_rank()\n", "r = dist.get_rank()\n"
                                    "from chainrule.distributed.group import current\n"
                                    f"assert {on} == {board == '1'}, {on}\n", 1))
    assert rc == 0, out
    assert "rank 0 done" in out and "rank 1 done" in out


def test_before_init_and_wrong_backend():
    # no MPI needed: these fail before any communication
    assert not dist.is_initialized()
    with pytest.raises(dist.DistributedError, match=r"not initialized.*init_process_group"):
        dist.all_reduce(cr.ones(2))
    with pytest.raises(dist.DistributedError, match="not initialized"):
        dist.get_world_size()
    with pytest.raises(dist.DistributedError, match="not initialized"):
        dist.barrier()
    with pytest.raises(ValueError, match=r"unknown backend 'nccl'.*GPU backend"):
        dist.init_process_group("nccl")
    with pytest.raises(ValueError, match="unknown backend"):
        dist.init_process_group("MPIX")
    with pytest.raises(TypeError, match="timedelta"):
        dist.init_process_group("mpi", timeout=5)
    assert not dist.is_initialized()
