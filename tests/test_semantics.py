"""Calling conventions and Python/numpy semantics at the boundary: argument checks, errors, device arrays."""

import numpy as np
import pyopencl.array as cla
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import arrays, check, sizes, views

pytestmark = pytest.mark.opencl

SOME = settings(max_examples=20, deadline=None)


@polyjit.kernel
def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


@polyjit.kernel
def divmod_k(x, y, q, r):
    for i in range(len(x)):
        q[i] = x[i] // y[i]
        r[i] = x[i] % y[i]


@polyjit.kernel
def divmod_scalar(x, d, q, r):
    for i in range(len(x)):
        q[i] = x[i] // d
        r[i] = x[i] % d


@polyjit.kernel
def logic(x, y, out):
    for i in range(len(x)):
        out[i] = (x[i] > 0 and y[i] > 0) or not (x[i] < y[i])


@polyjit.kernel
def stencil_2d(A, B):
    n, m = A.shape
    for i in range(1, n - 1):
        for j in range(1, A.shape[1] - 1):
            B[i][j] = A[i - 1][j] + A[i + 1][j] - 2 * A[i][j]


@polyjit.kernel
def inc(x):
    for i in range(len(x)):
        x[i] += 1


@polyjit.kernel
def copy_rev(a, b):
    n = len(a)
    for i in range(n):
        b[i] = a[n - 1 - i]


@polyjit.kernel
def total(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s


# -- numpy semantics of // and % -----------------------------------------------------------------------

@SOME
@given(st.data(), sizes(), st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.float32, np.float64]))
def test_floor_division_and_modulo_of_negatives(data, n, dt):
    x = data.draw(views(dt, n, -100, 100))
    y = data.draw(arrays(dt, n, -9, 9).filter(lambda v: (v != 0).all()))
    check(divmod_k, x, y, np.zeros(n, dt), np.zeros(n, dt))


@SOME
@given(st.data(), sizes(), st.sampled_from([-7, 3, -2.5, 4.0]), st.sampled_from([np.int64, np.float64]))
def test_floor_division_by_scalar(data, n, d, dt):
    x = data.draw(views(dt, n))
    rt = np.result_type(dt, type(d))
    check(divmod_scalar, x, d, np.zeros(n, rt), np.zeros(n, rt))


@SOME
@given(st.data(), sizes(), st.sampled_from([np.float64, np.int32]))
def test_and_or_not(data, n, dt):
    check(logic, data.draw(views(dt, n)), data.draw(views(dt, n)), np.zeros(n, np.bool_))


@SOME
@given(st.data(), sizes(0, 10), sizes(0, 10))
def test_chained_subscripts_and_shape(data, n, m):
    from helpers import views2d
    check(stencil_2d, data.draw(views2d(np.float64, n, m)), data.draw(views2d(np.float64, n, m)))


# -- device arrays ------------------------------------------------------------------------------------

SAXPY, INC, TOTAL = saxpy, inc, total

def _queue():
    from polyjit.opencl_runtime import context_and_queue
    return context_and_queue()[1]


def _on_opencl(k):
    return polyjit.kernel(k.py_func, target="opencl")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_pyopencl_arrays_are_used_in_place(dt):
    saxpy, inc, total = (_on_opencl(k) for k in (SAXPY, INC, TOTAL))
    q = _queue()
    x = np.arange(10, dtype=dt)
    y = np.ones(10, dt)
    dx, dy, dout = (cla.to_device(q, a) for a in (x, y, np.zeros(10, dt)))
    saxpy(2.0, dx, dy, dout)
    expected = np.zeros(10, dt)
    saxpy.py_func(2.0, x, y, expected)
    np.testing.assert_array_equal(dout.get(), expected)
    inc(dx)
    inc(dx)
    np.testing.assert_array_equal(dx.get(), x + 2)
    assert total(dx) == total.py_func(x + 2)


def test_pyopencl_array_mixed_with_numpy():
    saxpy = _on_opencl(SAXPY)
    q = _queue()
    x = np.arange(6.0)
    out = np.zeros(6)
    saxpy(3, cla.to_device(q, x), np.ones(6), out)
    np.testing.assert_array_equal(out, 3 * x + 1)


# -- aliasing -------------------------------------------------------------------------------------------

