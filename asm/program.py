"""The builder: ``Function`` collects instructions over virtual registers into a ``Program``.

Instructions are appended through methods named after mnemonics (``f.vaddps(a, b, c)``,
``f.jl(label)``), with optional ``mask=``/``zero=`` for AVX-512.  Arguments, returns and calls
follow the ABI: the builder emits the moves between virtual registers and the fixed argument /
return registers, and the allocator takes care of the rest.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import partial

from .abi import ABI, SYSV, c_type_class
from .assembler import AddressSlot, Constant
from .forms import FORMS
from .operands import GP, KREG, XMM, YMM, ZMM, Align, Bind, Instr, Label, Mem, Reg

_STRUCT = {"float64": "d", "double": "d", "f64": "d", "float32": "f", "float": "f", "f32": "f",
           "int64": "q", "i64": "q", "int32": "i", "i32": "i", "uint64": "Q", "u64": "Q", "uint32": "I",
           "u32": "I", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H"}
_new_instr = partial(tuple.__new__, Instr)
_SHIFTS = ("shl", "shr", "sar", "sal", "rol", "ror")


@dataclass(frozen=True)
class Program:
    """Phase 1: instructions over virtual (and a few fixed physical) registers."""

    name: str
    items: tuple
    constants: tuple
    arg_types: tuple
    ret_type: str | None
    abi: ABI
    isa: str
    nvirtual: int

    def listing(self) -> str:
        lines = [f"; {self.name}({', '.join(self.arg_types)}) -> {self.ret_type or 'void'}  [{self.isa}]"]
        for item in self.items:
            lines.append(str(item) if type(item) is Bind else f"    {item}")
        for c in self.constants:
            if type(c) is Constant:
                lines.append(f"{c.label}: .byte {c.data.hex(' ')}")
            else:
                lines.append(f"{c.label}: .quad {c.symbol}")
        return "\n".join(lines)

    __str__ = listing


class Function:
    """Build one function: ``Function(name, args=[(name, ctype), ...], ret=ctype|None, isa=...)``."""

    def __init__(self, name: str, args=(), ret: str | None = None, abi: ABI = SYSV, isa: str | None = None):
        if isa is None:
            from .cpu import isa_tier
            isa = isa_tier()
        self.name, self.abi, self.isa, self.ret_type = name, abi, isa, ret
        self.arg_names = tuple(a[0] for a in args)
        self.arg_types = tuple(a[1] for a in args)
        self.items: list = []
        self.constants: list = []
        self._nvreg = 0
        self._nlabel = 0
        self._const_cache: dict = {}
        self._slots: dict = {}
        arg_regs = []
        ngp = nvec = 0
        for ctype in self.arg_types:
            cls, size = c_type_class(ctype)
            if cls == "gp":
                if ngp >= len(abi.int_args):
                    raise NotImplementedError("stack-passed arguments are not supported")
                v = self.gp(size * 8)
                self.mov(v.q, abi.int_args[ngp])  # whole register; the view gives the C width
                ngp += 1
            else:
                if nvec >= len(abi.float_args):
                    raise NotImplementedError("stack-passed arguments are not supported")
                v = self.xmm()
                self.items.append(Instr(self._vec_copy, (v, abi.float_args[nvec])))
                nvec += 1
            arg_regs.append(v)
        self.args = tuple(arg_regs)

    # ---- virtual registers, labels, constants -------------------------------------------------
    def _new(self, kind: str, size: int) -> Reg:
        self._nvreg += 1
        return Reg(kind, size, self._nvreg, True)

    def gp(self, bits: int = 64) -> Reg:
        return self._new(GP, bits // 8)

    def gp64(self) -> Reg:
        return self._new(GP, 8)

    def gp32(self) -> Reg:
        return self._new(GP, 4)

    def xmm(self) -> Reg:
        return self._new(XMM, 16)

    def ymm(self) -> Reg:
        return self._new(YMM, 32)

    def zmm(self) -> Reg:
        return self._new(ZMM, 64)

    def k(self) -> Reg:
        return self._new(KREG, 8)

    def vreg(self, size: int) -> Reg:
        """A vector virtual of 16/32/64 bytes."""
        return self._new({16: XMM, 32: YMM, 64: ZMM}[size], size)

    def label(self, name: str | None = None) -> Label:
        self._nlabel += 1
        return Label(f".L{name or 'L'}{self._nlabel}_{self.name}")

    def bind(self, label: Label) -> None:
        self.items.append(Bind(label))

    def align(self, boundary: int = 16) -> None:
        self.items.append(Align(boundary))

    def const(self, values, dtype: str = "float64", size: int | None = None, align: int = 64) -> Mem:
        """RIP-relative memory operand for read-only data (deduplicated)."""
        if isinstance(values, (bytes, bytearray)):
            data = bytes(values)
        else:
            if hasattr(values, "tobytes"):
                data = values.tobytes()
            else:
                vals = list(values) if hasattr(values, "__iter__") else [values]
                data = struct.pack(f"<{len(vals)}{_STRUCT[dtype]}", *vals)
        key = (data, align)
        label = self._const_cache.get(key)
        if label is None:
            label = self._const_cache[key] = Label(f".LC{len(self.constants)}_{self.name}")
            self.constants.append(Constant(label, data, align))
        return Mem(label=label, size=size if size is not None else (len(data) if len(data) <= 64 else None))

    def address_slot(self, symbol: str, address: int | None = None) -> Mem:
        """``QWORD PTR [rip + slot]`` holding the absolute address of ``symbol`` (a relocation)."""
        label = self._slots.get(symbol)
        if label is None:
            label = self._slots[symbol] = Label(f".LS{len(self.constants)}_{self.name}")
            self.constants.append(AddressSlot(label, symbol, address))
        return Mem(label=label, size=8)

    # ---- instructions -------------------------------------------------------------------------
    @property
    def _vec_copy(self) -> str:
        return "movaps" if self.isa == "sse2" else "vmovaps"

    def emit(self, mnemonic: str, *operands, mask: Reg | None = None, zero: bool = False,
             implicit_uses=(), implicit_defs=()) -> Instr:
        ins = Instr(mnemonic, operands, mask, zero, tuple(implicit_uses), tuple(implicit_defs))
        self.items.append(ins)
        return ins

    def __getattr__(self, mnemonic: str):
        if mnemonic.startswith("_"):
            raise AttributeError(mnemonic)
        attribute, mnemonic = mnemonic, mnemonic.removesuffix("_")  # f.and_(), f.or_() for keywords
        if mnemonic not in FORMS:
            raise AttributeError(mnemonic)
        if mnemonic in _SHIFTS:
            return lambda dst, count, **kw: self._shift(mnemonic, dst, count, **kw)

        items = self.items

        def emit(*operands, mask=None, zero=False):
            ins = _new_instr((mnemonic, operands, mask, zero, (), ()))  # Instr without its Python __new__
            items.append(ins)
            return ins
        emit.__name__ = mnemonic
        self.__dict__[attribute] = emit  # later calls skip __getattr__
        return emit

    def _shift(self, mnemonic, dst, count, **kw):
        if type(count) is Reg and not (count.kind == GP and count.num == 1 and not count.virtual):
            rcx = self.abi.int_args[3] if self.abi.int_args[3].num == 1 else Reg(GP, 8, 1)
            self.mov(rcx.d, count.d)
            count = rcx.b
        return self.emit(mnemonic, dst, count, **kw)

    def ret(self, value: Reg | None = None) -> None:
        """Return (moving ``value`` into the ABI return register)."""
        uses = ()
        if value is not None:
            if value.cls == "gp":
                target = self.abi.int_return.view(max(value.size, 4))
                self.mov(target, value if value.size >= 4 else value.d)
            else:
                target = self.abi.float_return
                self.emit(self._vec_copy, target, value.x)
            uses = (target,)
        self.emit("ret", implicit_uses=uses)

    def call(self, target, args=(), ret: str | None = None, vector: bool = False) -> Reg | None:
        """Call a C function: ``target`` is a symbol name (looked up in libm/libc at load), an int
        address, or a cffi function pointer.  ``args`` are virtual registers (GP or vector);
        ``ret`` is the C return type.  ``vector=True`` marks a libmvec-style call taking ymm/zmm
        arguments (no ``vzeroupper`` before it)."""
        if isinstance(target, str):
            slot = self.address_slot(target)
        else:
            address = target if isinstance(target, int) else _cffi_address(target)
            slot = self.address_slot(f"0x{address:x}", address)
        ngp = nvec = 0
        used = []
        for a in args:
            if a.cls == "gp":
                r = self.abi.int_args[ngp]
                self.mov(r, a.q)
                ngp += 1
            else:
                r = self.abi.float_args[nvec].view(a.size)
                self.emit(self._vec_copy, r, a)
                nvec += 1
            used.append(r)
        if self.isa != "sse2" and not vector:
            self.emit("vzeroupper")
        clobbers = list(self.abi.caller_saved_gp)
        nvec_regs = 32 if self.isa == "avx512" else 16
        clobbers += [Reg(ZMM if self.isa == "avx512" else (YMM if self.isa == "avx2" else XMM),
                         {"avx512": 64, "avx2": 32}.get(self.isa, 16), i) for i in range(nvec_regs)]
        if self.isa == "avx512":
            clobbers += [Reg(KREG, 8, i) for i in range(1, 8)]
        self.emit("call", slot, implicit_uses=used, implicit_defs=clobbers)
        if ret is None or ret == "void":
            return None
        if vector:
            out = self.vreg(args[0].size)
            self.emit(self._vec_copy, out, Reg(args[0].kind, args[0].size, 0))
            return out
        cls, size = c_type_class(ret)
        if cls == "gp":
            out = self.gp(max(size, 4) * 8)
            self.mov(out, self.abi.int_return.view(max(size, 4)))
        else:
            out = self.xmm()
            self.emit(self._vec_copy, out, self.abi.float_return)
        return out

    # ---- phases -------------------------------------------------------------------------------
    def program(self) -> Program:
        return Program(self.name, tuple(self.items), tuple(self.constants), self.arg_types, self.ret_type,
                       self.abi, self.isa, self._nvreg)

    def listing(self) -> str:
        return self.program().listing()

    def compile(self):
        """allocate + encode + load: a callable with the C signature."""
        from .loader import load
        from .regalloc import allocate, encode
        return load(encode(allocate(self.program())), self.c_signature())

    def c_signature(self) -> str:
        return f"{self.ret_type or 'void'}(*)({', '.join(self.arg_types) or 'void'})"


def _cffi_address(fnptr) -> int:
    from .loader import ffi
    return int(ffi.cast("uintptr_t", fnptr))
