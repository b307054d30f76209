"""Outer-loop SIMD: a loop tagged `vector` whose body holds inner loops runs consecutive iterations in the
lanes of vector registers (conv2d's `j` around its `di`, `dj` sum; nbody's `i` around `j`; coulomb's `j`).

The innermost-loop vectorizer (vectorize.py) cannot run a sum `s += ...` in lanes without reassociating it;
here every lane is one iteration of the outer loop and runs its own sum in its own order, so the latency
chain of each iteration's sum is the scalar code's and several of them overlap.

Pattern: loop `v` (step 1, bound invariant) over statements and inner loops whose bounds do not depend on
`v`; float arithmetic of one dtype; scalar temporaries private to `v` or to a loop inside it (each lane keeps
its copy in a vector register); array accesses that move with `v` along their last dimension only, by one
element (`img[i + di, j + dj]`, `out[i, j]`: one vector; unit stride checked at run time, else the scalar
loop runs everything), or do not depend on `v` (`w[di, dj]`: one element, broadcast); `float(v)` as
float(first lane) + (0, 1, 2, ...) (exact: checked at run time to stay within the dtype's integers).
Where an access moves along another dimension (gesummv's `A[i, j]` over rows `i`), the same code runs with
scalar registers instead (`scalar`): 4 copies of the scalar code, copy u at iteration v + u, each access of
copy u u * stride bytes on from copy 0's (any strides); stores then only outside inner loops.

Identity: lane l of every vector operation computes what iteration v + l of the scalar loop computes, with
the same operations in the same order (inner loops run their iterations in order for all lanes together),
so each iteration's values are bit-identical (FMA contraction only with fastmath). Running the iterations
interleaved statement by statement is legal because the heuristic tags such a loop only when it carries no
dependence (`legality.carried`, sums included) and no scalar escapes it; arguments are distinct objects (a
call with overlapping arrays runs the untagged sequential model). UNROLL vectors of lanes run per iteration
of the chunk loop (independent copies of every temporary: more sums in flight), then single vectors;
iterations after the last full vector run in the ordinary scalar loop.
"""

from __future__ import annotations

import numpy as np

from ..analysis import expr as E
from ..asm import Mem
from .looptree import For, Run
from .native_loop import _plain_index, advance, affine, start_pointer
from .vectorize import _FLOAT_OPS, WIDTH, Plan, Vectorizer, _uses, linear

MAX_POINTERS = 8  # pointers an innermost loop advances (more spill)
_UNIFORM_CALLS = {"sqrt", "abs", "fabs"}


def _unroll(temps: int) -> int:
    """Vectors per chunk: 4 for one or two temporaries (conv2d's sum), fewer as register pressure grows."""
    return 4 if temps <= 2 else 2 if temps <= 8 else 1


def _safe_index(e: E.Expr) -> bool:
    """A plain index whose divisions are by nonzero constants: computing it ahead of the scalar code (a
    pointer set up before an inner loop that may run no iteration) cannot trap."""
    return _plain_index(e) and all(isinstance(x.right, E.Const) and x.right.value != 0 for x in E.walk(e)
                                   if isinstance(x, E.BinOp) and x.op in ("floordiv", "mod"))


def _strip_int(e: E.Expr) -> E.Expr:
    while isinstance(e, E.Cast) and e.dtype == "int64":
        e = e.operand
    return e


