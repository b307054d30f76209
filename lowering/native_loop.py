"""Scalar innermost loops with strength-reduced addressing and scalar replacement (native emitter).

The plain scalar loop recomputes every address from the iterators each iteration (an imul per index and
dimension). Here, for an innermost loop whose body is straight-line instructions:

- each array access whose indices are affine in the loop iterator, with the rest invariant in the loop,
  reads and writes through a pointer set to its first iteration's address before the loop and advanced
  by `step * sum(coefficient * stride)` after each iteration (one add instead of the multiplications);
  accesses a constant apart in one dimension (`A[i, j - 1]`, `A[i, j + 1]`) share one pointer;
- an array element that every access of its array in the loop names by the same invariant index
  (`tmp[i]` in `tmp[i] += A[i, j] * x[j]`) lives in a register: loaded before the first iteration,
  stored after the last. The loop's other arrays are distinct objects (a call whose arrays overlap runs
  the model built with `arrays_overlap`, which this never applies to), so nothing else reaches the element;
- the value a loop stores is handed in a register to the load of the same element in the next iteration
  (`A[i, j - 1]` after `A[i, j] = ...`), off the critical path of such recurrences (see `forwarding`);
- float constants of the body are loaded into registers once;
- a loop around just such a loop (`fast_nest`) keeps the inner loop's start pointers and advances them.

Every operation and its order stay those of the loop tree, so results are bit-identical. The loop is
rotated (condition at the bottom) behind one test of the first iteration, which also keeps the
pre-loop loads of replaced elements from touching memory the loop would never access.
"""

from __future__ import annotations

import numpy as np

from ..analysis import expr as E
from ..asm import Mem
from .looptree import For, Run
from .vectorize import _constant

_INVERSE = {"jge": "jl", "jg": "jle", "jle": "jg", "jl": "jge"}
_INDEX_OPS = {"add", "sub", "mul", "floordiv", "mod"}
MAX_CONSTANTS = 6
MAX_NEST_POINTERS = 4  # pointers an enclosing loop keeps live (more spill: heat-3d's 8 ran slower)


def _plain_index(e: E.Expr) -> bool:
    """Integer arithmetic over variables and constants only (no loads, no run-time checks)."""
    for x in E.walk(e):
        if isinstance(x, E.BinOp) and x.op not in _INDEX_OPS:
            return False
        if not isinstance(x, (E.Var, E.Const, E.BinOp, E.Cast)) and not (isinstance(x, E.UnOp) and x.op == "neg"):
            return False
    return True


def affine(e: E.Expr, v: str):
    """(coefficient of v, rest) when e == coefficient*v + rest with rest free of v, else None: `linear`, also
    through negation (isl writes downward loops as j = -c3) and multiplication by a constant."""
    if not any(isinstance(x, E.Var) and x.name == v for x in E.walk(e)):
        return 0, e
    if isinstance(e, E.Var):
        return 1, E.Const(0)
    if isinstance(e, E.Cast) and e.dtype == "int64":
        return affine(e.operand, v)
    if isinstance(e, E.UnOp) and e.op == "neg":
        inner = affine(e.operand, v)
        return None if inner is None else (-inner[0], E.UnOp("neg", inner[1]))
    if isinstance(e, E.BinOp) and e.op in ("add", "sub"):
        a, b = affine(e.left, v), affine(e.right, v)
        if a is None or b is None:
            return None
        sign = 1 if e.op == "add" else -1
        return a[0] + sign * b[0], E.BinOp(e.op, a[1], b[1])
    if isinstance(e, E.BinOp) and e.op == "mul":
        for x, k in ((e.left, e.right), (e.right, e.left)):
            c = _constant(k)
            inner = affine(x, v) if c is not None else None
            if inner is not None:
                return inner[0] * c, E.BinOp("mul", inner[1], k)
    return None


def _bindings(run: Run):
    table = dict(run.bindings)
    return lambda x: table.get(x.name) if isinstance(x, E.Var) else None


