"""Executable memory: map RW, copy, mprotect to R+X -- never W and X at once.

Mapping goes through ctypes (numpy has loaded it already, so loading cached code costs no import); calls
from Python go through cffi, imported on first use (``JitFunction.cfunc``): its calls are the cheaper.
Hosts that forbid anonymous executable mappings get a fallback: a ``memfd`` mapped twice, once RW
(written, then unmapped) and once R+X.  The mapping is owned by the returned ``JitFunction`` and
unmapped when it is garbage-collected (``weakref.finalize``); cffi function pointers keep nothing
alive, so keep the ``JitFunction``.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from typing import TYPE_CHECKING

try:
    from _ctypes import dlopen as _dlopen
    from _ctypes import dlsym as _dlsym
except ImportError:  # pragma: no cover - not POSIX
    _dlopen = _dlsym = None

if TYPE_CHECKING:
    from .assembler import MachineCode


_libc = ctypes.CDLL(None, use_errno=True)


def _libc_function(name, restype, *argtypes):
    fn = getattr(_libc, name)
    fn.restype, fn.argtypes = restype, argtypes
    return fn


_mmap = _libc_function("mmap", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_mprotect = _libc_function("mprotect", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_munmap = _libc_function("munmap", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS = 0x01, 0x02, 0x20
MAP_FAILED = 2**64 - 1
PAGE = os.sysconf("SC_PAGE_SIZE")
_LIBRARIES = {}
_ffi = []


def __getattr__(name: str):
    if name == "ffi":  # cffi's backend, loaded when Python first calls machine code through it
        if not _ffi:
            from .cbackend import FFI
            _ffi.append(FFI())
        return _ffi[0]
    raise AttributeError(name)


def _mapped(ptr) -> int:
    if ptr is None or ptr == MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap failed")
    return ptr


def _open(name: str | None):
    if name not in _LIBRARIES:
        try:
            _LIBRARIES[name] = _dlopen(name, os.RTLD_NOW) if _dlopen is not None else ctypes.CDLL(name)._handle
        except OSError:
            _LIBRARIES[name] = None
    return _LIBRARIES[name]


_SYMBOLS: dict = {}


def symbol_address(symbol: str) -> int | None:
    """Address of a C function in libm, libmvec or libc (dlopen/dlsym), cached."""
    if symbol.startswith("0x"):
        return int(symbol, 16)
    if symbol not in _SYMBOLS:
        _SYMBOLS[symbol] = _lookup(symbol)
    return _SYMBOLS[symbol]


def _lookup(symbol: str) -> int | None:
    for lib in ("libm.so.6", "libmvec.so.1", None):
        handle = _open(lib)
        if handle is None:
            continue
        try:
            address = _dlsym(handle, symbol) if _dlsym is not None else \
                ctypes.cast(getattr(ctypes.CDLL(lib), symbol), ctypes.c_void_p).value
        except (AttributeError, OSError):
            address = None
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
            ptr = _mapped(_mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            ctypes.memmove(ptr, code, len(code))
            if _mprotect(ptr, size, PROT_READ | PROT_EXEC) != 0:
                _munmap(ptr, size)
                self.method = "memfd"
                ptr = self._memfd(code, size)
        else:
            ptr = self._memfd(code, size)
        self.address = ptr
        self._finalizer = weakref.finalize(self, _munmap, ptr, size)

    @staticmethod
    def _memfd(code: bytes, size: int):
        fd = os.memfd_create("polyjit-code", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            rw = _mapped(_mmap(None, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
            ctypes.memmove(rw, code, len(code))
            _munmap(rw, size)
            return _mapped(_mmap(None, size, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0))
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
        self._cfunc = None

    @property
    def cfunc(self):
        """A cffi function pointer (cffi imported on first use)."""
        if self._cfunc is None:
            from .loader import ffi
            cfunc = ffi.cast(self.signature, self.address)
            ftype = ffi.typeof(cfunc)
            self._pointer_args = tuple(i for i, a in enumerate(ftype.args) if a.kind in ("pointer", "array"))
            self._arg_types = ftype.args
            self._cfunc = cfunc
        return self._cfunc

    def __call__(self, *args):
        cfunc = self.cfunc
        if self._pointer_args:
            from .loader import ffi
            args = list(args)
            for i in self._pointer_args:
                a = args[i]
                if not isinstance(a, ffi.CData) and a is not None:
                    args[i] = ffi.from_buffer(self._arg_types[i], a, require_writable=False)
        return cfunc(*args)

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
