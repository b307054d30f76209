"""gemm float64 n=1024 (`C[i, j] += A[i, k] * B[k, j]`, the plain triple loop) with register-blocking hints,
polyjit native (1 thread) vs numpy.matmul with one BLAS thread, measured in alternating rounds.

    python bench/gemm_blocking.py [--n 1024] [--rounds 3] [--reps 5] [--hints '{"split": {...}, ...}']

numpy runs in a subprocess started with OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=MKL_NUM_THREADS=1 (set before
numpy is imported; threadpoolctl is not needed). Each round prints the median GFLOP/s of `reps` calls of each;
the last line gives the medians over the rounds and their ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("POLYJIT_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import polyjit  # noqa: E402

# The schedule: a 5x8 block of C in ten ymm registers (i_inner unrolled 5 times, j_inner in two 4-lane
# vectors) over a k loop of 512 iterations; partial tiles guarded, the block loop versioned at run time so that
# full tiles run with constant inner trip counts (lowering/full_tiles.py). prefetch= packs, at every j_outer
# iteration, the 512x8 tile of B that the i loop reuses 205 times into one contiguous 32 KB buffer (B's rows
# are 8 KB apart: unpacked, the tile sits in one L1 set and one page per row); the k loop of 512 amortizes
# loading and storing each block of C.
HINTS = dict(split={"i": 5, "j": 8, "k": 512}, order=("k_outer", "j_outer", "i_outer", "k_inner", "i_inner", "j_inner"),
             unroll="i_inner", vectorize="j_inner", prefetch={"B": "j_outer"})


def gemm(A, B, C):
    n, m = C.shape
    for i in range(n):
        for j in range(m):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


NUMPY = """
import sys, time
import numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
A, B = rng.random((n, n)), rng.random((n, n))
C = A @ B
times = []
for _ in range(reps):
    t = time.perf_counter(); np.matmul(A, B, out=C); times.append(time.perf_counter() - t)
print(2 * n**3 / float(np.median(times)) / 1e9)
"""


def numpy_gflops(n: int, reps: int) -> float:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", NUMPY, str(n), str(reps)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.split()[-1])


def polyjit_gflops(kernel, A, B, C, reps: int) -> float:
    times = []
    for _ in range(reps):
        C[:] = 0.0
        t = time.perf_counter()
        kernel(A, B, C)
        times.append(time.perf_counter() - t)
    return 2 * A.shape[0] ** 3 / float(np.median(times)) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--hints", default=None, help="JSON object replacing entries of HINTS (to try schedules)")
    args = ap.parse_args()
    hints = dict(HINTS, **json.loads(args.hints)) if args.hints else HINTS
    hints = {k: tuple(v) if k == "order" else v for k, v in hints.items()}
    n = args.n
    rng = np.random.default_rng(0)
    A, B, C = rng.random((n, n)), rng.random((n, n)), np.zeros((n, n))
    kernels = {"fastmath": polyjit.kernel(gemm, cache=False, fastmath=True, **hints),
               "exact": polyjit.kernel(gemm, cache=False, **hints),
               "heuristic": polyjit.kernel(gemm, cache=False)}  # no hints: heuristic.tile_matmul
    want = A @ B
    for name, k in kernels.items():
        t = time.perf_counter()
        C[:] = 0.0
        k(A, B, C)
        print(f"polyjit {name}: first call (compile) {time.perf_counter() - t:.2f} s, "
              f"max rel. error vs numpy {np.max(np.abs(C - want) / np.abs(want)):.1e}")
    C2 = np.zeros((n, n))
    results = {"fastmath": [], "exact": [], "heuristic": [], "numpy": []}
    for r in range(args.rounds):
        for name, k in kernels.items():
            results[name].append(polyjit_gflops(k, A, B, C2, args.reps))
        results["numpy"].append(numpy_gflops(n, args.reps))
        print(f"round {r}: polyjit fastmath {results['fastmath'][-1]:.1f}, exact {results['exact'][-1]:.1f}, "
              f"heuristic {results['heuristic'][-1]:.1f}, numpy 1 thread {results['numpy'][-1]:.1f} GFLOP/s",
              flush=True)
    med = {k: float(np.median(v)) for k, v in results.items()}
    print(f"gemm f64 n={n}: polyjit fastmath {med['fastmath']:.1f} GFLOP/s ({med['fastmath'] / med['numpy']:.0%} of "
          f"numpy), polyjit exact {med['exact']:.1f} GFLOP/s ({med['exact'] / med['numpy']:.0%}), polyjit heuristic "
          f"{med['heuristic']:.1f} GFLOP/s ({med['heuristic'] / med['numpy']:.0%}), "
          f"numpy.matmul 1 thread {med['numpy']:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
