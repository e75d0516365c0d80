"""Compiling C kernels through cffi, with a kernel cache on disk.

A module (the kernels of one program) is compiled once per machine: its file is named by a
hash of the C source, the declarations, the compiler's identity, the flags and the CPU, in
``$CHAINRULE_CACHE_DIR`` or ``$XDG_CACHE_HOME/chainrule/kernels`` (default
``~/.cache/chainrule/kernels``). The shared object is built under a temporary name in that
directory and renamed into place (``os.replace`` is atomic), so two processes compiling the same
module at once each build a complete file and the last rename wins; a reader never sees half a
file. A second process (or run) loads the file without compiling.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading

# -O2 with the vectoriser, for this CPU; no fast-math and no FMA contraction, so the arithmetic
# rounds as NumPy's does; errno not set by libm (it changes no result)
FLAGS = ("-O2", "-ftree-vectorize", "-march=native", "-ffp-contract=off", "-fno-math-errno",
         "-fopenmp", "-fPIC", "-shared", "-std=c99")

_LOCK = threading.Lock()
_LOADED: dict = {}  # module hash -> loaded module
_IDENTITY: dict = {}


class CompileError(RuntimeError):
    """The C compiler failed; the message holds the command and its output."""


def cache_dir() -> str:
    """The kernel cache directory (created on first use).

    Example:
        >>> import os
        >>> os.path.basename(cache_dir()) in ("kernels", os.path.basename(
        ...     os.environ.get("CHAINRULE_CACHE_DIR", "kernels")))
        True
    """
    d = os.environ.get("CHAINRULE_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "chainrule", "kernels")
    os.makedirs(d, exist_ok=True)
    return d


def compiler() -> str | None:
    """The C compiler's path (``$CC``, else gcc, else cc), or None."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc)
    return shutil.which("gcc") or shutil.which("cc")


def _identity(cc) -> str:
    """The compiler's version line and the CPU model: part of every cache key."""
    if cc not in _IDENTITY:
        try:
            out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
            ver = out.stdout.splitlines()[0] if out.stdout else ""
        except (OSError, subprocess.SubprocessError):
            ver = ""
        cpu = ""
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith(("model name", "flags")):
                        cpu += line
                    if line.strip() == "":
                        break
        except OSError:
            pass
        _IDENTITY[cc] = f"{cc}\n{ver}\n{cpu}"
    return _IDENTITY[cc]


def module_hash(cdef: str, source: str, cc: str) -> str:
    """The cache key of a module: source, declarations, compiler, flags, CPU, Python.

    Example:
        >>> len(module_hash("int f(int);", "int f(int x) { return x; }", "cc"))
        24
    """
    h = hashlib.sha256()
    for part in (cdef, source, _identity(cc), " ".join(FLAGS), sys.version,
                 sysconfig.get_config_var("EXT_SUFFIX") or ""):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def load(cdef: str, source: str):
    """Compile (or find in the cache) a cffi module with ``cdef`` declarations and C
    ``source``; returns ``(module, compiled)``: ``module.lib`` holds the functions,
    ``module.ffi`` the FFI, ``compiled`` whether the compiler ran.

    Example:
        >>> mod, _ = load("int twice(int);", "int twice(int x) { return 2 * x; }")
        >>> mod.lib.twice(21)
        42
    """
    cc = compiler()
    if cc is None:
        raise CompileError("no C compiler found (set CC, or install gcc)")
    key = module_hash(cdef, source, cc)
    with _LOCK:
        mod = _LOADED.get(key)
        if mod is not None:
            return mod, False
        name = f"_crk_{key}"
        d = cache_dir()
        path = os.path.join(d, name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))
        compiled = False
        if not os.path.exists(path):
            _build(name, cdef, source, cc, d, path)
            compiled = True
        # idle kernel threads sleep instead of spinning against BLAS's threads (measured in
        # docs/jit.md); libgomp reads this once, when the first module loads it
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _LOADED[key] = mod
        return mod, compiled


def _build(name, cdef, source, cc, d, path):
    from cffi import FFI  # noqa: PLC0415

    ffi = FFI()
    ffi.cdef(cdef)
    ffi.set_source(name, source)
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=d)
    os.close(fd)
    csrc = tmp + ".c"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # cffi says "generating ..."
            ffi.emit_c_code(csrc)
        inc = sysconfig.get_paths()["include"]
        cmd = [cc, *FLAGS, f"-I{inc}", csrc, "-o", tmp, "-lm"]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise CompileError(f"C compiler failed ({' '.join(cmd)}):\n{out.stderr[-4000:]}")
        os.replace(tmp, path)  # atomic: another process's rename or ours, both complete
    finally:
        for p in (tmp, csrc):
            if os.path.exists(p):
                os.unlink(p)