class LaneLoop(Vectorizer):
    def __init__(self, em, n: For, scalar: bool = False):
        super().__init__(em)
        self.n = n
        self.scalar = scalar  # copies of the scalar code, one per iteration (the lanes' stride is free)
        self.lane_steps: dict = {}  # scalar: id(Index) -> (array, coefficients of the lane iterator)
        self.code: dict = {}  # id(Run) -> (assignee, expression) over the AST iterators
        self.inner: set = set()  # AST iterators of the inner loops
        self.names: set = {n.name}  # schedule names of n and its inner loops
        self.lane_temps: set = set()
        self.streams: dict = {}  # id(Index) -> Index moving with the lanes
        self.hoist: dict = {}  # id(expr) -> expr computed once before the chunk loops (uniform)
        self.per_chunk: dict = {}  # id(expr) -> expr over the lane iterator only, once per chunk
        self.iotas: list = []  # the lane iterator expressions that `float(v)` converts

    # -- analysis ---------------------------------------------------------------------------------------
    def plan(self) -> bool:
        em, n = self.em, self.n
        if n.step != 1 or not any(isinstance(x, For) for x in n.body):
            return False
        c = n.cond
        if not (isinstance(c, E.Compare) and c.op in ("lt", "le") and isinstance(c.left, E.Var)
                and c.left.name == n.var and not _uses(c.right, {n.var})):
            return False
        self.bound = c.right if c.op == "lt" else E.BinOp("add", c.right, E.Const(1))
        runs: list = []
        if not self._walk(n.body, runs):
            return False
        top = {id(x) for x in n.body}
        if self.scalar and any(isinstance(self.em.model.instruction(r.instruction).assignee, E.Index)
                               and id(r) not in top for r in runs):
            return False  # an element updated in an inner loop: the ordinary code keeps it in a register
        model = em.model
        dtype = None
        for run in runs:
            ins = model.instruction(run.instruction)
            if ins.predicates:
                return False
            table = dict(run.bindings)
            sub = lambda x, m=table: m.get(x.name) if isinstance(x, E.Var) else None  # noqa: E731
            self.code[id(run)] = (E.substitute(ins.assignee, sub), E.substitute(ins.expression, sub))
            t = em.tof(ins.assignee)
            if not t.startswith("float") or dtype not in (None, t):
                return False
            dtype = t
            if isinstance(ins.assignee, E.Var):
                tmp = model.temporary(ins.assignee.name)
                if tmp is None or tmp.shape or tmp.private_to not in self.names:
                    return False
                self.lane_temps.add(ins.assignee.name)
        self.dtype = dtype
        for assignee, expression in self.code.values():
            if isinstance(assignee, E.Index) and not self._stream(assignee):
                return False
            if not self._check(expression):
                return False
        self.plan_ = Plan(dtype, WIDTH[em.isa] // np.dtype(dtype).itemsize, n.var, self.bound)
        return True

    def _walk(self, nodes, runs) -> bool:
        for x in nodes:
            if isinstance(x, Run):
                runs.append(x)
            elif isinstance(x, For):
                if x.step == 0 or _uses(x.init, {self.n.var}) or _uses(x.cond, {self.n.var}):
                    return False
                self.inner.add(x.var)
                self.names.add(x.name)
                if not self._walk(x.body, runs):
                    return False
            else:
                return False
        return True

    def _varying(self, e) -> bool:
        return _uses(e, {self.n.var} | self.lane_temps)

    def _stream(self, e: E.Index) -> bool:
        """Moves with the lanes along the last dimension, one element per lane, and nowhere else."""
        if self.em.types[e.array] != self.dtype or not all(_safe_index(i) for i in e.indices):
            return False
        dims = [linear(i, self.n.var) for i in e.indices]
        if any(d is None for d in dims) or any(_uses(i, self.lane_temps) for i in e.indices):
            return False
        if self.scalar:  # copy u reads u * sum(coefficient * stride) bytes on from copy 0
            if not any(d[0] for d in dims):
                return False
            self.lane_steps[id(e)] = (e.array, tuple(d[0] for d in dims))
        elif dims[-1][0] != 1 or any(d[0] for d in dims[:-1]):
            return False
        self.streams[id(e)] = e
        return True

    def _uniform_ok(self, e) -> bool:
        """Computed by the scalar emitter and broadcast: loads at plain indices, arithmetic, casts, sqrt/abs
        (no library calls: those clobber the vector registers live across them)."""
        for x in E.walk(e):
            if isinstance(x, E.Index):
                if not all(_safe_index(i) for i in x.indices):
                    return False
            elif isinstance(x, E.Call):
                if x.func not in _UNIFORM_CALLS:
                    return False
            elif isinstance(x, E.BinOp):
                if x.op not in _FLOAT_OPS:  # no integer division: hoisted code must not trap
                    return False
            elif isinstance(x, E.UnOp):
                if x.op != "neg":
                    return False
            elif not isinstance(x, (E.Var, E.Const, E.Cast)):
                return False
        return True

    def _check(self, e) -> bool:
        em, dtype = self.em, self.dtype
        if not self._varying(e):
            if em.tof(e) != dtype or not self._uniform_ok(e):
                return False
            if not _uses(e, self.inner) and not any(isinstance(x, E.Index) for x in E.walk(e)):
                self.hoist[id(e)] = e
            return True
        if em.tof(e) != dtype:
            return False
        if not _uses(e, self.lane_temps) and not any(isinstance(x, E.Index) for x in E.walk(e)) \
                and not _uses(e, self.inner) and self._lane_only(e):
            self.per_chunk[id(e)] = e
            return True
        if isinstance(e, E.Var):
            return e.name in self.lane_temps
        if isinstance(e, E.Index):
            return self._stream(e)
        if isinstance(e, E.Cast):
            narrow = self._narrow(e)
            if narrow is not None:
                return all(self._check(a) for a in narrow[1])
            return e.dtype == dtype and em.tof(e.operand) == dtype and self._check(e.operand)
        if isinstance(e, E.BinOp):
            return e.op in _FLOAT_OPS and self._check(e.left) and self._check(e.right)
        if isinstance(e, E.UnOp):
            return e.op == "neg" and self._check(e.operand)
        if isinstance(e, E.Call):
            return e.func in ("sqrt", "min", "max", "abs", "fabs") and all(self._check(a) for a in e.args)
        return False

    def _lane_only(self, e) -> bool:
        """Float arithmetic over `float(v + k)` and uniform values (coulomb's `float(j) * h`)."""
        dtype = self.dtype
        if not self._varying(e):
            if self.em.tof(e) != dtype or not self._uniform_ok(e):
                return False
            self.hoist[id(e)] = e
            return True
        if self.em.tof(e) != dtype:
            return False
        if isinstance(e, E.Cast) and self.em.tof(e.operand) == "int64":
            x = _strip_int(e.operand)
            if isinstance(x, E.Var) and x.name == self.n.var:
                self.iotas.append(e)
                return True
            return False
        if isinstance(e, E.Cast):
            return e.dtype == dtype and self.em.tof(e.operand) == dtype and self._lane_only(e.operand)
        if isinstance(e, E.BinOp):
            return e.op in _FLOAT_OPS and self._lane_only(e.left) and self._lane_only(e.right)
        if isinstance(e, E.UnOp):
            return e.op == "neg" and self._lane_only(e.operand)
        return False

    def _narrow(self, e: E.Cast):
        """float32(float64(a) op float64(b)) of float32 a, b: (op, (a, b)) computed in float32, as the scalar
        emitter does (native_numeric.single_precision: rounding twice is innocuous for these operations)."""
        x = e.operand
        if e.dtype != "float32" or self.em.tof(x) != "float64":
            return None
        if isinstance(x, E.Call) and x.func == "sqrt" and len(x.args) == 1:
            args, op = x.args, "sqrt"
        elif isinstance(x, E.BinOp) and x.op in _FLOAT_OPS:
            args, op = (x.left, x.right), x.op
        else:
            return None
        if not all(isinstance(a, E.Cast) and a.dtype == "float64" and self.em.tof(a.operand) == "float32"
                   for a in args):
            return None
        return op, tuple(a.operand for a in args)

    # -- code -------------------------------------------------------------------------------------------
    def emit(self, var, ub_expr=None) -> None:
        """Chunks of lanes from the iterator's value in `var`; leaves `var` at the first iteration the scalar
        loop still has to run."""
        em, f = self.em, self.em.f
        self.f = f
        dtype = self.dtype
        self.item = np.dtype(dtype).itemsize
        self.size = self.item if self.scalar else WIDTH[em.isa]
        self.lanes = self.size // self.item
        self.s = ("sd" if dtype == "float64" else "ss") if self.scalar else ("pd" if dtype == "float64" else "ps")
        skip = f.label("lskip")
        ub = em.expr(self.bound) if ub_expr is None else ub_expr
        checked = set()
        unroll = 4 if self.scalar else _unroll(len(self.lane_temps))
        self.steps = {}  # scalar: (array, coefficients) -> {copy: (register, scale)} of the lane offsets
        for array, coefs in dict.fromkeys(self.lane_steps.values()):
            one = advance(em, array, coefs, 1, {})
            three = f.gp64()
            f.lea(three, Mem(one, one, 2))
            self.steps[(array, coefs)] = {1: (one, 1), 2: (one, 2), 3: (three, 1)}
        for e in self.streams.values():
            if self.scalar:
                break
            if e.array not in checked:
                checked.add(e.array)
                _, strides = em.array(e.array)
                f.cmp(strides[-1], self.item)
                f.jne(skip)
        if self.iotas and dtype == "float32":  # float(v + l) exact for every lane: |v|, ub <= 2**24
            f.cmp(var, -(1 << 24))
            f.jl(skip)
            f.cmp(ub, 1 << 24)
            f.jg(skip)
        self.values = {}
        for key, e in self.hoist.items():
            self.values[key] = self.broadcast(em.expr(e))
        for count in dict.fromkeys((unroll, 1)):
            top, done = f.label("lane"), f.label("lanedone")
            last = f.gp64()
            f.mov(last, ub)
            f.sub(last, self.lanes * count)
            f.cmp(var, last)
            f.jg(done)
            f.bind(top)
            self.chunk(var, count)
            f.add(var, self.lanes * count)
            f.cmp(var, last)
            f.jle(top)
            f.bind(done)
        f.bind(skip)

    def chunk(self, var, count) -> None:
        em, f = self.em, self.f
        self.count, self.ptrs, self.shifts = count, {}, {}
        self.regs_of = {name: [self.vreg() for _ in range(count)] for name in sorted(self.lane_temps)}
        self.chunk_values = [{} for _ in range(count)]
        if self.per_chunk:
            first = em.expr(E.Cast(self.dtype, E.Var(self.n.var))) if self.iotas else None
            base = self.broadcast(first) if first is not None else None
            for u in range(count):
                self.u = u
                if base is not None:
                    iota = f.const([float(u * self.lanes + k) for k in range(self.lanes)], self.dtype,
                                   size=self.size)
                    r = self.vreg()
                    if em.vex:
                        f.emit(self.name("add"), r, base, iota)
                    else:
                        f.emit(self.mov_reg(), r, base)
                        f.emit(self.name("add"), r, iota)
                    for e in self.iotas:
                        self.chunk_values[u][id(e)] = r
                for key, e in self.per_chunk.items():
                    self.chunk_values[u][key] = self.lane_expr(e)
        self.nodes(self.n.body)

    def lane_expr(self, e):
        key = id(e)
        if key in self.values:
            return self.values[key]
        if key in self.chunk_values[self.u]:
            return self.chunk_values[self.u][key]
        if isinstance(e, E.Cast):
            return self.lane_expr(e.operand)
        if isinstance(e, E.UnOp):
            mask = self.broadcast(self.em.const(-0.0, self.dtype))
            return self.op("xor", self.lane_expr(e.operand), mask)
        op = {"truediv": "div"}.get(e.op, e.op)
        return self.op(op, self.lane_expr(e.left), self.lane_expr(e.right))

    def nodes(self, nodes) -> None:
        for x in nodes:
            if isinstance(x, Run):
                self.run(x)
            else:
                self.loop(x)

    def run(self, run: Run) -> None:
        f = self.f
        assignee, expression = self.code[id(run)]
        self.uniform = {}  # uniform values of this statement, broadcast once for all copies
        for u in range(self.count):
            self.u = u
            self.temps = {name: regs[u] for name, regs in self.regs_of.items()}
            v = self.vexpr(expression)
            if isinstance(assignee, E.Var):
                f.emit(self.mov_reg(), self.regs_of[assignee.name][u], v)
            else:
                f.emit(self.mov(), self.mem(assignee), v)

    def loop(self, x: For) -> None:
        em, f = self.em, self.f
        from .blocking import loop_bound
        v = f.gp64()
        f.mov(v, em.expr(x.init))
        em.regs[x.var] = v
        saved = dict(self.ptrs)
        advances = []
        if all(isinstance(r, Run) for r in x.body):  # pointers stepped instead of addresses recomputed
            made, cache = {}, {}
            for r in x.body:
                for e in (y for part in self.code[id(r)] for y in E.walk(part) if isinstance(y, E.Index)):
                    coefs = [affine(i, x.var) if _safe_index(i) else None for i in e.indices]
                    if any(c is None for c in coefs):
                        continue
                    ident = (e.array, tuple(str(i) for i in e.indices))
                    if ident not in made:
                        if len(made) >= MAX_POINTERS:
                            continue
                        made[ident] = start_pointer(em, e.array, e.indices)
                        cs = tuple(c[0] for c in coefs)
                        if any(cs):
                            advances.append((made[ident], advance(em, e.array, cs, x.step, cache)))
                    self.ptrs[id(e)] = made[ident]
        top, done = f.label("lin"), f.label("lindone")
        bound = loop_bound(em, x)
        f.bind(top)
        if bound is None:
            em.jump_unless(x.cond, done)
        else:
            f.cmp(v, bound[1])
            f.emit(bound[0], done)
        self.nodes(x.body)
        f.add(v, x.step)
        for ptr, step in advances:
            f.add(ptr, step)
        f.jmp(top)
        f.bind(done)
        self.ptrs = saved

    def mem(self, e: E.Index) -> Mem:
        """Copy u of a stream: lane 0's element (unit stride checked), u vectors on."""
        disp = self.u * self.size
        ptr = self.ptrs.get(id(e))
        if self.scalar and self.u:
            if ptr is not None:
                reg, scale = self.steps[self.lane_steps[id(e)]][self.u]
                return Mem(ptr, reg, scale, size=self.size)
            em, f = self.em, self.f
            lane = em.regs[self.n.var]
            em.regs[self.n.var] = f.gp64()  # the address at iteration var + u
            f.lea(em.regs[self.n.var], Mem(lane, disp=self.u))
            m = em.address(e)
            em.regs[self.n.var] = lane
            return m
        if ptr is not None:
            return Mem(ptr, disp=disp, size=self.size)
        m = self.em.address(e)
        return Mem(m.base, m.index, m.scale, m.disp + disp, self.size)

    def vexpr(self, e):
        key = id(e)
        if key in self.values:
            return self.values[key]
        if key in self.chunk_values[self.u]:
            return self.chunk_values[self.u][key]
        if not self._varying(e):
            if key not in self.uniform:
                self.uniform[key] = self.splat(e)
            return self.uniform[key]
        if isinstance(e, E.Index) and key not in self.ptrs:  # a stream whose address is computed
            r = self.vreg()
            self.f.emit(self.mov(), r, self.mem(e))
            return r
        if isinstance(e, E.Cast):
            narrow = self._narrow(e)
            if narrow is not None:
                op, args = narrow
                regs = [self.vexpr(a) for a in args]
                if op == "sqrt":
                    r = self.vreg()
                    if self.scalar and self.em.vex:
                        self.f.emit(self.name("sqrt"), r, regs[0], regs[0])
                    else:
                        self.f.emit(self.name("sqrt"), r, regs[0])
                    return r
                return self.op({"truediv": "div"}.get(op, op), *regs)
        if isinstance(e, E.BinOp) and id(e.right) not in self.streams:
            fused = self.fma(e)
            if fused is not None:
                return fused
            op = {"truediv": "div"}.get(e.op, e.op)
            return self.op(op, self.vexpr(e.left), self.vexpr(e.right))
        return super().vexpr(e)

    def splat(self, e):
        """A uniform value in every lane: broadcast straight from memory through a stepped pointer."""
        f, em = self.f, self.em
        ptr = self.ptrs.get(id(e)) if isinstance(e, E.Index) else None
        if ptr is not None and em.vex and not self.scalar:
            r = self.vreg()
            f.emit("vbroadcastsd" if self.s == "pd" else "vbroadcastss", r, Mem(ptr, size=self.item))
            return r
        if ptr is not None:
            x = f.xmm()
            f.emit(em._mov(self.dtype), x, Mem(ptr, size=self.item))
            return self.broadcast(x)
        return self.broadcast(em.expr(e))


def lane_loop(em, n: For, var, ub=None) -> bool:
    """Emits the lane chunks of `n` before its scalar loop (which starts where they stop) when it fits."""
    for scalar in (False, True):  # SIMD lanes where the accesses allow, else copies of the scalar code
        loop = LaneLoop(em, n, scalar)
        if loop.plan():
            loop.emit(var, ub)
            return True
    return False
