"""The benchmark suite: each kernel as a plain Python loop function (what polyjit, Numba and Python run), its
numpy form, argument makers, operation/byte counts, sizes, polyjit hints and (where it fits) a Loo.py form.

Loop lines marked `# par` become `numba.prange` in the Numba `parallel=True` variant (see `numba_parallel`).
polyjit gets the plain-`range` function: its default heuristic picks the parallel loop itself.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass, field

import numpy as np


# ---------------------------------------------------------------- the loop functions -------------------------
def saxpy(a, x, y, out):
    for i in range(len(x)):  # par
        out[i] = a * x[i] + y[i]


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def asum(x):
    s = 0.0
    for i in range(len(x)):
        s += abs(x[i])
    return s


def jacobi_2d(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):  # par
            for j in range(1, n - 1):
                B[i, j] = 0.2 * (A[i, j] + A[i, j - 1] + A[i, j + 1] + A[i + 1, j] + A[i - 1, j])
        for i in range(1, n - 1):  # par
            for j in range(1, n - 1):
                A[i, j] = 0.2 * (B[i, j] + B[i, j - 1] + B[i, j + 1] + B[i + 1, j] + B[i - 1, j])


def heat_3d(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):  # par
            for j in range(1, n - 1):
                for k in range(1, n - 1):
                    B[i, j, k] = (0.125 * (A[i + 1, j, k] - 2.0 * A[i, j, k] + A[i - 1, j, k])
                                  + 0.125 * (A[i, j + 1, k] - 2.0 * A[i, j, k] + A[i, j - 1, k])
                                  + 0.125 * (A[i, j, k + 1] - 2.0 * A[i, j, k] + A[i, j, k - 1])
                                  + A[i, j, k])
        for i in range(1, n - 1):  # par
            for j in range(1, n - 1):
                for k in range(1, n - 1):
                    A[i, j, k] = (0.125 * (B[i + 1, j, k] - 2.0 * B[i, j, k] + B[i - 1, j, k])
                                  + 0.125 * (B[i, j + 1, k] - 2.0 * B[i, j, k] + B[i, j - 1, k])
                                  + 0.125 * (B[i, j, k + 1] - 2.0 * B[i, j, k] + B[i, j, k - 1])
                                  + B[i, j, k])


def gemm(alpha, beta, A, B, C):
    ni, nj = C.shape
    nk = A.shape[1]
    for i in range(ni):  # par
        for j in range(nj):
            C[i, j] = C[i, j] * beta
        for k in range(nk):
            for j in range(nj):
                C[i, j] += alpha * A[i, k] * B[k, j]


def matmul(A, B, C):
    """C += A @ B in the textbook i, j, k order, a perfect nest (so order=/tile= hints apply)."""
    n, m = C.shape
    for i in range(n):  # par
        for j in range(m):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def coulomb(xs, ys, zs, q, pot, h):
    """Potential on a 2-D lattice slice (z = 0) from point charges (the Loo.py paper's example)."""
    nx, ny = pot.shape
    for i in range(nx):  # par
        for j in range(ny):
            s = 0.0
            for a in range(len(q)):
                dx = i * h - xs[a]
                dy = j * h - ys[a]
                dz = zs[a]
                s += q[a] / math.sqrt(dx * dx + dy * dy + dz * dz)
            pot[i, j] = s


def nbody(x, y, z, m, ax, ay, az, eps):
    n = len(x)
    for i in range(n):  # par
        sx = 0.0
        sy = 0.0
        sz = 0.0
        for j in range(n):
            dx = x[j] - x[i]
            dy = y[j] - y[i]
            dz = z[j] - z[i]
            r2 = dx * dx + dy * dy + dz * dz + eps
            inv = m[j] / (r2 * math.sqrt(r2))
            sx += dx * inv
            sy += dy * inv
            sz += dz * inv
        ax[i] = sx
        ay[i] = sy
        az[i] = sz


def conv2d(img, w, out):
    ni, nj = out.shape
    kh, kw = w.shape
    for i in range(ni):  # par
        for j in range(nj):
            s = 0.0
            for di in range(kh):
                for dj in range(kw):
                    s += img[i + di, j + dj] * w[di, dj]
            out[i, j] = s


def atax(A, x, y, tmp):
    m, n = A.shape
    for j in range(n):
        y[j] = 0.0
    for i in range(m):
        tmp[i] = 0.0
        for j in range(n):
            tmp[i] += A[i, j] * x[j]
        for j in range(n):
            y[j] += A[i, j] * tmp[i]


def bicg(A, p, r, q, s):
    n, m = A.shape
    for j in range(m):
        s[j] = 0.0
    for i in range(n):
        q[i] = 0.0
        for j in range(m):
            s[j] += r[i] * A[i, j]
            q[i] += A[i, j] * p[j]


def mvt(A, x1, x2, y1, y2):
    n = A.shape[0]
    for i in range(n):  # par
        for j in range(n):
            x1[i] += A[i, j] * y1[j]
    for i in range(n):
        for j in range(n):
            x2[i] += A[j, i] * y2[j]


def gesummv(alpha, beta, A, B, x, y):
    n = A.shape[0]
    for i in range(n):  # par
        t = 0.0
        u = 0.0
        for j in range(n):
            t += A[i, j] * x[j]
            u += B[i, j] * x[j]
        y[i] = alpha * t + beta * u


def mm2(alpha, beta, A, B, C, D, tmp):
    ni, nk = A.shape
    nj = B.shape[1]
    nl = C.shape[1]
    for i in range(ni):  # par
        for j in range(nj):
            tmp[i, j] = 0.0
        for k in range(nk):
            for j in range(nj):
                tmp[i, j] += alpha * A[i, k] * B[k, j]
    for i in range(ni):  # par
        for j in range(nl):
            D[i, j] *= beta
        for k in range(nj):
            for j in range(nl):
                D[i, j] += tmp[i, k] * C[k, j]


def trisolv(L, b, x):
    n = len(b)
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= L[i, j] * x[j]
        x[i] = s / L[i, i]


def seidel_2d(A, steps):
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                A[i, j] = (A[i - 1, j - 1] + A[i - 1, j] + A[i - 1, j + 1] + A[i, j - 1] + A[i, j]
                           + A[i, j + 1] + A[i + 1, j - 1] + A[i + 1, j] + A[i + 1, j + 1]) / 9.0


def fdtd_2d(ex, ey, hz, fict, steps):
    nx, ny = ex.shape
    for t in range(steps):
        for j in range(ny):
            ey[0, j] = fict[t]
        for i in range(1, nx):  # par
            for j in range(ny):
                ey[i, j] = ey[i, j] - 0.5 * (hz[i, j] - hz[i - 1, j])
        for i in range(nx):  # par
            for j in range(1, ny):
                ex[i, j] = ex[i, j] - 0.5 * (hz[i, j] - hz[i, j - 1])
        for i in range(nx - 1):  # par
            for j in range(ny - 1):
                hz[i, j] = hz[i, j] - 0.7 * (ex[i, j + 1] - ex[i, j] + ey[i + 1, j] - ey[i, j])


# ---------------------------------------------------------------- numpy forms --------------------------------
def np_saxpy(a, x, y, out):
    np.multiply(x, a, out=out)
    out += y


def np_dot(x, y):
    return np.dot(x, y)


def np_asum(x):
    return np.abs(x).sum()


def np_jacobi_2d(A, B, steps):
    for _ in range(steps):
        B[1:-1, 1:-1] = 0.2 * (A[1:-1, 1:-1] + A[1:-1, :-2] + A[1:-1, 2:] + A[2:, 1:-1] + A[:-2, 1:-1])
        A[1:-1, 1:-1] = 0.2 * (B[1:-1, 1:-1] + B[1:-1, :-2] + B[1:-1, 2:] + B[2:, 1:-1] + B[:-2, 1:-1])


def _heat_np(A, B):
    c = A[1:-1, 1:-1, 1:-1]
    B[1:-1, 1:-1, 1:-1] = (0.125 * (A[2:, 1:-1, 1:-1] - 2.0 * c + A[:-2, 1:-1, 1:-1])
                           + 0.125 * (A[1:-1, 2:, 1:-1] - 2.0 * c + A[1:-1, :-2, 1:-1])
                           + 0.125 * (A[1:-1, 1:-1, 2:] - 2.0 * c + A[1:-1, 1:-1, :-2]) + c)


def np_heat_3d(A, B, steps):
    for _ in range(steps):
        _heat_np(A, B)
        _heat_np(B, A)


def np_gemm(alpha, beta, A, B, C):
    C *= beta
    C += alpha * (A @ B)


def np_matmul(A, B, C):
    C += A @ B


def np_coulomb(xs, ys, zs, q, pot, h):
    nx, ny = pot.shape
    gx = (np.arange(nx) * h)[:, None, None]
    gy = (np.arange(ny) * h)[None, :, None]
    pot[...] = (q / np.sqrt((gx - xs) ** 2 + (gy - ys) ** 2 + zs ** 2)).sum(axis=2)


def np_nbody(x, y, z, m, ax, ay, az, eps):
    dx = x[None, :] - x[:, None]
    dy = y[None, :] - y[:, None]
    dz = z[None, :] - z[:, None]
    r2 = dx * dx + dy * dy + dz * dz + eps
    inv = m[None, :] / (r2 * np.sqrt(r2))
    ax[:] = (dx * inv).sum(1)
    ay[:] = (dy * inv).sum(1)
    az[:] = (dz * inv).sum(1)


def np_conv2d(img, w, out):
    ni, nj = out.shape
    out[...] = 0
    for di in range(w.shape[0]):
        for dj in range(w.shape[1]):
            out += img[di:di + ni, dj:dj + nj] * w[di, dj]


def np_atax(A, x, y, tmp):
    tmp[:] = A @ x
    y[:] = A.T @ tmp


def np_bicg(A, p, r, q, s):
    s[:] = r @ A
    q[:] = A @ p


def np_mvt(A, x1, x2, y1, y2):
    x1 += A @ y1
    x2 += A.T @ y2


def np_gesummv(alpha, beta, A, B, x, y):
    y[:] = alpha * (A @ x) + beta * (B @ x)


def np_mm2(alpha, beta, A, B, C, D, tmp):
    tmp[...] = alpha * (A @ B)
    D *= beta
    D += tmp @ C


def np_fdtd_2d(ex, ey, hz, fict, steps):
    for t in range(steps):
        ey[0, :] = fict[t]
        ey[1:, :] -= 0.5 * (hz[1:, :] - hz[:-1, :])
        ex[:, 1:] -= 0.5 * (hz[:, 1:] - hz[:, :-1])
        hz[:-1, :-1] -= 0.7 * (ex[:-1, 1:] - ex[:-1, :-1] + ey[1:, :-1] - ey[:-1, :-1])


# ---------------------------------------------------------------- argument makers ----------------------------
def _rng(seed=0):
    return np.random.default_rng(seed)


def mk_saxpy(n, dt):
    r = _rng()
    return (dt(2.0), r.random(n).astype(dt), r.random(n).astype(dt), np.zeros(n, dt))


def mk_vec1(n, dt):
    return (_rng().random(n).astype(dt) - dt(0.5),)


def mk_vec2(n, dt):
    r = _rng()
    return (r.random(n).astype(dt), r.random(n).astype(dt))


def mk_stencil2(n, dt, steps=4):
    r = _rng()
    return (r.random((n, n)).astype(dt), r.random((n, n)).astype(dt), steps)


def mk_stencil3(n, dt, steps=2):
    r = _rng()
    return (r.random((n, n, n)).astype(dt), r.random((n, n, n)).astype(dt), steps)


def mk_gemm(n, dt):
    r = _rng()
    return (dt(1.5), dt(1.2), r.random((n, n)).astype(dt), r.random((n, n)).astype(dt), r.random((n, n)).astype(dt))


def mk_matmul(n, dt):
    r = _rng()
    return (r.random((n, n)).astype(dt), r.random((n, n)).astype(dt), np.zeros((n, n), dt))


def mk_coulomb(n, dt, atoms=None):
    r = _rng()
    na = atoms or max(16, n // 4)
    return (r.random(na).astype(dt) * n * 0.1, r.random(na).astype(dt) * n * 0.1, (r.random(na) + 0.5).astype(dt),
            (r.random(na) - 0.5).astype(dt), np.zeros((n, n), dt), dt(0.1))


def mk_nbody(n, dt):
    r = _rng()
    return (*(r.random(n).astype(dt) for _ in range(3)), (r.random(n) + 0.5).astype(dt),
            *(np.zeros(n, dt) for _ in range(3)), dt(0.01))


def mk_conv2d(n, dt, k=5):
    r = _rng()
    return (r.random((n + k - 1, n + k - 1)).astype(dt), r.random((k, k)).astype(dt), np.zeros((n, n), dt))


def mk_atax(n, dt):
    r = _rng()
    return (r.random((n, n)).astype(dt), r.random(n).astype(dt), np.zeros(n, dt), np.zeros(n, dt))


def mk_bicg(n, dt):
    r = _rng()
    return (r.random((n, n)).astype(dt), r.random(n).astype(dt), r.random(n).astype(dt), np.zeros(n, dt),
            np.zeros(n, dt))


def mk_mvt(n, dt):
    r = _rng()
    return (r.random((n, n)).astype(dt), *(r.random(n).astype(dt) for _ in range(4)))


def mk_gesummv(n, dt):
    r = _rng()
    return (dt(1.5), dt(1.2), r.random((n, n)).astype(dt), r.random((n, n)).astype(dt), r.random(n).astype(dt),
            np.zeros(n, dt))


def mk_mm2(n, dt):
    r = _rng()
    return (dt(1.5), dt(1.2), *(r.random((n, n)).astype(dt) for _ in range(4)), np.zeros((n, n), dt))


def mk_trisolv(n, dt):
    r = _rng()
    L = np.tril(r.random((n, n)) * 0.1).astype(dt)
    L[np.arange(n), np.arange(n)] = 1.0 + r.random(n).astype(dt)
    return (L, r.random(n).astype(dt), np.zeros(n, dt))


def mk_seidel(n, dt, steps=2):
    return (_rng().random((n, n)).astype(dt), steps)


def mk_fdtd(n, dt, steps=4):
    r = _rng()
    return (r.random((n, n)).astype(dt), r.random((n, n)).astype(dt), r.random((n, n)).astype(dt),
            r.random(steps).astype(dt), steps)


# ---------------------------------------------------------------- the suite ----------------------------------
@dataclass
class Spec:
    name: str
    fn: object
    np_fn: object | None
    make: object                  # (n, dtype) -> args
    flops: object                 # n -> floating-point operations of one call
    nbytes: object                # (n, itemsize) -> bytes a streaming implementation moves (None: compute-bound)
    sizes: dict                   # "small"/"medium"/"large" -> n (cache-resident .. memory-bound)
    hints: dict | None = None     # polyjit hand-written schedule hints
    returns: bool = False         # the result is the return value (a reduction)
    outputs: tuple = ()           # argument positions the kernel writes (compared against the reference)
    metric: str = "GFLOP/s"
    python_max: int | None = None  # plain Python only at n <= this
    notes: str = ""
    extra: dict = field(default_factory=dict)


SUITE = [
    Spec("saxpy", saxpy, np_saxpy, mk_saxpy, lambda n: 2 * n, lambda n, b: 3 * n * b,
         {"small": 4096, "medium": 262144, "large": 4_000_000}, outputs=(3,), metric="GB/s", python_max=4096),
    Spec("dot", dot, np_dot, mk_vec2, lambda n: 2 * n, lambda n, b: 2 * n * b,
         {"small": 4096, "medium": 262144, "large": 4_000_000}, returns=True, metric="GB/s", python_max=4096),
    Spec("asum", asum, np_asum, mk_vec1, lambda n: 2 * n, lambda n, b: n * b,
         {"small": 4096, "medium": 262144, "large": 4_000_000}, returns=True, metric="GB/s", python_max=4096),
    Spec("jacobi-2d", jacobi_2d, np_jacobi_2d, mk_stencil2, lambda n: 4 * 2 * 5 * (n - 2) ** 2,
         lambda n, b: 4 * 2 * 2 * n * n * b, {"small": 64, "medium": 256, "large": 1024}, metric="GB/s", outputs=(0, 1),
         python_max=64),
    Spec("heat-3d", heat_3d, np_heat_3d, mk_stencil3, lambda n: 2 * 2 * 15 * (n - 2) ** 3,
         lambda n, b: 2 * 2 * 2 * n ** 3 * b, {"small": 20, "medium": 48, "large": 120}, metric="GB/s", outputs=(0, 1),
         python_max=20),
    Spec("gemm", gemm, np_gemm, mk_gemm, lambda n: 3 * n ** 3 + n * n, lambda n, b: None,
         {"small": 64, "medium": 192, "large": 384}, outputs=(4,), python_max=48,
         hints={"vectorize": "j", "unroll": {"k": 2}}),
    Spec("matmul", matmul, np_matmul, mk_matmul, lambda n: 2 * n ** 3, lambda n, b: None,
         {"small": 64, "medium": 192, "large": 384}, outputs=(2,), python_max=48,
         hints={"order": ("i", "k", "j"), "vectorize": "j"}, notes="textbook i,j,k; hint order=(i,k,j)"),
    Spec("coulomb", coulomb, np_coulomb, mk_coulomb, lambda n: 11 * n * n * max(16, n // 4),
         lambda n, b: None, {"small": 32, "medium": 128, "large": 384}, outputs=(4,), python_max=32),
    Spec("nbody", nbody, np_nbody, mk_nbody, lambda n: 20 * n * n, lambda n, b: None,
         {"small": 128, "medium": 1000, "large": 3000}, outputs=(4, 5, 6), python_max=128),
    Spec("conv2d", conv2d, np_conv2d, mk_conv2d, lambda n: 2 * 25 * n * n, lambda n, b: None,
         {"small": 64, "medium": 256, "large": 1024}, outputs=(2,), python_max=64),
    Spec("atax", atax, np_atax, mk_atax, lambda n: 4 * n * n, lambda n, b: n * n * b,
         {"small": 64, "medium": 500, "large": 2000}, outputs=(2, 3), python_max=64),
    Spec("bicg", bicg, np_bicg, mk_bicg, lambda n: 4 * n * n, lambda n, b: n * n * b,
         {"small": 64, "medium": 500, "large": 2000}, outputs=(3, 4), python_max=64),
    Spec("mvt", mvt, np_mvt, mk_mvt, lambda n: 4 * n * n, lambda n, b: 2 * n * n * b,
         {"small": 64, "medium": 500, "large": 2000}, outputs=(1, 2), python_max=64),
    Spec("gesummv", gesummv, np_gesummv, mk_gesummv, lambda n: 4 * n * n, lambda n, b: 2 * n * n * b,
         {"small": 64, "medium": 500, "large": 2000}, outputs=(5,), python_max=64),
    Spec("2mm", mm2, np_mm2, mk_mm2, lambda n: 5 * n ** 3, lambda n, b: None,
         {"small": 48, "medium": 128, "large": 256}, outputs=(5, 6), python_max=32),
    Spec("trisolv", trisolv, None, mk_trisolv, lambda n: n * n, lambda n, b: n * n * b // 2,
         {"small": 64, "medium": 500, "large": 2000}, outputs=(2,), python_max=64),
    Spec("seidel-2d", seidel_2d, None, mk_seidel, lambda n: 2 * 9 * (n - 2) ** 2, lambda n, b: None,
         {"small": 64, "medium": 256, "large": 1000}, outputs=(0,), python_max=64),
    Spec("fdtd-2d", fdtd_2d, np_fdtd_2d, mk_fdtd, lambda n: 4 * 11 * n * n, lambda n, b: 4 * 6 * n * n * b,
         {"small": 64, "medium": 256, "large": 1000}, outputs=(0, 1, 2), python_max=64),
]


def numba_parallel(fn):
    """`fn` with its `# par` loops written with numba.prange, compiled with parallel=True (None if none)."""
    import numba
    src = textwrap.dedent(inspect.getsource(fn))
    if "# par" not in src:
        return None
    lines = [ln.replace("range(", "numba.prange(", 1) if ln.rstrip().endswith("# par") else ln
             for ln in src.splitlines()]
    ns = dict(fn.__globals__)
    ns["numba"] = numba
    exec(compile("\n".join(lines), f"<numba prange {fn.__name__}>", "exec"), ns)
    return numba.njit(parallel=True)(ns[fn.__name__])
