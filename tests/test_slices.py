"""Slices and whole-array statements, with numpy's read-everything-first semantics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import FLOATS, check, sizes, views, views2d

pytestmark = pytest.mark.opencl

SOME = settings(max_examples=20, deadline=None)


@polyjit.kernel
def saxpy_whole(a, x, y, out):
    out[:] = a * x + y


@polyjit.kernel
def jacobi(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        B[1:n - 1, 1:n - 1] = 0.2 * (A[1:n - 1, 1:n - 1] + A[1:n - 1, 0:n - 2] + A[1:n - 1, 2:n]
                                     + A[0:n - 2, 1:n - 1] + A[2:n, 1:n - 1])
        A[1:n - 1, 1:n - 1] = B[1:n - 1, 1:n - 1]


@polyjit.kernel
def shift_add(A):
    A[1:] += A[:-1]


@polyjit.kernel
def shift_left(A):
    A[:-1] = A[1:]


@polyjit.kernel
def zero_even(A):
    A[::2] = 0


@polyjit.kernel
def reverse_copy(x, y):
    y[:] = x[::-1]


@polyjit.kernel
def reverse_inplace(x):
    x[:] = x[::-1]


@polyjit.kernel
def rows(A, v):
    n, m = A.shape
    for i in range(n):
        A[i, :] = A[i, :] * 2 + v
    A[:, 0] = -1


@polyjit.kernel
def bounded_slice(x, y, a, b):
    y[a:b] = x[a:b] * 3


@polyjit.kernel
def mixed(x, y):
    n = len(x)
    y[:] = x
    for i in range(1, n):
        y[i] += y[i - 1]
    x[1:n] = y[0:n - 1] - x[1:n]


@SOME
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_whole_array_saxpy(data, n, dt):
    x, y, out = (data.draw(views(dt, n)) for _ in range(3))
    check(saxpy_whole, data.draw(st.sampled_from([2.0, dt(0.5), 3])), x, y, out)


@SOME
@given(st.data(), sizes(0, 12), st.integers(0, 3), st.sampled_from(FLOATS))
def test_jacobi_stencil(data, n, steps, dt):
    A = data.draw(views2d(dt, n, n))
    B = data.draw(views2d(dt, n, n))
    check(jacobi, A, B, steps)


@SOME
@given(st.data(), sizes(), st.sampled_from([np.float64, np.int32, np.int8]))
def test_overlapping_slices(data, n, dt):
    # A[1:] += A[:-1] reads all of A[:-1] before writing (numpy), it is not a prefix sum
    check(shift_add, data.draw(views(dt, n)))
    check(shift_left, data.draw(views(dt, n)))
    check(zero_even, data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_reversed(data, n, dt):
    check(reverse_copy, data.draw(views(dt, n)), data.draw(views(dt, n)))
    check(reverse_inplace, data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(0, 10), sizes(1, 10))
def test_row_and_column_slices(data, n, m):
    check(rows, data.draw(views2d(np.float64, n, m)), data.draw(st.sampled_from([1, 2.5, np.float64(-1)])))


@SOME
@given(st.data(), sizes(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_bounded_slices(data, n, a, b):
    check(bounded_slice, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)), a, b)


@SOME
@given(st.data(), sizes(0, 30))
def test_slices_and_loops_mixed(data, n):
    check(mixed, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)))


def test_mismatched_extents_raise_valueerror_like_numpy():
    x = np.arange(5.0)
    y = np.zeros(4)
    with pytest.raises(ValueError):
        saxpy_whole.py_func(2.0, x, y, np.zeros(5))
    out = np.zeros(5)
    with pytest.raises(ValueError):
        saxpy_whole(2.0, x, y, out)
    assert (out == 0).all()
    with pytest.raises(ValueError):
        reverse_copy(np.arange(3.0), np.zeros(4))


@polyjit.kernel
def slice_in_loop(x, k):
    for t in range(k):
        x[1:] = x[:-1] * 0.5 + t


@polyjit.kernel
def slice_with_loop_var(A):
    n = A.shape[0]
    for i in range(n):
        A[i, i:] = A[i, i:] * 2 + i


@polyjit.kernel
def stepped_slices(x, y):
    n = len(x)
    x[1:n:3] = y[0:n - 1:3]
    y[::-2] = 1


@polyjit.kernel
def region(A, v):
    A[1:3, :] = v


@polyjit.kernel
def row_copy(A, B):
    for i in range(A.shape[0]):
        A[i] = B[i] * 2


@polyjit.kernel
def aug_whole(x, y):
    x[:] += y
    x[:] *= 2


@polyjit.kernel
def ufunc_slices(x, out):
    out[:] = np.sqrt(abs(x)) + np.floor(x)


@polyjit.kernel
def diagonal_overlap(A):
    A[1:, 1:] = A[:-1, :-1] + 1


@polyjit.kernel
def transposed_overlap(A):
    A[1:, :] = A[:-1, :] * 2


@SOME
@given(st.data(), sizes(), st.integers(0, 4))
def test_slice_inside_loop(data, n, k):
    check(slice_in_loop, data.draw(views(np.float64, n)), k)


@SOME
@given(st.data(), sizes(0, 10), sizes(0, 10))
def test_slice_bounds_from_loop_variable(data, n, m):
    check(slice_with_loop_var, data.draw(views2d(np.float64, n, m)))


@SOME
@given(st.data(), sizes(), st.sampled_from([np.float64, np.int16]))
def test_stepped_slices(data, n, dt):
    check(stepped_slices, data.draw(views(dt, n)), data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(3, 8), sizes(0, 8))
def test_regions_rows_augmented(data, n, m):
    A = data.draw(views2d(np.float64, n, m))
    check(region, A, data.draw(st.sampled_from([7, 2.5, np.float64(-1)])))
    check(row_copy, A, data.draw(views2d(np.float64, n, m)))
    check(aug_whole, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)))


@SOME
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_ufuncs_on_slices(data, n, dt):
    check(ufunc_slices, data.draw(views(dt, n)), data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(0, 9), sizes(0, 9))
def test_overlapping_2d_slices(data, n, m):
    check(diagonal_overlap, data.draw(views2d(np.float64, n, m)))
    check(transposed_overlap, data.draw(views2d(np.int32, n, m)))
