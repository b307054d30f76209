"""Executable memory through cffi (ABI mode): map RW, copy, mprotect to R+X -- never W and X at once.

Hosts that forbid anonymous executable mappings get a fallback: a ``memfd`` mapped twice, once RW
(written, then unmapped) and once R+X.  The mapping is owned by the returned ``JitFunction`` and
unmapped when it is garbage-collected (``weakref.finalize``); cffi function pointers keep nothing
alive, so keep the ``JitFunction``.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING

from .cbackend import FFI

if TYPE_CHECKING:
    from .assembler import MachineCode

ffi = FFI()
libc = ffi.dlopen(None, {
    "mmap": "void *(*)(void *, size_t, int, int, int, long)",
    "mprotect": "int(*)(void *, size_t, int)",
    "munmap": "int(*)(void *, size_t)",
})
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MAP_FAILED = 2**64 - 1
PAGE = os.sysconf("SC_PAGE_SIZE")
_LIBRARIES = {}


def _open(name: str | None):
    if name not in _LIBRARIES:
        try:
            _LIBRARIES[name] = ffi.dlopen(name)
        except OSError:
            _LIBRARIES[name] = None
    return _LIBRARIES[name]


_SYMBOLS: dict = {}


def symbol_address(symbol: str) -> int | None:
    """Address of a C function in libm, libmvec or libc (dlopen/dlsym through cffi's backend), cached."""
    if symbol.startswith("0x"):
        return int(symbol, 16)
    if symbol not in _SYMBOLS:
        _SYMBOLS[symbol] = _lookup(symbol)
    return _SYMBOLS[symbol]


def _lookup(symbol: str) -> int | None:
    for lib in ("libm.so.6", "libmvec.so.1", None):
        handle = _open(lib)
        address = handle.address(symbol) if handle is not None else None
        if address:
            return address
    return None


class ExecutableMemory:
    """A read+execute mapping holding ``code``; ``address`` is where it starts."""

    def __init__(self, code: bytes, use_memfd: bool = False):
        size = max(PAGE, (len(code) + PAGE - 1) // PAGE * PAGE)
        self.size = size
        self.method = "memfd" if use_memfd else "mprotect"
        if not use_memfd:
            ptr = libc.mmap(ffi.NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if int(ffi.cast("uintptr_t", ptr)) == MAP_FAILED:
                raise OSError(ffi.errno, "mmap failed")
            ffi.memmove(ptr, code, len(code))
            if libc.mprotect(ptr, size, PROT_READ | PROT_EXEC) != 0:
                libc.munmap(ptr, size)
                self.method = "memfd"
                ptr = self._memfd(code, size)
        else:
            ptr = self._memfd(code, size)
        self.address = int(ffi.cast("uintptr_t", ptr))
        self._finalizer = weakref.finalize(self, libc.munmap, ptr, size)

    @staticmethod
    def _memfd(code: bytes, size: int):
        fd = os.memfd_create("polyjit-code", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            rw = libc.mmap(ffi.NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            if int(ffi.cast("uintptr_t", rw)) == MAP_FAILED:
                raise OSError(ffi.errno, "mmap (RW view) failed")
            ffi.memmove(rw, code, len(code))
            libc.munmap(rw, size)
            rx = libc.mmap(ffi.NULL, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0)
            if int(ffi.cast("uintptr_t", rx)) == MAP_FAILED:
                raise OSError(ffi.errno, "mmap (RX view) failed")
            return rx
        finally:
            os.close(fd)

    def release(self) -> None:
        self._finalizer()


class JitFunction:
    """Callable machine code with a C signature; numpy arrays/buffers are accepted for pointers."""

    def __init__(self, machine_code, signature: str, memory: ExecutableMemory):
        self.machine_code = machine_code
        self.signature = signature
        self.memory = memory
        self.address = memory.address
        self.cfunc = ffi.cast(signature, memory.address)
        ftype = ffi.typeof(self.cfunc)
        self._pointer_args = tuple(i for i, a in enumerate(ftype.args) if a.kind in ("pointer", "array"))
        self._arg_types = ftype.args

    def __call__(self, *args):
        if self._pointer_args:
            args = list(args)
            for i in self._pointer_args:
                a = args[i]
                if not isinstance(a, ffi.CData) and a is not None:
                    args[i] = ffi.from_buffer(self._arg_types[i], a, require_writable=False)
        return self.cfunc(*args)

    def listing(self) -> str:
        return f"; loaded at {self.address:#x} ({self.memory.method}) as {self.signature}\n" + \
            self.machine_code.listing()

    def __repr__(self) -> str:
        return f"<JitFunction {self.machine_code.name} at {self.address:#x}: {self.signature}>"


def load(machine_code: MachineCode, signature: str, use_memfd: bool = False) -> JitFunction:
    """Phase 4: relocate (symbols resolved through libm/libmvec/libc), map executable, wrap."""
    code = machine_code.link(lambda s: machine_code.symbols.get(s) or symbol_address(s))
    return JitFunction(machine_code, signature, ExecutableMemory(code, use_memfd))


class _Stored:
    """Stands in for a MachineCode whose bytes came from storage: a name and a listing."""

    def __init__(self, name: str, text: str):
        self.name, self.text = name, text

    def listing(self) -> str:
        return self.text


def to_plain(fn: JitFunction) -> tuple:
    """A loaded function as plain data (unlinked bytes, relocations by symbol name) for storage."""
    mc = fn.machine_code
    return (mc.name, mc.code, tuple((r.offset, r.symbol, r.addend) for r in mc.relocations), mc.listing(),
            fn.signature)


def from_plain(plain: tuple, use_memfd: bool = False) -> JitFunction:
    """Relocate and load stored code in this process (addresses of C functions change between runs)."""
    name, code, relocations, text, signature = plain
    data = bytearray(code)
    for offset, symbol, addend in relocations:
        address = symbol_address(symbol)
        if address is None or symbol.startswith("0x"):
            raise KeyError(f"cannot relocate symbol {symbol!r}")
        data[offset:offset + 8] = ((address + addend) & (2**64 - 1)).to_bytes(8, "little")
    return JitFunction(_Stored(name, text), signature, ExecutableMemory(bytes(data), use_memfd))
