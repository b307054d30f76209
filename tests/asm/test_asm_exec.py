"""Functions built with the assembler run and agree with numpy, for every ISA tier this CPU has."""

from __future__ import annotations

import math

import numpy as np
import pytest
from asm_kernels import dot_f32_fma, sum_f64

from polyjit.asm import Function, Mem, allocate, available_tiers, check_allocation

TIERS = available_tiers()
VECTOR_TIERS = [t for t in TIERS if t != "sse2"]


def _compile_checked(f):
    prog = f.program()
    check_allocation(prog, allocate(prog))
    return f.compile()


@pytest.mark.parametrize("tier", TIERS)
def test_sum_every_tail_length(tier):
    fn = _compile_checked(sum_f64(tier))
    rng = np.random.default_rng(1)
    for n in range(0, 40):
        x = rng.standard_normal(n)
        assert fn(n, x) == pytest.approx(float(np.sum(x)), rel=1e-12, abs=1e-12), n


@pytest.mark.parametrize("tier", VECTOR_TIERS)
def test_fma_dot_every_tail_length(tier):
    fn = _compile_checked(dot_f32_fma(tier))
    rng = np.random.default_rng(2)
    for n in range(0, 50):
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        assert fn(n, x, y) == pytest.approx(float(np.dot(x.astype(np.float64), y)), rel=1e-4, abs=1e-4), n


def _elementwise(tier, mnem_scalar, mnem_vex):
    """void op(int64_t n, double *a, double *b, double *out): out[i] = op(a[i], b[i]) (scalar ops)."""
    f = Function(f"{mnem_scalar}_{tier}", args=[("n", "int64_t"), ("a", "double*"), ("b", "double*"),
                                                 ("out", "double*")], isa=tier)
    n, a, b, out = f.args
    i = f.gp64()
    f.xor(i.d, i.d)
    loop, done = f.label(), f.label()
    f.bind(loop)
    f.cmp(i, n)
    f.jge(done)
    v = f.xmm()
    if tier == "sse2":
        f.movsd(v, Mem(a, i, 8, size=8))
        f.emit(mnem_scalar, v, Mem(b, i, 8, size=8))
        f.movsd(Mem(out, i, 8, size=8), v)
    else:
        f.vmovsd(v, Mem(a, i, 8, size=8))
        f.emit(mnem_vex, v, v, Mem(b, i, 8, size=8))
        f.vmovsd(Mem(out, i, 8, size=8), v)
    f.inc(i)
    f.jmp(loop)
    f.bind(done)
    f.ret()
    return _compile_checked(f)


@pytest.mark.parametrize("tier", TIERS)
def test_min_max_nan_and_signed_zero(tier):
    specials = np.array([np.nan, -0.0, 0.0, 1.0, -1.0, np.inf, -np.inf, 3.5])
    a = np.repeat(specials, len(specials))
    b = np.tile(specials, len(specials))
    for name in ("min", "max"):
        fn = _elementwise(tier, f"{name}sd", f"v{name}sd")
        out = np.empty_like(a)
        fn(len(a), a, b, out)
        # x86 semantics: the second operand is returned unless a < b (min) / a > b (max) holds
        expected = np.where(a < b, a, b) if name == "min" else np.where(a > b, a, b)
        assert out.tobytes() == expected.tobytes()


