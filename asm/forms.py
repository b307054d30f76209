"""Instruction forms as data: one ``Form`` per (mnemonic, operand kinds, encoding).

Rows are written in Intel-SDM notation, e.g. ``("vaddps", "z, z, zm512/b32", "EVEX.512.0F.W0 58 /r",
"RVM")`` and parsed once at import.  Within one mnemonic the first matching row wins, so rows are
ordered by GNU as' preference (short immediates, accumulator forms, store-direction ``89`` for
reg,reg, VEX before EVEX).

Operand kinds: ``r8..r64`` GP registers, ``m8..m512`` memory (``m`` any size), ``rm32`` register or
memory, ``x/y/z`` vector registers, ``xm128`` vector or memory, ``/b32`` suffix = may broadcast
32-bit elements, ``k``/``km16`` opmasks, ``i8/i16/i32/i64/u8`` immediates, ``one`` the literal 1,
``al/ax/eax/rax/cl`` fixed registers, ``rel8/rel32`` branch targets, ``vx4/vy8/...`` VSIB memory
(index register kind and element size).

Operand roles (last column): R = ModRM.reg, M = ModRM.rm, V = VEX/EVEX.vvvv, I = immediate,
O = register in the opcode's low bits, L = register in imm8[7:4] (is4), D = relative displacement,
- = implicit.
"""

from __future__ import annotations

from dataclasses import dataclass

from .forms_table import FORM_ROWS


@dataclass(frozen=True, slots=True)
class OpKind:
    """A parsed operand kind: which operand classes it accepts and their sizes."""

    text: str
    reg: str | None = None      # 'gp','xmm','ymm','zmm','k' or None
    reg_size: int = 0
    fixed: int = -1             # fixed register number (al/cl/rax...) or -1
    mem: bool = False
    mem_size: int = 0           # 0 = any
    bcst: int = 0               # broadcast element size, 0 = none
    vsib: str | None = None     # index vector kind of VSIB memory
    imm: int = 0                # immediate width in bits (0 = not an immediate)
    imm_unsigned: bool = False
    one: bool = False
    rel: int = 0                # relative displacement width in bytes


@dataclass(frozen=True, slots=True, eq=False)
class Form:
    """One encodable form (identity-hashed: each row is one object)."""

    mnemonic: str
    operands: tuple             # OpKind per operand
    encoding: str               # 'legacy' | 'vex' | 'evex'
    prefixes: bytes             # legacy prefix bytes (66/F2/F3) in order
    pp: int                     # VEX/EVEX implied prefix: 0 none, 1 66, 2 F3, 3 F2
    map: int                    # 0 one-byte, 1 0F, 2 0F38, 3 0F3A
    opcode: int
    digit: int                  # ModRM.reg extension, -1 when /r
    w: int                      # 1 = REX.W/VEX.W/EVEX.W set
    vl: int                     # vector length: 0=128 1=256 2=512
    roles: str
    swap_opcode: int = -1       # VEX store-direction opcode for the reg,reg VEX2 swap (as does it)
    fixed_modrm: int = -1       # whole ModRM byte for register-less forms like xgetbv (0F 01 D0)
    swap_pp: int = -1           # implied prefix of the swapped form when it differs (vmovq: F3 7E -> 66 D6)

    @property
    def has_byte_reg(self) -> bool:
        return any(k.reg == "gp" and k.reg_size == 1 for k in self.operands)

    @property
    def mem_operand(self) -> OpKind | None:
        for kind in self.operands:
            if kind.mem or kind.vsib:
                return kind
        return None


_REG_KINDS = {"r8": ("gp", 1), "r16": ("gp", 2), "r32": ("gp", 4), "r64": ("gp", 8),
              "x": ("xmm", 16), "y": ("ymm", 32), "z": ("zmm", 64), "k": ("k", 8)}
_FIXED = {"al": ("gp", 1, 0), "cl": ("gp", 1, 1), "ax": ("gp", 2, 0), "eax": ("gp", 4, 0),
          "rax": ("gp", 8, 0)}
_RM_PREFIX = {"rm": "gp", "xm": "xmm", "ym": "ymm", "zm": "zmm", "km": "k"}
_RM_REG_SIZE = {"xmm": 16, "ymm": 32, "zmm": 64, "k": 8}
_KIND_CACHE: dict[str, OpKind] = {}


