"""The memoised fast paths agree with the straightforward ones: precompiled encoders with the reference
emitter (first use and cache hits with other addresses and immediates), the allocator's output with
the independent checker on the benchmark's spilling function, and the allocator's fused liveness walk
with a plain instruction-level dataflow."""

from __future__ import annotations

import random

import numpy as np
import pytest
from asm_draw import draw_instruction, draw_mem

from polyjit.asm import Function, allocate, check_allocation
from polyjit.asm.bench import build_function
from polyjit.asm.effects import register_effects
from polyjit.asm.encoder import encode_instruction, encode_with_form, select_form
from polyjit.asm.forms import FORMS
from polyjit.asm.liveness import analyse, build_cfg
from polyjit.asm.operands import GP, Instr, Mem, Reg


def _reference(ins):
    return encode_with_form(select_form(ins), ins)


def _other_memory(rng, op: Mem, evex: bool) -> Mem:
    """Another address with the same form-selection signature (size, broadcast, VSIB index kind)."""
    if op.index is not None and op.index.kind != GP:
        base = Reg(GP, 8, rng.randrange(16)) if rng.random() < 0.9 else None
        index = Reg(op.index.kind, op.index.size, rng.randrange(32 if evex else 16))
        if (index.num >= 16) != (op.index.num >= 16):
            index = op.index
        return Mem(base, index, rng.choice((1, 2, 4, 8)), rng.randint(-5000, 5000), op.size)
    m = draw_mem(rng, op.size, op.size or 1)
    return Mem(m.base, m.index, m.scale, m.disp, op.size, op.bcst)


def test_precompiled_encoders_match_the_reference_emitter():
    rng = random.Random(99)
    checked = 0
    for forms in FORMS.values():
        for form in forms:
            if any(k.rel for k in form.operands):
                continue
            for _ in range(4):
                ins = draw_instruction(rng, form)
                assert encode_instruction(ins) == _reference(ins), ins  # compiles the key's encoder
                ops = tuple(_other_memory(rng, o, form.encoding == "evex") if type(o) is Mem else o
                            for o in ins.operands)
                again = ins._replace(operands=ops)
                assert encode_instruction(again) == _reference(again), again  # a cache hit, new address
                checked += 1
    assert checked > 4000


def test_precompiled_immediates_and_labels():
    rax = Reg(GP, 8, 0)
    for value in (0, 1, -1, 127, 128, -129, 0x7FFFFFFF, -0x80000000, 0xFFFFFFFF, 2**40):
        for ins in (Instr("mov", (rax, value)), Instr("add", (Mem(rax, disp=8, size=8), value & 0xFFFF))):
            assert encode_instruction(ins) == _reference(ins)
    f = Function("lab", args=[("x", "double*")], ret="double", isa="avx2")
    (x,) = f.args
    v = f.xmm()
    f.vmovsd(v, f.const([1.5]))
    f.vaddsd(v, v, Mem(x, size=8))
    f.ret(v)
    fn = f.compile()
    assert fn(np.array([2.0])) == 3.5


def test_benchmark_function_passes_the_checker():
    for kwargs in ({}, {"nvec": 10, "nint": 6}, {"isa": "avx512", "nvec": 40}):
        prog = build_function(**kwargs).program()
        check_allocation(prog, allocate(prog))  # spilled aligned moves become unaligned: still accepted


def _reference_masks(items) -> dict:
    """Per value (class, num, virtual): position bitsets (use at 2i, def at 2i+1) from a plain
    instruction-level dataflow over ``register_effects``: bit 2i when live into item i, bit 2i+1 when
    defined by it or live out of it."""
    bounds, succs = build_cfg(items)
    effects = [register_effects(it) if type(it) is Instr else ((), ()) for it in items]
    uses = [{(r.cls, r.num, r.virtual) for r in u} for u, _ in effects]
    defs = [{(r.cls, r.num, r.virtual) for r in d} for _, d in effects]
    block_end = {e - 1: b for b, (s, e) in enumerate(bounds) if e > s}
    n = len(items)
    live_in = [set() for _ in range(n)]
    live_out = [set() for _ in range(n)]
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            if i in block_end:
                out = set().union(*(live_in[bounds[b][0]] for b in succs[block_end[i]]))
            else:
                out = set(live_in[i + 1])
            new_in = uses[i] | (out - defs[i])
            if new_in != live_in[i] or out != live_out[i]:
                live_in[i], live_out[i] = new_in, out
                changed = True
    masks: dict = {}
    for i in range(n):
        for key in live_in[i]:
            masks[key] = masks.get(key, 0) | 1 << (2 * i)
        for key in live_out[i] | defs[i]:
            masks[key] = masks.get(key, 0) | 1 << (2 * i + 1)
    return masks


