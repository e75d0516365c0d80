"""The ``chainrule`` command line: ``chainrule train`` (the main job), ``chainrule diagnose``.

    chainrule train                       # MLP on the bundled digits, prints the test accuracy
    chainrule train --epochs 5 --out runs/a
    chainrule train --resume runs/a/checkpoint.safetensors --epochs 10
    chainrule train --jit                 # the training step captured once and replayed
    chainrule train --nproc 2             # data parallel on 2 MPI ranks (chainrule[dist])
    chainrule diagnose --depth 20 --activation sigmoid --init normal

Errors in flags, paths or checkpoints, a diverging run and a full disk are reported on one line
(exit status 2 for a bad command line, 1 for a failure while running), never as tracebacks.
A run never replaces the checkpoint of an earlier run unless asked (--overwrite, or --resume of
that checkpoint), and never saves non-finite weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

from .argtypes import (
    fraction,
    int_at_least,
    layer_widths,
    nonnegative_float,
    positive_float,
    positive_int,
)
from .errors import CLIError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message}")


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "silu", "elu", "leaky_relu")
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 0.05, "adagrad": 0.01}

# Settings of `chainrule train` that a checkpoint records. Their flags default to None, so that
# a run knows which ones the user gave: a fresh run fills the rest from TRAIN_DEFAULTS, a resumed
# run from the checkpoint (see _apply_resume_flags).
TRAIN_DEFAULTS = {"hidden": [256, 128], "activation": "relu", "optimizer": "adam", "lr": None,
                  "momentum": None, "weight_decay": None, "batch_size": 32, "seed": 0,
                  "test_fraction": 0.2}
_ARG_KEYS = tuple(TRAIN_DEFAULTS)
_FIXED_BY_CHECKPOINT = ("hidden", "activation", "optimizer", "seed", "test_fraction")
_WHY_FIXED = {"hidden": "the model's shape", "activation": "the model",
              "optimizer": "the optimiser state in the checkpoint",
              "seed": "the train/test split and the batch order",
              "test_fraction": "the train/test split"}


def _setting(p, flag: str, text: str, default_text: str | None = None, **kw):
    """Add a recorded setting: default None, its real default shown in the help."""
    dest = flag.lstrip("-").replace("-", "_")
    shown = default_text if default_text is not None else TRAIN_DEFAULTS[dest]
    if isinstance(shown, list):
        shown = ",".join(map(str, shown))
    p.add_argument(flag, default=None, help=f"{text} (default: {shown})", **kw)


def _train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train an MLP on the bundled 8x8 digits",
                       description="Train an MLP classifier on the bundled UCI digits (1,797 "
                                   "8x8 images), evaluate on a held-out split, save a checkpoint. "
                                   "With --resume, the model, optimiser, seed and split come from "
                                   "the checkpoint; --epochs, --lr, --momentum, --weight-decay "
                                   "and --batch-size may be changed.")
    _setting(p, "--hidden", "hidden layer widths, comma-separated", type=layer_widths)
    _setting(p, "--activation", "activation between the layers", choices=ACTIVATIONS)
    _setting(p, "--optimizer", "optimiser", choices=OPTIMIZERS)
    _setting(p, "--lr", "learning rate", type=positive_float,
             default_text="1e-3 for adam/adamw/rmsprop, 0.05 for sgd, 0.01 for adagrad")
    _setting(p, "--momentum", "momentum (sgd and rmsprop only)", type=nonnegative_float,
             default_text="0.9 for sgd, 0 for rmsprop")
    _setting(p, "--weight-decay", "weight decay", type=nonnegative_float,
             default_text="0.01 for adamw, 0 otherwise")
    _setting(p, "--batch-size", "batch size", type=positive_int)
    _setting(p, "--seed", "seed of the initial weights, the split and the shuffling",
             type=int_at_least(0))
    _setting(p, "--test-fraction", "share of the data held out for testing", type=fraction)
    p.add_argument("--epochs", type=positive_int, default=30,
                   help="train until this epoch (default: %(default)s)")
    p.add_argument("--out", default="runs/digits",
                   help="output folder for checkpoint.safetensors (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a checkpoint an earlier run left in --out (without it, such a "
                        "checkpoint is never replaced)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint written by an earlier run")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: forward passes under chainrule.autocast (bfloat16 products, "
                        "float32 weights and loss; needs the bf16 extra)")
    p.add_argument("--init-from", default=None, metavar="FILE",
                   help="start from the weights in FILE: a torch.save state_dict (read without "
                        "PyTorch, no code run) or a safetensors file")
    p.add_argument("--plot", action="store_true",
                   help="write loss and accuracy curves to OUT/curves.png (needs matplotlib)")
    p.add_argument("--diagnose", action="store_true",
                   help="monitor gradient health during training and print the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="train on N MPI ranks (data parallel; re-launches under mpiexec; "
                        "needs chainrule[dist]; not with --diagnose)")
    p.add_argument("--jit", action="store_true",
                   help="capture the training step once with chainrule.jit and replay it")
    return p


def build_model(n_in: int, hidden: list[int], n_out: int, activation: str):
    """The default model: Linear layers with the chosen activation between them.

    Example:
        >>> from chainrule.cli import build_model
        >>> build_model(64, [32], 10, "relu")
        Sequential(
          (0): Linear(in_features=64, out_features=32, bias=True)
          (1): ReLU()
          (2): Linear(in_features=32, out_features=10, bias=True)
        )
    """
    from . import nn  # noqa: PLC0415

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
            "silu": nn.SiLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
    layers = []
    widths = [n_in, *hidden]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), acts[activation]()]
    layers.append(nn.Linear(widths[-1], n_out))
    return nn.Sequential(*layers)


def _make_optimizer(name: str, params, lr, momentum, weight_decay):
    from . import optim  # noqa: PLC0415

    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=1e-2 if weight_decay is None
                           else weight_decay)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9 if momentum is None else momentum,
                         weight_decay=weight_decay or 0.0)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=momentum or 0.0,
                             weight_decay=weight_decay or 0.0)
    return optim.Adagrad(params, lr=lr, weight_decay=weight_decay or 0.0)


def _evaluate(model, X, y) -> tuple[float, float]:
    import chainrule as cr  # noqa: PLC0415

    from .nn import functional as F  # noqa: PLC0415

    model.eval()
    with cr.no_grad():
        logits = model(X)
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
    model.train()
    return loss, acc


def _first_line(e: BaseException) -> str:
    return "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())


def _read_checkpoint(path: str, load):
    """The checkpoint's tensors and its training metadata (read with ``load(path)``), or a
    one-line CLIError."""
    try:
        ckpt = load(path)
    except FileNotFoundError:
        raise CLIError(f"chainrule train: checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CLIError(f"chainrule train: --resume {path} is a folder; give the "
                       "checkpoint.safetensors file in it") from None
    except OSError as e:
        raise CLIError(f"chainrule train: cannot read checkpoint {path}: {e.strerror}") from None
    except Exception as e:  # corrupt, truncated, not a checkpoint
        raise CLIError(f"chainrule train: cannot read checkpoint {path}: "
                       f"{_first_line(e)}") from None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "meta"} <= ckpt.keys():
        raise CLIError(f"chainrule train: {path} is not a chainrule train checkpoint")
    try:
        meta = json.loads(ckpt["meta"])
    except (TypeError, ValueError):
        raise CLIError(f"chainrule train: checkpoint {path}: its training metadata ('meta') "
                       "is not valid JSON") from None
    need = {"epoch": int, "history": dict, "args": dict}
    for key, typ in need.items():
        if not isinstance(meta, dict) or not isinstance(meta.get(key), typ):
            raise CLIError(f"chainrule train: checkpoint {path}: its training metadata lacks "
                           f"the field {key!r} (or it is not a {typ.__name__})")
    for key in _ARG_KEYS:
        if key not in meta["args"]:
            raise CLIError(f"chainrule train: checkpoint {path}: its training metadata lacks "
                           f"the setting {key!r}")
    return ckpt, meta


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _shown(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def _apply_resume_flags(args, saved: dict, path: str) -> dict[str, str]:
    """Settings for a resumed run: the checkpoint's, except the flags the user gave. A flag
    that cannot apply (it would change the model, the optimiser or the data split) is an
    error naming the checkpoint's value; the others apply: returns {setting: note}."""
    changed = {}
    for key in _ARG_KEYS:
        given, old = getattr(args, key), saved[key]
        if given is None or given == old:
            setattr(args, key, old)
            continue
        if key in _FIXED_BY_CHECKPOINT:
            raise CLIError(f"chainrule train: {_flag(key)} {_shown(given)} cannot apply to "
                           f"--resume {path}: the checkpoint has {_flag(key)} {_shown(old)} "
                           f"and {_WHY_FIXED[key]} cannot change (drop the flag, or start a new "
                           "run with another --out)")
        if key == "momentum":
            _check_momentum(args.optimizer)
        changed[key] = (f"{_flag(key)} {_shown(given)} (checkpoint: "
                        f"{_shown(_effective(key, old, args.optimizer))})")
    return changed


