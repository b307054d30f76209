"""OpenCL work-groups for split parallel loops and __local prefetch (differential against `.py_func`, and
the generated OpenCL C). These kernels name target="opencl" themselves; the native checks name "native"."""

import numpy as np
import pytest

import polyjit

from helpers import check, gemm

pytestmark = pytest.mark.opencl

GROUPS = ("i_outer", "j_outer", "i_inner", "j_inner")


def matmul(A, B, C):
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            s = 0.0
            for k in range(A.shape[1]):
                s += A[i, k] * B[k, j]
            C[i, j] = s


def shifted_sum(A, out):
    for i in range(1, A.shape[0]):
        for j in range(A.shape[1] - 1):
            out[i, j] = A[i - 1, j + 1] + A[i, j] * 2.0


def _gemm_args(n, m, p, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, p)).astype(dtype), rng.random((p, m)).astype(dtype), rng.random((n, m)).astype(dtype))


SIZES = [(0, 3, 2), (1, 1, 1), (5, 7, 3), (8, 8, 8), (9, 13, 17), (17, 4, 1)]


@pytest.mark.parametrize("tail", ["guard", "separate"])
@pytest.mark.parametrize("n, m, p", SIZES)
def test_workgroups_match_python(n, m, p, tail):
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 8}, parallel=GROUPS, tail=tail)
    check(k, *_gemm_args(n, m, p))


@pytest.mark.parametrize("n, m, p", SIZES)
def test_prefetch_matches_python(n, m, p):
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                       prefetch={"A": "k_outer", "B": "k_outer"})
    check(k, *_gemm_args(n, m, p))
    one = polyjit.kernel(gemm, target="opencl", tile={"i": 8, "j": 4, "k": 3}, parallel=GROUPS,
                         prefetch={"B": "k_outer"})
    check(one, *_gemm_args(n, m, p, np.float32, seed=1))


def test_prefetch_of_views_and_offsets():
    A = np.random.default_rng(2).random((13, 12))
    out = np.zeros((13, 12))
    k = polyjit.kernel(shifted_sum, target="opencl", tile={"i": 4, "j": 4}, parallel=GROUPS)
    check(k, A, out)
    check(k, A[::2, 1:].copy(), np.zeros((7, 11)))
    check(polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                         prefetch={"A": "k_outer"}), np.random.rand(9, 14)[:, ::2], np.random.rand(5, 7).T,
          np.zeros((9, 5)))


def test_workgroup_text_maps_groups_and_local_ids():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 16, "j": 16, "k": 16}, parallel=GROUPS,
                       prefetch={"A": "k_outer", "B": "k_outer"})
    src = k.inspect_opencl(*_gemm_args(3, 3, 3))
    assert "get_group_id(0)" in src and "get_group_id(1)" in src
    assert "get_local_id(0)" in src and "get_local_id(1)" in src
    assert "__local double pj_A_loc[256];" in src and "__local double pj_B_loc[256];" in src
    # two per copy: the register-tile path (C[i, j] in a private variable) and the nest as written
    assert src.count("barrier(CLK_LOCAL_MEM_FENCE);") == 4 and "double pj_r0 = 0;" in src
    assert "pj_A_loc[(((i) - pj_A_o0) * 16 + ((k) - pj_A_o1))]" in src  # reads rewritten to the copy
    assert "get_global_id" not in src.split("__kernel")[1]
    compiled = k.specialize(*_gemm_args(3, 3, 3))
    assert compiled.spec.phases[0][2] == (16, 16)  # local size = the split factors


def test_native_keeps_threads_on_the_outermost_loop_and_ignores_prefetch():
    k = polyjit.kernel(gemm, target="native", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                       prefetch={"A": "k_outer", "B": "k_outer"})
    for n, m, p in SIZES:
        check(k, *_gemm_args(n, m, p))
    text = k.inspect_schedule(*_gemm_args(3, 3, 3))
    assert "A=prefetch:k_outer" in text


def test_split_parallel_halves_without_partner_keep_the_ndrange():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4}, parallel=("i_outer", "j_outer", "i_inner"))
    src = k.inspect_opencl(*_gemm_args(3, 3, 3))
    assert "get_global_id" in src and "get_local_id" not in src
    check(k, *_gemm_args(9, 6, 2))


def test_workgroups_with_a_private_accumulator():
    # matmul's `s` is private to (i, j): each work-item runs the three statements of its (i, j)
    k = polyjit.kernel(matmul, target="opencl", tile={"i": 4, "j": 4}, parallel=GROUPS)
    assert "get_local_id" in k.inspect_opencl(*_gemm_args(7, 5, 3))
    for n, m, p in SIZES:
        check(k, *_gemm_args(n, m, p))


def test_prefetch_of_a_written_array_is_refused():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                       prefetch={"C": "k_outer"})
    with pytest.raises(polyjit.ScheduleError, match="writes it"):
        k(*_gemm_args(5, 5, 5))


def test_prefetch_without_workgroups_is_refused():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=("i_outer", "j_outer"),
                       prefetch={"A": "k_outer"})
    with pytest.raises(polyjit.ScheduleError, match="work-groups"):
        k(*_gemm_args(5, 5, 5))
    heuristic = polyjit.kernel(gemm, target="opencl", prefetch={"A": "k"})  # the heuristic maps no work-groups
    with pytest.raises(polyjit.ScheduleError, match="work-groups"):
        heuristic(*_gemm_args(5, 5, 5))


def test_prefetch_names_are_checked():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                       prefetch={"X": "k_outer"})
    with pytest.raises(polyjit.ScheduleError, match="not an array argument"):
        k(*_gemm_args(5, 5, 5))
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 4, "j": 4, "k": 4}, parallel=GROUPS,
                       prefetch={"A": "kk"})
    with pytest.raises(polyjit.ScheduleError, match="no such loop"):
        k(*_gemm_args(5, 5, 5))
    with pytest.raises(polyjit.ScheduleError, match="dict of array name"):
        polyjit.kernel(gemm, prefetch=("A", "k_outer"))


def test_oversized_workgroups_get_a_clear_error():
    k = polyjit.kernel(gemm, target="opencl", tile={"i": 512, "j": 512}, parallel=GROUPS)
    with pytest.raises(polyjit.PolyjitError, match="smaller factors"):
        k(*_gemm_args(3, 3, 3))


def pairs(A):
    for k in range(A.shape[1] - 1):
        for i in range(A.shape[0]):
            A[i, k + 1] = A[i - i % 2 + 1 - i % 2, k] * 0.5 + 1.0


def test_items_are_not_hoisted_above_a_loop_carrying_their_dependences():
    # rows 2p and 2p+1 read each other's previous column: i_inner is parallel inside k, not outside it, so
    # work-items must not run k on their own; the nest keeps one work-item per i_outer
    k = polyjit.kernel(pairs, target="opencl", split={"i": 2}, order=("i_outer", "k", "i_inner"),
                       parallel=("i_outer", "i_inner"))
    A = np.random.default_rng(3).random((8, 6))
    assert "get_local_id" not in k.inspect_opencl(A)
    check(k, A)
    loose = polyjit.kernel(pairs, target="opencl", split={"i": 2}, order=("i_outer", "k", "i_inner"),
                           parallel=("i_outer", "i_inner"), unsafe=True)  # unsafe skips checks, not this one
    assert "get_local_id" not in loose.inspect_opencl(A)
