"""`polyjit.prange` and `parallel=`: results match Python; illegal parallel loops raise ScheduleError."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import FLOATS, check, sizes, views, views2d

pytestmark = pytest.mark.opencl

SOME = settings(max_examples=20, deadline=None)


@polyjit.kernel
def par_map(x, y):
    for i in polyjit.prange(len(x)):
        t = x[i] * 2
        y[i] = t + 1


@polyjit.kernel
def par_rows(A, r):
    n, m = A.shape
    for i in polyjit.prange(n):
        s = 0.0
        for j in range(m):
            s += A[i, j]
        r[i] = s


@polyjit.kernel
def par_range_bounds(x, y, a, b):
    # (indexing y[i] directly would be rejected: a < 0 would make y[-1] and y[n-1] the same element)
    for i in polyjit.prange(a, b):
        y[i - a] = x[i - a] * x[i - a] if x[i - a] > 0 else -x[i - a]


@polyjit.kernel
def par_stencil(A, B):
    n, m = A.shape
    for i in polyjit.prange(1, n - 1):
        for j in range(1, m - 1):
            B[i, j] = 0.25 * (A[i - 1, j] + A[i + 1, j] + A[i, j - 1] + A[i, j + 1])


@polyjit.kernel(parallel="i")
def kw_map(x, y):
    for i in range(len(x)):
        y[i] = x[i] - 3


@polyjit.kernel(parallel="i")
def kw_matmul(A, B, C):
    n, m = C.shape
    for i in range(n):
        for j in range(m):
            s = 0.0
            for k in range(A.shape[1]):
                s += A[i, k] * B[k, j]
            C[i, j] = s


@polyjit.kernel
def par_recurrence(x):
    for i in polyjit.prange(1, len(x)):
        x[i] = x[i - 1] + 1


@polyjit.kernel(parallel="i")
def kw_recurrence(x):
    for i in range(1, len(x)):
        x[i] = x[i - 1] + 1


@polyjit.kernel
def par_reduction_into_array(x, s):
    for i in polyjit.prange(len(x)):
        s[0] += x[i]


@SOME
@given(st.data(), sizes(0, 60), st.sampled_from(FLOATS))
def test_prange_map(data, n, dt):
    check(par_map, data.draw(views(dt, n)), data.draw(views(dt, n)))


@SOME
@given(st.data(), sizes(0, 12), sizes(0, 12))
def test_prange_rows_with_private_scalar(data, n, m):
    check(par_rows, data.draw(views2d(np.float64, n, m)), data.draw(views(np.float64, n)))


@SOME
@given(st.data(), sizes(0, 40), st.integers(0, 40), st.integers(0, 40))
def test_prange_bounds(data, n, a, b):
    check(par_range_bounds, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)),
          min(a, n), min(b, n))


@SOME
@given(st.data(), sizes(0, 12), sizes(0, 12))
def test_prange_stencil(data, n, m):
    check(par_stencil, data.draw(views2d(np.float64, n, m)), data.draw(views2d(np.float64, n, m)))


@SOME
@given(st.data(), sizes(0, 8), sizes(0, 8), sizes(0, 8))
def test_parallel_keyword(data, n, m, k):
    x = data.draw(views(np.int64, n))
    check(kw_map, x, data.draw(views(np.int64, n)))
    check(kw_matmul, data.draw(views2d(np.float64, n, k)), data.draw(views2d(np.float64, k, m)),
          data.draw(views2d(np.float64, n, m)))


def test_parallel_code_uses_work_items():
    x = np.zeros(8)
    assert "get_global_id" in par_map.inspect_opencl(x, x)
    assert "get_global_id" in kw_map.inspect_opencl(np.zeros(8, np.int64), np.zeros(8, np.int64))


@pytest.mark.parametrize("k", [par_recurrence, kw_recurrence])
def test_parallel_recurrence_raises_schedule_error(k):
    x = np.zeros(10)
    with pytest.raises(polyjit.ScheduleError) as e:
        k(x)
    msg = str(e.value)
    assert "depend" in msg.lower() and "x" in msg
    np.testing.assert_array_equal(x, 0)
    with pytest.raises(polyjit.ScheduleError):
        k.inspect_schedule(x)


def test_parallel_reduction_into_array_raises_schedule_error():
    with pytest.raises(polyjit.ScheduleError):
        par_reduction_into_array(np.ones(5), np.zeros(1))


def test_schedule_errors_are_polyjit_errors():
    with pytest.raises(polyjit.PolyjitError):
        par_recurrence(np.zeros(4))


# -- schedule hints never change results ------------------------------------------------------------------

def _mm(A, B, C):
    n, m = C.shape
    for i in range(n):
        for j in range(m):
            C[i, j] = 0.0
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def _stencil(A, B):
    n, m = A.shape
    for i in range(1, n - 1):
        for j in range(1, m - 1):
            B[i, j] = A[i - 1, j] + A[i + 1, j] + A[i, j - 1] + A[i, j + 1]


HINTS = [dict(split={"i": 4}), dict(tile={"i": 3, "j": 5}), dict(unroll={"i": 4}), dict(vectorize={"j": 4}),
         dict(order=("j", "i")), dict(parallel=("i", "j")), dict(split={"j": 3}, parallel="i"), dict(unsafe=False)]
HINTED = [(polyjit.kernel(_mm, **h), polyjit.kernel(_stencil, **h)) for h in HINTS]


@settings(max_examples=10, deadline=None)
@given(st.data(), st.sampled_from(range(len(HINTS))), sizes(0, 13), sizes(0, 6), sizes(0, 13))
def test_schedule_hints_keep_results(data, h, n, k, m):
    mm, stencil = HINTED[h]
    A = data.draw(views2d(np.float64, n, k, -4, 4))
    B = data.draw(views2d(np.float64, k, m, -4, 4))
    check(mm, A, B, data.draw(views2d(np.float64, n, m)))
    check(stencil, data.draw(views2d(np.float64, n, m)), data.draw(views2d(np.float64, n, m)))


def test_full_unroll_of_parametric_loop_is_a_schedule_error():
    k = polyjit.kernel(_mm, unroll="k")
    with pytest.raises(polyjit.ScheduleError, match="unroll"):
        k(np.ones((3, 4)), np.ones((4, 2)), np.zeros((3, 2)))


# -- more prange shapes -----------------------------------------------------------------------------------

@polyjit.kernel
def par_inner(A):
    n, m = A.shape
    for i in range(1, n):
        for j in polyjit.prange(m):
            A[i, j] += A[i - 1, j]


@polyjit.kernel
def par_step(x):
    for i in polyjit.prange(0, len(x), 2):
        x[i] = x[i + 1] if i + 1 < len(x) else 0.0


@polyjit.kernel
def par_reversed(x, y):
    for i in polyjit.prange(len(x) - 1, -1, -1):
        y[i] = x[i] * 2


@polyjit.kernel
def par_row_reverse(A):
    n = A.shape[0]
    for i in polyjit.prange(n):
        A[i, :] = A[i, ::-1]


@polyjit.kernel
def par_scalar_reduction(x):
    s = 0.0
    for i in polyjit.prange(len(x)):
        s += x[i]
    return s


@SOME
@given(st.data(), sizes(0, 10), sizes(0, 10))
def test_prange_inner_loop_and_steps(data, n, m):
    check(par_inner, data.draw(views2d(np.float64, n, m)))
    check(par_step, data.draw(views(np.float64, n + m)))
    check(par_reversed, data.draw(views(np.float64, n)), data.draw(views(np.float64, n)))


def test_prange_scalar_reduction_is_rejected():
    with pytest.raises(polyjit.ScheduleError, match="`s`"):
        par_scalar_reduction(np.ones(4))


@pytest.mark.xfail(strict=True, raises=polyjit.ScheduleError,
                   reason="the temporary of an overlapping slice statement (`_tmp0`) is shared by all iterations "
                          "of the enclosing prange loop: a false output dependence rejects a legal parallel loop")
def test_prange_over_rows_with_overlapping_row_slice():
    check(par_row_reverse, np.arange(20.0).reshape(4, 5))


def fm_dot(x, y):
    s = 0.0
    for i in polyjit.prange(len(x)):
        s += x[i] * y[i]
    return s


def fm_int_sum(x, idx):
    s = 0
    for i in range(len(idx)):
        s += x[idx[i]]
    return s


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_fastmath_sums_run_on_threads_and_combine(dt, monkeypatch):
    """prange / the heuristic with fastmath: each thread (work-item on OpenCL) sums its chunk into its own copy of
    the scalar, the runtime adds the partial sums."""
    from polyjit import native_runtime
    monkeypatch.setenv("POLYJIT_NUM_THREADS", "3")
    big = 3 * native_runtime.MIN_CHUNK + 5
    x = np.random.default_rng(0).random(big).astype(dt)
    y = np.random.default_rng(1).random(big).astype(dt)
    k = polyjit.kernel(fm_dot, fastmath=True, cache=False, target="native")
    for n in (0, 1, 7, big):
        check(k, x[:n], y[:n], rtol=1e-4 if dt == np.float32 else 1e-12, exact_type=n > 0)
    assert "i=parallel" in k.inspect_schedule(x, y)
    cl = polyjit.kernel(fm_dot, fastmath=True, cache=False, target="opencl")
    for n in (0, 1, 7, 1000):
        check(cl, x[:n], y[:n], rtol=1e-4 if dt == np.float32 else 1e-12, exact_type=n > 0)
    assert "i=parallel" in cl.inspect_schedule(x, y)
    ci = polyjit.kernel(fm_int_sum, fastmath=True, cache=False, target="opencl", parallel="i")
    check(ci, np.arange(999, dtype=np.int32) - 400, np.arange(999)[::-1].copy())


def test_threaded_integer_sums_are_exact_and_errors_surface(monkeypatch):
    from polyjit import native_runtime
    monkeypatch.setenv("POLYJIT_NUM_THREADS", "2")
    n = 2 * native_runtime.MIN_CHUNK + 11
    x = np.arange(n, dtype=np.int64) * 3 - 7
    idx = np.arange(n)[::-1].copy()
    k = polyjit.kernel(fm_int_sum, fastmath=True, cache=False, target="native", parallel="i")
    check(k, x, idx)
    assert k(x, idx) == int(x.sum())
    idx[-3] = n + 4  # a data-dependent index out of bounds in the last chunk: the run-time check reports it
    with pytest.raises(IndexError):
        k(x, idx)


def fm_total(A):
    s = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            s += A[i, j]
    return s


def test_fastmath_sums_in_opencl_work_groups_are_refused():
    k = polyjit.kernel(fm_total, fastmath=True, cache=False, target="opencl", split={"i": 4},
                       parallel=("i_outer", "i_inner"))
    with pytest.raises(polyjit.ScheduleError, match="work-groups"):
        k(np.ones((8, 8)))
    check(polyjit.kernel(fm_total, fastmath=True, cache=False, target="opencl", parallel="i"), np.ones((9, 7)),
          rtol=1e-12)
