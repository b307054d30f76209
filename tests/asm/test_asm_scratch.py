"""Scratch registers for spilled values: two per class at first, three when some instruction touches three
spilled values of one class (the rewrite runs out and the allocator starts over with three)."""

from __future__ import annotations

import numpy as np

from polyjit.asm import Function, Mem, allocate, check_allocation
from polyjit.asm import regalloc as regalloc_module
from polyjit.asm.bench import build_function


def _three_address_stores() -> tuple:
    """Stores ``[p + i*8] <- v`` over 32 live GP values: some store has its pointer, index and value all
    spilled, which takes three GP scratch registers (an address operand rules out folding)."""
    f = Function("three_scratch", args=[("x", "int64_t*"), ("out", "int64_t*")])
    x, out = f.args
    ptrs, idxs, vals, fills = ([f.gp64() for _ in range(8)] for _ in range(4))
    for j in range(8):
        f.mov(ptrs[j], out)
        f.mov(idxs[j], j)
        f.mov(vals[j], Mem(x, disp=8 * j, size=8))
        f.mov(fills[j], Mem(x, disp=64 + 8 * j, size=8))
    for j in range(8):
        for k in range(8):
            f.mov(Mem(ptrs[j], idxs[k], 8, size=8), vals[(j + k) % 8])
    for j in range(8):  # everything stays live to the end
        f.mov(Mem(ptrs[j], idxs[j], 8, 64, size=8), vals[j])
        f.mov(Mem(out, disp=128 + 8 * j, size=8), fills[j])
    f.ret()
    return f


def _count_scratch(monkeypatch) -> list:
    """The GP scratch pool size of each reserving assignment (``_assign`` with reserve=True)."""
    sizes = []
    real = regalloc_module._assign

    def counting(program, a, facts, reserve):
        if reserve:
            sizes.append(len(facts["scratch"]["gp"]))
        return real(program, a, facts, reserve)

    monkeypatch.setattr(regalloc_module, "_assign", counting)
    return sizes


def test_three_spilled_values_in_one_instruction_get_a_third_scratch(monkeypatch):
    sizes = _count_scratch(monkeypatch)
    f = _three_address_stores()
    prog = f.program()
    alloc = allocate(prog)
    assert sizes == [2, 3]
    check_allocation(prog, alloc)
    fn = f.compile()
    xs = np.arange(100, 116, dtype=np.int64)
    got = np.zeros(24, dtype=np.int64)
    fn(xs, got)
    want = [0] * 24
    for j in range(8):
        for k in range(8):
            want[k] = int(xs[(j + k) % 8])
    for j in range(8):
        want[8 + j] = int(xs[j])
        want[16 + j] = int(xs[8 + j])
    assert got.tolist() == want


def test_the_spilling_benchmark_needs_two_scratch_registers(monkeypatch):
    sizes = _count_scratch(monkeypatch)
    prog = build_function().program()
    alloc = allocate(prog)
    assert sizes == [2]
    check_allocation(prog, alloc)
