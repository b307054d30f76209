"""Differential-testing helpers: a compiled kernel against its own `.py_func` on copies of the inputs."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FLOATS = (np.float32, np.float64)
INTS = (np.int32, np.int64)


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def copy_args(args):
    """Copy the arguments, keeping aliasing between them: the same array twice, or two views of one base,
    stay one array / views of one fresh copy of that base (with the same strides and offsets)."""
    bases: dict[int, np.ndarray] = {}
    out = []
    for x in args:
        if not isinstance(x, np.ndarray):
            out.append(copy.deepcopy(x))
            continue
        root = _root(x)
        if not (root.flags.c_contiguous or root.flags.f_contiguous) or root.dtype != x.dtype:
            c = x.copy()
        else:
            if id(root) not in bases:
                bases[id(root)] = root.copy(order="A")
            new_root = bases[id(root)]
            off = x.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            c = np.ndarray(x.shape, x.dtype, buffer=new_root.reshape(-1, order="A").view(np.uint8),
                           offset=off, strides=x.strides) if root.nbytes else x.copy()
        c.flags.writeable = x.flags.writeable
        out.append(c)
    return out


def assert_same(a, b, rtol=None, what="value", exact_type=True):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{what}: {type(a)} vs {type(b)}"
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} vs {b.dtype}"
        assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
        if rtol is not None and a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, equal_nan=True, err_msg=what)
        else:
            np.testing.assert_array_equal(a, b, err_msg=what)  # NaNs compare equal here
        return
    # scalars: same Python type (Python scalar vs numpy scalar, and numpy dtype) and value
    if not exact_type:  # a loop that never ran leaves Python's initial value (e.g. 0.0, not float32)
        a, b = (a.item() if isinstance(a, np.generic) else a), (b.item() if isinstance(b, np.generic) else b)
    assert type(a) is type(b), f"{what}: compiled returned {type(a).__name__} {a!r}, Python {type(b).__name__} {b!r}"
    if a is None:
        return
    if rtol is not None and isinstance(a, (float, np.floating)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol, err_msg=what)
    elif isinstance(a, (float, np.floating)) and np.isnan(a):
        assert np.isnan(b), f"{what}: {a!r} vs {b!r}"
    else:
        assert a == b, f"{what}: compiled {a!r} vs Python {b!r}"


def check(kernel, *args, rtol=None, exact_type=True):
    """Run `kernel` and `kernel.py_func` on copies of `args`; compare every array argument and the result.

    `exact_type=False` compares returned scalars by value and Python kind only: a static compiler returns
    one type, while Python's type can depend on whether a loop ran. Returns the compiled result."""
    c1 = copy_args(args)
    c2 = copy_args(args)
    with np.errstate(all="ignore"):
        expected = kernel.py_func(*c2)
    got = kernel(*c1)
    assert_same(got, expected, rtol, "return value", exact_type)
    for k, (x, y) in enumerate(zip(c1, c2)):
        if isinstance(x, np.ndarray):
            assert_same(x, y, rtol, f"array argument {k}")
    return got


# -- hypothesis strategies -------------------------------------------------------------------------------

def arrays(dtype, shape, lo=-100, hi=100):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        width = 32 if dtype == np.float32 else 64
        elems = st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=width)
    elif dtype.kind == "b":
        elems = st.booleans()
    else:
        info = np.iinfo(dtype)
        elems = st.integers(max(lo, info.min), min(hi, info.max))
    return hnp.arrays(dtype, shape, elements=elems)


def sizes(lo=0, hi=40):
    return st.integers(lo, hi)


@st.composite
def views(draw, dtype, n, lo=-100, hi=100):
    """A 1-D array of length n: contiguous, a[::2], a[::-1], or a slice of a bigger array."""
    kind = draw(st.sampled_from(["plain", "step2", "reversed", "slice", "step3rev"]))
    if kind == "plain":
        return draw(arrays(dtype, n, lo, hi))
    if kind == "step2":
        return draw(arrays(dtype, 2 * n, lo, hi))[::2]
    if kind == "reversed":
        return draw(arrays(dtype, n, lo, hi))[::-1]
    if kind == "slice":
        return draw(arrays(dtype, n + 5, lo, hi))[3:3 + n]
    return draw(arrays(dtype, 3 * n + 1, lo, hi))[::-3][:n]


@st.composite
def views2d(draw, dtype, n, m, lo=-100, hi=100):
    """A 2-D (n, m) array: contiguous, transposed, strided, or a window of a bigger array."""
    kind = draw(st.sampled_from(["plain", "T", "strided", "window", "flipped"]))
    if kind == "plain":
        return draw(arrays(dtype, (n, m), lo, hi))
    if kind == "T":
        return draw(arrays(dtype, (m, n), lo, hi)).T
    if kind == "strided":
        return draw(arrays(dtype, (2 * n, m), lo, hi))[::2, :]
    if kind == "window":
        return draw(arrays(dtype, (n + 2, m + 3), lo, hi))[1:n + 1, 2:m + 2]
    return draw(arrays(dtype, (n, 2 * m), lo, hi))[::-1, ::-2]


def gemm(A, B, C):
    """The textbook matmul nest, shared by the schedule, tiling and work-group tests."""
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]
