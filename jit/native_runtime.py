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

    def __init__(self, spec, functions, code_blob: bytes | None = None, checks=None):
        self._spec = spec
        self.checks = spec.checks if checks is None else checks
        self.functions = functions  # loaded JitFunctions, one per phase
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
        return {"kind": "native", "spec": pickle.dumps(self.spec, protocol=pickle.HIGHEST_PROTOCOL),
                "checks": self.checks, "code": [to_plain(fn) for fn in self.functions],
                "caller": marshal.dumps(self.code)}

    def __call__(self, args):
        return self.call(args)

    def _make_caller(self, code_blob: bytes | None = None):
        """The per-call path: Python generated for this kernel's arguments (with the parameter checks and the
        iteration counts of parallel phases), compiled once; `code_blob` is that code marshaled (cache)."""
        ns = {"np": np, "ffi": ffi, "struct": struct, "run_parallel": run_parallel, "IndexError": IndexError,
              "address": address, "pointer": pointer, "ValueError": ValueError, "checks": self.checks}
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
                lines.append(f"    run_parallel(f{k}, blk, trip{k}({', '.join(params)}), ptrs)")
        lines.append(f"    err = blk[{layout.error}]")
        lines.append("    if err:")
        lines.append("        raise IndexError(checks[err - 1][1])")
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
    return NativeKernel(payload["spec"], [from_plain(p) for p in payload["code"]], payload["caller"],
                        payload["checks"])
