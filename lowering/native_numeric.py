"""Scalar numeric code for the native emitter: conversions, comparisons, numpy's integer and float
division and modulo, integer powers, libm calls.

A mixin of NativeEmitter: methods use its `f` (the asm Function), `vex`, `const`, `wrap`, `fop`, `move`,
`expr`, `tof`, `block` and `layout`.
"""

from __future__ import annotations

from ..analysis import expr as E
from ..asm import Mem, rax, rdx

SIGNED = {"int8": 1, "int16": 2, "int32": 4, "int64": 8}
UNSIGNED = {"uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}


class NumericCode:
    def single_precision(self, e):
        """float32(float64(a) op float64(b)) for float32 a, b (op: + - * / or sqrt) computed in float32: the
        float64 result rounded to float32 equals the float32 operation's (53 >= 2*24 + 2 bits: rounding twice
        is innocuous for these correctly rounded operations), without the two conversions."""
        x = e.operand
        if e.dtype != "float32" or self.tof(x) != "float64":
            return None
        if isinstance(x, E.Call) and x.func == "sqrt" and len(x.args) == 1:
            args = x.args
        elif isinstance(x, E.BinOp) and x.op in ("add", "sub", "mul", "truediv"):
            args = (x.left, x.right)
        else:
            return None
        if not all(isinstance(a, E.Cast) and a.dtype == "float64" and self.tof(a.operand) == "float32"
                   for a in args):
            return None
        regs = [self.expr(a.operand) for a in args]
        op = "sqrt" if isinstance(x, E.Call) else {"truediv": "div"}.get(x.op, x.op)
        return self.fop(op, "float32", *regs)

    def check_index(self, e):
        """Wrap a negative index once (Python), then check it; out of bounds records the check's code."""
        f = self.f
        idx, n = self.expr(e.args[0]), self.expr(e.args[1])
        out = f.gp64()
        f.mov(out, idx)
        ok, bad = f.label("ok"), f.label("bad")
        nonneg = f.label("nonneg")
        f.test(out, out)
        f.jns(nonneg)
        f.add(out, n)
        f.bind(nonneg)
        f.test(out, out)
        f.js(bad)
        f.cmp(out, n)
        f.jl(ok)
        f.bind(bad)
        f.mov(Mem(self.block, disp=8 * self.layout.error, size=8), int(e.args[2].value))
        f.xor(out.d, out.d)
        f.bind(ok)
        return out

    def convert(self, r, src, dst):
        f = self.f
        if src == dst:
            return r
        sf, df = src.startswith("float"), dst.startswith("float")
        if sf and df:
            d = f.xmm()
            name = "cvtss2sd" if dst == "float64" else "cvtsd2ss"
            f.emit(f"v{name}", d, d, r) if self.vex else f.emit(name, d, r)
            return d
        if not sf and df:
            return self.int_to_float(r, src, dst)
        if sf and not df:
            if dst == "bool":
                return self.truth_float(r, src)
            return self.wrap(self.float_to_int(r, src, dst), dst)
        if dst == "bool":
            return self.wrap(r, "bool")
        return self.wrap(r, dst)

    def int_to_float(self, r, src, dst):
        f = self.f
        s = "sd" if dst == "float64" else "ss"
        d = f.xmm()

        def cvt(x):
            f.emit(f"vcvtsi2{s}", d, d, x) if self.vex else f.emit(f"cvtsi2{s}", d, x)

        if src != "uint64":
            cvt(r)
            return d
        big, done = f.label("big"), f.label("cvtdone")
        f.test(r, r)
        f.js(big)
        cvt(r)
        f.jmp(done)
        f.bind(big)  # halve (keeping the low bit for rounding), convert, double
        h = f.gp64()
        f.mov(h, r)
        f.shr(h, 1)
        lo = f.gp64()
        f.mov(lo, r)
        f.and_(lo, 1)
        f.or_(h, lo)
        cvt(h)
        f.emit(f"vadd{s}", d, d, d) if self.vex else f.emit(f"add{s}", d, d)
        f.bind(done)
        return d

    def float_to_int(self, r, src, dst):
        f = self.f
        s = "sd" if src == "float64" else "ss"
        out = f.gp64()
        cvt = f"vcvtt{s}2si" if self.vex else f"cvtt{s}2si"
        if dst != "uint64":
            f.emit(cvt, out, r)
            return out
        big, done = f.label("ubig"), f.label("udone")
        limit = self.const(2.0 ** 63, src)
        f.emit("vucomi" + s if self.vex else "ucomi" + s, r, limit)
        f.jae(big)
        f.emit(cvt, out, r)
        f.jmp(done)
        f.bind(big)
        t = self.fop("sub", src, r, limit)
        f.emit(cvt, out, t)
        top = f.gp64()
        f.mov(top, -(2 ** 63))
        f.xor(out, top)
        f.bind(done)
        return out

    def truth_float(self, r, dtype):
        zero = self.const(0.0, dtype)
        return self.fcompare("ne", dtype, r, zero)

    def fcompare(self, op, dtype, a, b):
        f = self.f
        s = "sd" if dtype == "float64" else "ss"
        ucomi = ("vucomi" if self.vex else "ucomi") + s
        out = f.gp64()
        if op in ("lt", "le"):
            f.emit(ucomi, b, a)
            (f.seta if op == "lt" else f.setae)(out.b)
        elif op in ("gt", "ge"):
            f.emit(ucomi, a, b)
            (f.seta if op == "gt" else f.setae)(out.b)
        else:
            f.emit(ucomi, a, b)
            other = f.gp64()
            if op == "eq":
                f.sete(out.b)
                f.setnp(other.b)
                f.and_(out.b, other.b)
            else:
                f.setne(out.b)
                f.setp(other.b)
                f.or_(out.b, other.b)
        f.movzx(out.d, out.b)
        return out

    def int_binop(self, op, t, a, b):
        f = self.f
        out = f.gp64()
        if op in ("add", "sub", "mul"):
            f.mov(out, a)
            {"add": f.add, "sub": f.sub, "mul": f.imul}[op](out, b)
            return self.wrap(out, t)
        if op == "pow":
            return self.int_pow(t, a, b)
        # floor division and modulo with numpy's conventions (x // 0 == 0, x % 0 == 0)
        signed = t in SIGNED
        zero, done, minus1 = f.label("dz"), f.label("ddone"), f.label("dm1")
        f.test(b, b)
        f.jz(zero)
        if signed:
            f.cmp(b, -1)
            f.je(minus1)
        f.mov(rax, a)
        if signed:
            f.cqo()
            f.idiv(b)
        else:
            f.xor(rdx.d, rdx.d)
            f.div(b)
        q, r = f.gp64(), f.gp64()
        f.mov(q, rax)
        f.mov(r, rdx)
        if signed:  # round toward minus infinity: adjust when the remainder's sign differs from b's
            adjust = f.label("dadj")
            f.test(r, r)
            f.jz(adjust)
            sign = f.gp64()
            f.mov(sign, r)
            f.xor(sign, b)
            f.jns(adjust)
            f.sub(q, 1)
            f.add(r, b)
            f.bind(adjust)
        f.mov(out, q if op == "floordiv" else r)
        f.jmp(done)
        if signed:
            f.bind(minus1)
            if op == "floordiv":
                f.mov(out, a)
                f.neg(out)
            else:
                f.xor(out.d, out.d)
            f.jmp(done)
        f.bind(zero)
        f.xor(out.d, out.d)
        f.bind(done)
        return self.wrap(out, t)

    def int_pow2(self, op, t, a, k):
        """a // k or a % k for k a power of two above 1: numpy's floor division and modulo of two's complement
        values are an arithmetic (unsigned: logical) shift and a mask."""
        f = self.f
        out = f.gp64()
        f.mov(out, a)
        if op == "mod":
            if k - 1 <= 0x7FFFFFFF:
                f.and_(out, k - 1)
            else:
                m = f.gp64()
                f.mov(m, k - 1)
                f.and_(out, m)
        elif t in SIGNED:
            f.sar(out, k.bit_length() - 1)
        else:
            f.shr(out, k.bit_length() - 1)
        return self.wrap(out, t)

    def int_pow(self, t, a, b):
        f = self.f
        out, x, n = f.gp64(), f.gp64(), f.gp64()
        f.mov(out, 1)
        f.mov(x, a)
        f.mov(n, b)
        top, done, odd, neg = f.label("pw"), f.label("pwdone"), f.label("pwodd"), f.label("pwneg")
        if t in SIGNED:
            f.test(n, n)
            f.js(neg)
        f.bind(top)
        f.test(n, n)
        f.jz(done)
        f.test(n, 1)
        f.jz(odd)
        f.imul(out, x)
        f.bind(odd)
        f.imul(x, x)
        f.shr(n, 1)
        f.jmp(top)
        if t in SIGNED:  # a ** negative: 1 for a == 1, +-1 for a == -1, else 0 (C-style integer result)
            f.bind(neg)
            f.xor(out.d, out.d)
            one, m1 = f.label("pw1"), f.label("pwm1")
            f.cmp(a, 1)
            f.je(one)
            f.cmp(a, -1)
            f.jne(done)
            f.bind(m1)
            f.mov(out, 1)
            f.test(b, 1)
            f.jz(done)
            f.mov(out, -1)
            f.jmp(done)
            f.bind(one)
            f.mov(out, 1)
        f.bind(done)
        return self.wrap(out, t)

    def float_floordiv(self, t, a, b):
        """numpy's floor_divide: from fmod, so that a == b * (a // b) + a % b holds as numpy defines it."""
        f = self.f
        out = f.xmm()
        zero = self.const(0.0, t)
        done, nonzero = f.label("fdd"), f.label("fdnz")
        f.emit(("vucomi" if self.vex else "ucomi") + ("sd" if t == "float64" else "ss"), b, zero)
        f.jne(nonzero)
        f.jp(nonzero)
        self.move(out, self.fop("div", t, a, b), t)
        f.jmp(done)
        f.bind(nonzero)
        mod = self.libm("fmod", t, a, b)
        div = self.fop("div", t, self.fop("sub", t, a, mod), b)
        # if mod != 0 and (b < 0) != (mod < 0): div -= 1
        keep = f.label("fdkeep")
        c1 = self.fcompare("ne", t, mod, zero)
        c2 = self.fcompare("lt", t, b, zero)
        c3 = self.fcompare("lt", t, mod, zero)
        f.xor(c2, c3)
        f.and_(c1, c2)
        f.test(c1, c1)
        f.jz(keep)
        div2 = self.fop("sub", t, div, self.const(1.0, t))
        self.move(div, div2, t)
        f.bind(keep)
        # result: floor(div), rounded to the nearer integer if floor is off by more than a half; 0 keeps a/b's sign
        zdiv, fin = f.label("fdz"), f.label("fdfin")
        isz = self.fcompare("eq", t, div, zero)
        f.test(isz, isz)
        f.jnz(zdiv)
        fl = self.libm("floor", t, div)
        gap = self.fop("sub", t, div, fl)
        big = self.fcompare("gt", t, gap, self.const(0.5, t))
        f.test(big, big)
        f.jz(fin)
        self.move(fl, self.fop("add", t, fl, self.const(1.0, t)), t)
        f.bind(fin)
        self.move(out, fl, t)
        f.jmp(done)
        f.bind(zdiv)
        self.move(out, self.libm("copysign", t, zero, self.fop("div", t, a, b)), t)
        f.bind(done)
        return out

    def float_mod(self, t, a, b):
        """numpy's remainder: fmod, moved into b's sign; an exact zero takes b's sign."""
        f = self.f
        zero = self.const(0.0, t)
        mod = self.libm("fmod", t, a, b)
        out = f.xmm()
        self.move(out, mod, t)
        done, isz = f.label("fmd"), f.label("fmz")
        bz = self.fcompare("eq", t, b, zero)
        f.test(bz, bz)
        f.jnz(done)
        mz = self.fcompare("eq", t, mod, zero)
        f.test(mz, mz)
        f.jnz(isz)
        c2 = self.fcompare("lt", t, b, zero)
        c3 = self.fcompare("lt", t, mod, zero)
        f.xor(c2, c3)
        f.test(c2, c2)
        f.jz(done)
        self.move(out, self.fop("add", t, mod, b), t)
        f.jmp(done)
        f.bind(isz)
        self.move(out, self.libm("copysign", t, zero, b), t)
        f.bind(done)
        return out

    def libm(self, name, t, *args):
        cname = name if t == "float64" else name + "f"
        return self.f.call(cname, list(args), ret="double" if t == "float64" else "float")
