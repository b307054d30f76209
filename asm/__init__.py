"""polyjit.asm -- a standalone x86-64 assembler, register allocator and loader in pure Python.

Design: registers, memory operands, labels and instructions are immutable values
(``operands``); instruction forms are a data table in SDM notation (``forms_table``) that a small
table-driven encoder turns into legacy/REX, VEX or EVEX bytes (``encoder``), byte-identical to
GNU as 2.40 on the tested forms; the calling convention is data (``abi``).  A function passes
through four phases, each a printable type:

    Function (builder) -> Program (virtual registers)
        --allocate()--> AllocatedProgram (physical registers, spills, prologue)
        --encode()-->   MachineCode (bytes, constant pool, relocation records, listing)
        --load()-->     JitFunction (R+X memory, callable through cffi)

``check_allocation(program, allocated)`` verifies an allocation independently.  ``isa_tier()``
picks sse2/avx2/avx512 from CPUID/XGETBV (run through this assembler), capped by ``POLYJIT_ISA``.

Example::

    from polyjit.asm import Function, Mem
    f = Function("saxpy", args=[("n", "int64_t"), ("a", "float"), ("x", "float*"), ("y", "float*")],
                 isa="avx2")
    n, a, x, y = f.args
    va, i = f.ymm(), f.gp64()
    f.vbroadcastss(va, a)
    f.xor(i.d, i.d)
    loop, done = f.label("loop"), f.label("done")
    f.bind(loop)
    f.cmp(i, n); f.jge(done)        # (n a multiple of 8 here)
    v = f.ymm()
    f.vmovups(v, Mem(y, i, 4, size=32))
    f.vfmadd231ps(v, va, Mem(x, i, 4, size=32))
    f.vmovups(Mem(y, i, 4, size=32), v)
    f.add(i, 8); f.jmp(loop)
    f.bind(done)
    f.ret()
    fn = f.compile()                # allocate + encode + load
    fn(8, 2.0, xs, ys)              # numpy arrays are passed as pointers
    print(f.listing(), fn.listing())

Builder API: ``Function(name, args=[(name, ctype)], ret=ctype|None, abi=SYSV, isa=None)``;
``f.args``; new virtuals ``f.gp64() f.gp32() f.gp(bits) f.xmm() f.ymm() f.zmm() f.k() f.vreg(size)``;
any mnemonic as a method ``f.<mnemonic>(*operands, mask=None, zero=False)``; ``f.label(name)``,
``f.bind(label)``, ``f.align(n)``; ``f.const(values, dtype, size)`` and ``f.address_slot(symbol)``
return RIP-relative ``Mem``; ``f.call(target, args, ret, vector=False)`` calls C (symbol name,
address or cffi pointer); ``f.ret(value)``; ``f.program()``, ``f.listing()``, ``f.compile()``.
Shifts by a register count move it to cl automatically; div/idiv/cqo/cpuid use their fixed
registers implicitly (write ``f.mov(rax, a); f.cqo(); f.idiv(b); f.mov(q, rax)``).
"""

from . import operands as _operands
from .abi import ABI, C_TYPES, SYSV, WIN64
from .assembler import AddressSlot, Constant, MachineCode, Relocation, assemble, nop_padding
from .checker import AllocationCheckError, check_allocation
from .cpu import available_tiers, cpu_features, hardware_tier, isa_tier
from .encoder import EncodingError, encode_instruction, encode_one, select_form
from .forms import FORMS, Form
from .loader import ExecutableMemory, JitFunction, load
from .operands import Align, Bind, Instr, Label, Mem, Reg, reg, rip
from .program import Function, Program
from .regalloc import AllocatedProgram, AllocationError, allocate, encode

# every physical register by name: rax..r15, eax.., ax.., al.., xmm0..zmm31, k0..k7
globals().update(_operands.REGISTERS_BY_NAME)

__all__ = [
    "ABI", "SYSV", "WIN64", "C_TYPES", "AddressSlot", "Constant", "MachineCode", "Relocation", "assemble",
    "nop_padding", "AllocationCheckError", "check_allocation", "available_tiers", "cpu_features",
    "hardware_tier", "isa_tier", "EncodingError", "encode_instruction", "encode_one", "select_form", "FORMS",
    "Form", "ExecutableMemory", "JitFunction", "load", "Align", "Bind", "Instr", "Label", "Mem", "Reg", "reg",
    "rip", "Function", "Program", "AllocatedProgram", "AllocationError", "allocate", "encode",
    *_operands.REGISTERS_BY_NAME,
]
