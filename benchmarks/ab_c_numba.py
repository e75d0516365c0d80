"""C through cffi against numba for the jit's fused kernels: compile time and call time.

Takes the fusion groups the C backend finds in a jitted step (the tiny-op chain's whole
forward and backward, 464 ops over 16 elements; the MLP step's kernels over 128x512), renders
each group both as C (``render_c``, compiled with gcc through cffi, cold: a fresh cache
directory) and as a numba ``@njit`` loop from the same :class:`~chainrule.jit.fuse.KernelSpec`,
checks both against each other, and prints compile seconds and microseconds per call
(medians of interleaved repeats). Needs numba (not a chainrule dependency).

    python benchmarks/ab_c_numba.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..", "src")))

_NB = {"add": "({0} + {1})", "subtract": "({0} - {1})", "multiply": "({0} * {1})",
       "true_divide": "({0} / {1})", "divide": "({0} / {1})", "negative": "(-{0})",
       "tanh": "np.tanh({0})", "exp": "np.exp({0})", "log": "np.log({0})",
       "sqrt": "np.sqrt({0})", "greater": "({0} > {1})", "less": "({0} < {1})",
       "greater_equal": "({0} >= {1})", "not_equal": "({0} != {1})",
       "relu": "({0} if ({0} >= 0 or {0} != {0}) else {0} * 0)",
       "logical_or": "({0} or {1})", "logical_and": "({0} and {1})"}


def numba_source(spec, name):
    """The kernel as a numba function over flat arrays (inputs contiguous, raveled)."""
    import numpy as np

    params = [f"a{k}" for k in range(len(spec.inputs))] + \
             [f"o{j}" for j in range(len(spec.outputs))]
    lines = [f"def {name}({', '.join(params)}):", f"    for i in range({spec.size}):"]
    from chainrule.jit.render_c import _index

    for k, inp in enumerate(spec.inputs):
        if inp[0] == "array":
            lines.append(f"        x{k} = a{k}[{_index(inp[2], spec.shape).replace('/', '//')}]")
        else:
            lines.append(f"        x{k} = a{k}")
    for j, (op, loop, _odt, refs) in enumerate(spec.stmts):
        args = []
        for r in refs:
            if r[0] == "lit":
                args.append(f"np.{loop}({float(r[1])!r})" if loop != "bool" else repr(bool(r[1])))
            else:
                v = f"x{r[1]}" if r[0] == "in" else f"t{r[1]}"
                args.append(f"np.{loop}({v})" if loop != "bool" else v)
        lines.append(f"        t{j} = {_NB[op].format(*args)}")
    for j, s in enumerate(spec.outputs):
        lines.append(f"        o{j}[i] = t{s}")
    env = {"np": np}
    exec("\n".join(lines) + "\n", env)
    return env[name]


def _specs(workload):
    import libs
    import workloads

    from chainrule.jit.fuse import find_kernels

    step = workloads.build(workload, libs.load("chainrule-jit"))[0]["main"]
    for _ in range(3):
        step()
    return [g.spec for g in find_kernels(step.graph_ir())]


def main():
    import numba
    import numpy as np

    from chainrule.jit import cbackend, kcache, render_c

    rng = np.random.default_rng(0)
    os.environ["CHAINRULE_CACHE_DIR"] = tempfile.mkdtemp(prefix="crk-ab-")
    for workload in ("tiny", "mlp"):
        specs = _specs(workload)
        decls = [render_c.signature(s, f"k{i}") + ";" for i, s in enumerate(specs)]
        src = render_c.PRELUDE + "\n".join(render_c.render(s, f"k{i}")
                                           for i, s in enumerate(specs))
        t0 = time.perf_counter()
        mod, compiled = kcache.load("\n".join(decls), src)
        c_compile = time.perf_counter() - t0
        assert compiled
        t0 = time.perf_counter()
        nb_fns, args = [], []
        for i, s in enumerate(specs):
            ins = [rng.standard_normal(inp[2]).astype(inp[1]) if inp[0] == "array" and
                   inp[1] != "bool" else (rng.random(inp[2]) > 0.5 if inp[0] == "array"
                                          else 0.5) for inp in s.inputs]
            outs = [np.empty(s.size, s.stmts[o][2]) for o in s.outputs]
            fn = numba.njit(numba_source(s, f"nb{i}"), cache=False, fastmath=False)
            flat = [a.ravel() if isinstance(a, np.ndarray) else a for a in ins]
            fn(*flat, *outs)  # compiles
            nb_fns.append((fn, flat, outs))
            args.append(ins)
        nb_compile = time.perf_counter() - t0
        c_calls = []
        for i, s in enumerate(specs):
            w = cbackend._wrapper(getattr(mod.lib, f"k{i}"), mod.ffi, s, f"w{i}")
            c_calls.append((w, args[i]))
            got = w(*args[i])
            got = got if isinstance(got, tuple) else (got,)
            for a, b in zip(got, nb_fns[i][2]):
                np.testing.assert_allclose(a.ravel(), b, rtol=1e-5, atol=1e-6)
        tc, tn = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            for w, a in c_calls:
                w(*a)
            tc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for fn, flat, outs in nb_fns:
                fn(*flat, *[np.empty_like(o) for o in outs])
            tn.append(time.perf_counter() - t0)
        print(f"{workload}: {len(specs)} kernels, {sum(len(s.stmts) for s in specs)} ops; "
              f"compile C {c_compile:.2f} s, numba {nb_compile:.2f} s; per step "
              f"C {statistics.median(tc) * 1e6:.1f} us, numba {statistics.median(tn) * 1e6:.1f} us"
              f"  (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
