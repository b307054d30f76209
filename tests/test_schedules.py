"""A catalogue of legal and illegal schedule hints on classic kernels.

Legal hints must give exactly the results of the Python function (differential, over sizes that do not
divide the factors); illegal ones must raise ScheduleError naming the violated dependence.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from polyjit.lowering import transform as T

from helpers import arrays, check, gemm

pytestmark = pytest.mark.opencl


def jacobi_2d(A, B, steps):
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                B[i, j] = 0.2 * (A[i, j] + A[i, j - 1] + A[i, j + 1] + A[i + 1, j] + A[i - 1, j])
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                A[i, j] = 0.2 * (B[i, j] + B[i, j - 1] + B[i, j + 1] + B[i + 1, j] + B[i - 1, j])


def seidel_2d(A, steps):
    n = A.shape[0]
    for t in range(steps):
        for i in range(1, n - 1):
            for j in range(1, n - 1):
                A[i, j] = (A[i - 1, j - 1] + A[i - 1, j] + A[i - 1, j + 1] + A[i, j - 1] + A[i, j]
                           + A[i, j + 1] + A[i + 1, j - 1] + A[i + 1, j] + A[i + 1, j + 1]) / 9.0


def lu(A):
    n = A.shape[0]
    for k in range(n):
        for i in range(k + 1, n):
            A[i, k] = A[i, k] / A[k, k]
        for i in range(k + 1, n):
            for j in range(k + 1, n):
                A[i, j] -= A[i, k] * A[k, j]


def prefix_sum(x):
    for i in range(1, len(x)):
        x[i] += x[i - 1]


def skewed(A):
    for i in range(1, A.shape[0]):
        for j in range(A.shape[1] - 1):
            A[i, j] = A[i - 1, j + 1] + 1.0


def row_sums(A, r):
    for i in range(A.shape[0]):
        s = 0.0
        for j in range(A.shape[1]):
            s += A[i, j]
        r[i] = s


def total(x):
    s = 0.0
    for i in range(len(x)):
        s += x[i]
    return s


def matrix(n, m=None, dtype=np.float64):
    return arrays(dtype, (n, m if m is not None else n), -10, 10)


LEGAL = [
    ("gemm tile", gemm, dict(tile={"i": 4, "j": 3})),
    ("gemm order ikj", gemm, dict(order=("i", "k", "j"))),
    ("gemm order kij", gemm, dict(order=("k", "i", "j"))),
    ("gemm tile3 + parallel", gemm, dict(tile={"i": 4, "j": 4, "k": 3}, parallel="i_outer")),
    ("gemm split+unroll", gemm, dict(split={"k": 3}, unroll="k_inner")),
    ("gemm unroll factor", gemm, dict(unroll={"j": 2})),
    ("gemm parallel i,j", gemm, dict(parallel=("i", "j"))),
    ("gemm vectorize j", gemm, dict(vectorize={"j": 4})),
    ("jacobi parallel+tile", jacobi_2d, dict(tile={"i": 4, "j": 4}, parallel="i_outer")),
    ("seidel split", seidel_2d, dict(split={"j": 3})),
    ("lu parallel i", lu, dict(parallel="i")),
    ("prefix split", prefix_sum, dict(split={"i": 4})),
    ("skewed parallel j", skewed, dict(parallel="j")),
    ("row sums parallel", row_sums, dict(parallel="i")),
    # tail="separate": full tiles guard-free, partial ones in nests of their own (order unchanged)
    ("prefix split separate", prefix_sum, dict(split={"i": 4}, tail="separate")),
    ("gemm tile separate", gemm, dict(tile={"i": 4, "j": 3}, parallel="i_outer", tail="separate")),
    ("gemm tile3 separate j", gemm, dict(tile={"i": 4, "j": 4, "k": 3}, tail={"j": "separate"})),
    ("gemm unroll separate", gemm, dict(unroll={"j": 2}, tail="separate")),
    ("gemm split+unroll separate", gemm, dict(split={"k": 3}, unroll="k_inner", tail="separate")),
    ("gemm vectorize separate", gemm, dict(vectorize={"j": 4}, tail="separate")),
    ("jacobi tile separate", jacobi_2d, dict(tile={"i": 4, "j": 4}, parallel="i_outer", tail="separate")),
    ("seidel split separate", seidel_2d, dict(split={"j": 3}, tail={"j": "separate"})),
    ("lu split separate", lu, dict(split={"j": 3}, tail="separate")),
    # both halves of split loops parallel: work-groups x work-items on OpenCL, threads over i_outer natively
    ("gemm workgroups", gemm, dict(tile={"i": 4, "j": 3}, parallel=("i_outer", "j_outer", "i_inner", "j_inner"))),
    ("gemm workgroups separate", gemm, dict(tile={"i": 4, "j": 3}, tail="separate",
                                            parallel=("i_outer", "j_outer", "i_inner", "j_inner"))),
    ("gemm workgroups prefetch", gemm, dict(tile={"i": 4, "j": 4, "k": 3},
                                            parallel=("i_outer", "j_outer", "i_inner", "j_inner"),
                                            prefetch={"A": "k_outer", "B": "k_outer"})),
    ("jacobi workgroups", jacobi_2d, dict(tile={"i": 4, "j": 4},
                                          parallel=("i_outer", "j_outer", "i_inner", "j_inner"))),
    ("row sums workgroups", row_sums, dict(split={"i": 3}, parallel=("i_outer", "i_inner"))),
]

ILLEGAL = [
    ("gemm parallel k", gemm, dict(parallel="k"), "anti dependence", "on `C`"),
    ("jacobi parallel t", jacobi_2d, dict(parallel="t"), "dependence", "cannot run in parallel"),
    ("seidel interchange", seidel_2d, dict(order=("j", "i")), "reverses the", "dependence from line"),
    ("seidel parallel i", seidel_2d, dict(parallel="i"), "dependence", "on `A`"),
    ("lu parallel k", lu, dict(parallel="k"), "dependence", "on `A`"),
    ("prefix parallel", prefix_sum, dict(parallel="i"), "flow dependence", "written at (i=1) is read at (i=2)"),
    ("skewed interchange", skewed, dict(order=("j", "i")), "reverses the", "dependence from line"),
    ("skewed parallel i", skewed, dict(parallel="i"), "flow dependence", "on `A`"),
    ("reduction parallel", row_sums, dict(parallel="j"), "dependence", "on `s`"),
    ("sum parallel", total, dict(parallel="i"), "dependence", "on `s`"),
]


def args_for(fn, data, n, m):
    if fn in (gemm,):
        k = data.draw(st.integers(0, 7))
        return (data.draw(matrix(n, k)), data.draw(matrix(k, m)), data.draw(matrix(n, m)))
    if fn is jacobi_2d:
        return (data.draw(matrix(n)), data.draw(matrix(n)), data.draw(st.integers(0, 3)))
    if fn is seidel_2d:
        return (data.draw(matrix(n)), data.draw(st.integers(0, 3)))
    if fn is lu:
        a = data.draw(matrix(n))
        return (a + np.eye(n) * 50,)  # diagonally dominant: no zero pivots
    if fn is prefix_sum:
        return (data.draw(arrays(np.float64, n * m, -10, 10)),)
    if fn is skewed:
        return (data.draw(matrix(n, m)),)
    if fn is row_sums:
        return (data.draw(matrix(n, m)), np.zeros(n))
    return (data.draw(arrays(np.float64, n)),)


KERNELS = {name: polyjit.kernel(fn, **hints) for name, fn, hints in LEGAL}


@pytest.mark.parametrize("name, fn, hints", LEGAL, ids=[x[0] for x in LEGAL])
@settings(max_examples=12, deadline=None)
@given(data=st.data(), n=st.integers(0, 11), m=st.integers(1, 9))
def test_legal_hints_match_python(name, fn, hints, data, n, m):
    check(KERNELS[name], *args_for(fn, data, n, m))


@pytest.mark.parametrize("name, fn, hints, kind, detail", ILLEGAL, ids=[x[0] for x in ILLEGAL])
def test_illegal_hints_name_the_dependence(name, fn, hints, kind, detail):
    k = polyjit.kernel(fn, **hints)
    args = args_for(fn, _FixedData(), 5, 5)
    with pytest.raises(polyjit.ScheduleError) as info:
        k(*args)
    message = str(info.value)
    assert kind in message and detail in message, message
    assert "line" in message


class _FixedData:
    """Stands in for hypothesis' data object with fixed draws."""

    def draw(self, strategy):
        return strategy.example() if not isinstance(strategy, st.SearchStrategy) else _example(strategy)


