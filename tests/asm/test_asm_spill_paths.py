"""The allocator's fast paths give exactly what the general paths give: the one-spilled-value rewrite
(``Spiller.rewrite_one_value``) against the per-operand plans, and the pruned eviction search against a
full one, on random programs under register pressure (narrow views, immediates, zero idioms, addresses)."""

from __future__ import annotations

import random

import pytest

from polyjit.asm import Function, Mem, allocate, check_allocation
from polyjit.asm import regalloc as regalloc_module
from polyjit.asm.bench import build_function
from polyjit.asm.spill import Spiller


def _random_program(seed: int, isa: str = "avx2") -> Function:
    rng = random.Random(seed)
    f = Function(f"spill_paths{seed}", args=[("x", "double*"), ("n", "int64_t")], ret="int64_t", isa=isa)
    x, n = f.args
    gps = [f.gp64() for _ in range(rng.randint(17, 24))]   # all live to the end: more than fit
    nvec = rng.randint(34, 40) if isa == "avx512" else rng.randint(17, 24)
    vecs = [f.ymm() if isa != "sse2" else f.xmm() for _ in range(nvec)]
    for j, g in enumerate(gps):
        f.mov(g, j)
    for v in vecs:
        if isa == "sse2":
            f.xorpd(v, v)
        else:
            f.vxorpd(v.x, v.x, v.x)
    for _ in range(rng.randint(60, 120)):
        a, b = rng.choice(gps), rng.choice(gps)
        va, vb = rng.choice(vecs), rng.choice(vecs)
        k = rng.randrange(14)
        if k == 0:
            f.add(a, b)
        elif k == 1:
            f.add(a, rng.choice([1, 1000, -5]))
        elif k == 2:
            f.mov(a, rng.choice([7, 2**40 + 3]))            # imm64: no memory form when folded
        elif k == 3:
            f.xor(a.d, a.d)                                 # zero idiom on a (maybe spilled) value
        elif k == 4:
            f.mov(a.b, b.b)                                 # narrow write: the other bytes stay
        elif k == 5:
            f.imul(a, b)
        elif k == 6:
            f.mov(a, Mem(x, disp=8 * rng.randrange(8), size=8))
        elif k == 7:
            f.cmp(a, b)
        elif k == 8:
            f.sub(a, a)
        elif isa == "sse2":
            f.addpd(va, vb)
        elif k == 9:
            f.vaddpd(va, va, vb)
        elif k == 10:
            f.vfmadd231pd(va, vb, Mem(x, disp=32 * rng.randrange(4), size=32))
        elif k == 11:
            f.vaddsd(va.x, va.x, vb.x)
        elif k == 12:
            f.vmovupd(Mem(x, disp=32 * rng.randrange(4), size=32), va)
        else:
            f.vmulpd(va, vb, vb)
    for v in vecs:  # every vector live to the end too
        if isa == "sse2":
            f.movupd(Mem(x, size=16), v)
        else:
            f.vmovupd(Mem(x, size=32), v)
    total = f.gp64()
    f.xor(total.d, total.d)
    for g in gps:
        f.add(total, g)
    f.ret(total)
    return f


def _programs():
    yield build_function().program()
    yield build_function(isa="avx512", nvec=40, nint=16).program()
    for seed in range(12):
        yield _random_program(seed, ("avx2", "sse2", "avx512")[seed % 3]).program()


def _steps_without(monkeypatch, prog, target, name, replacement):
    with monkeypatch.context() as patch:
        patch.setattr(target, name, replacement)
        return allocate(prog)


@pytest.mark.parametrize("index", range(14))
def test_one_value_rewrite_equals_the_general_plans(monkeypatch, index):
    prog = list(_programs())[index]
    fast = allocate(prog)
    assert fast.spilled
    check_allocation(prog, fast)
    general = _steps_without(monkeypatch, prog, Spiller, "rewrite_one_value", lambda self, *args: False)
    assert fast.steps == general.steps
    assert fast.assignment == general.assignment


