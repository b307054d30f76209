"""Scratch registers for spilled values: one per class is reserved; an instruction that touches more spilled
values of a class than that borrows registers it does not name, saved to frame slots around it (on every
rewrite path: the int-keyed plans, the per-operand plans and the effects-based general path)."""

from __future__ import annotations

import numpy as np
import pytest

from polyjit.asm import Function, Mem, allocate, check_allocation
from polyjit.asm import regalloc as regalloc_module
from polyjit.asm.bench import build_function
from polyjit.asm.operands import GP64_REGS
from polyjit.asm.spill import Spiller


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


def _borrows(monkeypatch) -> list:
    """The (class, register) of every borrowed scratch register."""
    seen = []
    real = Spiller._borrow

    def recording(self, cls, named, taken):
        n = real(self, cls, named, taken)
        seen.append((cls, n))
        return n

    monkeypatch.setattr(Spiller, "_borrow", recording)
    return seen


def test_three_spilled_values_in_one_instruction_borrow_two_registers(monkeypatch):
    sizes = _count_scratch(monkeypatch)
    borrowed = _borrows(monkeypatch)
    f = _three_address_stores()
    prog = f.program()
    alloc = allocate(prog)
    assert sizes == [1]
    assert borrowed and {cls for cls, _ in borrowed} == {"gp"}
    check_allocation(prog, alloc)
    # each borrowed register is stored to its frame slot before the instruction and loaded back after it
    text = alloc.listing()
    for _, n in set(borrowed):
        name = GP64_REGS[n]
        assert f"], {name}    ; alloc" in text and f"mov {name}, QWORD PTR [rsp" in text
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


def test_the_spilling_benchmark_reserves_one_scratch_register(monkeypatch):
    sizes = _count_scratch(monkeypatch)
    borrowed = _borrows(monkeypatch)
    prog = build_function().program()
    alloc = allocate(prog)
    assert sizes == [1]
    assert borrowed  # some vfmadd231pd reads two spilled vectors and an address: one vector is borrowed
    check_allocation(prog, alloc)


def test_the_general_path_borrows_too(monkeypatch):
    """``movsd x, y`` between registers (legacy SSE, no folding; its operand-0 mode depends on the
    operands, so the effects-based path rewrites it) with both values spilled takes two vector scratch
    registers."""
    borrowed = _borrows(monkeypatch)
    f = Function("movsd_pairs", args=[("x", "double*"), ("out", "double*")], isa="sse2")
    x, out = f.args
    vals = [f.xmm() for _ in range(30)]  # 0-15 are used often (kept in registers), 16-29 once (spilled)
    for j, v in enumerate(vals):
        f.movsd(v, Mem(x, disp=8 * j, size=8))
    for _ in range(4):
        for v in vals[:16]:
            f.addsd(v, v)
    for j in range(16, 30, 2):
        f.movsd(vals[j], vals[j + 1])
    for j, v in enumerate(vals):
        f.movsd(Mem(out, disp=8 * j, size=8), v)
    f.ret()
    prog = f.program()
    check_allocation(prog, allocate(prog))
    assert borrowed and {cls for cls, _ in borrowed} == {"vec"}
    xs = np.arange(1.0, 31.0)
    got = np.zeros(30)
    f.compile()(xs, got)
    want = [16 * v for v in xs[:16]] + [xs[j + 1 - j % 2] for j in range(16, 30)]
    assert got.tolist() == want


def _stores_through_cold_pointers(nhot: int, isa: str) -> Function:
    """``[base + idx*8] <- value`` with base and value used once (spilled) and idx used often (kept in a
    register): the rewrite takes two GP scratch registers, one borrowed, which must not be idx's."""
    f = Function("addr_borrow", args=[("x", "int64_t*"), ("out", "int64_t*")], isa=isa)
    x, out = f.args
    idx = f.gp64()
    f.mov(idx, 1)
    hot = [f.gp64() for _ in range(nhot)]
    for j, v in enumerate(hot):
        f.mov(v, Mem(x, disp=8 * j, size=8))
    bases, cold = [f.gp64() for _ in range(4)], [f.gp64() for _ in range(4)]
    for b, c in zip(bases, cold):
        f.mov(b, out)
        f.lea(c, Mem(idx, disp=100))
    for _ in range(4):
        for v in hot:
            f.add(v, idx)
    for j, (b, c) in enumerate(zip(bases, cold)):
        f.mov(Mem(b, idx, 8, 8 * j, size=8), c)
    for j, v in enumerate(hot):
        f.mov(Mem(out, disp=64 + 8 * j, size=8), v)
    f.ret()
    return f


@pytest.mark.parametrize("isa", ["avx2", "sse2"])
@pytest.mark.parametrize("nhot", [8, 11, 15])
def test_a_borrowed_register_is_none_of_an_address_registers(monkeypatch, nhot, isa):
    """Found by the fuzzer (a segfault): an address over a spilled base is one SPILLED operand to the
    rewrite, and the borrowed register was once taken from under its allocated index."""
    borrowed = _borrows(monkeypatch)
    f = _stores_through_cold_pointers(nhot, isa)
    prog = f.program()
    check_allocation(prog, allocate(prog))
    assert borrowed
    xs = np.arange(1, 20, dtype=np.int64)
    got = np.zeros(64, dtype=np.int64)
    f.compile()(xs, got)
    want = np.zeros(64, dtype=np.int64)
    want[1:5] = 101
    want[8:8 + nhot] = xs[:nhot] + 4
    assert got.tolist() == want.tolist()
