"""The heuristic's tiling of matmul-like nests (heuristic.tile_matmul) and register blocking of full tiles under
guarded tails (full_tiles.py): differential against `.py_func` (bit-identical: no fastmath), the schedule
chosen, and the versioned machine code."""

import os
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from polyjit.asm import available_tiers

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


TIERS = available_tiers()
COLUMNS = {"sse2": {8: 8, 4: 8}, "avx2": {8: 8, 4: 8}, "avx512": {8: 32, 4: 64}}  # tier -> itemsize -> j tile
_KERNELS: dict = {}


@contextmanager
def tier(isa):
    """POLYJIT_ISA=isa while a kernel compiles and runs (a kernel keeps the code of the tier it was first
    called at: one kernel per tier)."""
    old = os.environ.get("POLYJIT_ISA")
    os.environ["POLYJIT_ISA"] = isa
    try:
        if isa not in _KERNELS:
            _KERNELS[isa] = polyjit.kernel(gemm, target="native"), polyjit.kernel(gemm_ikj, target="native")
        yield _KERNELS[isa]
    finally:
        if old is None:
            del os.environ["POLYJIT_ISA"]
        else:
            os.environ["POLYJIT_ISA"] = old


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 23), m=st.integers(0, 70), p=st.integers(0, 9),
       dtype=st.sampled_from([np.float32, np.float64]), which=st.sampled_from(["ijk", "ikj"]),
       isa=st.sampled_from(TIERS))
def test_heuristic_tiles_match_python(n, m, p, dtype, which, isa):
    with tier(isa) as (ijk, ikj):
        check(ijk if which == "ijk" else ikj, *_args(n, m, p, dtype))


@pytest.mark.parametrize("isa", TIERS)
@pytest.mark.parametrize("n, m, p", [(6, 17, 1030), (11, 9, 513), (5, 8, 512), (6, 66, 515)])
def test_heuristic_tiles_across_k_tiles(n, m, p, isa):  # several k_outer iterations, packed tiles of B
    with tier(isa) as (ijk, ikj):
        check(ijk, *_args(n, m, p))
        check(ikj, *_args(n, m, p, np.float32))


@pytest.mark.parametrize("isa", TIERS)
def test_heuristic_tiles_views(isa):
    A, B, C = _args(13, 21, 70)
    with tier(isa) as (ijk, _):
        check(ijk, A, B, np.asfortranarray(C))
        check(ijk, A[::2], B[:, 1::2], C[::2, :10])
        check(ijk, np.ascontiguousarray(A.T).T, B.T.copy().T, C)
        A, B, C = _args(7, 130, 5, np.float32)
        check(ijk, A, B, C)
        check(ijk, A, B[:, ::2], C[:, :65])


@pytest.mark.parametrize("isa", TIERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_heuristic_schedule_of_a_matmul_like_nest(isa, dtype):
    """5 rows, j in tiles of COLUMNS (avx512: four zmm vectors a row), k in tiles of 512."""
    args = _args(3, 3, 3, dtype)
    with tier(isa):
        text = polyjit.kernel(gemm, target="native", cache=False).inspect_schedule(*args)
        asm = polyjit.kernel(gemm, target="native", cache=False).inspect_asm(*args)
    cols = COLUMNS[isa][np.dtype(dtype).itemsize]
    assert f"j_outer:floor((j)/{cols}), k_outer:floor((k)/512), 0, i_outer:floor((i)/5)" in text
    for tag in ("i_inner=unroll", "j_inner=vector", "B=prefetch:k_outer", "j_outer=parallel"):
        assert tag in text
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