def _full_evict(cands, j, masks, weight, ends, fixed, occupants, assigned, spilled, occupancy):
    """The eviction search without pruning (the reference for ``regalloc._evict``)."""
    m = masks[j]
    best = best_n = None
    for n in cands:
        if fixed[n] & m:
            continue
        cost, far = 0.0, 0
        for o in occupants[n]:
            if masks[o] & m:
                cost += weight[o]
                far = max(far, ends[o])
        if best is None or (cost, -far) < best:
            best, best_n = (cost, -far), n
    if best is None or (weight[j], -ends[j]) <= best:
        return None
    keep, occ = [], fixed[best_n]
    for o in occupants[best_n]:
        if masks[o] & m:
            del assigned[o]
            spilled.add(o)
        else:
            keep.append(o)
            occ |= masks[o]
    occupants[best_n] = keep
    occupancy[best_n] = occ
    return best_n


@pytest.mark.parametrize("index", range(14))
def test_pruned_eviction_equals_the_full_search(monkeypatch, index):
    prog = list(_programs())[index]
    pruned = allocate(prog)
    full = _steps_without(monkeypatch, prog, regalloc_module, "_evict", _full_evict)
    assert pruned.spilled == full.spilled
    assert pruned.steps == full.steps


@pytest.mark.parametrize("index", range(14))
def test_one_value_rewrite_equals_the_effects_based_rewrite(monkeypatch, index):
    """The int-keyed one-value plans (folding, the no-fold retry for another address or a form without a
    memory operand, one view at several operands) emit what the general ``Spiller.rewrite`` emits."""
    prog = list(_programs())[index]
    fast = allocate(prog)
    with monkeypatch.context() as patch:
        patch.setattr(Spiller, "rewrite_one_value", lambda self, i, it, new_ops, fast, steps: False)
        patch.setattr(Spiller, "rewrite_simple", lambda self, i, it, new_ops, fast, steps: self.rewrite(i, it, steps))
        general = allocate(prog)
    assert fast.steps == general.steps
    assert fast.assignment == general.assignment
    check_allocation(prog, fast)


def test_returns_with_operands_get_the_epilogue():
    """A ``ret imm16`` has an operand: the epilogue still goes before it (found by origin)."""
    f = Function("ret_imm", args=[("x", "int64_t")], ret="int64_t", isa="avx2")
    (x,) = f.args
    v = f.gp64()
    f.mov(v, x)
    y = f.ymm()
    f.vxorpd(y, y, y)                 # a ymm register: the epilogue has a vzeroupper
    f.vmovupd(Mem(v, size=32), y)
    f.emit("ret", 0)
    prog = f.program()
    alloc = allocate(prog)
    items = alloc.items
    assert items[-1].mnemonic == "ret" and items[-1].operands == (0,)
    assert [it.mnemonic for it in items].count("ret") == 1
    assert items[-2].mnemonic == "vzeroupper"
    check_allocation(prog, alloc)


def test_a_value_read_by_the_general_path_before_any_planned_rewrite():
    """A spilled value whose first rewritten instruction is a general-path read (its load through scratch 0
    made there, no store yet) and which a one-value plan then reads and writes: the plan finds both moves
    (regression: the store step was taken from an entry the general path had only half filled)."""
    import numpy as np

    f = Function("use_before_def", args=[("x", "double*")], ret="double", isa="sse2")
    (x,) = f.args
    vs = [f.xmm() for _ in range(22)]
    t = f.xmm()
    define, use, end = f.label("define"), f.label("use"), f.label("end")
    f.jmp(define)
    f.bind(use)  # laid out before the definitions: the reads below are each value's first rewrite
    f.xorpd(t, t)
    for v in vs:
        f.movsd(t, v)   # register movsd merges (operand-dependent effects): the general path
    for v in vs:
        f.addsd(v, t)   # read and written, legacy SSE (no folding): the one-value plan
    f.jmp(end)
    f.bind(define)
    for j, v in enumerate(vs):
        f.movsd(v, Mem(x, disp=8 * j, size=8))
    f.jmp(use)
    f.bind(end)
    for v in vs:
        f.addsd(t, v)
    f.ret(t)
    prog = f.program()
    alloc = allocate(prog)
    assert alloc.spilled
    check_allocation(prog, alloc)
    xs = np.arange(1.0, 23.0)
    expected = xs[-1] + sum(xs + xs[-1])
    assert f.compile()(xs) == expected