def _effective(key: str, value, optimizer: str):
    """The value a setting has in the optimiser, where None means the optimiser's default."""
    if value is not None:
        return value
    if key == "lr":
        return DEFAULT_LR[optimizer]
    if key == "momentum":
        return 0.9 if optimizer == "sgd" else 0.0
    return 1e-2 if optimizer == "adamw" else 0.0


def _check_momentum(optimizer: str) -> None:
    if optimizer not in ("sgd", "rmsprop"):
        raise CLIError(f"chainrule train: --momentum applies to sgd and rmsprop only, not to "
                       f"--optimizer {optimizer}")


def _split(n: int, test_fraction: float, seed: int):
    import numpy as np  # noqa: PLC0415 - only for the host-side shuffle order

    n_test = round(n * test_fraction)
    if not 0 < n_test < n:
        raise CLIError(f"chainrule train: --test-fraction {test_fraction} leaves "
                       f"{'no test' if n_test == 0 else 'no training'} examples out of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def _prepare_out(args, plot_path: str | None) -> str:
    """Create and probe the output folder before any training; return the checkpoint path."""
    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"chainrule train: --out {out} is a file, not a folder", 1)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise CLIError(f"chainrule train: cannot create the output folder {out}: "
                       f"{e.strerror}", 1) from None
    from .io.checkpoint import probe_writable  # noqa: PLC0415

    try:
        probe_writable(out)
    except OSError as e:
        raise CLIError(f"chainrule train: cannot write to the output folder {out}: "
                       f"{e.strerror}", 1) from None
    path = os.path.join(out, "checkpoint.safetensors")
    continuing = args.resume is not None and os.path.exists(args.resume) \
        and os.path.exists(path) and os.path.samefile(args.resume, path)
    if os.path.exists(path) and not (continuing or args.overwrite):
        raise CLIError(f"chainrule train: {path} holds the checkpoint of an earlier run; pass "
                       f"--overwrite to replace it, --resume {path} to continue it, or choose "
                       "another --out", 1)
    if plot_path is not None and os.path.exists(plot_path) and not os.path.isfile(plot_path):
        raise CLIError(f"chainrule train: cannot write the --plot figure {plot_path}: "
                       "it is a folder", 1)
    return path


