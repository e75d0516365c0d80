"""``chainrule train --nproc N``: the main job on N ranks.

Started from a shell, the command re-launches itself under ``mpiexec -n N`` (one thread per
rank when the cores are shared out, unless OMP/OPENBLAS_NUM_THREADS say otherwise) and returns
its exit code. Under MPI, each rank trains a DistributedDataParallel copy of the same model on
its share of every global batch: the batches are those of the one-process run (same seed, same
order), split over the ranks, with each rank's summed loss scaled so that the averaged gradient
is the gradient of the whole batch's mean. So ``--nproc 2`` trains the model that ``--nproc 1``
trains, to float rounding, and writes the same checkpoint format (rank 0 writes; ``--resume``
works across both).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

from .launch import mpiexec_command
from .mpi import under_mpiexec


def train_main(args, argv=None) -> int:
    """The ``train`` command with ``--nproc`` > 1; returns the exit code."""
    if under_mpiexec():
        return _train_rank(args)
    for flag in ("plot", "diagnose"):
        if getattr(args, flag, False):
            print(f"chainrule train: --{flag} is not available with --nproc > 1 yet",
                  file=sys.stderr)
            return 2
    from .group import is_available  # noqa: PLC0415

    try:
        if not is_available():
            raise FileNotFoundError("mpi4py is not installed")
        cmd = mpiexec_command(args.nproc, [sys.executable, "-m", "chainrule",
                                           *(sys.argv[1:] if argv is None else argv)])
    except FileNotFoundError as e:
        print(f"chainrule train: --nproc {args.nproc} needs MPI ({e}): pip install "
              "'chainrule[dist]'", file=sys.stderr)
        return 2
    env = dict(os.environ)
    per_rank = str(max(1, (os.cpu_count() or 1) // args.nproc))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, per_rank)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


def _fail(rank: int, msg: str) -> int:
    if rank == 0:
        print(msg, file=sys.stderr)
    return 2


def _train_rank(args) -> int:
    import numpy as np  # noqa: PLC0415 - the host-side batch order, as the one-process run

    import chainrule as cr  # noqa: PLC0415

    from .. import cli  # noqa: PLC0415 - the model, optimiser and evaluation of the main job
    from ..data import load_digits  # noqa: PLC0415
    from ..nn import functional as F  # noqa: PLC0415
    from ..nn.parallel import DistributedDataParallel  # noqa: PLC0415
    from . import collectives, group  # noqa: PLC0415
    from .checkpoint import load_checkpoint, save_checkpoint  # noqa: PLC0415

    group.init_process_group("mpi", timeout=datetime.timedelta(minutes=5))
    rank, world = group.get_rank(), group.get_world_size()
    if world != args.nproc:
        return _fail(rank, f"chainrule train: started with {world} MPI ranks but --nproc "
                           f"{args.nproc}")
    if not 0.0 < args.test_fraction < 1.0:
        return _fail(rank, f"chainrule train: --test-fraction must be in (0, 1), got "
                           f"{args.test_fraction}")
    start, history, ckpt = 0, {k: [] for k in ("epoch", "train_loss", "train_acc",
                                               "test_loss", "test_acc")}, None
    if args.resume:
        try:
            ckpt = load_checkpoint(args.resume)
            meta = json.loads(ckpt["meta"])
        except Exception as e:  # missing, corrupt, not ours: the same on every rank
            return _fail(rank, f"chainrule train: cannot resume from {args.resume}: "
                               f"{str(e).splitlines()[0]}")
        for k in cli._ARG_KEYS:
            setattr(args, k, meta["args"][k])
        start, history = int(meta["epoch"]), meta["history"]

    cr.manual_seed(args.seed)
    X, y = load_digits()
    order = np.random.default_rng(args.seed).permutation(X.shape[0])
    n_test = round(X.shape[0] * args.test_fraction)
    Xte, yte = X[order[:n_test]], y[order[:n_test]]
    Xtr, ytr = X[order[n_test:]], y[order[n_test:]]
    net = cli.build_model(X.shape[1], args.hidden, 10, args.activation)
    model = DistributedDataParallel(net)
    opt = cli._make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                              args.weight_decay)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])

    path = os.path.join(args.out, "checkpoint.safetensors")
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
    ntr, bs = Xtr.shape[0], args.batch_size
    for epoch in range(start, args.epochs):
        perm = np.random.default_rng([args.seed, epoch]).permutation(ntr)
        sums = np.zeros(2)  # loss summed over samples, correct predictions
        t0 = time.perf_counter()
        for i in range(0, ntr, bs):
            batch = perm[i:i + bs]
            mine = batch[rank::world]
            logits = model(Xtr[mine])
            loss = F.cross_entropy(logits, ytr[mine], reduction="sum")
            opt.zero_grad()
            (loss * (world / len(batch))).backward()  # averaged over ranks: the batch mean
            opt.step()
            sums += (float(loss), int((logits.detach().argmax(1) == ytr[mine]).sum()))
        total = cr.tensor(sums)
        collectives.all_reduce(total)
        test_loss, test_acc = cli._evaluate(model.module, Xte, yte)
        for k, v in zip(history, (epoch + 1, float(total[0]) / ntr, float(total[1]) / ntr,
                                  test_loss, test_acc)):
            history[k].append(v)
        meta = {"epoch": epoch + 1, "history": history,
                "args": {k: getattr(args, k) for k in cli._ARG_KEYS}}
        save_checkpoint({"model": net.state_dict(), "optimizer": opt.state_dict(),
                         "meta": json.dumps(meta)}, path)
        if rank == 0 and not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}: train loss {history['train_loss'][-1]:.4f}"
                  f", test accuracy {100 * test_acc:.1f}% ({ntr / (time.perf_counter() - t0):.0f}"
                  f" samples/s on {world} ranks)", file=sys.stderr)
    test_loss, test_acc = cli._evaluate(model.module, Xte, yte)
    if rank == 0:
        print(f"checkpoint: {path}")
        print(f"test accuracy: {100 * test_acc:.1f}%")
    group.destroy_process_group()
    return 0
