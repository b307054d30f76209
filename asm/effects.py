"""Which registers an instruction reads and writes (operand access modes and implicit registers)."""

from __future__ import annotations

from .operands import GP, RIP, Instr, Mem, Reg

_G = [Reg(GP, 8, i) for i in range(16)]
_RAX, _RCX, _RDX, _RBX = _G[0], _G[1], _G[2], _G[3]

READ_ONLY = frozenset({
    "cmp", "test", "push", "jmp", "call", "mul", "div", "idiv", "nop", "ucomiss", "ucomisd", "comiss",
    "comisd", "vucomiss", "vucomisd", "vcomiss", "vcomisd", "kortestb", "kortestw", "kortestd", "kortestq",
})
LEGACY_WRITE_ONLY = frozenset({
    "mov", "movzx", "movsx", "movsxd", "lea", "pop", "movaps", "movups", "movapd", "movupd", "movdqa",
    "movdqu", "movd", "movq", "cvttsd2si", "cvttss2si", "cvtsd2si", "cvtss2si", "cvtdq2ps", "cvttps2dq",
    "cvtps2dq", "cvtdq2pd", "cvtps2pd", "cvtpd2ps", "cvttpd2dq", "pshufd", "sqrtps", "sqrtpd",
})
# name -> (implicit uses, implicit defs)
IMPLICIT = {
    "cqo": ((_RAX,), (_RDX,)), "cdq": ((_RAX,), (_RDX,)), "cwd": ((_RAX,), (_RDX,)),
    "cdqe": ((_RAX,), (_RAX,)), "div": ((_RAX, _RDX), (_RAX, _RDX)), "idiv": ((_RAX, _RDX), (_RAX, _RDX)),
    "mul": ((_RAX,), (_RAX, _RDX)), "cpuid": ((_RAX, _RCX), (_RAX, _RBX, _RCX, _RDX)),
    "xgetbv": ((_RCX,), (_RAX, _RDX)),
}


# Results independent of the (possibly undefined) input when the sources are one register:
# zeroing (xor/sub) and all-ones (pcmpeq, kxnor) idioms.
ZERO_IDIOMS = frozenset({"xor", "sub", "pxor", "xorps", "xorpd", "vpxor", "vpxord", "vpxorq", "vxorps",
                         "vxorpd", "psubd", "psubq", "vpsubd", "vpsubq", "pcmpeqd", "vpcmpeqd", "pcmpeqq",
                         "vpcmpeqq", "kxnorb", "kxnorw", "kxnord", "kxnorq", "kxorb", "kxorw", "kxord", "kxorq"})


def is_zero_idiom(ins: Instr) -> bool:
    """``xor r, r`` / ``vxorps x, y, y``: the result does not depend on the (maybe undefined) input."""
    ops = ins[1]  # fields by index: called for every xor-like instruction the allocator looks at
    if ins[0] not in ZERO_IDIOMS or ins[2] is not None:
        return False
    n = len(ops)
    if n == 2:
        return type(ops[0]) is Reg and ops[0] == ops[1]
    return n == 3 and type(ops[1]) is Reg and ops[1] == ops[2] and type(ops[0]) is Reg


def first_operand_mode(ins: Instr) -> str:
    """'r', 'w' or 'rw' for operand 0 (all other explicit operands are read)."""
    m = ins.mnemonic
    n = len(ins.operands)
    if m in READ_ONLY:
        mode = "r"
    elif m == "imul":
        mode = ("r", "rw", "w")[n - 1]
    elif m.startswith("vf") or "gather" in m:
        mode = "rw"
    elif m[0] in "vk":
        mode = "w"
    elif m in LEGACY_WRITE_ONLY or m.startswith("set"):
        mode = "w"
    elif m in ("movss", "movsd"):
        mode = "w" if n == 2 and type(ins.operands[1]) is Mem else "rw"
    else:
        mode = "rw"
    if ins.mask is not None and not ins.zero and mode == "w" and not m.startswith("vcmp") \
            and not m.startswith("vpcmp"):
        mode = "rw"  # merge-masking keeps the unselected lanes
    return mode


_SHAPES: dict = {}


