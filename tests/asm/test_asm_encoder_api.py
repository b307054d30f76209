"""Encoder and builder API details: errors, documented differences from GNU as, conveniences."""

from __future__ import annotations

import pytest
from asm_gas import assemble_lines

from polyjit.asm import (
    EncodingError,
    Function,
    Instr,
    Label,
    Mem,
    Reg,
    allocate,
    assemble,
    check_allocation,
    encode_one,
    isa_tier,
    rax,
    rcx,
    reg,
    rip,
)


def test_errors_are_explicit():
    with pytest.raises(EncodingError, match="unknown mnemonic"):
        encode_one("frobnicate", rax)
    with pytest.raises(EncodingError, match="no encoding"):
        encode_one("add", rax, reg("xmm1"))
    with pytest.raises(EncodingError, match="allocate first"):
        encode_one("add", Reg("gp", 8, 3, True), rax)
    with pytest.raises(EncodingError, match="allocate first"):
        encode_one("mov", rax, Mem(Reg("gp", 8, 3, True), size=8))
    with pytest.raises(EncodingError, match="k0"):
        encode_one("vaddps", reg("zmm0"), reg("zmm1"), reg("zmm2"), mask=reg("k0"))
    with pytest.raises(EncodingError, match="never bound"):
        assemble([Instr("jmp", (Label("nowhere"),))])
    with pytest.raises(EncodingError, match="label"):
        encode_one("lea", rax, Mem(label=Label("x")))
    with pytest.raises(ValueError):
        Mem(rax, reg("rsp"))  # rsp cannot be an index
    with pytest.raises(EncodingError, match="no encoding"):
        encode_one("mov", rax, 2**64)


def test_documented_difference_broadcast_from_absolute_address():
    ours = encode_one("vaddps", reg("zmm0"), reg("zmm1"), Mem(disp=0x40, size=4, bcst=16))
    assert ours.hex() == "62f1745858042540000000"
    with pytest.raises(AssertionError, match="GNU as rejected"):
        assemble_lines(["vaddps zmm0, zmm1, DWORD PTR [0x40]{1to16}"])


def test_mirrors_gas_choices():
    cases = [("add", (rax, 0x1000)), ("add", (reg("eax"), 5)), ("add", (reg("eax"), 0xFFFFFFFF)),
             ("mov", (rax, 0xFFFFFFFF)), ("mov", (rax, -1)), ("vmovaps", (reg("xmm0"), reg("xmm8"))),
             ("vmovq", (reg("xmm1"), reg("xmm9"))), ("shl", (rcx, 1)), ("mov", (rax, Mem(rip, disp=0x100, size=8))),
             ("mov", (rax, Mem(disp=0x1234, size=8))), ("lea", (rax, Mem(reg("r13")))),
             ("mov", (rax, Mem(reg("r12"), disp=8, size=8))), ("test", (reg("al"), 1))]
    instrs = [Instr(m, ops) for m, ops in cases]
    expected = assemble_lines([str(i) for i in instrs])
    assert [encode_one(i.mnemonic, *i.operands) for i in instrs] == expected
    assert expected[0].hex() == "480500100000" and expected[5].hex() == "c57829c0"


def test_builder_conveniences(monkeypatch):
    monkeypatch.setenv("POLYJIT_ISA", "sse2")
    f = Function("conv", args=[("a", "int64_t"), ("n", "int32_t")], ret="int64_t")
    assert f.isa == "sse2" == isa_tier()
    a, n = f.args
    assert n.size == 4 and a.size == 8
    t = f.gp64()
    f.mov(t, a)
    f.and_(t, 0xFF)
    f.or_(t, 0x100)
    f.shl(t, n)  # a virtual count: the builder routes it through cl
    f.ret(t)
    assert "mov ecx" in f.listing() and "shl v" in f.listing() and ", cl" in f.listing()
    prog = f.program()
    check_allocation(prog, allocate(prog))
    assert f.compile()(0x12345, 4) == ((0x12345 & 0xFF) | 0x100) << 4
    with pytest.raises(AttributeError):
        f.not_a_mnemonic  # noqa: B018