@pytest.mark.parametrize("tier", TIERS)
def test_conversions_including_out_of_range(tier):
    prefix = "" if tier == "sse2" else "v"
    f = Function(f"cvt_{tier}", args=[("x", "double"), ("k", "int64_t"), ("out", "int64_t*")], isa=tier)
    x, k, out = f.args
    r, r32 = f.gp64(), f.gp32()
    f.emit(f"{prefix}cvttsd2si", r, x)
    f.mov(Mem(out, size=8), r)
    f.emit(f"{prefix}cvttsd2si", r32, x)
    f.mov(Mem(out, disp=8, size=4), r32)
    d, s = f.xmm(), f.xmm()
    if tier == "sse2":
        f.xorps(d, d)
        f.cvtsi2sd(d, k)
        f.xorps(s, s)
        f.cvtsd2ss(s, d)
        f.cvtss2sd(s, s)
        f.movq(Mem(out, disp=16, size=8), d)
        f.movq(Mem(out, disp=24, size=8), s)
    else:
        f.vxorps(d, d, d)  # the merged upper lanes must be defined (the checker insists)
        f.vxorps(s, s, s)
        f.vcvtsi2sd(d, d, k)
        f.vcvtsd2ss(s, s, d)
        f.vcvtss2sd(s, s, s)
        f.vmovq(Mem(out, disp=16, size=8), d)
        f.vmovq(Mem(out, disp=24, size=8), s)
    f.ret()
    fn = _compile_checked(f)
    out = np.zeros(4, dtype=np.int64)
    for xv, kv in ((1.9, 3), (-2.7, -(2**62)), (1e300, 2**63 - 1), (float("nan"), -1), (-1e19, 12345678901)):
        fn(xv, kv, out)
        as_int64 = int(xv) if not math.isnan(xv) and -2**63 <= xv < 2**63 else -2**63
        as_int32 = int(xv) if not math.isnan(xv) and -2**31 <= xv < 2**31 else -2**31
        assert out[0] == as_int64
        assert np.int32(out[1] & 0xFFFFFFFF) == np.int32(np.uint32(as_int32 & 0xFFFFFFFF))
        assert out[2:3].view(np.float64)[0] == float(np.float64(kv))
        assert out[3:4].view(np.float64)[0] == float(np.float32(np.float64(kv)))


def test_integer_ops_division_and_shifts():
    f = Function("intops", args=[("a", "int64_t"), ("b", "int64_t"), ("s", "int64_t"), ("out", "int64_t*")],
                 isa="sse2")
    a, b, s, out = f.args
    from polyjit.asm import rax, rdx
    q = f.gp64()
    f.mov(rax, a)
    f.cqo()
    f.idiv(b)
    f.mov(q, rax)
    f.mov(Mem(out, size=8), q)
    f.mov(Mem(out, disp=8, size=8), rdx)
    t = f.gp64()
    f.mov(t, a)
    f.shl(t, s)
    f.mov(Mem(out, disp=16, size=8), t)
    f.mov(t, a)
    f.sar(t, s)
    f.mov(Mem(out, disp=24, size=8), t)
    f.imul(t, a, 7)
    f.mov(Mem(out, disp=32, size=8), t)
    f.mov(t, a)
    f.neg(t)
    f.cmp(a, b)
    f.cmovl(t, b)
    f.mov(Mem(out, disp=40, size=8), t)
    c = f.gp64()
    f.xor(c.d, c.d)
    f.cmp(a, b)
    f.setg(c.b)
    f.mov(Mem(out, disp=48, size=8), c)
    f.ret()
    fn = _compile_checked(f)
    out = np.zeros(7, dtype=np.int64)
    for av, bv, sv in ((100, 7, 3), (-100, 7, 1), (2**40 + 5, -3, 20), (-5, -6, 0)):
        fn(av, bv, sv, out)
        q = int(av / bv)
        wrapped_shl = ((av << sv) + 2**63) % 2**64 - 2**63
        assert list(out) == [q, av - q * bv, wrapped_shl, av >> sv, av * 7, bv if av < bv else -av, int(av > bv)]


@pytest.mark.parametrize("tier", ["sse2", "avx2", "avx512"])
def test_every_tier_allocates_checks_and_encodes_here(tier):
    """Even where the CPU cannot run a tier, its kernels must allocate, pass the checker and encode."""
    from polyjit.asm import encode
    kernels = [sum_f64(tier)] + ([dot_f32_fma(tier)] if tier != "sse2" else [])
    for f in kernels:
        prog = f.program()
        alloc = allocate(prog)
        check_allocation(prog, alloc)
        code = encode(alloc)
        assert code.code_size > 0
        if tier == "avx512":
            assert any(b == 0x62 for b in code.code)  # EVEX prefixes present
