"""A small `ffi` on cffi's C backend alone: the types polyjit needs, without cffi's C parser.

Importing `cffi` pulls in pycparser (tens of milliseconds); loading a cached kernel must be faster than that.
This parses only what the loader and runtimes write: primitive types, pointers, arrays and function
pointers `R(*)(A, B, ...)`.
"""

from __future__ import annotations

import _cffi_backend as B

_PRIMITIVES = ("char", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t",
               "uint64_t", "int", "long", "size_t", "intptr_t", "uintptr_t", "float", "double", "_Bool")
_ALIASES = {"void": None, "bool": "_Bool", "ssize_t": "intptr_t"}


class FFI:
    """The subset of cffi.FFI used here: cast, typeof, new, from_buffer, memmove, NULL, errno, dlopen."""

    CData = B._CDataBase
    CType = B.CType

    def __init__(self):
        self._types: dict = {}
        self.NULL = B.cast(self._type("void *"), 0)

    # -- types ------------------------------------------------------------------------------------------
    def _type(self, text):
        if isinstance(text, B.CType):
            return text
        t = self._types.get(text)  # the hot path: a type string seen before, exactly as written
        if t is not None:
            return t
        raw = text
        text = " ".join(text.replace("*", " * ").replace("(", " ( ").replace(")", " ) ")
                        .replace("[", " [ ").replace("]", " ] ").replace(",", " , ").split())
        t = self._types.get(text)
        if t is None:
            t = self._types[text] = self._parse(text)
        self._types[raw] = t
        return t

    def _base(self, name: str):
        name = _ALIASES.get(name, name)
        if name is None:
            return B.new_void_type()
        if name not in _PRIMITIVES:
            raise ValueError(f"unsupported C type {name!r}")
        return B.new_primitive_type(name)

    def _parse(self, text: str):
        if "( * )" in text:  # function pointer: R ( * ) ( A , B )
            ret, rest = text.split("( * )", 1)
            inner = rest.strip()[1:-1].strip()
            args = [] if inner in ("", "void") else [a.strip() for a in inner.split(",")]
            return B.new_function_type(tuple(self._type(a) for a in args), self._type(ret.strip()), False)
        if text.endswith("]"):
            base, count = text[:-1].rsplit("[", 1)
            count = count.strip()
            return B.new_array_type(B.new_pointer_type(self._type(base.strip())), int(count) if count else None)
        if text.endswith("*"):
            return B.new_pointer_type(self._type(text[:-1].strip()))
        return self._base(text.replace("const ", "").replace("unsigned long", "uint64_t").strip())

    def typeof(self, x):
        return B.typeof(x) if isinstance(x, B._CDataBase) else self._type(x)

    # -- values -----------------------------------------------------------------------------------------
    def cast(self, ctype, value):
        return B.cast(self._type(ctype), value)

    def new(self, ctype, init=None):
        return B.newp(self._type(ctype), init)

    def from_buffer(self, ctype, obj=None, require_writable=False):
        if obj is None:
            ctype, obj = "char[]", ctype
        return B.from_buffer(self._type(ctype), obj, require_writable)

    def memmove(self, dest, src, n):
        return B.memmove(dest, src, n)

    @property
    def errno(self):
        return B.get_errno()

    def dlopen(self, name, functions: dict[str, str] | None = None):
        """A library handle; `functions` maps names to C signatures to load eagerly as attributes."""
        return _Library(self, B.load_library(name, 0), functions or {})


class _Library:
    def __init__(self, ffi: FFI, handle, functions: dict[str, str]):
        self._ffi, self._handle = ffi, handle
        for name, signature in functions.items():
            setattr(self, name, handle.load_function(ffi._type(signature), name))

    def address(self, symbol: str) -> int | None:
        """The address of a function symbol, or None if the library lacks it."""
        try:
            fn = self._handle.load_function(self._ffi._type("void(*)(void)"), symbol)
        except (AttributeError, KeyError, OSError):
            return None
        return int(B.cast(self._ffi._type("uintptr_t"), fn))
