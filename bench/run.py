"""polyjit benchmark harness: polyjit against its peers, side by side in the same run.

    python bench/run.py [--quick] [--out DIR] [--gpu] [--kernels saxpy,gemm,...] [--reps N]

Writes DIR/results.md, DIR/results.json and DIR/*.png (default DIR: bench/results/); --gpu writes
DIR/gpu.md and DIR/gpu.json. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings

import numpy as np

# libgomp's default active wait makes Numba's parallel=True calls take ~16 ms each on this 2-core machine (its
# spinning workers also steal the CPU from whatever is timed next): wait passively unless told otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import kernels as K  # noqa: E402

NPROC = os.cpu_count() or 1
IMPLS = ("python", "numpy", "numba", "numba-par", "loopy", "pj-native", "pj-native-hints", "pj-native-mt",
         "pj-opencl")
IMPL_DOC = {
    "python": "the undecorated loop function (py_func), small sizes only",
    "numpy": "the vectorized numpy form (BLAS where it applies)",
    "numba": "Numba @njit of the same loop function, 1 thread",
    "numba-par": f"Numba @njit(parallel=True) with prange on the outer parallel loop, {NPROC} threads",
    "loopy": "Loo.py on pocl (kernels it expresses)",
    "pj-native": "polyjit target='native', default heuristic, POLYJIT_NUM_THREADS=1",
    "pj-native-hints": "polyjit target='native', hand-written schedule hints, POLYJIT_NUM_THREADS=1",
    "pj-native-mt": f"polyjit target='native', default heuristic, POLYJIT_NUM_THREADS={NPROC}",
    "pj-opencl": "polyjit target='opencl' on pocl (CPU), default heuristic",
}


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------ helpers ----------------------------------
def copy_args(args):
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def time_call(fn, args, reps, min_sample):
    """Median seconds per call: `reps` samples, each of enough calls to last `min_sample` seconds."""
    t0 = time.perf_counter()
    fn(*args)
    one = time.perf_counter() - t0
    number = max(1, int(min_sample / max(one, 1e-9)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(*args)
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples), number


def rel_err(spec, got, ref):
    """Largest absolute difference relative to the reference's largest magnitude."""
    if spec.returns:
        g, r = float(got), float(ref)
        return abs(g - r) / max(abs(r), 1e-30)
    errs = []
    for i in spec.outputs:
        g, r = np.asarray(got[i], np.float64), np.asarray(ref[i], np.float64)
        if not np.all(np.isfinite(g)) and np.all(np.isfinite(r)):
            return float("inf")
        errs.append(float(np.abs(g - r).max() / max(float(np.abs(r).max()), 1e-30)))
    return max(errs)


def tolerance(dtype):
    return 2e-3 if dtype == np.float32 else 1e-9


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else None


# ------------------------------------------------------------------ machine ----------------------------------
def machine_info():
    import numba

    import polyjit
    info = {"cpu": "?", "cores": NPROC, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "polyjit": polyjit.__version__, "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from polyjit.asm import isa_tier
        info["isa_tier"] = isa_tier()
    except Exception as e:  # pragma: no cover
        info["isa_tier"] = f"unavailable ({e})"
    try:
        import pyopencl as cl
        info["pyopencl"] = cl.VERSION_TEXT
        from polyjit import opencl_runtime
        ctx, _ = opencl_runtime.context_and_queue()
        info["opencl_device"] = ", ".join(d.name for d in ctx.devices)
    except Exception as e:
        info["opencl_device"] = f"unavailable ({type(e).__name__}: {e})"
    try:
        import importlib.metadata as md
        info["loopy"] = md.version("loopy")
        info["islpy"] = md.version("islpy")
    except Exception:
        pass
    try:
        import numba as _nb
        _nb.njit(parallel=True)(lambda a: a + 1)(np.zeros(1))
        info["numba_threading_layer"] = _nb.threading_layer()
    except Exception as e:
        info["numba_threading_layer"] = f"? ({e})"
    info["env"] = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "POLYJIT_ISA")
                   if k in os.environ}
    return info


_MATMUL_PROBE = r"""
import json, time, numpy as np
info = {}
try:
    from threadpoolctl import threadpool_limits, threadpool_info
    ctl = threadpool_limits(1)
    info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                    for d in threadpool_info() if d.get("user_api") == "blas"]
except ImportError:
    info["blas"] = "threadpoolctl missing: OPENBLAS_NUM_THREADS=1 in the environment"
out = {}
for dt in ("float32", "float64"):
    n = __N__
    A = np.random.rand(n, n).astype(dt); B = np.random.rand(n, n).astype(dt)
    A @ B
    ts = []
    for _ in range(__REPS__):
        t0 = time.perf_counter(); A @ B; ts.append(time.perf_counter() - t0)
    ts.sort()
    out[dt] = 2 * n ** 3 / ts[len(ts) // 2] / 1e9
info["gflops"] = out
print(json.dumps(info))
"""


