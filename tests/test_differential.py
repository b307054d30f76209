"""Differential tests: each compiled kernel against its own Python function on copies of the inputs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import FLOATS, arrays, check, sizes, views, views2d

pytestmark = pytest.mark.opencl

FEW = settings(max_examples=15, deadline=None)
SOME = settings(max_examples=20, deadline=None)

SCALE = 2.5
OFFSET = 2


# -- kernels (module level: one compile per dtype signature) -------------------------------------------

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
def isum(x):
    s = 0
    for i in range(len(x)):
        s += x[i]
    return s


@polyjit.kernel
def isum_count(x, t):
    c = 0
    for i in range(x.shape[0]):
        if x[i] > t:
            c += 1
    return c


@polyjit.kernel
def ranges(x, y, a, b):
    for i in range(a, b):
        y[i] = x[i] + 1
    for i in range(b - 1, a - 1, -1):
        y[i] = y[i] * 2 + x[i]
    for i in range(a, b, 3):
        y[i] -= 7
    for i in range(b - 1, a, -2):
        y[i] += x[i - 1]


@polyjit.kernel
def range_stop(x, n):
    for i in range(n):
        x[i] = i * i


@polyjit.kernel
def matmul(A, B, C):
    n, m = C.shape
    for i in range(n):
        for j in range(m):
            s = 0.0
            for k in range(A.shape[1]):
                s += A[i, k] * B[k, j]
            C[i, j] = s


@polyjit.kernel
def triangular(A, x, y):
    n = len(x)
    for i in range(n):
        y[i] = 0
        for j in range(i):
            y[i] += A[i][j] * x[j]
        y[i] += A[i][i]


@polyjit.kernel
def imperfect(A, r):
    n, m = A.shape
    for i in range(n):
        r[i] = 0
        for j in range(m):
            A[i, j] = A[i, j] * 2 - r[i]
            r[i] += A[i, j]
        r[i] = r[i] / 2
    t = 0.0
    for i in range(n):
        t += r[i]
    for j in range(m):
        A[0, j] = t
    return t


@polyjit.kernel
def branches(x, y, k):
    for i in range(x.shape[0]):
        if i > k:
            y[i] = x[i]
        elif x[i] > 0:
            t = math.sqrt(x[i])
            y[i] = t
        elif i % 3 == 0 and x[i] < -1 or not i < 5:
            y[i] = -x[i]
        else:
            y[i] = x[i - 1] if i > 0 else 0


@polyjit.kernel
def condexpr(x, y):
    n = len(x)
    for i in range(n):
        y[i] = x[i - 1] if i > 0 else 0
        y[i] += x[i] if x[i] > 0 else -x[i]
        y[i] += x[i + 1] if i < n - 1 else x[0]


@polyjit.kernel
def arith(x, y, out):
    for i in range(len(x)):
        out[i, 0] = x[i] + y[i]
        out[i, 1] = x[i] - y[i]
        out[i, 2] = x[i] * y[i]
        out[i, 3] = -x[i]
        out[i, 4] = x[i] // y[i]
        out[i, 5] = x[i] % y[i]
        out[i, 6] = (x[i] < y[i]) + (x[i] == y[i]) * 2 + (x[i] >= y[i]) * 4 + (x[i] != y[i]) * 8
        out[i, 7] = min(x[i], y[i]) + max(x[i], y[i], 1) + abs(x[i])


@polyjit.kernel
def true_div(x, y, out):
    for i in range(len(x)):
        out[i] = x[i] / y[i]


@polyjit.kernel
def power(x, out):
    for i in range(len(x)):
        out[i] = x[i] ** 2 + x[i] ** 3


@polyjit.kernel
def int_pow(x, out):
    for i in range(len(x)):
        out[i] = x[i] ** 2 + 3 ** 2


@polyjit.kernel
def wrap(x, y):
    for i in range(len(x)):
        y[i] = x[i] * x[i] + x[i] + 100


@polyjit.kernel
def conversions(x, out):
    for i in range(len(x)):
        out[i] = int(x[i]) + float(i) * 0.5


@polyjit.kernel
def transcendental_math(x, out):
    for i in range(len(x)):
        out[i, 0] = math.exp(x[i] / 50)
        out[i, 1] = math.log(abs(x[i]) + 1)
        out[i, 2] = math.sin(x[i])
        out[i, 3] = math.cos(x[i])
        out[i, 4] = math.tanh(x[i] / 10)
        out[i, 5] = math.atan(x[i])
        out[i, 6] = math.erf(x[i] / 10)


@polyjit.kernel
def transcendental_np(x, out):
    for i in range(len(x)):
        out[i, 0] = np.exp(x[i] / 50)
        out[i, 1] = np.arctan(x[i])
        out[i, 2] = np.log(abs(x[i]) + 1)
        out[i, 3] = np.sin(x[i]) + np.cos(x[i])
        out[i, 4] = np.tanh(x[i] / 10)


@polyjit.kernel
def exact_math(x, out):
    for i in range(len(x)):
        out[i, 0] = math.sqrt(abs(x[i]))
        out[i, 1] = np.sqrt(abs(x[i]))
        out[i, 2] = math.floor(x[i])
        out[i, 3] = math.ceil(x[i])
        out[i, 4] = np.floor(x[i]) + np.ceil(x[i])


@polyjit.kernel
def globals_closure(x):
    for i in range(len(x)):
        x[i] = x[i] * SCALE + OFFSET


def _make_closure(c):
    def f(x):
        for i in range(len(x)):
            x[i] = x[i] + c
    return polyjit.kernel(f)


add_closure = _make_closure(7)


@polyjit.kernel
def gather(x, idx, out):
    for i in range(len(idx)):
        out[i] = x[idx[i]]


@polyjit.kernel
def scatter(x, idx, out):
    for i in range(len(idx)):
        out[idx[i]] = x[i]


@polyjit.kernel
def histogram(idx, h):
    for i in range(len(idx)):
        h[idx[i]] += 1


@polyjit.kernel
def neg_index(x, y):
    for i in range(len(y)):
        y[i] = x[-1] + x[-2] * i


@polyjit.kernel
def sequence(x, y, n):
    for i in range(len(x)):
        x[i] = x[i] + 1
    t = x[0] * 2
    y[0] = t
    for i in range(1, n):
        y[i] = y[i - 1] + x[i] + t


@polyjit.kernel
def bools(b, x, y):
    for i in range(len(x)):
        if b[i]:
            y[i] = x[i]
        b[i] = x[i] > 0


@polyjit.kernel
def two_args(a, b):
    for i in range(1, len(a)):
        a[i] = b[i - 1] + 1


@polyjit.kernel
def fill(x, v):
    for i in range(len(x)):
        x[i] = v


# -- tests -------------------------------------------------------------------------------------------

@SOME
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_saxpy(data, n, dt):
    x = data.draw(views(dt, n))
    y = data.draw(views(dt, n))
    out = data.draw(views(dt, n))
    a = data.draw(st.sampled_from([2.5, dt(-1.5), 3]))
    check(saxpy, a, x, y, out)


@SOME
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_dot(data, n, dt):
    x = data.draw(views(dt, n, -10, 10))
    y = data.draw(views(dt, n, -10, 10))
    check(dot, x, y, exact_type=n > 0)


@SOME
@given(st.data(), sizes(), st.sampled_from([np.int32, np.int64, np.uint8, np.int8]))
def test_int_sum(data, n, dt):
    x = data.draw(views(dt, n))
    check(isum, x, exact_type=n > 0)
    check(isum_count, x, data.draw(st.integers(-300, 300)))


@SOME
@given(st.data(), sizes(0, 30), st.integers(-2, 35), st.integers(-2, 35))
def test_ranges(data, n, a, b):
    x = data.draw(arrays(np.int64, n + 1))
    y = data.draw(arrays(np.int64, n + 1))
    a, b = max(1, min(a, n)), max(0, min(b, n))
    check(ranges, x, y, a, b)


@FEW
@given(sizes(), st.integers(0, 40))
def test_range_stop(n, k):
    x = np.zeros(n, np.int64)
    check(range_stop, x, min(k, n))


@SOME
@given(st.data(), sizes(0, 9), sizes(0, 9), sizes(0, 9), st.sampled_from(FLOATS))
def test_matmul(data, n, m, k, dt):
    A = data.draw(views2d(dt, n, k, -4, 4))
    B = data.draw(views2d(dt, k, m, -4, 4))
    C = data.draw(views2d(dt, n, m))
    check(matmul, A, B, C)


@SOME
@given(st.data(), sizes(0, 12), st.sampled_from([np.float64, np.int32]))
def test_triangular(data, n, dt):
    A = data.draw(views2d(dt, n, n, -5, 5))
    x = data.draw(views(dt, n, -5, 5))
    y = data.draw(views(dt, n))
    check(triangular, A, x, y)


@SOME
@given(st.data(), sizes(1, 8), sizes(0, 8))
def test_imperfect_and_sequence_of_nests(data, n, m):
    A = data.draw(views2d(np.float64, n, m, -3, 3))
    r = data.draw(views(np.float64, n))
    check(imperfect, A, r)


@SOME
@given(st.data(), sizes(), st.integers(-3, 45), st.sampled_from(FLOATS))
def test_branches(data, n, k, dt):
    x = data.draw(views(dt, n))
    y = data.draw(views(dt, n))
    check(branches, x, y, k)


@SOME
@given(st.data(), sizes(1, 40), st.sampled_from([np.float64, np.int32]))
def test_conditional_expressions(data, n, dt):
    x = data.draw(views(dt, n))
    y = data.draw(views(dt, n))
    check(condexpr, x, y)


@SOME
@given(st.data(), sizes(), st.sampled_from([np.int64, np.int32, np.float64, np.float32]))
def test_arithmetic_numpy_semantics(data, n, dt):
    x = data.draw(arrays(dt, n, -50, 50))
    y = data.draw(arrays(dt, n, -50, 50).filter(lambda v: (v != 0).all()))
    out = np.zeros((n, 8), dt)
    check(arith, x, y, out)


@FEW
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_true_division_and_power(data, n, dt):
    x = data.draw(views(dt, n, -20, 20))
    y = data.draw(arrays(dt, n, -20, 20).filter(lambda v: (v != 0).all()))
    check(true_div, x, y, np.zeros(n, dt))
    # x ** 3 goes through pow(), whose OpenCL implementation may differ from libm's in the last ulp
    check(power, x, np.zeros(n, dt), rtol=1e-6 if dt == np.float32 else 1e-12)


@FEW
@given(st.data(), sizes())
def test_int_true_division_and_power(data, n):
    x = data.draw(arrays(np.int64, n, -1000, 1000))
    y = data.draw(arrays(np.int64, n, -1000, 1000).filter(lambda v: (v != 0).all()))
    check(true_div, x, y, np.zeros(n, np.float64))
    check(int_pow, x, np.zeros(n, np.int64))


@pytest.mark.parametrize("dt", [np.int8, np.uint8, np.int16, np.int32, np.uint64])
def test_integer_wraparound(dt):
    info = np.iinfo(dt)
    x = np.array([0, 1, 2, info.max, info.max - 1, info.min, info.min + 1, 100, 15, 77], dtype=dt)
    check(wrap, x, np.zeros_like(x))


@FEW
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_int_float_conversions(data, n, dt):
    x = data.draw(views(dt, n, -1000, 1000))
    check(conversions, x, np.zeros(n, dt))


@FEW
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_transcendental(data, n, dt):
    rtol = 1e-6 if dt == np.float32 else 1e-12
    x = data.draw(views(dt, n, -100, 100))
    check(transcendental_math, x, np.zeros((n, 7), dt), rtol=rtol)
    check(transcendental_np, x, np.zeros((n, 5), dt), rtol=rtol)


@FEW
@given(st.data(), sizes(), st.sampled_from(FLOATS))
def test_sqrt_floor_ceil_exact(data, n, dt):
    x = data.draw(views(dt, n, -1000, 1000))
    check(exact_math, x, np.zeros((n, 5), dt))


@FEW
@given(st.data(), sizes(), st.sampled_from([np.float64, np.int64]))
def test_globals_and_closures(data, n, dt):
    check(globals_closure, data.draw(views(np.float64, n)))
    check(add_closure, data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(1, 30), sizes(0, 30), st.sampled_from([np.int32, np.int64]))
def test_gather_scatter(data, n, m, it):
    x = data.draw(views(np.float64, n))
    idx = data.draw(arrays(it, m, 0, n - 1))
    check(gather, x, idx, np.zeros(m))
    uniq = data.draw(st.permutations(range(n))).copy() if n else []
    uniq = np.array(uniq, it)
    check(scatter, data.draw(views(np.float64, n)), uniq, np.zeros(n))
    check(histogram, idx, np.zeros(n, np.int64))


@FEW
@given(st.data(), sizes(2, 30), sizes(0, 20))
def test_negative_constant_index(data, n, m):
    check(neg_index, data.draw(views(np.float64, n)), np.zeros(m))


@FEW
@given(st.data(), sizes(1, 30), st.integers(0, 30))
def test_statements_between_nests(data, n, k):
    x = data.draw(views(np.float64, n))
    y = data.draw(views(np.float64, n))
    check(sequence, x, y, min(k, n))


@FEW
@given(st.data(), sizes())
def test_bool_arrays(data, n):
    b = data.draw(views(np.bool_, n))
    check(bools, b, data.draw(views(np.float64, n)), np.zeros(n))


@FEW
@given(st.data(), sizes(0, 30))
def test_same_array_twice(data, n):
    a = data.draw(arrays(np.float64, n))
    check(two_args, a, a)
    check(two_args, a, a.copy())


@pytest.mark.parametrize("v", [3, 2.5, np.float32(1.25), np.int64(-4), np.int8(5), True])
@pytest.mark.parametrize("dt", [np.float64, np.int64])
def test_scalar_argument_types(v, dt):
    check(fill, np.zeros(5, dt), v)
    check(saxpy, v, np.arange(7, dtype=dt), np.ones(7, dt), np.zeros(7, dt))


# -- more loop shapes and scalar dataflow --------------------------------------------------------------

@polyjit.kernel
def upper_triangular(A, x, y):
    n = len(x)
    for i in range(n):
        s = 0.0
        for j in range(i + 1, n):
            s += A[i, j] * x[j]
        y[i] = s
    for i in range(n - 2, -1, -1):
        y[i] += y[i + 1]


@polyjit.kernel
def horner(c, x, out):
    for i in range(len(x)):
        s = 0.0
        for k in range(len(c)):
            s = s * x[i] + c[k]
        out[i] = s


@polyjit.kernel
def running(x):
    s = 0
    m = x[0]
    for i in range(len(x)):
        s = s * 3 + x[i]
        if x[i] > m:
            m = x[i]
    x[0] = m
    return s


@polyjit.kernel
def cube(A, B):
    n, m, p = A.shape
    for i in range(n):
        for j in range(m):
            for k in range(p):
                B[k, j, i] = A[i, j, k] + i - j * k


@polyjit.kernel
def abs_neg(x, y):
    for i in range(len(x)):
        y[i] = abs(x[i]) - x[i] * 2 + (-x[i])


@polyjit.kernel
def mixed_scalar(a, b, x, out):
    for i in range(len(x)):
        out[i] = a * x[i] + b


@polyjit.kernel(fastmath=True)
def fast_saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


@polyjit.kernel
def chained_compare(x, y):
    for i in range(len(x)):
        if 0 < x[i] <= 50:
            y[i] = 1
        elif -10 < x[i] and i % 2 == 1:
            y[i] = 2
        else:
            y[i] = 3


@polyjit.kernel
def steps(x, y):
    n = len(x)
    for i in range(0, n, 2):
        for j in range(n - 1, i, -3):
            y[j] += x[i] * j


@SOME
@given(st.data(), sizes(0, 15), st.sampled_from(FLOATS))
def test_upper_triangular_and_reverse_recurrence(data, n, dt):
    check(upper_triangular, data.draw(views2d(dt, n, n, -5, 5)), data.draw(views(dt, n, -5, 5)),
          data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(0, 6), sizes(0, 30))
def test_scalar_recurrence_in_inner_loop(data, k, n):
    check(horner, data.draw(views(np.float64, k, -3, 3)), data.draw(views(np.float64, n, -2, 2)), np.zeros(n))


@SOME
@given(st.data(), sizes(1, 40), st.sampled_from([np.int64, np.int32, np.int8]))
def test_scalar_recurrence_wraps(data, n, dt):
    info = np.iinfo(dt)
    check(running, data.draw(views(dt, n, int(info.min), int(info.max))))


@SOME
@given(st.data(), sizes(0, 5), sizes(0, 5), sizes(0, 5))
def test_three_dimensional(data, n, m, p):
    A = data.draw(arrays(np.float64, (n, m, p)))
    A = data.draw(st.sampled_from([A, A.transpose(2, 1, 0).copy().transpose(2, 1, 0), A[::-1, :, ::-1]]))
    check(cube, A, np.zeros((p, m, n)))
    check(cube, A, np.zeros((n, m, p)).transpose(2, 1, 0))


@pytest.mark.parametrize("dt", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.float32])
def test_abs_and_negation_edge_values(dt):
    if np.dtype(dt).kind == "f":
        x = np.array([0.0, -0.0, 1.5, -2.5, 3e38, -3e38], dt)
    else:
        info = np.iinfo(dt)
        x = np.array([info.min, info.min + 1, 0, 1, info.max, info.max - 1], dt)
    check(abs_neg, x, np.zeros_like(x))


@pytest.mark.parametrize("a,b", [(np.float64(0.1), 1), (0.1, np.float32(0.3)), (np.float32(0.1), 7),
                                 (np.int16(3), np.uint8(2)), (np.int64(2**20), -3)])
@pytest.mark.parametrize("dt", [np.float32, np.int32])
def test_numpy_scalar_promotion(a, b, dt):
    x = np.arange(-5, 6).astype(dt)
    out_dt = np.result_type(a * x[0] + b)
    check(mixed_scalar, a, b, x, np.zeros(len(x), out_dt))
    check(mixed_scalar, a, b, x, np.zeros(len(x), dt))


@SOME
@given(st.data(), sizes())
def test_fastmath_close(data, n):
    x, y = data.draw(views(np.float32, n)), data.draw(views(np.float32, n))
    check(fast_saxpy, np.float32(1.5), x, y, np.zeros(n, np.float32), rtol=1e-5)


@SOME
@given(st.data(), sizes(), st.sampled_from([np.float64, np.int16]))
def test_chained_comparisons(data, n, dt):
    check(chained_compare, data.draw(views(dt, n)), np.zeros(n, np.int64))


@SOME
@given(st.data(), sizes(0, 30))
def test_nested_steps(data, n):
    check(steps, data.draw(views(np.int64, n)), data.draw(views(np.int64, n)))


@SOME
@given(st.data(), sizes(1, 40))
def test_int32_accumulator_wraps(data, n):
    check(isum, data.draw(views(np.int32, n, -2**31, 2**31 - 1)))
    check(isum, data.draw(views(np.uint64, n, 0, 2**64 - 1)))


# -- return values: value and Python/numpy scalar type ---------------------------------------------

@polyjit.kernel
def r_bool(x, t):
    found = False
    for i in range(len(x)):
        if x[i] > t:
            found = True
    return found
@polyjit.kernel
def r_len(x):
    n = len(x)
    return n
@polyjit.kernel
def r_elem(x):
    return x[0] * 2
@polyjit.kernel
def r_expr(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s * 2 + 1
@polyjit.kernel
def r_intfloat(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s
@polyjit.kernel
def r_argmax(x):
    best = 0
    for i in range(1, len(x)):
        if x[i] > x[best]:
            best = i
    return best
@polyjit.kernel
def r_mean(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s / len(x)
@polyjit.kernel
def r_const(x):
    return 3
@polyjit.kernel
def r_math(x):
    s = 1.0
    for i in range(len(x)):
        s = s * 0.5 + math.sqrt(x[i])
    return math.floor(s)
@polyjit.kernel
def r_uint(x):
    s = np.uint64(0)
    for i in range(len(x)):
        s += x[i]
    return s
@polyjit.kernel
def r_int_cast(x):
    s = 0
    for i in range(len(x)):
        s += int(x[i])
    return s


@SOME
@given(st.data(), sizes(1, 20), st.sampled_from([np.float32, np.int8]))
def test_return_values(data, n, dt):
    x = data.draw(views(dt, n, -50, 50))
    check(r_bool, x, data.draw(st.sampled_from([2.0, 5, np.int64(4), -100])))
    check(r_len, x)
    check(r_elem, x)
    check(r_expr, x)
    check(r_intfloat, x)
    check(r_argmax, x)
    check(r_mean, x, rtol=1e-6 if dt == np.float32 else None)
    check(r_const, x)
    check(r_int_cast, x)


@SOME
@given(st.data(), sizes(0, 20))
def test_return_values_of_math_and_uint64(data, n):
    check(r_math, data.draw(views(np.float64, n, 0, 100)), exact_type=n > 0)
    check(r_uint, data.draw(views(np.uint64, n, 0, 2**64 - 1)))


@polyjit.kernel
def math_on_float32(x, out):
    for i in range(len(x)):
        out[i, 0] = math.exp(x[i] / 50)
        out[i, 1] = math.sqrt(x[i] + 200)
        out[i, 2] = math.sin(x[i]) + 0.1
        out[i, 3] = math.floor(x[i] * 1.1) + math.atan(x[i])


@FEW
@given(st.data(), sizes())
def test_math_functions_compute_in_double_like_python(data, n):
    # math.* returns Python floats: float32 inputs are computed in double precision (np.* stays in float32)
    check(math_on_float32, data.draw(views(np.float32, n)), np.zeros((n, 4)), rtol=1e-12)


@polyjit.kernel
def int_powers(x, out):
    for i in range(len(x)):
        out[i, 0] = x[i] ** 0
        out[i, 1] = x[i] ** 1 + 2 ** 3
        out[i, 2] = x[i] ** 5
        out[i, 3] = x[i] % 3 + x[i] // 4
        out[i, 4] = x[i] == 3
@polyjit.kernel
def float_powers(x, out):
    for i in range(len(x)):
        out[i, 0] = x[i] ** -1
        out[i, 1] = x[i] ** 0.5
        out[i, 2] = x[i] % 2.5 + x[i] // -1.5
        out[i, 3] = 2.0 ** x[i]
        out[i, 4] = min(max(x[i], -3), 3.5)
@polyjit.kernel
def int_true_div(x, y, out):
    for i in range(len(x)):
        out[i] = x[i] / y[i]


@pytest.mark.parametrize("dt", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_integer_powers_modulo_and_true_division(dt):
    x = np.arange(-20, 20).astype(dt)
    check(int_powers, x, np.zeros((40, 5), dt))
    check(int_true_div, x, np.where(x == 0, 1, x).astype(dt), np.zeros(40))


@pytest.mark.parametrize("dt", FLOATS)
def test_float_powers(dt):
    x = (np.arange(-20, 20) * 0.37 + 0.01).astype(dt)
    check(float_powers, x, np.zeros((40, 5), dt), rtol=1e-6 if dt == np.float32 else 1e-12)


# -- classic polyhedral kernels ------------------------------------------------------------------

@polyjit.kernel
def affine_conditions_2d(A, k):
    n, m = A.shape
    for i in range(n):
        for j in range(m):
            if i == j:
                A[i, j] = 1
            elif i < j and j - i <= k:
                A[i, j] = A[i, j] * 2
            elif 2 * i > j + 3 or i % 2 == 0:
                A[i, j] = -A[i, j]
            else:
                A[i, j] = i * m + j
@polyjit.kernel
def carried_between_nests(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    mean = s / max(len(x), 1)
    v = 0.0
    for i in range(len(x)):
        y[i] = x[i] - mean
        v += y[i] * y[i]
    for i in range(len(y)):
        y[i] = y[i] / (v + 1)
    return v
@polyjit.kernel
def lu(A):
    n = A.shape[0]
    for k in range(n):
        for i in range(k + 1, n):
            A[i, k] = A[i, k] / A[k, k]
            for j in range(k + 1, n):
                A[i, j] -= A[i, k] * A[k, j]
@polyjit.kernel
def seidel(A, T):
    n = A.shape[0]
    for t in range(T):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                A[i, j] = (A[i - 1, j] + A[i + 1, j] + A[i, j - 1] + A[i, j + 1] + A[i, j]) / 5


@SOME
@given(st.data(), sizes(0, 9), st.integers(-1, 10))
def test_affine_conditions_on_two_loop_variables(data, n, k):
    check(affine_conditions_2d, data.draw(views2d(np.float64, n, n + 1)), k)


@SOME
@given(st.data(), sizes(0, 30))
def test_scalars_carried_between_nests(data, n):
    check(carried_between_nests, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)),
          exact_type=n > 0)


@FEW
@given(st.data(), sizes(0, 9), st.integers(0, 3))
def test_lu_and_seidel(data, n, t):
    M = data.draw(views2d(np.float64, n, n, -1, 1)) + 2 * n * np.eye(n)
    check(lu, M, rtol=1e-12)
    check(seidel, data.draw(views2d(np.float64, n, n)), t)
