"""Labels, branch relaxation, alignment, constant pool and relocation records."""

from __future__ import annotations

import math
import random
import shutil
import struct
import subprocess
import tempfile

from asm_gas import assemble_lines

from polyjit.asm import (
    Align,
    Bind,
    Function,
    Instr,
    Label,
    Mem,
    allocate,
    assemble,
    encode,
    load,
    nop_padding,
    rax,
    rcx,
    reg,
)
from polyjit.asm.assembler import NOPS

_FILLERS = [Instr("nop"), Instr("add", (rax, 0x1000)), Instr("mov", (rax, 0x123456789)),
            Instr("add", (rcx, 1)), Instr("vaddps", (reg("ymm1"), reg("ymm2"), reg("ymm9")))]


def _random_program(seed, nlabels=12, length=160):
    rng = random.Random(seed)
    labels = [Label(f".Lt{seed}_{i}") for i in range(nlabels)]
    items = []
    unbound = list(labels)
    rng.shuffle(unbound)
    for _ in range(length):
        r = rng.random()
        if r < 0.07 and unbound:
            items.append(Bind(unbound.pop()))
        elif r < 0.25:
            target = rng.choice(labels)
            items.append(Instr(rng.choice(["jmp", "je", "jne", "jl", "jge", "ja", "jbe", "call"]), (target,)))
        elif r < 0.30:
            items.append(Instr("lea", (rax, Mem(label=rng.choice(labels)))))
        else:
            filler = rng.choice(_FILLERS)
            items.extend([filler] * rng.choice([1, 1, 2, 8, 20]))
    items.extend(Bind(lab) for lab in unbound)
    return items


def test_branches_and_rip_labels_match_gas_relaxation():
    # independent programs with distinct labels: one `as` run for all of them
    items = [it for seed in range(3) for it in _random_program(seed)]
    assert assemble(items).code == b"".join(assemble_lines([str(it) for it in items]))


def test_short_and_long_branch_boundaries():
    items = []
    for gap in range(118, 132):
        top, end = Label(f".Ltop{gap}"), Label(f".Lend{gap}")
        items += [Bind(top), Instr("jne", (end,))] + [Instr("nop")] * gap + [Instr("jmp", (top,)), Bind(end)]
    mc = assemble(items)
    assert mc.code == b"".join(assemble_lines([str(it) for it in items]))
    assert b"\x0f\x85" in mc.code and b"\x75" in mc.code  # both rel32 and rel8 forms occur


def test_alignment_padding_is_nops():
    items = []
    for boundary, pre in ((16, 1), (32, 5), (64, 3), (16, 15), (8, 7)):
        items += [Instr("nop")] * pre + [Align(boundary), Bind(Label(f".La{boundary}_{pre}")), Instr("ret")]
    mc = assemble(items)
    for name, offset in mc.labels:
        boundary = int(name.split("_")[0][3:])
        assert offset % boundary == 0
    for n in range(40):
        assert len(nop_padding(n)) == n
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils) is required"
    with tempfile.NamedTemporaryFile(suffix=".bin") as tmp:
        tmp.write(b"".join(NOPS[1:]))
        tmp.flush()
        out = subprocess.run([objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", tmp.name],
                             capture_output=True, text=True, check=True).stdout
    decoded = [line.split("\t")[-1].split()[0] for line in out.splitlines() if line.count("\t") >= 2]
    assert decoded == ["nop", "xchg"] + ["nop"] * 7


def test_constant_pool_and_relocation_records():
    f = Function("exp_plus", args=[("x", "double")], ret="double", isa="sse2")
    (x,) = f.args
    y = f.call("exp", args=[x], ret="double")
    f.addsd(y, f.const([0.5], size=8))
    f.ret(y)
    mc = encode(allocate(f.program()))
    assert [r.symbol for r in mc.relocations] == ["exp"]
    reloc = mc.relocations[0]
    assert mc.code[reloc.offset:reloc.offset + 8] == bytes(8)  # position independent: slot left empty
    linked = mc.link(lambda s: 0x1122334455667788)
    assert linked[reloc.offset:reloc.offset + 8] == (0x1122334455667788).to_bytes(8, "little")
    assert "reloc R_X86_64_64" in mc.listing()
    # the same bytes loaded twice at different addresses both work (only the slot is patched)
    a, b = load(mc, "double(*)(double)"), load(mc, "double(*)(double)")
    assert a.address != b.address
    assert a(1.0) == b(1.0) == math.exp(1.0) + 0.5


def test_constant_dedup_and_sizes():
    f = Function("c", args=[], ret="double", isa="sse2")
    m1 = f.const([1.0, 2.0])
    m2 = f.const([1.0, 2.0])
    assert m1.label is m2.label and m1.size == 16
    items = [Instr("movsd", (reg("xmm0"), m1.sized(8))), Instr("ret")]
    mc = assemble(items, f.constants)
    assert len(mc.code) == 64 + 16 and mc.code[64:80] == struct.pack("<2d", 1.0, 2.0)
    fn = load(mc, "double(*)(void)")
    assert fn() == 1.0


def test_listing_of_every_phase():
    f = Function("lst", args=[("a", "int64_t")], ret="int64_t", isa="sse2")
    (a,) = f.args
    b = f.gp64()
    f.lea(b, Mem(a, a, 2, 1))
    f.ret(b)
    prog = f.program()
    alloc = allocate(prog)
    mc = encode(alloc)
    assert "lea v" in prog.listing() and "v1" in str(prog)
    assert "lea rax, [rdi + rdi*2 + 0x1]" in alloc.listing()
    assert "48 8d 44 7f 01" in mc.listing()
    assert load(mc, f.c_signature())(5) == 16


def test_machine_code_round_trips_through_disk(tmp_path):
    import json

    from polyjit.asm import MachineCode
    f = Function("sin_twice", args=[("x", "double")], ret="double", isa="sse2")
    (x,) = f.args
    y = f.call("sin", args=[x], ret="double")
    f.addsd(y, y)
    f.ret(y)
    mc = encode(allocate(f.program()))
    path = tmp_path / "code.json"
    path.write_text(json.dumps(mc.to_dict()))
    again = MachineCode.from_dict(json.loads(path.read_text()))
    assert again.code == mc.code and again.relocations == mc.relocations
    fn = load(again, "double(*)(double)")  # "sin" is resolved again, through libm
    assert fn(0.5) == 2 * math.sin(0.5)


def test_machine_code_pickles():
    import pickle
    f = Function("cos_plus", args=[("x", "double")], ret="double", isa="sse2")
    (x,) = f.args
    y = f.call("cos", args=[x], ret="double")
    f.addsd(y, f.const([1.0], size=8))
    f.ret(y)
    mc = encode(allocate(f.program()))
    again = pickle.loads(pickle.dumps(mc))
    assert again.code == mc.code and again.listing() == mc.listing()
    assert load(again, "double(*)(double)")(0.25) == math.cos(0.25) + 1.0
