"""Calling conventions as data (System V AMD64 implemented; Microsoft x64 described for later)."""

from __future__ import annotations

from dataclasses import dataclass

from .operands import GP, XMM, Reg

_G = [Reg(GP, 8, i) for i in range(16)]
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 = _G


@dataclass(frozen=True)
class ABI:
    name: str
    int_args: tuple          # GP argument registers, in order
    float_args: tuple        # xmm argument registers, in order
    int_return: Reg
    float_return: Reg
    callee_saved_gp: tuple   # must be preserved by the callee
    callee_saved_vec: tuple  # vector numbers whose low 128 bits the callee preserves (Win64: 6..15)
    shadow_space: int = 0    # bytes the caller reserves above the return address (Win64: 32)
    stack_align: int = 16

    @property
    def caller_saved_gp(self) -> tuple:
        return tuple(r for r in _G if r not in self.callee_saved_gp and r.num != 4)


SYSV = ABI("sysv", (RDI, RSI, RDX, RCX, R8, R9), tuple(Reg(XMM, 16, i) for i in range(8)), RAX,
           Reg(XMM, 16, 0), (RBX, RBP, R12, R13, R14, R15), ())
# Described for a future Windows port; the allocator only honours callee_saved_gp so far.
WIN64 = ABI("win64", (RCX, RDX, R8, R9), tuple(Reg(XMM, 16, i) for i in range(4)), RAX, Reg(XMM, 16, 0),
            (RBX, RBP, RDI, RSI, R12, R13, R14, R15), tuple(range(6, 16)), shadow_space=32)

# C types understood by the builder: name -> (register class, size in bytes)
C_TYPES = {
    "int64_t": ("gp", 8), "uint64_t": ("gp", 8), "int32_t": ("gp", 4), "uint32_t": ("gp", 4),
    "int16_t": ("gp", 2), "uint16_t": ("gp", 2), "int8_t": ("gp", 1), "uint8_t": ("gp", 1),
    "long": ("gp", 8), "int": ("gp", 4), "size_t": ("gp", 8), "intptr_t": ("gp", 8),
    "double": ("vec", 8), "float": ("vec", 4),
}


def c_type_class(ctype: str) -> tuple[str, int]:
    """('gp'|'vec', size) of a C type name; any pointer is a 64-bit GP value."""
    ctype = ctype.strip()
    if ctype.endswith("*"):
        return "gp", 8
    try:
        return C_TYPES[ctype]
    except KeyError:
        raise ValueError(f"unsupported C type {ctype!r}") from None
