"""The memoised fast paths agree with the straightforward ones: precompiled encoders with the reference
emitter (first use and cache hits with other addresses and immediates), and the allocator's output with
the independent checker on the benchmark's spilling function."""

from __future__ import annotations

import random

import numpy as np
from asm_draw import draw_instruction, draw_mem

from polyjit.asm import Function, allocate, check_allocation
from polyjit.asm.bench import build_function
from polyjit.asm.encoder import encode_instruction, encode_with_form, select_form
from polyjit.asm.forms import FORMS
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
