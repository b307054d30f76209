"""Random operands for instruction forms (shared by the GNU-as comparison tests)."""

from __future__ import annotations

from polyjit.asm.forms import Form, OpKind
from polyjit.asm.operands import GP, Instr, Mem, Reg, rip

# Displacements at the encoding boundaries: 0, disp8 limits, disp8*N limits, disp32 limits.
EDGE_DISPS = (0, 1, -1, 127, 128, -128, -129, 255, 256, 508, 512, 1016, 1024, 2032, 2048, 4064, 4096,
              8128, 8192, -512, -516, -1024, -1032, -2048, -4096, -8192, -8256, 0x7FFFFFFF, -0x80000000,
              0x12345678, -0x1234567)
EDGE_IMMS = (0, 1, -1, 2, 127, 128, -128, -129, 255, 256, 0x7FFF, 0x8000, -0x8000, 0xFFFF,
             0x7FFFFFFF, -0x80000000, 0x80000000, 0xFFFFFFFF, 0x123456789, -0x123456789,
             0x7FFFFFFFFFFFFFFF, -0x8000000000000000)
NO_MASK = {"vmovd", "vmovq", "vcvtsi2sd", "vcvtsi2ss", "vcvttsd2si", "vcvtsd2si", "vcvttss2si",
           "vcvtss2si", "vucomiss", "vucomisd", "vcomiss", "vcomisd", "vmovhlps", "vmovlhps"}


def _imm_range(kind: OpKind, op_bits: int) -> tuple[int, int]:
    if kind.imm_unsigned:
        return 0, 255
    bits = kind.imm
    lo = -(1 << (bits - 1))
    hi = (1 << bits) - 1 if bits == op_bits and bits < 64 else (1 << (bits - 1)) - 1
    return lo, hi


def draw_mem(rng, size, evex_n=1, allow_rip=True, gp_regs=None):
    gp_regs = gp_regs or [Reg(GP, 8, i) for i in range(16)]
    choice = rng.random()
    disp = rng.choice(EDGE_DISPS) if rng.random() < 0.7 else rng.randint(-300, 300) * evex_n
    if allow_rip and choice < 0.08:
        return Mem(rip, disp=disp, size=size)
    base = None if choice < 0.16 else rng.choice(gp_regs)
    index = None
    if base is None or rng.random() < 0.5:
        index = rng.choice([r for r in gp_regs if r.num != 4])
    scale = rng.choice((1, 2, 4, 8)) if index is not None else 1
    if base is None and index is not None and scale == 1:
        scale = 2  # GNU as would turn a lone index*1 into a base
    return Mem(base, index, scale, disp, size)


def _operand_bits(form: Form) -> int:
    for kind in form.operands:
        if kind.reg == GP:
            return kind.reg_size * 8
        if kind.mem and kind.reg is None and kind.mem_size:
            return kind.mem_size * 8
    return 64


def draw_instruction(rng, form: Form) -> Instr:
    """A random instance of ``form`` (GNU as may choose a shorter sibling form; so does the encoder)."""
    evex = form.encoding == "evex"
    nvec = 32 if evex else 16
    used_vec: set[int] = set()
    ops = []
    zmm_seen = False
    for kind in form.operands:
        if kind.reg is not None and kind.fixed >= 0:
            ops.append(Reg(GP, kind.reg_size, kind.fixed))
        elif kind.reg is not None and (not kind.mem or rng.random() < 0.4):
            if kind.reg == GP:
                ops.append(Reg(GP, kind.reg_size, rng.randrange(16)))
            elif kind.reg == "k":
                ops.append(Reg("k", 8, rng.randrange(8)))
            else:
                n = rng.choice([i for i in range(nvec) if i not in used_vec])
                used_vec.add(n)
                ops.append(Reg(kind.reg, kind.reg_size, n))
                zmm_seen |= kind.reg == "zmm"
        elif kind.mem:
            size = kind.mem_size or None
            if kind.bcst and rng.random() < 0.35:
                m = draw_mem(rng, None, kind.bcst)
                ops.append(m.broadcast(kind.bcst, kind.mem_size // kind.bcst))
            else:
                ops.append(draw_mem(rng, size, size or 1 if evex else 1))
        elif kind.vsib:
            n = rng.choice([i for i in range(nvec) if i not in used_vec])
            used_vec.add(n)
            vsize = {"xmm": 16, "ymm": 32, "zmm": 64}[kind.vsib]
            base = Reg(GP, 8, rng.randrange(16)) if rng.random() < 0.9 else None
            disp = rng.choice(EDGE_DISPS) if rng.random() < 0.6 else rng.randint(-100, 100) * kind.mem_size
            ops.append(Mem(base, Reg(kind.vsib, vsize, n), rng.choice((1, 2, 4, 8)), disp, kind.mem_size))
        elif kind.one:
            ops.append(1)
        elif kind.imm:
            lo, hi = _imm_range(kind, _operand_bits(form))
            vals = [v for v in EDGE_IMMS if lo <= v <= hi]
            ops.append(rng.choice(vals) if rng.random() < 0.6 else rng.randint(lo, hi))
        else:
            raise AssertionError(f"cannot draw {kind}")
    mask, zero = None, False
    mnem = form.mnemonic
    if evex and mnem not in NO_MASK and not mnem.startswith("k"):
        gather = any(k.vsib for k in form.operands)
        if gather or rng.random() < 0.4:
            mask = Reg("k", 8, rng.randrange(1, 8))
            first = ops[0]
            zero = (not gather and isinstance(first, Reg) and first.kind != "k" and rng.random() < 0.5)
    if evex and mask is None and not zmm_seen and not any(
            isinstance(o, Reg) and o.kind != GP and o.num >= 16 for o in ops) and not any(
            isinstance(o, Mem) and (o.bcst or (o.index is not None and o.index.num >= 16 and o.index.kind != GP))
            for o in ops):
        # Without an EVEX-only feature GNU as would pick VEX; force one so the EVEX row is exercised.
        for i, o in enumerate(ops):
            if isinstance(o, Reg) and o.kind in ("xmm", "ymm"):
                ops[i] = Reg(o.kind, o.size, 16 + o.num % 16)
                break
    return Instr(mnem, tuple(ops), mask, zero)
