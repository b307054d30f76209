"""Register pressure, spilling, fixed registers and the ABI: programs run correctly and pass the checker."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from polyjit.asm import (
    AllocationCheckError,
    Function,
    Instr,
    Mem,
    Reg,
    allocate,
    available_tiers,
    check_allocation,
    rax,
    rbp,
    rbx,
    rsp,
    r12,
    r13,
    r14,
    r15,
)

MASK64 = 2**64 - 1


def _wrap(v):
    return ((v + 2**63) & MASK64) - 2**63


def _gp_pressure_program(seed, nvals=30, nops=60, with_call=False):
    rng = random.Random(seed)
    f = Function(f"gp_pressure{seed}", args=[("x", "int64_t*"), ("out", "int64_t*"), ("iters", "int64_t")],
                 isa="sse2")
    x, out, iters = f.args
    vals = [f.gp64() for _ in range(nvals)]
    for j, v in enumerate(vals):
        f.mov(v, Mem(x, disp=8 * j, size=8))
    ops = []
    for _ in range(nops):
        a, b = rng.randrange(nvals), rng.randrange(nvals)
        ops.append((rng.choice(["add", "sub", "xor", "imul", "shl", "lea", "mem"]), a, b, rng.randrange(1, 5)))
    counter = f.gp64()
    f.mov(counter, iters)
    loop, done = f.label("loop"), f.label("done")
    f.bind(loop)
    f.test(counter, counter)
    f.jz(done)
    for op, a, b, c in ops:
        va, vb = vals[a], vals[b]
        if op == "shl":
            f.shl(va, c)
        elif op == "lea":
            f.lea(va, Mem(va, vb, 4, 3))
        elif op == "mem":  # a store and a load through a pointer in between (indexed addressing)
            idx = f.gp64()
            f.mov(idx, c)
            f.mov(Mem(out, idx, 8, 8 * nvals, size=8), vb)
            f.add(va, Mem(out, idx, 8, 8 * nvals, size=8))
        else:
            f.emit(op, va, vb)
    if with_call:
        f.call("labs", args=[vals[0]], ret="long")
    f.dec(counter)
    f.jmp(loop)
    f.bind(done)
    for j, v in enumerate(vals):
        f.mov(Mem(out, disp=8 * j, size=8), v)
    f.ret()

    def reference(xs, n):
        v = [int(t) for t in xs[:nvals]]
        for _ in range(n):
            for op, a, b, c in ops:
                if op == "add":
                    v[a] = _wrap(v[a] + v[b])
                elif op == "sub":
                    v[a] = _wrap(v[a] - v[b])
                elif op == "xor":
                    v[a] = _wrap(v[a] ^ v[b])
                elif op == "imul":
                    v[a] = _wrap(v[a] * v[b])
                elif op == "shl":
                    v[a] = _wrap(v[a] << c)
                elif op == "lea":
                    v[a] = _wrap(v[a] + 4 * v[b] + 3)
                else:
                    v[a] = _wrap(v[a] + v[b])
        return v
    return f, reference


@pytest.mark.parametrize("seed", range(4))
def test_gp_pressure_spills_and_runs(seed):
    f, reference = _gp_pressure_program(seed, with_call=seed % 2 == 1)
    prog = f.program()
    alloc = allocate(prog)
    assert alloc.spilled, "the program should need more registers than exist"
    check_allocation(prog, alloc)
    fn = f.compile()
    xs = np.array(random.Random(seed).sample(range(-1000, 1000), 30), dtype=np.int64)
    out = np.zeros(40, dtype=np.int64)
    for iters in (0, 1, 3):
        fn(xs, out, iters)
        assert list(out[:30]) == reference(xs, iters)


@pytest.mark.parametrize("tier", [t for t in available_tiers()])
@pytest.mark.parametrize("seed", range(2))
def test_vector_pressure_spills_and_runs(tier, seed):
    rng = random.Random(seed)
    width = 2 if tier == "sse2" else 4
    nvals = 24 if tier != "avx512" else 40
    f = Function(f"vec_pressure{seed}", args=[("x", "double*"), ("out", "double*")], isa=tier)
    x, out = f.args
    size = width * 8
    vals = [f.vreg(size) for _ in range(nvals)]
    move = "movupd" if tier == "sse2" else "vmovupd"
    for j, v in enumerate(vals):
        f.emit(move, v, Mem(x, disp=size * j, size=size))
    ops = [(rng.choice(["add", "sub", "mul", "min", "max"]), rng.randrange(nvals), rng.randrange(nvals))
           for _ in range(80)]
    for op, a, b in ops:
        if tier == "sse2":
            f.emit(f"{op}pd", vals[a], vals[b])
        else:
            f.emit(f"v{op}pd", vals[a], vals[a], vals[b])
    for j, v in enumerate(vals):
        f.emit(move, Mem(out, disp=size * j, size=size), v)
    f.ret()
    prog = f.program()
    alloc = allocate(prog)
    assert alloc.spilled
    check_allocation(prog, alloc)
    fn = f.compile()
    xs = np.random.default_rng(seed).uniform(0.5, 1.5, nvals * width)
    got = np.zeros_like(xs)
    fn(xs, got)
    v = xs.reshape(nvals, width).copy()
    funcs = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "min": np.minimum, "max": np.maximum}
    for op, a, b in ops:
        v[a] = funcs[op](v[a], v[b])
    assert got.tobytes() == v.reshape(-1).tobytes()


def test_checker_rejects_a_corrupted_allocation():
    f, _ = _gp_pressure_program(7, nvals=8, nops=20)
    prog = f.program()
    alloc = allocate(prog)
    check_allocation(prog, alloc)
    steps = list(alloc.steps)
    for i, (origin, it) in enumerate(steps):  # redirect one register operand of an original add
        if origin >= 0 and type(it) is Instr and it.mnemonic == "add" and type(it.operands[1]) is Reg:
            r = it.operands[1]
            wrong = Reg(r.kind, r.size, (r.num + 1) % 16 if (r.num + 1) % 16 != 4 else 5)
            steps[i] = (origin, Instr(it.mnemonic, (it.operands[0], wrong)))
            break
    else:
        pytest.fail("no add found")
    with pytest.raises(AllocationCheckError):
        check_allocation(prog, dataclasses.replace(alloc, steps=tuple(steps)))


def test_callee_saved_registers_and_stack_alignment_survive():
    """A harness loads sentinels into callee-saved registers, calls a register-hungry JIT function
    (which itself calls libm) and reports which sentinels changed; the callee reports rsp mod 16."""
    callee_f, _ = _gp_pressure_program(3, with_call=True)
    callee = callee_f.compile()
    probe = Function("rsp_probe", args=[], ret="int64_t", isa="sse2")
    v = probe.gp64()
    probe.mov(v, rsp)
    probe.and_(v, 15)
    probe.ret(v)
    probe_fn = probe.compile()
    sentinels = {r: 0x1111111111111111 * (i + 1) for i, r in enumerate((rbx, rbp, r12, r13, r14, r15))}
    h = Function("harness", args=[("x", "int64_t*"), ("out", "int64_t*")], ret="int64_t", isa="sse2")
    x, out = h.args
    for r, val in sentinels.items():
        h.mov(r, val)
    iters = h.gp64()
    h.mov(iters, 2)
    h.call(callee.address, args=[x, out, iters], ret=None)
    bad = h.gp64()
    h.xor(bad.d, bad.d)
    for i, (r, val) in enumerate(sentinels.items()):
        t = h.gp64()
        h.mov(t, val)
        h.cmp(r, t)
        ok = h.label()
        h.je(ok)
        h.emit("or", bad, 1 << i)
        h.bind(ok)
    # keep the sentinels live across the call (as fixed-register uses), then probe the alignment
    misalign = h.call(probe_fn.address, ret="int64_t")
    h.shl(misalign, 8)
    h.emit("or", bad, misalign)
    h.ret(bad)
    prog = h.program()
    check_allocation(prog, allocate(prog))
    fn = h.compile()
    xs = np.arange(30, dtype=np.int64)
    out = np.zeros(40, dtype=np.int64)
    assert fn(xs, out) == 8 << 8  # no sentinel changed; rsp = 8 (mod 16) at the callee's entry
    assert rax.num == 0


def test_spilled_partial_writes_keep_the_other_bytes():
    """xor r32 + setcc r8 under pressure: the spilled value must still read as 0 or 1."""
    f = Function("setcc_spill", args=[("x", "int64_t*"), ("out", "int64_t*")], isa="sse2")
    x, out = f.args
    vals = [f.gp64() for _ in range(20)]
    for j, v in enumerate(vals):
        f.mov(v, Mem(x, disp=8 * j, size=8))
    flags = []
    for j in range(19):
        c = f.gp64()
        f.xor(c.d, c.d)
        f.cmp(vals[j], vals[j + 1])
        f.setl(c.b)
        flags.append(c)
    for j, c in enumerate(flags):
        f.add(c, vals[j])
        f.mov(Mem(out, disp=8 * j, size=8), c)
    f.ret()
    prog = f.program()
    alloc = allocate(prog)
    assert alloc.spilled
    check_allocation(prog, alloc)
    xs = np.array([(j * 7919) % 23 - 11 for j in range(20)], dtype=np.int64)
    got = np.zeros(19, dtype=np.int64)
    f.compile()(xs, got)
    assert list(got) == [int(xs[j] < xs[j + 1]) + int(xs[j]) for j in range(19)]
