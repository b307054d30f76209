"""x86-64 code from the loop tree through polyjit.asm: one function per phase, scalar code.

Every phase function takes `(int64_t *block, int64_t lo, int64_t hi)`. The block holds, in 8-byte slots:
each array's data pointer, its sizes and byte strides; the scalar arguments; the scalar locals (which carry
values between phases); the error code of run-time index checks. A serial phase ignores lo/hi; a parallel
phase runs iterations [lo, hi) of its loop, so the host can hand chunks to threads.

Integer values live in 64-bit registers, normalized to their dtype (sign- or zero-extended) after each
operation, which gives numpy's fixed-width wrap-around; floats live in the low lane of xmm registers. Scalar
float code uses VEX forms from the avx2 tier up, legacy SSE2 below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis import expr as E
from ..analysis.model import KernelModel
from ..asm import Function, Mem
from .blocking import block_loop, loop_bound
from .lanes import lane_loop
from .layout import POINTER_ARGS, block_layout
from .legality import loop_sums
from .looptree import For, If, LoopTree, Run, runs_of
from .native_loop import fast_loop, fast_nest
from .native_numeric import SIGNED, UNSIGNED, NumericCode
from .opencl import split_phases
from .typeof import type_of

LIBM = {"exp", "log", "log2", "log10", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan",
        "expm1", "log1p", "erf", "erfc", "cbrt", "floor", "ceil", "trunc", "rint", "pow", "atan2", "hypot",
        "fmod", "copysign"}
_JCC_INT = {"lt": ("l", "b"), "le": ("le", "be"), "gt": ("g", "a"), "ge": ("ge", "ae"), "eq": ("e", "e"),
            "ne": ("ne", "ne")}


@dataclass(frozen=True)
class NativePhase:
    name: str
    function: Function
    parallel: bool
    loop: For | None = None
    sums: tuple = ()  # (slot, dtype) of fastmath sums whose per-thread partial sums the runtime combines


class NativeEmitter(NumericCode):
    """Emits one asm Function per phase; `isa` picks the instruction forms (sse2 / avx2 / avx512)."""

    def __init__(self, model: KernelModel, tree: LoopTree, isa: str):
        self.model, self.tree, self.isa = model, tree, isa
        self.vex = isa != "sse2"
        self.types = {a.name: a.dtype for a in model.arguments}
        self.types.update({t.name: t.dtype for t in model.temporaries})
        self.layout = block_layout(model)
        self.fast: dict = {}  # id(Index) -> Mem through a strength-reduced pointer, or a register (native_loop.py)
        self.forward: dict = {}  # id(Index) of a store -> register that also takes the stored value
        self.hoisted: dict = {}  # (repr(value), dtype) -> register of a float constant loaded before the loop
        self.vpreset: dict = {}  # (array, start indices) -> vector stream pointer kept by an enclosing loop

    # -- phase functions --------------------------------------------------------------------------------
    def phases(self) -> tuple[NativePhase, ...]:
        out = []
        for nodes, dims in split_phases(self.tree):  # threads take the outermost parallel loop
            name = f"{self.model.name}_p{len(out)}"
            loop = dims[0] if dims else None
            self.sums = loop_sums(self.model, [r.instruction for r in runs_of(loop.body)]) \
                if loop is not None and self.model.fastmath else set()
            sums = tuple((slot, self.types[n]) for n, slot in self.layout.locals if n in self.sums) if loop else ()
            out.append(NativePhase(name, self.function(name, nodes, loop), loop is not None, loop, sums))
        return tuple(out)

    def function(self, name, nodes, parallel: For | None) -> Function:
        f = Function(name, args=[("block", "int64_t*"), ("lo", "int64_t"), ("hi", "int64_t")]
                     + [(f"p{k}", "char*") for k in range(POINTER_ARGS)], isa=self.isa)
        self.f = f
        self.block, lo, hi, *pointers = f.args
        for (_, slot, _), ptr in zip(self.layout.arrays[: self.layout.pointer_args], pointers):
            f.mov(Mem(self.block, disp=8 * slot, size=8), ptr)  # the first arrays come in registers
        self.regs: dict[str, object] = {}
        self.arrays: dict[str, tuple] = {}
        for name_, slot in self.layout.scalars + self.layout.locals:
            self.regs[name_] = self.load_slot(slot, self.types[name_])
        for p in self.model.params:  # sizes used by loop bounds, loaded once
            if isinstance(p.source, E.Shape):
                self.regs[p.name] = self.x_Shape(p.source)
        for array in self.arrays_used(nodes if parallel is None else parallel.body):
            self.array(array)  # base and strides loaded at entry: every path below may use them
        if parallel is None:
            self.stmts(nodes)
            for name_, slot in self.layout.locals:
                self.store_slot(slot, self.types[name_], self.regs[name_])
        else:
            # iterations lo .. hi-1 of the loop: var runs from init + step*lo to init + step*hi (exclusive)
            init = self.expr(parallel.init)
            var, end = f.gp64(), f.gp64()
            for reg, k in ((var, lo), (end, hi)):
                f.mov(reg, k)
                if parallel.step != 1:
                    f.imul(reg, reg, parallel.step)
                f.add(reg, init)
            self.regs[parallel.var] = var
            self.vector_part(parallel, var, end)
            top, done = f.label("par"), f.label("pardone")
            f.bind(top)
            f.cmp(var, end)
            f.jge(done)
            self.stmts(parallel.body)
            f.add(var, parallel.step)
            f.jmp(top)
            f.bind(done)
            for name_, slot in self.layout.locals:  # this chunk's partial sums, for the runtime to combine
                if name_ in self.sums:
                    self.store_slot(slot, self.types[name_], self.regs[name_])
        f.ret()
        return f

    def arrays_used(self, nodes) -> list[str]:
        found: dict[str, None] = {}

        def visit(n):
            if isinstance(n, For):
                for x in n.body:
                    visit(x)
            elif isinstance(n, If):
                for x in n.then + n.orelse:
                    visit(x)
            else:
                ins = self.model.instruction(n.instruction)
                for e in (ins.assignee, ins.expression):
                    for x in E.walk(e):
                        if isinstance(x, E.Index):
                            found.setdefault(x.array)
        for n in nodes:
            visit(n)
        return list(found)

    def load_slot(self, slot, dtype):
        f = self.f
        m = Mem(self.block, disp=8 * slot, size=8)
        if dtype.startswith("float"):
            r = f.xmm()
            size = 8 if dtype == "float64" else 4
            f.emit(self._mov(dtype), r, Mem(self.block, disp=8 * slot, size=size))
            return r
        r = f.gp64()
        f.mov(r, m)
        return r

    def store_slot(self, slot, dtype, r):
        f = self.f
        if dtype.startswith("float"):
            size = 8 if dtype == "float64" else 4
            f.emit(self._mov(dtype), Mem(self.block, disp=8 * slot, size=size), r)
        else:
            f.mov(Mem(self.block, disp=8 * slot, size=8), r)

    def array(self, name):
        """(base pointer, byte-stride registers) of an array, loaded once per function."""
        if name not in self.arrays:
            slot, ndim = self.layout.array(name)
            base = self.f.gp64()
            self.f.mov(base, Mem(self.block, disp=8 * slot, size=8))
            strides = []
            for d in range(ndim):
                s = self.f.gp64()
                self.f.mov(s, Mem(self.block, disp=8 * (slot + 1 + ndim + d), size=8))
                strides.append(s)
            self.arrays[name] = (base, strides)
        return self.arrays[name]

    # -- statements -------------------------------------------------------------------------------------
    def stmts(self, nodes):
        for n in nodes:
            if isinstance(n, For):
                self.loop(n)
            elif isinstance(n, If):
                self.branch(n)
            else:
                self.run(n)

    def vector_part(self, n: For, var, ub=None):
        """SIMD iterations first when the loop is tagged vector and its body allows; the scalar loop after
        it runs what is left."""
        if (n.name, "vector") not in self.model.tags:
            return
        from .vectorize import Vectorizer
        vec = Vectorizer(self)
        plan = vec.plan(n)
        if plan is None:
            lane_loop(self, n, var, ub)  # a loop around inner loops: its iterations in lanes (lanes.py)
            return
        if ub is not None:
            plan.bound = ub
        vec.emit(n, plan, var)

    def loop(self, n: For):
        # register-blocked (run-time fallback and partial tiles: this loop), or strength-reduced (native_loop.py)
        if not block_loop(self, n, self.unblocked):
            self.unblocked(n)

    def unblocked(self, n: For):
        if not fast_nest(self, n) and not fast_loop(self, n):
            self.plain_loop(n)

    def plain_loop(self, n: For):
        f = self.f
        var = f.gp64()
        f.mov(var, self.expr(n.init))
        self.regs[n.var] = var
        self.vector_part(n, var)
        top, done = f.label("loop"), f.label("done")
        bound = loop_bound(self, n)  # (jcc leaving the loop, bound register) when the bound is invariant
        f.bind(top)
        if bound is None:
            self.jump_unless(n.cond, done)
        else:
            f.cmp(var, bound[1])
            f.emit(bound[0], done)
        self.stmts(n.body)
        f.add(var, n.step)
        f.jmp(top)
        f.bind(done)

    def branch(self, n: If):
        f = self.f
        other, done = f.label("else"), f.label("endif")
        self.jump_unless(n.cond, other)
        self.stmts(n.then)
        f.jmp(done)
        f.bind(other)
        self.stmts(n.orelse)
        f.bind(done)

    def jump_unless(self, cond, label):
        r = self.expr(cond)
        self.f.test(r, r)
        self.f.jz(label)

    def run(self, n: Run):
        f = self.f
        ins = self.model.instruction(n.instruction)
        saved = dict(self.regs)
        for name, value in n.bindings:
            if isinstance(value, E.Var):
                self.regs[name] = self.regs[value.name]
            else:
                self.regs[name] = self.expr(value)
        skip = f.label("skip") if ins.predicates else None
        for p, want in ins.predicates:
            r = self.regs[p]
            f.test(r, r)
            f.jz(skip) if want else f.jnz(skip)
        value = self.expr(ins.expression)
        target = ins.assignee
        if isinstance(target, E.Var):
            t = self.types[target.name]
            dst = self.regs[target.name]
            if t.startswith("float"):
                f.emit("vmovaps" if self.vex else "movaps", dst, value)
            else:
                f.mov(dst, value)
        else:
            self.store(target, value)
        if skip is not None:
            f.bind(skip)
        for name, _ in n.bindings:
            self.regs.pop(name, None)
        self.regs.update({k: v for k, v in saved.items() if k not in self.regs})

    # -- memory -----------------------------------------------------------------------------------------
    def address(self, e: E.Index) -> Mem:
        f = self.f
        hit = self.fast.get(id(e))
        if hit is not None:
            return hit
        base, strides = self.array(e.array)
        off = None
        for d, idx in enumerate(e.indices):
            r = self.expr(idx)
            t = f.gp64()
            f.mov(t, r)
            f.imul(t, strides[d])
            if off is None:
                off = t
            else:
                f.add(off, t)
        size = np.dtype(self.types[e.array]).itemsize
        if off is None:
            return Mem(base, disp=0, size=size)
        return Mem(base, off, 1, size=size)

    def _mov(self, dtype):
        return ("vmovsd" if self.vex else "movsd") if dtype == "float64" else ("vmovss" if self.vex else "movss")

    def load(self, e: E.Index):
        f = self.f
        t = self.types[e.array]
        hit = self.fast.get(id(e))
        if hit is not None and not isinstance(hit, Mem):  # an element kept in a register
            return hit
        m = self.address(e)
        if t.startswith("float"):
            r = f.xmm()
            f.emit(self._mov(t), r, m)
            return r
        r = f.gp64()
        size = m.size
        if size == 8:
            f.mov(r, m)
        elif t in SIGNED:
            f.movsxd(r, m) if size == 4 else f.movsx(r, m)
        elif size == 4:
            f.mov(r.d, m)
        else:
            f.movzx(r.d, m)
        return r

    def store(self, target: E.Index, value):
        f = self.f
        t = self.types[target.array]
        hit = self.fast.get(id(target))
        if hit is not None and not isinstance(hit, Mem):
            self.move(hit, value, t)
            return
        m = self.address(target)
        if t.startswith("float"):
            f.emit(self._mov(t), m, value)
            if id(target) in self.forward:
                self.move(self.forward[id(target)], value, t)
        else:
            f.mov(m, value.view(m.size))

    # -- expressions ------------------------------------------------------------------------------------
    def expr(self, e: E.Expr):
        return getattr(self, f"x_{type(e).__name__}")(e)

    def tof(self, e) -> str:
        return type_of(e, self.types)

    def x_Var(self, e):
        return self.regs[e.name]

    def x_Shape(self, e):
        slot, ndim = self.layout.array(e.array)
        r = self.f.gp64()
        self.f.mov(r, Mem(self.block, disp=8 * (slot + 1 + e.dim), size=8))
        return r

    def x_Index(self, e):
        return self.load(e)

    def x_Const(self, e):
        return self.const(e.value, self.tof(e))

    def const(self, v, dtype):
        f = self.f
        if dtype.startswith("float"):
            hoisted = self.hoisted.get((repr(float(v)), dtype))
            if hoisted is not None:
                return hoisted
            r = f.xmm()
            if float(v) == 0.0 and np.copysign(1.0, float(v)) > 0:
                f.vxorps(r, r, r) if self.vex else f.xorps(r, r)
                return r
            f.emit(self._mov(dtype), r, f.const([float(v)], dtype, size=8 if dtype == "float64" else 4))
            return r
        r = f.gp64()
        v = int(v)
        v = int(np.array(v).astype(np.uint64).astype(np.int64)) if dtype == "uint64" and v >= 2**63 else v
        if v == 0:
            f.xor(r.d, r.d)
        else:
            f.mov(r, v)
        return self.wrap(r, dtype)

    def wrap(self, r, dtype):
        """Normalize a 64-bit register to `dtype`'s width (numpy's wrap-around)."""
        f = self.f
        size = SIGNED.get(dtype) or UNSIGNED.get(dtype)
        if size is None or size == 8:
            return r
        out = f.gp64()
        if dtype == "bool":
            f.test(r, r)
            f.setne(out.b)
            f.movzx(out.d, out.b)
        elif dtype in SIGNED:
            if size == 4:
                f.movsxd(out, r.d)
            else:
                f.movsx(out, r.view(size))
        elif size == 4:
            f.mov(out.d, r.d)
        else:
            f.movzx(out.d, r.view(size))
        return out

    def fop(self, op, dtype, a, b=None):
        """A scalar float operation `op` in {add, sub, mul, div, min, max, sqrt} into a new register."""
        f = self.f
        s = "sd" if dtype == "float64" else "ss"
        d = f.xmm()
        if op == "sqrt":
            if self.vex:
                f.emit(f"vsqrt{s}", d, a, a)
            else:
                f.emit(f"sqrt{s}", d, a)
            return d
        if self.vex:
            f.emit(f"v{op}{s}", d, a, b)
        else:
            f.movaps(d, a)
            f.emit(f"{op}{s}", d, b)
        return d

    def bitwise(self, op, a, b):
        """`a op b` on whole xmm registers (xorps, andnps: ~a & b, ...) into a new register."""
        f = self.f
        d = f.xmm()
        if self.vex:
            f.emit(f"v{op}", d, a, b)
        else:
            f.movaps(d, a)
            f.emit(op, d, b)
        return d

    def x_Cast(self, e):
        narrow = self.single_precision(e)
        if narrow is not None:
            return narrow
        src_t = self.tof(e.operand)
        return self.convert(self.expr(e.operand), src_t, e.dtype)

    def x_Compare(self, e):
        t = self.tof(e.left)
        a, b = self.expr(e.left), self.expr(e.right)
        if t.startswith("float"):
            return self.fcompare(e.op, t, a, b)
        f = self.f
        f.cmp(a, b)
        cc = _JCC_INT[e.op][1 if t in UNSIGNED and t != "bool" else 0]
        out = f.gp64()
        f.emit(f"set{cc}", out.b)
        f.movzx(out.d, out.b)
        return out

    def x_BoolOp(self, e):
        f = self.f
        out = f.gp64()
        done = f.label("bool")
        a = self.expr(e.left)
        f.mov(out, a)
        f.test(out, out)
        f.jz(done) if e.op == "and" else f.jnz(done)
        b = self.expr(e.right)
        f.mov(out, b)
        f.bind(done)
        return out

    def x_UnOp(self, e):
        f = self.f
        a = self.expr(e.operand)
        t = self.tof(e.operand)
        if e.op == "not":
            out = f.gp64()
            f.mov(out, a)
            f.xor(out, 1)
            return out
        if t.startswith("float"):  # flip the sign bit
            return self.bitwise("xorps", a, self.const(-0.0, t))
        out = f.gp64()
        f.mov(out, a)
        f.neg(out)
        return self.wrap(out, t)

    def x_Select(self, e):
        f = self.f
        t = self.tof(e)
        other, done = f.label("sel"), f.label("seldone")
        out = f.xmm() if t.startswith("float") else f.gp64()
        self.jump_unless(e.cond, other)
        self.move(out, self.expr(e.then), t)
        f.jmp(done)
        f.bind(other)
        self.move(out, self.expr(e.other), t)
        f.bind(done)
        return out

    def move(self, dst, src, t):
        if t.startswith("float"):
            self.f.emit("vmovaps" if self.vex else "movaps", dst, src)
        else:
            self.f.mov(dst, src)

    def x_BinOp(self, e):
        t = self.tof(e.left)
        if e.op in ("floordiv", "mod") and not t.startswith("float") and isinstance(e.right, E.Const) \
                and type(e.right.value) is int:
            k = e.right.value
            if k > 1 and k & (k - 1) == 0:  # by a power of two: a shift or a mask (floor semantics)
                return self.int_pow2(e.op, t, self.expr(e.left), k)
        if t == "int64" and e.op in ("add", "sub") and isinstance(e.right, E.Const) \
                and type(e.right.value) is int and abs(e.right.value) < 1 << 31:
            if e.right.value == 0:
                return self.expr(e.left)
            out = self.f.gp64()  # index arithmetic (i + 1): an immediate operand, no register for the constant
            self.f.mov(out, self.expr(e.left))
            (self.f.add if e.op == "add" else self.f.sub)(out, e.right.value)
            return out
        if t.startswith("float") and e.op in ("add", "sub", "mul", "truediv") and isinstance(e.right, E.Index) \
                and self.types[e.right.array] == t:  # the load folded into the operation
            a = self.expr(e.left)
            hit = self.fast.get(id(e.right))
            return self.fop({"truediv": "div"}.get(e.op, e.op), t, a, hit or self.address(e.right))
        a, b = self.expr(e.left), self.expr(e.right)
        if t.startswith("float"):
            if e.op in ("add", "sub", "mul"):
                return self.fop(e.op, t, a, b)
            if e.op == "truediv":
                return self.fop("div", t, a, b)
            if e.op == "pow":
                return self.libm("pow", t, a, b)
            if e.op == "floordiv":
                return self.float_floordiv(t, a, b)
            return self.float_mod(t, a, b)
        return self.int_binop(e.op, t, a, b)

    def x_Call(self, e):
        f = self.f
        fn = e.func
        if fn == "_check":
            return self.check_index(e)
        t = self.tof(e.args[0]) if e.args else "float64"
        args = [self.expr(a) for a in e.args]
        if fn in ("min", "max"):  # Python's: b replaces a only if b < a (b > a)
            out = args[0]
            for b in args[1:]:
                cond = self.compare_regs("lt" if fn == "min" else "gt", t, b, out)
                out = self.choose(cond, b, out, t)
            return out
        if fn in ("np.minimum", "np.maximum"):
            a, b = args
            op = "lt" if fn == "np.minimum" else "gt"
            cond = self.compare_regs(op, t, a, b)
            if t.startswith("float"):  # NaN in a propagates; NaN in b fails the comparison and is taken
                nan = self.fcompare("ne", t, a, a)
                f.or_(cond, nan)
            return self.choose(cond, a, b, t)
        if fn in ("np.fmin", "np.fmax"):
            a, b = args
            if t.startswith("float"):  # the non-NaN one wins
                op = "lt" if fn == "np.fmin" else "gt"
                cond = self.compare_regs(op, t, a, b)
                bnan = self.fcompare("ne", t, b, b)
                f.or_(cond, bnan)
                return self.choose(cond, a, b, t)
            cond = self.compare_regs("lt" if fn == "np.fmin" else "gt", t, a, b)
            return self.choose(cond, a, b, t)
        if fn == "abs":
            a = args[0]
            if t.startswith("float"):  # clear the sign bit: abs(-0.0) == 0.0 and NaNs keep their payload
                return self.bitwise("andnps", self.const(-0.0, t), a)
            if t in UNSIGNED:
                return a
            out = f.gp64()
            f.mov(out, a)
            f.neg(out)
            f.test(a, a)
            f.cmovns(out, a)
            return self.wrap(out, t)
        if fn == "sqrt":
            return self.fop("sqrt", t, args[0])
        if fn == "fabs":
            return self.x_Call(E.Call("abs", e.args))
        if fn in LIBM:
            return self.libm(fn, t, *args)
        raise NotImplementedError(fn)

    def compare_regs(self, op, t, a, b):
        if t.startswith("float"):
            return self.fcompare(op, t, a, b)
        f = self.f
        f.cmp(a, b)
        cc = _JCC_INT[op][1 if t in UNSIGNED and t != "bool" else 0]
        out = f.gp64()
        f.emit(f"set{cc}", out.b)
        f.movzx(out.d, out.b)
        return out

    def choose(self, cond, a, b, t):
        f = self.f
        out = f.xmm() if t.startswith("float") else f.gp64()
        other, done = f.label("ch"), f.label("chd")
        f.test(cond, cond)
        f.jz(other)
        self.move(out, a, t)
        f.jmp(done)
        f.bind(other)
        self.move(out, b, t)
        f.bind(done)
        return out


def emit_native(model: KernelModel, tree: LoopTree, isa: str) -> tuple[NativePhase, ...]:
    return NativeEmitter(model, tree, isa).phases()
