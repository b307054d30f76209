"""Table-driven x86-64 encoder: form selection plus one emitter per encoding (legacy/REX, VEX, EVEX).

``encode_instruction(instr)`` returns ``(bytes, fixups)``; a fixup ``(offset, size, label, addend)``
asks the assembler to store ``label + addend - end_of_instruction`` at ``offset`` (rel8/rel32
branches and RIP-relative memory).

Speed: the first instruction of each key (mnemonic, mask, and per operand the register itself or a
signature: memory size/broadcast, immediate range) selects its form and compiles an encoder in which
every register-derived byte is precomputed (for memory operands, one prefix per REX/VEX/EVEX X/B bit
combination); later instructions with that key only encode their address, immediates and labels.
``encode_with_form`` is the reference emitter that computes everything afresh (tests compare the two).

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

import struct

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
    """Form-selection signature of a non-register operand (registers stand for themselves in keys)."""
    t = type(op)
    if t is Mem:
        idx = op.index
        if idx is not None and idx.kind in VECTOR_KINDS:
            return ("m", op.size, op.bcst, idx.kind, idx.num >= 16)
        return ("m", op.size, op.bcst)
    if t is Label:
        return "l"
    if isinstance(op, int):
        if -128 <= op <= 127:
            return op if -1 <= op <= 1 else 8
        return ("i", op)  # form choice depends on the value's range after wrapping: key on the value
    return ("?", t)


def _key(ins: Instr) -> tuple:
    """Cache key: mnemonic, mask decoration and per operand the register itself or its signature.

    Registers (tuples hashed in C) are part of the key, so every register field is fixed for a key;
    only memory addresses, immediates and labels vary between instructions sharing one."""
    ops = ins.operands
    n = len(ops)
    if n == 2:
        a, b = ops
        return (ins.mnemonic, ins.mask, ins.zero, a if type(a) is Reg else _sig(a), b if type(b) is Reg else _sig(b))
    if n == 3:
        a, b, c = ops
        return (ins.mnemonic, ins.mask, ins.zero, a if type(a) is Reg else _sig(a), b if type(b) is Reg else _sig(b),
                c if type(c) is Reg else _sig(c))
    return (ins.mnemonic, ins.mask, ins.zero, *[o if type(o) is Reg else _sig(o) for o in ops])


_FORM_CACHE: dict = {}


def _check_physical(ins: Instr) -> None:
    for op in (*ins.operands, ins.mask):
        if (type(op) is Reg and op.virtual) or (type(op) is Mem and any(r.virtual for r in op.registers)):
            raise EncodingError(f"virtual register in {ins} reached the encoder (allocate first)")


def select_form(ins: Instr) -> Form:
    key = _key(ins)
    form = _FORM_CACHE.get(key)
    if form is None:
        if len(_FORM_CACHE) > 200_000:  # many distinct immediates: start over rather than grow forever
            _FORM_CACHE.clear()
        _check_physical(ins)
        try:
            form = _FORM_CACHE[key] = _select(ins)
        except EncodingError as error:
            _FORM_CACHE[key] = error  # failures are asked again (the allocator probes memory forms)
            raise
    elif type(form) is EncodingError:
        raise EncodingError(f"{form} ({ins})")
    return form


def has_form(ins: Instr) -> bool:
    """Whether some form encodes ``ins`` (select_form without the error message, for probing)."""
    form = _FORM_CACHE.get(_key(ins))
    if form is None:
        try:
            select_form(ins)
        except EncodingError:
            return False
        return True
    return type(form) is not EncodingError


# ---- reference emitter: one instruction from its form, every field computed afresh ----------------------
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


def _fields(form: Form, ops):
    """Register-derived fields: (ModRM.reg value, rm operand, vvvv or -1, opcode, pp, opcode register or -1),
    after the VEX reg,reg store-direction swap that GNU as makes to reach the 2-byte VEX prefix."""
    r, m, v, o = _plan(form)[:4]
    reg_op = ops[r] if r >= 0 else None
    rm = ops[m] if m >= 0 else None
    opcode, pp = form.opcode, form.pp
    if form.swap_opcode >= 0 and type(rm) is Reg and rm.num >= 8 and reg_op.num < 8:
        reg_op, rm, opcode = rm, reg_op, form.swap_opcode
        pp = form.swap_pp if form.swap_pp >= 0 else pp
    reg_field = form.digit if form.digit >= 0 else (reg_op.num if reg_op is not None else 0)
    return reg_field, rm, ops[v].num if v >= 0 else -1, opcode, pp, ops[o].num if o >= 0 else -1


def _disp_scale(form: Form, rm) -> tuple[int, int]:
    """(EVEX disp8*N scale, broadcast bit) for the rm operand."""
    if form.encoding != "evex" or type(rm) is not Mem or form.mem_operand is None:
        return 1, 0
    if rm.bcst:
        return rm.size, 1
    return form.mem_operand.mem_size or 1, 0


def _needs_rex_byte(ops) -> bool:
    return any(type(o) is Reg and o.kind == GP and o.size == 1 and 4 <= o.num < 8 for o in ops)


_MAP_BYTES = (b"", b"\x0f", b"\x0f\x38", b"\x0f\x3a")


def _head(form: Form, ins: Instr, fields, x: int, b: int, hi: int, bcst: int) -> bytes:
    """Bytes before ModRM: prefixes, REX/VEX/EVEX, opcode.  ``x``/``b``/``hi`` come from the rm operand
    (index bit 3, base or rm bit 3, index bit 4)."""
    reg_field, _, vvvv, opcode, pp, opreg = fields
    r = (reg_field >> 3) & 1 if form.digit < 0 else 0
    if form.encoding == "legacy":
        if opreg >= 0:
            opcode |= opreg & 7
            b = (opreg >> 3) & 1
        rex = form.w << 3 | r << 2 | x << 1 | b
        out = bytearray(form.prefixes)
        if rex or (form.has_byte_reg and _needs_rex_byte(ins.operands)):
            out.append(0x40 | rex)
        return bytes(out + _MAP_BYTES[form.map]) + bytes((opcode,))
    if form.encoding == "vex":
        low = (~max(vvvv, 0) & 15) << 3 | form.vl << 2 | pp
        if not x and not b and not form.w and form.map == 1:
            return bytes((0xC5, (r ^ 1) << 7 | low, opcode))
        return bytes((0xC4, (r ^ 1) << 7 | (x ^ 1) << 6 | (b ^ 1) << 5 | form.map, form.w << 7 | low, opcode))
    r_hi = (reg_field >> 4) & 1 if form.digit < 0 else 0
    if vvvv < 0:
        vvvv = hi << 4
    aaa = ins.mask.num if ins.mask is not None else 0
    return bytes((0x62, (r ^ 1) << 7 | (x ^ 1) << 6 | (b ^ 1) << 5 | (r_hi ^ 1) << 4 | form.map,
                  form.w << 7 | (~vvvv & 15) << 3 | 4 | form.pp,
                  ins.zero << 7 | form.vl << 5 | bcst << 4 | (((vvvv >> 4) & 1) ^ 1) << 3 | aaa, opcode))


def _tail(ops, imm_plan, is4: int) -> bytes:
    """Immediate bytes (and the is4 register byte)."""
    out = b""
    for i, size in imm_plan:
        out += (ops[i] & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    if is4 >= 0:
        out += bytes((ops[is4].num << 4,))
    return out


def encode_with_form(form: Form, ins: Instr) -> tuple[bytes, tuple]:
    """Encode with a given form, every field computed afresh (the assembler uses it to pick rel8 or rel32
    branches; the tests compare it with the precompiled encoders of ``encode_instruction``)."""
    ops = ins.operands
    fields = _fields(form, ops)
    rm = fields[1]
    n, bcst = _disp_scale(form, rm)
    body = bytearray()
    x = b = hi = 0
    fix = None
    if rm is not None:
        x, b, hi, fix = _modrm(body, fields[0], rm, n)
        if type(rm) is Reg and form.encoding != "evex":
            x = 0
    elif form.fixed_modrm >= 0 and form.encoding == "legacy":
        body.append(form.fixed_modrm)
    head = _head(form, ins, fields, x, b, hi, bcst)
    _, _, _, _, is4, d, imm_plan = _plan(form)
    code = head + bytes(body) + _tail(ops, imm_plan, is4)
    fixups = [] if fix is None else [(fix[0] + len(head), *fix[1:])]
    if d >= 0:
        fixups.append((len(code), form.operands[d].rel, ops[d], 0))
        code += bytes(form.operands[d].rel)
    return code, tuple(fixups)


# ---- precompiled encoders: everything fixed by the key is computed once ---------------------------------
_SCALE_BITS = (0, 0, 0x40, 0x40, 0x80, 0x80, 0x80, 0x80, 0xC0)
_pack_B_i = struct.Struct("<Bi").pack
_pack_B_b = struct.Struct("<Bb").pack
_pack_BB = struct.Struct("<BB").pack
_pack_BB_i = struct.Struct("<BBi").pack
_pack_BB_b = struct.Struct("<BBb").pack
_B = [bytes((i,)) for i in range(256)]


def _mem_body(m: Mem, regbits: int, n: int):
    """Fast ``_modrm`` for a memory operand: (x | b << 1 | hi << 2, ModRM..disp bytes, fixup or None)."""
    base, index, disp = m.base, m.index, m.disp
    if m.label is not None or (base is not None and base.kind == RIP):
        if index is not None:
            raise EncodingError("RIP-relative addressing takes no index")
        if m.label is not None:
            return 0, _pack_B_i(regbits | 5, 0), (1, 4, m.label, disp)
        return 0, _pack_B_i(regbits | 5, disp), None
    if index is None:
        bits, sib = 0, _SCALE_BITS[m.scale] | 0x20
    else:
        if index.virtual:
            raise EncodingError(f"virtual register in {m} reached the encoder (allocate first)")
        num = index.num
        bits, sib = (num >> 3) & 1 | (num >> 2) & 4, _SCALE_BITS[m.scale] | (num & 7) << 3
    if base is None:
        return bits, _pack_BB_i(regbits | 4, sib | 5, disp), None
    if base.virtual:
        raise EncodingError(f"virtual register in {m} reached the encoder (allocate first)")
    num = base.num
    bits |= (num >> 2) & 2
    low = num & 7
    if disp == 0 and low != 5:
        if index is None and low != 4:
            return bits, _B[regbits | low], None
        return bits, _pack_BB(regbits | 4, sib | low), None
    if n == 1:
        short = -128 <= disp <= 127
    else:
        short = disp % n == 0 and -128 <= disp // n <= 127
        disp = disp // n if short else disp
    if index is None and low != 4:
        return bits, (_pack_B_b(0x40 | regbits | low, disp) if short else _pack_B_i(0x80 | regbits | low, disp)), None
    if short:
        return bits, _pack_BB_b(0x44 | regbits, sib | low, disp), None
    return bits, _pack_BB_i(0x84 | regbits, sib | low, disp), None


def _compile(ins: Instr):
    """An encoder for every instruction with this one's key: a function ``ins -> (bytes, fixups)``."""
    form = select_form(ins)
    _check_physical(ins)
    if ins.mask is not None and ins.mask.num == 0:
        raise EncodingError("k0 cannot be used as a write mask")
    ops = ins.operands
    _, m, _, _, is4, d, imm_plan = _plan(form)
    fields = _fields(form, ops)
    rm = fields[1]
    if d >= 0 or (is4 >= 0 and imm_plan):  # branches (rare here: the assembler uses encode_with_form)
        return lambda ins: encode_with_form(form, ins)
    if is4 >= 0:  # the is4 register byte is fixed by the key: it goes on like an immediate
        imm_plan = ()
        fixed_tail = _B[ops[is4].num << 4]
    else:
        fixed_tail = b""
    if type(rm) is Mem:
        n, bcst = _disp_scale(form, rm)
        heads = tuple(_head(form, ins, fields, bits & 1, (bits >> 1) & 1, bits >> 2, bcst) for bits in range(8))
        return _mem_encoder(heads, m, (fields[0] & 7) << 3, n, imm_plan, fixed_tail)
    body = bytearray()
    x = b = 0
    if rm is not None:
        x, b, _, _ = _modrm(body, fields[0], rm, 1)
        if form.encoding != "evex":
            x = 0
    elif form.fixed_modrm >= 0 and form.encoding == "legacy":
        body.append(form.fixed_modrm)
    pre = _head(form, ins, fields, x, b, 0, 0) + bytes(body) + fixed_tail
    if not imm_plan:
        result = (pre, ())
        return lambda ins: result
    if len(imm_plan) == 1:
        (i, size), = imm_plan
        mask = (1 << (8 * size)) - 1
        return lambda ins: (pre + (ins.operands[i] & mask).to_bytes(size, "little"), ())
    return lambda ins: (pre + _tail(ins.operands, imm_plan, -1), ())


