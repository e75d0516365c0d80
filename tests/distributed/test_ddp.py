"""DistributedDataParallel on 2 MPI ranks: equivalence with one process on the concatenated
batch (20 steps, float32), identical parameters on every rank after every step, buckets that
start during backward, no_sync, unused parameters, state_dict keys, mismatched models."""

import pytest

pytestmark = pytest.mark.mpi

COMMON = """
import hashlib
import numpy as np
import chainrule as cr
import chainrule.distributed as dist
from chainrule import nn, optim
from chainrule.nn import functional as F
from chainrule.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("mpi")
r, n = dist.get_rank(), dist.get_world_size()

def net(seed):
    cr.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 3))

def checksum(model):
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().numpy().tobytes())
    return h.hexdigest()

def same_everywhere(model):
    sums = [None] * n
    dist.all_gather_object(sums, checksum(model))
    assert len(set(sums)) == 1, sums
"""

EQUIV = COMMON + """
ref = net(0)                  # one process, the whole batch
ddp = DDP(net(r), bucket_cap_mb=0.002)   # rank 1 starts different: the wrap broadcasts rank 0's
assert len(ddp.bucket_sizes) > 1, ddp.bucket_sizes
same_everywhere(ddp)
opt = optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
ref_opt = optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
rng = np.random.default_rng(42)
worst = 0.0
for step in range(20):
    X = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    mine = slice(8 * r, 8 * r + 8)
    loss = F.cross_entropy(ddp(cr.tensor(X[mine])), cr.tensor(y[mine]))
    opt.zero_grad()
    loss.backward()
    assert ddp.comm_stats["buckets_before_last"] >= 1, ddp.comm_stats
    if step:  # a gradient held from the last step (a view of its bucket) is left as it was
        np.testing.assert_array_equal(held.numpy(), held_copy)
    held = ddp.module[0].weight.grad
    held_copy = held.numpy().copy()
    opt.step()
    ref_loss = F.cross_entropy(ref(cr.tensor(X)), cr.tensor(y))
    ref_opt.zero_grad()
    ref_loss.backward()
    ref_opt.step()
    same_everywhere(ddp)
    for (name, p), q in zip(ddp.module.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=f"step {step} {name}")
        worst = max(worst, float(np.abs(p.detach().numpy() - q.detach().numpy()).max()))
assert list(ddp.state_dict())[:2] == ["module.0.weight", "module.0.bias"]
assert ddp.module is not None and isinstance(ddp.module, nn.Sequential)
print(f"rank {r}: 20 steps equal, max |diff| {worst:.2e}", flush=True)
"""


def _passes(mpirun, script, marker, args=()):
    rc, out, _ = mpirun(script, args=args)
    assert rc == 0, out
    assert f"rank 0{marker}" in out and f"rank 1{marker}" in out, out


def test_ddp_equals_one_process_on_the_concatenated_batch(mpirun):
    _passes(mpirun, EQUIV, ": 20 steps equal")


FEATURES = COMMON + """
# no_sync: two micro-batches accumulate locally, the second backward averages both
ref = net(0)
ddp = DDP(net(0))
rng = np.random.default_rng(1)
X = rng.standard_normal((2, 8, 10)).astype(np.float32)
for k in range(2):
    ctx = ddp.no_sync() if k == 0 else __import__("contextlib").nullcontext()
    with ctx:
        ddp(cr.tensor(X[k, 4 * r:4 * r + 4])).square().mean().backward()
    if k == 0:  # nothing communicated yet: the gradient is this rank's own
        g = [None] * n
        dist.all_gather_object(g, ddp.module[0].weight.grad.numpy())
        assert not np.allclose(g[0], g[1])
    ref(cr.tensor(X[k])).square().mean().backward()
for p, q in zip(ddp.module.parameters(), ref.parameters()):
    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6)

# a parameter that takes no part in the loss
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 2)
    def forward(self, x):
        return self.used(x)

cr.manual_seed(0)
d = DDP(Branchy())
d(cr.ones(2, 4)).sum().backward()
try:
    d(cr.ones(2, 4))
except dist.DistributedError as e:
    assert "unused.weight" in str(e) and "find_unused_parameters=True" in str(e), str(e)
else:
    raise AssertionError("no error for a parameter without gradient")
cr.manual_seed(0)
d = DDP(Branchy(), find_unused_parameters=True)
for _ in range(2):
    d.zero_grad()
    d(cr.ones(2, 4) * (r + 1)).sum().backward()
# rows of 1 (rank 0) and 2 (rank 1), summed over the batch of 2, averaged over the ranks
np.testing.assert_allclose(d.module.used.weight.grad.numpy(), np.full((2, 4), 3.0))
np.testing.assert_array_equal(d.module.unused.weight.grad.numpy(), np.zeros((2, 4)))

# the same parameter reduced twice without no_sync
d = DDP(nn.Linear(3, 1))
d(cr.ones(1, 3)).sum().backward()
try:
    d.module(cr.ones(1, 3)).sum().backward()
except dist.DistributedError as e:
    assert "did not follow a forward" in str(e) and "no_sync" in str(e), str(e)
else:
    raise AssertionError("no error for a second backward")

# buffers (BatchNorm statistics) come from rank 0 at the start of each training forward
cr.manual_seed(0)
bn = DDP(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)))
bn(cr.randn(8, 4) + 3 * r).sum().backward()      # each rank's statistics move its own way
stats = [None] * n
dist.all_gather_object(stats, bn.module[1].running_mean.numpy())
assert not np.allclose(stats[0], stats[1])
bn(cr.ones(8, 4)).sum().backward()               # rank 0's, then the same update everywhere
dist.all_gather_object(stats, bn.module[1].running_mean.numpy())
np.testing.assert_array_equal(stats[0], stats[1])

# models that differ across ranks fail at wrap time, on every rank
deeper = nn.Sequential(*[nn.Linear(4, 4) for _ in range(1 + r)])
for bad, words in [(nn.Linear(4, 3 + r), "shape (3, 4) float32"),
                   (deeper, "rank 1 has 4 parameters")]:
    try:
        DDP(bad)
    except dist.DistributedError as e:
        assert "differs across ranks" in str(e) and words in str(e), str(e)
    else:
        raise AssertionError("no error for different models")
print(f"rank {r} done", flush=True)
"""


