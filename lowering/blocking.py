"""Register blocking of a loop `K` whose body is a small static block: scalar replacement plus unroll-and-jam.

Pattern (what `split`/`tile` with `tail="separate"`, `order`, `unroll` and `vectorize` hints produce for gemm):
a loop K whose body is a sequence of instructions and of inner loops with constant trip counts (tagged
vector or not) around instructions. Each instance of the body in one K iteration becomes a *group*: one
SIMD vector of `lanes` consecutive iterations of a vector loop, or one scalar instance. Array elements that
the body writes must not move with K (`C[i, j]` in a k loop): they are loaded into registers before the
loop, updated there and stored after it (scalar replacement). Every other access (`A[i, k]`, `B[k, j:j+4]`)
is read through a pointer that advances by a constant number of strides per K iteration; each distinct
element or vector is loaded (or broadcast) once per iteration and shared by the groups that use it.

Legality: the operations and their order per element are those of the loop tree (lanes of a vector loop
are independent, as for vectorize.py), so results are bit-identical unless `fastmath=True`, which
contracts `acc + a*b` into one FMA. Eliding the loads/stores of the written elements is legal when nothing
else in the loop can touch them: every access to a written array must be one of the replaced elements
(else no blocking), distinct replaced elements must not overlap (checked here from the constant offsets,
and at run time from the strides), and distinct arrays do not overlap (the dispatcher compiles overlapping
arguments sequentially, without tags; such a model is never blocked). Run-time conditions (unit stride of
vector dimensions, separation of the replaced rows) fall back to the ordinary code of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..analysis import expr as E
from ..asm import Mem
from .blocking_pack import pack_loop
from .full_tiles import full_tiles
from .looptree import For, Run
from .vectorize import WIDTH, _uses, linear

MAX_GROUPS = 48
BLOCKING_ISAS = ("sse2", "avx2", "avx512")  # the tiers the block emitter writes code for (xmm/ymm/zmm)
MAX_TRIP = 64


@dataclass(frozen=True)
class Ref:
    """An array access of a group: per dimension (K coefficient, K-free core, constant offset)."""

    array: str
    ak: tuple[int, ...]
    core: tuple[E.Expr, ...]
    off: tuple[int, ...]
    vdim: int | None  # the dimension that advances with the lanes (vector groups)

    def family(self):
        return (self.array, self.ak, tuple(str(c) for c in self.core))


@dataclass
class Group:
    iid: str
    lanes: int
    target: Ref
    expr: E.Expr  # the instruction's expression, its Index leaves replaced by Ref-carrying markers
    refs: dict = field(default_factory=dict)  # id(Index node) -> Ref


@dataclass
class BlockPlan:
    dtype: str
    groups: list
    written: set
    contiguous: set = field(default_factory=set)  # (array, dim): stride must equal the item size
    separated: list = field(default_factory=list)  # (array, dim, bytes): |stride| must be at least bytes
    invariants: dict = field(default_factory=dict)  # str(expr) -> expr (Var/Const leaves)


def _split_const(e: E.Expr):
    """(core, c) with e == core + c, c an int, for sums/differences with constant terms."""
    if isinstance(e, E.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return E.Const(0), e.value
    if isinstance(e, E.BinOp) and e.op in ("add", "sub"):
        (a, ca), (b, cb) = _split_const(e.left), _split_const(e.right)
        sign = 1 if e.op == "add" else -1
        if isinstance(b, E.Const) and b.value == 0:
            return a, ca + sign * cb
        if isinstance(a, E.Const) and a.value == 0 and e.op == "add":
            return b, ca + cb
        return E.BinOp(e.op, a, b), ca + sign * cb
    return e, 0


def _leaves(e):
    """Nodes of a float expression, not descending into subscripts."""
    yield e
    if not isinstance(e, E.Index):
        for c in E.children(e):
            yield from _leaves(c)


def _strip(e):
    while isinstance(e, E.Cast):
        e = e.operand
    return e


def _const_trip(x: For):
    """The constant trip count of an inner loop starting at a constant, or None."""
    c = x.cond
    if not (isinstance(x.init, E.Const) and x.step == 1 and isinstance(c, E.Compare) and c.op in ("lt", "le")
            and isinstance(c.left, E.Var) and c.left.name == x.var and isinstance(c.right, E.Const)):
        return None
    trip = c.right.value + (c.op == "le") - x.init.value
    return trip if 0 < trip <= MAX_TRIP else None


def _sequential(model) -> bool:
    """The model the dispatcher builds for overlapping arrays: program order, no tags (see schedule.py)."""
    return not model.tags and model.schedule is not None and tuple(model.schedule) == tuple(
        model.original_schedule())


def plan_block(em, n: For) -> BlockPlan | None:
    model = em.model
    if em.isa not in BLOCKING_ISAS or n.step <= 0 or not n.body or _sequential(model):
        return None
    c = n.cond
    if not (isinstance(c, E.Compare) and c.op in ("lt", "le") and isinstance(c.left, E.Var)
            and c.left.name == n.var and not _uses(c.right, {n.var})):
        return None
    # the instances of one K iteration: (run, inner var, first value, lanes)
    items = []
    for x in n.body:
        if isinstance(x, Run):
            items.append((x, None, 0, 1))
            continue
        if not isinstance(x, For) or not all(isinstance(r, Run) for r in x.body):
            return None
        trip = _const_trip(x)
        if trip is None:
            return None
        x0 = x.init.value
        lanes = 1
        if (x.name, "vector") in model.tags:
            ins0 = model.instruction(x.body[0].instruction)
            t = em.tof(ins0.assignee)
            if t.startswith("float"):
                lanes = WIDTH[em.isa] // np.dtype(t).itemsize
        full = trip - trip % lanes if lanes > 1 else 0
        for b in range(0, full, lanes):
            items.extend((r, x.var, x0 + b, lanes) for r in x.body)
        for b in range(full, trip):
            items.extend((r, x.var, x0 + b, 1) for r in x.body)
    if not items or len(items) > MAX_GROUPS:
        return None
    dtype = None
    groups = []
    for run, v, b, lanes in items:
        ins = model.instruction(run.instruction)
        if ins.predicates or not isinstance(ins.assignee, E.Index):
            return None
        t = em.tof(ins.assignee)
        if not t.startswith("float") or dtype not in (None, t):
            return None
        dtype = t
        binds = dict(run.bindings)
        sub = lambda e, m=binds: m.get(e.name) if isinstance(e, E.Var) else None  # noqa: E731
        target = E.substitute(ins.assignee, sub)
        expr = E.substitute(ins.expression, sub)
        g = Group(ins.id, lanes, None, expr)
        for node in [target] + [x for x in E.walk(expr) if isinstance(x, E.Index)]:
            ref = _ref(em, node, n.var, v, b, lanes, dtype)
            if ref is None:
                return None
            g.refs[id(node)] = ref
        g.target = g.refs[id(target)]
        if not _check_expr(em, expr, dtype, {n.var} | ({v} if v else set()), g):
            return None
        groups.append(g)
    plan = BlockPlan(dtype, groups, {g.target.array for g in groups})
    if not _check_refs(plan, np.dtype(dtype).itemsize):
        return None
    return plan


def _ref(em, node: E.Index, kvar, v, b, lanes, dtype) -> Ref | None:
    if em.types.get(node.array) != dtype:
        return None
    ak, core, off, vdim = [], [], [], None
    for d, idx in enumerate(node.indices):
        if v is not None:
            lin = linear(idx, v)
            if lin is None or lin[0] not in (0, 1):
                return None
            if lin[0] == 1:
                if lanes == 1 or vdim is not None:
                    if lanes > 1:
                        return None
                else:
                    vdim = d
            idx = E.substitute(idx, lambda e: E.Const(b) if isinstance(e, E.Var) and e.name == v else None)
        lin = linear(idx, kvar)
        if lin is None or _uses(lin[1], {kvar}):
            return None
        r, cst = _split_const(lin[1])
        ak.append(lin[0])
        core.append(r)
        off.append(cst)
    return Ref(node.array, tuple(ak), tuple(core), tuple(off), vdim)


def _check_expr(em, e, dtype, varying, g) -> bool:
    if isinstance(e, E.Index):
        return True
    try:
        if em.tof(e) != dtype:
            return False
    except Exception:  # an integer expression over loop iterators
        return False
    if isinstance(e, (E.Var, E.Const)):
        return not (isinstance(e, E.Var) and e.name in varying)
    if isinstance(e, E.Cast):
        return _check_expr(em, e.operand, dtype, varying, g)
    if isinstance(e, E.BinOp):
        return e.op in ("add", "sub", "mul", "truediv") and all(
            _check_expr(em, x, dtype, varying, g) for x in (e.left, e.right))
    if isinstance(e, E.UnOp):
        return e.op == "neg" and _check_expr(em, e.operand, dtype, varying, g)
    return False


def _check_refs(plan: BlockPlan, item: int) -> bool:
    """Written arrays: every access K-invariant, of one family, replaced elements pairwise disjoint."""
    replaced: dict[str, dict] = {}
    targets = {g.target for g in plan.groups}
    for g in plan.groups:
        for ref in g.refs.values():
            if g.lanes > 1 and ref.vdim is not None:
                plan.contiguous.add((ref.array, ref.vdim))
            if ref.array not in plan.written:
                continue
            if any(ref.ak) or (g.lanes > 1 and ref.vdim is None) or ref not in targets:
                return False  # a read of a written array must be an element some group keeps in a register
            replaced.setdefault(ref.array, {})[ref] = g.lanes
    for array, refs in replaced.items():
        families = {r.family() for r in refs}
        if len(families) != 1:
            return False
        vdims = {r.vdim for r in refs if r.vdim is not None}
        if len(vdims) > 1:
            return False
        vd = next(iter(vdims), None)
        ndim = len(next(iter(refs)).off)
        varying = [d for d in range(ndim) if d != vd and len({r.off[d] for r in refs}) > 1]
        if len(varying) > 1:
            return False
        if vd is not None:
            plan.contiguous.add((array, vd))
        # along the unit-stride dimension (or a single element), spans with equal other offsets are disjoint
        spans: dict = {}
        for r, lanes in refs.items():
            key = tuple(o for d, o in enumerate(r.off) if d != vd)
            lo = r.off[vd] if vd is not None else 0
            spans.setdefault(key, []).append((lo, lo + lanes))
        for s in spans.values():
            s.sort()
            if any(a[1] > b[0] for a, b in zip(s, s[1:])):
                return False
        if varying:
            lo = min(a for s in spans.values() for a, _ in s)
            hi = max(z for s in spans.values() for _, z in s)
            plan.separated.append((array, varying[0], (hi - lo) * item))
    return True


class BlockEmitter:
    def __init__(self, em, n: For, plan: BlockPlan):
        self.em, self.f, self.n, self.plan = em, em.f, n, plan
        self.item = np.dtype(plan.dtype).itemsize
        self.vsize = WIDTH[em.isa]
        self.p = "pd" if plan.dtype == "float64" else "ps"
        self.s = "sd" if plan.dtype == "float64" else "ss"

    # -- instruction helpers ----------------------------------------------------------------------------
    def reg(self, lanes):
        return self.f.vreg(self.vsize) if lanes > 1 else self.f.xmm()

    def sfx(self, lanes):
        return self.p if lanes > 1 else self.s

    def op(self, op, lanes, a, b):
        f, name = self.f, "xorps" if op == "xor" else f"{op}{self.sfx(lanes)}"
        r = self.reg(lanes)
        if self.em.vex:
            f.emit("v" + name, r, a, b)
        else:
            f.emit("movaps", r, a)
            f.emit(name, r, b)
        return r

    def mov(self, lanes):
        name = f"movu{self.p}" if lanes > 1 else f"mov{self.s}"
        return "v" + name if self.em.vex else name

    def broadcast(self, x):
        f, r = self.f, self.f.vreg(self.vsize)
        if self.em.isa == "sse2":
            f.movaps(r, x)
            f.unpcklpd(r, r) if self.p == "pd" else f.shufps(r, r, 0)
        else:
            f.emit("vbroadcastsd" if self.p == "pd" else "vbroadcastss", r, x)
        return r

    # -- code -------------------------------------------------------------------------------------------
    def emit(self):
        em, f, n, plan = self.em, self.f, self.n, self.plan
        slow, done = f.label("blkslow"), f.label("blkdone")
        k = f.gp64()
        f.mov(k, em.expr(n.init))
        ub = em.expr(n.cond.right)
        f.cmp(k, ub)
        f.jg(done) if n.cond.op == "le" else f.jge(done)  # no iteration: neither path touches memory
        for array, d in sorted(plan.contiguous):
            _, strides = em.array(array)
            f.cmp(strides[d], self.item)
            f.jne(slow)
        for array, d, size in plan.separated:
            _, strides = em.array(array)
            ok = f.label("blksep")
            f.cmp(strides[d], size)
            f.jge(ok)
            f.cmp(strides[d], -size)
            f.jg(slow)
            f.bind(ok)
        self.fast_path(k, ub)
        f.jmp(done)
        f.bind(slow)
        em.plain_loop(n)
        f.bind(done)

    def address(self, ref: Ref, k, with_k=True):
        """Byte address of `ref` at K == k, leaving out the offsets of unit-stride dimensions (displacements)."""
        em, f = self.em, self.f
        base, strides = em.array(ref.array)
        ptr = f.gp64()
        f.mov(ptr, base)
        for d in range(len(ref.core)):
            core, ak = ref.core[d], ref.ak[d] if with_k else 0
            off = 0 if self.unit(ref, d) else ref.off[d]
            zero = isinstance(core, E.Const) and core.value == 0
            if zero and not ak and not off:
                continue
            idx = f.gp64()
            if zero:
                f.xor(idx.d, idx.d)
            else:
                f.mov(idx, em.expr(core))
            if ak:
                t = f.gp64()
                f.mov(t, k)
                if ak != 1:
                    f.imul(t, t, ak)
                f.add(idx, t)
            if off:
                f.add(idx, off)
            f.imul(idx, strides[d])
            f.add(ptr, idx)
        return ptr

    def unit(self, ref: Ref, d: int) -> bool:
        return (ref.array, d) in self.plan.contiguous

    def disp(self, ref: Ref) -> int:
        return sum(ref.off[d] * self.item for d in range(len(ref.off)) if self.unit(ref, d))

    def fast_path(self, k, ub):
        em, f, n, plan = self.em, self.f, self.n, self.plan
        self.pointers(k)
        # replaced elements: loaded once before the loop (addresses recomputed after it: fewer live registers)
        self.accs, cells = {}, []
        for g in plan.groups:
            if g.target not in self.accs:
                self.accs[g.target] = self.reg(g.lanes)
                cells.append((g.target, g.lanes))
        for t, lanes, m in self.cell_mems(cells, k):
            f.emit(self.mov(lanes), self.accs[t], m)
        # loop-invariant scalars (arguments, constants), broadcast once
        self.invariant = {}
        for g in plan.groups:
            for x in _leaves(g.expr):
                if isinstance(x, (E.Var, E.Const)) and (str(x), g.lanes) not in self.invariant:
                    r = em.expr(x)
                    self.invariant[(str(x), g.lanes)] = self.broadcast(r) if g.lanes > 1 else r
                if isinstance(x, E.UnOp) and ("-0", g.lanes) not in self.invariant:
                    r = em.const(-0.0, plan.dtype)
                    self.invariant[("-0", g.lanes)] = self.broadcast(r) if g.lanes > 1 else r
        count = None
        if n.step == 1:  # count the iterations down in one register
            count = f.gp64()
            f.mov(count, ub)
            f.sub(count, k)
            if n.cond.op == "le":
                f.add(count, 1)
        top = f.label("blk")
        f.align(32)
        f.bind(top)
        self.loads = {}
        for g in plan.groups:
            self.statement(g)
        for ptr, fam in self.moving:
            f.add(ptr, self.steps[fam])
        if count is not None:
            f.sub(count, 1)
            f.jnz(top)
        else:
            f.add(k, n.step)
            f.cmp(k, ub)
            f.jle(top) if n.cond.op == "le" else f.jl(top)
        for t, lanes, m in self.cell_mems(cells, k):
            f.emit(self.mov(lanes), m, self.accs[t])

    def cell_mems(self, cells, k):
        ptrs = {}
        for t, lanes in cells:
            key = self.ptr_key(t)
            if key not in ptrs:
                ptrs[key] = self.address(t, k, with_k=False)
            yield t, lanes, Mem(ptrs[key], disp=self.disp(t), size=self.vsize if lanes > 1 else self.item)

    def pointers(self, k):
        """A pointer register per read family and offset, advanced each iteration; offsets along one dimension
        share an anchor pointer with the stride as index register (scales 1, 2, 4, 8)."""
        em, f, n, plan = self.em, self.f, self.n, self.plan
        fams: dict = {}
        for g in plan.groups:
            for ref in g.refs.values():
                if ref.array not in plan.written:
                    fams.setdefault(ref.family(), {}).setdefault(self.ptr_key(ref), ref)
        self.where, self.moving, self.steps = {}, [], {}
        for fam, refs in fams.items():
            array, ak = fam[0], fam[1]
            _, strides = em.array(array)
            offs = [key[1] for key in refs]
            dims = [d for d in range(len(ak)) if len({o[d] for o in offs}) > 1]
            anchors = {}
            if len(dims) == 1 and len(offs) > 1:
                d = dims[0]
                index = f.gp64()
                f.mov(index, strides[d])
                for key in sorted(refs, key=lambda x: x[1][d]):
                    o = key[1][d]
                    for (a, ptr), _ in anchors.items():
                        if o - a in (1, 2, 4, 8):
                            self.where[key] = (ptr, index, o - a)
                            break
                    else:
                        ptr = self.address(refs[key], k)
                        anchors[(o, ptr)] = None
                        self.where[key] = (ptr, None, 0)
            else:
                for key, ref in refs.items():
                    self.where[key] = (self.address(ref, k), None, 0)
            if any(ak):
                step = None
                for d, a in enumerate(ak):
                    if a:
                        t = f.gp64()
                        f.mov(t, strides[d])
                        if a * n.step != 1:
                            f.imul(t, t, a * n.step)
                        if step is None:
                            step = t
                        else:
                            f.add(step, t)
                self.steps[fam] = step
                seen = {}
                for key in refs:
                    seen.setdefault(id(self.where[key][0]), self.where[key][0])
                self.moving.extend((ptr, fam) for ptr in seen.values())

    def ptr_key(self, ref: Ref):
        return (ref.family(), tuple(0 if self.unit(ref, d) else o for d, o in enumerate(ref.off)))

    def load(self, ref: Ref, lanes):
        key = (ref, lanes)
        if key in self.loads:
            return self.loads[key]
        f = self.f
        ptr, index, scale = self.where[self.ptr_key(ref)]
        m = Mem(ptr, index, scale, disp=self.disp(ref), size=self.item) if index is not None and scale \
            else Mem(ptr, disp=self.disp(ref), size=self.item)
        if lanes > 1 and ref.vdim is not None:
            r = f.vreg(self.vsize)
            f.emit(self.mov(lanes), r, m.sized(self.vsize))
        elif lanes > 1 and self.em.isa != "sse2":
            r = f.vreg(self.vsize)
            f.emit("vbroadcastsd" if self.p == "pd" else "vbroadcastss", r, m)
        else:
            r = f.xmm()
            f.emit(self.mov(1), r, m)
            if lanes > 1:
                r = self.broadcast(r)
        self.loads[key] = r
        return r

    def value(self, g: Group, e):
        if isinstance(e, E.Index):
            ref = g.refs[id(e)]
            if ref.array in self.plan.written:
                return self.accs[ref]
            return self.load(ref, g.lanes)
        if isinstance(e, (E.Var, E.Const)):
            return self.invariant[(str(e), g.lanes)]
        if isinstance(e, E.Cast):
            return self.value(g, e.operand)
        if isinstance(e, E.UnOp):
            return self.op("xor", g.lanes, self.value(g, e.operand), self.invariant[("-0", g.lanes)])
        op = {"truediv": "div"}.get(e.op, e.op)
        return self.op(op, g.lanes, self.value(g, e.left), self.value(g, e.right))

    def statement(self, g: Group):
        f, em = self.f, self.em
        acc = self.accs[g.target]
        rhs = _strip(g.expr)
        sfx = self.sfx(g.lanes)
        if isinstance(rhs, E.BinOp) and rhs.op == "add":
            left, right = _strip(rhs.left), _strip(rhs.right)
            is_acc = lambda x: isinstance(x, E.Index) and g.refs[id(x)] == g.target  # noqa: E731
            other = right if is_acc(left) else left if is_acc(right) else None
            if other is not None:
                other_s = _strip(other)
                if em.model.fastmath and em.isa != "sse2" and isinstance(other_s, E.BinOp) and other_s.op == "mul":
                    f.emit(f"vfmadd231{sfx}", acc, self.value(g, other_s.left), self.value(g, other_s.right))
                    return
                x = self.value(g, other)
                if em.vex:  # the operands in Python's order (NaN payloads)
                    f.emit(f"vadd{sfx}", acc, acc, x) if other is right else f.emit(f"vadd{sfx}", acc, x, acc)
                    return
                if other is right:
                    f.emit(f"add{sfx}", acc, x)
                    return
        r = self.value(g, g.expr)
        if r is not acc:
            f.emit("vmovaps" if em.vex else "movaps", acc, r)


_EXIT = {"lt": "jge", "le": "jg", "gt": "jle", "ge": "jl"}


def loop_bound(em, n: For):
    """(jcc that leaves the loop, register) when the loop condition is `var <op> rhs` with rhs computed once
    before the loop: isl's bounds use only parameters and enclosing iterators, which the body cannot change;
    None when rhs reads a scalar the kernel assigns."""
    c = n.cond
    if not (isinstance(c, E.Compare) and c.op in _EXIT and isinstance(c.left, E.Var) and c.left.name == n.var):
        return None
    assigned = {ins.assignee.name for ins in em.model.instructions if isinstance(ins.assignee, E.Var)}
    if _uses(c.right, {n.var} | assigned):
        return None
    if em.tof(c.right) != "int64" or em.tof(c.left) != "int64":
        return None
    r = em.f.gp64()
    em.f.mov(r, em.expr(c.right))
    return _EXIT[c.op], r


def block_loop(em, n: For, partial=None) -> bool:
    """Emits loop `n` register-blocked (with the ordinary loop as the run-time fallback) when it fits, or with
    the tiles that `prefetch=` names for it packed (blocking_pack.py). With `partial` (a function emitting
    `n` unblocked), a loop whose full tiles fit (full_tiles.py) runs blocked where its tile is full."""
    if pack_loop(em, n):
        return True
    plan = plan_block(em, n)
    if plan is not None:
        BlockEmitter(em, n, plan).emit()
        return True
    versioned = full_tiles(n) if partial is not None else None
    plan = plan_block(em, versioned[1]) if versioned is not None else None
    if plan is None:
        return False
    f = em.f
    other, done = f.label("partialtile"), f.label("fulltile")
    em.jump_unless(versioned[0], other)
    BlockEmitter(em, versioned[1], plan).emit()
    f.jmp(done)
    f.bind(other)
    partial(n)
    f.bind(done)
    return True
