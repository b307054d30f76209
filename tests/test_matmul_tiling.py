"""The heuristic's tiling of matmul-like nests (heuristic.tile_matmul) and register blocking of full tiles under
guarded tails (full_tiles.py): differential against `.py_func` (bit-identical: no fastmath), the schedule
chosen, and the versioned machine code."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit

from helpers import check, gemm


def gemm_ikj(A, B, C):
    for i in range(C.shape[0]):
        for k in range(A.shape[1]):
            for j in range(C.shape[1]):
                C[i, j] = C[i, j] + 2.0 * A[i, k] * B[k, j]


def product_overwrite(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] = A[i, k] * B[k, j]  # no accumulation: left to the ordinary heuristic


def _args(n, m, p, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, p)).astype(dtype) - 0.5, rng.random((p, m)).astype(dtype),
            rng.random((n, m)).astype(dtype))


HEURISTIC = polyjit.kernel(gemm, target="native")
IKJ = polyjit.kernel(gemm_ikj, target="native")


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 23), m=st.integers(0, 27), p=st.integers(0, 9),
       dtype=st.sampled_from([np.float32, np.float64]), which=st.sampled_from(["ijk", "ikj"]))
def test_heuristic_tiles_match_python(n, m, p, dtype, which):
    check(HEURISTIC if which == "ijk" else IKJ, *_args(n, m, p, dtype))


@pytest.mark.parametrize("n, m, p", [(6, 17, 1030), (11, 9, 513), (5, 8, 512)])
def test_heuristic_tiles_across_k_tiles(n, m, p):  # several k_outer iterations, packed tiles of B
    check(HEURISTIC, *_args(n, m, p))
    check(IKJ, *_args(n, m, p, np.float32))


def test_heuristic_tiles_views():
    A, B, C = _args(13, 21, 30)
    check(HEURISTIC, A, B, np.asfortranarray(C))
    check(HEURISTIC, A[::2], B[:, 1::2], C[::2, :10])
    check(HEURISTIC, np.ascontiguousarray(A.T).T, B.T.copy().T, C)


def test_heuristic_schedule_of_a_matmul_like_nest():
    from polyjit.asm import isa_tier
    from polyjit.lowering.blocking import BLOCKING_ISAS
    text = HEURISTIC.inspect_schedule(*_args(3, 3, 3))
    if isa_tier() not in BLOCKING_ISAS:  # AVX-512: no block emitter, so no tiling for it
        assert "_outer" not in text
        return
    assert "j_outer:floor((j)/8), k_outer:floor((k)/512), 0, i_outer:floor((i)/5)" in text
    for tag in ("i_inner=unroll", "j_inner=vector", "B=prefetch:k_outer", "j_outer=parallel"):
        assert tag in text
    asm = HEURISTIC.inspect_asm(*_args(3, 3, 3))
    assert "fulltile" in asm and "partialtile" in asm  # full tiles blocked, partial ones as written


def test_other_nests_keep_the_ordinary_heuristic(monkeypatch):
    text = polyjit.kernel(product_overwrite, target="native").inspect_schedule(*_args(3, 3, 3))
    assert "_outer" not in text
    check(polyjit.kernel(product_overwrite, target="native"), *_args(7, 9, 5))
    if not pytest.importorskip("pyopencl"):
        return
    from polyjit import opencl_runtime
    monkeypatch.setattr(opencl_runtime, "device_is_gpu", lambda: False)  # GPUs: tests/test_register_tiles.py
    text = polyjit.kernel(gemm, target="opencl", cache=False).inspect_schedule(*_args(3, 3, 3))
    assert "_outer" not in text  # OpenCL on a CPU device: no tiling by the heuristic


@pytest.mark.parametrize("n, m, p", [(0, 4, 3), (1, 1, 1), (9, 13, 17), (10, 16, 700)])
def test_guarded_tails_block_full_tiles(n, m, p):
    hints = dict(split={"i": 5, "j": 8, "k": 512}, order=("k_outer", "j_outer", "i_outer", "k_inner", "i_inner",
                                                          "j_inner"), unroll="i_inner", vectorize="j_inner")
    k = polyjit.kernel(gemm, target="native", **hints)
    check(k, *_args(n, m, p))
    from polyjit.asm import isa_tier
    from polyjit.lowering.blocking import BLOCKING_ISAS
    assert ("fulltile" in k.inspect_asm(*_args(3, 3, 3))) == (isa_tier() in BLOCKING_ISAS)
