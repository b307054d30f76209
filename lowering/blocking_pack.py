"""Packing, the native meaning of `prefetch={"B": "j_outer"}`: at every iteration of the named loop, the box of
the array's elements that the iteration reads is copied into a contiguous, 64-byte-aligned buffer (row-major
inside the box), and the loop body reads the array there.

What it preserves: every value read. The array is one the loop's body never writes (each iteration copies it
afresh, so writes elsewhere in the kernel are seen); distinct arguments do not overlap (a call with
overlapping arguments runs the sequential model, which carries no tags, so it is never packed); the box
covers every element the body can read (exact per-dimension bounds over the inner loops' constant ranges,
clamped to the array's shape, since every read lies inside the array). Nothing is reordered, so results are
bit-identical. When the buffer cannot be allocated the body reads the array in place.

Why: a tile read down a large row stride (`B[k, j:j+8]` over 256 rows of a 1024-wide float64 matrix: rows
8 KB apart, all in one L1 set, one page each) becomes 16 KB of consecutive lines that stay in L1 while the
loops inside reuse it, and register blocking (blocking.py) then sees a unit row stride.
"""

from __future__ import annotations

import numpy as np

from ..analysis import expr as E
from ..asm import Mem
from .looptree import For, If, Run
from .vectorize import _uses
from .workgroups import prefetches

MAX_PACK_BYTES = 16 << 20  # a larger box is rather a copy of the array than a tile of it


def _affine_coef(e: E.Expr, v: str):
    """(coefficient of v, rest) when e == coefficient*v + rest, rest free of v (sums and constant multiples)."""
    if not _uses(e, {v}):
        return 0, e
    if isinstance(e, E.Var):
        return 1, E.Const(0)
    if isinstance(e, E.Cast) and e.dtype == "int64":
        return _affine_coef(e.operand, v)
    if isinstance(e, E.BinOp) and e.op in ("add", "sub"):
        a, b = _affine_coef(e.left, v), _affine_coef(e.right, v)
        if a is None or b is None:
            return None
        sign = 1 if e.op == "add" else -1
        return a[0] + sign * b[0], E.BinOp(e.op, a[1], b[1])
    if isinstance(e, E.BinOp) and e.op == "mul":
        for c, x in ((e.left, e.right), (e.right, e.left)):
            if isinstance(c, E.Const) and isinstance(c.value, int) and not isinstance(c.value, bool):
                inner = _affine_coef(x, v)
                if inner is not None:
                    return c.value * inner[0], E.BinOp("mul", c, inner[1])
    return None


def _const_range(x: For):
    """(first, last) constant bounds of an inner loop's iterator (last from `v < c`, `v <= min(c, ...)`)."""
    c = x.cond
    if not (isinstance(x.init, E.Const) and x.step > 0 and isinstance(c, E.Compare) and c.op in ("lt", "le")
            and isinstance(c.left, E.Var) and c.left.name == x.var):
        return None
    rhs = c.right
    if isinstance(rhs, E.Const):
        last = rhs.value
    elif isinstance(rhs, E.Call) and rhs.func == "min" and any(isinstance(a, E.Const) for a in rhs.args):
        last = min(a.value for a in rhs.args if isinstance(a, E.Const))
    else:
        return None
    return x.init.value, last - (c.op == "lt")


def _reads(model, nodes, array, ranges, out) -> bool:
    """Collects the subscripts (over AST iterators) of every access to `array` under `nodes` into `out` and
    the constant ranges of the loops there into `ranges` (None: not constant); False if one writes it."""
    for x in nodes:
        if isinstance(x, For):
            ranges[x.var] = _const_range(x)
            if not _reads(model, x.body, array, ranges, out):
                return False
        elif isinstance(x, If):
            if not _reads(model, x.then + x.orelse, array, ranges, out):
                return False
        elif isinstance(x, Run):
            ins = model.instruction(x.instruction)
            binds = dict(x.bindings)
            sub = lambda e, m=binds: m.get(e.name) if isinstance(e, E.Var) else None  # noqa: E731
            for acc in ins.accesses:
                if acc.array == array and (acc.write or not acc.affine or acc.checked):
                    return False
            for node in E.walk(ins.expression):
                if isinstance(node, E.Index) and node.array == array:
                    out.append(tuple(E.substitute(i, sub) for i in node.indices))
    return True


def pack_box(model, n: For, array: str):
    """(first element per dimension as expressions over the enclosing loops' iterators, constant sizes) of the
    box of `array` that one iteration of `n` reads, or None when it has no constant extent."""
    ranges, subs = {}, []
    if not _reads(model, n.body, array, ranges, subs) or not subs:
        return None
    from .blocking import _split_const
    offsets, sizes = [], []
    for d in range(len(subs[0])):
        core, lows, highs = None, [], []
        for s in subs:
            rest, lo, hi = s[d], 0, 0
            for v, r in ranges.items():
                if not _uses(rest, {v}):
                    continue
                lin = _affine_coef(rest, v)
                if lin is None or r is None:
                    return None
                a, rest = lin
                lo, hi = lo + a * (r[0] if a > 0 else r[1]), hi + a * (r[1] if a > 0 else r[0])
            c, cst = _split_const(rest)
            if core is None:
                core = c
            elif str(core) != str(c):
                return None
            lows.append(cst + lo)
            highs.append(cst + hi)
        offsets.append(E.BinOp("add", core, E.Const(min(lows))))
        sizes.append(max(highs) - min(lows) + 1)
    return tuple(offsets), tuple(sizes)


