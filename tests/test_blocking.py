"""Register blocking (lowering/blocking.py): scalar replacement and unroll-and-jam of k loops, differential.

Every kernel runs against its `.py_func` on sizes that do not divide the block factors (0, 1, odd, primes),
on C- and F-ordered arrays and strided views (which take the run-time fallback), in float32 and float64, at
every ISA tier the machine has: bit-identical without fastmath, within rtol with it (FMA contraction).
"""

import numpy as np
import pytest

import polyjit
from polyjit.asm import available_tiers

TIERS = list(available_tiers())


def gemm(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]


def gemm_scaled(alpha, A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] = C[i, j] - alpha * (A[i, k] * B[k, j])


def gemm_neg(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] = -(A[i, k] * B[k, j]) + C[i, j]


SEP = {"i": "separate", "j": "separate"}
HINTS = {
    "4x8": dict(split={"i": 4, "j": 8}, order=("i_outer", "j_outer", "k", "i_inner", "j_inner"),
                unroll="i_inner", vectorize="j_inner", tail=SEP),
    "5x8k": dict(split={"i": 5, "j": 8, "k": 6}, order=("k_outer", "i_outer", "j_outer", "k_inner", "i_inner",
                                                         "j_inner"), unroll="i_inner", vectorize="j_inner", tail=SEP),
    # 16 columns: one zmm of float32 (two of float64) a row at avx512, two or four ymm at avx2
    "3x16": dict(split={"i": 3, "j": 16}, order=("i_outer", "j_outer", "k", "i_inner", "j_inner"),
                 unroll="i_inner", vectorize="j_inner", tail=SEP),
    "2x3": dict(split={"i": 2, "j": 3}, order=("i_outer", "j_outer", "k", "i_inner", "j_inner"), unroll="i_inner",
                tail=SEP),
    "tile": dict(tile={"i": 4, "j": 4, "k": 4}),
    "guard": dict(split={"i": 3, "j": 8}, order=("i_outer", "j_outer", "k", "i_inner", "j_inner"),
                  unroll="i_inner", vectorize="j_inner"),
    # packing (blocking_pack.py): B's 6x8 tile copied at every j_outer iteration, A's 5x6 at every i_outer
    "packB": dict(split={"i": 5, "j": 8, "k": 6}, order=("k_outer", "j_outer", "i_outer", "k_inner", "i_inner",
                                                          "j_inner"), unroll="i_inner", vectorize="j_inner",
                  tail=SEP, prefetch={"B": "j_outer"}),
    "packAB": dict(split={"i": 3, "j": 4, "k": 5}, order=("k_outer", "j_outer", "i_outer", "k_inner", "i_inner",
                                                           "j_inner"), unroll="i_inner", vectorize="j_inner",
                   prefetch={"B": "j_outer", "A": "i_outer"}),
}
SIZES = [(0, 0, 0), (1, 1, 1), (3, 0, 2), (5, 8, 7), (7, 9, 5), (13, 17, 11), (10, 16, 12)]
_KERNELS: dict = {}


def kernel(fn, hints, fastmath, isa=None):
    key = (fn.__name__, hints, fastmath, isa)  # a kernel keeps the code of the tier it was first called at
    if key not in _KERNELS:
        _KERNELS[key] = polyjit.kernel(fn, cache=False, fastmath=fastmath, **HINTS[hints])
    return _KERNELS[key]


def layouts(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    big = rng.standard_normal((shape[0] * 2 + 1, shape[1] * 3 + 1)).astype(dtype)
    yield "C", a
    yield "F", np.asfortranarray(a)
    yield "strided", big[1::2, ::3][: shape[0], : shape[1]]


def run_case(fn, hints, fastmath, dtype, isa, monkeypatch, scalar=False):
    monkeypatch.setenv("POLYJIT_ISA", isa)
    k = kernel(fn, hints, fastmath, isa)
    rng = np.random.default_rng(1)
    for n, m, p in SIZES:
        for (la, A), (lb, B), (lc, C) in zip(layouts(rng, (n, p), dtype), layouts(rng, (p, m), dtype),
                                             layouts(rng, (n, m), dtype)):
            args = ((dtype(1.5),) if scalar else ()) + (A, B)
            got, want = C.copy(order="K"), C.copy(order="K")
            if lc == "strided":
                got = np.zeros((2 * n + 1, 3 * m + 1), dtype)[1::2, ::3][:n, :m]
                got[...] = C
            k(*args, got)
            k.py_func(*args, want)
            where = f"{fn.__name__} {hints} fastmath={fastmath} {dtype.__name__} {isa} {(n, m, p)} {la}{lb}{lc}"
            if fastmath:
                tol = 1e-4 if dtype is np.float32 else 1e-12
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(p, 1), err_msg=where)
            else:
                assert np.array_equal(got, want), where


