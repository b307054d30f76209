"""Regression tests for bugs found by the benchmark harness and the fuzzer (each names its bug)."""

import numpy as np
import pytest

import polyjit
from helpers import check


@polyjit.kernel
def absolute(x, out):
    for i in range(len(x)):
        out[i] = abs(x[i])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_abs_of_negative_zero_is_positive_zero(dt):
    """bench found abs(-0.0) == -0.0 natively: abs was a compare-and-branch, not a sign-bit clear."""
    x = np.array([-0.0, -1.5, 2.0, np.nan, -np.inf, 0.0, -3.0], dt)
    out = check(absolute, x, np.empty_like(x))
    assert out is None


def matmul(A, B, C):
    for i in range(C.shape[0]):
        for k in range(A.shape[1]):
            for j in range(C.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def test_hints_keep_simd_where_they_are_silent():
    """bench found that order=/tile= hints dropped the heuristic's vector tag (scalar code, 15x slower)."""
    args = (np.zeros((5, 5)), np.zeros((5, 5)), np.zeros((5, 5)))
    assert "j=vector" in polyjit.kernel(matmul, order=("i", "k", "j")).inspect_schedule(*args)
    tiled = polyjit.kernel(matmul, tile={"i": 4, "k": 3})
    assert "j=vector" in tiled.inspect_schedule(*args)
    rng = np.random.default_rng(1)
    check(tiled, rng.random((9, 7)), rng.random((7, 13)), rng.random((9, 13)))


def test_fastmath_contracts_and_stays_close():
    """fastmath=True may fuse multiply-adds and reassociate sums: results stay within rounding."""
    k = polyjit.kernel(matmul, fastmath=True)
    rng = np.random.default_rng(2)
    A, B = rng.random((17, 23)), rng.random((23, 29))
    C = np.zeros((17, 29))
    k(A, B, C)
    np.testing.assert_allclose(C, A @ B, rtol=1e-12)
    if polyjit.kernel(matmul).target == "native":
        from polyjit.asm import isa_tier
        listing = k.inspect_asm(A, B, C)
        assert ("vfmadd231pd" in listing) == (isa_tier() != "sse2")