class Local:
    """Where a run of ``chainrule train`` reads, writes and prints: this process alone.
    ``chainrule train --nproc N`` runs the same pieces on every rank with a subclass
    (chainrule.distributed.run) in which rank 0 touches the files and prints, and every rank
    raises the same one-line error.

    Example:
        >>> from chainrule.cli import Local
        >>> Local().main
        True
    """

    main = True  # this process prints the progress, the epoch lines and the results

    def read(self, path: str):
        """The checkpoint file's contents (``chainrule.io.load``)."""
        from . import io  # noqa: PLC0415

        return io.load(path)

    def prepare_out(self, args, plot_path: str | None) -> str:
        """Check the output folder before any training; returns the checkpoint path."""
        return _prepare_out(args, plot_path)

    def save(self, obj, path: str, epoch: int) -> None:
        """Write the checkpoint of ``epoch`` atomically, or raise a one-line CLIError."""
        _save(obj, path, epoch)


def _save(obj, path: str, epoch: int) -> None:
    from . import io  # noqa: PLC0415

    try:
        io.save(obj, path)
    except OSError as e:
        kept = "the previous checkpoint is intact" if os.path.exists(path) else "nothing saved"
        raise CLIError(f"chainrule train: cannot save the epoch {epoch} checkpoint to {path}: "
                       f"{e.strerror or e} ({kept})", 1) from None


