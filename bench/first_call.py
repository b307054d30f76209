"""First-call latency split of the OpenCL path: parse, model, schedule, loop tree (isl), emit, OpenCL build.

    python bench/first_call.py            # pocl's own kernel cache as it is
    POCL_KERNEL_CACHE=0 python bench/first_call.py   # pocl builds from scratch
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
STAGES = ("source", "model", "schedule", "looptree", "opencl", "opencl build")


def main(reps: int = 3) -> None:
    print(f"{'kernel':10s} " + " ".join(f"{s:>13s}" for s in STAGES) + f" {'total':>9s}   (ms, median of {reps})")
    for name, (fn, make) in CASES.items():
        rows = []
        for _ in range(reps):
            opencl_runtime._state.pop("programs", None)  # measure the build, not polyjit's in-memory cache
            k = polyjit.kernel(fn, target="opencl")
            args = make()
            t0 = time.perf_counter()
            k(*args)
            total = time.perf_counter() - t0
            rows.append([k.stats.get(s, 0.0) for s in STAGES] + [total])
        med = [statistics.median(col) * 1e3 for col in zip(*rows)]
        print(f"{name:10s} " + " ".join(f"{v:13.1f}" for v in med[:-1]) + f" {med[-1]:9.1f}")


if __name__ == "__main__":
    main()