@pytest.mark.parametrize("isa", TIERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hints", list(HINTS))
def test_gemm_blocked_bit_exact(hints, dtype, isa, monkeypatch):
    run_case(gemm, hints, False, dtype, isa, monkeypatch)


@pytest.mark.parametrize("isa", TIERS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("hints", ["4x8", "5x8k", "3x16", "tile", "packB", "packAB"])
def test_gemm_blocked_fastmath(hints, dtype, isa, monkeypatch):
    run_case(gemm, hints, True, dtype, isa, monkeypatch)


@pytest.mark.parametrize("isa", TIERS)
@pytest.mark.parametrize("fastmath", [False, True])
def test_other_statement_forms(fastmath, isa, monkeypatch):
    run_case(gemm_scaled, "4x8", fastmath, np.float64, isa, monkeypatch, scalar=True)
    run_case(gemm_neg, "2x3", fastmath, np.float32, isa, monkeypatch)


def test_overlapping_arguments_stay_sequential():
    """C aliasing A: the dispatcher compiles program order without tags, which is never blocked."""
    k = kernel(gemm, "4x8", False)
    rng = np.random.default_rng(2)
    for n in (1, 5, 9):
        X = rng.standard_normal((n, n)) * 0.1
        want = X.copy()
        gemm(want, want, want)
        got = X.copy()
        k(got, got, got)
        assert np.array_equal(got, want, equal_nan=True)


def test_blocked_loop_appears_in_listing():
    A, B, C = np.ones((8, 8)), np.ones((8, 8)), np.zeros((8, 8))
    k = polyjit.kernel(gemm, cache=False, fastmath=True, **HINTS["4x8"])
    text = k.inspect_asm(A, B, C)
    from polyjit.lowering.blocking import BLOCKING_ISAS
    assert (".Lblk" in text) == any(f"isa={isa}" in text for isa in BLOCKING_ISAS)
    if "isa=avx512" in text:
        assert "vfmadd231pd zmm" in text and "vbroadcastsd zmm" in text
    if "isa=avx2" in text:
        assert "vfmadd231pd" in text and "vbroadcastsd" in text


def test_plan_rejects_other_accesses_to_the_written_array():
    """C read with another subscript in the loop (C[i, j] += C[j, k]): no scalar replacement."""
    def f(A, C):
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                for k in range(A.shape[1]):
                    C[i, j] += C[j, k] * A[i, k]

    k = polyjit.kernel(f, cache=False, split={"k": 4})  # program order, k_inner innermost
    rng = np.random.default_rng(3)
    for n in (1, 4, 7):
        A, C = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        want, got = C.copy(), C.copy()
        f(A, want)
        k(A, got)
        assert np.array_equal(got, want)


def divmod_pow2(x, out):
    for i in range(x.shape[0]):
        out[i, 0] = x[i] // 4
        out[i, 1] = x[i] % 8
        out[i, 2] = x[i] // 2 - x[i] % 2
        out[i, 3] = x[i] // 64 + x[i] % 64


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.uint32, np.uint64])
def test_division_by_powers_of_two(dtype):
    """Integer // and % by a constant power of two compile to shifts and masks (native.py): numpy's floor
    semantics for negative values and the full unsigned range."""
    info = np.iinfo(dtype)
    raw = [0, 1, 2, 3, 7, 8, 9, 63, 64, 65, 1023, 1024, 1025, info.max, info.max - 1, info.min, info.min + 1]
    raw += [-v for v in raw]
    vals = np.array(sorted({v for v in raw if info.min <= v <= info.max}), dtype=dtype)
    k = polyjit.kernel(divmod_pow2, cache=False)
    got, want = np.zeros((len(vals), 4), dtype), np.zeros((len(vals), 4), dtype)
    with np.errstate(over="ignore"):
        k(vals, got)
        k.py_func(vals, want)
    assert np.array_equal(got, want)


