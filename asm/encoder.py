"""Table-driven x86-64 encoder: form selection plus one emitter per encoding (legacy/REX, VEX, EVEX).

``encode_instruction(instr)`` returns ``(bytes, fixups)``; a fixup ``(offset, size, label, addend)``
asks the assembler to store ``label + addend - end_of_instruction`` at ``offset`` (rel8/rel32
branches and RIP-relative memory).

Choices mirror GNU as 2.40 (checked by tests/asm/test_encoder_vs_gas.py): shortest displacement,
SIB ``04 25`` for absolute addresses, imm8 sign-extended forms first, accumulator short forms,
store-direction opcodes for reg,reg ALU/mov, VEX before EVEX, VEX2 when possible, and the VEX
reg,reg operand swap of ``vmov{a,u}p{s,d}``/``vmovdq{a,u}``/``vmovs{s,d}`` that enables VEX2.
Known differences from GNU as (all listed in tests/asm/test_asm_encoder_api.py):

* a broadcast from a bare absolute address (``DWORD PTR [0x40]{1to16}``) is encoded here; GNU as
  rejects it ("operand type mismatch");
* alignment padding uses the 1..9-byte Intel NOPs (``assembler.nop_padding``), GNU as uses longer
  ``cs nop`` forms for big gaps;
* mnemonics/forms absent from the table raise ``EncodingError`` (no guessing); high-byte registers
  (ah/bh/ch/dh) and embedded rounding ``{rn-sae}`` are not supported.
"""

from __future__ import annotations

from .forms import FORMS, Form, OpKind
from .operands import GP, RIP, VECTOR_KINDS, Instr, Label, Mem, Reg


class EncodingError(ValueError):
    pass


_IMM_BYTES = {8: 1, 16: 2, 32: 4, 64: 8}


def _wrap(value: int, bits: int) -> int:
    """GNU as reads 0xffffffff as -1 for a 32-bit operand: reinterpret unsigned immediates."""
    if bits < 64 and (1 << (bits - 1)) <= value < (1 << bits):
        return value - (1 << bits)
    if bits == 64 and (1 << 63) <= value < (1 << 64):
        return value - (1 << 64)
    return value


def _fits(value: int, bits: int) -> bool:
    limit = 1 << (bits - 1)
    return -limit <= value < limit


def _operand_bits(form: Form, ops) -> int:
    """Operand size of the instruction (first GP register or GP-sized memory), for immediate wrapping."""
    for kind, op in zip(form.operands, ops):
        if kind.reg == GP and type(op) is Reg:
            return op.size * 8
        if kind.mem and kind.reg in (None, GP) and kind.mem_size and type(op) is Mem:
            return kind.mem_size * 8
    return 64


def _match(kind: OpKind, op, evex: bool) -> bool:
    if type(op) is Reg:
        if kind.reg is None or op.kind != kind.reg or op.size != kind.reg_size:
            return False
        if kind.fixed >= 0 and (op.virtual or op.num != kind.fixed):
            return False
        return evex or op.virtual or op.num < 16
    if type(op) is Mem:
        index = op.index
        if index is not None and index.kind in VECTOR_KINDS:
            if kind.vsib is None or index.kind != kind.vsib:
                return False
            if op.size not in (None, kind.mem_size):
                return False
            return evex or index.virtual or index.num < 16
        if not kind.mem:
            return False
        if op.bcst:
            return evex and kind.bcst == op.size and op.bcst * op.size == kind.mem_size
        return op.size is None or kind.mem_size == 0 or op.size == kind.mem_size
    if type(op) is Label:
        return kind.rel > 0
    if isinstance(op, int):
        if kind.one:
            return op == 1
        if kind.imm:
            if kind.imm_unsigned:
                return -128 <= op <= 255
            return True  # range checked with the operand size in _select
        return False
    return False