class FastLoop:
    """Plans and emits one innermost scalar loop; `plan()` is None when the loop does not qualify."""

    def __init__(self, em, n: For):
        self.em, self.n = em, n
        self.refs: dict[tuple, list] = {}  # pointer key -> [array, AST index exprs, coefficients]
        self.sites: list[dict] = []  # per run: id(Index node) -> pointer key
        self.constants: dict[tuple, str] = {}
        self.preset: dict[tuple, object] = {}  # pointer group -> register with its start (fast_nest)

    def plan(self) -> bool:
        em, n = self.em, self.n
        if not n.body or not all(isinstance(x, Run) for x in n.body) or em.tof(E.Var(n.var)) != "int64":
            return False
        model = em.model
        written = {model.instruction(r.instruction).assignee.name for r in n.body
                   if isinstance(model.instruction(r.instruction).assignee, E.Var)}
        if any(isinstance(x, E.Var) and x.name in written for x in E.walk(n.cond)):
            return False
        for run in n.body:
            ins = model.instruction(run.instruction)
            sub = _bindings(run)
            sites = {}
            for root in (ins.assignee, ins.expression):
                for x in E.walk(root):
                    if isinstance(x, E.Index):
                        key = self.reference(x, sub, written)
                        if key is not None:
                            sites[id(x)] = key
                    elif isinstance(x, E.Const) and em.tof(x).startswith("float"):
                        self.constants[(repr(x.value), em.tof(x))] = em.tof(x)
                    elif isinstance(x, (E.UnOp, E.Call)) and em.tof(x).startswith("float") and (
                            isinstance(x, E.UnOp) or x.func in ("abs", "fabs")):
                        self.constants[(repr(-0.0), em.tof(x))] = em.tof(x)  # the sign-bit mask
            self.sites.append(sites)
        if len(self.constants) > MAX_CONSTANTS:
            self.constants = {}
        self.replaced = self.replaceable(written)
        self.forwarded = self.forwarding()
        return bool(self.refs)

    def forwarding(self) -> dict:
        """{stored key: loaded key} where the load reads, one iteration later, the element the store wrote
        (`A[i, j - 1]` after `A[i, j] = ...` in a loop over j): the stored value is handed on in a register
        rather than through memory (store-to-load forwarding is on the critical path of such recurrences).
        The store must be the only one to its array and the last access to it in the body (so that every
        load of the iteration reads memory before it), and no other array may share memory."""
        em, body = self.em, self.n.body
        if em.model.arrays_overlap or any(em.model.instruction(r.instruction).predicates for r in body):
            return {}
        out = {}
        for k, (run, sites) in enumerate(zip(body, self.sites)):
            target = em.model.instruction(run.instruction).assignee
            key = sites.get(id(target))
            if key is None or key in self.replaced:
                continue
            array, _, coefs, group, anchor, shift, _ = self.refs[key]
            if not em.types[array].startswith("float") or sum(1 for c in coefs if c) != 1 \
                    or coefs[anchor] * self.n.step not in (1, -1):
                continue
            later = any(isinstance(x, E.Index) and x.array == array for r in body[k + 1:]
                        for root in (em.model.instruction(r.instruction).assignee,
                                     em.model.instruction(r.instruction).expression) for x in E.walk(root))
            stores = [r for r in body if isinstance(em.model.instruction(r.instruction).assignee, E.Index)
                      and em.model.instruction(r.instruction).assignee.array == array]
            if later or len(stores) != 1:
                continue
            wanted = shift - coefs[anchor] * self.n.step
            for other, ref in self.refs.items():
                if ref[3] == group and ref[5] == wanted:
                    out[key] = other
        return out

    def reference(self, x: E.Index, sub, written):
        """The pointer key of access `x` when its address is affine in the iterator, else None."""
        n = self.n
        indices = tuple(E.substitute(i, sub) for i in x.indices)
        coefs = []
        for idx in indices:
            if not _plain_index(idx):
                return None
            lin = affine(idx, n.var)
            if lin is None or any(isinstance(v, E.Var) and v.name in written for v in E.walk(lin[1])):
                return None
            coefs.append(lin[0])
        key = (x.array, tuple(str(i) for i in indices))
        if key not in self.refs:
            parts = [_split_constant(i) for i in indices]
            moving = [d for d, c in enumerate(coefs) if c]
            anchor = moving[0] if len(moving) == 1 else len(indices) - 1
            shift = parts[anchor][1] if indices else 0
            group = (x.array, tuple(coefs), tuple(str(p[0]) if d == anchor else str(i)
                                                  for d, (p, i) in enumerate(zip(parts, indices))))
            start = tuple(parts[d][0] if d == anchor else i for d, i in enumerate(indices))
            self.refs[key] = [x.array, indices, tuple(coefs), group, anchor, shift, start]
        return key

    def replaceable(self, written) -> set:
        """Keys of invariant elements kept in registers: the only element of its array the loop touches."""
        em = self.em
        if em.model.arrays_overlap:
            return set()
        if any(em.model.instruction(r.instruction).predicates for r in self.n.body):
            return set()  # a guarded access may name an element only valid when its guard holds
        touched: dict[str, set] = {}
        for run, sites in zip(self.n.body, self.sites):
            ins = em.model.instruction(run.instruction)
            for root in (ins.assignee, ins.expression):
                for x in E.walk(root):
                    if isinstance(x, E.Index):
                        touched.setdefault(x.array, set()).add(sites.get(id(x)))
        out = set()
        for array, keys in touched.items():
            if len(keys) == 1 and None not in keys:
                key = next(iter(keys))
                if not any(self.refs[key][2]) and em.types[array].startswith("float"):
                    out.add(key)
        return out

    # -- code -------------------------------------------------------------------------------------------
    def emit(self) -> None:
        em, n = self.em, self.n
        f = em.f
        from .blocking import loop_bound
        var = f.gp64()
        f.mov(var, em.expr(n.init))
        em.regs[n.var] = var
        em.vector_part(n, var)
        skip = f.label("fskip")
        bound = loop_bound(em, n)
        self.leave(bound, skip)
        addresses = self.addresses()
        homes = {}
        for key in self.replaced:
            array = self.refs[key][0]
            r = f.xmm()
            f.emit(em._mov(em.types[array]), r, addresses[key])
            homes[key] = r
        carries = {}
        for stored, loaded in self.forwarded.items():
            r = f.xmm()
            f.emit(em._mov(em.types[self.refs[loaded][0]]), r, addresses[loaded])
            homes[loaded] = carries[stored] = r
        saved = dict(em.hoisted)
        for (value, dtype) in self.constants:
            em.hoisted[(value, dtype)] = em.const(float(value), dtype)
        top = f.label("ftop")
        f.align(16)
        f.bind(top)
        for run, sites in zip(n.body, self.sites):
            em.fast = {k: homes.get(key, addresses[key]) for k, key in sites.items()}
            em.forward = {k: carries[key] for k, key in sites.items() if key in carries}
            em.run(run)
        em.fast, em.forward = {}, {}
        loop_back(em, n, var, self.advances, bound, top)
        em.hoisted = saved
        stored = {key for sites, run in zip(self.sites, n.body)
                  for key in (sites.get(id(em.model.instruction(run.instruction).assignee)),)
                  if key in self.replaced}
        for key in stored:
            r, array = homes[key], self.refs[key][0]
            f.emit(em._mov(em.types[array]), addresses[key], r)
        f.bind(skip)

    def leave(self, bound, label) -> None:
        em, f = self.em, self.em.f
        if bound is None:
            em.jump_unless(self.n.cond, label)
        else:
            f.cmp(em.regs[self.n.var], bound[1])
            f.emit(bound[0], label)

    def addresses(self) -> dict:
        """key -> Mem of each access, at the iterator's current value; sets `advances`, the (pointer, bytes)
        added after each iteration. Accesses that differ by a constant in one dimension (`A[i, j - 1]`,
        `A[i, j]`, `A[i, j + 1]`) share a pointer and address the others with a register holding that
        constant times the stride: fewer pointers to keep in registers and to advance."""
        em = self.em
        pointers, steps, offsets, out = {}, {}, {}, {}
        self.advances = []
        for key, (array, _, coefs, group, anchor, shift, start) in self.refs.items():
            if group not in pointers:
                pointers[group] = self.pointer(array, start, self.preset.get(group))
                if any(coefs):
                    self.advances.append((pointers[group], self.step(array, coefs, steps)))
            size = np.dtype(em.types[array]).itemsize
            if shift == 0:
                out[key] = Mem(pointers[group], disp=0, size=size)
                continue
            if (array, anchor, shift) not in offsets:
                stride = em.array(array)[1][anchor]
                if shift == 1:
                    offsets[(array, anchor, shift)] = stride
                else:
                    t = em.f.gp64()
                    em.f.imul(t, stride, shift)
                    offsets[(array, anchor, shift)] = t
            out[key] = Mem(pointers[group], offsets[(array, anchor, shift)], 1, size=size)
        return out

    def pointer(self, array, indices, preset=None):
        """base + sum(index * stride) at the iterator's current value (a copy of `preset`, that address kept
        by the enclosing loop, when given)."""
        if preset is not None:
            ptr = self.em.f.gp64()
            self.em.f.mov(ptr, preset)
            return ptr
        return start_pointer(self.em, array, indices)

    def step(self, array, coefs, cache):
        return advance(self.em, array, coefs, self.n.step, cache)