def machine_limits(quick):
    """numpy copy bandwidth (in process) and numpy matmul GFLOP/s on 1 BLAS thread (in a subprocess with
    OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset there only, and OPENBLAS_NUM_THREADS=1 as a fallback)."""
    lim = {}
    n = 64 * 2 ** 20 // 8
    a = np.random.rand(n)
    b = np.empty_like(a)
    t, _ = time_call(lambda: np.copyto(b, a), (), 5, 0.01)
    lim["numpy_copy_GBps"] = 2 * a.nbytes / t / 1e9
    lim["numpy_copy_bytes"] = a.nbytes
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = _MATMUL_PROBE.replace("__N__", "512" if quick else "1024").replace("__REPS__", "3" if quick else "5")
    try:
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        lim["numpy_matmul_1thread_GFLOPs"] = res["gflops"]
        lim["blas"] = res["blas"]
        lim["matmul_n"] = 512 if quick else 1024
    except Exception as e:
        lim["numpy_matmul_1thread_GFLOPs"] = f"failed: {type(e).__name__}: {e}"
    return lim


# ------------------------------------------------------------------ assembler rates --------------------------
def asm_rates(quick):
    helper = None
    try:
        from polyjit.asm import bench as asm_bench  # the assembler's own helper, where it has one
        helper = asm_bench.measure(3 if quick else 5)
    except ImportError:
        helper = None
    except Exception as e:
        helper = {"error": f"{type(e).__name__}: {e}"}
    from polyjit.asm import Function, Mem, allocate, encode

    def build(n_blocks):
        f = Function("stress", args=[("n", "int64_t"), ("x", "double*"), ("y", "double*")])
        n, x, y = f.args
        i = f.gp64()
        f.xor(i.d, i.d)
        loop, done = f.label("loop"), f.label("done")
        f.bind(loop)
        f.cmp(i, n)
        f.jge(done)
        acc = [f.xmm() for _ in range(4)]
        for v in acc:
            f.movsd(v, Mem(x, i, 8, size=8))
        for k in range(n_blocks):
            t = f.xmm()
            f.movsd(t, Mem(y, i, 8, disp=8 * (k % 4), size=8))
            f.mulsd(t, acc[k % 4])
            f.addsd(acc[(k + 1) % 4], t)
            g = f.gp64()
            f.lea(g, Mem(i, disp=k))
            f.add(g, i)
        for v in acc:
            f.addsd(acc[0], v)
        f.movsd(Mem(y, i, 8, size=8), acc[0])
        f.add(i, 1)
        f.jmp(loop)
        f.bind(done)
        f.ret()
        return f
    reps = 3 if quick else 7
    f = build(60)
    prog = f.program()
    from polyjit.asm import Instr
    n_instr = sum(1 for it in prog.items if isinstance(it, Instr)) or None
    ta, te = [], []
    for _ in range(reps):
        p = build(60).program()
        t0 = time.perf_counter()
        al = allocate(p)
        t1 = time.perf_counter()
        mc = encode(al)
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        te.append(t2 - t1)
    if n_instr is None:
        n_instr = len(f.listing().strip().splitlines())
    nbytes = len(getattr(mc, "code", b"") or b"")
    return {"helper": helper, "source": "measured here (public API)", "instructions": n_instr,
            "allocate_s": statistics.median(ta), "encode_s": statistics.median(te),
            "allocate_instr_per_s": n_instr / statistics.median(ta),
            "encode_instr_per_s": n_instr / statistics.median(te), "code_bytes": nbytes}


# ------------------------------------------------------------------ implementations --------------------------
class Impls:
    """Builds (once per kernel) and caches each peer's callable."""

    def __init__(self):
        self.cache = {}
        self._cl_queue = None

    def get(self, impl, spec, dtype):
        key = (impl, spec.name, np.dtype(dtype).name)
        if key not in self.cache:
            self.cache[key] = self._make(impl, spec, dtype)
        return self.cache[key]

    def _make(self, impl, spec, dtype):
        import polyjit
        if impl == "python":
            return spec.fn
        if impl == "numpy":
            return spec.np_fn
        if impl == "numba":
            import numba
            return numba.njit(spec.fn)
        if impl == "numba-par":
            return K.numba_parallel(spec.fn)
        # cache=False: always the code today's compiler generates, never an on-disk cache entry
        if impl == "pj-native" or impl == "pj-native-mt":
            return polyjit.kernel(spec.fn, target="native", cache=False)
        if impl == "pj-native-hints":
            return polyjit.kernel(spec.fn, target="native", cache=False, **spec.hints) if spec.hints else None
        if impl == "pj-opencl":
            return polyjit.kernel(spec.fn, target="opencl", cache=False)
        if impl == "loopy":
            import loopy_kernels as L
            if spec.name not in L.BUILDERS:
                return None
            from polyjit import opencl_runtime
            _, queue = opencl_runtime.context_and_queue()  # the same pocl device
            _, call = L.get(spec.name, dtype)
            return lambda *args: call(queue, args)
        raise KeyError(impl)


def threads_for(impl):
    return str(NPROC) if impl == "pj-native-mt" else "1"