def test_ddp_no_sync_unused_parameters_and_bad_models(mpirun):
    _passes(mpirun, FEATURES, " done")


JIT = COMMON + """
import warnings
from chainrule.jit import JitFunction

# a jitted DDP step (its bucket allreduces recorded as effects and replayed) equals the eager
# DDP step, bitwise, step after step; no graph break
eager, jitted = DDP(net(0), bucket_cap_mb=0.002), DDP(net(0), bucket_cap_mb=0.002)
assert len(jitted.bucket_sizes) > 1, jitted.bucket_sizes
opt_e = optim.SGD(eager.parameters(), lr=0.1, momentum=0.9)
opt_j = optim.SGD(jitted.parameters(), lr=0.1, momentum=0.9)

def step(model, opt, x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

jstep = cr.jit(lambda x, y: step(jitted, opt_j, x, y), backend="numpy")  # bitwise
assert isinstance(jstep, JitFunction)
rng = np.random.default_rng(r)                 # each rank its own data
with warnings.catch_warnings():
    warnings.simplefilter("error")             # a graph break would warn
    for i in range(6):
        x = cr.tensor(rng.standard_normal((8, 10)).astype(np.float32))
        y = cr.tensor(rng.integers(0, 3, 8))
        assert float(step(eager, opt_e, x, y)) == float(jstep(x, y)), i
        for (name, p), q in zip(eager.named_parameters(), jitted.parameters()):
            np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy(),
                                          err_msg=f"step {i} {name}")
            np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy(), err_msg=name)
        same_everywhere(jitted)
report = jstep.explain()
assert "graph break" not in report and "1 compile(s)" in report, report  # after a warm-up
names = [op.name for op in jstep.graph_ir().ops]   # one start and one wait per bucket, and
nb = len(jitted.bucket_sizes)                       # a progress test in each later hook
assert names.count("dist.all_reduce.start") == names.count("dist.all_reduce.wait") == nb, names
assert names.count("dist.all_reduce.test") >= nb, names
assert names.index("dist.all_reduce.start") < names.index("sgd_update"), names

# find_unused_parameters: the unused parameter's zeros go into the recorded bucket
class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = nn.Linear(10, 3), nn.Linear(10, 3)
    def forward(self, x):
        return self.used(x)

def branchy():
    cr.manual_seed(1)
    return DDP(Branchy(), find_unused_parameters=True)

be, bj = branchy(), branchy()
ob_e, ob_j = optim.SGD(be.parameters(), lr=0.1), optim.SGD(bj.parameters(), lr=0.1)
bstep = cr.jit(lambda x, y: step(bj, ob_j, x, y), fullgraph=True, backend="numpy")
for i in range(4):
    x = cr.tensor(rng.standard_normal((8, 10)).astype(np.float32))
    y = cr.tensor(rng.integers(0, 3, 8))
    assert float(step(be, ob_e, x, y)) == float(bstep(x, y)), i
    for p, q in zip(be.parameters(), bj.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
np.testing.assert_array_equal(bj.module.unused.weight.grad.numpy(), np.zeros((3, 10)))
same_everywhere(bj)

# a replay inside no_sync would average what should accumulate: a clear error instead
x, y = cr.ones(8, 10), cr.zeros(8, dtype=cr.int64)   # the traced shapes: a replay
with jitted.no_sync():
    try:
        jstep(x, y)
    except dist.DistributedError as e:
        assert "no_sync" in str(e), str(e)
    else:
        raise AssertionError("no error for a synced jit step replayed inside no_sync")
# tracing inside no_sync is a graph break: the step runs eagerly and accumulates locally
acc = cr.jit(lambda x: jitted(x).sum().backward(), warmup=False)  # trace on call 1
with jitted.no_sync(), warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    acc(cr.ones(2, 10) * r)
assert any("no_sync" in str(w.message) for w in seen), [str(w.message) for w in seen]
print(f"rank {r}: jitted DDP steps equal eager ones", flush=True)
"""