def parse_kind(text: str) -> OpKind:
    if text in _KIND_CACHE:
        return _KIND_CACHE[text]
    base, _, bc = text.partition("/b")
    bcst = int(bc) // 8 if bc else 0
    if base in _REG_KINDS:
        reg, size = _REG_KINDS[base]
        kind = OpKind(text, reg=reg, reg_size=size)
    elif base in _FIXED:
        reg, size, num = _FIXED[base]
        kind = OpKind(text, reg=reg, reg_size=size, fixed=num)
    elif base == "m" or (base[0] == "m" and base[1:].isdigit()):
        kind = OpKind(text, mem=True, mem_size=int(base[1:] or 0) // 8, bcst=bcst)
    elif base[:2] in _RM_PREFIX and base[2:].isdigit():
        reg = _RM_PREFIX[base[:2]]
        bits = int(base[2:])
        reg_size = bits // 8 if reg == "gp" else _RM_REG_SIZE[reg]
        kind = OpKind(text, reg=reg, reg_size=reg_size, mem=True, mem_size=bits // 8, bcst=bcst)
    elif base[0] == "v" and base[1] in "xyz":
        kind = OpKind(text, vsib={"x": "xmm", "y": "ymm", "z": "zmm"}[base[1]], mem_size=int(base[2:]))
    elif base in ("i8", "i16", "i32", "i64"):
        kind = OpKind(text, imm=int(base[1:]))
    elif base == "u8":
        kind = OpKind(text, imm=8, imm_unsigned=True)
    elif base == "one":
        kind = OpKind(text, one=True)
    elif base in ("rel8", "rel32"):
        kind = OpKind(text, rel=int(base[3:]) // 8)
    else:
        raise ValueError(f"unknown operand kind {text!r}")
    _KIND_CACHE[text] = kind
    return kind


_PP = {"66": 1, "F3": 2, "F2": 3}
_MAPS = {"0F": 1, "0F38": 2, "0F3A": 3}


def parse_form(mnemonic: str, operands: str, spec: str, roles: str) -> Form:
    kinds = tuple(parse_kind(k.strip()) for k in operands.split(",")) if operands else ()
    tokens = spec.split()
    prefixes = bytearray()
    pp = mapsel = w = vl = 0
    digit = fixed_modrm = swap = swap_pp = -1
    opcode = None
    encoding = "legacy"
    for tok in tokens:
        if tok.startswith(("VEX.", "EVEX.")):
            encoding = "vex" if tok[0] == "V" else "evex"
            for field in tok.split(".")[1:]:
                if field in ("128", "L0", "LIG", "LZ"):
                    vl = 0
                elif field in ("256", "L1"):
                    vl = 1
                elif field == "512":
                    vl = 2
                elif field in _PP:
                    pp = _PP[field]
                elif field in _MAPS:
                    mapsel = _MAPS[field]
                elif field in ("W0", "WIG"):
                    w = 0
                elif field == "W1":
                    w = 1
                else:
                    raise ValueError(f"bad field {field} in {spec}")
        elif tok == "REX.W":
            w = 1
        elif tok in ("66", "F2", "F3") and opcode is None and mapsel == 0:
            prefixes.append(int(tok, 16))
        elif tok == "0F" and opcode is None and mapsel == 0:
            mapsel = 1
        elif tok in ("38", "3A") and mapsel == 1 and opcode is None:
            mapsel = 2 if tok == "38" else 3
        elif tok == "/r":
            pass
        elif tok.startswith("/") and tok[1:].isdigit():
            digit = int(tok[1:])
        elif tok.startswith("swap="):
            pp_text, _, op_text = tok[5:].rpartition(".")
            swap, swap_pp = int(op_text, 16), _PP.get(pp_text, -1)
        elif tok.startswith("modrm="):
            fixed_modrm = int(tok[6:], 16)
        elif tok in ("ib", "iw", "id", "io", "cb", "cd", "/is4"):
            pass
        elif opcode is None:
            opcode = int(tok.removesuffix("+r"), 16)
        else:
            raise ValueError(f"bad token {tok} in {spec}")
    if len(roles) != len(kinds):
        raise ValueError(f"roles {roles!r} do not fit operands {operands!r} of {mnemonic}")
    return Form(mnemonic, kinds, encoding, bytes(prefixes), pp, mapsel, opcode, digit, w, vl, roles,
                swap, fixed_modrm, swap_pp)


def _build_table() -> dict[str, tuple[Form, ...]]:
    table: dict[str, list[Form]] = {}
    for row in FORM_ROWS:
        form = parse_form(*row)
        table.setdefault(form.mnemonic, []).append(form)
    return {m: tuple(forms) for m, forms in table.items()}


FORMS: dict[str, tuple[Form, ...]] = _build_table()
EVEX_MNEMONICS = frozenset(m for m, forms in FORMS.items() if any(f.encoding == "evex" for f in forms))