def pack_loop(em, n: For) -> bool:
    """Emits loop `n` with the arrays that `prefetch=` names for it packed at every iteration; False when none
    applies (the caller emits the loop as usual)."""
    from .blocking import _sequential
    model = em.model
    if n.step <= 0 or _sequential(model) or any(name == n.name for name, _ in model.tags
                                                  if _ in ("vector", "unroll")):
        return False
    boxes = []
    for array, loop in prefetches(model).items():
        if loop != n.name or array not in em.types:
            continue
        item = np.dtype(em.types[array]).itemsize
        box = pack_box(model, n, array)
        if box is None or item not in (1, 2, 4, 8) or int(np.prod(box[1])) * item > MAX_PACK_BYTES:
            continue
        boxes.append((array, item, box))
    if not boxes:
        return False
    Packer(em, n, boxes).emit()
    return True


class Packer:
    def __init__(self, em, n: For, boxes):
        self.em, self.f, self.n, self.boxes = em, em.f, n, boxes

    def emit(self):
        em, f, n = self.em, self.f, self.n
        packs = []  # (array, item, box, raw buffer, packed base, packed strides)
        for array, item, (offsets, sizes) in self.boxes:
            nbytes = f.gp64()
            f.mov(nbytes, int(np.prod(sizes)) * item + 63)
            raw = f.call("malloc", [nbytes], ret="void*")
            base, strides = em.array(array)
            pbase, pstrides = f.gp64(), [f.gp64() for _ in sizes]
            # without a buffer the body reads the array in place
            f.mov(pbase, base)
            for s, ps in zip(strides, pstrides):
                f.mov(ps, s)
            have = f.label("packbuf")
            f.test(raw, raw)
            f.jz(have)
            row = item
            for d in reversed(range(len(sizes))):
                f.mov(pstrides[d], row)
                row *= sizes[d]
            f.bind(have)
            packs.append((array, item, (offsets, sizes), raw, pbase, pstrides))
        var = f.gp64()
        f.mov(var, em.expr(n.init))
        em.regs[n.var] = var
        top, done = f.label("packloop"), f.label("packdone")
        f.bind(top)
        em.jump_unless(n.cond, done)
        for p in packs:
            self.pack(*p)
        saved = {p[0]: em.arrays[p[0]] for p in packs}
        for array, _, _, _, pbase, pstrides in packs:
            em.arrays[array] = (pbase, pstrides)
        em.stmts(n.body)
        em.arrays.update(saved)
        f.add(var, n.step)
        f.jmp(top)
        f.bind(done)
        for p in packs:
            f.call("free", [p[3]])

    def pack(self, array, item, box, raw, pbase, pstrides):
        """Copies the box (clamped to the array) into the aligned buffer; pbase := buffer - offsets*pstrides."""
        em, f = self.em, self.f
        offsets, sizes = box
        skip = f.label("packskip")
        f.test(raw, raw)
        f.jz(skip)
        base, strides = em.array(array)
        buf = f.gp64()
        f.lea(buf, Mem(raw, disp=63))
        f.and_(buf, -64)
        src, dst = f.gp64(), f.gp64()
        f.mov(src, base)
        f.mov(dst, buf)
        f.mov(pbase, buf)
        counts = []
        for d, (off, size) in enumerate(zip(offsets, sizes)):
            lo = f.gp64()
            f.mov(lo, em.expr(off))
            t = f.gp64()
            f.mov(t, lo)
            f.imul(t, pstrides[d])
            f.sub(pbase, t)  # element lo of the box sits at the start of the buffer
            # copied part: first = max(lo, 0), end = min(lo + size, shape)
            first, end, zero = f.gp64(), f.gp64(), f.gp64()
            f.xor(zero.d, zero.d)
            f.mov(first, lo)
            f.cmp(first, zero)
            f.cmovl(first, zero)
            f.lea(end, Mem(lo, disp=size))
            shape = em.x_Shape(E.Shape(array, d))
            f.cmp(end, shape)
            f.cmovg(end, shape)
            f.sub(end, first)
            f.cmp(end, 0)
            f.jle(skip)  # nothing of the box lies in the array: the body reads none of it
            counts.append(end)
            f.mov(t, first)
            f.imul(t, strides[d])
            f.add(src, t)
            f.sub(first, lo)
            f.imul(first, pstrides[d])
            f.add(dst, first)
        self.copy(0, src, dst, counts, strides, pstrides, item)
        f.bind(skip)

    def copy(self, d, src, dst, counts, strides, pstrides, item):
        f = self.f
        s, t, left = f.gp64(), f.gp64(), f.gp64()
        f.mov(s, src)
        f.mov(t, dst)
        f.mov(left, counts[d])
        top = f.label("packcopy")
        f.bind(top)
        if d + 1 < len(counts):
            self.copy(d + 1, s, t, counts, strides, pstrides, item)
        else:
            x = f.gp64()
            f.mov(x.view(item), Mem(s, size=item))
            f.mov(Mem(t, size=item), x.view(item))
        f.add(s, strides[d])
        f.add(t, pstrides[d])
        f.sub(left, 1)
        f.jnz(top)