def _mem_encoder(heads, m, regbits, n, imm_plan, fixed_tail):
    if not imm_plan and not fixed_tail:
        def encode_mem(ins):
            bits, body, fix = _mem_body(ins.operands[m], regbits, n)
            head = heads[bits]
            if fix is None:
                return head + body, ()
            return head + body, ((fix[0] + len(head), 4, fix[2], fix[3]),)
        return encode_mem

    def encode_mem_imm(ins):
        ops = ins.operands
        bits, body, fix = _mem_body(ops[m], regbits, n)
        head = heads[bits]
        code = head + body + _tail(ops, imm_plan, -1) + fixed_tail
        if fix is None:
            return code, ()
        return code, ((fix[0] + len(head), 4, fix[2], fix[3]),)
    return encode_mem_imm


_ENCODERS: dict = {}


def encode_instruction(ins: Instr) -> tuple[bytes, tuple]:
    """Machine code of one instruction with physical operands, plus its label fixups."""
    key = _key(ins)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        if len(_ENCODERS) > 200_000:  # many distinct immediates: start over rather than grow forever
            _ENCODERS.clear()
        encoder = _ENCODERS[key] = _compile(ins)  # errors are raised again on every call, not cached
    return encoder(ins)


def encode_one(mnemonic: str, *operands, mask: Reg | None = None, zero: bool = False) -> bytes:
    """Convenience for tests/REPL: bytes of one label-free instruction."""
    code, fixups = encode_instruction(Instr(mnemonic, tuple(operands), mask, zero))
    if fixups:
        raise EncodingError("instruction refers to a label; use the assembler")
    return code