def test_jitted_ddp_step_equals_the_eager_one(mpirun):
    _passes(mpirun, JIT, ": jitted DDP steps equal eager ones")


ZERO = COMMON + """
def big(seed):
    cr.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                         nn.Linear(64, 4))

plain = DDP(big(0))
zero_model = DDP(big(0))
opt = optim.Adam(plain.parameters(), lr=1e-2)
zopt = optim.ZeroRedundancyOptimizer(zero_model.parameters(), optimizer_class=optim.Adam,
                                     lr=1e-2)
sched = optim.lr_scheduler.StepLR(zopt, step_size=3, gamma=0.5)
sched_plain = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
rng = np.random.default_rng(3)
for step in range(8):
    X = cr.tensor(rng.standard_normal((8, 64)).astype(np.float32)[4 * r:4 * r + 4])
    for m, o, s in ((plain, opt, sched_plain), (zero_model, zopt, sched)):
        o.zero_grad()
        m(X).square().mean().backward()
        o.step()
        s.step()
    for p, q in zip(plain.parameters(), zero_model.parameters()):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())
    same_everywhere(zero_model)

def state_bytes(o):
    return sum(v.numel() * v.element_size() for s in o.state.values() for v in s.values()
               if isinstance(v, cr.Tensor))

full, mine = state_bytes(opt), state_bytes(zopt.optim)
sizes = [None] * n
dist.all_gather_object(sizes, mine)
assert full > 0 and sum(sizes) == full and max(sizes) <= 0.6 * full, (sizes, full)
print(f"rank {r}: Adam state {mine} of {full} bytes", flush=True)

# the consolidated state is the plain optimiser's, and loads back on every rank
try:
    zopt.state_dict()
except RuntimeError as e:
    assert "consolidate_state_dict" in str(e)
zopt.consolidate_state_dict(to=0)
if r == 0:
    sd, ref = zopt.state_dict(), opt.state_dict()
    assert sorted(sd["state"]) == sorted(ref["state"])
    for i in ref["state"]:
        for k, v in ref["state"][i].items():
            got = sd["state"][i][k]
            assert np.array_equal(np.asarray(got.numpy() if hasattr(got, "numpy") else got),
                                  np.asarray(v.numpy() if hasattr(v, "numpy") else v)), (i, k)
    assert sd["param_groups"][0]["lr"] == ref["param_groups"][0]["lr"]
fresh = optim.ZeroRedundancyOptimizer(zero_model.parameters(), optimizer_class=optim.Adam, lr=1)
fresh.load_state_dict(opt.state_dict())
assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
assert state_bytes(fresh.optim) == mine
print(f"rank {r} zero done", flush=True)
"""


def test_zero_redundancy_optimizer_matches_adam_with_sharded_state(mpirun):
    _passes(mpirun, ZERO, " zero done")


CKPT = COMMON + """
import os, sys
path = os.path.join(sys.argv[1], "ckpt.safetensors")

def run(model, opt, steps, start):
    for step in range(start, start + steps):
        g = np.random.default_rng(step)
        X = cr.tensor(g.standard_normal((8, 10)).astype(np.float32)[4 * r:4 * r + 4])
        opt.zero_grad()
        model(X).square().mean().backward()
        opt.step()

ddp = DDP(net(0))
opt = optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
run(ddp, opt, 3, 0)
dist.save_checkpoint({"model": ddp.state_dict(), "optimizer": opt.state_dict(), "step": 3}, path)
assert os.listdir(sys.argv[1]) == ["ckpt.safetensors"]   # one file, no temporary left
run(ddp, opt, 3, 3)
straight = [p.detach().numpy().copy() for p in ddp.parameters()]

resumed = DDP(net(7 + r))                 # different weights everywhere before the load
ropt = optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
state = dist.load_checkpoint(path)
resumed.load_state_dict(state["model"])
ropt.load_state_dict(state["optimizer"])
run(resumed, ropt, 3, state["step"])
for a, b in zip(straight, resumed.parameters()):
    np.testing.assert_array_equal(a, b.detach().numpy())
same_everywhere(resumed)

# rank 0 cannot write or read: every rank gets an error, nobody waits
for call in (lambda: dist.save_checkpoint({"x": cr.ones(1)}, "/nonexistent/dir/c.safetensors"),
             lambda: dist.load_checkpoint(os.path.join(sys.argv[1], "missing.safetensors"))):
    try:
        call()
    except (OSError, dist.DistributedError) as e:
        assert r == 0 or "rank 0 could not" in str(e), str(e)
        print(f"rank {r}: {type(e).__name__}: {e}", flush=True)
    else:
        raise AssertionError("no error")
print(f"rank {r} ckpt done", flush=True)
"""


def test_checkpoint_written_by_rank_0_resumes_every_rank_identically(mpirun, tmp_path):
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    _passes(mpirun, CKPT, " ckpt done", args=[ckdir])
