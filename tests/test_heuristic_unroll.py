"""The heuristic unrolls short constant innermost loops (heuristic.unroll_short_loops): the schedule chosen,
where it steps aside, and differential runs against `.py_func`."""

import numpy as np
import pytest

import polyjit

from helpers import check


def horner(x, out):
    for i in range(1, x.shape[0]):
        s = out[i - 1] * 0.25
        for d in range(3):
            s = s * 0.5 + x[i, d]
        out[i] = s


def taps(x, w, out):
    for i in range(2, x.shape[0] - 2):
        s = 0.0
        for d in range(5):
            s += w[d] * x[i + d - 2]
        out[i] = s


def ragged(x, out):
    for i in range(x.shape[0]):
        for d in range(i % 2, 2):  # one or two iterations: no constant range
            out[i] = out[i] * 0.5 + x[i, d]


def columns(x, out):
    for i in range(x.shape[0]):
        for d in range(x.shape[1]):  # as many as x has: not a constant
            out[i] = out[i] * 0.5 + x[i, d]


def long_rows(x, out):
    for i in range(x.shape[0]):
        for d in range(9):
            out[i] = out[i] * 0.5 + x[i, d % 3]


def _tags(fn, *args):
    return polyjit.kernel(fn).inspect_schedule(*args).split("tags:")[1].split("\n")[0]


@pytest.mark.parametrize("target", ["native", "opencl"])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100])
def test_short_constant_loops_unrolled(n, target):
    rng = np.random.default_rng(n)
    k = polyjit.kernel(horner, target=target)
    check(k, rng.random((n, 3)), rng.random(n))
    assert "d=unroll" in k.inspect_schedule(rng.random((4, 3)), np.zeros(4))


def test_loops_in_lanes_longer_or_not_constant_stay_loops():
    assert "unroll" not in _tags(taps, np.ones(9), np.ones(5), np.zeros(9))  # inside i's SIMD lanes
    assert "unroll" not in _tags(ragged, np.ones((4, 2)), np.zeros(4))
    assert "unroll" not in _tags(columns, np.ones((4, 2)), np.zeros(4))
    assert "unroll" not in _tags(long_rows, np.ones((4, 3)), np.zeros(4))
    for fn, args in [(taps, (np.arange(11.0), np.arange(5.0), np.zeros(11))),
                     (ragged, (np.arange(8.0).reshape(4, 2), np.zeros(4))),
                     (long_rows, (np.ones((4, 3)), np.zeros(4)))]:
        check(polyjit.kernel(fn), *args)
