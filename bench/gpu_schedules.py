"""GPU figures for the schedules issue, through OpenCL on the lent NVIDIA H100 (see bench/README.md for the set-up):
saxpy float32 n=2^27 (bandwidth against the 3.35 TB/s HBM peak; beside it the best hand-written OpenCL kernel,
CuPy's fused saxpy and CuPy's copy), sgemm 4096 with the heuristic (no hints), with register tiles (with and
without fastmath, which lets the compiler contract a*b + c into FMAs), with parallel=("i", "j"), with
work-groups (tile 16x16x16, both halves of each split parallel) and with prefetch of A and B into __local
memory, against CuPy's float32 matmul. Medians; writes $OUT/gpu.json.

    POLYJIT_OPENCL_DEVICE=NVIDIA python bench/gpu_schedules.py
"""

from __future__ import annotations

import json
import os
import time

import cupy as cp
import numpy as np
import pyopencl.array as cla

import polyjit
from polyjit.opencl_runtime import context_and_queue

WG = ("i_outer", "j_outer", "i_inner", "j_inner")
# register tiles: a work-group of 16x16 work-items computes a 128x128 tile of C, each work-item 8x8 elements
# 16 rows/columns apart (i == 128*i_outer + 16*i_inner_outer + i_inner_inner), kept in registers across the
# k loops (lowering/opencl_tiles.py) while A's and B's 128x16 tiles are copied to __local memory
REGISTER_TILES = dict(split={"i": 128, "j": 128, "k": 16}, tile={"i_inner": 16, "j_inner": 16},
                      order=("i_outer", "j_outer", "k_outer", "i_inner_inner", "j_inner_inner", "k_inner",
                             "i_inner_outer", "j_inner_outer"),
                      unroll=("i_inner_outer", "j_inner_outer"),
                      parallel=("i_outer", "j_outer", "i_inner_inner", "j_inner_inner"),
                      prefetch={"A": "k_outer", "B": "k_outer"})
SGEMM_HINTS = [
    ("heuristic (no hints; on a GPU: these register tiles)", {}),
    ("heuristic, fastmath", dict(fastmath=True)),
    ("register tiles 8x8, work-groups 16x16, k 16, fastmath", dict(REGISTER_TILES, fastmath=True)),
    ("register tiles 8x8, work-groups 16x16, k 16", REGISTER_TILES),
    ("parallel i,j", dict(parallel=("i", "j"))),
    ("work-groups 16x16 (k 16)", dict(tile={"i": 16, "j": 16, "k": 16}, parallel=WG)),
    ("work-groups 16x16 (k 16) + prefetch A,B", dict(tile={"i": 16, "j": 16, "k": 16}, parallel=WG,
                                                     prefetch={"A": "k_outer", "B": "k_outer"})),
]


def saxpy(a, x, y, o):
    for i in range(len(x)):
        o[i] = a * x[i] + y[i]