def _random_program(rng) -> Function:
    """Branches, a loop, calls, memory operands, narrow and read-modify-write GP operations, vector
    arithmetic and zero idioms."""
    f = Function("rnd", args=[("n", "int64_t"), ("x", "double*")], ret="double", isa="avx2")
    n, x = f.args
    gps = [f.gp64() for _ in range(rng.randint(2, 8))]
    vecs = [f.ymm() for _ in range(rng.randint(2, 8))]
    for g in gps:
        f.mov(g, rng.randrange(100))
    for v in vecs:
        f.vxorpd(v, v, v)
    labels = [f.label() for _ in range(3)]
    bound: list = []
    for _ in range(rng.randint(10, 60)):
        k = rng.random()
        a, b = rng.choice(gps), rng.choice(gps)
        p, q = rng.choice(vecs), rng.choice(vecs)
        if k < 0.15:
            f.add(a, b)
        elif k < 0.25:
            f.vfmadd231pd(p, q, Mem(x, a, 8, 32, size=32))
        elif k < 0.35:
            f.vaddpd(p, p, q)
        elif k < 0.42:
            f.vmovupd(Mem(x, n, 8, size=32), p)
        elif k < 0.47:
            f.cmp(a, b)
            f.setl(a.b)
        elif k < 0.52:
            f.mov(a, Mem(x, b, 8, size=8))
        elif k < 0.57:
            f.xor(a.d, a.d)
        elif k < 0.62 and labels:
            lab = labels.pop()
            f.bind(lab)
            bound.append(lab)
        elif k < 0.72 and bound:
            f.cmp(a, n)
            f.jl(rng.choice(bound))
        elif k < 0.76:
            s = f.xmm()
            f.vmovsd(s, Mem(x, size=8))
            t = f.call("exp", args=[s], ret="double")
            f.vaddsd(t, t, p.x)
            f.vmovsd(Mem(x, size=8), t)
        else:
            f.imul(a, b)
    for lab in labels:
        f.bind(lab)
    s = f.xmm()
    f.vxorpd(s, s, s)
    for v in vecs:
        f.vaddsd(s, s, v.x)
    f.ret(s)
    return f


def test_fused_liveness_matches_an_instruction_level_dataflow():
    functions = [build_function(**kw) for kw in ({}, {"nvec": 10, "nint": 6}, {"isa": "avx512", "nvec": 40})]
    rng = random.Random(7)
    functions += [_random_program(rng) for _ in range(40)]
    for f in functions:
        prog = f.program()
        a = analyse(prog.items, prog.isa == "avx512")
        expected = _reference_masks(prog.items)
        got = {key: a.masks[j] for j, key in enumerate(a.keys)}
        for cls, num, pos in a.clobbers:  # call clobbers no later instruction names: no value, their position only
            got[(cls, num, False)] = got.get((cls, num, False), 0) | 1 << pos
        assert got == expected
        check_allocation(prog, allocate(prog))



def test_spill_weight_counts_match_the_register_effects():
    """The walk's per-value read/write counts (spill weights) equal a count over ``register_effects``: a
    read-and-written operand counts twice, a zero idiom once, address registers once each.  Virtual values
    only: they are the ones that spill (a physical register a call clobbers is no value at the call unless a
    later instruction names it)."""
    functions = [build_function(**kw) for kw in ({}, {"isa": "avx512", "nvec": 40})]
    rng = random.Random(11)
    functions += [_random_program(rng) for _ in range(20)]
    for f in functions:
        prog = f.program()
        a = analyse(prog.items, prog.isa == "avx512")
        expected = [0] * len(a.keys)
        for it in prog.items:
            if type(it) is Instr:
                uses, defs = register_effects(it)
                for r in uses + defs:
                    if r.virtual:
                        expected[a.value(r)] += 1
        assert [c for c, key in zip(a.counts, a.keys) if key[2]] == [c for c, key in zip(expected, a.keys) if key[2]]


