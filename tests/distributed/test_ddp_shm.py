"""DistributedDataParallel's buckets summed in an MPI shared-memory window (every rank on one
node, the default): the averaged gradients are exactly those of the ``Iallreduce`` path and of
the ranks' own gradients averaged by hand, eager and in a ``chainrule.jit`` replay (both
paths), on 2 and 3 ranks; a rank that never joins the sum ends the job with a timeout that
names it; destroy_process_group frees the shared-memory windows of every wrapped model (and
a rank that never calls it is a timeout naming it, not a hang)."""

import pytest

pytestmark = pytest.mark.mpi

SUMS = """
import os
import numpy as np
import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn, optim
from chainrule.nn import functional as F
from chainrule.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("mpi")
r, n = dist.get_rank(), dist.get_world_size()

def net():
    cr.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 48), nn.Tanh(), nn.Linear(48, 48), nn.ReLU(),
                         nn.Linear(48, 3))

def wrap(shm):
    os.environ["CHAINRULE_SHM_REDUCE"] = "1" if shm else "0"
    m = DDP(net(), bucket_cap_mb=0.004)             # several buckets
    del os.environ["CHAINRULE_SHM_REDUCE"]
    assert (m._reducer.shared is not None) == shm, shm
    assert len(m.bucket_sizes) > 1, m.bucket_sizes
    return m

def step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()

shm, mpi, jitted, jmpi, local = wrap(True), wrap(False), wrap(True), wrap(False), net()
opts = {k: optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        for k, m in (("shm", shm), ("mpi", mpi), ("jit", jitted), ("jmpi", jmpi),
                     ("local", local))}
jstep = cr.jit(lambda x, y: step(jitted, opts["jit"], x, y), fullgraph=True, backend="numpy")
# the Iallreduce path replayed too (DDP across nodes)
jmstep = cr.jit(lambda x, y: step(jmpi, opts["jmpi"], x, y), fullgraph=True, backend="numpy")
rng = np.random.default_rng(r)                      # each rank its own data
inv = 1.0 / n
for i in range(6):
    x = cr.tensor(rng.standard_normal((8, 10)).astype(np.float32))
    y = cr.tensor(rng.integers(0, 3, 8))
    # this rank's own gradients at the shared parameters, and every rank's
    with cr.no_grad():
        for p, q in zip(local.parameters(), shm.parameters()):
            p.copy_(q)
    local.zero_grad()
    F.cross_entropy(local(x), y).backward()
    own = [p.grad.numpy() for p in local.parameters()]
    every = [None] * n
    dist.all_gather_object(every, own)
    step(shm, opts["shm"], x, y)
    step(mpi, opts["mpi"], x, y)
    jstep(x, y)
    jmstep(x, y)
    held = [p.grad.numpy().copy() for p in shm.parameters()]
    # with 2 ranks (a power of two) backward writes the 3 linear weights' gradients, divided,
    # straight into the shared slots; with 3 the hooks copy them in; never in a replay nor
    # on the Iallreduce path
    assert shm.comm_stats["written_by_backward"] == (3 if n == 2 else 0), shm.comm_stats
    assert mpi.comm_stats["written_by_backward"] == 0, mpi.comm_stats
    for k, (ps, pm, pj, pjm) in enumerate(zip(shm.parameters(), mpi.parameters(),
                                              jitted.parameters(), jmpi.parameters())):
        # summed in rank order, each rank's gradient pre-divided by the world size (with 2
        # ranks backward wrote the weights' as (g / 2)^T x: the same bits)
        want = every[0][k] * inv
        for q in range(1, n):
            want = want + every[q][k] * inv
        name = f"step {i} parameter {k}"
        np.testing.assert_array_equal(ps.grad.numpy(), want, err_msg=name)
        np.testing.assert_array_equal(pj.grad.numpy(), want, err_msg="jit " + name)
        for other, what in ((pm, "mpi "), (pjm, "jit mpi ")):
            if n == 2:  # a + b either way round: MPI_SUM's bits
                np.testing.assert_array_equal(other.grad.numpy(), want, err_msg=what + name)
            else:  # MPI's own order of summation
                np.testing.assert_allclose(other.grad.numpy(), want, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(ps.detach().numpy(), pj.detach().numpy(), err_msg=name)
    if i:  # gradients held from the last step are left as they were (eager and replayed)
        for a, b in zip(last, last_copy):
            np.testing.assert_array_equal(a.numpy(), b, err_msg=f"held gradient, step {i}")
    last = [p.grad for m in (shm, mpi, jitted, jmpi) for p in m.parameters()]
    last_copy = [g.numpy().copy() for g in last]
for f in (jstep, jmstep):
    names = [op.name for op in f.graph_ir().ops]
    assert names.count("dist.all_reduce.start") == len(jitted.bucket_sizes), names
    assert names.count("dist.all_reduce.wait") == len(jitted.bucket_sizes), names
    # the start writes the gradients into the bucket itself: no recorded concatenate
    assert "np.concatenate" not in names, names
print(f"rank {r}: shared-memory sums exact", flush=True)
"""