@SOME
@given(st.data(), sizes(0, 30))
def test_same_array_passed_twice(data, n):
    a = data.draw(arrays(np.float64, n))
    check(copy_rev, a, a)  # reads what it already overwrote, like Python
    check(saxpy, 2.0, a, a, a)
    b = data.draw(arrays(np.float64, 2 * n + 1))
    check(copy_rev, b[: n], b[n + 1:])
    check(copy_rev, b[::2][:n], b[1::2][:n])


# -- argument checking --------------------------------------------------------------------------------

def test_read_only_written_array_raises():
    x = np.arange(4.0)
    x.flags.writeable = False
    with pytest.raises(ValueError):
        inc(x)
    np.testing.assert_array_equal(x, np.arange(4.0))
    # read-only inputs that are only read are fine
    out = np.zeros(4)
    saxpy(1.0, x, x, out)
    np.testing.assert_array_equal(out, 2 * x)


def test_wrong_argument_count_raises_typeerror():
    with pytest.raises(TypeError):
        saxpy(1.0, np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError):
        saxpy(1.0, np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError):
        inc()


def test_keyword_arguments():
    out = np.zeros(3)
    saxpy(2.0, np.ones(3), y=np.ones(3), out=out)
    np.testing.assert_array_equal(out, np.full(3, 3.0))


@pytest.mark.parametrize("dt", [np.complex128, np.complex64, np.float16])
def test_unsupported_dtype_raises_typeerror(dt):
    with pytest.raises(TypeError):
        inc(np.zeros(3, dt))
    with pytest.raises(TypeError):
        saxpy(dt(1), np.zeros(3), np.zeros(3), np.zeros(3))


def test_unsupported_argument_kind_raises_typeerror():
    with pytest.raises(TypeError):
        inc([1.0, 2.0])


def test_out_of_bounds_raises_indexerror_before_running():
    x = np.arange(10.0)
    y = np.ones(10)
    out = np.full(20, -1.0)
    with pytest.raises(IndexError):
        saxpy(2.0, x, y, out[:7])
    np.testing.assert_array_equal(out, -1.0)  # nothing ran
    with pytest.raises(IndexError):
        saxpy(2.0, x, y[:9], out[:10])
    np.testing.assert_array_equal(out, -1.0)
    with pytest.raises(IndexError):
        saxpy.py_func(2.0, x, y, np.zeros(7))


def test_data_dependent_out_of_bounds_raises_indexerror():
    @polyjit.kernel
    def gather(x, idx, out):
        for i in range(len(idx)):
            out[i] = x[idx[i]]

    with pytest.raises(IndexError):
        gather(np.arange(3.0), np.array([0, 5, 1]), np.zeros(3))
    out = np.zeros(3)
    gather(np.arange(3.0), np.array([-1, 2, -3]), out)  # negative indices wrap like numpy
    np.testing.assert_array_equal(out, [2.0, 2.0, 0.0])


def test_errors_are_polyjit_errors():
    assert issubclass(polyjit.UnsupportedError, polyjit.PolyjitError)
    assert issubclass(polyjit.TypingError, polyjit.PolyjitError)
    assert issubclass(polyjit.ScheduleError, polyjit.PolyjitError)


def test_py_func_and_repr():
    assert saxpy.py_func.__name__ == "saxpy"
    assert "saxpy" in repr(saxpy)
    assert saxpy.__name__ == "saxpy"


# -- edge values: division by zero, INT_MIN // -1, bool arithmetic, large sizes ------------------------

@pytest.mark.parametrize("dt", [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float32, np.float64])
def test_division_by_zero_and_overflowing_division(dt):
    if np.dtype(dt).kind == "f":
        vals = [0.0, -0.0, 1.5, -1.5, 7.0, -7.0, 3e30]
    else:
        info = np.iinfo(dt)
        vals = sorted({int(info.min), int(info.min) + 1, 0, 1, 7, int(info.max)})
        vals += [v for v in (-1, -7) if info.min < 0]
    vals = np.array(vals, dt)
    x = np.repeat(vals, len(vals))
    y = np.tile(vals, len(vals))
    check(divmod_k, x, y, np.zeros_like(x), np.zeros_like(x))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_true_division_by_zero(dt):
    from test_differential import true_div
    x = np.array([1.0, -1.0, 0.0, 2.5], dt)
    y = np.array([0.0, 0.0, 0.0, -0.0], dt)
    check(true_div, x, y, np.zeros_like(x))


@polyjit.kernel
def bool_arith(b, c, out):
    for i in range(len(b)):
        out[i, 0] = int(b[i]) + c[i]
        out[i, 1] = b[i] * 2 - c[i]
        out[i, 2] = b[i] * 3 + c[i]
        out[i, 3] = (b[i] and c[i]) + (b[i] or c[i]) * 2
        out[i, 4] = b[i] == c[i]
        out[i, 5] = b[i] > c[i]


