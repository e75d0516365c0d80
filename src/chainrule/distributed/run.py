"""``chainrule train --nproc N``: the main job on N ranks.

Started from a shell, the command re-launches itself under ``mpiexec -n N`` (one thread per
rank when the cores are shared out, unless OMP/OPENBLAS_NUM_THREADS say otherwise) and returns
its exit code. Under MPI, every rank runs the pieces of the one-process run (chainrule.cli:
``prepare_run``, ``fit``, ``finish``), so the settings, the flag rules on ``--resume``, the
checks before training, the divergence stop and the checkpoint format are the same; what
differs is said by :class:`Ranks` (rank 0 reads and writes the files and prints, every rank
raises the same one-line error) and by the step: each rank trains a DistributedDataParallel
copy of the model on its share of every global batch (the batches of the one-process run,
split over the ranks), with its summed loss scaled so that the averaged gradient is the
gradient of the whole batch's mean. So ``--nproc 2`` trains the model that ``--nproc 1``
trains, to float rounding, and ``--resume`` works across both.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys

from ..cli import Local
from ..errors import CLIError
from .launch import mpiexec_command
from .mpi import under_mpiexec

# flags of `chainrule train` that one process only can honour, and why (--plot works: rank 0
# draws the curves from the history every rank shares)
_ONE_PROCESS_ONLY = {
    "diagnose": "not available with --nproc > 1 yet",
}


def train_main(args, argv=None) -> int:
    """The ``train`` command with ``--nproc`` > 1; returns the exit code (a flag that cannot
    apply, or no MPI, is a one-line CLIError)."""
    for flag, why in _ONE_PROCESS_ONLY.items():
        if getattr(args, flag, False):
            raise CLIError(f"chainrule train: --{flag} is {why}")
    if under_mpiexec():
        return _train_rank(args)
    from .group import is_available  # noqa: PLC0415

    try:
        if not is_available():
            raise FileNotFoundError("mpi4py is not installed")
        cmd = mpiexec_command(args.nproc, [sys.executable, "-m", "chainrule",
                                           *(sys.argv[1:] if argv is None else argv)])
    except FileNotFoundError as e:
        raise CLIError(f"chainrule train: --nproc {args.nproc} needs MPI ({e}): pip install "
                       "'chainrule[dist]'") from None
    env = dict(os.environ)
    per_rank = str(max(1, (os.cpu_count() or 1) // args.nproc))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, per_rank)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130


class Ranks(Local):
    """Where a run on N ranks reads, writes and prints: rank 0 reads the checkpoint (every
    rank decodes its bytes), checks the output folder, writes the checkpoints and prints; a
    CLIError on any rank is raised on every rank (rank 0 prints it), so all stop together."""

    def __init__(self, comm):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
        self.main = self.rank == 0

    def agree(self, fn, rank0_only: bool = False):
        """``fn()`` on every rank (on rank 0 alone with ``rank0_only``, its result then goes
        to every rank); a CLIError on any rank is raised on all, the lowest rank's."""
        out, err = None, None
        if self.main or not rank0_only:
            try:
                out = fn()
            except CLIError as e:
                err = (str(e), e.exit_code)
        shared = self.comm.allgather_object((out if rank0_only else None, err))
        for _, e in shared:
            if e is not None:
                raise CLIError(*e)
        return shared[0][0] if rank0_only else out

    def read(self, path: str):
        from .checkpoint import load_checkpoint  # noqa: PLC0415

        return load_checkpoint(path)

    def prepare_out(self, args, plot_path):
        return self.agree(lambda: super(Ranks, self).prepare_out(args, plot_path),
                          rank0_only=True)

    def save(self, obj, path, epoch):
        self.agree(lambda: super(Ranks, self).save(obj, path, epoch), rank0_only=True)


def rank_step(run, ranks: Ranks):
    """The training step on one rank: ``step(xb, yb)`` trains the DistributedDataParallel
    model on this rank's share of the global batch (every ``size``-th sample from ``rank``)
    and returns the global batch's mean loss and correct count, the same on every rank. Under
    ``--jit`` the forward, backward (its allreduces included) and update are captured with
    chainrule.jit, as in one process."""
    import chainrule as cr  # noqa: PLC0415

    from ..nn import functional as F  # noqa: PLC0415
    from ..nn.parallel import DistributedDataParallel  # noqa: PLC0415
    from . import collectives  # noqa: PLC0415

    model, opt, rank, size = DistributedDataParallel(run.model), run.opt, ranks.rank, ranks.size

    def train_step(x, y, scale):
        with run.precision:
            logits = model(x)
            loss = F.cross_entropy(logits, y, reduction="sum")
        opt.zero_grad()
        (loss * scale).backward()
        opt.step()
        return loss, logits.detach()

    if getattr(run.args, "jit", False):
        train_step = cr.jit(train_step)

    def step(xb, yb):
        x, y = xb[rank::size], yb[rank::size]
        # scaled so that the average over the ranks is the batch mean
        loss, logits = train_step(x, y, size / len(yb))
        # a share may be empty (a last batch smaller than the number of ranks)
        correct = float((logits.detach().argmax(1) == y).sum()) if len(y) else 0.0
        # summed in the loss's dtype, as the one-process mean is: a loss that overflows there
        # overflows here; every rank sees the same sums, so all stop together
        sums = cr.tensor([float(loss), correct], dtype=loss.dtype)
        collectives.all_reduce(sums)
        return float(sums[0]) / len(yb), int(sums[1])

    return step


def _train_rank(args) -> int:
    from .. import cli  # noqa: PLC0415
    from . import group  # noqa: PLC0415

    group.init_process_group("mpi", timeout=datetime.timedelta(minutes=5))
    ranks = Ranks(group.current("chainrule train"))
    try:
        if ranks.size != args.nproc:
            raise CLIError(f"chainrule train: started with {ranks.size} MPI ranks but --nproc "
                           f"{args.nproc}")
        run = ranks.agree(lambda: cli.prepare_run(args, ranks))
        cli.fit(run, rank_step(run, ranks))
        cli.finish(run)
        code = 0
    except CLIError as e:
        if ranks.main:
            print(e, file=sys.stderr)
        code = e.exit_code
    group.destroy_process_group()
    return code
