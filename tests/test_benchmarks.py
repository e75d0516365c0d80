"""The benchmark runner (benchmarks/run.py): processes, the table, the agreement check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import libs  # noqa: E402
import run  # noqa: E402
import worker  # noqa: E402

ROW = re.compile(r"^(\w+)\s+(\S+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+-\d+\.\d+)\s+(\d+)\s+(\d+)"
                 r"\s+(\S+)\s+(\S+)\s+(ok|DISAGREES)$")


def _rows(out: str) -> dict:
    return {(m[1], m[2]): m for m in map(ROW.match, out.splitlines()) if m}


def test_runner_end_to_end_in_subprocesses(tmp_path):
    md = tmp_path / "bench.md"
    p = subprocess.run(
        [sys.executable, os.path.join(BENCH, "run.py"), "--workloads", "tiny", "--libs",
         "chainrule", "numpy", "--rounds", "1", "--warmup-s", "0", "--measure-s", "0",
         "--min-steps", "3", "--threads", "1", "--markdown", str(md)],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = _rows(p.stdout)
    assert set(rows) == {("tiny", "chainrule"), ("tiny", "numpy")}
    for m in rows.values():
        assert float(m[3]) > 0 and m[6] == "1" and int(m[7]) >= 3 and m[10] == "ok"
        assert m[8] == m[9] == "-"  # no PyTorch in the run: no ratio, plain or paired
    assert "host: " in p.stdout and "threads: 1" in p.stdout and "load average" in p.stdout
    assert f"confined to CPU(s) {run.pinned_cpus(1)[0]}" in p.stdout
    assert re.search(r"round 1: tiny\s+chainrule\s+\d+\.\d+ ms", p.stderr)
    text = md.read_text()
    assert text.startswith("### 1 thread: `python benchmarks/run.py --workloads tiny")
    assert "| tiny-op chain" in text and "check values" in text


def test_threads_reach_the_child_before_import():
    env = run.child_env(1, "same")
    assert all(env[v] == "1" for v in run.THREAD_VARS)
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    os.environ["OMP_NUM_THREADS"] = "3"
    try:
        env = run.child_env(None, "own")
    finally:
        del os.environ["OMP_NUM_THREADS"]
    assert "OMP_NUM_THREADS" not in env and "MALLOC_MMAP_THRESHOLD_" not in env


def _wrong_chainrule(threads):
    """chainrule with its inputs nudged by 1%: a fast wrong program."""
    ns = libs._chainrule(threads)
    right = ns.tensor
    ns.tensor = lambda a, requires_grad=False: right(a * 1.01 if a.dtype.kind == "f" else a,
                                                      requires_grad)
    return ns


def test_a_wrong_library_is_flagged(monkeypatch, capsys):
    monkeypatch.setitem(libs.LIBRARIES, "wrong",
                        libs.Library("wrong", "torchlike", ("numpy",), _wrong_chainrule))

    def in_process(lib, w, threads, budget, heap, timeout, pin):  # the worker, without a process
        return worker.run(lib, w, threads, 0.0, 0.0, 2, 2)

    monkeypatch.setattr(run, "run_worker", in_process)
    status = run.main(["--workloads", "tiny", "--libs", "chainrule", "wrong", "numpy",
                       "--rounds", "1"])
    out = capsys.readouterr().out
    assert status == 1
    rows = _rows(out)
    assert rows[("tiny", "wrong")][10] == "DISAGREES"
    assert rows[("tiny", "chainrule")][10] == rows[("tiny", "numpy")][10] == "ok"
    assert "!!! CHECK FAILED" in out and "!!! tiny / wrong: differs from chainrule" in out


def test_failures_and_missing_libraries_are_reported(monkeypatch, capsys):
    monkeypatch.setitem(libs.LIBRARIES, "absent",
                        libs.Library("absent", "torchlike", ("no_such_module_xyz",), None))
    monkeypatch.setattr(run, "run_worker", lambda *a: {"error": "RuntimeError: boom"})
    assert run.main(["--workloads", "tiny", "--libs", "numpy", "absent", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "skipped: absent: no_such_module_xyz is not installed" in out
    assert re.search(r"tiny\s+numpy\s+error\s+RuntimeError: boom", out)


def test_summary_is_the_median_of_round_medians():
    def res(ms, check):
        s = {"median": ms / 1e3, "q1": ms / 1e3, "q3": ms / 1e3 + 1e-4, "min": 0, "max": 0,
             "n": 5}
        return {"steps": {"main": s}, "check": check}

    results = {("mlp", "torch"): [res(10, [1.0]), res(12, [1.0]), res(11, [1.0])],
               ("mlp", "chainrule"): [res(20, [1.0]), res(40, [1.0]), res(22, [1.0 + 1e-6])]}
    rows = run.summarize(results, 1e-4)
    cr = rows[("mlp", "chainrule")]
    assert cr["median"] == pytest.approx(0.022) and cr["ratio"] == pytest.approx(2.0)
    assert (cr["lo"], cr["hi"], cr["agrees"]) == (0.020, 0.040, True)
    results[("mlp", "chainrule")][2]["check"] = [1.001]  # changes between rounds
    assert run.summarize(results, 1e-4)[("mlp", "chainrule")]["agrees"] is False


def test_paired_ratio_is_the_median_of_each_rounds_ratio():
    def res(ms):
        s = {"median": ms / 1e3, "q1": ms / 1e3, "q3": ms / 1e3, "min": 0, "max": 0, "n": 5}
        return {"steps": {"main": s}, "check": [1.0]}

    # a slow spell in round 2 doubles both; round 3 has torch slow alone
    results = {("mlp", "torch"): [res(10), res(20), res(15)],
               ("mlp", "chainrule"): [res(20), res(40), res(15)]}
    cr = run.summarize(results, 1e-4)[("mlp", "chainrule")]
    assert cr["ratio"] == pytest.approx(20 / 15)  # of the medians
    assert cr["paired"] == pytest.approx(2.0)  # rounds' ratios 2, 2, 1
    assert run.summarize(results, 1e-4)[("mlp", "torch")]["paired"] == pytest.approx(1.0)


def test_a_wrong_reference_is_flagged_not_the_others():
    def res(check):
        s = {"median": 0.01, "q1": 0.01, "q3": 0.01, "min": 0, "max": 0, "n": 5}
        return [{"steps": {"main": s}, "check": check}]

    results = {("mlp", "torch"): res([1.01]), ("mlp", "chainrule"): res([1.0]),
               ("mlp", "jax"): res([1.0]), ("mlp", "numpy"): res([1.0])}
    rows = run.summarize(results, 1e-4)
    assert [lib for (_, lib), r in rows.items() if not r["agrees"]] == ["torch"]
    out = "\n".join(run.check_lines(rows, ["mlp"], ["torch", "chainrule", "jax", "numpy"], 1e-4))
    assert "!!! mlp / torch: differs from most of the others" in out
    results[("mlp", "numpy")] = res([1.02])  # no two of three agree: all flagged
    del results[("mlp", "jax")]
    rows = run.summarize(results, 1e-4)
    assert all(not r["agrees"] for r in rows.values())


@pytest.mark.parametrize("argv, msg", [
    (["--workloads", "nope"], "unknown workload 'nope'"),
    (["--libs", "nope"], "unknown library 'nope'"),
    (["--threads", "two"], "--threads takes 'default' or a positive number"),
    (["--rounds", "0"], "--rounds must be at least 1"),
])
def test_bad_flags_are_named(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        run.main(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


def test_worker_keeps_to_its_cpus(capsys):
    cpu = run.pinned_cpus(1)[0]
    code = (f"import os, sys; sys.argv[1:] = ['numpy', 'tiny', '--cpus', '{cpu}', "
            "'--warmup-s', '0', '--measure-s', '0', '--min-steps', '1']; "
            "import worker; worker.main(); print('CPUS', sorted(os.sched_getaffinity(0)))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=BENCH,
                       timeout=60)
    assert f"CPUS [{cpu}]" in p.stdout, p.stderr


def test_worker_reports_an_error_as_a_result(capsys):
    assert worker.main(["numpy", "transformer"]) == 0
    assert "has no numpy version" in capsys.readouterr().out


def test_libraries_use_one_namespace_shape():
    ns = libs.load("numpy")
    assert ns.family == "numpy" and ns.name == "numpy"
    assert isinstance(ns, SimpleNamespace)


def test_chainrule_jit_adapter_replays_the_whole_step_bitwise():
    """chainrule-jit captures the whole step (forward, backward, optimizer) and leaves the same
    check values as chainrule eager, bit for bit."""
    import workloads

    for name in ("tiny", "mlp"):
        checks = {}
        for lib in ("chainrule", "chainrule-jit"):
            steps, check = workloads.build(name, libs.load(lib))
            checks[lib] = [check(steps["main"]()) for _ in range(4)]
        assert checks["chainrule"] == checks["chainrule-jit"], name
        jitted = steps["main"]
        assert sum(e.hits for e in jitted._cache.values()) >= 2, jitted.explain()