def test_bool_arithmetic():
    b = np.array([False, False, True, True])
    c = np.array([False, True, False, True])
    check(bool_arith, b, c, np.zeros((4, 6), np.int64))


@polyjit.kernel
def compare_scalar(x, t, out):
    for i in range(len(x)):
        out[i] = (x[i] > t) + (x[i] == t) * 2 + (x[i] < t) * 4


@pytest.mark.parametrize("dt", [np.int8, np.uint8, np.int16, np.uint32, np.int32])
@pytest.mark.parametrize("t", [-1, -129, 0, 127, 128, 255, 256, 2**31, -2**40])
def test_narrow_int_compared_with_python_int(dt, t):
    info = np.iinfo(dt)
    x = np.array([info.min, 0, 1, info.max], dt)
    check(compare_scalar, x, t, np.zeros(4, np.int64))


@pytest.mark.parametrize("t", [-1, -2**63, 0, 5, 2**63 - 1])
def test_uint64_compared_with_python_int(t):
    check(compare_scalar, np.array([0, 5, 2**64 - 1], np.uint64), t, np.zeros(3, np.int64))


@polyjit.kernel
def compare_scalar_left(x, t, out):
    for i in range(len(x)):
        out[i] = (t > x[i]) + (t == x[i]) * 2 + (t <= x[i]) * 4 + (x[i] != -1) * 8 + (-1 < x[i]) * 16


@pytest.mark.parametrize("t", [-1, 0, 5])
def test_uint64_compared_with_python_int_on_the_left(t):
    check(compare_scalar_left, np.array([0, 5, 2**64 - 1], np.uint64), t, np.zeros(3, np.int64))


def test_large_sizes():
    from test_differential import dot
    n = 100_003
    rng = np.random.default_rng(0)
    x, y = rng.random(n), rng.random(n)
    check(saxpy, 1.5, x, y, np.zeros(n))
    check(saxpy, 1.5, x[::-3], y[::-3], np.zeros(len(x[::-3])))
    check(dot, x, y)
    A = rng.random((301, 299))
    check(stencil_2d, A, np.zeros_like(A))
    check(stencil_2d, A.T, np.zeros_like(A.T))


# -- memory layouts the runtime has to stage: non-native byte order, dtype views, unaligned, overlapping ----

@polyjit.kernel
def add_into(x, y):
    for i in range(len(x)):
        x[i] = x[i] + y[i]


@polyjit.kernel
def shift_copy(a, b):
    for i in range(1, len(a)):
        a[i] = b[i - 1] + 1


@pytest.mark.parametrize("dt", [">f8", ">i4", "<f4", ">u2"])
def test_non_native_byte_order(dt):
    x = np.arange(7).astype(dt)
    check(inc, x)
    check(add_into, x, np.arange(7).astype(dt))
    check(add_into, np.zeros(7, np.dtype(dt).newbyteorder("=")), x)


def test_struct_fields_dtype_views_and_unaligned_buffers():
    s = np.zeros(6, dtype=[("a", "f8"), ("b", "i8")])
    s["a"] = np.arange(6)
    check(inc, s["a"])
    v = np.arange(10.0).view(np.int64)
    check(shift_copy, v, v)
    u = np.frombuffer(bytearray(8 * 6 + 1), dtype=np.float64, offset=1, count=6)
    check(inc, u)
    check(add_into, np.zeros(5), np.broadcast_to(np.float64(3), (5,)))
    with pytest.raises(ValueError):
        inc(np.broadcast_to(np.zeros(1), (5,)))


@SOME
@given(st.data(), sizes(1, 30), st.integers(-3, 3))
def test_overlapping_views_of_one_array(data, n, shift):
    b = data.draw(arrays(np.float64, n + 3))
    lo = 3 + shift if shift < 0 else shift
    check(shift_copy, b[lo:lo + n - 3 if n > 3 else lo], b[3:3 + max(n - 3, 0)])
    check(shift_copy, b[1:], b[:-1])
    check(shift_copy, b[:-1], b[1:])
    check(add_into, b[::-1], b)


def test_opencl_device_is_available():
    # no OpenCL device must fail the suite, never skip it
    from polyjit.opencl_runtime import context_and_queue
    ctx, queue = context_and_queue()
    assert ctx.devices and queue is not None
