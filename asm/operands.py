"""Operands: physical and virtual registers, memory references, labels, instructions.

Everything here is an immutable value; ``str()`` renders GNU-as Intel syntax
(``.intel_syntax noprefix``).  Virtual registers print as ``v3`` (64-bit GP),
``v3d``/``v3w``/``v3b`` (narrower views), ``vx3``/``vy3``/``vz3`` (vector views)
and ``vk3`` (opmask); views of one virtual share its number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

_tuple_new = tuple.__new__

GP, XMM, YMM, ZMM, KREG, RIP = "gp", "xmm", "ymm", "zmm", "k", "rip"
VECTOR_KINDS = (XMM, YMM, ZMM)
_VEC_SIZE = {XMM: 16, YMM: 32, ZMM: 64}
_VEC_KIND = {16: XMM, 32: YMM, 64: ZMM}

_GP64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi") + tuple(f"r{i}" for i in range(8, 16))
_GP32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi") + tuple(f"r{i}d" for i in range(8, 16))
_GP16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di") + tuple(f"r{i}w" for i in range(8, 16))
_GP8 = ("al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil") + tuple(f"r{i}b" for i in range(8, 16))
_GP_NAMES = {8: _GP64, 4: _GP32, 2: _GP16, 1: _GP8}
_GP_SUFFIX = {8: "", 4: "d", 2: "w", 1: "b"}
_VIEWS: dict = {}
_SIZE_PTR = {1: "BYTE", 2: "WORD", 4: "DWORD", 8: "QWORD", 16: "XMMWORD", 32: "YMMWORD", 64: "ZMMWORD"}


class Reg(NamedTuple):
    """A register: ``kind`` in gp/xmm/ymm/zmm/k/rip, ``size`` in bytes, hardware or virtual ``num``.

    A NamedTuple (like ``Instr``): registers are created and hashed in every phase, and tuples construct
    and hash in C where a frozen dataclass runs Python code for both.
    """

    kind: str
    size: int
    num: int
    virtual: bool = False

    @property
    def cls(self) -> str:
        """Allocation class: 'gp', 'vec' or 'k' (xmm/ymm/zmm views share one class)."""
        return "vec" if self.kind in VECTOR_KINDS else self.kind

    @property
    def key(self) -> tuple:
        """Identity of the underlying register regardless of the view (e.g. eax ~ rax)."""
        return (self.cls, self.num, self.virtual)

    def view(self, size: int) -> Reg:
        """Same register seen with another width (GP: 1/2/4/8 bytes, vectors: 16/32/64)."""
        v = _VIEWS.get((self, size))  # views are asked for often (v.x, v.d): share one object per view
        if v is None:
            if self.kind == GP:
                v = Reg(GP, size, self.num, self.virtual)
            elif self.kind in VECTOR_KINDS:
                v = Reg(_VEC_KIND[size], size, self.num, self.virtual)
            else:
                raise ValueError(f"{self} has no {size}-byte view")
            if len(_VIEWS) > 100_000:  # a long-running JIT makes fresh virtuals: bound the memo
                _VIEWS.clear()
            _VIEWS[(self, size)] = v
        return v

    # Short spellings for the common views.
    @property
    def q(self) -> Reg:
        return self.view(8)

    @property
    def d(self) -> Reg:
        return self.view(4)

    @property
    def w(self) -> Reg:
        return self.view(2)

    @property
    def b(self) -> Reg:
        return self.view(1)

    @property
    def x(self) -> Reg:
        return self.view(16)

    @property
    def y(self) -> Reg:
        return self.view(32)

    @property
    def z(self) -> Reg:
        return self.view(64)

    def __str__(self) -> str:
        if self.virtual:
            if self.kind == GP:
                return f"v{self.num}{_GP_SUFFIX[self.size]}"
            return f"v{self.kind[0]}{self.num}"
        if self.kind == GP:
            return _GP_NAMES[self.size][self.num]
        if self.kind == RIP:
            return "rip"
        return f"{self.kind}{self.num}"

    __repr__ = __str__


@dataclass(frozen=True, slots=True, eq=False)
class Label:
    """A code or data position; identity semantics (two labels with one name differ)."""

    name: str

    def __str__(self) -> str:
        return self.name

    __repr__ = __str__


class _MemFields(NamedTuple):
    base: Reg | None = None
    index: Reg | None = None
    scale: int = 1
    disp: int = 0
    size: int | None = None
    bcst: int = 0
    label: Label | None = None


class Mem(_MemFields):
    """``[base + index*scale + disp]``; ``size`` in bytes; ``bcst`` = N of ``{1toN}`` (then size = element).

    RIP-relative: ``base=rip`` with a numeric ``disp``, or ``label`` set (resolved at layout).
    A tuple (see ``Reg``) whose constructor validates the scale and the index register.
    """

    __slots__ = ()

    def __new__(cls, base: Reg | None = None, index: Reg | None = None, scale: int = 1, disp: int = 0,
                size: int | None = None, bcst: int = 0, label: Label | None = None):
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"scale must be 1, 2, 4 or 8, not {scale}")
        if index is not None and index.num == 4 and index.kind == GP and not index.virtual:
            raise ValueError("rsp cannot be an index register")
        return _tuple_new(cls, (base, index, scale, disp, size, bcst, label))

    def sized(self, size: int) -> Mem:
        return Mem(self.base, self.index, self.scale, self.disp, size, self.bcst, self.label)

    def broadcast(self, elem_size: int, count: int) -> Mem:
        return Mem(self.base, self.index, self.scale, self.disp, elem_size, count, self.label)

    def __add__(self, offset: int) -> Mem:  # an offset, not tuple concatenation
        return Mem(self.base, self.index, self.scale, self.disp + offset, self.size, self.bcst, self.label)

    @property
    def registers(self) -> tuple:
        return tuple(r for r in (self.base, self.index) if r is not None and r.kind != RIP)

    def __str__(self) -> str:
        parts = []
        if self.label is not None:
            parts.append(f"rip + {self.label.name}")
        elif self.base is not None:
            parts.append(str(self.base))
        if self.index is not None:
            parts.append(f"{self.index}*{self.scale}")
        text = " + ".join(parts)
        if self.disp or not parts:
            if not parts:
                text = hex(self.disp) if self.disp >= 0 else f"-{hex(-self.disp)}"
            else:
                text += f" + {hex(self.disp)}" if self.disp >= 0 else f" - {hex(-self.disp)}"
        prefix = f"{_SIZE_PTR[self.size]} PTR " if self.size else ""
        suffix = f"{{1to{self.bcst}}}" if self.bcst else ""
        return f"{prefix}[{text}]{suffix}"

    __repr__ = __str__


def _gp_regs(size: int) -> tuple:
    return tuple(Reg(GP, size, i) for i in range(16))


(rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15) = _gp_regs(8)
(eax, ecx, edx, ebx, esp, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d, r13d, r14d, r15d) = _gp_regs(4)
(ax, cx, dx, bx, sp, bp, si, di, r8w, r9w, r10w, r11w, r12w, r13w, r14w, r15w) = _gp_regs(2)
(al, cl, dl, bl, spl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b, r13b, r14b, r15b) = _gp_regs(1)
rip = Reg(RIP, 8, 0)
XMM_REGS = tuple(Reg(XMM, 16, i) for i in range(32))
YMM_REGS = tuple(Reg(YMM, 32, i) for i in range(32))
ZMM_REGS = tuple(Reg(ZMM, 64, i) for i in range(32))
K_REGS = tuple(Reg(KREG, 8, i) for i in range(8))
GP64_REGS, GP32_REGS, GP16_REGS, GP8_REGS = _gp_regs(8), _gp_regs(4), _gp_regs(2), _gp_regs(1)

REGISTERS_BY_NAME = {str(r): r for r in GP64_REGS + GP32_REGS + GP16_REGS + GP8_REGS}
REGISTERS_BY_NAME.update({str(r): r for r in XMM_REGS + YMM_REGS + ZMM_REGS + K_REGS})
globals().update(REGISTERS_BY_NAME)  # xmm0..zmm31, k0..k7 as module attributes


def reg(name: str) -> Reg:
    """Physical register by its Intel name, e.g. ``reg('zmm17')``."""
    return REGISTERS_BY_NAME[name]


def imm_fits(value: int, bits: int) -> bool:
    """Does ``value`` fit a sign-extended immediate of ``bits`` bits?"""
    limit = 1 << (bits - 1)
    return -limit <= value < limit


class Instr(NamedTuple):
    """One machine instruction over physical and/or virtual operands.

    ``mask``/``zero`` are the AVX-512 ``{k}``/``{z}`` decorations of the first operand; the
    ``implicit_*`` tuples name physical registers read/written without appearing as operands
    (filled in by the builder for calls and returns).  A NamedTuple rather than a frozen dataclass
    because it is built for every instruction of every phase and tuples construct fastest.
    """

    mnemonic: str
    operands: tuple = ()
    mask: Reg | None = None
    zero: bool = False
    implicit_uses: tuple = ()
    implicit_defs: tuple = ()

    def __str__(self) -> str:
        ops = [str(o) for o in self.operands]
        if ops and self.mask is not None:
            ops[0] += f"{{{self.mask}}}" + ("{z}" if self.zero else "")
        return f"{self.mnemonic} {', '.join(ops)}" if ops else self.mnemonic

    __repr__ = __str__


@dataclass(frozen=True, slots=True)
class Bind:
    """Pseudo-instruction: the label's position."""

    label: Label

    def __str__(self) -> str:
        return f"{self.label.name}:"


@dataclass(frozen=True, slots=True)
class Align:
    """Pseudo-instruction: pad with multi-byte NOPs to a multiple of ``boundary`` bytes."""

    boundary: int

    def __str__(self) -> str:
        return f".p2align {self.boundary.bit_length() - 1}"