@pytest.mark.parametrize("n", [2, 3])
def test_shared_memory_bucket_sums_equal_the_hand_average_eager_and_jit(mpirun, n):
    rc, out, _ = mpirun(SUMS, n=n, timeout=120)
    assert rc == 0, out
    for q in range(n):
        assert f"rank {q}: shared-memory sums exact" in out, out


STALL = """
import datetime, sys, time
import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn
from chainrule.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("mpi", timeout=datetime.timedelta(seconds=3))
r = dist.get_rank()
model = DDP(nn.Linear(4, 2))
assert model._reducer.shared is not None
print(f"rank {r} ready", flush=True)
if r == 1:
    time.sleep(600)        # never reaches backward, or destroy_process_group
if sys.argv[1] == "backward":
    model(cr.ones(2, 4)).sum().backward()
else:  # freeing the windows is collective: a rank that never comes is a timeout, not a hang
    dist.destroy_process_group()
print(f"rank {r} finished: should not happen", flush=True)
"""


@pytest.mark.parametrize("where,what", [("backward", "all_reduce (collective #"),
                                        ("destroy", "destroy_process_group (collective #")])
def test_shared_memory_sum_times_out_naming_the_silent_rank(mpirun, where, what):
    rc, out, seconds = mpirun(STALL, timeout=60, args=[where])
    assert rc != 0, out
    assert "should not happen" not in out, out
    assert what in out, out
    assert "timed out after 3 s on rank 0" in out, out
    assert "rank 1 never joined it and does not answer" in out, out
    assert seconds < 3 + 12, (seconds, out)


FREE = """
import numpy as np
import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn
from chainrule.nn.parallel import DistributedDataParallel as DDP

def shm_kb():  # this process's mappings of shared memory (MPICH's windows live in /dev/shm)
    kb = 0
    for line in open("/proc/self/maps"):
        f = line.split()
        if len(f) >= 6 and f[5].startswith("/dev/shm"):
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            kb += (hi - lo) // 1024
    return kb

seen = []
for round_ in range(3):                  # init, wrap several models, train, destroy: again
    dist.init_process_group("mpi")
    r = dist.get_rank()
    start = shm_kb()
    models = [DDP(nn.Linear(200, 300)) for _ in range(3)]
    assert all(m._reducer.shared is not None for m in models)
    for m in models:
        m(cr.ones(4, 200)).square().sum().backward()
    wrapped = shm_kb()
    dist.destroy_process_group()
    end = shm_kb()
    seen.append((start, wrapped, end))
    assert wrapped >= start + 3 * 2 * 2 * 300 * 201 * 4 // 1024, seen  # 3 windows mapped
    assert end < start, seen                 # all freed, the argument board's window too
    try:
        models[0](cr.ones(4, 200))
        raise AssertionError("a model wrapped before destroy_process_group still ran")
    except dist.DistributedError as e:
        assert "destroyed" in str(e), e
assert len({s for s in seen}) == 1, seen     # nothing left over from one round to the next
print(f"rank {r}: windows freed {seen}", flush=True)
"""


def test_destroy_process_group_frees_every_ddp_window(mpirun):
    rc, out, _ = mpirun(FREE, timeout=60)
    assert rc == 0, out
    for q in range(2):
        assert f"rank {q}: windows freed" in out, out
