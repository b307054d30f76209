"""Layout of physical instructions into position-independent machine code.

Branches start short (rel8) and grow to rel32 until a fixpoint; ``Align`` pads with the Intel
multi-byte NOPs (GNU as pads long runs differently: we only guarantee alignment and valid NOPs);
the constant pool follows the code (64-byte aligned) and is reached RIP-relative.  Absolute
addresses (e.g. of C functions) only live in pool slots and are listed as ``Relocation`` records,
so the bytes can be stored and relocated at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def assemble(items, constants=(), name: str = "code") -> MachineCode:
    """Lay out ``items`` (Instr/Bind/Align with physical operands) followed by the constant pool."""
    # kinds: 0 fixed bytes, 1 branch, 2 align, 3 bind
    entries = []
    for item in items:
        if type(item) is Instr:
            ops = item.operands
            if len(ops) == 1 and type(ops[0]) is Label:
                short, long = _branch_forms(item.mnemonic)
                if long is None:
                    raise EncodingError(f"{item.mnemonic} takes no label")
                long_code = encode_with_form(long, item)
                short_code = encode_with_form(short, item) if short is not None else None
                entries.append([1, item, short_code, long_code, short_code is not None])
            else:
                code, fixups = encode_instruction(item)
                entries.append([0, item, code, fixups])
        elif type(item) is Align:
            entries.append([2, item, item.boundary])
        elif type(item) is Bind:
            entries.append([3, item, item.label])
        else:
            raise TypeError(f"cannot assemble {item!r}")
    positions: dict = {}
    while True:
        offset = 0
        starts = []
        for e in entries:
            starts.append(offset)
            kind = e[0]
            if kind == 0:
                offset += len(e[2])
            elif kind == 1:
                offset += len(e[2][0]) if e[4] else len(e[3][0])
            elif kind == 2:
                offset += -offset % e[2]
            else:
                positions[e[2]] = offset
        changed = False
        for e, start in zip(entries, starts):
            if e[0] == 1 and e[4]:
                target = positions.get(e[1].operands[0])
                if target is None:
                    raise EncodingError(f"label {e[1].operands[0]} is never bound")
                if not -128 <= target - (start + len(e[2][0])) <= 127:
                    e[4] = False
                    changed = True
        if not changed:
            break
    code_size = offset
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
    out = bytearray()
    lines = []
    for e, start in zip(entries, starts):
        kind = e[0]
        if kind == 2:
            pad = nop_padding(-start % e[2])
            if pad:
                lines.append((start, pad, e[1]))
            out += pad
            continue
        if kind == 3:
            lines.append((start, b"", e[1]))
            continue
        if kind == 0:
            code, fixups = e[2], e[3]
        else:
            code, fixups = e[2] if e[4] else e[3]
        if fixups:
            buf = bytearray(code)
            end = start + len(code)
            for pos, size, label, addend in fixups:
                target = positions.get(label)
                if target is None:
                    raise EncodingError(f"label {label} is never bound")
                buf[pos:pos + size] = (target + addend - end).to_bytes(size, "little", signed=True)
            code = bytes(buf)
        out += code
        lines.append((start, code, e[1]))
    out += bytes(pool_start - len(out)) if constants else b""
    out += pool
    labels = tuple((lab.name, pos) for lab, pos in positions.items())
    return MachineCode(name, bytes(out), tuple(relocations), symbols, labels, tuple(lines), code_size)