def _select(ins: Instr) -> Form:
    forms = FORMS.get(ins.mnemonic)
    if forms is None:
        raise EncodingError(f"unknown mnemonic {ins.mnemonic!r}")
    ops = ins.operands
    masked = ins.mask is not None
    for form in forms:
        if len(form.operands) != len(ops):
            continue
        evex = form.encoding == "evex"
        if masked and not evex:
            continue
        if not evex and any(type(o) is Reg and o.kind == "zmm" for o in ops):
            continue
        ok = True
        for kind, op in zip(form.operands, ops):
            if not _match(kind, op, evex):
                ok = False
                break
            if kind.imm and not kind.imm_unsigned and not kind.one and isinstance(op, int):
                if not _fits(_wrap(op, _operand_bits(form, ops)), kind.imm):
                    ok = False
                    break
        if ok:
            return form
    raise EncodingError(f"no encoding for {ins}")


def _sig(op):
    t = type(op)
    if t is Reg:
        return (op.kind, op.size, op.num, op.virtual)
    if t is Mem:
        idx = op.index
        if idx is not None and idx.kind in VECTOR_KINDS:
            return ("m", op.size, op.bcst, idx.kind, idx.num >= 16)
        return ("m", op.size, op.bcst)
    if t is Label:
        return "l"
    if -128 <= op <= 127:
        return op if -1 <= op <= 1 else 8
    return ("i", op)  # form choice depends on the value's range after wrapping: key on the value


_FORM_CACHE: dict = {}


def select_form(ins: Instr) -> Form:
    ops = ins.operands
    n = len(ops)
    if n == 2:
        key = (ins.mnemonic, ins.mask is not None, _sig(ops[0]), _sig(ops[1]))
    elif n == 3:
        key = (ins.mnemonic, ins.mask is not None, _sig(ops[0]), _sig(ops[1]), _sig(ops[2]))
    else:
        key = (ins.mnemonic, ins.mask is not None, *map(_sig, ops))
    form = _FORM_CACHE.get(key)
    if form is None:
        if len(_FORM_CACHE) > 200_000:  # many distinct immediates: start over rather than grow forever
            _FORM_CACHE.clear()
        for op in ops:
            if (type(op) is Reg and op.virtual) or (type(op) is Mem and any(r.virtual for r in op.registers)):
                raise EncodingError(f"virtual register in {ins} reached the encoder (allocate first)")
        try:
            form = _FORM_CACHE[key] = _select(ins)
        except EncodingError as error:
            _FORM_CACHE[key] = error  # failures are asked again (the allocator probes memory forms)
            raise
    elif type(form) is EncodingError:
        raise EncodingError(f"{form} ({ins})")
    return form


