"""Starting a job under MPI: find ``mpiexec`` and build its command line.

The ``mpich`` wheel puts ``mpiexec`` (MPICH's hydra) next to the Python executable of the
environment it is installed in; a system MPI's ``mpiexec`` on PATH works as well.

Example:
    >>> from chainrule.distributed.launch import mpiexec_command
    >>> mpiexec_command(2, ["python", "train.py"], mpiexec="mpiexec")[-4:]
    ['-n', '2', 'python', 'train.py']
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def find_mpiexec() -> str | None:
    """Path of ``mpiexec``: next to this Python first (the mpich wheel), then on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec")


def _flavour(mpiexec: str) -> str:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return "hydra" if "HYDRA" in out else "openmpi" if "Open MPI" in out else ""


def mpiexec_command(nproc: int, argv: list, mpiexec: str | None = None) -> list:
    """The command that runs ``argv`` as ``nproc`` ranks on this machine.

    With MPICH's hydra, ``-disable-auto-cleanup`` keeps the other ranks alive when one dies
    (killed by a signal), so they can report which rank died before they end the job
    themselves; without it hydra kills them at once and only its own message remains. Open
    MPI gets ``--oversubscribe`` (more ranks than cores, as in a container) and, as root,
    ``--allow-run-as-root``.
    """
    if mpiexec is None:
        mpiexec = find_mpiexec()
        if mpiexec is None:
            raise FileNotFoundError("mpiexec not found: pip install 'chainrule[dist]' (the "
                                    "mpich wheel brings mpiexec) or install an MPI library")
    cmd = [mpiexec]
    flavour = _flavour(mpiexec)
    if flavour == "hydra":
        cmd += ["-launcher", "fork", "-disable-auto-cleanup"]
    elif flavour == "openmpi":
        cmd += ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd += ["--allow-run-as-root"]
    return [*cmd, "-n", str(nproc), *argv]
