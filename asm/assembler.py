"""Layout of physical instructions into position-independent machine code.

Branches start short (rel8) and grow to rel32 until a fixpoint; ``Align`` pads with the Intel
multi-byte NOPs (GNU as pads long runs differently: we only guarantee alignment and valid NOPs);
the constant pool follows the code (64-byte aligned) and is reached RIP-relative.  Absolute
addresses (e.g. of C functions) only live in pool slots and are listed as ``Relocation`` records,
so the bytes can be stored and relocated at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate

from .encoder import EncodingError, encode_instruction, encode_with_form
from .forms import FORMS
from .operands import Align, Bind, Instr, Label

NOPS = (b"", b"\x90", b"\x66\x90", b"\x0f\x1f\x00", b"\x0f\x1f\x40\x00", b"\x0f\x1f\x44\x00\x00",
        b"\x66\x0f\x1f\x44\x00\x00", b"\x0f\x1f\x80\x00\x00\x00\x00", b"\x0f\x1f\x84\x00\x00\x00\x00\x00",
        b"\x66\x0f\x1f\x84\x00\x00\x00\x00\x00")


def nop_padding(length: int) -> bytes:
    """``length`` bytes of NOP instructions, longest first (at most 9 bytes each)."""
    out = bytearray()
    while length > 0:
        step = min(length, 9)
        out += NOPS[step]
        length -= step
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Constant:
    """Read-only data in the pool, addressed as ``[rip + label]``."""

    label: Label
    data: bytes
    align: int = 16


@dataclass(frozen=True, slots=True)
class AddressSlot:
    """An 8-byte pool slot holding the absolute address of ``symbol`` (filled by relocation)."""

    label: Label
    symbol: str
    address: int | None = None   # known address (e.g. from cffi), used when linking in-process


@dataclass(frozen=True, slots=True)
class Relocation:
    offset: int        # where the 8-byte absolute address goes
    symbol: str
    addend: int = 0
    kind: str = "R_X86_64_64"


@dataclass(frozen=True)
class MachineCode:
    """Encoded function: code + pool bytes (relocation slots zero), relocations and a listing."""

    name: str
    code: bytes
    relocations: tuple
    symbols: dict = field(default_factory=dict)          # symbol -> address known at build time
    labels: tuple = ()                                   # (label name, offset)
    lines: tuple = ()                                    # (offset, bytes, item); text made on demand
    code_size: int = 0

    def listing(self) -> str:
        out = [f"; {self.name}: {self.code_size} bytes of code, {len(self.code) - self.code_size} of data"]
        for offset, data, item in self.lines:
            out.append(f"{offset:6x}:  {data.hex(' '):<40} {item}")
        for r in self.relocations:
            out.append(f"; reloc {r.kind} at {r.offset:#x}: {r.symbol}{r.addend:+d}")
        return "\n".join(out)

    __str__ = listing

    def to_dict(self) -> dict:
        """A JSON-ready form (bytes as hex, relocations by symbol) for storing code on disk; absolute
        addresses known at build time are not stored: they are resolved again when loading."""
        return {"name": self.name, "code": self.code.hex(), "code_size": self.code_size,
                "relocations": [[r.offset, r.symbol, r.addend, r.kind] for r in self.relocations],
                "labels": [list(lab) for lab in self.labels]}

    @classmethod
    def from_dict(cls, data: dict) -> MachineCode:
        relocations = tuple(Relocation(o, s, a, k) for o, s, a, k in data["relocations"])
        return cls(data["name"], bytes.fromhex(data["code"]), relocations, {},
                   tuple(tuple(lab) for lab in data["labels"]), (), data["code_size"])

    def link(self, resolve=None) -> bytes:
        """Bytes with every relocation applied; ``resolve(symbol) -> int`` overrides known addresses."""
        data = bytearray(self.code)
        for r in self.relocations:
            addr = resolve(r.symbol) if resolve is not None else None
            if addr is None:
                addr = self.symbols.get(r.symbol)
            if addr is None:
                raise KeyError(f"unresolved symbol {r.symbol!r}")
            data[r.offset:r.offset + 8] = ((addr + r.addend) & (2**64 - 1)).to_bytes(8, "little")
        return bytes(data)


def _branch_forms(mnemonic: str):
    short = long = None
    for form in FORMS.get(mnemonic, ()):
        if form.operands and form.operands[0].rel == 1:
            short = form
        elif form.operands and form.operands[0].rel == 4:
            long = form
    return short, long


def assemble(items, constants=(), name: str = "code", repeats: bool = False) -> MachineCode:
    """Lay out ``items`` (Instr/Bind/Align with physical operands) followed by the constant pool.
    ``repeats``: the same instruction objects occur several times (each is then encoded once)."""
    codes: list = []        # per item: its bytes (branches and padding once laid out, b"" for a Bind)
    fixed_fixups = []       # (item index, fixups) of encoded instructions with label references
    variable = []           # [item index, kind, ...]: 1 branch (short code, long code, short?, start), 2 align,
    #                         3 bind
    append = codes.append
    seen = {} if repeats else None  # id of an item (alive during the call) -> its encoding
    for k, item in enumerate(items):
        t = type(item)
        if t is Instr:
            ops = item[1]
            if len(ops) == 1 and type(ops[0]) is Label:
                short, long = _branch_forms(item.mnemonic)
                if long is None:
                    raise EncodingError(f"{item.mnemonic} takes no label")
                long_code = encode_with_form(long, item)
                short_code = encode_with_form(short, item) if short is not None else None
                variable.append([k, 1, short_code, long_code, short_code is not None, 0])
                append(b"")
            elif seen is None:
                code, fixups = encode_instruction(item)
                append(code)
                if fixups:
                    fixed_fixups.append((k, fixups))
            else:  # items that repeat (shared objects) are encoded once
                encoded = seen.get(id(item))
                if encoded is None:
                    encoded = seen[id(item)] = encode_instruction(item)
                code, fixups = encoded
                append(code)
                if fixups:
                    fixed_fixups.append((k, fixups))
        elif t is Align:
            variable.append([k, 2, item.boundary])
            append(b"")
        elif t is Bind:
            variable.append([k, 3, item.label])
            append(b"")
        else:
            raise TypeError(f"cannot assemble {item!r}")
    # fixed bytes before each item; only branches, alignment and labels take part in the layout
    prefix = list(accumulate(map(len, codes), initial=0))
    positions: dict = {}
    while True:
        extra = 0
        for v in variable:
            start = prefix[v[0]] + extra
            kind = v[1]
            if kind == 1:
                v[5] = start
                extra += len(v[2][0]) if v[4] else len(v[3][0])
            elif kind == 2:
                extra += -start % v[2]
            else:
                positions[v[2]] = start
        changed = False
        for v in variable:
            if v[1] == 1 and v[4]:
                target = positions.get(items[v[0]].operands[0])
                if target is None:
                    raise EncodingError(f"label {items[v[0]].operands[0]} is never bound")
                if not -128 <= target - (v[5] + len(v[2][0])) <= 127:
                    v[4] = False
                    changed = True
        if not changed:
            break
    code_size = prefix[-1] + extra
    pool_start = (code_size + 63) & ~63
    pool = bytearray()
    relocations = []
    symbols = {}
    for c in constants:
        align = c.align if type(c) is Constant else 8
        pool += bytes(-len(pool) % align)
        positions[c.label] = pool_start + len(pool)
        if type(c) is Constant:
            pool += c.data
        else:
            relocations.append(Relocation(pool_start + len(pool), c.symbol))
            if c.address is not None:
                symbols[c.symbol] = c.address
            pool += bytes(8)
    extra = 0
    patches = []
    for v in variable:  # the laid-out bytes of branches and padding
        k = v[0]
        start = prefix[k] + extra
        if v[1] == 1:
            code, fixups = v[2] if v[4] else v[3]
            codes[k] = code
            patches.append((k, start, code, fixups))
            extra += len(code)
        elif v[1] == 2:
            codes[k] = pad = nop_padding(-start % v[2])
            extra += len(pad)
    if fixed_fixups:
        extra_at = list(accumulate(map(len, codes), initial=0))
        patches.extend((k, extra_at[k], codes[k], fixups) for k, fixups in fixed_fixups)
    for k, start, code, fixups in patches:
        buf = bytearray(code)
        end = start + len(code)
        for pos, size, label, addend in fixups:
            target = positions.get(label)
            if target is None:
                raise EncodingError(f"label {label} is never bound")
            buf[pos:pos + size] = (target + addend - end).to_bytes(size, "little", signed=True)
        codes[k] = bytes(buf)
    starts = accumulate(map(len, codes), initial=0)
    if any(v[1] == 2 for v in variable):  # alignment that needed no padding has no line
        lines = tuple(line for line in zip(starts, codes, items) if line[1] or type(line[2]) is not Align)
    else:
        lines = tuple(zip(starts, codes, items))
    out = b"".join(codes)
    if constants:
        out += bytes(pool_start - len(out)) + pool
    labels = tuple((lab.name, pos) for lab, pos in positions.items())
    return MachineCode(name, out, tuple(relocations), symbols, labels, lines, code_size)
