"""Outer-loop SIMD lanes (lowering/lanes.py): a dependence-free loop around inner sums runs its iterations in
vector lanes, each in its own order, so results are bit-identical to Python at every size and stride."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check

import polyjit


def conv2d(img, w, out):
    ni, nj = out.shape
    kh, kw = w.shape
    for i in range(ni):
        for j in range(nj):
            s = 0.0
            for di in range(kh):
                for dj in range(kw):
                    s += img[i + di, j + dj] * w[di, dj]
            out[i, j] = s


def coulomb(xs, ys, zs, q, pot, h):  # float(j) in lanes, sqrt, division
    nx, ny = pot.shape
    for i in range(nx):
        for j in range(ny):
            s = 0.0
            for a in range(len(q)):
                dx = i * h - xs[a]
                dy = j * h - ys[a]
                dz = zs[a]
                s += q[a] / math.sqrt(dx * dx + dy * dy + dz * dz)
            pot[i, j] = s


def nbody(x, y, z, m, ax, ay, az, eps):  # three sums, temporaries private to the inner loop
    n = len(x)
    for i in range(n):
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


def rowsums(a, out):  # lanes along the last dimension with a triangular inner loop, min/abs/neg
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s = -a[i, j]
            for k in range(i + 1):
                s = min(s + abs(a[k, j]) * 0.5, 100.0)
            out[i, j] = s


def offset(a, out):  # the lane var with an offset in the index, reversed inner loop
    for i in range(out.shape[0]):
        for j in range(1, out.shape[1]):
            s = 1.0
            for k in range(a.shape[0] - 1, -1, -1):
                s = s * 0.5 + a[k, j - 1]
            out[i, j] = s


@pytest.fixture(params=["native", "sse2"])
def tier(request, monkeypatch):
    if request.param == "sse2":
        monkeypatch.setenv("POLYJIT_ISA", "sse2")
    return request.param


def _tagged(k, *args):
    return "=vector" in k.inspect_schedule(*args).split("tags:")[1].splitlines()[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 17, 33, 40])
def test_conv2d(n, dtype, tier):
    rng = np.random.default_rng(n)
    img = rng.random((n + 4, n + 4)).astype(dtype)
    w = rng.random((5, 5)).astype(dtype)
    k = polyjit.kernel(conv2d, cache=False)
    check(k, img, w, np.zeros((n, n), dtype))
    if n == 9:
        assert _tagged(k, img, w, np.zeros((n, n), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_views(dtype, tier):
    """Strided, reversed and offset views: non-unit last strides take the scalar loop."""
    rng = np.random.default_rng(1)
    big = rng.random((60, 60)).astype(dtype)
    w = rng.random((3, 3)).astype(dtype)
    k = polyjit.kernel(conv2d, cache=False)
    check(k, big[::2, ::2], w, np.zeros((28, 28), dtype))
    check(k, big[::-1, ::-1], w[::-1], np.zeros((58, 58), dtype))
    check(k, big[3:, 5:], w, np.zeros((55, 40), dtype)[:, ::-1])
    check(k, big[::-1, 1:], w, np.zeros((58, 50), dtype)[::-2])
    check(k, big, w[:0], np.zeros((20, 21), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 5, 16, 21])
def test_coulomb(n, dtype, tier):
    rng = np.random.default_rng(n)
    na = 7
    args = (rng.random(na).astype(dtype), rng.random(na).astype(dtype), (rng.random(na) + 0.5).astype(dtype),
            (rng.random(na) - 0.5).astype(dtype), np.zeros((n, n + 3), dtype), dtype(0.1))
    check(polyjit.kernel(coulomb, cache=False), *args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 2, 9, 35])
def test_nbody(n, dtype, tier):
    rng = np.random.default_rng(n)
    args = (*(rng.random(n).astype(dtype) for _ in range(3)), (rng.random(n) + 0.5).astype(dtype),
            *(np.zeros(n, dtype) for _ in range(3)), dtype(0.01))
    k = polyjit.kernel(nbody, cache=False)
    check(k, *args)
    views = tuple(a[::-1] if isinstance(a, np.ndarray) else a for a in args)
    check(k, *views)


@pytest.mark.parametrize("fastmath", [False, True])
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (4, 7), (6, 19), (9, 40)])
def test_other_bodies(shape, fastmath, tier):
    rng = np.random.default_rng(shape[1])
    a = rng.random(shape) - 0.5
    rtol = 1e-12 if fastmath else None
    check(polyjit.kernel(rowsums, cache=False, fastmath=fastmath), a, np.zeros(shape), rtol=rtol)
    check(polyjit.kernel(offset, cache=False, fastmath=fastmath), a, np.zeros((3, shape[1])), rtol=rtol)


def test_special_values(tier):
    """NaN, infinities and signed zeros go through the lanes as through the scalar code."""
    img = np.array([[np.nan, -0.0, np.inf, 1.0, -np.inf, 2.0, 0.0, 3.0, -1.0, 5.0, 1e308, -1e308]] * 4)
    w = np.array([[1.0, -0.0], [1e10, 0.5]])
    check(polyjit.kernel(conv2d, cache=False), img, w, np.zeros((3, 11)))


def prefix(a, out):  # j carries a dependence through out: not run in lanes
    for i in range(out.shape[0]):
        for j in range(1, out.shape[1]):
            s = out[i, j - 1]
            for k in range(a.shape[0]):
                s += a[k, j]
            out[i, j] = s


def scaled(a, out):  # the inner loop runs in lanes itself: the outer loop is left alone
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = 2.0 * a[i, j]


def test_only_dependence_free_loops_around_sums(tier):
    a = np.random.default_rng(3).random((5, 13))
    k = polyjit.kernel(prefix, cache=False)  # (i may be tagged: its accesses move along rows, no lanes)
    assert "j=vector" not in k.inspect_schedule(a, np.ones((4, 13)))
    check(k, a, np.ones((4, 13)))
    k = polyjit.kernel(scaled, cache=False)
    assert "i=vector" not in k.inspect_schedule(a, np.zeros((5, 13)))
    check(k, a, np.zeros((5, 13)))


def gesummv(alpha, beta, A, B, x, y):  # lanes along rows: copies of the scalar code, any strides
    n = A.shape[0]
    for i in range(n):
        t = 0.0
        u = 0.0
        for j in range(n):
            t += A[i, j] * x[j]
            u += B[i, j] * x[j]
        y[i] = alpha * t + beta * u


def columns(a, out):  # two moving dimensions (a diagonal), float(i), sqrt and an element updated in place
    for i in range(out.shape[0]):
        s = i * 0.25
        for k in range(a.shape[1] - out.shape[0]):
            s = s + math.sqrt(abs(a[i, i + k]))
        out[i] = out[i] * 0.5 + s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 13])
def test_scalar_copies(n, dtype, tier):
    rng = np.random.default_rng(n)
    A, B = (rng.random((n, n)).astype(dtype) for _ in range(2))
    x = rng.random(n).astype(dtype)
    k = polyjit.kernel(gesummv, cache=False)
    check(k, dtype(1.5), dtype(0.5), A, B, x, np.zeros(n, dtype))
    check(k, dtype(1.5), dtype(0.5), A[::-1], B.T, x[::-1], np.zeros(2 * n, dtype)[::2])
    big = rng.random((n + 2, 2 * n + 9)).astype(dtype) - 0.5
    c = polyjit.kernel(columns, cache=False)
    check(c, big, rng.random(n + 2).astype(dtype))
    check(c, big[::-1, ::2], rng.random(n + 2).astype(dtype)[::-1])


def cancelled(A, out):  # the lane iterator cancels out of the index: a uniform row
    for j in range(out.shape[0]):
        s = 0.0
        for k in range(A.shape[1]):
            s += A[j - j + 1, k] * 2.0
        out[j] = s


def doubled(A, out):  # rows 2i and a divided column index
    for i in range(out.shape[0]):
        s = 0.0
        for k in range(A.shape[1]):
            s += A[2 * i, k] + A[i, 3 * k // 4]
        out[i] = s


def test_odd_indices(tier):
    A = np.random.default_rng(5).random((20, 9))
    for fn in (cancelled, doubled):
        for n in (0, 1, 6, 9):
            check(polyjit.kernel(fn, cache=False), A, np.zeros(n))


@pytest.mark.parametrize("isa", ["sse2", "avx2", "avx512"])
def test_lanes_use_the_tiers_full_vectors(isa, monkeypatch):
    """Every tier runs conv2d's j in lanes of its widest vectors (xmm, ymm, zmm): no tier falls back to the
    scalar loop, and the lanes stay bit-identical."""
    from polyjit.asm.cpu import available_tiers
    if isa not in available_tiers():
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("POLYJIT_ISA", isa)
    rng = np.random.default_rng(3)
    img, w = rng.random((37, 41)).astype(np.float32), rng.random((5, 5)).astype(np.float32)
    k = polyjit.kernel(conv2d, cache=False)
    check(k, img, w, np.zeros((33, 37), np.float32))
    listing = k.inspect_asm(img, w, np.zeros((33, 37), np.float32))
    reg = {"sse2": "xmm", "avx2": "ymm", "avx512": "zmm"}[isa]
    mul = "mulps" if isa == "sse2" else "vmulps"
    assert any(f"{mul} {reg}" in line for line in listing.splitlines()), listing