class _DivergedError(Exception):
    pass


def _diverged_message(args, epoch: int, step: int, steps: int, what: str, path: str,
                      saved_epoch: int) -> str:
    kept = (f"{path} keeps epoch {saved_epoch}, the last good one" if saved_epoch
            else "nothing was saved")
    lr = _effective("lr", args.lr, args.optimizer)
    return (f"chainrule train: training diverged at epoch {epoch + 1}, step {step} of {steps}: "
            f"{what}; {kept}. Likely causes: a learning rate too high for {args.optimizer} "
            f"(--lr {lr:g}) or exploding gradients. Remedies: a lower --lr, gradient clipping, "
            "a normalisation layer; rerun with --diagnose for per-layer gradient health.")


def _all_finite(model) -> bool:
    return all(bool(p.isfinite().all()) for p in model.parameters())


class Run:
    """A prepared run of ``chainrule train`` (see :func:`prepare_run`): its settings, data,
    model, optimiser, checkpoint path and history.

    Example:
        >>> from chainrule.cli import Run
        >>> Run().start_epoch
        0
    """

    def __init__(self, **kw):
        self.start_epoch, self.saved_epoch, self.monitor = 0, 0, None
        self.history = {"epoch": [], "train_loss": [], "train_acc": [], "test_loss": [],
                        "test_acc": []}
        self.__dict__.update(kw)


def prepare_run(args, where: Local | None = None) -> Run:
    """Everything before the first step of ``chainrule train``: the settings (a fresh run's
    defaults, or the checkpoint's with the flags that may change), the train/test split, the
    output folder checks, the model, the optimiser and its state (``--resume``) or the
    initial weights (``--init-from``), ``--precision`` and ``--diagnose``. Every problem is a
    one-line CLIError raised before any training.

    Example:
        >>> from chainrule.cli import main
        >>> main(["train", "--resume", "absent.safetensors"])  # prints a one-line error
        2
    """
    import chainrule as cr  # noqa: PLC0415

    from . import io  # noqa: PLC0415
    from .data import load_digits  # noqa: PLC0415

    where = Local() if where is None else where
    run = Run(args=args, where=where)
    ckpt, changed = None, {}
    if args.resume:
        ckpt, meta = _read_checkpoint(args.resume, where.read)
        changed = _apply_resume_flags(args, meta["args"], args.resume)
        run.start_epoch = run.saved_epoch = int(meta["epoch"])
        run.history = meta["history"]
    else:
        for key, default in TRAIN_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, default)
        if args.momentum is not None:
            _check_momentum(args.optimizer)
    if args.plot:
        _import_pyplot()  # before training: a missing matplotlib is not found after it
    run.plot_path = os.path.join(args.out, "curves.png") if args.plot else None

    X, y = load_digits()
    tr, te = _split(X.shape[0], args.test_fraction, args.seed)
    run.path = where.prepare_out(args, run.plot_path)
    cr.manual_seed(args.seed)
    run.Xtr, run.ytr, run.Xte, run.yte = X[tr], y[tr], X[te], y[te]

    model = run.model = build_model(X.shape[1], args.hidden, 10, args.activation)
    opt = run.opt = _make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                                    args.weight_decay)
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CLIError(f"chainrule train: checkpoint {args.resume} does not fit the model "
                           f"its settings describe: {_first_line(e)}") from None
        for g in opt.param_groups:  # flags the user changed on resume apply from here on
            for key in ("lr", "momentum", "weight_decay"):
                if key in changed and key in g:
                    g[key] = getattr(args, key)
        if changed and where.main:
            print(f"resume: from epoch {run.start_epoch} with " + ", ".join(changed.values()))
    elif args.init_from:
        try:
            model.load_state_dict(io.load_weights(args.init_from))
        except FileNotFoundError:
            raise CLIError(f"chainrule train: --init-from file not found: {args.init_from}"
                           ) from None
        except Exception as e:  # not a weights file, unsafe pickle, wrong keys or shapes
            detail = " ".join(line.strip() for line in str(e).splitlines())
            raise CLIError(f"chainrule train: cannot initialise from {args.init_from}: "
                           f"{detail}") from None

    run.precision = contextlib.nullcontext()
    if args.precision == "bf16":
        try:
            run.precision = cr.autocast("cpu", dtype=cr.bfloat16)
        except AttributeError as e:  # ml_dtypes missing: the message names the extra
            raise CLIError(f"chainrule train: --precision bf16: {e}") from None

    if args.diagnose:
        from .diagnostics import GradientMonitor  # noqa: PLC0415

        run.monitor = GradientMonitor(model, optimizer=opt)
    if getattr(args, "jit", False) and run.monitor is not None:
        raise CLIError("chainrule train: --jit and --diagnose cannot be combined (the "
                       "gradient monitor reads every step's gradients on the host)")
    return run