def loop_back(em, n: For, var, advances, bound, top) -> None:
    """The bottom of a rotated loop: step the variable and the pointers, jump back to `top` while the
    condition holds (`bound`: (jcc leaving the loop, bound register) from loop_bound, or None)."""
    f = em.f
    f.add(var, n.step)
    for ptr, s in advances:
        f.add(ptr, s)
    if bound is None:
        r = em.expr(n.cond)
        f.test(r, r)
        f.jnz(top)
    else:
        f.cmp(var, bound[1])
        f.emit(_INVERSE[bound[0]], top)


def start_pointer(em, array, indices):
    """A new register with base + sum(index * stride) of `array` for the current register values."""
    f = em.f
    base, strides = em.array(array)
    ptr = f.gp64()
    f.mov(ptr, base)
    for d, idx in enumerate(indices):
        if isinstance(idx, E.Const) and idx.value == 0:
            continue
        t = f.gp64()
        f.mov(t, em.expr(idx))
        f.imul(t, strides[d])
        f.add(ptr, t)
    return ptr


def advance(em, array, coefs, step, cache):
    """The byte advance per iteration, sum(step * coefficient * stride), shared by equal advances."""
    f = em.f
    if (array, coefs) in cache:
        return cache[(array, coefs)]
    _, strides = em.array(array)
    moving = [d for d, c in enumerate(coefs) if c]
    if len(moving) == 1 and coefs[moving[0]] * step == 1:
        cache[(array, coefs)] = strides[moving[0]]  # the usual case: one element along one dimension
        return strides[moving[0]]
    total = None
    for d, c in enumerate(coefs):
        k = c * step
        if k == 0:
            continue
        t = f.gp64()
        f.mov(t, strides[d])
        if k != 1:
            f.imul(t, t, k)
        if total is None:
            total = t
        else:
            f.add(total, t)
    cache[(array, coefs)] = total
    return total