def _shape(ins: Instr) -> tuple:
    """What register_effects needs beyond the operands, a function of mnemonic, arity and mask only:
    (reads operand 0, writes operand 0, may be a zero idiom, is a gather, implicit uses, implicit defs);
    the operand-0 mode is None where it depends on the operands (movss/movsd)."""
    m, n = ins.mnemonic, len(ins.operands)
    mode = None if m in ("movss", "movsd") and n == 2 else first_operand_mode(ins)
    implicit = IMPLICIT.get(m)
    if implicit is None or (m in ("mul", "div", "idiv") and n != 1):
        implicit = ((), ())
    return (mode is not None and "r" in mode, mode is not None and "w" in mode, m in ZERO_IDIOMS,
            "gather" in m, implicit[0], implicit[1])


_PLAIN: dict = {}  # mnemonic -> shapes by operand count, for instructions without mask or {z}


def plain_shapes(m: str) -> tuple:
    """Shape (see ``_shape``) of ``m`` by operand count 0-5 for instructions without mask or {z};
    None for a count the mnemonic never has."""
    shapes = _PLAIN.get(m)
    return shapes if shapes is not None else _plain_shapes(m)


def _plain_shapes(m: str) -> tuple:
    shapes = []
    for n in range(6):
        try:
            shapes.append(_shape(Instr(m, (None,) * n)))
        except IndexError:  # an operand count the mnemonic never has (e.g. imul with none)
            shapes.append(None)
    shapes = _PLAIN[m] = tuple(shapes)
    return shapes


def register_effects(ins: Instr) -> tuple[list, list]:
    """(uses, defs): registers read and written, as they appear (views), explicit and implicit."""
    m, ops, mask, zero, extra_uses, extra_defs = ins
    n = len(ops)
    shape = None
    if mask is None and not zero and n < 6:
        shape = _PLAIN.get(m)
        if shape is None:
            shape = _plain_shapes(m)
        shape = shape[n]
    if shape is None:
        shape_key = (m, n, mask is not None, zero)
        shape = _SHAPES.get(shape_key)
        if shape is None:
            shape = _SHAPES[shape_key] = _shape(ins)
    reads, writes, idiom, gather, implicit_uses, implicit_defs = shape
    if idiom and is_zero_idiom(ins):
        return [], [ops[0]]
    uses: list = []
    defs: list = []
    if n:
        first = ops[0]
        if type(first) is Reg:
            if not reads and not writes:  # movss/movsd: the register form merges, the load does not
                mode = first_operand_mode(ins)
                reads, writes = "r" in mode, "w" in mode
            if reads:
                uses.append(first)
            if writes:
                defs.append(first)
        elif type(first) is Mem:
            _mem_uses(first, uses)
        for op in ops[1:]:
            if type(op) is Reg:
                uses.append(op)
            elif type(op) is Mem:
                _mem_uses(op, uses)
        if gather and n == 3:
            defs.append(ops[2])  # the AVX2 gather mask is cleared
    if mask is not None:
        uses.append(mask)
        if gather:
            defs.append(mask)
    if implicit_uses or implicit_defs:
        uses.extend(implicit_uses)
        defs.extend(implicit_defs)
    if extra_uses:
        uses.extend(extra_uses)
    if extra_defs:
        defs.extend(extra_defs)
    return uses, defs


def _mem_uses(op: Mem, uses: list) -> None:
    base, index = op[0], op[1]
    if base is not None and base[0] != RIP:
        uses.append(base)
    if index is not None and index[0] != RIP:
        uses.append(index)


COPY_MNEMONICS = frozenset({"mov", "movaps", "vmovaps", "movapd", "vmovapd", "vmovdqa64", "kmovq", "vmovups",
                            "movups"})


def is_register_copy(ins: Instr) -> bool:
    """A whole-register copy between two registers of one class (coalescing candidate)."""
    if ins.mnemonic not in COPY_MNEMONICS:
        return False
    ops = ins.operands
    return (len(ops) == 2 and type(ops[0]) is Reg and type(ops[1]) is Reg and ins.mask is None
            and ops[0].cls == ops[1].cls and ops[0].size == ops[1].size
            and (ops[0].kind != GP or ops[0].size == 8))
