"""Running native phase functions: the argument block, threads for parallel phases, errors, the result.

Each compiled specialization gets a small generated Python function that packs the block with one
`struct.pack` and passes the first array pointers as arguments: the per-call path stays a few microseconds.
"""

from __future__ import annotations

import os
import struct
import threading

import numpy as np

from .asm.loader import ffi

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


def run_parallel(cfunc, block, n, pointers):
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
    futures = [pool(threads).submit(cfunc, block, lo, min(n, lo + step), *pointers) for lo in range(0, n, step)]
    for fut in futures:
        fut.result()


_CAPI: dict = {}


def _capi() -> dict:
    """Addresses of the C API functions and objects the machine-code entry uses (ctypes: numpy loaded it)."""
    if not _CAPI:
        import ctypes
        api = ctypes.pythonapi
        fn = {"call": "PyObject_Call", "incref": "Py_IncRef", "aslong": "PyLong_AsLongLong",
              "errclear": "PyErr_Clear", "setstr": "PyErr_SetString", "fromdouble": "PyFloat_FromDouble",
              "fromlong": "PyLong_FromLongLong", "callobj": "PyObject_CallFunctionObjArgs", "decref": "Py_DecRef"}
        _CAPI.update({k: ctypes.cast(getattr(api, name), ctypes.c_void_p).value for k, name in fn.items()})
        _CAPI.update({"none": id(None), "array_type": id(np.ndarray), "indexerr": id(IndexError),
                      "par_limit": 2 * MIN_CHUNK})
        new = api.PyCFunction_NewEx
        new.restype, new.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p)

        class MethodDef(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("meth", ctypes.c_void_p), ("flags", ctypes.c_int),
                        ("doc", ctypes.c_char_p)]
        _CAPI["new"], _CAPI["MethodDef"], _CAPI["ctypes"] = new, MethodDef, ctypes
    return _CAPI


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
        for name in ("call", "incref", "none", "array_type", "aslong", "errclear", "setstr", "indexerr",
                     "fromdouble", "fromlong", "callobj", "decref", "par_limit"):
            self.data[self.slots[name]] = api[name]
        for k, kind in enumerate(kinds):
            if kind[0] in ("pyfloat", "pyint"):
                obj = float if kind[0] == "pyfloat" else int
            else:
                obj = np.dtype(kind[1]) if kind[0] == "array" else np.dtype(kind[1]).type
            self.keep.append(obj)
            self.data[self.slots[f"type{k}"]] = id(obj)
        for p, fn in enumerate(functions):
            self.data[self.slots[f"phase{p}"]] = fn.address
        self.messages = [api["ctypes"].create_string_buffer(m.encode()) for _, m in checks]
        for c, m in enumerate(self.messages):
            self.data[self.slots[f"msg{c}"]] = api["ctypes"].addressof(m)
        if result is not None and not result[2]:
            rtype = np.dtype(result[1]).type
            self.keep.append(rtype)
            self.data[self.slots["result_type"]] = id(rtype)
        self.memo = [self.slots[f"memo{j}"] for j in range(sum(1 for n in slots if n.startswith("memo")))]
        self.trips = [self.slots[f"trip{p}"] for p in range(len(functions))]
        self.method = api["MethodDef"](b"polyjit_entry", function.address, self.METH_VARARGS_KEYWORDS, None)
        self.builtin = api["new"](api["ctypes"].addressof(self.method), self.data, None)
        self.slow = None

    def bind(self, slow) -> None:
        """Where calls the entry does not take go: the kernel's Python call path."""
        self.slow = slow
        self.data[self.slots["slow"]] = id(slow)

    def remember(self, params, trips) -> None:
        if self.slow is None:
            return
        data = self.data
        data[self.slots["valid"]] = 0
        for slot, v in zip(self.memo, params):
            data[slot] = v
        for slot, n in zip(self.trips, trips):
            data[slot] = n
        data[self.slots["valid"]] = 1


def address(x) -> int:
    return x.__array_interface__["data"][0]


def pointer(x):
    return ffi.cast("char *", x.__array_interface__["data"][0])


_FORMAT = {"float64": "d", "float32": "f4x", "uint64": "Q"}