def _split_constant(e: E.Expr) -> tuple[E.Expr, int]:
    """(rest, k) with e == rest + k for a small constant k (`j + 1` -> (j, 1)); (e, 0) otherwise."""
    k = _constant(e)
    if k is not None:
        return E.Const(0), k
    while isinstance(e, E.Cast) and e.dtype == "int64":
        e = e.operand
    if isinstance(e, E.BinOp) and e.op in ("add", "sub"):
        k = _constant(e.right)
        if k is not None and abs(k) < 1 << 16:
            return e.left, k if e.op == "add" else -k
        k = _constant(e.left)
        if k is not None and e.op == "add" and abs(k) < 1 << 16:
            return e.right, k
    return e, 0


def fast_loop(em, n: For) -> bool:
    """Emits `n` as a strength-reduced scalar loop when it qualifies (see the module docstring)."""
    loop = FastLoop(em, n)
    if not loop.plan():
        return False
    loop.emit()
    return True


def fast_nest(em, n: For) -> bool:
    """A loop whose body is one inner loop (conv2d's `di` around `dj`, gemm's `k` around its vector loop over
    `j`): the inner loop's start pointers are affine in this loop's iterator, so they are computed once
    before this loop and advanced after each of its iterations; the inner loop starts from them (a copy, for
    a FastLoop's advancing pointers; as they are, for a vector loop's [pointer + iterator * itemsize])
    instead of computing base + sum(index * stride) afresh."""
    if len(n.body) != 1 or not isinstance(n.body[0], For) or em.tof(E.Var(n.var)) != "int64":
        return False
    inner = n.body[0]
    written = {em.model.instruction(r.instruction).assignee.name for r in inner.body if isinstance(r, Run)
               and isinstance(em.model.instruction(r.instruction).assignee, E.Var)}
    if not all(isinstance(r, Run) for r in inner.body) or any(
            isinstance(x, E.Var) and x.name in written for e in (inner.init, n.cond) for x in E.walk(e)):
        return False
    if (inner.name, "vector") in em.model.tags:
        return _vector_nest(em, n, inner, written)
    loop = FastLoop(em, inner)
    if not loop.plan():
        return False
    first = lambda x: inner.init if isinstance(x, E.Var) and x.name == inner.var else None  # noqa: E731
    starts = {}
    for array, _, _, group, _, _, start in loop.refs.values():
        if group not in starts:
            starts[group] = (array, tuple(E.substitute(i, first) for i in start))
    return _nest(em, n, starts, written, loop.preset, loop.emit)


