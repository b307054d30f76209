"""OpenCL calls: program variants (unit last strides as a constant, or strides as arguments), threads."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import check


def axpy_rows(a, X, Y):
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            Y[i, j] = a * X[i, j] + Y[i, j]


@pytest.fixture(scope="module")
def kernel():
    return polyjit.kernel(axpy_rows, target="opencl", cache=False)


@settings(max_examples=12, deadline=None)
@given(rows=st.integers(0, 5), cols=st.integers(0, 9), step=st.sampled_from([1, 2, 3, -1, -2]),
       transpose=st.booleans())
def test_any_strides_match_python(kernel, rows, cols, step, transpose):
    rng = np.random.default_rng(rows * 31 + cols)
    X = rng.random((rows, cols * abs(step)))[:, ::step]
    Y = rng.random((cols, rows)).T if transpose else rng.random((rows, cols))
    check(kernel, 1.5, X, Y)


def test_unit_strides_build_the_constant_stride_variant_only():
    import pyopencl.array as cla

    from polyjit.opencl_runtime import UNIT_OPTIONS, context_and_queue

    k = polyjit.kernel(axpy_rows, target="opencl", cache=False)
    X, Y = np.ones((3, 4)), np.zeros((3, 4))
    check(k, 2.0, X, Y)
    compiled = k.specialize(2.0, X, Y)
    assert sorted(compiled.variants) == [True]
    assert "PJ_LAST(X_stride1)" in k.inspect_opencl(2.0, X, Y) and " ".join(UNIT_OPTIONS) == "-D PJ_UNIT_STRIDE"
    check(k, 2.0, np.ones((3, 8))[:, ::2], Y)  # a strided view: the general variant, built on demand
    assert sorted(compiled.variants) == [False, True]
    queue = context_and_queue()[1]  # device arrays: a strided view of one also takes the general variant
    dX, dY = cla.to_device(queue, np.arange(24.0).reshape(3, 8)), cla.to_device(queue, np.zeros((3, 4)))
    k(2.0, dX[:, ::2], dY)
    np.testing.assert_array_equal(dY.get(), 2.0 * np.arange(24.0).reshape(3, 8)[:, ::2])


def test_calls_from_several_threads_keep_their_own_arguments():
    """A pyopencl kernel object holds its arguments until the launch; concurrent calls take turns."""
    from concurrent.futures import ThreadPoolExecutor

    k = polyjit.kernel(axpy_rows, target="opencl", cache=False)
    rng = np.random.default_rng(7)
    cases = [(float(a), rng.random((4, 5 + a % 3)), rng.random((4, 5 + a % 3))) for a in range(24)]
    expected = [a * X + Y for a, X, Y in cases]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: k(*c), cases))
    for (_, _, Y), want in zip(cases, expected):
        np.testing.assert_array_equal(Y, want)
