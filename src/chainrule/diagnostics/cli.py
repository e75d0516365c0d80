"""``chainrule diagnose``: train a deep MLP configuration for a few steps on the bundled digits
with a :class:`GradientMonitor` attached and print its report.

    chainrule diagnose                                     # 20 layers, ReLU, He init
    chainrule diagnose --activation sigmoid --init normal-small
    chainrule diagnose --init unit --norm layer --steps 50
    chainrule diagnose --init unit --clip 1 --json          # JSON lines instead of the table
    chainrule diagnose --plot health.png                    # also write the figure

Example:
    >>> from chainrule.cli import main
    >>> main(["diagnose", "--depth", "4", "--width", "8", "--steps", "2"])  # doctest: +ELLIPSIS
    diagnose: 4 Linear layers of width 8, relu, init he, ...
    0
"""

from __future__ import annotations

import argparse
import sys

from ..argtypes import int_at_least, positive_float
from ..errors import CLIError
from .models import ACTIVATIONS, INITS, NORMS

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``chainrule diagnose`` on ``subparsers`` (from ``add_subparsers``); the parsed
    arguments carry ``run``, the function that executes the command.

    Example:
        >>> import argparse
        >>> from chainrule.diagnostics.cli import add_parser
        >>> sub = argparse.ArgumentParser(prog="chainrule").add_subparsers(dest="command")
        >>> p = add_parser(sub)
        >>> args = p.parse_args(["--init", "unit", "--norm", "layer"])
        >>> args.init, args.norm, args.depth, callable(args.run)
        ('unit', 'layer', 20, True)
    """
    p = subparsers.add_parser(
        "diagnose", help="gradient health of a deep MLP configuration on the bundled digits",
        description="Train a deep MLP on the bundled digits for a few steps with a gradient "
                    "monitor attached and print its report: per-layer activation and gradient "
                    "statistics, and findings (vanishing, exploding, dead, saturated, "
                    "non-finite) with the remedies that fit.")
    p.add_argument("--depth", type=int_at_least(2), default=20,
                   help="number of Linear layers (default: %(default)s)")
    p.add_argument("--width", type=int_at_least(1), default=64,
                   help="width of the hidden layers (default: %(default)s)")
    p.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                   help="activation after each hidden Linear (default: %(default)s)")
    p.add_argument("--init", choices=INITS, default="he",
                   help="weight initialisation: normal-small = N(0, 0.01^2), xavier = Glorot "
                        "normal, he = He normal, unit = N(0, 1), default = PyTorch's Linear "
                        "default (default: he)")
    p.add_argument("--norm", choices=NORMS, default="none",
                   help="normalisation after each hidden Linear (default: %(default)s)")
    p.add_argument("--residual", action="store_true",
                   help="residual connections around the hidden blocks")
    p.add_argument("--clip", type=positive_float, default=None, metavar="MAX_NORM",
                   help="clip the total gradient norm to MAX_NORM before each step")
    p.add_argument("--steps", type=int_at_least(1), default=20,
                   help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int_at_least(2), default=64,
                   help="batch size (default: %(default)s)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="optimiser (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=1e-3,
                   help="learning rate (default: %(default)s)")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="seed of the weights and the batches (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print the report as JSON lines instead of the table")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also write the gradient-norm and activation-histogram figure "
                        "(needs matplotlib)")
    p.set_defaults(run=run)
    return p


def run(args) -> dict:
    """Execute ``chainrule diagnose`` for parsed ``args``; prints the report and returns
    ``{"report", "gradient_ratio", "test_accuracy"}``. User errors raise
    ``chainrule.errors.CLIError``. With ``--json``, stdout holds only the JSON lines (the
    configuration line goes to stderr)."""
    from .models import run_digits  # noqa: PLC0415

    if args.residual and args.depth < 3:
        raise CLIError("chainrule diagnose: --residual needs --depth 3 or more (residual "
                       "connections go around the hidden width-to-width blocks)")
    print(f"diagnose: {args.depth} Linear layers of width {args.width}, {args.activation}, "
          f"init {args.init}, norm {args.norm}" + (", residual" if args.residual else "")
          + (f", clip {args.clip:g}" if args.clip else "")
          + f"; {args.steps} {args.optimizer} steps (lr {args.lr:g}, batch {args.batch_size}), "
          f"seed {args.seed}", file=sys.stderr if args.json else sys.stdout)
    try:
        res = run_digits(depth=args.depth, width=args.width, activation=args.activation,
                         init=args.init, norm=args.norm, residual=args.residual,
                         clip=args.clip, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, optimizer=args.optimizer, seed=args.seed)
    except ValueError as e:
        raise CLIError(f"chainrule diagnose: {e}") from None
    report = res.report
    if args.json:
        print(report.to_json(), end="")
    else:
        print(report.to_table())
        print(f"test accuracy after {args.steps} steps: {100 * res.test_accuracy:.1f}%")
    if args.plot:
        try:
            report.plot(args.plot)
        except ImportError as e:
            raise CLIError(f"chainrule diagnose: --plot: {e}") from None
        except OSError as e:
            raise CLIError(f"chainrule diagnose: cannot write {args.plot}: {e.strerror}") from None
        if not args.json:
            print(f"figure: {args.plot}")
    return {"report": report, "gradient_ratio": res.gradient_ratio,
            "test_accuracy": res.test_accuracy}
