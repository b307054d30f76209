"""OpenCL vector types for the full tiles of vector-tagged loops (lowering/opencl_vector.py): differential
against `.py_func` over sizes that leave partial tiles, views that are unaligned or strided (vload/vstore, or
the loop as written), float32 and float64, and the generated OpenCL C."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit

from helpers import check

pytestmark = pytest.mark.opencl


def saxpy(a, x, y, o):
    for i in range(len(x)):
        o[i] = a * x[i] + y[i]


def scale_rows(A, w, out):
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = -(A[i, j] * w[i]) / 2.0 + A[i, j]


def in_place(x, y):
    for i in range(len(x)):
        x[i] = x[i] * 2.0 + y[i]
        y[i] = y[i] - 1.0


def shifted(x, o):
    for i in range(len(x) - 1):
        o[i] = x[i + 1] - x[i]


SAXPY = {w: polyjit.kernel(saxpy, target="opencl", vectorize={"i": w}, parallel="i_outer") for w in (2, 4, 8)}


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), width=st.sampled_from([2, 4, 8]), dtype=st.sampled_from([np.float32, np.float64]),
       start=st.integers(0, 3), step=st.sampled_from([1, 1, 2]))
def test_vector_loops_match_python(n, width, dtype, start, step):
    rng = np.random.default_rng(n)
    x, y, o = (rng.random(n * step + start).astype(dtype)[start::step] for _ in range(3))  # unaligned, strided
    check(SAXPY[width], dtype(1.5), x, y, o)


def test_vector_text_and_variants():
    x = np.ones(8, np.float32)
    src = SAXPY[4].inspect_opencl(np.float32(2), x, x.copy(), x.copy()).split("__kernel", 1)[1]
    assert "#ifdef PJ_UNIT_STRIDE" in src and "*(__global float4 *)" in src and "vstore4(" in src
    assert "vload4(0, &x[" in src and "% 16 == 0" in src
    assert "for (long c2" in src  # partial tiles and other strides: the loop as written


@pytest.mark.parametrize("n, m", [(0, 4), (3, 1), (5, 8), (7, 13)])
def test_vector_rows_and_statements(n, m):
    rng = np.random.default_rng(m)
    k = polyjit.kernel(scale_rows, target="opencl", vectorize={"j": 4}, parallel="i")
    check(k, rng.random((n, m)), rng.random(n), np.zeros((n, m)))
    check(k, rng.random((n, m + 1))[:, 1:], rng.random(n), np.zeros((n, m)))
    two = polyjit.kernel(in_place, target="opencl", vectorize={"i": 4}, parallel="i_outer")
    check(two, rng.random(n * m), rng.random(n * m))
    assert "vstore4(" in two.inspect_opencl(np.ones(8), np.ones(8))


def test_loops_whose_lanes_read_other_lanes_stay_scalar():
    k = polyjit.kernel(shifted, target="opencl", vectorize={"i": 4}, parallel="i_outer")
    x = np.arange(11.0) ** 2
    assert "vstore" in k.inspect_opencl(x, np.zeros(11))  # x is only read: lanes may read neighbours
    check(k, x, np.zeros(11))
    same = polyjit.kernel(shifted, target="opencl", vectorize={"i": 4}, parallel="i_outer")
    y = np.arange(12.0)
    check(same, y, y[:11].copy())
