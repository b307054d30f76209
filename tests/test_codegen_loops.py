"""Differential tests of the native code paths for scalar and vector inner loops (lowering/native_loop.py,
the vectorizer's scalar remainder and unrolled main loop, the heuristic's per-loop vector tags, float32
operations computed without the float64 round trip): compiled result == `.py_func` on copies of the inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import check

import polyjit

SIZES = (0, 1, 2, 3, 5, 7, 13, 31)
DTYPES = (np.float32, np.float64)


def _rng(seed=0):
    return np.random.default_rng(seed)


def atax(A, x, y, tmp):  # tmp[i] kept in a register over the first j loop; the second j loop vectorized
    m, n = A.shape
    for j in range(n):
        y[j] = 0.0
    for i in range(m):
        tmp[i] = 0.0
        for j in range(n):
            tmp[i] += A[i, j] * x[j]
        for j in range(n):
            y[j] += A[i, j] * tmp[i]


def gesummv(alpha, beta, A, B, x, y):  # two sums in registers, three strength-reduced pointers
    n = A.shape[0]
    for i in range(n):
        t = 0.0
        u = 0.0
        for j in range(n):
            t += A[i, j] * x[j]
            u += B[i, j] * x[j]
        y[i] = alpha * t + beta * u


def seidel(A, steps):  # nine neighbours through three row pointers and +-stride offsets
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                A[i, j] = (A[i - 1, j - 1] + A[i - 1, j] + A[i - 1, j + 1] + A[i, j - 1] + A[i, j]
                           + A[i, j + 1] + A[i + 1, j - 1] + A[i + 1, j] + A[i + 1, j + 1]) / 9.0


def wide_offsets(a, out):  # offsets of two and three elements, before and after
    n = a.shape[0]
    for i in range(3, n - 3):
        out[i] = a[i - 3] * 0.5 + a[i + 2] - a[i - 2] * a[i + 3]


def trisolv(L, b, x):  # a triangular inner loop: empty for i = 0
    n = len(b)
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= L[i, j] * x[j]
        x[i] = s / L[i, i]


def shifted_accumulator(x, A):  # x[i - 1] is only touched where the inner loop runs (i >= 1)
    n = A.shape[0]
    for i in range(n):
        for j in range(i):
            x[i - 1] += A[i, j]


def stepped(A, out):  # steps of 2 and downward loops: pointers advance by multiples of strides
    n = A.shape[0]
    for i in range(n):
        for j in range(0, n, 2):
            out[i] += A[i, j] * 3.0
        for j in range(n - 1, -1, -3):
            out[i] -= A[j, i]


def diagonal(A, out):  # one pointer moving along two dimensions at once
    n = len(out)
    for i in range(n):
        s = 0.0
        for k in range(n - i):
            s += A[k, k + i]
        out[i] = s


def guarded(A, out):  # an element written under a condition: stays in memory, pointers still advance
    n, m = A.shape
    for i in range(n):
        for j in range(m):
            if A[i, j] > 0.5:
                out[i] += A[i, j]


def integers(A, out):  # integer arrays through the advancing pointers
    n, m = A.shape
    for i in range(n):
        for j in range(1, m):
            out[i, j] = A[i, j] * 3 + A[i, j - 1] - out[i, j - 1]


def constants(x):  # float constants and the sign mask loaded once before the loop
    s = 0.0
    for i in range(len(x)):
        s += abs(x[i]) * 0.25 - (-x[i]) * 1.5
    return s


def same_name_loops(a, b, c):  # `j` names a loop carrying a dependence and one free of them
    n = len(a)
    for j in range(n - 1):
        a[j + 1] = a[j] * 0.5 + c[j]
    for j in range(n):
        b[j] = c[j] * 2.0 + a[j]


def stencil3(A, B):  # vector loop: shared pointers with constant displacements, scalar remainder
    n = A.shape[0]
    for i in range(1, n - 1):
        for j in range(1, n - 1):
            for k in range(1, n - 1):
                B[i, j, k] = (0.125 * (A[i + 1, j, k] - 2.0 * A[i, j, k] + A[i - 1, j, k])
                              + 0.125 * (A[i, j, k + 1] - 2.0 * A[i, j, k] + A[i, j, k - 1]) + A[i, j, k])


def remainder_ops(x, y, out):  # every operation the vector body supports, in the scalar remainder too
    for i in range(len(x)):
        t = x[i] / (y[i] + 2.0)
        out[i] = min(abs(t), math.sqrt(y[i] + 1.0)) - max(-t, x[i]) * 0.5


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def norm_terms(x, y):  # float32 sqrt and arithmetic of float64 casts: computed in float32
    s = 0.0
    for i in range(len(x)):
        r = x[i] * x[i] + y[i]
        s += x[i] / (r * math.sqrt(r))
    return s


def index_arithmetic(a, out):  # index + constant as an immediate operand
    n = len(a)
    for i in range(n - 2):
        out[i + 2] = a[i] + a[i + 1] * 2 - a[i + 2]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_atax(n, dt):
    r = _rng(n)
    check(polyjit.kernel(atax, cache=False), r.random((n, n + 2)).astype(dt), r.random(n + 2).astype(dt),
          np.zeros(n + 2, dt), np.zeros(n, dt))


def test_atax_vectorizes_the_dependence_free_loop():
    r = _rng()
    k = polyjit.kernel(atax, cache=False)
    lines = k.inspect_schedule(r.random((5, 6)), r.random(6), np.zeros(6), np.zeros(5)).splitlines()
    loop_of = {line.strip().split("(")[0]: lines[k - 1] for k, line in enumerate(lines) if "(i=" in line}
    assert "vector" in loop_of["S3"] and "vector" not in loop_of["S2"]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_gesummv(n, dt):
    r = _rng(n)
    check(polyjit.kernel(gesummv, cache=False), dt(1.5), dt(1.2), r.random((n, n)).astype(dt),
          r.random((n, n)).astype(dt), r.random(n).astype(dt), np.zeros(n, dt))


@pytest.mark.parametrize("n", SIZES)
def test_gesummv_strided_views(n):
    r = _rng(n)
    A = r.random((2 * n + 1, 3 * n + 1))[::2, ::3][:n, :n]
    B = np.asfortranarray(r.random((n, n)))
    x = r.random(2 * n)[::-2]
    check(polyjit.kernel(gesummv, cache=False), 1.5, 1.2, A, B, x, np.zeros(n))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_seidel(n, dt):
    check(polyjit.kernel(seidel, cache=False), _rng(n).random((n, n)).astype(dt), 2)


@pytest.mark.parametrize("n", (0, 1, 3, 8))
def test_seidel_transposed_and_reversed(n):
    A = np.ascontiguousarray(_rng(n).random((n, n)))
    check(polyjit.kernel(seidel, cache=False), A.T, 2)
    check(polyjit.kernel(seidel, cache=False), A[::-1, ::-1], 1)


@pytest.mark.parametrize("n", SIZES + (9, 40))
def test_wide_offsets(n):
    r = _rng(n)
    check(polyjit.kernel(wide_offsets, cache=False), r.random(n), np.zeros(n))
    check(polyjit.kernel(wide_offsets, cache=False), r.random(2 * n)[::2], np.zeros(n))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_trisolv(n, dt):
    r = _rng(n)
    L = np.tril(r.random((n, n)) * 0.1).astype(dt)
    L[np.arange(n), np.arange(n)] = 1.0 + r.random(n).astype(dt)
    check(polyjit.kernel(trisolv, cache=False), L, r.random(n).astype(dt), np.zeros(n, dt))


@pytest.mark.parametrize("n", SIZES)
def test_shifted_accumulator(n):
    r = _rng(n)
    check(polyjit.kernel(shifted_accumulator, cache=False), r.random(max(n, 1)), r.random((n, n)))


@pytest.mark.parametrize("n", SIZES)
def test_stepped(n):
    r = _rng(n)
    check(polyjit.kernel(stepped, cache=False), r.random((n, n)), r.random(n))


@pytest.mark.parametrize("shape", ((0, 0), (1, 1), (3, 5), (4, 6), (9, 9)))
def test_diagonal(shape):
    r = _rng(shape[0])
    check(polyjit.kernel(diagonal, cache=False), r.random(shape), np.zeros(min(shape)))


@pytest.mark.parametrize("n", SIZES)
def test_guarded(n):
    r = _rng(n)
    check(polyjit.kernel(guarded, cache=False), r.random((n, n + 1)), r.random(n))


@pytest.mark.parametrize("dt", (np.int32, np.int64, np.int8))
@pytest.mark.parametrize("n", (0, 1, 2, 7))
def test_integers(n, dt):
    r = _rng(n)
    check(polyjit.kernel(integers, cache=False), r.integers(-50, 50, (n, n + 1)).astype(dt),
          r.integers(-50, 50, (n, n + 1)).astype(dt))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_constants(n, dt):
    x = (_rng(n).random(n) - 0.5).astype(dt)
    if n:
        x[0] = -0.0
    check(polyjit.kernel(constants, cache=False), x, exact_type=False)


@pytest.mark.parametrize("n", SIZES + (17,))
def test_same_name_loops(n):
    r = _rng(n)
    check(polyjit.kernel(same_name_loops, cache=False), r.random(n), np.zeros(n), r.random(n))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES + (12, 21))
def test_stencil3(n, dt):
    r = _rng(n)
    check(polyjit.kernel(stencil3, cache=False), r.random((n, n, n)).astype(dt), np.zeros((n, n, n), dt))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES + (17, 35, 67))
def test_remainder_ops(n, dt):
    r = _rng(n)
    x = (r.random(n) - 0.5).astype(dt)
    y = r.random(n).astype(dt)
    check(polyjit.kernel(remainder_ops, cache=False), x, y, np.zeros(n, dt))
    check(polyjit.kernel(remainder_ops, cache=False), x[::-1], y, np.zeros(n, dt))


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES + (33, 67, 1001))
def test_dot_fastmath_remainder(n, dt):
    r = _rng(n)
    check(polyjit.kernel(dot, cache=False, fastmath=True), r.random(n).astype(dt), r.random(n).astype(dt),
          rtol=1e-4, exact_type=False)


@pytest.mark.parametrize("n", SIZES)
def test_float32_operations(n):
    r = _rng(n)
    x = r.random(n).astype(np.float32) + np.float32(0.1)
    check(polyjit.kernel(norm_terms, cache=False), x, r.random(n).astype(np.float32), exact_type=False)


@pytest.mark.parametrize("dt", (np.int64, np.float64))
@pytest.mark.parametrize("n", SIZES)
def test_index_arithmetic(n, dt):
    r = _rng(n)
    check(polyjit.kernel(index_arithmetic, cache=False), r.integers(0, 9, n).astype(dt), np.zeros(n, dt))


def test_overlapping_arrays_keep_memory_order():
    """tmp and y as one array: the element kept in a register would miss the writes through y."""
    r = _rng()
    A, x = r.random((6, 6)), r.random(6)
    buf = np.zeros(6)
    check(polyjit.kernel(atax, cache=False), A, x, buf, buf)
    big = np.zeros(12)
    check(polyjit.kernel(atax, cache=False), A, x, big[:6], big[3:9])


def downward_recurrence(A):  # the stored value handed on to the next (lower) iteration's load
    n = len(A)
    for j in range(n - 2, 0, -1):
        A[j] = A[j + 1] * 0.5 + A[j] - A[j - 1] * 0.25


def read_after_store(A, out):  # a load of the stored array after the store: no forwarding
    n = len(A)
    for j in range(1, n):
        A[j] = A[j - 1] * 0.5 + 1.0
        out[j] = A[j - 1] + A[j]


def two_stores(A):  # two stores to one array: no forwarding
    n = len(A)
    for j in range(1, n - 1):
        A[j] = A[j - 1] + 1.0
        A[j + 1] = A[j] * 0.5


@pytest.mark.parametrize("n", SIZES)
def test_downward_recurrence(n):
    check(polyjit.kernel(downward_recurrence, cache=False), _rng(n).random(n))


@pytest.mark.parametrize("n", SIZES)
def test_read_after_store(n):
    r = _rng(n)
    check(polyjit.kernel(read_after_store, cache=False), r.random(n), np.zeros(n))
    check(polyjit.kernel(two_stores, cache=False), r.random(n))


@pytest.mark.parametrize("strides", ((8, 0), (8, 8), (0, 8), (16, -8)))
def test_seidel_self_overlapping_rows(strides):
    """Rows or elements of one array that share memory: the forwarded store and the pointers stay exact."""
    n = 6
    base = _rng(n).random(4 * n)
    offset = 8 * (n - 1) if strides[1] < 0 else 0
    A = np.lib.stride_tricks.as_strided(base[offset // 8:], shape=(n, n), strides=strides, writeable=True)
    check(polyjit.kernel(seidel, cache=False), A, 2)


def conv2d(img, w, out):  # the dj loop's start pointers kept and advanced by the di loop
    ni, nj = out.shape
    kh, kw = w.shape
    for i in range(ni):
        for j in range(nj):
            s = 0.0
            for di in range(kh):
                for dj in range(kw):
                    s += img[i + di, j + dj] * w[di, dj]
            out[i, j] = s


def triangle(A, x):  # inner start moving with the outer iterator along two dimensions
    n = A.shape[0]
    s = 0.0
    for i in range(n):
        for j in range(i, n):
            s += A[j, i] * x[j - i]
    return s


def stepped_nest(A):  # outer step of 3, inner loop downwards from an outer-dependent start
    n = A.shape[0]
    s = 0.0
    for i in range(0, n, 3):
        for j in range(i, -1, -1):
            s += A[i, j] * 0.5 + A[j, i]
    return s


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_conv2d(n, dt):
    r = _rng(n)
    for k in (1, 3, 5):
        check(polyjit.kernel(conv2d, cache=False), r.random((n + k - 1, n + k - 1)).astype(dt),
              r.random((k, k)).astype(dt), np.zeros((n, n), dt))
    img = r.random((2 * n + 4, 3 * n + 4))[::2, ::3]
    check(polyjit.kernel(conv2d, cache=False), img, np.asfortranarray(r.random((2, 2))), np.zeros((n, n)))


@pytest.mark.parametrize("n", SIZES)
def test_triangle_nests(n):
    r = _rng(n)
    check(polyjit.kernel(triangle, cache=False), r.random((n, n)), r.random(n), exact_type=False)
    check(polyjit.kernel(triangle, cache=False), r.random((n, n)).T, r.random(2 * n)[::-2], exact_type=False)
    check(polyjit.kernel(stepped_nest, cache=False), r.random((n, n)), exact_type=False)
    check(polyjit.kernel(stepped_nest, cache=False), r.random((n, 2 * n))[:, ::2], exact_type=False)


def gemm(alpha, beta, A, B, C):  # the k loop keeps the j vector loop's stream pointers
    ni, nj = C.shape
    nk = A.shape[1]
    for i in range(ni):
        for j in range(nj):
            C[i, j] = C[i, j] * beta
        for k in range(nk):
            for j in range(nj):
                C[i, j] += alpha * A[i, k] * B[k, j]


def shifted_rows(A, out):  # vector streams a constant apart, kept by the row loop (sequential: t)
    n = A.shape[0]
    for t in range(2):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                out[j] = out[j] * 0.5 + A[i - 1, j + 1] - A[i + 1, j - 1]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", SIZES + (17, 40))
def test_gemm(n, dt):
    r = _rng(n)
    args = [r.random((n, n + 1)).astype(dt), r.random((n + 1, n + 3)).astype(dt), r.random((n, n + 3)).astype(dt)]
    check(polyjit.kernel(gemm, cache=False), dt(1.5), dt(1.2), *args)
    check(polyjit.kernel(gemm, cache=False), dt(1.5), dt(1.2), args[0], args[1][:, ::-1], np.asfortranarray(args[2]))


@pytest.mark.parametrize("n", SIZES + (19,))
def test_shifted_rows(n):
    r = _rng(n)
    check(polyjit.kernel(shifted_rows, cache=False), r.random((n, n)), r.random(n))
    check(polyjit.kernel(shifted_rows, cache=False), r.random((n, 2 * n))[:, ::2], r.random(n))