def spec_from_model(model, layout, trips, check_source, foreign=frozenset()):
    from .lowering.layout import NativeSpec
    params = tuple((p.name, p.source.name, None) if hasattr(p.source, "name") else
                   (p.name, p.source.array, p.source.dim) for p in model.params)
    result = None
    if model.return_value is not None:
        result = (model.return_value, model.temporary(model.return_value).dtype, model.return_weak)
    return NativeSpec(model.name, tuple((a.name, a.kind, a.dtype) for a in model.arguments), params,
                      tuple((c.error, c.message) for c in model.checks), check_source,
                      frozenset(model.written_arrays()),
                      tuple((t.name, t.dtype, t.shape) for t in model.temporaries if t.shape), result, layout,
                      tuple(trips), foreign)


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
        ns = {"np": np, "ffi": ffi, "struct": struct, "run_parallel": run_parallel, "IndexError": IndexError,
              "address": address, "pointer": pointer, "ValueError": ValueError, "checks": self.checks,
              "remember": None if self.entry is None else self.entry.remember}
        ns.update({f"f{k}": fn.cfunc for k, fn in enumerate(self.functions)})
        if code_blob is not None:
            import marshal
            code = marshal.loads(code_blob)
        else:
            code = compile(self._caller_source(), f"<polyjit call {self.spec.name}>", "exec")
        self.code = code
        exec(code, ns)
        return ns["call"]

    def _caller_source(self) -> str:
        spec = self.spec
        layout = spec.layout
        index = {a[0]: k for k, a in enumerate(spec.arguments)}
        lines = [spec.check_source, ""]
        names = ", ".join(p[0] for p in spec.params) or "*_"
        for k, trip in enumerate(spec.trips):  # generated from isl's AST, no user text
            if trip is not None:
                lines += [f"def trip{k}({names}):", f"    return {trip}", ""]
        lines.append("def call(args):")
        lines.append(f"    {', '.join(f'a{k}' for k in range(len(index)))}{',' if len(index) == 1 else ''} = args")
        params = [f"int(a{index[arg]})" if dim is None else f"a{index[arg]}.shape[{dim}]"
                  for _, arg, dim in spec.params]
        param_names = [p[0] for p in spec.params]
        lines.append(f"    bad = pj_checks({', '.join(params)})")
        lines.append("    if bad >= 0:")
        lines.append("        error, message = checks[bad]")
        lines.append("        raise (IndexError if error == 'IndexError' else ValueError)(message)")
        temps = {t[0]: t for t in spec.temporaries}
        fmt, values, pointers, copy_back = [], [], [], []
        for k, (name, _, ndim) in enumerate(layout.arrays):
            if name in index:
                x = f"a{index[name]}"
                if name in spec.written:
                    lines.append(f"    if not {x}.flags.writeable:")
                    lines.append(f"        raise ValueError('argument `{name}` is read-only, but the kernel "
                                 f"assigns to it')")
                if name in spec.foreign:  # the machine code reads native byte order
                    lines.append(f"    {x}_orig, {x} = {x}, {x}.astype({x}.dtype.newbyteorder('='))")
                    if name in spec.written:
                        copy_back.append(x)
            else:
                _, dtype, shape = temps[name]
                x = f"t{k}"
                dims = ", ".join(params[param_names.index(s)] for s in shape)
                lines.append(f"    {x} = np.empty(({dims},), '{dtype}')")
            fmt.append("q")
            if k < layout.pointer_args:
                pointers.append(x)
                values.append("0")
            else:
                values.append(f"address({x})")
            if ndim:
                fmt.append(f"{2 * ndim}q")
                values.append(f"*{x}.shape, *{x}.strides")
        for name, _ in layout.scalars:
            dt = spec.arguments[index[name]][2]
            fmt.append(_FORMAT.get(dt, "q"))
            values.append(f"a{index[name]}" if dt.startswith("float") else f"int(a{index[name]})")
        lines.append(f"    block = bytearray(struct.pack('<{''.join(fmt)}', {', '.join(values)}) + "
                     f"bytes({8 * (len(layout.locals) + 1)}))")
        lines.append("    blk = ffi.from_buffer('int64_t[]', block)")
        if pointers:  # from_buffer is the fast way, but only for contiguous arrays
            fast = ", ".join(f"ffi.from_buffer({x})" for x in pointers) + ("," if len(pointers) == 1 else "")
            slow = ", ".join(f"pointer({x})" for x in pointers) + ("," if len(pointers) == 1 else "")
            lines.append("    try:")
            lines.append(f"        ptrs = ({fast})")
            lines.append("    except ValueError:")
            lines.append(f"        ptrs = ({slow})")
        else:
            lines.append("    ptrs = ()")
        pad = 3 - len(pointers)
        if pad:
            lines.append(f"    ptrs = ptrs + (ffi.NULL,) * {pad}")
        for k, trip in enumerate(spec.trips):
            if trip is None:
                lines.append(f"    f{k}(blk, 0, 0, *ptrs)")
            else:
                lines.append(f"    n{k} = trip{k}({', '.join(params)})")
                lines.append(f"    run_parallel(f{k}, blk, n{k}, ptrs)")
        lines.append(f"    err = blk[{layout.error}]")
        lines.append("    if err:")
        lines.append("        raise IndexError(checks[err - 1][1])")
        lines.append("    if remember is not None:  # the machine-code entry may take calls with these sizes now")
        trips = ", ".join("0" if t is None else f"n{k}" for k, t in enumerate(spec.trips))
        lines.append(f"        remember(({', '.join(params)}{',' if len(params) == 1 else ''}), ({trips},))")
        for x in copy_back:
            lines.append(f"    {x}_orig[...] = {x}")
        if spec.result is None:
            lines.append("    return None")
        else:
            name, dt, weak = spec.result
            slot = dict(layout.locals)[name]
            lines.append(f"    value = np.frombuffer(block, '{np.dtype(dt).str}', 1, {8 * slot})[0]")
            lines.append("    return value.item()" if weak else "    return value")
        self.caller_source = "\n".join(lines)
        return self.caller_source


def load_native(payload) -> NativeKernel:
    """A NativeKernel from a cache payload: relocate, map executable, wrap (no isl, no compiler)."""
    from .asm.loader import from_plain
    functions = [from_plain(p) for p in payload["code"]]
    entry = payload["entry"]
    if entry is not None:
        code, slots, kinds = entry
        entry = Entry(from_plain(code), slots, kinds, functions, payload["checks"], payload["result"])
    return NativeKernel(payload["spec"], functions, payload["caller"], payload["checks"], entry)


def make_entry(spec, key, functions):
    """The machine-code entry for a freshly compiled specialization (None where it does not apply)."""
    from .asm import allocate, encode, load
    from .lowering.entry import build_entry, entry_kinds
    kinds = entry_kinds(key)
    built = build_entry(spec, kinds, len(functions))
    if built is None:
        return None
    f, slots = built
    return Entry(load(encode(allocate(f.program())), f.c_signature()), slots, kinds, functions, spec.checks,
                 spec.result)