def sgemm(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def median_time(queue, fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        queue.finish()
        t0 = time.perf_counter()
        fn()
        queue.finish()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cupy_time(fn, reps: int = 10) -> float:
    fn()
    times = []
    for _ in range(reps):
        cp.cuda.Device().synchronize()
        t0 = time.perf_counter()
        fn()
        cp.cuda.Device().synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# the best hand-written OpenCL saxpy found on the H100 (session 7): four floats per work-item; the ceiling
# of what OpenCL reaches there, next to CUDA's (CuPy) fused saxpy and plain copy
HAND_SAXPY = """
__kernel void saxpy4(__global const float4 *restrict x, __global const float4 *restrict y,
                     __global float4 *restrict o, float a, long n4)
{ long i = get_global_id(0); if (i < n4) o[i] = a * x[i] + y[i]; }
"""


def saxpy_figures(ctx, q, out: dict, n: int = 2**27) -> None:
    import pyopencl as cl

    def report(name, t, nbytes=12 * n):
        out[f"saxpy_{name}_GBps"] = nbytes / t / 1e9
        print(f"saxpy f32 n={n} {name}: {t * 1e6:.0f} us, {nbytes / t / 1e9:.0f} GB/s "
              f"({nbytes / t / 1e9 / 3350:.0%} of 3.35 TB/s)", flush=True)
    k = polyjit.kernel(saxpy, target="opencl", parallel="i", cache=False)
    x = cla.to_device(q, np.random.rand(n).astype(np.float32))
    y = cla.to_device(q, np.random.rand(n).astype(np.float32))
    o = cla.empty_like(x)
    k(np.float32(2), x, y, o)
    assert np.array_equal(o.get(), np.float32(2) * x.get() + y.get())
    report("polyjit", median_time(q, lambda: k(np.float32(2), x, y, o), 15))
    for w in (4, 8):  # float4 / float8 per work-item (lowering/opencl_vector.py)
        v = polyjit.kernel(saxpy, target="opencl", vectorize={"i": w}, parallel="i_outer", cache=False)
        v(np.float32(2), x, y, o)
        assert np.array_equal(o.get(), np.float32(2) * x.get() + y.get())
        report(f"polyjit vectorize={{'i': {w}}}", median_time(q, lambda v=v: v(np.float32(2), x, y, o), 15))
    hand = cl.Kernel(cl.Program(ctx, HAND_SAXPY).build(), "saxpy4")
    size = (n // 4 + 511) // 512 * 512
    report("hand-written OpenCL float4", median_time(q, lambda: hand(q, (size,), (512,), x.data, y.data, o.data,
                                                                       np.float32(2), np.int64(n // 4)), 15))
    cx, cy, co = cp.asarray(x.get()), cp.asarray(y.get()), cp.empty(n, cp.float32)
    fused = cp.ElementwiseKernel("float32 a, float32 x, float32 y", "float32 o", "o = a * x + y", "saxpy")
    report("CuPy fused", cupy_time(lambda: fused(np.float32(2), cx, cy, co), 15))
    report("CuPy copy (8 bytes/element)", cupy_time(lambda: cp.copyto(co, cx), 15), 8 * n)


def main() -> None:
    ctx, q = context_and_queue()
    out = {"device": ctx.devices[0].name}
    print("device:", ctx.devices[0].name, flush=True)
    saxpy_figures(ctx, q, out)
    N = 4096
    A = np.random.rand(N, N).astype(np.float32)
    B = np.random.rand(N, N).astype(np.float32)
    dA, dB = cla.to_device(q, A), cla.to_device(q, B)
    cA, cB = cp.asarray(A), cp.asarray(B)
    cupy = [cupy_time(lambda: cp.matmul(cA, cB))]  # before and after polyjit's runs (the GPU's clocks drift)
    for name, hints in SGEMM_HINTS:
        g = polyjit.kernel(sgemm, target="opencl", cache=False, **hints)
        dC = cla.zeros(q, (N, N), np.float32)
        try:
            t0 = time.perf_counter()
            g(dA, dB, dC)
            q.finish()
            first = time.perf_counter() - t0
            t = median_time(q, lambda g=g, dC=dC: g(dA, dB, dC), 7)
            check = cla.zeros(q, (N, N), np.float32)
            g(dA, dB, check)
            ok = np.allclose(check.get()[:64, :64], A[:64] @ B[:, :64], rtol=1e-3)
            print(f"sgemm {N} [{name}]: {t * 1e3:.1f} ms, {2 * N**3 / t / 1e12:.2f} TFLOP/s "
                  f"(first call {first:.2f} s) ok={ok}", flush=True)
            out[f"sgemm_{name}"] = 2 * N**3 / t / 1e12
        except Exception as e:  # noqa: BLE001 - report and go on with the next schedule
            print("sgemm", name, "failed:", type(e).__name__, str(e)[:300], flush=True)
    cupy.append(cupy_time(lambda: cp.matmul(cA, cB)))
    t = float(np.mean(cupy))
    print(f"cupy matmul f32 {N}: {t * 1e3:.2f} ms, {2 * N**3 / t / 1e12:.2f} TFLOP/s (before: "
          f"{2 * N**3 / cupy[0] / 1e12:.2f}, after: {2 * N**3 / cupy[1] / 1e12:.2f})", flush=True)
    out["cupy_sgemm_TFLOPs"] = 2 * N**3 / t / 1e12
    for key in [k for k in out if k.startswith("sgemm_")]:
        print(f"  {key[6:]}: {out[key] / out['cupy_sgemm_TFLOPs']:.1%} of CuPy", flush=True)
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "gpu.json"), "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main()