def _pressure_program(seed: int, isa: str):
    """More live values than registers, with the operand shapes the spill plans distinguish: folds with and
    without a memory form, one value twice, spilled address registers, narrow GP writes, zero idioms,
    legacy SSE, masks."""
    rng = random.Random(seed)
    f = Function(f"pressure{seed}", args=[("n", "int64_t"), ("x", "double*")], ret="double", isa=isa)
    n, x = f.args
    make = f.xmm if isa == "sse2" else (f.zmm if isa == "avx512" and seed % 2 else f.ymm)
    vecs = [make() for _ in range(20 if isa != "avx512" else 36)]
    ints = [f.gp64() for _ in range(14)]
    masks = [f.k() for _ in range(9)] if isa == "avx512" else []
    for v in vecs:
        f.xorpd(v, v) if isa == "sse2" else f.vxorpd(v.x, v.x, v.x)
    for r in ints:
        f.mov(r, rng.randrange(100))
    for k in masks:
        f.kxnorw(k, k, k)
    top, done = f.label("top"), f.label("done")
    f.bind(top)
    f.cmp(ints[0], n)
    f.jge(done)
    for _ in range(150):
        a, b, c = rng.choice(vecs), rng.choice(vecs), rng.choice(vecs)
        p, q, r = rng.choice(ints), rng.choice(ints), rng.choice(ints)
        size = a.size
        if isa == "sse2":
            vector = [("addpd", a, b), ("mulpd", a, Mem(p, q, 8, 16, size=16)), ("movapd", a, b), ("xorpd", a, a),
                      ("movupd", Mem(x, r, 8, 0, size=16), a)]
        else:
            vector = [("vaddpd", a, a, b), ("vaddpd", a, b, c), ("vmovapd", a, b), ("vxorpd", a.x, b.x, b.x),
                      ("vfmadd231pd", a, b, Mem(p, q, 8, 32, size=size)), ("vmovupd", Mem(x, r, 4, 8, size=size), a),
                      ("vmulpd", a, a, a)]
        choice = rng.randrange(len(vector) + 3)
        if masks and choice == len(vector):
            f.vaddpd(a, b, c, mask=rng.choice(masks), zero=rng.random() < 0.5)
        elif choice < len(vector):
            getattr(f, vector[choice][0])(*vector[choice][1:])
        scalar = [("add", p, q), ("imul", p, q, 7), ("mov", p.w, q.w), ("xor", p.d, p.d),
                  ("mov", p, Mem(q, r, 8, 8, size=8)), ("add", p.b, r.b), ("lea", p, Mem(q, p, 2, 4)), ("cmp", p, 1000),
                  ("sub", p, p)]
        step = rng.choice(scalar)
        getattr(f, step[0])(*step[1:])
    f.add(ints[0], 1)
    f.jmp(top)
    f.bind(done)
    s = f.xmm()
    f.xorpd(s, s) if isa == "sse2" else f.vxorpd(s, s, s)
    for v in vecs:
        f.addsd(s, v.x) if isa == "sse2" else f.vaddsd(s, s, v.x)
    for r in ints:
        f.add(ints[0], r)
    f.ret(f.call("exp", args=[s], ret="double"))
    return f.program()


def test_spill_plans_agree_with_the_general_rewrite(monkeypatch):
    """Planned spill rewrites (per operand pattern, cached per process) equal the general effects-based
    rewrite instruction for instruction, and pass the checker."""
    from polyjit.asm import spill

    programs = [_pressure_program(seed, isa) for seed in range(4) for isa in ("sse2", "avx2", "avx512")]
    planned = []
    for prog in programs:
        alloc = allocate(prog)
        assert alloc.spilled
        check_allocation(prog, alloc)
        planned.append(alloc.steps)
    monkeypatch.setattr(spill.Spiller, "rewrite_simple",
                        lambda self, i, it, new_ops, fast, steps: self.rewrite(i, it, steps))
    for prog, steps in zip(programs, planned):
        assert allocate(prog).steps == steps


def test_call_clobbers_no_later_instruction_names_are_no_values():
    """A call's clobbers that no later instruction names are no values (``analyse`` records their positions,
    which go straight into the registers' fixed occupancy): values live across the call, in a loop, still
    keep out of the caller-saved registers, and the function computes what it should."""
    f = Function("clobbered", args=[("x", "double*"), ("n", "int64_t")], ret="double", isa="avx2")
    x, n = f.args
    i, count = f.gp64(), f.gp64()
    total = f.xmm()
    f.xor(i.d, i.d)
    f.xor(count.d, count.d)
    f.vxorpd(total, total, total)
    loop, done = f.label(), f.label()
    f.bind(loop)
    f.cmp(i, n)
    f.jge(done)
    s = f.xmm()
    f.vmovsd(s, Mem(x, i, 8, size=8))
    t = f.call("exp", args=[s], ret="double")
    f.vaddsd(total, total, t)
    f.add(count, 3)
    f.add(i, 1)
    f.jmp(loop)
    f.bind(done)
    c = f.xmm()
    f.vxorpd(c, c, c)
    f.vcvtsi2sd(c, c, count)
    f.vaddsd(total, total, c)
    f.ret(total)
    prog = f.program()
    a = analyse(prog.items, False)
    assert a.clobbers
    named = set(a.keys)
    assert any((cls, num, False) not in named for cls, num, _ in a.clobbers)
    alloc = allocate(prog)
    check_allocation(prog, alloc)
    callee_saved = {r.num for r in prog.abi.callee_saved_gp}
    for v in (i, count, x, n):  # live across the call: a callee-saved register or a stack slot
        where = alloc.assignment[v.num]
        assert type(where) is tuple and where[0] == "slot" or where.num in callee_saved, (v, where)
    xs = np.linspace(-1.0, 1.0, 7)
    assert f.compile()(xs, len(xs)) == pytest.approx(np.exp(xs).sum() + 3 * len(xs))
