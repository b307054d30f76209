"""Small kernels written with the builder, one variant per ISA tier (shared by the execution tests)."""

from __future__ import annotations

from polyjit.asm import Function, Mem


def horizontal_sum_pd(f, acc, tier):
    """Reduce a vector of doubles (xmm/ymm/zmm virtual) to a scalar in an xmm virtual."""
    if tier == "avx512":
        hi4 = f.ymm()
        f.vextractf64x4(hi4, acc.z, 1)
        f.vaddpd(acc.y, acc.y, hi4)
    if tier in ("avx2", "avx512"):
        hi2 = f.xmm()
        f.vextractf128(hi2, acc.y, 1)
        f.vaddpd(acc.x, acc.x, hi2)
        hi = f.xmm()
        f.vunpckhpd(hi, acc.x, acc.x)
        f.vaddsd(acc.x, acc.x, hi)
    else:
        hi = f.xmm()
        f.movaps(hi, acc.x)
        f.unpckhpd(hi, hi)
        f.addsd(acc.x, hi)
    return acc.x


def sum_f64(tier: str):
    """double sum(int64_t n, double *x): vector loop + scalar tail (or masked tail on avx512)."""
    f = Function(f"sum_{tier}", args=[("n", "int64_t"), ("x", "double*")], ret="double", isa=tier)
    n, x = f.args
    width = {"sse2": 2, "avx2": 4, "avx512": 8}[tier]
    vsize = width * 8
    acc, i, end = f.vreg(vsize), f.gp64(), f.gp64()
    if tier == "sse2":
        f.xorpd(acc, acc)
    else:
        f.vxorpd(acc.x, acc.x, acc.x)  # VEX zeroes the whole register
    f.xor(i.d, i.d)
    f.mov(end, n)
    f.and_(end, -width)
    loop, tail, done = f.label("loop"), f.label("tail"), f.label("done")
    f.align(16)
    f.bind(loop)
    f.cmp(i, end)
    f.jge(tail)
    if tier == "sse2":
        t = f.xmm()
        f.movupd(t, Mem(x, i, 8, size=16))
        f.addpd(acc, t)
    else:
        f.vaddpd(acc, acc, Mem(x, i, 8, size=vsize))
    f.add(i, width)
    f.jmp(loop)
    f.bind(tail)
    if tier == "avx512":
        rem, bits, m = f.gp64(), f.gp64(), f.k()
        f.mov(rem, n)
        f.sub(rem, i)
        f.mov(bits, 1)
        f.shl(bits, rem)  # rem < 8, the count goes through cl
        f.sub(bits, 1)
        f.kmovb(m, bits.d)
        t = f.zmm()
        f.vmovupd(t, Mem(x, i, 8, size=64), mask=m, zero=True)
        f.vaddpd(acc, acc, t)
        f.bind(done)
        f.ret(horizontal_sum_pd(f, acc, tier))
        return f
    s = horizontal_sum_pd(f, acc, tier)
    tl = f.label("tl")
    f.bind(tl)
    f.cmp(i, n)
    f.jge(done)
    if tier == "sse2":
        f.addsd(s, Mem(x, i, 8, size=8))
    else:
        f.vaddsd(s, s, Mem(x, i, 8, size=8))
    f.inc(i)
    f.jmp(tl)
    f.bind(done)
    f.ret(s)
    return f


def dot_f32_fma(tier: str):
    """float dot(int64_t n, float *x, float *y) with FMA (avx2/avx512), masked tail on avx512."""
    f = Function(f"dot_{tier}", args=[("n", "int64_t"), ("x", "float*"), ("y", "float*")], ret="float",
                 isa=tier)
    n, x, y = f.args
    width = 16 if tier == "avx512" else 8
    vsize = width * 4
    acc, i, end = f.vreg(vsize), f.gp64(), f.gp64()
    f.vxorps(acc.x, acc.x, acc.x)
    f.xor(i.d, i.d)
    f.mov(end, n)
    f.and_(end, -width)
    loop, tail = f.label("loop"), f.label("tail")
    f.bind(loop)
    f.cmp(i, end)
    f.jge(tail)
    t = f.vreg(vsize)
    f.vmovups(t, Mem(x, i, 4, size=vsize))
    f.vfmadd231ps(acc, t, Mem(y, i, 4, size=vsize))
    f.add(i, width)
    f.jmp(loop)
    f.bind(tail)
    if tier == "avx512":
        rem, bits, m = f.gp64(), f.gp64(), f.k()
        f.mov(rem, n)
        f.sub(rem, i)
        f.mov(bits, 1)
        f.shl(bits, rem)
        f.sub(bits, 1)
        f.kmovw(m, bits.d)
        a, b = f.zmm(), f.zmm()
        f.vmovups(a, Mem(x, i, 4, size=64), mask=m, zero=True)
        f.vmovups(b, Mem(y, i, 4, size=64), mask=m, zero=True)
        f.vfmadd231ps(acc, a, b)
        hi = f.ymm()
        f.vextractf32x8(hi, acc, 1)
        f.vaddps(acc.y, acc.y, hi)
    h = f.xmm()
    f.vextractf128(h, acc.y, 1)
    f.vaddps(acc.x, acc.x, h)
    f.vmovhlps(h, h, acc.x)
    f.vaddps(acc.x, acc.x, h)
    f.vshufps(h, acc.x, acc.x, 0x55)
    f.vaddss(acc.x, acc.x, h)
    if tier == "avx2":
        done = f.label("done")
        f.cmp(i, n)
        f.jge(done)
        loop2 = f.label("scalar")
        f.bind(loop2)
        s = f.xmm()
        f.vmovss(s, Mem(x, i, 4, size=4))
        f.vfmadd231ss(acc.x, s, Mem(y, i, 4, size=4))
        f.inc(i)
        f.cmp(i, n)
        f.jl(loop2)
        f.bind(done)
    f.ret(acc.x)
    return f
