"""The ``chainrule`` command line: ``chainrule train`` (the main job), ``chainrule diagnose``.

    chainrule train                       # MLP on the bundled digits, prints the test accuracy
    chainrule train --epochs 5 --out runs/a
    chainrule train --resume runs/a/checkpoint.safetensors --epochs 10
    chainrule train --jit                 # the training step captured once and replayed
    chainrule diagnose --depth 20 --activation sigmoid --init normal

Errors in flags or checkpoints are reported on one line (exit status 2), never as tracebacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


class CLIError(Exception):
    """A user error, reported on one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise CLIError(f"{self.prog}: {message}")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


def _hidden(s: str) -> list[int]:
    try:
        sizes = [int(p) for p in s.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer widths like 256,128, got {s!r}") from None
    if not sizes or any(v <= 0 for v in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {s!r}")
    return sizes


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "silu", "elu", "leaky_relu")


def _train_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train an MLP on the bundled 8x8 digits",
                       description="Train an MLP classifier on the bundled UCI digits (1,797 "
                                   "8x8 images), evaluate on a held-out split, save a checkpoint.")
    p.add_argument("--hidden", type=_hidden, default=[256, 128],
                   help="hidden layer widths, comma-separated (default 256,128)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default 1e-3 for adam/adamw/rmsprop, 0.05 for sgd, "
                        "0.01 for adagrad)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD/RMSprop momentum")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--epochs", type=_positive_int, default=30)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--out", default="runs/digits", help="output folder (default runs/digits)")
    p.add_argument("--resume", default=None, metavar="CHECKPOINT",
                   help="continue from a checkpoint written by an earlier run")
    p.add_argument("--plot", action="store_true",
                   help="write loss and accuracy curves to OUT/curves.png (needs matplotlib)")
    p.add_argument("--diagnose", action="store_true",
                   help="monitor gradient health during training and print the report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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

    default_lr = {"adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3, "sgd": 0.05, "adagrad": 0.01}
    lr = default_lr[name] if lr is None else lr
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay or 1e-2)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "rmsprop":
        return optim.RMSprop(params, lr=lr, momentum=0.0 if momentum == 0.9 else momentum,
                             weight_decay=weight_decay)
    return optim.Adagrad(params, lr=lr, weight_decay=weight_decay)


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


_ARG_KEYS = ("hidden", "activation", "optimizer", "lr", "momentum", "weight_decay",
             "batch_size", "seed", "test_fraction")


def train(args) -> dict:
    """Run the main job; returns the final metrics (also printed)."""
    import numpy as np  # noqa: PLC0415 - only for the host-side shuffle order

    import chainrule as cr  # noqa: PLC0415

    from . import io  # noqa: PLC0415
    from .data import load_digits  # noqa: PLC0415
    from .nn import functional as F  # noqa: PLC0415

    if not 0.0 < args.test_fraction < 1.0:
        raise CLIError(f"chainrule train: --test-fraction must be in (0, 1), got "
                       f"{args.test_fraction}")
    start_epoch = 0
    history = {"epoch": [], "train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
    ckpt = None
    if args.resume:
        try:
            ckpt = io.load(args.resume)
        except FileNotFoundError:
            raise CLIError(f"chainrule train: checkpoint not found: {args.resume}") from None
        except Exception as e:  # corrupt, truncated, not a checkpoint
            raise CLIError(f"chainrule train: cannot read checkpoint {args.resume}: "
                           f"{str(e).splitlines()[0]}") from None
        if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
            raise CLIError(f"chainrule train: {args.resume} is not a chainrule train checkpoint")
        meta = json.loads(ckpt["meta"])
        for k in _ARG_KEYS:  # the run's settings come from the checkpoint
            setattr(args, k, meta["args"][k])
        start_epoch = int(meta["epoch"])
        history = meta["history"]

    cr.manual_seed(args.seed)
    X, y = load_digits()
    n = X.shape[0]
    order = np.random.default_rng(args.seed).permutation(n)
    n_test = round(n * args.test_fraction)
    te, tr = order[:n_test], order[n_test:]
    Xtr, ytr, Xte, yte = X[tr], y[tr], X[te], y[te]

    model = build_model(X.shape[1], args.hidden, 10, args.activation)
    opt = _make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                          args.weight_decay)
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CLIError(f"chainrule train: checkpoint {args.resume} does not fit this model: "
                           f"{str(e).splitlines()[0]}") from None

    monitor = None
    if args.diagnose:
        from .diagnostics import GradientMonitor  # noqa: PLC0415

        monitor = GradientMonitor(model, optimizer=opt)

    def step(xb, yb):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss, logits.detach()

    if getattr(args, "jit", False):
        if monitor is not None:
            raise CLIError("chainrule train: --jit and --diagnose cannot be combined (the "
                           "gradient monitor reads every step's gradients on the host)")
        step = cr.jit(step)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "checkpoint.safetensors")
    bs = args.batch_size
    ntr = Xtr.shape[0]
    if start_epoch >= args.epochs:
        print(f"checkpoint is at epoch {start_epoch}; nothing to do for --epochs {args.epochs}")
    for epoch in range(start_epoch, args.epochs):
        # the shuffle depends only on (seed, epoch): a resumed run sees the same batches
        perm = np.random.default_rng([args.seed, epoch]).permutation(ntr)
        t0 = time.perf_counter()
        tot_loss, tot_correct = 0.0, 0
        bar = _progress(range(0, ntr, bs), epoch, args)
        for i in bar:
            idx = perm[i:i + bs]
            xb, yb = Xtr[idx], ytr[idx]
            loss, logits = step(xb, yb)
            if monitor is not None:
                monitor.step()
            lv = float(loss)
            tot_loss += lv * len(idx)
            tot_correct += int((logits.detach().argmax(1) == yb).sum())
            seen = i + len(idx)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.3f}",
                                samples_s=f"{seen / max(time.perf_counter() - t0, 1e-9):.0f}")
        test_loss, test_acc = _evaluate(model, Xte, yte)
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(tot_loss / ntr)
        history["train_acc"].append(tot_correct / ntr)
        history["test_loss"].append(test_loss)
        history["test_acc"].append(test_acc)
        meta = {"epoch": epoch + 1, "history": history,
                "args": {k: getattr(args, k) for k in _ARG_KEYS}}
        io.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "meta": json.dumps(meta)}, path)
    test_loss, test_acc = _evaluate(model, Xte, yte)
    if args.plot:
        _plot(history, os.path.join(args.out, "curves.png"))
    if monitor is not None:
        print(monitor.report().to_table())
        monitor.remove()
    print(f"checkpoint: {path}")
    print(f"test accuracy: {100 * test_acc:.1f}%")
    return {"test_accuracy": test_acc, "test_loss": test_loss, "model": model}


def _progress(it, epoch, args):
    if args.quiet:
        return it
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(it, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, unit="batch",
                file=sys.stderr, disable=None)


def _plot(history, path):
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise CLIError("chainrule train: --plot needs matplotlib "
                       "(pip install 'chainrule[plot]')") from None
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
    fig.savefig(path, dpi=100)
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
        if args.command == "train":
            train(args)
        else:
            args.run(args)
        return 0
    except CLIError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
