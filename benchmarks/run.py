"""Benchmark runner: every (library, workload) in a fresh process of its own, taking turns.

    python benchmarks/run.py --quick                       # < 3 min, default threads
    python benchmarks/run.py --threads 1 --workloads lstm mlp --libs chainrule torch numpy
    python benchmarks/run.py --threads default 1 --markdown bench.md   # the full re-measure

Each (library, workload) pair runs in its own process (``worker.py``, started with this
Python), so no library shares its process, heap or thread pools with another. Rounds take
turns: round 1 runs every pair once, round 2 again (libraries in the reverse order), and so
on, so that drift on the machine hits all of them alike. Each process warms up, then times
many steps and reports their median and quartiles; the table gives, per pair, the median of
the round medians, the median step IQR, the range of the round medians, the ratio to
PyTorch eager (of the medians), and the paired ratio: the median over the rounds of each
round's ratio to PyTorch eager's process of the same round. The shared VMs have slow spells
of minutes that move every library's medians by up to 30% at 2 threads; within a round the
libraries run seconds apart, so a spell hits both sides of a round's ratio.

Threads (``--threads``): ``default`` leaves every library its own default (all cores); a
number N sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, VECLIB_MAXIMUM_THREADS,
XLA_FLAGS (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=N``) in the
child's environment before it starts, ``torch.set_num_threads(N)`` in PyTorch children, and
confines each child to N CPUs (``sched_setaffinity`` before any import; ``--no-pin`` leaves
that out), since XLA's CPU backend does not fully keep to its flags (jax issue #1539).
Heap (``--heap``): by default every child gets the glibc heap setting chainrule applies to
itself on import (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``, the values of
``chainrule/backend/memory.py``), so that the heap is alike for all; ``--heap own`` leaves
each library as it comes (chainrule still sets its own).

Check values (losses of the first steps from the same seeded weights and data; ``v.Hv`` and
``|Hv|_1`` for the Hessian-vector product) are printed with the table, with their difference
from PyTorch eager's (else the first library's). A library whose values differ by more than a
relative ``--rtol`` from most of the others (or change between its rounds) is flagged in the
table and below it, and the exit status is 1, so that a fast wrong program cannot win.

Rounds: three by default (0.5 s warm-up, >= 1.5 s and >= 10 steps timed per process); the
compiled anchors (torch.compile, JAX) run in the first round only, since each of their
processes compiles afresh (torch.compile: 10-60 s on 2 cores; compile time is never timed).
Quick mode (``--quick``): two rounds of shorter processes, and torch.compile is skipped; the
output says so. ``--rounds``, ``--anchor-rounds`` and the per-process flags override these.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import libs  # noqa: E402
import workloads  # noqa: E402
from common import THREAD_VARS  # noqa: E402

HEAP_VARS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
BASE = "torch"  # ratios are to PyTorch eager

# per-process settings: (warm-up seconds, measured seconds, min steps), rounds
MODES = {"quick": ((0.3, 0.8, 5), 2), "full": ((0.5, 1.5, 10), 3)}


def child_env(threads: int | None, heap: str) -> dict:
    """The environment of a worker: thread variables set (or cleared, for the default),
    the heap setting, the repository's ``src`` first on the import path."""
    env = dict(os.environ)
    for v in (*THREAD_VARS, *HEAP_VARS):
        env.pop(v, None)
    if threads:
        env.update({v: str(threads) for v in THREAD_VARS})
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            f"intra_op_parallelism_threads={threads}").strip()
    if heap == "same":
        env.update(HEAP_VARS)
    env["JAX_PLATFORMS"] = "cpu"
    src = os.path.join(ROOT, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def pinned_cpus(threads: int | None) -> list:
    """The CPUs a worker with ``threads`` threads is confined to: the first ``threads`` this
    process may use (none for the default setting, or where affinity is not supported)."""
    if not threads or not hasattr(os, "sched_getaffinity"):
        return []
    return sorted(os.sched_getaffinity(0))[:threads]


def run_worker(lib: str, workload: str, threads: int | None, budget: tuple, heap: str,
               timeout: float, pin: bool = True) -> dict:
    """Start one worker process and return its result (or ``error``)."""
    warm, meas, min_steps = budget
    cmd = [sys.executable, os.path.join(HERE, "worker.py"), lib, workload,
           "--warmup-s", str(warm), "--measure-s", str(meas), "--min-steps", str(min_steps)]
    if threads:
        cmd += ["--threads", str(threads)]
    cpus = pinned_cpus(threads) if pin else []
    if cpus:
        cmd += ["--cpus", ",".join(map(str, cpus))]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=child_env(threads, heap), capture_output=True, text=True,
                           timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            res["wall_s"] = wall
            if "error" in res:
                res["stderr"] = p.stderr[-2000:]
            return res
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit status {p.returncode}: {tail}", "stderr": p.stderr[-2000:]}


# ---------------------------------------------------------------- host
def host_info() -> dict:
    """CPU model and core count (lscpu), memory, OS, date, load average."""
    info = {"machine": platform.machine(), "cores": os.cpu_count(), "cpu": "?"}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cpu = fields.get("Model name", "?")
        if fields.get("CPU family") and fields.get("Model"):
            cpu += f" (family {fields['CPU family']}, model {fields['Model']})"
        info["cpu"] = cpu
        info["cores"] = int(fields.get("CPU(s)", info["cores"]))
        if fields.get("Hypervisor vendor"):
            info["cpu"] += f", {fields['Hypervisor vendor']} guest"
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        info["memory"] = f"{kb / 2 ** 20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    info["os"] = f"{platform.system()} {platform.release()}"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip()
        if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                          capture_output=True, text=True).stdout.strip():
            info["commit"] += " with uncommitted changes"
    except OSError:
        pass
    return info


