"""Vector-ISA specific execution: gathers, opmask tails, compares into masks, blends, conversions.

Tests are generated for the tiers this CPU has (``available_tiers()``), so an AVX2-only host runs
the AVX2 ones and an AVX-512 host additionally the EVEX ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from polyjit.asm import Function, Mem, allocate, available_tiers, check_allocation

TIERS = available_tiers()
AVX512 = ["avx512"] if "avx512" in TIERS else []


def avx512_only(test):
    """Define the test only on AVX-512 hosts (an empty parametrization would show up as a skip)."""
    return test if AVX512 else None


def _compile(f):
    prog = f.program()
    check_allocation(prog, allocate(prog))
    return f.compile()


@pytest.mark.parametrize("tier", [t for t in TIERS if t != "sse2"])
def test_gather_doubles_by_int32_index(tier):
    """out[i] = table[idx[i]] for 8 (avx512: 16) lanes with vgatherdpd."""
    lanes = 4 if tier == "avx2" else 8
    f = Function(f"gather_{tier}", args=[("table", "double*"), ("idx", "int32_t*"), ("out", "double*")],
                 isa=tier)
    table, idx, out = f.args
    vi = f.vreg(lanes * 4 if lanes * 4 >= 16 else 16)
    dst = f.vreg(lanes * 8)
    if tier == "avx2":
        mask = f.ymm()
        f.vmovdqu(vi.x, Mem(idx, size=16))
        f.vpcmpeqd(mask, mask, mask)
        f.vxorpd(dst, dst, dst)
        f.vgatherdpd(dst, Mem(table, vi.x, 8, size=8), mask)
    else:
        k = f.k()
        f.vmovdqu32(vi.y, Mem(idx, size=32))
        f.kxnorb(k, k, k)
        f.vxorpd(dst.y, dst.y, dst.y)
        f.vgatherdpd(dst, Mem(table, vi.y, 8, size=8), mask=k)
    f.vmovupd(Mem(out, size=lanes * 8), dst)
    f.ret()
    fn = _compile(f)
    table_v = np.arange(100, dtype=np.float64) * 1.5
    index = np.array([7, 0, 99, 3, 55, 12, 1, 64][:lanes], dtype=np.int32)
    got = np.zeros(lanes)
    fn(table_v, index, got)
    assert list(got) == list(table_v[index])


@avx512_only
def test_masked_store_every_tail_length(tier="avx512"):
    """y[0:n] = 2*x[0:n] for n in 0..16 with one masked zmm load/store; lanes >= n stay untouched."""
    f = Function("masked", args=[("n", "int64_t"), ("x", "float*"), ("y", "float*")], isa=tier)
    n, x, y = f.args
    bits, k = f.gp64(), f.k()
    f.mov(bits, 1)
    f.shl(bits, n)
    f.sub(bits, 1)
    f.kmovw(k, bits.d)
    v = f.zmm()
    f.vmovups(v, Mem(x, size=64), mask=k, zero=True)
    f.vaddps(v, v, v)
    f.vmovups(Mem(y, size=64), v, mask=k)
    f.ret()
    fn = _compile(f)
    for count in range(17):
        xs = np.arange(1, 17, dtype=np.float32)
        ys = np.full(16, -7.0, dtype=np.float32)
        fn(count, xs, ys)
        assert list(ys[:count]) == list(2 * xs[:count]) and all(ys[count:] == -7.0)


@avx512_only
def test_compare_into_mask_and_blend(tier="avx512"):
    """out = where(a < b, a * 10, b) via vcmppd k, vblendmpd, broadcast constant, high registers."""
    f = Function("cmpblend", args=[("a", "double*"), ("b", "double*"), ("out", "double*")], isa=tier)
    a, b, out = f.args
    va, vb, k, t = f.zmm(), f.zmm(), f.k(), f.zmm()
    f.vmovupd(va, Mem(a, size=64))
    f.vmovupd(vb, Mem(b, size=64))
    f.vcmppd(k, va, vb, 1)  # LT_OS
    f.vmulpd(t, va, f.const([10.0], size=8).broadcast(8, 8))
    f.vblendmpd(t, vb, t, mask=k)
    f.vmovupd(Mem(out, size=64), t)
    f.ret()
    fn = _compile(f)
    av = np.array([1, 5, -2, np.nan, 0, 3, 8, -1], dtype=np.float64)
    bv = np.array([2, 4, -2, 1, 1, np.nan, 9, -3], dtype=np.float64)
    got = np.zeros(8)
    fn(av, bv, got)
    assert got.tobytes() == np.where(av < bv, av * 10, bv).tobytes()


@avx512_only
def test_int64_conversions_avx512dq(tier="avx512"):
    f = Function("cvtqq", args=[("q", "int64_t*"), ("d", "double*"), ("back", "int64_t*")], isa=tier)
    q, d, back = f.args
    v, w, z = f.zmm(), f.zmm(), f.zmm()
    f.vmovdqu64(v, Mem(q, size=64))
    f.vcvtqq2pd(w, v)
    f.vmovupd(Mem(d, size=64), w)
    f.vcvttpd2qq(z, w)
    f.vmovdqu64(Mem(back, size=64), z)
    f.ret()
    fn = _compile(f)
    qs = np.array([0, -1, 2**53, -(2**62), 123456789, 7, -8, 2**63 - 1], dtype=np.int64)
    ds = np.zeros(8)
    bk = np.zeros(8, dtype=np.int64)
    fn(qs, ds, bk)
    assert list(ds) == list(qs.astype(np.float64))
    expected = [int(x) if x < 2**63 else -2**63 for x in qs.astype(np.float64)]
    assert list(bk) == expected


def test_avx512_tests_exist_when_the_cpu_has_avx512():
    assert bool(AVX512) == ("avx512" in TIERS)


def _mask_pressure(nmasks=12):
    """counts[i] = #{j : x[i] < t_j} with all ``nmasks`` compare masks live at once (k spills)."""
    f = Function("mask_pressure", args=[("x", "double*"), ("out", "double*")], isa="avx512")
    x, out = f.args
    v, acc, one = f.zmm(), f.zmm(), f.zmm()
    f.vmovupd(v, Mem(x, size=64))
    masks = []
    for j in range(nmasks):
        k = f.k()
        f.vcmppd(k, v, f.const([j - nmasks / 2], size=8).broadcast(8, 8), 1)
        masks.append(k)
    f.vxorpd(acc.x, acc.x, acc.x)
    f.vbroadcastsd(one, f.const([1.0], size=8))
    for k in masks:
        f.vaddpd(acc, acc, one, mask=k)
    f.vmovupd(Mem(out, size=64), acc)
    f.ret()
    return f


def test_opmask_pressure_allocates_with_spills_and_checks():
    f = _mask_pressure()
    prog = f.program()
    alloc = allocate(prog)
    assert any(key[0] == "k" for key in alloc.spilled)
    check_allocation(prog, alloc)
    assert "kmovq QWORD PTR [rsp" in alloc.listing()


@avx512_only
def test_opmask_pressure_runs(tier="avx512"):
    fn = _mask_pressure().compile()
    xs = np.array([-7.5, -3, -0.5, 0, 0.5, 2.9, 5.5, 100], dtype=np.float64)
    got = np.zeros(8)
    fn(xs, got)
    thresholds = np.array([j - 6 for j in range(12)], dtype=np.float64)
    assert list(got) == [float(np.sum(xv < thresholds)) for xv in xs]
