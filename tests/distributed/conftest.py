"""Run a script as an MPI job: ``mpirun(code)`` writes ``code`` to a file, launches it with
``mpiexec -n 2`` (through chainrule.distributed.launch, as ``chainrule train --nproc`` does)
under a timeout and returns (exit code, output, seconds). Skipped, with the reason, where
mpi4py or mpiexec is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from chainrule.distributed.launch import find_mpiexec, mpiexec_command

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


def _skip_reason():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'chainrule[dist]')"
    if find_mpiexec() is None:
        return "no mpiexec (pip install mpich)"
    return None


def _require_mpi():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


@pytest.fixture
def mpirun(tmp_path):
    _require_mpi()

    def run(code: str, n: int = 2, timeout: float = 60, args=()):
        script = tmp_path / "job.py"
        script.write_text(textwrap.dedent(code))
        cmd = mpiexec_command(n, [sys.executable, str(script), *map(str, args)])
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                           cwd=tmp_path)
        return p.returncode, p.stdout + p.stderr, time.perf_counter() - t0

    return run


@pytest.fixture
def cli(tmp_path):
    """``cli(args)`` runs ``python -m chainrule *args`` in tmp_path (skipped without MPI)."""
    _require_mpi()

    def run(args, timeout: float = 120):
        return subprocess.run([sys.executable, "-m", "chainrule", *args], capture_output=True,
                              text=True, timeout=timeout, env=_env(), cwd=tmp_path)

    return run