def local_step(run: Run):
    """The training step of a one-process run: ``step(xb, yb)`` trains on one batch and
    returns (its mean loss, its number of correct predictions); captured with chainrule.jit
    under ``--jit``."""
    import chainrule as cr  # noqa: PLC0415

    from .nn import functional as F  # noqa: PLC0415

    model, opt = run.model, run.opt

    def train_step(xb, yb):
        with run.precision:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, logits.detach()

    if getattr(run.args, "jit", False):
        train_step = cr.jit(train_step)

    def step(xb, yb):
        loss, logits = train_step(xb, yb)
        return float(loss), int((logits.argmax(1) == yb).sum())

    return step


def fit(run: Run, step) -> None:
    """The epochs of ``chainrule train``: batches in an order that depends only on (seed,
    epoch), ``step(xb, yb)`` on each (it returns the batch's mean loss and correct count), a
    checkpoint with sorted metadata after each epoch, and a stop with a one-line CLIError when
    the loss or the weights stop being finite (the last good checkpoint stays)."""
    import numpy as np  # noqa: PLC0415 - only for the host-side shuffle order

    args, where, history = run.args, run.where, run.history
    Xtr, ytr = run.Xtr, run.ytr
    bs, ntr = args.batch_size, Xtr.shape[0]
    steps = -(-ntr // bs)
    if run.start_epoch >= args.epochs and where.main:
        print(f"checkpoint is at epoch {run.start_epoch}; nothing to do for --epochs "
              f"{args.epochs}")
    try:
        for epoch in range(run.start_epoch, args.epochs):
            # the shuffle depends only on (seed, epoch): a resumed run sees the same batches
            perm = np.random.default_rng([args.seed, epoch]).permutation(ntr)
            t0 = time.perf_counter()
            tot_loss, tot_correct = 0.0, 0
            bar = _progress(ntr, epoch, args) if where.main else None
            for n_step, i in enumerate(range(0, ntr, bs), 1):
                idx = perm[i:i + bs]
                lv, correct = step(Xtr[idx], ytr[idx])
                if not np.isfinite(lv):
                    raise _DivergedError(epoch, n_step, f"the loss is {lv}")
                if run.monitor is not None:
                    run.monitor.step()
                tot_loss += lv * len(idx)
                tot_correct += correct
                seen = i + len(idx)
                if bar is not None:
                    bar.set_postfix(loss=f"{tot_loss / seen:.4f}",
                                    acc=f"{tot_correct / seen:.3f}", refresh=False)
                    bar.update(len(idx))
            if not _all_finite(run.model):
                raise _DivergedError(epoch, steps, "the parameters hold NaN or Inf after the step")
            with run.precision:
                test_loss, test_acc = _evaluate(run.model, run.Xte, run.yte)
            history["epoch"].append(epoch + 1)
            history["train_loss"].append(tot_loss / ntr)
            history["train_acc"].append(tot_correct / ntr)
            history["test_loss"].append(test_loss)
            history["test_acc"].append(test_acc)
            if bar is not None:
                bar.close()
                dt = time.perf_counter() - t0
                print(f"epoch {epoch + 1}/{args.epochs}: train loss {tot_loss / ntr:.4f} "
                      f"acc {tot_correct / ntr:.3f}, test loss {test_loss:.4f} "
                      f"acc {test_acc:.3f} ({dt:.1f} s, {ntr / max(dt, 1e-9):.0f} samples/s)",
                      file=sys.stderr)
            meta = {"epoch": epoch + 1, "history": history,
                    "args": {k: getattr(args, k) for k in _ARG_KEYS}}
            where.save({"model": run.model.state_dict(), "optimizer": run.opt.state_dict(),
                        "meta": json.dumps(meta, sort_keys=True)}, run.path, epoch + 1)
            run.saved_epoch = epoch + 1
    except _DivergedError as d:
        _report_monitor(run)
        epoch, n_step, what = d.args
        raise CLIError(_diverged_message(args, epoch, n_step, steps, what, run.path,
                                         run.saved_epoch), 1) from None


def _report_monitor(run: Run) -> None:
    if run.monitor is not None:
        print(run.monitor.report().to_table())
        run.monitor.remove()


def finish(run: Run) -> dict:
    """After the last epoch: the test metrics, the --plot figure, the --diagnose report and
    the result lines; returns the metrics."""
    with run.precision:
        test_loss, test_acc = _evaluate(run.model, run.Xte, run.yte)
    if run.where.main:
        if run.args.plot:
            _plot(run.history, run.plot_path)
        _report_monitor(run)
        print(f"checkpoint: {run.path}")
        print(f"test accuracy: {100 * test_acc:.1f}%")
    return {"test_accuracy": test_acc, "test_loss": test_loss, "model": run.model}


def train(args) -> dict:
    """Run the main job in this process; returns the final metrics (also printed)."""
    run = prepare_run(args)
    fit(run, local_step(run))
    return finish(run)


def _progress(total: int, epoch: int, args):
    """A per-batch bar over the epoch's samples (on a terminal), or None with --quiet."""
    if args.quiet:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    # redrawn at every batch (an epoch of the digits takes well under tqdm's default 0.1 s
    # refresh interval, which left the bar at 0); erased at the end of the epoch, whose
    # summary line train() prints instead
    return tqdm(total=total, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                unit="sample", file=sys.stderr, disable=None, mininterval=0, miniters=1)


def _import_pyplot():
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise CLIError("chainrule train: --plot needs matplotlib "
                       "(pip install 'chainrule[plot]')") from None
    return plt


def _plot(history, path):
    plt = _import_pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    ep = history["epoch"]
    a.plot(ep, history["train_loss"], label="train")
    a.plot(ep, history["test_loss"], label="test")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy")
    a.set_yscale("log")
    a.legend()
    b.plot(ep, history["train_acc"], label="train")
    b.plot(ep, history["test_acc"], label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise CLIError(f"chainrule train: cannot write the --plot figure {path}: "
                       f"{e.strerror or e} (the checkpoint is saved)", 1) from None
    finally:
        plt.close(fig)
    print(f"curves: {path}")


def main(argv=None) -> int:
    """Entry point of the ``chainrule`` console script.

    Example:
        >>> from chainrule.cli import main
        >>> main(["train", "--epochs", "0"])  # prints a one-line error to stderr
        2
    """
    parser = _Parser(prog="chainrule", description="chainrule: backpropagation for Python")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _train_parser(sub)
    try:
        from .diagnostics.cli import add_parser as add_diagnose  # noqa: PLC0415
    except ImportError:
        add_diagnose = None
    if add_diagnose is not None:
        add_diagnose(sub)
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train" and args.nproc > 1:
            from .distributed.run import train_main  # noqa: PLC0415

            return train_main(args, argv)
        if args.command == "train":
            train(args)
        else:
            args.run(args)
        return 0
    except CLIError as e:
        print(e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
