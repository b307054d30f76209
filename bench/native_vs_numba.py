"""Issue #4 figures: saxpy f32 n=1e7 and dot f64 n=1e6 (fastmath), polyjit native vs Numba, same run, 1 thread.

    POLYJIT_NUM_THREADS=1 python bench/native_vs_numba.py
"""

import os
import time

import numba
import numpy as np

import polyjit

os.environ.setdefault("POLYJIT_NUM_THREADS", "1")


def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def median_times(f, g, reps=15):
    """Medians of f's and g's times, their calls alternating (the machine's load drifts over a run)."""
    tf, tg = [], []
    for _ in range(reps):
        for fn, times in ((f, tf), (g, tg)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return float(np.median(tf)), float(np.median(tg))


def main():
    n = 10**7
    rng = np.random.default_rng(0)
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    out, a = np.empty_like(x), np.float32(2)
    pj, nb = polyjit.kernel(saxpy, cache=False), numba.njit(saxpy)
    pj(a, x, y, out)
    nb(a, x, y, out)
    for _ in range(3):
        tp, tn = median_times(lambda: pj(a, x, y, out), lambda: nb(a, x, y, out))
        print(f"saxpy f32 1e7: polyjit {tp * 1e3:.2f} ms ({12 * n / tp / 1e9:.1f} GB/s), "
              f"numba {tn * 1e3:.2f} ms, ratio {tn / tp:.2f}")
    xd, yd = rng.random(10**6), rng.random(10**6)
    pd, nd = polyjit.kernel(dot, fastmath=True, cache=False), numba.njit(fastmath=True)(dot)
    pd(xd, yd)
    nd(xd, yd)
    for _ in range(3):
        tp, tn = median_times(lambda: pd(xd, yd), lambda: nd(xd, yd), 100)
        print(f"dot f64 1e6 fastmath: polyjit {tp * 1e3:.3f} ms, numba fastmath {tn * 1e3:.3f} ms, "
              f"ratio {tn / tp:.2f}")


if __name__ == "__main__":
    main()