def _vector_nest(em, n: For, inner: For, written) -> bool:
    from .vectorize import Vectorizer
    plan = Vectorizer(em).plan(inner)
    if plan is None:
        return False
    names = {}  # the enclosing loops' variables, as the inner body's instructions name them
    for run in inner.body:
        for name, value in run.bindings:
            if not any(isinstance(x, E.Var) and x.name == inner.var for x in E.walk(value)):
                if names.setdefault(name, value) != value:
                    return False
    outer = lambda x: names.get(x.name) if isinstance(x, E.Var) else None  # noqa: E731
    starts = {}
    for e, _, start, _ in Vectorizer.stream_starts(plan).values():
        ident = (e.array, tuple(str(i) for i in start))
        if ident not in starts:
            starts[ident] = (e.array, tuple(E.substitute(i, outer) for i in start))
    presets: dict = {}

    def body():
        em.vpreset = presets
        em.loop(inner)
        em.vpreset = {}
    return _nest(em, n, starts, written | plan.temps, presets, body)


def _nest(em, n: For, starts: dict, written, presets: dict, body) -> bool:
    """Emits loop `n` around `body()`, with a pointer per entry of `starts` ({key: (array, indices)}) in
    `presets` and advanced along with the iterator; False (nothing emitted) when an index is not affine."""
    if len(starts) > MAX_NEST_POINTERS:
        return False
    coefs = {}
    for key, (_, indices) in starts.items():
        cs = []
        for idx in indices:
            lin = affine(idx, n.var) if _plain_index(idx) else None
            if lin is None or any(isinstance(v, E.Var) and v.name in written for v in E.walk(lin[1])):
                return False
            cs.append(lin[0])
        coefs[key] = tuple(cs)
    f = em.f
    from .blocking import loop_bound
    var = f.gp64()
    f.mov(var, em.expr(n.init))
    em.regs[n.var] = var
    skip = f.label("nskip")
    bound = loop_bound(em, n)
    if bound is None:
        em.jump_unless(n.cond, skip)
    else:
        f.cmp(var, bound[1])
        f.emit(bound[0], skip)
    steps, advances = {}, []
    for key, (array, indices) in starts.items():
        presets[key] = start_pointer(em, array, indices)
        if any(coefs[key]):
            advances.append((presets[key], advance(em, array, coefs[key], n.step, steps)))
    top = f.label("ntop")
    f.bind(top)
    body()
    loop_back(em, n, var, advances, bound, top)
    f.bind(skip)
    return True
