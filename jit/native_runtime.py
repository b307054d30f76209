"""Running native phase functions: the argument block, threads for parallel phases, errors, the result.

Each compiled specialization gets a small generated Python function that packs the block with one
`struct.pack` and passes the first array pointers as arguments: the per-call path stays a few microseconds.
"""

from __future__ import annotations

import os
import struct
import threading

import numpy as np

_pool_lock = threading.Lock()
_pool: dict = {}
_CPUS = os.cpu_count() or 1
MIN_CHUNK = 65536  # iterations per thread below which waking threads costs more than it saves


def num_threads() -> int:
    v = os.environ.get("POLYJIT_NUM_THREADS")
    return max(1, int(v)) if v else _CPUS


def pool(n: int):
    from concurrent.futures import ThreadPoolExecutor
    with _pool_lock:
        if _pool.get("n") != n:
            _pool["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="polyjit")
            _pool["n"] = n
        return _pool["pool"]


def run_parallel(cfunc, block, n, pointers, raw=None, sums=(), error=0):
    """Iterations 0..n-1 of a parallel phase in chunks on threads. With `sums` ((byte offset, dtype) of
    fastmath sums in the argument block `raw`), each chunk gets its own copy of the block with the sums at
    zero, and the partial sums are added to the block's values in chunk order afterwards."""
    if n < 2 * MIN_CHUNK:  # one chunk: no threads (and no environment look-up)
        if n > 0:
            cfunc(block, 0, n, *pointers)
        return
    threads = min(num_threads(), n // MIN_CHUNK)
    if threads <= 1:
        if n > 0:
            cfunc(block, 0, n, *pointers)
        return
    step = -(-n // threads)
    chunks = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
    if not sums:
        blocks = [block] * len(chunks)
    else:
        from .asm.loader import ffi
        copies = [bytearray(raw) for _ in chunks]
        for c in copies:
            for offset, dtype in sums:
                struct.pack_into(_SLOT[dtype], c, offset, 0)
        blocks = [ffi.from_buffer("int64_t[]", c) for c in copies]
    futures = [pool(threads).submit(cfunc, b, lo, hi, *pointers) for b, (lo, hi) in zip(blocks, chunks)]
    for fut in futures:
        fut.result()
    if sums:
        _combine(raw, copies, sums, error)


def _combine(raw, copies, sums, error) -> None:
    for offset, dtype in sums:
        fmt = _SLOT[dtype]
        total = struct.unpack_from(fmt, raw, offset)[0]
        for c in copies:
            total += struct.unpack_from(fmt, c, offset)[0]
        if dtype[0] in "iu":  # wrap around like the machine's integers
            bits = 8 * np.dtype(dtype).itemsize
            total &= (1 << bits) - 1
            if dtype[0] == "i" and total >> (bits - 1):
                total -= 1 << bits
        struct.pack_into(fmt, raw, offset, total)
    failed = next((c for c in copies if struct.unpack_from("q", c, error)[0]), None)
    if failed is not None:  # the first chunk that met a run-time check error reports it
        struct.pack_into("q", raw, error, struct.unpack_from("q", failed, error)[0])


# how the argument block holds a scalar local (ints sign- or zero-extended to 64 bits)
_SLOT = {"float64": "d", "float32": "f", "int64": "q", "int32": "q", "int16": "q", "int8": "q", "uint64": "Q",
         "uint32": "q", "uint16": "q", "uint8": "q", "bool": "q"}


_CAPI: dict = {}
_THREADS_VAR: list = []  # keeps the C string alive


def _capi() -> dict:
    """Addresses of the C API functions and objects the machine-code entry uses (ctypes: numpy loaded it)."""
    if not _CAPI:
        import ctypes
        try:
            from _ctypes import dlsym
        except ImportError:  # pragma: no cover - not POSIX
            def dlsym(_, name):
                return ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value
        api = ctypes.pythonapi
        fn = {"call": "PyObject_Call", "incref": "Py_IncRef", "aslong": "PyLong_AsLongLong",
              "errclear": "PyErr_Clear", "setstr": "PyErr_SetString", "fromdouble": "PyFloat_FromDouble",
              "fromlong": "PyLong_FromLongLong", "callobj": "PyObject_CallFunctionObjArgs", "decref": "Py_DecRef",
              "savethread": "PyEval_SaveThread", "restorethread": "PyEval_RestoreThread"}
        fn["getenv"] = "getenv"  # libc's, through the same handle (the process's global symbols)
        _CAPI.update({k: dlsym(api._handle, name) for k, name in fn.items()})
        _THREADS_VAR.append(_c_string("POLYJIT_NUM_THREADS"))  # the entry reads it as num_threads() does
        _CAPI.update({"none": id(None), "array_type": id(np.ndarray), "indexerr": id(IndexError),
                      "par_limit": 2 * MIN_CHUNK, "threads_var": _THREADS_VAR[0].ctypes.data,
                      "one_cpu": int(_CPUS == 1)})
        new = api.PyCFunction_NewEx
        new.restype, new.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)
        _CAPI["new"] = new
    return _CAPI


def _c_string(text: str) -> np.ndarray:
    """A NUL-terminated copy of `text` that stays put while the array lives."""
    return np.frombuffer(text.encode() + b"\0", np.uint8).copy()


class Entry:
    """The machine-code entry point of a specialization (lowering/entry.py) as a CPython builtin.

    Its data array holds the C API addresses, the expected argument types, the phases' addresses, the check
    messages, the memo of the parameters the Python path checked last, and the argument block. `remember`
    (called by the Python path after a successful call) fills the memo; until then every call goes there.
    """

    METH_VARARGS_KEYWORDS = 3

    def __init__(self, function, slots, kinds, functions, checks, result):
        api = _capi()
        self.function, self.slots, self.kinds = function, {n: k for k, n in enumerate(slots)}, kinds
        self.functions = functions  # the phases the data array points at stay mapped while the entry lives
        self.data = np.zeros(len(slots), np.int64)
        self.keep = []  # objects whose addresses the data array holds
        for name, value in api.items():  # the C API addresses (and constants) that entry.FIXED names
            if name in self.slots:
                self.data[self.slots[name]] = value
        for k, kind in enumerate(kinds):
            if kind[0] in ("pyfloat", "pyint"):
                obj = float if kind[0] == "pyfloat" else int
            else:
                obj = np.dtype(kind[1]) if kind[0] == "array" else np.dtype(kind[1]).type
            self.keep.append(obj)
            self.data[self.slots[f"type{k}"]] = id(obj)
        for p, fn in enumerate(functions):
            self.data[self.slots[f"phase{p}"]] = fn.address
        self.messages = [_c_string(m) for _, m in checks]
        for c, m in enumerate(self.messages):
            self.data[self.slots[f"msg{c}"]] = m.ctypes.data
        if result is not None and not result[2]:
            rtype = np.dtype(result[1]).type
            self.keep.append(rtype)
            self.data[self.slots["result_type"]] = id(rtype)
        self.memo = [self.slots[f"memo{j}"] for j in range(sum(1 for n in slots if n.startswith("memo")))]
        self.trips = [self.slots[f"trip{p}"] for p in range(len(functions))]
        self.name = _c_string("polyjit_entry")
        # PyMethodDef {const char *ml_name; PyCFunction ml_meth; int ml_flags; const char *ml_doc}
        self.method = np.array([self.name.ctypes.data, function.address, self.METH_VARARGS_KEYWORDS, 0], np.int64)
        self.builtin = api["new"](self.method.ctypes.data, self.data, None)
        self.slow = None

    def bind(self, slow) -> None:
        """Where calls the entry does not take go: the kernel's Python call path."""
        self.slow = slow
        self.data[self.slots["slow"]] = id(slow)

    def remember(self, params, trips) -> bool:
        """Record sizes the Python path has checked; False while no slow path is bound (entry unusable)."""
        if self.slow is None:
            return False
        data = self.data
        data[self.slots["valid"]] = 0
        for slot, v in zip(self.memo, params):
            data[slot] = v
        for slot, n in zip(self.trips, trips):
            data[slot] = n
        data[self.slots["valid"]] = 1
        return True


def address(x) -> int:
    return x.__array_interface__["data"][0]


def pointer(x):
    from .asm.loader import ffi
    return ffi.cast("char *", x.__array_interface__["data"][0])


class NativeKernel:
    """A compiled specialization: phase functions loaded in executable memory.

    From the cache, `spec` arrives pickled and is unpickled only when asked for: the per-call path needs
    just the checks' messages, and unpickling the spec would import polyjit.lowering on the cached path.
    """

    def __init__(self, spec, functions, code_blob: bytes | None = None, checks=None, entry=None):
        self._spec = spec
        self.checks = spec.checks if checks is None else checks
        self.functions = functions  # loaded JitFunctions, one per phase
        self.entry = entry  # the machine-code entry (Entry) or None
        self.call = self._make_caller(code_blob)

    @property
    def spec(self):
        if isinstance(self._spec, bytes):
            import pickle
            self._spec = pickle.loads(self._spec)
        return self._spec

    def listing(self) -> str:
        return "\n\n".join(fn.listing() for fn in self.functions)

    def payload(self) -> dict:
        """Plain data for the on-disk cache: the spec and each phase's machine code (relocations by name)."""
        import marshal
        import pickle

        from .asm.loader import to_plain
        entry = self.entry
        return {"kind": "native", "spec": pickle.dumps(self.spec, protocol=pickle.HIGHEST_PROTOCOL),
                "checks": self.checks, "code": [to_plain(fn) for fn in self.functions],
                "caller": marshal.dumps(self.code), "result": self.spec.result,
                "entry": None if entry is None else (to_plain(entry.function), tuple(entry.slots), entry.kinds)}

    def __call__(self, args):
        return self.call(args)

    def _make_caller(self, code_blob: bytes | None = None):
        """The per-call path: Python generated for this kernel's arguments (with the parameter checks and the
        iteration counts of parallel phases), compiled once; `code_blob` is that code marshaled (cache)."""
        entry = self.entry
        ns = {"np": np, "ffi": None, "struct": struct, "run_parallel": run_parallel, "IndexError": IndexError,
              "address": address, "pointer": pointer, "ValueError": ValueError, "checks": self.checks,
              "remember": None if entry is None else entry.remember, "busy": [],
              "entry": None if entry is None else entry.builtin}

        def load_cffi():  # the phases through cffi: imported when a call first takes this path
            from .asm.loader import ffi
            ns.update({f"f{k}": fn.cfunc for k, fn in enumerate(self.functions)}, ffi=ffi)
        ns["load_cffi"] = load_cffi
        if code_blob is not None:
            import marshal
            code = marshal.loads(code_blob)
        else:
            from .native_build import caller_source
            self.caller_source = caller_source(self.spec)
            code = compile(self.caller_source, f"<polyjit call {self.spec.name}>", "exec")
        self.code = code
        exec(code, ns)
        return ns["call"]

def load_native(payload) -> NativeKernel:
    """A NativeKernel from a cache payload: relocate, map executable, wrap (no isl, no compiler)."""
    from .asm.loader import from_plain
    functions = [from_plain(p) for p in payload["code"]]
    entry = payload["entry"]
    if entry is not None:
        code, slots, kinds = entry
        entry = Entry(from_plain(code), slots, kinds, functions, payload["checks"], payload["result"])
    return NativeKernel(payload["spec"], functions, payload["caller"], payload["checks"], entry)