def run_row(impls, spec, dtype, size_label, n, reps, min_sample, which):
    """All implementations of one (kernel, dtype, size): build and check each once against the reference, then
    time them round-robin (one sample of each in turn, `reps` rounds) so drift and noise hit all alike."""
    base = spec.make(n, dtype)
    ref_args = copy_args(base)
    if n <= (spec.python_max or 0):
        ref_src = "python"
        ref_ret = spec.fn(*ref_args)
    elif spec.np_fn is not None:
        ref_src = "numpy"
        ref_ret = spec.np_fn(*ref_args)
    else:
        ref_src = "numba"
        ref_ret = impls.get("numba", spec, dtype)(*ref_args)
    ref = ref_ret if spec.returns else ref_args
    itemsize = np.dtype(dtype).itemsize
    flops, nbytes = spec.flops(n), spec.nbytes(n, itemsize)
    rows, live = [], []
    for impl in which:
        row = {"kernel": spec.name, "dtype": np.dtype(dtype).name, "size": size_label, "n": n, "impl": impl,
               "ref": ref_src}
        if impl == "python" and n > (spec.python_max or 0):
            continue
        if impl == "numpy" and spec.np_fn is None:
            continue
        try:
            fn = impls.get(impl, spec, dtype)
        except Exception as e:
            row.update(status="error", reason=f"build: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            rows.append(row)
            continue
        if fn is None:
            continue
        os.environ["POLYJIT_NUM_THREADS"] = threads_for(impl)
        try:
            args = copy_args(base)
            t0 = time.perf_counter()
            got = fn(*args)
            row["first_call_s"] = time.perf_counter() - t0
            err = rel_err(spec, got if spec.returns else args, ref)
            row["err"] = err
            row["ok"] = bool(err <= tolerance(dtype))
            row["status"] = "ok" if row["ok"] else "mismatch"
            args = copy_args(base)
            t0 = time.perf_counter()
            fn(*args)
            one = time.perf_counter() - t0
            number = 1 if impl == "python" else max(1, int(min_sample / max(one, 1e-9)))
            live.append((row, fn, args, number, []))
        except Exception as e:
            row.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                       trace=traceback.format_exc(limit=3)[-800:])
        rows.append(row)
    for rnd in range(reps):
        for row, fn, args, number, samples in live:
            if row["impl"] == "python" and rnd > 0:
                continue
            os.environ["POLYJIT_NUM_THREADS"] = threads_for(row["impl"])
            try:
                t0 = time.perf_counter()
                for _ in range(number):
                    fn(*args)
                samples.append((time.perf_counter() - t0) / number)
            except Exception as e:
                row.update(status="error", reason=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
    for row, fn, args, number, samples in live:
        if samples and row["status"] != "error":
            t = statistics.median(samples)
            row.update(time_s=t, samples=len(samples), calls_per_sample=number, gflops=flops / t / 1e9,
                       gbps=(nbytes / t / 1e9) if nbytes else None)
    os.environ["POLYJIT_NUM_THREADS"] = "1"
    return rows


# ------------------------------------------------------------------ first call, overhead --------------------
FIRST_CALL_CASES = ("saxpy", "matmul", "jacobi-2d", "nbody", "heat-3d")


def first_call(reps):
    import numba

    import polyjit
    from polyjit import opencl_runtime
    out = []
    for name in FIRST_CALL_CASES:
        spec = next(s for s in K.SUITE if s.name == name)
        for impl in ("pj-native", "pj-native (disk cache hit)", "pj-opencl", "numba"):
            totals, stats = [], []
            if impl == "pj-native (disk cache hit)":  # make sure an entry exists
                polyjit.kernel(spec.fn, target="native")(*spec.make(spec.sizes["small"], np.float64))
            for _ in range(reps):
                args = spec.make(spec.sizes["small"], np.float64)
                if impl == "numba":
                    f = numba.njit(spec.fn)  # a fresh dispatcher compiles in process
                elif impl == "pj-native (disk cache hit)":
                    f = polyjit.kernel(spec.fn, target="native")
                else:
                    opencl_runtime._state.pop("programs", None)
                    f = polyjit.kernel(spec.fn, target="native" if impl == "pj-native" else "opencl", cache=False)
                t0 = time.perf_counter()
                f(*args)
                totals.append(time.perf_counter() - t0)
                if impl != "numba":
                    stats.append(dict(f.stats))
            row = {"kernel": name, "impl": impl, "first_call_s": statistics.median(totals)}
            if stats:
                row["stages_s"] = {k: statistics.median(s.get(k, 0.0) for s in stats) for k, v in stats[0].items()
                                   if isinstance(v, (int, float))}
                row["notes"] = {k: v for k, v in stats[0].items() if not isinstance(v, (int, float))}
            out.append(row)
            log(f"  first call {name:10s} {impl:26s} {row['first_call_s'] * 1e3:8.1f} ms")
    return out


def per_call_overhead(reps):
    """n=16 float32 saxpy: the whole call, dispatch and argument marshalling included."""
    import numba

    import polyjit
    spec = K.SUITE[0]
    out = {}
    args = spec.make(16, np.float32)
    cands = {"numpy": K.np_saxpy, "numba": numba.njit(K.saxpy),
             "pj-native": polyjit.kernel(K.saxpy, target="native", cache=False),
             "pj-opencl": polyjit.kernel(K.saxpy, target="opencl", cache=False)}
    os.environ["POLYJIT_NUM_THREADS"] = "1"
    for name, f in cands.items():
        try:
            t, _ = time_call(f, args, reps, 0.02)
            out[name] = t
            log(f"  overhead n=16 {name:10s} {t * 1e6:9.2f} us")
        except Exception as e:
            out[name] = f"error: {type(e).__name__}: {e}"
    return out


def _abs_kernel(x, out):
    for i in range(len(x)):
        out[i] = abs(x[i])


def semantic_probes():
    """Bit-level checks of polyjit's targets against py_func on edge values the suite's data never hits."""
    import polyjit
    out = []
    for x in (np.array([-0.0, -1.5, 2.0]), np.array([-1.0] * 8 + [-0.0, -0.0, -0.0])):
        ref = np.empty_like(x)
        _abs_kernel(x, ref)
        desc = f"out[i] = abs(x[i]), float64, n={len(x)}, -0.0 at {np.flatnonzero((x == 0) & np.signbit(x)).tolist()}"
        for target in ("native", "opencl"):
            got = np.empty_like(x)
            try:
                polyjit.kernel(_abs_kernel, target=target)(x, got)
                same = bool(np.array_equal(got, ref) and np.array_equal(np.signbit(got), np.signbit(ref)))
                out.append({"probe": desc, "target": target, "ok": same, "got": repr(got.tolist()),
                            "expected": repr(ref.tolist())})
            except Exception as e:
                out.append({"probe": desc, "target": target, "ok": False, "got": f"{type(e).__name__}: {e}"})
    return out


HINT_VARIANTS = {
    "heuristic (no hints)": {},
    "order=(i,k,j)": {"order": ("i", "k", "j")},
    "order=(i,k,j), vectorize=j": {"order": ("i", "k", "j"), "vectorize": "j"},
    "tile={i:32,k:64}, vectorize=j": {"tile": {"i": 32, "k": 64}, "vectorize": "j"},
    "split={j:64}, vectorize=j_inner": {"split": {"j": 64}, "vectorize": "j_inner"},
}


def hint_variants(n, reps):
    """matmul (C += A @ B, i,j,k source order) under several hand-written schedules, 1 thread, float32."""
    import numba

    import polyjit
    os.environ["POLYJIT_NUM_THREADS"] = "1"
    A, B, C0 = K.mk_matmul(n, np.float32)
    ref = C0 + A.astype(np.float64) @ B
    cands = {"numba @njit": numba.njit(K.matmul)}
    out = []
    for name, h in HINT_VARIANTS.items():
        try:
            cands[name] = polyjit.kernel(K.matmul, target="native", **h)
        except Exception as e:
            out.append({"variant": name, "error": f"{type(e).__name__}: {e}"})
    live = []
    for name, f in cands.items():
        C = C0.copy()
        try:
            f(A, B, C)
            err = float(np.abs(C - ref).max() / np.abs(ref).max())
            live.append((name, f, C, []))
            out.append({"variant": name, "err": err})
        except Exception as e:
            out.append({"variant": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"})
    for _ in range(reps):
        for name, f, C, ts in live:
            t0 = time.perf_counter()
            f(A, B, C)
            ts.append(time.perf_counter() - t0)
    for r in out:
        for name, f, C, ts in live:
            if r["variant"] == name:
                r["time_s"] = statistics.median(ts)
                r["gflops"] = 2 * n ** 3 / r["time_s"] / 1e9
    return {"n": n, "rows": out}


# ------------------------------------------------------------------ reporting --------------------------------
def summarize(rows):
    """Per (kernel, dtype, size): times per impl, speedups over Numba."""
    groups = {}
    for r in rows:
        groups.setdefault((r["kernel"], r["dtype"], r["size"], r["n"]), {})[r["impl"]] = r
    out = []
    for (k, dt, sz, n), g in groups.items():
        def t(impl, g=g):
            r = g.get(impl)
            return r["time_s"] if r and r.get("status") == "ok" else None
        s = {"kernel": k, "dtype": dt, "size": sz, "n": n, "times": {i: t(i) for i in IMPLS},
             "status": {i: g[i].get("status") for i in g}}
        nb, nbp = t("numba"), t("numba-par")
        s["speedup_native_vs_numba"] = nb / t("pj-native") if nb and t("pj-native") else None
        s["speedup_hints_vs_numba"] = nb / t("pj-native-hints") if nb and t("pj-native-hints") else None
        s["speedup_mt_vs_numba_par"] = nbp / t("pj-native-mt") if nbp and t("pj-native-mt") else None
        s["speedup_opencl_vs_numba"] = nb / t("pj-opencl") if nb and t("pj-opencl") else None
        pj = g.get("pj-native")
        s["pj_native_rate"] = None
        if pj and pj.get("status") == "ok":
            s["pj_native_rate"] = (pj["gbps"], "GB/s") if pj.get("gbps") else (pj["gflops"], "GFLOP/s")
        out.append(s)
    return out


def fmt_t(x):
    if x is None:
        return "—"
    if x >= 1:
        return f"{x:.2f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.2f} ms"
    return f"{x * 1e6:.1f} µs"


def fmt_x(x):
    return "—" if x is None else f"{x:.2f}×"


def write_markdown(path, info, limits, rates, fc, ovh, summary, rows, headline, args, elapsed, probes=(), hv=None):
    L = []
    L.append("# polyjit benchmark results\n")
    L.append(f"Run: `python bench/run.py{' --quick' if args.quick else ''}` at "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {elapsed:.0f} s. Every figure is a median "
             "of repetitions measured in this run; ratios compare implementations timed side by side.\n")
    L.append("## Machine\n")
    L.append(f"- CPU: {info['cpu']}, {info['cores']} cores; polyjit ISA tier: `{info.get('isa_tier')}`")
    L.append(f"- Python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, polyjit {info['polyjit']}, "
             f"loopy {info.get('loopy', '—')}, islpy {info.get('islpy', '—')}, pyopencl {info.get('pyopencl', '—')}")
    L.append(f"- OpenCL device: {info.get('opencl_device')}")
    L.append(f"- OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} (Numba's OpenMP threading layer), "
             f"numba threading layer: {info.get('numba_threading_layer', '?')}")
    if info.get("env"):
        L.append(f"- environment: {info['env']}")
    L.append("\n## The machine's limits (reference)\n")
    L.append(f"- numpy copy bandwidth ({limits['numpy_copy_bytes'] / 2 ** 20:.0f} MiB array, read + write): "
             f"**{limits['numpy_copy_GBps']:.1f} GB/s**")
    mm = limits.get("numpy_matmul_1thread_GFLOPs")
    if isinstance(mm, dict):
        L.append(f"- numpy matmul n={limits['matmul_n']}, 1 BLAS thread: float32 **{mm['float32']:.1f} GFLOP/s**, "
                 f"float64 **{mm['float64']:.1f} GFLOP/s** (BLAS: {limits.get('blas')}; OPENBLAS_CORETYPE and "
                 "OPENBLAS_L2_SIZE unset in that subprocess only)")
    else:
        L.append(f"- numpy matmul: {mm}")
    L.append("\n## Heuristic rating\n")
    L.append(f"- **Geometric-mean speedup of polyjit native (default heuristic, POLYJIT_NUM_THREADS=1) over Numba "
             f"@njit: {fmt_x(headline['geomean_native_vs_numba'])}** over {headline['n_native']} rows "
             f"(every kernel × dtype × size measured with both correct).")
    L.append(f"- **Threaded: polyjit native (heuristic, {NPROC} threads) over Numba parallel=True/prange: "
             f"{fmt_x(headline['geomean_mt_vs_numba_par'])}** over {headline['n_mt']} rows (kernels with a "
             "parallel loop).")
    L.append(f"- Hand-written hints over Numba: {fmt_x(headline['geomean_hints_vs_numba'])} "
             f"({headline['n_hints']} rows); polyjit OpenCL on pocl over Numba: "
             f"{fmt_x(headline['geomean_opencl_vs_numba'])} ({headline['n_opencl']} rows).")
    L.append("- Per size: " + "; ".join(f"{k}: native/numba {fmt_x(v[0])}, mt/numba-par {fmt_x(v[1])}"
                                          for k, v in headline["by_size"].items()))
    L.append("\n## Kernels: median time per call\n")
    L.append("Columns: " + "; ".join(f"`{k}` = {v}" for k, v in IMPL_DOC.items()) + ". "
             "Speedups are Numba's time over polyjit's (>1: polyjit faster). `rate` is polyjit native's "
             "GB/s (streaming kernels) or GFLOP/s. ✗ = result mismatch, E = error (see below).\n")
    L.append("| kernel | dtype | n | " + " | ".join(IMPLS) + " | pj-native rate | native/numba | hints/numba | "
             "mt/numba-par | opencl/numba |")
    L.append("|" + "---|" * (3 + len(IMPLS) + 5))
    for s in summary:
        cells = []
        for i in IMPLS:
            st = s["status"].get(i)
            if st is None:
                cells.append("")
            elif st == "ok":
                cells.append(fmt_t(s["times"][i]))
            else:
                cells.append("✗" if st == "mismatch" else "E")
        rate = s["pj_native_rate"]
        L.append(f"| {s['kernel']} | {s['dtype']} | {s['n']} | " + " | ".join(cells)
                 + f" | {'—' if not rate else f'{rate[0]:.2f} {rate[1]}'} | {fmt_x(s['speedup_native_vs_numba'])}"
                 f" | {fmt_x(s['speedup_hints_vs_numba'])} | {fmt_x(s['speedup_mt_vs_numba_par'])}"
                 f" | {fmt_x(s['speedup_opencl_vs_numba'])} |")
    L.append("\nHints used (`pj-native-hints`): " + "; ".join(f"{s.name}: `{s.hints}`" for s in K.SUITE if s.hints))
    L.append("\n## First-call latency (in-process compile + first run, float64, small size)\n")
    L.append("| kernel | impl | first call | stages |")
    L.append("|---|---|---|---|")
    for r in fc:
        st = ", ".join([f"{k} {v * 1e3:.1f} ms" for k, v in r.get("stages_s", {}).items()]
                       + [f"{k}: {v}" for k, v in r.get("notes", {}).items()])
        L.append(f"| {r['kernel']} | {r['impl']} | {fmt_t(r['first_call_s'])} | {st} |")
    L.append("\n## Per-call overhead (saxpy, n=16, float32: 3 arrays of 16 elements)\n")
    L.append("| impl | time per call |")
    L.append("|---|---|")
    for k, v in ovh.items():
        L.append(f"| {k} | {fmt_t(v) if isinstance(v, float) else v} |")
    L.append("\n## Assembler (polyjit.asm) rates\n")
    if "allocate_instr_per_s" in rates:
        L.append(f"- {rates['source']}: a {rates['instructions']}-instruction function (60 blocks of "
                 "mov/mul/add/lea/add, in a loop): allocate() "
                 f"**{rates['allocate_instr_per_s']:,.0f} instr/s** ({rates['allocate_s'] * 1e3:.1f} ms), encode() "
                 f"**{rates['encode_instr_per_s']:,.0f} instr/s** ({rates['encode_s'] * 1e3:.1f} ms)")
    else:
        L.append(f"- {rates}")
    h = rates.get("helper")
    if isinstance(h, dict) and "encode_us_per_instr" in h and "alloc_us_per_instr" in h:
        L.append(f"- `polyjit.asm.bench.measure()` (the assembler's own helper): encode "
                 f"**{1e6 / h['encode_us_per_instr']:,.0f} instr/s** ({h['encode_us_per_instr']:.2f} µs/instr, warm "
                 f"form cache), allocate **{1e6 / h['alloc_us_per_instr']:,.0f} instr/s** "
                 f"({h['alloc_us_per_instr']:.2f} µs/instr) on a {h.get('function_instructions', '?')}-item function;"
                 f" whole function build+allocate+encode+load {h.get('whole_function_ms', float('nan')):.1f} ms")
        L.append("  - all of its figures: " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in h.items()))
    elif h:
        L.append(f"- `polyjit.asm.bench.measure()`: {h}")
    else:
        L.append("- (no `polyjit.asm.bench` helper in this checkout)")
    if hv:
        L.append(f"\n## Schedule hints: matmul (C += A @ B), float32, n={hv['n']}, 1 thread\n")
        L.append("| variant | time | GFLOP/s | rel. error |")
        L.append("|---|---|---|---|")
        for r in hv["rows"]:
            if "error" in r:
                L.append(f"| {r['variant']} | E: {r['error'][:160]} | | |")
            else:
                L.append(f"| {r['variant']} | {fmt_t(r.get('time_s'))} | {r.get('gflops', 0):.2f} | {r['err']:.1e} |")
    if probes:
        L.append("\n## Semantic probes (bit-exact against py_func)\n")
        for p in probes:
            L.append(f"- {p['probe']}, target={p['target']}: {'ok' if p['ok'] else '**MISMATCH**'}"
                     + ("" if p["ok"] else f" — got {p.get('got')}, Python gives {p.get('expected')}"))
    bad = [r for r in rows if r.get("status") in ("mismatch", "error")]
    L.append("\n## Mismatches and errors\n")
    if not bad:
        L.append("None in the kernel rows: every implementation matched the reference (py_func at small sizes, else "
                 "numpy, else Numba)" + ("; see the semantic probes above for edge values." if probes else "."))
    for r in bad:
        L.append(f"- {r['kernel']} {r['dtype']} n={r['n']} `{r['impl']}`: {r['status']}"
                 + (f", rel. error {r['err']:.2e} vs {r['ref']}" if r.get("err") is not None else "")
                 + (f" — {r['reason']}" if r.get("reason") else ""))
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def plots(outdir, summary, fc, prefix=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    for size in sorted({s["size"] for s in summary}):
        sub = [s for s in summary if s["size"] == size]
        labels = [f"{s['kernel']}\n{s['dtype'][-2:]}" for s in sub]
        series = [("native 1T / numba", "speedup_native_vs_numba"), ("hints 1T / numba", "speedup_hints_vs_numba"),
                  (f"native {NPROC}T / numba-par", "speedup_mt_vs_numba_par"),
                  ("opencl / numba", "speedup_opencl_vs_numba")]
        fig, ax = plt.subplots(figsize=(max(10, 0.55 * len(sub)), 5))
        w = 0.2
        x = np.arange(len(sub))
        for k, (lab, key) in enumerate(series):
            vals = [s[key] if s[key] else np.nan for s in sub]
            ax.bar(x + (k - 1.5) * w, vals, w, label=lab)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_ylabel("speedup over Numba (log; >1 = polyjit faster)")
        ax.set_title(f"polyjit vs Numba, {size} sizes (median time ratio, same run)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = os.path.join(outdir, f"{prefix}speedup_{size}.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    if fc:
        fig, ax = plt.subplots(figsize=(8, 4))
        kernels = list(dict.fromkeys(r["kernel"] for r in fc))
        impls = list(dict.fromkeys(r["impl"] for r in fc))
        x = np.arange(len(kernels))
        for k, impl in enumerate(impls):
            vals = [next((r["first_call_s"] * 1e3 for r in fc if r["kernel"] == kn and r["impl"] == impl), np.nan)
                    for kn in kernels]
            ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=impl)
        ax.set_xticks(x)
        ax.set_xticklabels(kernels)
        ax.set_ylabel("first call (ms)")
        ax.set_title("first-call latency (compile in process + first run)")
        ax.legend()
        fig.tight_layout()
        p = os.path.join(outdir, f"{prefix}first_call.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


def headline_of(summary):
    def gm(key, pred=lambda s: True):
        v = [s[key] for s in summary if s[key] and pred(s)]
        return geomean(v), len(v)
    h = {}
    h["geomean_native_vs_numba"], h["n_native"] = gm("speedup_native_vs_numba")
    h["geomean_mt_vs_numba_par"], h["n_mt"] = gm("speedup_mt_vs_numba_par")
    h["geomean_hints_vs_numba"], h["n_hints"] = gm("speedup_hints_vs_numba")
    h["geomean_opencl_vs_numba"], h["n_opencl"] = gm("speedup_opencl_vs_numba")
    h["by_size"] = {sz: (gm("speedup_native_vs_numba", lambda s, sz=sz: s["size"] == sz)[0],
                         gm("speedup_mt_vs_numba_par", lambda s, sz=sz: s["size"] == sz)[0])
                    for sz in dict.fromkeys(s["size"] for s in summary)}
    return h


# ------------------------------------------------------------------ GPU mode ---------------------------------
def gpu_main(args):
    """OpenCL rows on an NVIDIA GPU against CuPy. Fails clearly without both."""
    try:
        import pyopencl as cl
        platforms = cl.get_platforms()
    except Exception as e:
        sys.exit(f"--gpu: pyopencl does not work here ({type(e).__name__}: {e}); install polyjit with "
                 "`pip install -e '.[opencl]'` and the NVIDIA OpenCL ICD")
    devs = [(pi, di, d) for pi, p in enumerate(platforms) for di, d in enumerate(p.get_devices())
            if "nvidia" in (d.vendor + d.platform.name).lower()]
    if not devs:
        sys.exit("--gpu: pyopencl finds no NVIDIA OpenCL device (platforms: "
                 + ", ".join(f"{p.name}: {[d.name for d in p.get_devices()]}" for p in platforms)
                 + "). Install the NVIDIA OpenCL ICD on a machine with an NVIDIA GPU.")
    try:
        import cupy as cp
        cp.cuda.runtime.getDeviceCount()
    except Exception as e:
        sys.exit(f"--gpu: CuPy is needed as the peer and does not work here: {type(e).__name__}: {e}")
    pi, di, dev = devs[0]
    os.environ.setdefault("POLYJIT_OPENCL_DEVICE", f"{pi}:{di}")
    import pyopencl.array as cla

    import polyjit
    from polyjit import opencl_runtime
    ctx, queue = opencl_runtime.context_and_queue()
    log(f"GPU mode: OpenCL device {ctx.devices[0].name}; CuPy {cp.__version__} on "
        f"{cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    reps = 3 if args.quick else 10
    rows = []

    def cl_time(fn, dargs):
        t0 = time.perf_counter()
        fn(*dargs)
        queue.finish()
        slow = time.perf_counter() - t0 > 2.0
        ts = []
        for _ in range(3 if slow else reps):
            t0 = time.perf_counter()
            fn(*dargs)
            queue.finish()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    def cp_time(fn):
        fn()
        cp.cuda.Device().synchronize()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            cp.cuda.Device().synchronize()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    # sgemm
    n = 1024 if args.quick else 4096
    A = np.random.rand(n, n).astype(np.float32)
    B = np.random.rand(n, n).astype(np.float32)
    dA, dB, dC = cla.to_device(queue, A), cla.to_device(queue, B), cla.zeros(queue, (n, n), np.float32)
    variants = {"pj-opencl (heuristic)": polyjit.kernel(K.matmul, target="opencl"),
                "pj-opencl (hints: order i,j,k; parallel i,j)":
                    polyjit.kernel(K.matmul, target="opencl", order=("i", "j", "k"), parallel=("i", "j"))}
    cA, cB = cp.asarray(A), cp.asarray(B)
    t_cp = cp_time(lambda: cp.matmul(cA, cB))
    rows.append({"kernel": "sgemm", "n": n, "impl": "cupy.matmul", "time_s": t_cp, "gflops": 2 * n ** 3 / t_cp / 1e9})
    for name, k in variants.items():
        try:
            dC.fill(0)
            k(dA, dB, dC)
            ok = bool(np.allclose(dC.get(), A @ B, rtol=1e-3, atol=1e-2 * n))
            t = cl_time(k, (dA, dB, dC))
            rows.append({"kernel": "sgemm", "n": n, "impl": name, "time_s": t, "gflops": 2 * n ** 3 / t / 1e9,
                         "ok": ok, "vs_cupy": t_cp / t})
        except Exception as e:
            rows.append({"kernel": "sgemm", "n": n, "impl": name, "error": f"{type(e).__name__}: {e}"})
    # saxpy bandwidth
    n = 2 ** 24 if args.quick else 2 ** 27
    x = cla.to_device(queue, np.random.rand(n).astype(np.float32))
    y = cla.to_device(queue, np.random.rand(n).astype(np.float32))
    out = cla.empty_like(x)
    k = polyjit.kernel(K.saxpy, target="opencl")
    cx, cy = cp.asarray(x.get()), cp.asarray(y.get())
    co = cp.empty_like(cx)
    cp_saxpy = cp.ElementwiseKernel("float32 a, float32 x, float32 y", "float32 z", "z = a * x + y", "pj_saxpy")
    t_cp = cp_time(lambda: cp_saxpy(np.float32(2), cx, cy, co))
    nbytes = 3 * 4 * n
    rows.append({"kernel": "saxpy", "n": n, "impl": "cupy (fused ElementwiseKernel)", "time_s": t_cp,
                 "gbps": nbytes / t_cp / 1e9,
                 "of_peak": nbytes / t_cp / 3.35e12})
    try:
        t = cl_time(k, (np.float32(2), x, y, out))
        ok = bool(np.allclose(out.get(), 2 * x.get() + y.get()))
        rows.append({"kernel": "saxpy", "n": n, "impl": "pj-opencl", "time_s": t, "gbps": nbytes / t / 1e9,
                     "of_peak": nbytes / t / 3.35e12, "ok": ok, "vs_cupy": t_cp / t})
    except Exception as e:
        rows.append({"kernel": "saxpy", "n": n, "impl": "pj-opencl", "error": f"{type(e).__name__}: {e}"})
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu.json"), "w") as f:
        json.dump({"device": ctx.devices[0].name, "rows": rows}, f, indent=1)
    L = [f"# polyjit on GPU ({ctx.devices[0].name})\n", "HBM peak used for saxpy: 3.35 TB/s (H100 SXM).\n",
         "| kernel | n | impl | time | GFLOP/s | GB/s | % of HBM peak | vs CuPy | ok |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gf = f"{r['gflops']:.0f}" if r.get("gflops") else ""
        gb = f"{r['gbps']:.0f}" if r.get("gbps") else ""
        pk = f"{100 * r['of_peak']:.0f}%" if r.get("of_peak") else ""
        L.append(f"| {r['kernel']} | {r['n']} | {r['impl']} | {fmt_t(r.get('time_s'))} | {gf} | {gb} | {pk} | "
                 f"{fmt_x(r.get('vs_cupy'))} | {r.get('ok', r.get('error', ''))} |")
    with open(os.path.join(args.out, "gpu.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    log("\n".join(L))


# ------------------------------------------------------------------ main -------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions (a few minutes)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="output folder")
    ap.add_argument("--gpu", action="store_true", help="OpenCL rows on an NVIDIA GPU against CuPy")
    ap.add_argument("--kernels", default="", help="comma-separated subset of the suite")
    ap.add_argument("--reps", type=int, default=0, help="repetitions per timing (default 5 quick, 9 full)")
    ap.add_argument("--no-first-call", action="store_true", help="skip the first-call section")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PYOPENCL_NO_CACHE", "0")
    if args.gpu:
        return gpu_main(args)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.perf_counter()
    reps = args.reps or (5 if args.quick else 9)
    min_sample = 0.003 if args.quick else 0.02
    sizes = ("small",) if args.quick else ("small", "medium", "large")
    suite = [s for s in K.SUITE if not args.kernels or s.name in args.kernels.split(",")]
    log("machine ...")
    info = machine_info()
    log(f"  {info['cpu']}, {info['cores']} cores, isa {info.get('isa_tier')}, OpenCL {info.get('opencl_device')}")
    limits = machine_limits(args.quick)
    log(f"  numpy copy {limits['numpy_copy_GBps']:.1f} GB/s; "
        f"matmul 1 thread {limits.get('numpy_matmul_1thread_GFLOPs')}")
    log("assembler rates ...")
    try:
        rates = asm_rates(args.quick)
        log(f"  allocate {rates.get('allocate_instr_per_s', 0):,.0f} instr/s, "
            f"encode {rates.get('encode_instr_per_s', 0):,.0f} instr/s")
    except Exception as e:
        rates = {"error": f"{type(e).__name__}: {e}"}
        log(f"  {rates}")
    log("per-call overhead ...")
    ovh = per_call_overhead(reps)
    fc = []
    if not args.no_first_call:
        log("first-call latency ...")
        fc = first_call(1 if args.quick else 3)
    log("semantic probes ...")
    probes = semantic_probes()
    for p in probes:
        log(f"  {p['probe']} [{p['target']}]: {'ok' if p['ok'] else 'MISMATCH ' + str(p.get('got'))}")
    log("schedule hint variants (matmul) ...")
    hv = hint_variants(128 if args.quick else 256, 3 if args.quick else 5)
    for r in hv["rows"]:
        log(f"  {r['variant']:36s} {fmt_t(r.get('time_s')) if 'time_s' in r else r.get('error')}")
    impls = Impls()
    rows = []
    total = len(suite) * 2 * len(sizes)
    done = 0
    for size in sizes:
        for spec in suite:
            for dtype in (np.float32, np.float64):
                done += 1
                n = spec.sizes[size]
                t0 = time.perf_counter()
                r = run_row(impls, spec, dtype, size, n, reps, min_sample, IMPLS)
                rows += r
                brief = " ".join(f"{x['impl']}={fmt_t(x.get('time_s')) if x.get('status') == 'ok' else x.get('status')}"
                                 for x in r)
                log(f"[{done}/{total}] {spec.name} {np.dtype(dtype).name} n={n} "
                    f"({time.perf_counter() - t0:.1f} s): {brief}")
    summary = summarize(rows)
    headline = headline_of(summary)
    elapsed = time.perf_counter() - t_start
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": info, "limits": limits, "asm_rates": rates, "per_call_overhead_s": ovh,
                   "first_call": fc, "semantic_probes": probes, "hint_variants": hv, "rows": rows,
                   "summary": summary, "headline": headline,
                   "impls": IMPL_DOC, "quick": args.quick, "elapsed_s": elapsed}, f, indent=1, default=str)
    write_markdown(os.path.join(args.out, "results.md"), info, limits, rates, fc, ovh, summary, rows, headline,
                   args, elapsed, probes, hv)
    files = plots(args.out, summary, fc)
    log(f"\ngeomean polyjit native / Numba (1 thread): {fmt_x(headline['geomean_native_vs_numba'])} "
        f"({headline['n_native']} rows); threaded vs numba-par: {fmt_x(headline['geomean_mt_vs_numba_par'])} "
        f"({headline['n_mt']} rows)")
    log(f"wrote {args.out}/results.md, results.json, " + ", ".join(os.path.basename(p) for p in files)
        + f" in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
