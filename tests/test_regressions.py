"""Regression tests for bugs found by the benchmark harness and the fuzzer (each names its bug)."""

import math

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


@polyjit.kernel
def spills_in_a_leaf(A, idx, n):
    """fuzz (seed 1, program 16): enough live float values to spill in a function without calls."""
    for i in range(1):
        for j in range(0, n):
            for k in range(2, n - 1):
                for l in range(j + 1, n):
                    A[idx[k], j] = (float(A[k - 2, k - 2] * k) if l >= n - 2 or A[k % 2, n - 1] / (abs(0.0) + 1.0)
                                    != abs(A[i][l]) or -2 < (3 if k == i else j)
                                    else math.sqrt(abs(A[n - 1 - l, j]))) + k - l + 3
        A[i, -1] += A[i, i] + max(A[i, i], A[i, i // 2]) - abs(-1.25 - i)


def test_xmm_spills_in_leaf_functions_are_unaligned_safe():
    """The allocator stored an xmm spill with vmovaps to an 8-byte-aligned slot: SIGSEGV."""
    A = np.array([[4.35, 0.02, -0.09], [-1.64, -0.72, 1.14], [-3.39, -5.36, -2.62]], np.float32)
    check(spills_in_a_leaf, A, np.array([0, 0, 1]), 3)


@polyjit.kernel(fastmath=True)
def invariant_product(B):
    B[1:] = 1.5 * 1.5 + B[1:]


def test_fastmath_fma_leaves_invariant_products_alone():
    """fuzz (seed 100, program 227): fusing a loop-invariant product crashed the vectorizer."""
    check(invariant_product, np.array([-1.6875, -2.8125, 1.75, 0.5, 3.0, 2.0, 1.0, 0.25, 9.0]), rtol=1e-15)


@polyjit.kernel
def scaled_sum(x, out, a):
    s = 0.0
    for i in range(len(x)):
        out[i] = a * x[i]
        s += out[i]
    return s


def test_one_kernel_from_many_python_threads():
    """Compilation is locked and every call has its own argument block: threads never see each other's data."""
    import threading
    rng = np.random.default_rng(3)
    inputs = [(rng.random(1000 + 37 * t), float(t)) for t in range(8)]
    results = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def work(t):
        x, a = inputs[t]
        out = np.empty_like(x)
        start.wait()
        for _ in range(20):
            s = scaled_sum(x, out, a)
        results[t] = (out, s)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for (x, a), (out, s) in zip(inputs, results):
        expected_out = np.empty_like(x)
        assert s == scaled_sum.py_func(x, expected_out, a)
        np.testing.assert_array_equal(out, expected_out)


@polyjit.kernel
def square_in_place(A):
    for i in range(A.shape[0]):
        A[i] += A[i] ** 2


def test_square_is_exact_on_every_target():
    """fuzz (seed 602, program 9): OpenCL's pow(x, 2.0) was an ulp off Python's x ** 2 (glibc's pow)."""
    x = np.array([0.7021564239441294, -23.747975758705337, 1e-3, 3.3, -0.1, 1e150], np.float64)
    check(square_in_place, x)
    check(polyjit.kernel(square_in_place.py_func, target="opencl"), x)


def guarded_scalar_then_diagonal(A, n):
    """fuzz (seed 4343, program 155): the heuristic ran the loop in parallel; `s`, assigned in one iteration,
    stayed in that thread's copy and the kernel returned 0."""
    s = 0
    for i in range(n):
        if i == 3:
            s += 3
        A[i, i] += i
    return s


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_scalars_read_after_a_loop_keep_it_sequential(target):
    k = polyjit.kernel(guarded_scalar_then_diagonal, target=target, cache=False)
    for n in (0, 3, 4):
        check(k, np.zeros((8, 4), np.float32)[::2], n)
    assert "parallel" not in k.inspect_schedule(np.zeros((4, 4), np.float32), 4).split("tags:")[1].split("\n")[0]
    with pytest.raises(polyjit.ScheduleError, match="`s` is assigned in it .* and read after it"):
        polyjit.kernel(guarded_scalar_then_diagonal, target=target, cache=False, parallel="i")(
            np.zeros((4, 4), np.float32), 4)


def f32_dot(x, y):
    s = np.float32(0)
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


@pytest.mark.parametrize("n", [4, 8, 100, 1001])
def test_fastmath_float32_sums_add_every_lane(n):
    """The horizontal sum of a float32 vector accumulator added lanes 0 and 2 with a scalar add: lane 3 was
    lost and fastmath float32 dot products came out about 25% low (found writing the threaded-sum tests)."""
    x = np.linspace(0.5, 1.5, n).astype(np.float32)
    y = np.linspace(1.0, 2.0, n).astype(np.float32)
    check(polyjit.kernel(f32_dot, fastmath=True, cache=False), x, y, rtol=1e-5)


def last_iteration_uses_a_local(C, n):
    """device fuzz (seed 105, program 45): isl split the last iteration's statement off the parallel loop
    (`if (n >= 3) S1(i=n-2)` after it), and S1 read `t0` from the thread that had not run: 0."""
    for i in range(1, n - 1):
        t0 = i
        if i != n - 2:
            pass
        else:
            C[i, i, i] *= t0


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_locals_read_by_statements_isl_moves_after_a_parallel_loop(target):
    k = polyjit.kernel(last_iteration_uses_a_local, target=target, cache=False)
    for n in (0, 2, 3, 4):
        check(k, np.full((4, 4, 4), 5.0, np.float32), n)
    assert "parallel" not in str(k.inspect_schedule(np.zeros((4, 4, 4), np.float32), 4).split("loop structure:")[1])


def one_point_branch_sum(A, n):
    """device fuzz (seed 102, programs 51 and 252): `s +=` in the branch taken at one point of a loop that the
    heuristic ran in parallel was lost (fixed by keeping loops whose scalars are read after them sequential)."""
    s = 0
    for i in range(n):
        if i == 1:
            s += A[i]
        else:
            A[i] = 3
    return s


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_sum_in_a_one_point_branch(target):
    k = polyjit.kernel(one_point_branch_sum, target=target, cache=False)
    for n in (0, 1, 2, 5):
        check(k, np.arange(6), n, exact_type=n > 1)  # Python's s stays a Python int when the branch never runs


def sum_then_dependent_updates(A, n):
    """device fuzz (seed 201, program 197): under fastmath the second loop, whose update reads `s`, was taken
    for a sum because the first loop sums into `s`, and ran in parallel: -4 instead of 2."""
    s = 0
    for i in range(n):
        s += -2
    for j in range(2, n):
        s += (j - s if 1.5 - 2 < s - 1.5 or j % 2 == 0 else -2 + 2)
    return s


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_only_true_sums_run_in_parallel(target):
    k = polyjit.kernel(sum_then_dependent_updates, target=target, fastmath=True, cache=False)
    for n in (0, 3, 6):
        check(k, np.zeros(3), n)
    assert "j=parallel" not in k.inspect_schedule(np.zeros(3), 6)


def does_nothing(A, n):
    """device fuzz (seed 202, program 571): a kernel without statements has no phase; the per-call Python
    had a syntax error `(,)`."""
    pass


def precision_by_branch(A, n):
    """device fuzz (seed 202, programs 292, 795): s is np.float32 until `s += A[k]` (int64) makes it float64 at
    run time, and only if that branch runs."""
    s = np.float32(0.0)
    for k in range(2):
        s = s + 0.5
        if k == n:
            s += A[k]
    return s


def test_empty_kernels_and_locals_that_change_precision():
    k = polyjit.kernel(does_nothing, cache=False)
    assert k(np.zeros(2), 3) is None and k(np.zeros(2), 3) is None
    with pytest.raises(polyjit.TypingError, match="precision would change"):
        polyjit.kernel(precision_by_branch, cache=False)(np.arange(3), 5)


def strided_conditional_sum(C, n):
    """device fuzz (seed 303, program 798): split/vectorize={'j': 8} of a loop with step -3 scheduled
    floor(-j/8) over a stride-3 domain, and isl's AST builder lost all but one instance (0 instead of 4).
    Splits of strided loops now count iterations."""
    s = np.float64(0)
    for j in range(n - 1, -1, -3):
        if j < 3:
            s += C[n - 1 - j]
    return s


def strided_updates(A, B, n):
    for j in range(n - 1, -1, -3):
        A[j] += j
        B[j] *= 2


@pytest.mark.parametrize("hints", [dict(split={"j": 8}), dict(vectorize={"j": 8}), dict(split={"j": 2}),
                                   dict(split={"j": 3}, tail="separate")])
def test_splits_of_strided_loops(hints):
    for n in (0, 1, 2, 3, 4, 7, 11, 20):
        check(polyjit.kernel(strided_conditional_sum, cache=False, **hints), np.arange(1.0, 21.0), n)
        check(polyjit.kernel(strided_updates, cache=False, **hints), np.arange(1.0, 21.0), np.arange(20.0), n)


def no_arguments():
    """Review: a kernel without arguments unpacked them as `    = args`, a SyntaxError in the per-call Python."""
    s = 0
    for i in range(4):
        s += i
    return s


def test_kernels_without_arguments():
    k = polyjit.kernel(no_arguments, cache=False)
    assert k() == k() == no_arguments() == 6


def python_int_then_float32(x32, out):
    """fuzz (README's former "known gap", seed 107 program 1158): `s` is a Python int until the first float32
    update; before it, `abs(s) + 3.0` is Python float arithmetic and `x32[i] + ...` rounds that float64 to
    float32 once more, while a static float32 `s` computes in float32. The use now raises TypingError."""
    s = 0
    for i in range(x32.shape[0]):
        out[i] = x32[i] + 1.0 / (abs(s) + 3.0)
        s += x32[i]
    return s


def chosen_int_then_float(B, C, n):
    for i in range(n):
        t0 = (-2 if i != 3 else C[i])
        B[i] = B[i] / (abs(t0) + 1.0)


def mixed_locals_where_the_type_does_not_matter(x32, x64, idx32, out):
    s = 0.0  # float64 Python float, then float64 values: the same arithmetic
    f = 0.0  # Python float, then float32 values: used only with float32 operands
    k = 0  # Python int, then int32 values: used as an index, in a bound and in a comparison
    for i in range(x64.shape[0]):
        s += x64[i]
        f = f + x32[i]
        k += idx32[i]
    t = k
    for j in range(3):
        if j < t:
            out[j] = s / x64.shape[0] + s * 2 + f * x32[0] + (1.0 if k > 2 else -1.0)
    out[min(t, 2)] = -f
    return s / 2


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_python_numbers_that_become_numpy_values(target):
    with pytest.raises(polyjit.TypingError, match="holds a Python int before it holds float32 values") as info:
        polyjit.kernel(python_int_then_float32, target=target, cache=False)(np.ones(3, np.float32),
                                                                           np.zeros(3, np.float32))
    assert "np.float32(0)" in str(info.value)
    assert info.value.loc.line == python_int_then_float32.__code__.co_firstlineno + 6
    with pytest.raises(polyjit.TypingError, match="depends on that type"):
        polyjit.kernel(chosen_int_then_float, target=target, cache=False)(np.ones(4, np.float32), np.ones(4), 4)
    k = polyjit.kernel(mixed_locals_where_the_type_does_not_matter, target=target, cache=False)
    rng = np.random.default_rng(5)
    for n in (0, 1, 4, 9):
        check(k, rng.random(n).astype(np.float32), rng.random(n), rng.integers(0, 3, n).astype(np.int32),
              np.zeros(3), exact_type=False)


def reversed_unrolled_nest(A, n):
    """device fuzz (seed 103, program 366), reduced: on the NVIDIA H100 (driver 580) the single-work-item
    kernel of this nest under unroll={'i': 4} never finished; NVIDIA's compiler unrolling our loops once more
    was the cause (`#pragma unroll 1` and -cl-nv-opt-level=0 each made it finish). Sequential kernels now keep
    their loops as written. Their helper functions are plain functions: with `inline` (C99 inline definitions)
    NVIDIA's -cl-opt-disable build failed to link `pj_floordiv_long`."""
    for i in range(n - 2, 1, -1):
        for j in range(i):
            if not (i >= n // 2):
                A[i] *= j * A[i]
    for k in range(1, n - 2):
        A[k] = A[k // 3] + k


def test_sequential_opencl_kernels_keep_their_loops():
    import pyopencl as cl

    from polyjit.opencl_runtime import context_and_queue

    k = polyjit.kernel(reversed_unrolled_nest, target="opencl", unroll={"i": 4}, cache=False)
    A = np.arange(-5, 5, dtype=np.int64)
    check(k, A, 10)
    source = k.inspect_opencl(A, 10)
    loops = source.count("for (long ")
    assert loops >= 3 and source.count("#pragma unroll 1\n") == loops
    assert "inline " not in source
    ctx, _ = context_and_queue()
    cl.Program(ctx, source).build(options=["-cl-opt-disable"])  # links without inlining


def nvidia_induction_pointer(A, n):  # fuzz seed 413 program 26: NVIDIA's ptxas read A[j] for A[0]
    for i in range(1):
        for j in range(i, n - 1):
            for k in range(i + 1):
                A[n - 1 - k] = max(max(A[k] * -2, A[k]), A[j] - A[i] * A[j] - A[j])


def one_item_then_ndrange(A, B, n):
    for i in range(1, n):
        A[i] = A[i - 1] * 2 + A[i]
    for j in range(n):
        B[j] = B[j] + 1


def test_one_work_item_phases_build_with_their_own_options(monkeypatch):
    """Phases on one work-item build as a second program (on NVIDIA with ptxas at opt level 0); here the
    platform the tests run on (pocl in CI) stands in for NVIDIA, replacing NVIDIA's entry, so that both
    programs, their options and the cached binaries are exercised in CI."""
    from polyjit import opencl_runtime as rt

    vendor = rt.context_and_queue()[0].devices[0].platform.name
    monkeypatch.setattr(rt, "SEQUENTIAL_OPTIONS", {vendor: ("-cl-opt-disable",)})  # NVIDIA's own entry too
    built = []
    original = rt.build

    def spy(source, fastmath, needs_fp64, binary=None, sequential=False, unit=False, group=0):
        built.append((sequential, rt.build_options(fastmath, sequential, unit, group)))
        return original(source, fastmath, needs_fp64, binary, sequential, unit, group)

    monkeypatch.setattr(rt, "build", spy)
    k = polyjit.kernel(one_item_then_ndrange, target="opencl", parallel="j", cache=False)
    A, B = np.arange(7, dtype=np.int64), np.arange(7, dtype=np.float64)
    check(k, A, B, 7)
    unit = rt.UNIT_OPTIONS
    assert sorted(built) == [(False, rt.BUILD_OPTIONS + unit), (True, rt.BUILD_OPTIONS + unit + ("-cl-opt-disable",))]
    assert sorted(k.specialize(A, B, 7).binaries()) == [(False, True), (True, True)]
    check(polyjit.kernel(nvidia_induction_pointer, target="opencl", cache=False),
          np.array([1, -1, -4], dtype=np.int32), 3)


def blocked_reads_of_a_written_array(A, B, C, n):  # fuzz seed 501 program 705
    for j in range(2):
        for k in range(j):
            for l in range(2):
                B[j] -= B[k]


@pytest.mark.parametrize("isa", ["sse2", "avx2"])
def test_register_blocking_needs_every_read_of_a_written_array_in_a_register(isa, monkeypatch):
    """Register blocking kept B[1] in a register and found no register for the read of B[0] (KeyError)."""
    from polyjit.asm.cpu import available_tiers
    if isa not in available_tiers():
        pytest.skip(f"the machine has no {isa}")
    monkeypatch.setenv("POLYJIT_ISA", isa)
    rng = np.random.default_rng(5)
    k = polyjit.kernel(blocked_reads_of_a_written_array, target="native", cache=False)
    check(k, rng.random((3, 3, 3)), rng.random(4), rng.random(2), 3)


def never_runs_under_separate_unroll(A, n):  # fuzz seed 7301 program 0 (with tail= added to the fuzzer)
    s = 0
    for i in range(n):
        for k in range(i + 1, n):
            for l in range(i):
                if l % 2 == 1 or k > i:
                    pass
                else:
                    A[l] = -A[i]
    return s


def test_unroll_with_separate_tail_of_a_statement_that_never_runs():
    """The statement's domain is empty (k > i always holds), so tails.py keeps none of its pieces and the
    unroll option had no times to apply to (TypeError from isl)."""
    k = polyjit.kernel(never_runs_under_separate_unroll, unroll={"i": 2}, tail={"i": "separate"}, cache=False)
    check(k, np.array([1, -2, 2], dtype=np.int32), 3)


def reversed_strided_read(A, idx, n):  # fuzz seed 802 program 74
    for i in range(n - 2, 0, -2):
        t0 = A[i][i - 1]  # noqa: F841


@pytest.mark.parametrize("n", [3, 4, 11, 20])
def test_separation_isl_cannot_build_falls_back_to_guarded_tails(n):
    """isl's AST builder failed ("basic sets in scc are assumed to be disjoint") on the separated pieces of a
    reversed strided loop unrolled by 8; the loop now keeps guarded tails."""
    k = polyjit.kernel(reversed_strided_read, unroll={"i": 8}, tail="separate", cache=False)
    check(k, np.arange(n * n, dtype=np.int32).reshape(n, n), np.zeros(n, np.int32), n)
    assert "S0" in k.inspect_schedule(np.zeros((n, n), np.int32), np.zeros(n, np.int32), n)


def slow_separation(A, B, C, D, n):  # fuzz seed 1003 program 210
    for i in range(n - 2, -1, -3):
        for j in range(1, n - 1, 3):
            for k in range(j + 1, n):
                C[i, k] = math.exp(min(max(math.log(abs(B[k, k]) + 1.0), -3.0), 3.0))
            A[(j * 2) % n, i, i] = C[n - 1, j] / (abs(D[j]) + 1.0)
            t0 = D[j]  # noqa: F841
        A[i, n - 1 - i, i + 1] = A[i, i, n - 1] - D[i] * -2 - D[i + 1] + D[i] * C[1, i] - 1


def test_separation_isl_builds_too_slowly_falls_back_to_guarded_tails():
    """isl's AST builder spent minutes (159 s here) on this separated split-by-8 under a strided reversed loop;
    the separated AST now runs under an operation quota (looptree.SEPARATED_AST_QUOTA) and the guarded tails
    take over when it runs out."""
    rng = np.random.default_rng(3)
    n = 10
    k = polyjit.kernel(slow_separation, split={"k": 8}, unroll="k_inner", tail="separate", cache=False)
    check(k, rng.normal(size=(n, n, n)), rng.normal(size=(n, n)), rng.normal(size=(n, n)), rng.normal(size=n), n)


def gemm_ijk(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def test_quota_exhausted_keeps_the_schedule_and_the_results(monkeypatch):
    """With a quota too small for any separated AST the same split still compiles (guarded tails) and agrees."""
    from polyjit.lowering import looptree
    monkeypatch.setattr(looptree, "SEPARATED_AST_QUOTA", 1000)
    k = polyjit.kernel(gemm_ijk, split={"i": 4, "j": 3}, order=("i_outer", "j_outer", "k", "i_inner", "j_inner"),
                       unroll="i_inner", tail="separate", cache=False)
    rng = np.random.default_rng(4)
    check(k, rng.random((7, 5)), rng.random((5, 11)), rng.random((7, 11)))


def hypot_of(x, y, out):
    for i in range(len(x)):
        out[i] = math.hypot(x[i], y[i])


def test_math_hypot_is_libm_hypot():
    """The fuzzer (seed 1001 program 171) found math.hypot one ulp away from CPython's, which rounds with its own
    algorithm; natively polyjit calls libm's hypot, documented as np.hypot's result (README; OpenCL's hypot may
    differ from both in the last ulp)."""
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=2000) * 3, rng.integers(0, 10, 2000).astype(np.float64)
    out = np.empty_like(x)
    polyjit.kernel(hypot_of, target="native", cache=False)(x, y, out)
    assert np.array_equal(out, np.hypot(x, y))


def scaled_copy(x, out):
    for i in range(len(x)):
        out[i] = 2.0 * x[i] + 1.0


def test_compiles_from_several_threads_keep_the_quota_to_themselves():
    """isl's context is one per process and the separated-AST quota is set on it: compilations from other
    threads meanwhile must neither count against it nor fail (pipeline.ISL_LOCK runs them one at a time)."""
    import threading

    rng = np.random.default_rng(8)
    errors = []

    def separated():
        try:
            k = polyjit.kernel(gemm_ijk, split={"i": 4, "j": 3}, unroll="i_inner", tail="separate", cache=False)
            check(k, rng.random((9, 5)), rng.random((5, 7)), rng.random((9, 7)))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def plain():
        try:
            for n in (0, 1, 5, 17):
                check(polyjit.kernel(scaled_copy, cache=False), np.arange(float(n)), np.zeros(n))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (separated, plain, separated, plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def select_arm_reads(A, B, n):  # device fuzz seed 1681 program 378, reduced
    for l in range(n):
        for k in range(n):
            A[l, k, k] = -(1.35 if k != l else B[n - 1 - k, k, 0] / (abs(k) + 1.0))


@pytest.mark.parametrize("hints", [{}, {"parallel": "l"}])
def test_bounds_checks_in_a_select_arm_store_the_error_once(hints):
    """NVIDIA's OpenCL compiler (driver 580) segfaulted building a select whose arm read through a bounds
    check that stored to the global error word; checks now set a private flag stored once at the end."""
    k = polyjit.kernel(select_arm_reads, target="opencl", cache=False, **hints)
    rng = np.random.default_rng(3)
    check(k, rng.random((5, 5, 5)), rng.random((5, 5, 1)), 5)
    source = k.inspect_opencl(rng.random((5, 5, 5)), rng.random((5, 5, 1)), 5)
    assert "int *err)" in source and "__global int *err" not in source and "&pj_bad)" in source
    assert source.count("if (pj_bad) *pj_err = pj_bad;") == source.count("__kernel void")
    with pytest.raises(IndexError, match="out of bounds for array `B`"):
        k(rng.random((4, 4, 4)), rng.random((3, 4, 1)), 4)


def parity_branches(B, C, D, n):  # fuzz seed 3302 program 2369, reduced
    s = 0.0  # noqa: F841 (a statement before the nest: the schedule keeps its first dimension)
    for j in range(n):
        D[j] -= C[j]
        for k in range(2, n - 2):
            if j == 2:
                B[n - 1 - j] += B[j]
            if j >= n // 2 and k % 2 == 0:
                C[k] = 0.5
            else:
                B[k] += j


@pytest.mark.parametrize("n", [0, 5, 6, 7, 9, 12])
def test_isl_shifting_a_strided_statement_past_another_is_caught(n):
    """The fuzzer found isl's AST builder running `B[k] += j` (odd k: a strided domain) one iteration of k
    early, before `B[3] += B[2]` that the schedule puts first (wrong B[3]); lowering/ast_audit.py notices the
    shifted placement and builds the loops over stride-free hulls with guards."""
    rng = np.random.default_rng(n)
    k = polyjit.kernel(parity_branches, cache=False)
    args = (rng.random(max(n, 1)).astype(np.float32), rng.random(max(n, 1)), rng.random(max(n, 1)), n)
    check(k, *args)
    assert "k=(c3 + 1)" not in k.inspect_schedule(*args)


def test_audit_tells_shifted_placements_apart():
    import islpy as isl

    from polyjit.lowering.ast_audit import Audit, has_strides, order_kept
    text = ("[n] -> { S4[j, k] -> [1, j, 1, k, 2] : 0 <= j < n and 2 <= k <= n - 3 and (((k + 1) mod 2 = 0 and "
            "k >= 3) or (k mod 2 = 0 and 2j <= n - 2)); S3[j, k] -> [1, j, 1, k, 1] : k mod 2 = 0 and 0 <= j < n "
            "and 2j >= n - 1 and 2 <= k <= n - 3; S2[j = 2, k] -> [1, 2, 1, k, 0] : n >= 3 and 2 <= k <= n - 3 }")
    maps = {}
    isl.UnionMap(text).foreach_map(lambda m: maps.__setitem__(m.get_tuple_name(isl.dim_type.in_), m))
    assert has_strides(maps)
    audit = Audit(maps, None)
    build = isl.AstBuild.from_context(isl.Set("[n] -> { : }")).set_at_each_domain(audit)[0]
    build.node_from_schedule_map(isl.UnionMap(text))
    assert audit.shifted and audit.failed is None and not order_kept(audit)
    plain = {name: m for name, m in maps.items() if name == "S2"}
    assert not has_strides(plain)
    # a legal shift: odd i beside even i, both in iteration i of a loop of step 2 (kept, no rebuild)
    text = "[n] -> { A[i] -> [i, 0] : 0 <= i < n and i mod 2 = 0; B[i] -> [i, 1] : 0 <= i < n and i mod 2 = 1 }"
    maps = {}
    isl.UnionMap(text).foreach_map(lambda m: maps.__setitem__(m.get_tuple_name(isl.dim_type.in_), m))
    audit = Audit(maps, None)
    build = isl.AstBuild.from_context(isl.Set("[n] -> { : }")).set_at_each_domain(audit)[0]
    assert "B(c0 + 1)" in build.node_from_schedule_map(isl.UnionMap(text)).to_C_str()
    assert audit.shifted and order_kept(audit)


def even_odd(x, a):
    for i in range(len(x)):
        if i % 2 == 0:
            a[i] = x[i] * 2.0
        else:
            a[i] = x[i] + 1.0


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64])
def test_legal_isl_shifts_keep_their_loop_of_step_two(n):
    """isl runs the odd branch in the even iteration's loop step (`S1(i=(c1 + 1))`): the audit sees the shift,
    finds the order kept and keeps the loop (the guarded rebuild ran 2.3x slower here)."""
    k = polyjit.kernel(even_odd, cache=False)
    x = np.random.default_rng(n).random(n)
    check(k, x, np.zeros(n))
    assert "c1 += 2" in k.inspect_schedule(x, np.zeros(n))


def parity_then_reversed_stride(A, B, n):  # fuzz seed 3302 program 4323, reduced
    s = 0
    for i in range(2, n, 3):
        if i % 2 == 1:
            B[i] = 3.0 + i
        else:
            A[n - 1 - i] = A[0] + i
    for j in range(n - 1, 0, -2):
        s = s + j
    return s


@pytest.mark.parametrize("n", [0, 3, 8, 13])
def test_stride_free_hulls_keep_schedules_that_assume_the_stride(n):
    """The rebuild over hulls (ast_audit.py) met `split={'j': 2}` of a reversed loop of step 2, whose schedule
    is one-to-one only on the loop's own iterations: isl adds a loop over the instances sharing a time, which
    the audit must not count as a shift (it did: RuntimeError)."""
    k = polyjit.kernel(parity_then_reversed_stride, cache=False, split={"j": 2})
    rng = np.random.default_rng(n)
    check(k, rng.random(max(n, 1)), rng.random(max(n, 1)), n)
