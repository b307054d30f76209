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
Registers have views: ``v.d``/``v.w``/``v.b`` (GP), ``v.x``/``v.y``/``v.z`` (vectors); memory is
``Mem(base, index, scale, disp, size=bytes)``, broadcast ``m.broadcast(elem_size, count)``, RIP
``Mem(rip, disp=...)`` or ``Mem(label=L)``.  Phase functions: ``allocate(program)``,
``check_allocation(program, allocated)``, ``encode(allocated) -> MachineCode``,
``load(machine_code, "double(*)(int64_t, double*)")``; ``MachineCode.link(resolve)`` applies the
relocations for storing code elsewhere.  Timing: ``python -m polyjit.asm.bench``.

Limitations: no stack-passed arguments (at most 6 integer + 8 float arguments), values are
spilled for their whole lifetime (no live-range splitting, spilled operands are reloaded into
scratch registers rather than used as memory operands), WIN64 is described as data but only its
GP callee-saved set would be honoured, no high-byte registers (ah..dh), no embedded rounding.
"""

import importlib

# Public names, resolved lazily (PEP 562): loading a cached kernel needs only the loader, not the encoder
# tables or the allocator, so `import polyjit.asm.loader` stays cheap.
_EXPORTS = {
    "abi": ("ABI", "C_TYPES", "SYSV", "WIN64"),
    "assembler": ("AddressSlot", "Constant", "MachineCode", "Relocation", "assemble", "nop_padding"),
    "checker": ("AllocationCheckError", "check_allocation"),
    "cpu": ("available_tiers", "cpu_features", "hardware_tier", "isa_tier"),
    "encoder": ("EncodingError", "encode_instruction", "encode_one", "select_form"),
    "forms": ("FORMS", "Form"),
    "loader": ("ExecutableMemory", "JitFunction", "load"),
    "operands": ("Align", "Bind", "Instr", "Label", "Mem", "Reg", "reg", "rip"),
    "program": ("Function", "Program"),
    "regalloc": ("AllocatedProgram", "AllocationError", "allocate", "encode"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


_SUBMODULES = ("abi", "assembler", "bench", "cbackend", "checker", "cpu", "effects", "encoder", "forms",
               "forms_table", "loader", "operands", "program", "regalloc")


def __getattr__(name: str):
    if name in _SUBMODULES:  # `from polyjit.asm import cpu` asks for the submodule itself
        return importlib.import_module(f".{name}", __name__)
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    else:  # every physical register by name: rax..r15, eax.., ax.., al.., xmm0..zmm31, k0..k7
        registers = importlib.import_module(".operands", __name__).REGISTERS_BY_NAME
        if name not in registers:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = registers[name]
    globals()[name] = value
    return value


def __dir__():
    registers = importlib.import_module(".operands", __name__).REGISTERS_BY_NAME
    return sorted(set(globals()) | set(_WHERE) | set(registers))


__all__ = sorted(_WHERE)