def _busy(cores: int) -> str | None:
    """A warning when other processes keep the machine busy (1-minute load above half the
    cores): then multi-threaded figures mostly measure waiting for descheduled threads."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    if load <= cores / 2:
        return None
    return (f"WARNING: load average {load:.1f} on {cores} cores at start: other processes "
            "compete for the cores; these figures are smoke checks, not measurements")


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# ---------------------------------------------------------------- one thread setting
def plan(libnames: list, names: list) -> tuple:
    """(cells to run, skipped (library, why), not defined (workload, library))."""
    todo, skipped, undefined = [], [], []
    for lib in libnames:
        why = libs.LIBRARIES[lib].missing()
        if why:
            skipped.append((lib, why))
    ok = [lib for lib in libnames if lib not in dict(skipped)]
    for w in names:
        for lib in ok:
            if libs.LIBRARIES[lib].family in workloads.WORKLOADS[w].builders:
                todo.append((w, lib))
            else:
                undefined.append((w, lib))
    return todo, skipped, undefined


def measure(cells: list, threads: int | None, rounds: int, anchor_rounds: int, budget: tuple,
            heap: str, timeout: float, pin: bool = True, log=print) -> dict:
    """Run the rounds; returns (workload, library) -> list of worker results."""
    results: dict = {c: [] for c in cells}
    for r in range(max(rounds, anchor_rounds)):
        order = cells if r % 2 == 0 else [c for w in dict.fromkeys(w for w, _ in cells)
                                          for c in reversed(cells) if c[0] == w]
        for cell in order:
            w, lib = cell
            n = anchor_rounds if lib in libs.COMPILED else rounds
            if r >= n or any("error" in x for x in results[cell]):
                continue
            res = run_worker(lib, w, threads, budget, heap, timeout, pin)
            results[cell].append(res)
            what = (res["error"] if "error" in res
                    else f"{res['steps']['main']['median'] * 1e3:.3f} ms")
            log(f"  round {r + 1}: {w:<12} {lib:<14} {what}  ({res.get('wall_s', 0):.1f} s)",
                file=sys.stderr)
    return results


def summarize(results: dict, rtol: float) -> dict:
    """Per cell: median of round medians, median IQR, round range, ratio, check verdict."""
    rows = {}
    for (w, lib), rs in results.items():
        good = [x for x in rs if "error" not in x]
        if not good:
            rows[(w, lib)] = {"error": rs[0]["error"] if rs else "not run"}
            continue
        meds = [x["steps"]["main"]["median"] for x in good]
        row = {"median": statistics.median(meds),
               "iqr": statistics.median(x["steps"]["main"]["q3"] - x["steps"]["main"]["q1"]
                                        for x in good),
               "lo": min(meds), "hi": max(meds), "rounds": len(good), "meds": meds,
               "steps": sum(x["steps"]["main"]["n"] for x in good), "check": good[0]["check"],
               "extras": {k: statistics.median(x["steps"][k]["median"] for x in good)
                          for k in good[0]["steps"] if k != "main"}}
        # the check values must not change between rounds of one library either
        row["unsteady"] = any(_rel(a, b) > rtol for x in good[1:]
                              for a, b in zip(x["check"], good[0]["check"]))
        rows[(w, lib)] = row
    for w in dict.fromkeys(w for w, _ in results):
        cells = {lib: row for (ww, lib), row in rows.items() if ww == w and "error" not in row}
        ref = BASE if BASE in cells else next(iter(cells), None)
        base = cells.get(BASE)
        for lib, row in cells.items():
            row["ratio"] = row["median"] / base["median"] if base else None
            # round by round: a slow spell of the host that spans a round (all libraries take
            # their turn within seconds) hits both sides of each of these ratios
            row["paired"] = (statistics.median(a / b for a, b in zip(row["meds"], base["meds"]))
                             if base else None)
            row["ref"] = ref
            row["diff"] = _diff(row["check"], cells[ref]["check"])
            # agreeing with most of the others, so that a wrong reference is caught too
            others = [o["check"] for o2, o in cells.items() if o2 != lib]
            matches = sum(_diff(row["check"], o) <= rtol for o in others)
            row["agrees"] = 2 * matches >= len(others) and not row["unsteady"]
    return rows


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def _diff(check: list, ref: list) -> float:
    """Largest relative difference of two lists of check values (inf if they differ in length)."""
    if len(check) != len(ref):
        return float("inf")
    return max((_rel(a, b) for a, b in zip(check, ref)), default=0.0)


def table(rows: dict, names: list, libnames: list) -> list:
    """The plain-text table, one line per (workload, library)."""
    out = [f"{'workload':<12} {'library':<14} {'median ms':>10} {'IQR ms':>8} "
           f"{'round range ms':>17} {'rounds':>6} {'steps':>6} {'vs torch':>8} {'paired':>6}"
           "  check"]
    for w in names:
        for lib in libnames:
            row = rows.get((w, lib))
            if row is None:
                continue
            if "error" in row:
                out.append(f"{w:<12} {lib:<14} {'error':>10}  {row['error'][:70]}")
                continue
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] else "-"
            paired = f"{row['paired']:.2f}x" if row["paired"] else "-"
            verdict = "ok" if row["agrees"] else "DISAGREES"
            rng = f"{row['lo'] * 1e3:.3f}-{row['hi'] * 1e3:.3f}"
            out.append(f"{w:<12} {lib:<14} {row['median'] * 1e3:>10.3f} {row['iqr'] * 1e3:>8.3f} "
                       f"{rng:>17} {row['rounds']:>6} {row['steps']:>6} {ratio:>8} {paired:>6}"
                       f"  {verdict}")
    return out


def check_lines(rows: dict, names: list, libnames: list, rtol: float) -> list:
    """Check values per workload and library, and loud lines for every disagreement."""
    out = [f"check values (losses of the first steps; hvp: v.Hv and |Hv|_1); each must agree "
           f"with most of the others to a relative {rtol:g} (differences shown: to {BASE}, "
           "else the first library):"]
    bad = []
    for w in names:
        out.append(f"  {w}:")
        for lib in libnames:
            row = rows.get((w, lib))
            if row is None or "error" in row:
                continue
            vals = ", ".join(f"{v:.8g}" for v in row["check"])
            out.append(f"    {lib:<14} {vals}  (max rel. diff {row['diff']:.1e})")
            if not row["agrees"]:
                why = ("its check values change between rounds" if row["unsteady"] else
                       f"differs from {row['ref']} by {row['diff']:.1e} (relative)"
                       if row["diff"] > rtol else "differs from most of the others")
                bad.append(f"!!! {w} / {lib}: {why}; its time does not count")
    if bad:
        out += ["", "!!! CHECK FAILED: the libraries do not compute the same thing"] + bad
    return out


def extra_lines(rows: dict, names: list, libnames: list) -> list:
    """Ratios within one library from the extra products timed in its own process."""
    pairs = (("main", "grad", "hvp / grad"), ("jvp", "forward", "jvp / forward"),
             ("hvp-rev", "grad", "hvp-rev (double backward) / grad"))
    out = []
    for w in names:
        for lib in libnames:
            row = rows.get((w, lib))
            if not row or "error" in row or not row["extras"]:
                continue
            t = dict(row["extras"], main=row["median"])
            parts = [f"{label} {t[a] / t[b]:.2f}x" for a, b, label in pairs if a in t and b in t]
            ms = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in row["extras"].items())
            out.append(f"  {w} / {lib}: {'; '.join(parts)}  ({ms})")
    return ["within one library (same process, same rounds):"] + out if out else []


def pools_and_versions(results: dict) -> tuple:
    versions: dict = {}
    pools: dict = {}
    for (_, lib), rs in results.items():
        for x in rs:
            if "error" not in x:
                versions.update(x["versions"])
                pools.setdefault(lib, x["pools"])
    return versions, pools


def describe(threads, host, versions, pools, load0, load1, when, notes) -> list:
    th = "default (each library's own: all cores)" if not threads else f"{threads}"
    vs = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "torch threads")
    out = [f"host: {host['cpu']}, {host['cores']} cores, {host.get('memory', '?')}, "
           f"{host['os']}",
           f"threads: {th}; torch threads {versions.get('torch threads', '-')}",
           f"versions: {vs}" + (f"; chainrule commit {host['commit']}" if host.get("commit")
                                else ""),
           "thread pools seen by threadpoolctl:"]
    out += [f"  {lib}: {'; '.join(p) or 'none'}" for lib, p in pools.items()]
    out.append(f"date: {when}; load average (1, 5, 15 min) at start {load0}, at end {load1}")
    out += notes
    return out


def markdown(cmd, threads, desc, tab, checks, extras, rows, names, libnames, titles) -> str:
    th = "default threads" if not threads else f"{threads} thread{'s' if threads > 1 else ''}"
    head = "| workload | " + " | ".join(libnames) + " |"
    lines = [f"### {th}: `{cmd}`", "", head, "|---" * (len(libnames) + 1) + "|"]
    for w in names:
        cells = []
        for lib in libnames:
            row = rows.get((w, lib))
            if row is None:
                cells.append("-")
            elif "error" in row:
                cells.append("error")
            else:
                c = f"{row['median'] * 1e3:.3g} ms"
                if row["ratio"] and lib != BASE:
                    c += f" ({row['ratio']:.2f}x)"
                if not row["agrees"]:
                    c += " **DISAGREES**"
                cells.append(c)
        lines.append(f"| {titles[w]} | " + " | ".join(cells) + " |")
    lines += ["", "```", *desc, "", *tab, "", *checks, *([""] + extras if extras else []), "```",
              ""]
    return "\n".join(lines)


def run_setting(args, threads, names, libnames, log=print) -> tuple:
    """Everything for one thread setting; returns (text lines, markdown, all agree)."""
    mode = "quick" if args.quick else "full"
    budget, rounds = MODES[mode]
    budget = tuple(d if v is None else v for d, v in
                   zip(budget, (args.warmup_s, args.measure_s, args.min_steps)))
    rounds = args.rounds or rounds
    anchor_rounds = args.anchor_rounds
    notes = []
    if anchor_rounds is None:
        anchor_rounds = 1
    cells, skipped, undefined = plan(libnames, names)
    if args.quick and args.anchor_rounds is None:
        dropped = [c for c in cells if c[1] == "torch.compile"]
        cells = [c for c in cells if c not in dropped]
        if dropped:
            skipped.append(("torch.compile", "skipped in quick mode (inductor compiles for "
                                             "10-60 s per process); run without --quick"))
    if any(lib in libs.COMPILED for _, lib in cells) and anchor_rounds != rounds:
        notes.append(f"compiled anchors ({', '.join(libs.COMPILED)}) ran {anchor_rounds} "
                     f"round(s), the others {rounds}")
    notes += [f"skipped: {lib}: {why}" for lib, why in skipped]
    if undefined:
        notes.append("not written for: " + ", ".join(f"{w}/{lib}" for w, lib in undefined))
    host, load0 = host_info(), load_avg()
    busy = _busy(host["cores"])
    if busy:
        log(busy, file=sys.stderr)
        notes.append(busy)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"# threads {threads or 'default'}: {len(cells)} pairs, {rounds} rounds", file=sys.stderr)
    results = measure(cells, threads, rounds, anchor_rounds, budget, args.heap, args.timeout,
                      pin=not args.no_pin, log=log)
    load1 = load_avg()
    rows = summarize(results, args.rtol)
    shown = [lib for lib in libnames if any(c[1] == lib for c in cells)]
    versions, pools = pools_and_versions(results)
    notes.append(f"per process: {budget[0]:g} s warm-up, then >= {budget[1]:g} s and "
                 f">= {budget[2]} steps timed; heap: {args.heap}")
    cpus = [] if args.no_pin else pinned_cpus(threads)
    if cpus:
        notes.append(f"every process confined to CPU(s) {','.join(map(str, cpus))}")
    desc = describe(threads, host, versions, pools, load0, load1, when, notes)
    tab = table(rows, names, shown)
    checks = check_lines(rows, names, shown, args.rtol)
    extras = extra_lines(rows, names, shown)
    cmd = "python benchmarks/run.py " + " ".join(
        a for a in (args.argv_text, f"--threads {threads or 'default'}") if a)
    titles = {w: workloads.WORKLOADS[w].title for w in names}
    md = markdown(cmd.strip(), threads, desc, tab, checks, extras, rows, names, shown, titles)
    ok = all(r.get("agrees", True) for r in rows.values())
    text = [f"## threads: {threads or 'default'}", *desc, "", *tab, "", *checks]
    if extras:
        text += [""] + extras
    return text, md, ok


def parse_threads(values: list) -> list:
    out = []
    for v in values:
        if v == "default":
            out.append(None)
        elif v.isdigit() and int(v) > 0:
            out.append(int(v))
        else:
            raise ValueError(f"--threads takes 'default' or a positive number, not {v!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--quick", action="store_true", help="short processes, 2 rounds, < 3 min")
    ap.add_argument("--threads", nargs="+", default=["default"],
                    help="'default' and/or thread counts; one table each (default: default)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (quick 2, full 3)")
    ap.add_argument("--anchor-rounds", type=int, default=None,
                    help="rounds of the compiled anchors (default 1; quick mode skips "
                         "torch.compile unless this is given)")
    ap.add_argument("--workloads", nargs="+", default=list(workloads.WORKLOADS),
                    metavar="W", help=f"from {', '.join(workloads.WORKLOADS)}")
    ap.add_argument("--libs", nargs="+", default=list(libs.LIBRARIES), metavar="L",
                    help=f"from {', '.join(libs.LIBRARIES)}")
    ap.add_argument("--warmup-s", type=float, help="warm-up seconds per process "
                    "(quick 0.3, full 0.5)")
    ap.add_argument("--measure-s", type=float, help="timed seconds per process "
                    "(quick 0.8, full 1.5)")
    ap.add_argument("--min-steps", type=int, help="timed steps per process at least "
                    "(quick 5, full 10)")
    ap.add_argument("--markdown", metavar="FILE", help="also write markdown blocks to FILE")
    ap.add_argument("--rtol", type=float, default=1e-4,
                    help="relative tolerance of the check values (default 1e-4)")
    ap.add_argument("--heap", choices=("same", "own"), default="same",
                    help="glibc heap setting: chainrule's for every process, or each its own")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per process")
    ap.add_argument("--no-pin", action="store_true",
                    help="with --threads N, do not confine each process to N CPUs")
    args = ap.parse_args(argv)
    for w in args.workloads:
        if w not in workloads.WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(workloads.WORKLOADS)}")
    for lib in args.libs:
        if lib not in libs.LIBRARIES:
            ap.error(f"unknown library {lib!r}; choose from {', '.join(libs.LIBRARIES)}")
    try:
        settings = parse_threads(args.threads)
    except ValueError as e:
        ap.error(str(e))
    for flag in ("rounds", "anchor_rounds", "min_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    for flag in ("warmup_s", "measure_s"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            ap.error(f"--{flag.replace('_', '-')} must not be negative")
    skip = {"--threads", "--markdown"}
    raw = list(sys.argv[1:] if argv is None else argv)
    kept, i = [], 0
    while i < len(raw):  # the command line without --threads/--markdown, for the tables
        if raw[i] in skip:
            i += 1
            while i < len(raw) and not raw[i].startswith("--"):
                i += 1
            continue
        kept.append(raw[i])
        i += 1
    args.argv_text = " ".join(kept)
    t0 = time.perf_counter()
    blocks, all_ok = [], True
    for threads in settings:
        text, md, ok = run_setting(args, threads, args.workloads, args.libs)
        print("\n".join(text), flush=True)
        print(flush=True)
        blocks.append(md)
        all_ok &= ok
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.markdown:
        try:
            with open(args.markdown, "w") as f:
                f.write("\n".join(blocks))
        except OSError as e:
            print(f"run.py: cannot write {args.markdown}: {e.strerror}", file=sys.stderr)
            return 2
        print(f"markdown written to {args.markdown}", file=sys.stderr)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
