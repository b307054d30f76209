"""First-call latency split into stages: parse, model, schedule, loop tree (isl), emit, build.

    python bench/first_call.py            # OpenCL; pocl's own kernel cache as it is
    POCL_KERNEL_CACHE=0 python bench/first_call.py   # pocl builds from scratch
    python bench/first_call.py --target native [--reps 7]   # issue #4's figures (islpy already imported)
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import polyjit
from polyjit import opencl_runtime


def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


def gemm(A, B, C):
    n, m = C.shape
    for i in range(n):
        for j in range(m):
            s = 0.0
            for k in range(A.shape[1]):
                s += A[i, k] * B[k, j]
            C[i, j] = s


def jacobi_2d(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        B[1:n - 1, 1:n - 1] = 0.2 * (A[1:n - 1, 1:n - 1] + A[1:n - 1, :n - 2] + A[1:n - 1, 2:]
                                     + A[2:, 1:n - 1] + A[:n - 2, 1:n - 1])
        A[1:n - 1, 1:n - 1] = 0.2 * (B[1:n - 1, 1:n - 1] + B[1:n - 1, :n - 2] + B[1:n - 1, 2:]
                                     + B[2:, 1:n - 1] + B[:n - 2, 1:n - 1])


CASES = {
    "saxpy": (saxpy, lambda: (np.float32(2), *(np.ones(100, np.float32) for _ in range(3)))),
    "gemm": (gemm, lambda: tuple(np.ones((16, 16)) for _ in range(3))),
    "jacobi-2d": (jacobi_2d, lambda: (np.ones((16, 16)), np.ones((16, 16)), 2)),
}
STAGES = {"opencl": ("source", "model", "schedule", "looptree", "opencl", "opencl build"),
          "native": ("source", "model", "schedule", "looptree", "asm", "assemble+load")}


def main(reps: int = 3, target: str = "opencl") -> None:
    stages = STAGES[target]
    print(f"{'kernel':10s} " + " ".join(f"{s:>13s}" for s in stages) + f" {'total':>9s}   (ms, median of {reps})")
    for name, (fn, make) in CASES.items():
        rows = []
        for _ in range(reps):
            opencl_runtime._state.pop("programs", None)  # measure the build, not polyjit's in-memory cache
            # the native path compiles with the disk cache off (a hit would skip the compiler)
            k = polyjit.kernel(fn, target=target, **({"cache": False} if target == "native" else {}))
            args = make()
            t0 = time.perf_counter()
            k(*args)
            total = time.perf_counter() - t0
            rows.append([k.stats.get(s, 0.0) for s in stages] + [total])
        med = [statistics.median(col) * 1e3 for col in zip(*rows)]
        print(f"{name:10s} " + " ".join(f"{v:13.1f}" for v in med[:-1]) + f" {med[-1]:9.1f}")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(STAGES), default="opencl")
    ap.add_argument("--reps", type=int, default=None)
    a = ap.parse_args()
    if a.target == "native":
        import islpy  # noqa: F401  (issue #4 times the first call with islpy already imported)
    main(a.reps or (7 if a.target == "native" else 3), a.target)