def _modrm(out: bytearray, reg_field: int, rm, n: int):
    """Append ModRM [+SIB] [+disp] for ``rm``; returns (x_bit, b_bit, index_bit4, fixup or None).

    ``n`` is the EVEX disp8*N scale (1 for legacy/VEX).
    """
    reg_field = (reg_field & 7) << 3
    if type(rm) is Reg:
        out.append(0xC0 | reg_field | (rm.num & 7))
        return (rm.num >> 4) & 1, (rm.num >> 3) & 1, 0, None
    base, index, disp = rm.base, rm.index, rm.disp
    if rm.label is not None or (base is not None and base.kind == RIP):
        if index is not None:
            raise EncodingError("RIP-relative addressing takes no index")
        out.append(reg_field | 5)
        pos = len(out)
        out += (disp if rm.label is None else 0).to_bytes(4, "little", signed=True)
        return 0, 0, 0, (pos, 4, rm.label, disp) if rm.label is not None else None
    scale_bits = (0, 0, 1, 1, 2, 2, 2, 2, 3)[rm.scale] << 6
    x = hi = 0
    if index is not None:
        x, hi = (index.num >> 3) & 1, (index.num >> 4) & 1
    if base is None:
        out.append(reg_field | 4)
        out.append(scale_bits | ((index.num & 7) << 3 if index is not None else 0x20) | 5)
        out += disp.to_bytes(4, "little", signed=True)
        return x, 0, hi, None
    b = base.num & 7
    if disp == 0 and b != 5:
        mod, disp_bytes = 0x00, b""
    elif disp % n == 0 and -128 <= disp // n <= 127:
        mod, disp_bytes = 0x40, (disp // n).to_bytes(1, "little", signed=True)
    else:
        mod, disp_bytes = 0x80, disp.to_bytes(4, "little", signed=True)
    if index is not None or b == 4:
        out.append(mod | reg_field | 4)
        out.append(scale_bits | ((index.num & 7) << 3 if index is not None else 0x20) | b)
    else:
        out.append(mod | reg_field | b)
    out += disp_bytes
    return x, (base.num >> 3) & 1, hi, None


_PLANS: dict = {}


def _plan(form: Form):
    """Operand indices per role, computed once per form: (R, M, V, O, L, D, ((I index, size), ...))."""
    plan = _PLANS.get(form)
    if plan is None:
        idx = {"R": -1, "M": -1, "V": -1, "O": -1, "L": -1, "D": -1}
        imms = []
        for i, (kind, role) in enumerate(zip(form.operands, form.roles)):
            if role == "I":
                imms.append((i, 1 if kind.imm_unsigned else _IMM_BYTES[kind.imm]))
            elif role in idx:
                idx[role] = i
        plan = _PLANS[form] = (idx["R"], idx["M"], idx["V"], idx["O"], idx["L"], idx["D"], tuple(imms))
    return plan


def _gather(form: Form, ops):
    r, m, v, o, lreg, d, imm_idx = _plan(form)
    imms = [(ops[i], size) for i, size in imm_idx]
    if lreg >= 0:
        imms.append((ops[lreg].num << 4, 1))
    rel = (ops[d], form.operands[d].rel) if d >= 0 else None
    return (ops[r] if r >= 0 else None, ops[m] if m >= 0 else None, ops[v] if v >= 0 else None,
            ops[o] if o >= 0 else None, imms, rel)


def _tail(out: bytearray, imms, rel, fixups):
    for value, size in imms:
        out += (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if rel is not None:
        fixups.append((len(out), rel[1], rel[0], 0))
        out += bytes(rel[1])


_MAP_BYTES = (b"", b"\x0f", b"\x0f\x38", b"\x0f\x3a")


def _needs_rex_byte(ops) -> bool:
    return any(type(o) is Reg and o.kind == GP and o.size == 1 and 4 <= o.num < 8 for o in ops)


def _encode_legacy(form: Form, ins: Instr, out: bytearray, fixups: list):
    reg_op, rm_op, _, opreg, imms, rel = _gather(form, ins.operands)
    out += form.prefixes
    body = bytearray()
    x = b = r = 0
    fix = None
    if rm_op is not None:
        if form.digit >= 0:
            reg_field = form.digit
        else:
            reg_field = reg_op.num
            r = (reg_field >> 3) & 1
        x, b, _, fix = _modrm(body, reg_field, rm_op, 1)
    elif form.fixed_modrm >= 0:
        body.append(form.fixed_modrm)
    opcode = form.opcode
    if opreg is not None:
        opcode |= opreg.num & 7
        b = (opreg.num >> 3) & 1
    rex = form.w << 3 | r << 2 | x << 1 | b
    if rex or (form.has_byte_reg and _needs_rex_byte(ins.operands)):
        out.append(0x40 | rex)
    out += _MAP_BYTES[form.map]
    out.append(opcode)
    if fix is not None:
        fixups.append((fix[0] + len(out), *fix[1:]))
    out += body
    if imms or rel is not None:
        _tail(out, imms, rel, fixups)


def _encode_vex(form: Form, ins: Instr, out: bytearray, fixups: list):
    reg_op, rm_op, vvvv_op, _, imms, rel = _gather(form, ins.operands)
    opcode, pp = form.opcode, form.pp
    if (form.swap_opcode >= 0 and type(rm_op) is Reg and rm_op.num >= 8 and reg_op.num < 8):
        reg_op, rm_op, opcode = rm_op, reg_op, form.swap_opcode
        pp = form.swap_pp if form.swap_pp >= 0 else pp
    body = bytearray()
    x = b = 0
    reg_field = form.digit if form.digit >= 0 else (reg_op.num if reg_op is not None else 0)
    if rm_op is not None:
        x, b, _, fix = _modrm(body, reg_field, rm_op, 1)
        if type(rm_op) is Reg:
            x = 0
    else:
        fix = None
    r = (reg_field >> 3) & 1 if form.digit < 0 else 0
    vvvv = vvvv_op.num if vvvv_op is not None else 0
    low = (~vvvv & 15) << 3 | form.vl << 2 | pp
    if not x and not b and not form.w and form.map == 1:
        out += bytes((0xC5, (r ^ 1) << 7 | low))
    else:
        out += bytes((0xC4, (r ^ 1) << 7 | (x ^ 1) << 6 | (b ^ 1) << 5 | form.map, form.w << 7 | low))
    out.append(opcode)
    if fix is not None:
        fixups.append((fix[0] + len(out), *fix[1:]))
    out += body
    _tail(out, imms, rel, fixups)


def _encode_evex(form: Form, ins: Instr, out: bytearray, fixups: list):
    reg_op, rm_op, vvvv_op, _, imms, rel = _gather(form, ins.operands)
    mem_kind = form.mem_operand
    n = 1
    bcst = 0
    if type(rm_op) is Mem and mem_kind is not None:
        if rm_op.bcst:
            n, bcst = rm_op.size, 1
        else:
            n = mem_kind.mem_size or 1
    body = bytearray()
    reg_field = form.digit if form.digit >= 0 else (reg_op.num if reg_op is not None else 0)
    x, b, v_hi, fix = _modrm(body, reg_field, rm_op, n)
    r, r_hi = (reg_field >> 3) & 1, (reg_field >> 4) & 1
    if form.digit >= 0:
        r = r_hi = 0
    vvvv = vvvv_op.num if vvvv_op is not None else v_hi << 4
    aaa = ins.mask.num if ins.mask is not None else 0
    out.append(0x62)
    out.append((r ^ 1) << 7 | (x ^ 1) << 6 | (b ^ 1) << 5 | (r_hi ^ 1) << 4 | form.map)
    out.append(form.w << 7 | (~vvvv & 15) << 3 | 4 | form.pp)
    out.append(ins.zero << 7 | form.vl << 5 | bcst << 4 | (((vvvv >> 4) & 1) ^ 1) << 3 | aaa)
    out.append(form.opcode)
    if fix is not None:
        fixups.append((fix[0] + len(out), *fix[1:]))
    out += body
    _tail(out, imms, rel, fixups)


_EMITTERS = {"legacy": _encode_legacy, "vex": _encode_vex, "evex": _encode_evex}


def encode_instruction(ins: Instr) -> tuple[bytes, tuple]:
    """Machine code of one instruction with physical operands, plus its label fixups."""
    for op in ins.operands:
        if type(op) is Mem and ((op.base is not None and op.base.virtual) or
                                (op.index is not None and op.index.virtual)):
            raise EncodingError(f"virtual register in {ins} reached the encoder (allocate first)")
    form = select_form(ins)
    if ins.mask is not None and ins.mask.num == 0:
        raise EncodingError("k0 cannot be used as a write mask")
    out = bytearray()
    fixups: list = []
    _EMITTERS[form.encoding](form, ins, out, fixups)
    return bytes(out), tuple(fixups)


def encode_with_form(form: Form, ins: Instr) -> tuple[bytes, tuple]:
    """Encode with a given form (the assembler uses it to pick rel8 or rel32 branches)."""
    out = bytearray()
    fixups: list = []
    _EMITTERS[form.encoding](form, ins, out, fixups)
    return bytes(out), tuple(fixups)


def encode_one(mnemonic: str, *operands, mask: Reg | None = None, zero: bool = False) -> bytes:
    """Convenience for tests/REPL: bytes of one label-free instruction."""
    code, fixups = encode_instruction(Instr(mnemonic, tuple(operands), mask, zero))
    if fixups:
        raise EncodingError("instruction refers to a label; use the assembler")
    return code
