"""The README's main job: example kernels, their results checked against Python, timed against Python and numpy."""

from __future__ import annotations

import math
import time

import numpy as np

import polyjit


@polyjit.kernel
def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


@polyjit.kernel
def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


@polyjit.kernel
def jacobi_2d(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        B[1:n - 1, 1:n - 1] = 0.2 * (A[1:n - 1, 1:n - 1] + A[1:n - 1, :n - 2] + A[1:n - 1, 2:]
                                     + A[2:, 1:n - 1] + A[:n - 2, 1:n - 1])
        A[1:n - 1, 1:n - 1] = 0.2 * (B[1:n - 1, 1:n - 1] + B[1:n - 1, :n - 2] + B[1:n - 1, 2:]
                                     + B[2:, 1:n - 1] + B[:n - 2, 1:n - 1])


@polyjit.kernel
def softplus(x, out):
    for i in polyjit.prange(len(x)):
        v = x[i]
        out[i] = v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def _best(fn, reps=3):
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> int:
    rng = np.random.default_rng(0)
    rows = []
    n = 200_000
    x, y = rng.random(n, np.float32), rng.random(n, np.float32)
    out, ref = np.empty_like(x), np.empty_like(x)
    t0 = time.perf_counter()
    saxpy(np.float32(2.0), x, y, out)
    first = time.perf_counter() - t0
    saxpy.py_func(np.float32(2.0), x, y, ref)
    rows.append(("saxpy f32 n=2e5", first, _best(lambda: saxpy(np.float32(2.0), x, y, out))[0],
                 _best(lambda: saxpy.py_func(np.float32(2.0), x, y, ref), 1)[0],
                 _best(lambda: np.add(np.float32(2.0) * x, y, out=ref))[0], np.array_equal(out, ref)))
    xd, yd = rng.random(n), rng.random(n)
    t0 = time.perf_counter()
    got = dot(xd, yd)
    first = time.perf_counter() - t0
    rows.append(("dot f64 n=2e5", first, _best(lambda: dot(xd, yd))[0], _best(lambda: dot.py_func(xd, yd), 1)[0],
                 _best(lambda: np.dot(xd, yd))[0], got == dot.py_func(xd, yd)))
    A0 = rng.random((120, 120))
    A, B, A2, B2 = A0.copy(), A0.copy(), A0.copy(), A0.copy()
    t0 = time.perf_counter()
    jacobi_2d(A, B, 10)
    first = time.perf_counter() - t0
    jacobi_2d.py_func(A2, B2, 10)

    def jacobi_numpy():
        P, Q = A0.copy(), A0.copy()
        for _ in range(10):
            Q[1:-1, 1:-1] = 0.2 * (P[1:-1, 1:-1] + P[1:-1, :-2] + P[1:-1, 2:] + P[2:, 1:-1] + P[:-2, 1:-1])
            P[1:-1, 1:-1] = 0.2 * (Q[1:-1, 1:-1] + Q[1:-1, :-2] + Q[1:-1, 2:] + Q[2:, 1:-1] + Q[:-2, 1:-1])

    rows.append(("jacobi-2d 120x120 x10", first, _best(lambda: jacobi_2d(A.copy(), B.copy(), 10))[0],
                 _best(lambda: jacobi_2d.py_func(A0.copy(), A0.copy(), 10), 1)[0], _best(jacobi_numpy)[0],
                 np.array_equal(A, A2) and np.array_equal(B, B2)))
    xs = rng.standard_normal(n) * 10
    o1, o2 = np.empty_like(xs), np.empty_like(xs)
    t0 = time.perf_counter()
    softplus(xs, o1)
    first = time.perf_counter() - t0
    softplus.py_func(xs, o2)
    rows.append(("softplus f64 prange n=2e5", first, _best(lambda: softplus(xs, o1))[0],
                 _best(lambda: softplus.py_func(xs, o2), 1)[0],
                 _best(lambda: np.where(xs > 0, xs + np.log1p(np.exp(-xs)), np.log1p(np.exp(xs))))[0],
                 np.allclose(o1, o2, rtol=1e-14, atol=0)))
    # the same kernels on the OpenCL target (pocl on this CPU), where a driver is installed
    cl_times = []
    cases = [(saxpy, (np.float32(2.0), x, y, out)), (dot, (xd, yd)), (jacobi_2d, (A.copy(), B.copy(), 10)),
             (softplus, (xs, o1))]
    for k, args in cases:
        try:
            ck = polyjit.kernel(k.py_func, target="opencl")
            ck(*args)
            cl_times.append(_best(lambda ck=ck, args=args: ck(*args))[0])
        except Exception as e:  # noqa: BLE001 - the demo still runs without an OpenCL driver
            cl_times.append(None)
            print(f"(OpenCL unavailable: {type(e).__name__}: {e})")
            break
    cl_times += [None] * (len(rows) - len(cl_times))
    print(f"polyjit {polyjit.__version__} demo, default target={saxpy.target}")
    print(f"{'kernel':28s} {'first call':>11s} {'native':>10s} {'OpenCL':>10s} {'Python':>10s} {'numpy':>10s}  same")
    for (name, first, pj, py, npy, same), cl in zip(rows, cl_times):
        cl_text = f"{cl * 1e3:8.2f}ms" if cl is not None else f"{'-':>10s}"
        print(f"{name:28s} {first * 1e3:9.1f}ms {pj * 1e3:8.2f}ms {cl_text} {py * 1e3:8.1f}ms {npy * 1e3:8.2f}ms  "
              f"{same}")
    print("\nThe inspected model of saxpy:\n" + saxpy.inspect_model(np.float32(2.0), x, y, out))
    return 0 if all(r[-1] for r in rows) else 1