def _example(strategy):
    from hypothesis import find
    return find(strategy, lambda x: True)


def test_unsafe_skips_the_check():
    k = polyjit.kernel(prefix_sum, parallel="i", unsafe=True)
    text = k.inspect_schedule(np.zeros(8))
    assert "i=parallel" in text


def test_schedule_callable_gets_the_model():
    seen = []

    def sched(model):
        seen.append(model)
        return T.split(model, "i", 4)

    k = polyjit.kernel(prefix_sum, schedule=sched)
    check(k, np.arange(10.0))
    assert seen and "i_outer" in k.inspect_schedule(np.arange(10.0))


def test_split_identity_in_loop_structure():
    text = polyjit.kernel(prefix_sum, split={"i": 4}).inspect_schedule(np.zeros(10))
    assert "S0(i=((4 * c1) + c2))" in text  # i == i_inner + 4*i_outer


def test_heuristic_interchanges_gemm_and_parallelizes(monkeypatch):
    # on an OpenCL CPU device (pocl); natively the heuristic tiles gemm instead (tests/test_matmul_tiling.py),
    # and on GPUs it makes work-groups (tests/test_register_tiles.py)
    pytest.importorskip("pyopencl")
    from polyjit import opencl_runtime
    monkeypatch.setattr(opencl_runtime, "device_is_gpu", lambda: False)
    text = polyjit.kernel(gemm, target="opencl", cache=False).inspect_schedule(
        np.zeros((3, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    assert "schedule (heuristic)" in text
    assert "tags: i=parallel, j=vector" in text
    lines = [ln.split("#")[1].strip() for ln in text.splitlines() if ln.strip().startswith("for")]
    assert lines == ["i parallel", "k", "j vector"]


def test_reorder_of_imperfect_nest_is_refused():
    with pytest.raises(polyjit.ScheduleError, match="perfect nest"):
        polyjit.kernel(row_sums, order=("j", "i")).inspect_schedule(np.zeros((3, 3)), np.zeros(3))


def test_distribute_and_fuse_preserve_results():
    def two(x, y):
        for i in range(len(x)):
            x[i] = x[i] * 2
            y[i] = y[i] + 1

    def dist(model):
        return T.distribute(model, "i")

    check(polyjit.kernel(two, schedule=dist), np.arange(7.0), np.arange(7.0))

    def seq(x, y):
        for i in range(len(x)):
            x[i] = x[i] * 2
        for j in range(len(y)):
            y[j] = x[j] + 1

    check(polyjit.kernel(seq, schedule=lambda m: T.fuse(m, "i", "j")), np.arange(7.0), np.arange(7.0))
    bad = polyjit.kernel(prefix_sum, schedule=lambda m: T.split(m, "i", 2), parallel="i_inner")
    with pytest.raises(polyjit.ScheduleError):
        bad(np.arange(6.0))


# -- tail strategies ------------------------------------------------------------------------------------------

def scale_add(x, y):
    for i in range(len(x)):
        y[i] = 2.0 * x[i] + y[i]


def shifted(x):
    for i in range(1, len(x)):
        x[i] = x[i] + 3.0 * i


TAIL_SIZES = [0, 1, 3, 5, 9, 13]  # factor 4: 0, 1, f-1, f+1, odd


@pytest.mark.parametrize("tail", ["guard", "separate"])
@pytest.mark.parametrize("n", TAIL_SIZES)
def test_tail_strategies_match_python_on_awkward_sizes(tail, n):
    rng = np.random.default_rng(n)
    check(polyjit.kernel(scale_add, split={"i": 4}, tail=tail), rng.random(n), rng.random(n))
    check(polyjit.kernel(shifted, split={"i": 4}, tail=tail), rng.random(n))
    check(polyjit.kernel(prefix_sum, unroll={"i": 4}, tail=tail), rng.random(n))
    m = max(n - 2, 0)
    check(polyjit.kernel(gemm, tile={"i": 4, "j": 4}, tail={"i": tail, "j": "separate"}),
          rng.random((n, 3)), rng.random((3, m)), rng.random((n, m)))
    check(polyjit.kernel(gemm, schedule=lambda md: T.tile(md, {"i": 4, "k": 4}, tail=tail)),
          rng.random((m, n)), rng.random((n, 2)), rng.random((m, 2)))


def test_separate_tail_runs_full_tiles_without_guards():
    text = polyjit.kernel(scale_add, split={"i": 4}, tail="separate").inspect_schedule(np.zeros(10), np.zeros(10))
    structure = text.split("loop structure:\n")[1]
    assert "i_outer/i_inner=separate" in text
    # the full tiles: a count of whole tiles, and the inner loop's constant bounds, no min()
    assert "for c2 = 0; (c2 < (x_shape0 // 4)); c2 += 1:  # i_outer" in structure
    assert "  for c3 = 0; (c3 <= 3); c3 += 1:  # i_inner" in structure
    # the remainder, after them and on its own
    assert structure.index("// 4)); c2") < structure.index("if ((x_shape0 % 4) >= 1):")
    assert "min(" not in structure
    guarded = polyjit.kernel(scale_add, split={"i": 4}).inspect_schedule(np.zeros(10), np.zeros(10))
    assert "min(3, ((x_shape0 - (4 * c1)) - 1))" in guarded


def test_separate_tail_keeps_the_order_of_a_loop_starting_mid_tile():
    text = polyjit.kernel(prefix_sum, split={"i": 4}, tail="separate").inspect_schedule(np.zeros(11))
    assert "for c3 = 0; (c3 <= 3); c3 += 1:  # i_inner" in text  # full tiles guard-free
    check(polyjit.kernel(prefix_sum, split={"i": 4}, tail="separate"), np.arange(11.0))


@pytest.mark.parametrize("bad", ["round", "shift", None, 3, {"i": "up"}])
def test_unknown_tail_is_refused_with_the_valid_spellings(bad):
    with pytest.raises(polyjit.ScheduleError, match="separate"):
        polyjit.kernel(scale_add, split={"i": 4}, tail=bad)


def test_tail_for_a_loop_that_is_not_split_is_refused():
    with pytest.raises(polyjit.ScheduleError, match="no split="):
        polyjit.kernel(scale_add, split={"i": 4}, tail={"j": "separate"})(np.zeros(3), np.zeros(3))


def test_unknown_tail_in_a_schedule_callable_is_refused():
    k = polyjit.kernel(scale_add, schedule=lambda m: T.split(m, "i", 4, tail="round_up"))
    with pytest.raises(polyjit.ScheduleError, match='tail="separate"'):
        k(np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError):
        T.split(None, "i", 4, "separate")  # tail is keyword-only


def skew_nest(A, B):  # a statement outside the split loop sharing its prefix, and a triangular inner loop
    for i in range(1, A.shape[0]):
        B[i] = B[i - 1] + A[i, 0]
        for j in range(i):
            A[i, j] = A[i - 1, j] + B[i]


def _mat(*shape):
    return np.random.default_rng(len(shape) * 7 + shape[0]).uniform(-2, 2, shape)


SEPARATIONS = [
    (prefix_sum, (_mat(11),), dict(split={"i": 4}, tail="separate")),
    (gemm, (_mat(7, 7), _mat(7, 7), _mat(7, 7)), dict(tile={"i": 4, "j": 3}, tail="separate")),
    (gemm, (_mat(9, 9), _mat(9, 9), _mat(9, 9)), dict(tile={"i": 4, "j": 4, "k": 3}, tail={"j": "separate"})),
    (gemm, (_mat(9, 9), _mat(9, 9), _mat(9, 9)), dict(split={"i": 5, "j": 8, "k": 4},
                                                      tail={"i": "separate", "j": "separate"},
                                                      order=("k_outer", "j_outer", "i_outer", "k_inner", "i_inner",
                                                             "j_inner"))),
    (jacobi_2d, (_mat(9, 9), _mat(9, 9), 2), dict(tile={"i": 4, "j": 4}, tail="separate")),
    (seidel_2d, (_mat(9, 9), 2), dict(split={"j": 3}, tail={"j": "separate"})),
    (lu, (_mat(8, 8) + 8 * np.eye(8),), dict(split={"j": 3}, tail="separate")),
    (skew_nest, (_mat(9, 9), _mat(9)), dict(split={"j": 4, "i": 3}, tail="separate")),
]


@pytest.mark.parametrize("fn, args, hints", SEPARATIONS)
def test_prefix_check_of_separation_equals_the_exact_order_check(fn, args, hints):
    """tails._keeps_order (prefix sets) decides each separation as the comparison of the order relations over
    all instances (tails._same_order) does: the same schedules come out."""
    from polyjit.analysis.build import build_model
    from polyjit.lowering.schedule import apply_hints
    from polyjit.lowering.tails import separated_schedule

    k = polyjit.kernel(fn, **hints)
    model = build_model(k.program(), k.signature(args), fastmath=False)
    model = apply_hints(model, k.options, target="native")
    width = model.schedule_width()
    maps = {ins.id: model.instruction_schedule_map(ins.id, width) for ins in model.instructions}
    fast, fast_origin = separated_schedule(model, dict(maps))
    exact, exact_origin = separated_schedule(model, dict(maps), exact=True)
    assert fast_origin == exact_origin and sorted(fast) == sorted(exact)
    assert all(fast[name].is_equal(exact[name]) for name in fast)
    check(k, *args)


def test_prefix_check_refuses_a_separation_that_reorders():
    """Times [t0, t1] with the piece decided by (t0, t1) for the split's statements and piece 1 for others: a
    statement of another piece that runs at or after a tail piece under the same t0 would move before it."""
    import islpy as isl

    from polyjit.lowering.tails import _keeps_order

    users = isl.Set("[n] -> { [0, t1] : 0 <= t1 <= 2 }")
    pieces = [isl.Set("[n] -> { [0, 0] }"), isl.Set("[n] -> { [0, 1] }"), isl.Set("[n] -> { [0, 2] }")]
    assert _keeps_order(users, [isl.Set("[n] -> { [1, 0] }")], pieces, "n", 2, 1)
    assert not _keeps_order(users, [isl.Set("[n] -> { [0, 3] }")], pieces, "n", 2, 1)  # after the tail
    assert not _keeps_order(users, [isl.Set("[n] -> { [0, 0] }")], pieces, "n", 2, 1)  # beside the head
    assert _keeps_order(users, [isl.Set("[n] -> { [0, 1] }")], pieces, "n", 2, 1)  # beside the full tiles
