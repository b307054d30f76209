"""Fresh-process latencies, polyjit against Numba's cache=True, measured in the same run.

    python bench/cold_start.py [--reps 5] [--wheel]

For each: `import` time (numpy already imported), the first call with an empty cache (compile), and the first
call in a new process with a cache hit. Each figure is the median over fresh processes. `--wheel` measures
polyjit installed from a wheel built from this checkout (as users install it) rather than the editable
install, whose import hook adds a little to every module import.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = r'''
import time, json, sys
{prelude}
import numpy as np
t0 = time.perf_counter()
import {module}
t1 = time.perf_counter()
{define}
x = np.ones(1000, np.float32); y = np.ones(1000, np.float32); out = np.empty_like(x)
t2 = time.perf_counter()
saxpy(np.float32(2), x, y, out)
t3 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first": t3 - t2, "islpy": "islpy" in sys.modules}}))
'''
POLYJIT = '''
@polyjit.kernel
def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]
'''
NUMBA = '''
@numba.njit(cache=True)
def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]
'''


def measure(module, define, reps, site=None):
    prelude = "" if site is None else (  # the wheel's copy first, and not the editable install's hook
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path.insert(0, {site!r})")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "probe.py")
        with open(path, "w") as fh:
            fh.write(PROBE.format(module=module, define=define, prelude=prelude))
        env = {**os.environ, "POLYJIT_CACHE_DIR": os.path.join(d, "pj"), "NUMBA_CACHE_DIR": os.path.join(d, "nb")}
        runs = []
        for _ in range(reps + 1):
            out = subprocess.run([sys.executable, path], env=env, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cold, hits = runs[0], runs[1:]
    return {"import_ms": statistics.median(r["import"] for r in runs) * 1e3, "cold_first_call_ms": cold["first"] * 1e3,
            "cached_first_call_ms": statistics.median(r["first"] for r in hits) * 1e3,
            "islpy_on_hit": any(r["islpy"] for r in hits)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--wheel", action="store_true", help="polyjit from a wheel of this checkout")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as site:
        if args.wheel:
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", root, "-w", site + "/w"],
                           check=True, capture_output=True)
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site + "/s",
                            *[os.path.join(site, "w", f) for f in os.listdir(site + "/w")]], check=True,
                           capture_output=True)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            subprocess.run([sys.executable, "-m", "compileall", "-q", site + "/s/polyjit"], check=True, env=env)
        rows = {"polyjit" + (" (wheel)" if args.wheel else ""):
                measure("polyjit", POLYJIT, args.reps, site + "/s" if args.wheel else None)}
    try:
        rows["numba cache=True"] = measure("numba", NUMBA, args.reps)
    except subprocess.CalledProcessError as e:
        print("numba unavailable:", e.stderr.strip().splitlines()[-1:])
    print(f"{'':18s} {'import':>10s} {'cold first call':>16s} {'cached first call':>18s}")
    for name, r in rows.items():
        print(f"{name:18s} {r['import_ms']:8.1f}ms {r['cold_first_call_ms']:14.1f}ms "
              f"{r['cached_first_call_ms']:16.1f}ms")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
