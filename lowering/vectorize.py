"""SIMD code for innermost loops tagged `vector`: zmm on avx512, ymm on avx2, xmm on sse2.

A loop is vectorized when its body is straight-line float arithmetic of one dtype over accesses that are
either invariant in the loop (hoisted and broadcast) or advance by one element per iteration along one
dimension (checked to be contiguous at run time; otherwise the scalar loop runs). Lanes compute exactly
what the scalar code computes, element for element, so results are bit-identical. Sums into a scalar
(`s += ...`) are vectorized only with fastmath=True: several accumulators reassociate the additions.
Bodies without sums run UNROLL vectors per iteration of the main loop. Iterations left over after the
last full vector run one lane at a time through the same pointers (`scalar_remainder`), except at the
avx512 tier, where they run as one more vector iteration under an opmask (`masked_remainder`); the
ordinary scalar loop after them runs everything only when a stream is not contiguous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..analysis import expr as E
from ..asm import Mem
from .looptree import For, Run

WIDTH = {"avx512": 64, "avx2": 32, "sse2": 16}
UNROLL = 4  # vectors per iteration of the main loop of bodies without sums
_FLOAT_OPS = {"add", "sub", "mul", "truediv"}


def _uses(e: E.Expr, names: set[str]) -> bool:
    return any(isinstance(x, E.Var) and x.name in names for x in E.walk(e))


def linear(e: E.Expr, v: str):
    """(coefficient of v, rest) when e == coefficient*v + rest with rest free of v; else None."""
    if not _uses(e, {v}):
        return 0, e
    if isinstance(e, E.Var):
        return 1, E.Const(0)
    if isinstance(e, E.Cast) and e.dtype == "int64":
        return linear(e.operand, v)
    if isinstance(e, E.BinOp) and e.op in ("add", "sub"):
        a, b = linear(e.left, v), linear(e.right, v)
        if a is None or b is None:
            return None
        sign = 1 if e.op == "add" else -1
        return a[0] + sign * b[0], E.BinOp(e.op, a[1], b[1])
    return None


@dataclass
class Plan:
    dtype: str
    lanes: int
    inner: str  # the instruction-level name bound to the loop iterator
    bound: E.Expr  # exclusive upper bound of the iterator
    invariants: dict = field(default_factory=dict)  # id(expr) -> expr, computed once before the loop
    streams: dict = field(default_factory=dict)  # id(Index) -> (Index, dim, rest index exprs)
    reductions: dict = field(default_factory=dict)  # instruction id -> (scalar name, addend expr)
    temps: set = field(default_factory=set)
    code: dict = field(default_factory=dict)  # instruction id -> (assignee, expression) over the iterator


class Vectorizer:
    def __init__(self, em):
        self.em = em
        self.f = None
        self.mask = None  # the opmask register while the masked remainder (avx512) is emitted
        self.scalar = False  # while the scalar remainder is emitted: sd/ss forms on low lanes

    # -- analysis ---------------------------------------------------------------------------------------
    def plan(self, n: For) -> Plan | None:
        em = self.em
        model = em.model
        if n.step != 1 or not n.body or not all(isinstance(x, Run) for x in n.body):
            return None
        c = n.cond
        if not (isinstance(c, E.Compare) and c.op in ("lt", "le") and isinstance(c.left, E.Var)
                and c.left.name == n.var and not _uses(c.right, {n.var})):
            return None
        bound = c.right if c.op == "lt" else E.BinOp("add", c.right, E.Const(1))
        dtype = None
        plan = Plan("", 0, n.var, bound)
        for run in n.body:
            ins = model.instruction(run.instruction)
            if ins.predicates:
                return None
            moving = {}
            for name, value in run.bindings:  # name == iterator + rest (rest invariant) is fine
                lin = linear(value, n.var)
                if lin is None or lin[0] not in (0, 1):
                    return None
                if lin[0] == 1:
                    moving[name] = value
            if not moving:
                return None
            sub = lambda x, m=moving: m.get(x.name) if isinstance(x, E.Var) else None  # noqa: E731
            plan.code[ins.id] = (E.substitute(ins.assignee, sub), E.substitute(ins.expression, sub))
        for run in n.body:
            ins = model.instruction(run.instruction)
            assignee, expression = plan.code[ins.id]
            t = em.tof(assignee)
            if not t.startswith("float") or (dtype not in (None, t)):
                return None
            dtype = t
            rhs = expression
            if isinstance(assignee, E.Var):
                name = assignee.name
                tmp = model.temporary(name)
                addend = _sum_into(rhs, name)
                if addend is not None and model.fastmath and not _uses(addend, {name}):
                    plan.reductions[ins.id] = (name, addend)
                    rhs = addend
                elif tmp is not None and tmp.private_to == n.name and not _uses(rhs, {name}):
                    plan.temps.add(name)
                else:
                    return None
            elif not self.stream_or_invariant(assignee, plan, dtype, store=True):
                return None
            if not self.check_expr(rhs, plan, dtype):
                return None
        for name, _ in plan.reductions.values():  # the sum may be touched by nothing else in the loop
            if name in plan.temps or sum(1 for r in plan.reductions.values() if r[0] == name) > 1 or any(
                    _uses(plan.code[run.instruction][1], {name}) for run in n.body
                    if run.instruction not in plan.reductions):
                return None
        plan.dtype = dtype
        plan.lanes = WIDTH[em.isa] // np.dtype(dtype).itemsize
        return plan

    def varying(self, plan):
        return {plan.inner} | plan.temps

    def stream_or_invariant(self, e: E.Index, plan, dtype, store=False) -> bool:
        if self.em.types[e.array] != dtype:
            return False
        dims = [linear(i, plan.inner) for i in e.indices]
        if any(d is None for d in dims):
            return False
        moving = [k for k, d in enumerate(dims) if d[0] != 0]
        if not moving:
            if store:
                return False
            plan.invariants[id(e)] = e
            return True
        if len(moving) != 1 or dims[moving[0]][0] != 1:
            return False
        if any(_uses(d[1], plan.temps) for d in dims):
            return False
        plan.streams[id(e)] = (e, moving[0], [d[1] if k == moving[0] else e.indices[k] for k, d in enumerate(dims)])
        return True

    def check_expr(self, e, plan, dtype) -> bool:
        if not _uses(e, self.varying(plan)):
            t = self.em.tof(e)
            if t != dtype:
                return False
            plan.invariants[id(e)] = e
            return True
        if isinstance(e, E.Var):
            return e.name in plan.temps
        if isinstance(e, E.Index):
            return self.stream_or_invariant(e, plan, dtype)
        if isinstance(e, E.Cast):
            return e.dtype == dtype and self.em.tof(e.operand) == dtype and self.check_expr(e.operand, plan, dtype)
        if isinstance(e, E.BinOp):
            return e.op in _FLOAT_OPS and all(self.check_expr(x, plan, dtype) for x in (e.left, e.right))
        if isinstance(e, E.UnOp):
            return e.op == "neg" and self.check_expr(e.operand, plan, dtype)
        if isinstance(e, E.Call):
            return e.func in ("sqrt", "min", "max", "abs", "fabs") and all(
                self.check_expr(a, plan, dtype) for a in e.args)
        return False

    # -- code -------------------------------------------------------------------------------------------
    def emit(self, n: For, plan: Plan, var) -> None:
        """Vector loops from the iterator's current value in `var`; leaves `var` at the first iteration the
        scalar loop still has to run."""
        em, f = self.em, self.em.f
        self.f, self.plan_, self.size = f, plan, WIDTH[em.isa]
        item = np.dtype(plan.dtype).itemsize
        self.s = "pd" if plan.dtype == "float64" else "ps"
        skip = f.label("novec")
        for run in n.body:  # the enclosing loops' variables, as the instructions name them
            for name, value in run.bindings:
                if not _uses(value, {n.var}):
                    em.regs[name] = em.expr(value)
        ub = plan.bound if not isinstance(plan.bound, E.Expr) else em.expr(plan.bound)
        self.values = {}
        broadcasts = {}  # equal invariants (the same constant, the same element) share one register
        for key, e in plan.invariants.items():
            same = (str(e), em.tof(e))
            if same not in broadcasts:
                broadcasts[same] = self.broadcast(em.expr(e))
            self.values[key] = broadcasts[same]
        self.ptrs, self.shifts = {}, {}
        checked, products, starts = set(), {}, {}
        for key, (e, dim, start, shift) in self.stream_starts(plan).items():
            base, strides = em.array(e.array)
            if (e.array, dim) not in checked:
                checked.add((e.array, dim))
                f.cmp(strides[dim], item)
                f.jne(skip)
            if shift is not None:  # A[i, j + 1] is A[i, j]'s pointer, one element on (unit stride checked)
                self.shifts[key] = shift * item
            ident = (e.array, tuple(str(i) for i in start))
            if ident in em.vpreset:  # kept by the enclosing loop (native_loop.fast_nest)
                starts[ident] = em.vpreset[ident]
            if ident not in starts:  # A[i, j] read and written: one pointer
                ptr = f.gp64()
                f.mov(ptr, base)
                for d, idx in enumerate(start):
                    if isinstance(idx, E.Const) and idx.value == 0:
                        continue
                    term = (e.array, d, str(idx))  # i * stride shared by A[i, j], A[i, j - 1], ...
                    if term not in products:
                        t = f.gp64()
                        f.mov(t, em.expr(idx))
                        f.imul(t, strides[d])
                        products[term] = t
                    f.add(ptr, products[term])
                starts[ident] = ptr
            self.ptrs[key] = starts[ident]
        # sums: independent accumulators hide the add latency; other bodies: fewer loop branches per vector
        unroll = 8 if plan.reductions else UNROLL
        accs = {iid: [self.zero() for _ in range(unroll)] for iid in plan.reductions}
        for u_count in (unroll, 1):
            top, done = f.label("vec"), f.label("vecdone")
            last = f.gp64()
            f.mov(last, ub)
            f.sub(last, plan.lanes * u_count)
            f.cmp(var, last)
            f.jg(done)
            f.align(32)  # loop entry on a fetch-block boundary
            f.bind(top)
            for u in range(u_count):
                self.body(n, var, u * plan.lanes * item, {iid: a[u] for iid, a in accs.items()})
            f.add(var, plan.lanes * u_count)
            f.cmp(var, last)
            f.jle(top)
            f.bind(done)
        if em.isa == "avx512":
            self.masked_remainder(n, var, ub, {iid: a[0] for iid, a in accs.items()})
        for iid, parts in accs.items():
            name, _ = plan.reductions[iid]
            total = parts[0]
            for p in parts[1:]:
                total = self.op("add", total, p)
            s = self.hsum(total)
            em.move(em.regs[name], em.fop("add", plan.dtype, em.regs[name], s), plan.dtype)
        if em.isa != "avx512":
            self.scalar_remainder(n, var, ub)
        f.bind(skip)

    @staticmethod
    def stream_starts(plan) -> dict:
        """id(Index) -> (Index, moving dimension, indices of its pointer's start, constant shift or None):
        the pointer addresses element 0 along the moving dimension ([pointer + iterator * itemsize]);
        streams a constant apart there share it."""
        out = {}
        for key, (e, dim, indices) in plan.streams.items():
            shift = _constant(indices[dim])
            if shift is not None:
                indices = [E.Const(0) if d == dim else x for d, x in enumerate(indices)]
            out[key] = (e, dim, tuple(indices), shift)
        return out

    def scalar_remainder(self, n: For, var, ub) -> None:
        """The iterations after the last full vector, one lane at a time through the same pointers (the
        ordinary scalar loop after this would set up its own addressing again); sums add straight into
        their scalar, which already holds the vector part (fastmath: any order)."""
        f, plan = self.f, self.plan_
        item = np.dtype(plan.dtype).itemsize
        self.scalar, self.size, self.s = True, item, "sd" if plan.dtype == "float64" else "ss"
        top, done = f.label("rem"), f.label("remdone")
        f.cmp(var, ub)
        f.jge(done)
        f.bind(top)
        self.body(n, var, 0, {iid: self.em.regs[name] for iid, (name, _) in plan.reductions.items()})
        f.add(var, 1)
        f.cmp(var, ub)
        f.jl(top)
        f.bind(done)
        self.scalar, self.size, self.s = False, WIDTH[self.em.isa], "pd" if plan.dtype == "float64" else "ps"

    def masked_remainder(self, n: For, var, ub, accs) -> None:
        """The last ub - var < lanes iterations as one vector iteration under the opmask (1 << (ub - var)) - 1,
        then var = ub (the scalar loop after it runs none). Loads zero the masked-off lanes and cannot fault
        there, stores leave memory there untouched, and sums add under the mask (merge-masking: the
        accumulator's masked-off lanes keep their value whatever the addend computed from the zeros)."""
        f = self.f
        done = f.label("maskdone")
        rest = f.gp64()
        f.mov(rest, ub)
        f.sub(rest, var)
        f.test(rest, rest)
        f.jle(done)
        bits = f.gp64()
        f.mov(bits, 1)
        f.shl(bits, rest)
        f.sub(bits, 1)
        self.mask = f.k()
        f.kmovw(self.mask, bits.d)  # 16 lanes at most (float32 zmm); 8-lane ops read the low 8 bits
        self.body(n, var, 0, accs)
        self.mask = None
        f.mov(var, ub)
        f.bind(done)

    def body(self, n: For, var, disp, accs):
        em, f, plan = self.em, self.f, self.plan_
        masked = {"mask": self.mask} if self.mask is not None else {}
        temps = {}
        for run in n.body:
            ins = em.model.instruction(run.instruction)
            assignee, expression = plan.code[ins.id]
            self.temps, self.var, self.disp = temps, var, disp
            if ins.id in plan.reductions:
                name, addend = plan.reductions[ins.id]
                acc = accs[ins.id]
                fusable = em.model.fastmath and em.isa != "sse2" and id(addend) not in self.values
                mul = self.product(addend) if fusable else None
                if mul is not None:  # acc += a*b in one fused multiply-add, b straight from memory
                    direct = id(mul.right) in plan.streams and self.mask is None
                    right = self.mem(mul.right) if direct else self.vexpr(mul.right)
                    f.emit(f"vfmadd231{self.s}", acc, self.vexpr(mul.left), right, **masked)
                elif em.vex:
                    f.emit(self.name("add"), acc, acc, self.vexpr(addend), **masked)
                else:
                    f.emit(self.name("add"), acc, self.vexpr(addend))
            elif isinstance(assignee, E.Var):
                temps[assignee.name] = self.vexpr(expression)
            else:
                f.emit(self.mov(), self.mem(assignee), self.vexpr(expression), **masked)

    def mem(self, e: E.Index) -> Mem:
        return Mem(self.ptrs[id(e)], self.var, np.dtype(self.plan_.dtype).itemsize,
                   disp=self.disp + self.shifts.get(id(e), 0), size=self.size)

    def vexpr(self, e):
        key = id(e)
        if key in self.values:
            v = self.values[key]
            return v.x if self.scalar else v
        f = self.f
        if isinstance(e, E.Var):
            return self.temps[e.name]
        if isinstance(e, E.Index):
            r = self.vreg()
            if self.mask is not None:  # {z}: masked-off lanes read as 0 (and never fault)
                f.emit(self.mov(), r, self.mem(e), mask=self.mask, zero=True)
            else:
                f.emit(self.mov(), r, self.mem(e))
            return r
        if isinstance(e, E.Cast):
            return self.vexpr(e.operand)
        if isinstance(e, E.BinOp):
            fused = self.fma(e)
            if fused is not None:
                return fused
            op = {"truediv": "div"}.get(e.op, e.op)
            if id(e.right) in self.ptrs and self.em.vex and self.mask is None:  # the load folded (VEX: any
                return self.op(op, self.vexpr(e.left), self.mem(e.right))  # alignment)
            return self.op(op, self.vexpr(e.left), self.vexpr(e.right))
        if isinstance(e, E.UnOp):  # -x flips the sign bit, like the scalar code
            mask = self.broadcast(self.em.const(-0.0, self.plan_.dtype))
            return self.op("xor", self.vexpr(e.operand), mask)
        if e.func == "sqrt":
            a = self.vexpr(e.args[0])
            r = self.vreg()
            if self.scalar and self.em.vex:
                f.emit(self.name("sqrt"), r, a, a)
            else:
                f.emit(self.name("sqrt"), r, a)
            return r
        if e.func in ("abs", "fabs"):
            mask = self.broadcast(self.em.const(-0.0, self.plan_.dtype))
            a = self.vexpr(e.args[0])
            r = self.vreg()
            if self.em.vex:
                f.emit(self.name("andn"), r, mask, a)
            else:
                f.emit(self.mov_reg(), r, mask)
                f.emit(self.name("andn"), r, a)
            return r
        # Python's min(a, b) is `b if b < a else a`, which is MINPD(b, a) lane by lane (NaN and -0.0 too)
        out = self.vexpr(e.args[0])
        for b in e.args[1:]:
            out = self.op(e.func, self.vexpr(b), out)
        return out

    @staticmethod
    def product(x):
        """The multiplication `x` is (through same-type casts), or None."""
        while isinstance(x, E.Cast):
            x = x.operand
        return x if isinstance(x, E.BinOp) and x.op == "mul" else None

    def fma(self, e: E.BinOp):
        """`x + a*b` as one fused multiply-add (one rounding): only with fastmath, from the avx2 tier up."""
        if e.op != "add" or not self.em.model.fastmath or self.em.isa == "sse2":
            return None

        mul = other = None
        for side, rest in ((e.right, e.left), (e.left, e.right)):
            if id(side) not in self.values:  # a loop-invariant product is already one broadcast value
                mul, other = self.product(side), rest
                if mul is not None:
                    break
        if mul is None:
            return None
        acc = self.vreg()
        self.f.emit(self.mov_reg(), acc, self.vexpr(other))
        self.f.emit(f"vfmadd231{self.s}", acc, self.vexpr(mul.left), self.vexpr(mul.right))
        return acc

    # -- instructions ----------------------------------------------------------------------------------
    def name(self, op):
        s = self.s
        if self.scalar and op in ("xor", "andn"):  # bitwise: packed forms only
            s = "pd" if s == "sd" else "ps"
        return f"v{op}{s}" if self.em.vex else f"{op}{s}"

    def mov(self):
        return self.name("mov") if self.scalar else self.name("movu")

    def mov_reg(self):
        return "vmovaps" if self.em.vex else "movaps"

    def vreg(self):
        return self.f.xmm() if self.scalar else self.f.vreg(self.size)

    def op(self, op, a, b):
        f = self.f
        r = self.vreg()
        if self.em.vex:
            f.emit(self.name(op), r, a, b)
        else:
            f.emit(self.mov_reg(), r, a)
            f.emit(self.name(op), r, b)
        return r

    def zero(self):
        r = self.vreg()
        if self.em.vex:
            self.f.emit(self.name("xor"), r, r, r)
        else:
            self.f.emit(self.name("xor"), r, r)
        return r

    def broadcast(self, x):
        """A scalar in the low lane of xmm `x`, copied to every lane."""
        f, em = self.f, self.em
        if self.scalar:  # the scalar remainder reads the low lane only
            return x
        r = self.vreg()
        if em.isa == "sse2":
            f.movaps(r, x)
            if self.s == "pd":
                f.unpcklpd(r, r)
            else:
                f.shufps(r, r, 0)
            return r
        f.emit("vbroadcastsd" if self.s == "pd" else "vbroadcastss", r, x)
        return r

    def hsum(self, v):
        """The sum of all lanes of `v`, in the low lane of an xmm register."""
        f, em = self.f, self.em
        if self.size == 64:
            hi = f.ymm()
            f.emit("vextractf64x4" if self.s == "pd" else "vextractf32x8", hi, v, 1)
            lo = f.ymm()
            f.emit(self.name("add"), lo, v.y, hi)
            v = lo
        if self.size >= 32:
            hi = f.xmm()
            f.vextractf128(hi, v, 1)
            lo = f.xmm()
            f.emit(self.name("add"), lo, v.x, hi)
            v = lo
        if self.s == "pd":
            hi = f.xmm()
            if em.vex:
                f.vunpckhpd(hi, v, v)
            else:
                f.movaps(hi, v)
                f.unpckhpd(hi, hi)
            return em.fop("add", "float64", v, hi)
        hi = f.xmm()
        f.movaps(hi, v) if not em.vex else f.vmovaps(hi, v)
        f.movhlps(hi, v)
        s = f.xmm()  # all four lanes: (v0+v2, v1+v3, ...); a scalar add here lost lane 3
        if em.vex:
            f.vaddps(s, v, hi)
        else:
            f.movaps(s, v)
            f.addps(s, hi)
        sh = f.xmm()
        if em.vex:
            f.vshufps(sh, s, s, 1)
        else:
            f.movaps(sh, s)
            f.shufps(sh, sh, 1)
        return em.fop("add", "float32", s, sh)


def _constant(e: E.Expr):
    """The value of an integer expression of constants (small enough for a displacement), else None."""
    if isinstance(e, E.Const) and type(e.value) is int:
        return e.value if abs(e.value) < 1 << 20 else None
    if isinstance(e, E.Cast) and e.dtype == "int64":
        return _constant(e.operand)
    if isinstance(e, E.BinOp) and e.op in ("add", "sub", "mul"):
        a, b = _constant(e.left), _constant(e.right)
        if a is None or b is None:
            return None
        v = a + b if e.op == "add" else a - b if e.op == "sub" else a * b
        return v if abs(v) < 1 << 20 else None
    return None


def _sum_into(rhs: E.Expr, name: str):
    """`addend` when rhs is `name + addend` (possibly inside a same-type cast), else None."""
    while isinstance(rhs, E.Cast):
        rhs = rhs.operand
    if isinstance(rhs, E.BinOp) and rhs.op == "add":
        if isinstance(rhs.left, E.Var) and rhs.left.name == name:
            return rhs.right
        if isinstance(rhs.right, E.Var) and rhs.right.name == name:
            return rhs.left
    return None