def loop_bounds(n, x, out):
    for i in range(n // 4):
        for j in range(i % 8, n - i // 2):
            out[i, j] += x[j]


def test_hoisted_loop_bounds():
    for n in (0, 1, 5, 13, 32, 37):
        x = np.arange(max(n, 1), dtype=np.float64)
        got, want = np.zeros((max(n, 1), max(n, 1))), np.zeros((max(n, 1), max(n, 1)))
        k = polyjit.kernel(loop_bounds, cache=False)
        k(n, x, got)
        k.py_func(n, x, want)
        assert np.array_equal(got, want)


def test_packing_appears_in_listing():
    A, B, C = np.ones((16, 16)), np.ones((16, 16)), np.zeros((16, 16))
    text = polyjit.kernel(gemm, cache=False, **HINTS["packB"]).inspect_asm(A, B, C)
    assert "malloc" in text and "free" in text and ".Lpackcopy" in text
    assert "malloc" not in polyjit.kernel(gemm, cache=False, **HINTS["5x8k"]).inspect_asm(A, B, C)


def gemm_then_scale(A, B, C):
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            for k in range(A.shape[1]):
                C[i, j] += A[i, k] * B[k, j]
    for k in range(B.shape[0]):
        B[k, 0] = B[k, 0] * 2.0


def test_packing_with_writes_elsewhere():
    """B written in a later nest: each j_outer iteration copies it afresh, so the copy is packed and exact."""
    hints = dict(HINTS["packB"], tail="guard")
    k = polyjit.kernel(gemm_then_scale, cache=False, **hints)
    A, B, C = np.ones((7, 9)), np.ones((9, 10)), np.zeros((7, 10))
    assert "malloc" in k.inspect_asm(A, B, C)
    rng = np.random.default_rng(4)
    for n, m, p in [s for s in SIZES if s[1]]:
        A, B, C = rng.standard_normal((n, p)), rng.standard_normal((p, m)), rng.standard_normal((n, m))
        got, want = (A.copy(), B.copy(), C.copy()), (A.copy(), B.copy(), C.copy())
        k(*got)
        k.py_func(*want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))


def shift_add(x, y):
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = x[i, j] + y[i, j]


def test_packing_skips_arrays_the_loop_writes():
    k = polyjit.kernel(shift_add, cache=False, split={"i": 2, "j": 4}, order=("i_outer", "j_outer", "i_inner",
                                                                              "j_inner"),
                       prefetch={"x": "j_outer", "y": "j_outer"})
    x, y = np.ones((5, 3)), np.arange(15.0).reshape(5, 3)
    text = k.inspect_asm(x, y)
    assert text.count("malloc") == 1  # y only
    got, want = x.copy(), x.copy()
    k(got, y)
    k.py_func(want, y)
    assert np.array_equal(got, want)


def stencil_rows(x, out):
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = x[2 * i, j] + x[2 * i + 2, j + 1] - x[2 * i + 1, j]


@pytest.mark.parametrize("isa", TIERS)
def test_packing_a_stencil_box(isa, monkeypatch):
    """A box with offsets in both dimensions and a stride-2 row subscript, at every iteration of j_outer: rows
    6*i_outer .. 6*i_outer + 6 and columns 4*j_outer .. 4*j_outer + 4 of x, clamped to the array."""
    monkeypatch.setenv("POLYJIT_ISA", isa)
    k = polyjit.kernel(stencil_rows, cache=False, split={"i": 3, "j": 4},
                       order=("i_outer", "j_outer", "i_inner", "j_inner"), prefetch={"x": "j_outer"})
    rng = np.random.default_rng(5)
    for n, m in [(0, 0), (1, 1), (4, 5), (7, 9), (10, 3)]:
        for x in (rng.standard_normal((2 * n + 2, m + 1)), rng.standard_normal((2 * n + 3, 2 * m + 2))[::-1, ::2]):
            got, want = np.zeros((n, m)), np.zeros((n, m))
            k(x, got)
            k.py_func(x, want)
            assert np.array_equal(got, want), (n, m)
    assert "malloc" in k.inspect_asm(x, got)
