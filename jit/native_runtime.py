"""Running native phase functions: the argument block, threads for parallel phases, errors, the result.

Each compiled specialization gets a small generated Python function that packs the block with one
`struct.pack` and passes the first array pointers as arguments: the per-call path stays a few microseconds.
"""

from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .asm.loader import ffi

_pool_lock = threading.Lock()
_pool: dict = {}
_CPUS = os.cpu_count() or 1
MIN_CHUNK = 2048  # iterations below which a parallel loop is not worth waking threads for


def num_threads() -> int:
    v = os.environ.get("POLYJIT_NUM_THREADS")
    return max(1, int(v)) if v else _CPUS


def pool(n: int) -> ThreadPoolExecutor:
    with _pool_lock:
        if _pool.get("n") != n:
            _pool["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="polyjit")
            _pool["n"] = n
        return _pool["pool"]


def run_parallel(cfunc, block, n, pointers):
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


class NativeKernel:
    """A compiled specialization: phase functions loaded in executable memory."""

    def __init__(self, model, phases, layout, trips, check_source: str, pointer_args: int, foreign=frozenset()):
        self.model = model
        self.foreign = foreign  # array arguments in non-native byte order: staged through native copies
        self.phases = phases  # (NativePhase, JitFunction)
        self.layout = layout
        self.written = set(model.written_arrays())
        self.call = self._make_caller(check_source, trips, pointer_args)

    def listing(self) -> str:
        return "\n\n".join(fn.listing() for _, fn in self.phases)

    def __call__(self, args):
        return self.call(args)

    def _make_caller(self, check_source, trips, pointer_args):
        """Python source of the per-call path, specialized to this kernel's arguments."""
        model, layout = self.model, self.layout
        index = {a.name: k for k, a in enumerate(model.arguments)}
        ns = {"np": np, "ffi": ffi, "struct": struct, "run_parallel": run_parallel, "IndexError": IndexError,
              "address": address, "pointer": pointer,
              "ValueError": ValueError, "checks": model.checks}
        exec(compile(check_source, f"<polyjit checks {model.name}>", "exec"), ns)
        lines = ["def call(args):"]
        lines.append(f"    {', '.join(f'a{k}' for k in range(len(index)))}{',' if len(index) == 1 else ''} = args")
        params = []
        for p in model.params:
            src = p.source
            params.append(f"int(a{index[src.name]})" if hasattr(src, "name")
                          else f"a{index[src.array]}.shape[{src.dim}]")
        lines.append(f"    bad = pj_checks({', '.join(params)})")
        lines.append("    if bad >= 0:")
        lines.append("        c = checks[bad]")
        lines.append("        raise (IndexError if c.error == 'IndexError' else ValueError)(c.message)")
        fmt, values, pointers, copy_back = [], [], [], []
        for k, (name, _, ndim) in enumerate(layout.arrays):
            if name in index:
                x = f"a{index[name]}"
                arg = model.argument(name)
                if name in self.written:
                    lines.append(f"    if not {x}.flags.writeable:")
                    lines.append(f"        raise ValueError('argument `{name}` is read-only, but the kernel "
                                 f"assigns to it')")
                if name in self.foreign:  # the machine code reads native byte order
                    lines.append(f"    {x}_orig, {x} = {x}, {x}.astype({x}.dtype.newbyteorder('='))")
                    if name in self.written:
                        copy_back.append(x)
                del arg
            else:
                tmp = model.temporary(name)
                shape = ", ".join(params[[p.name for p in model.params].index(s)] for s in tmp.shape)
                x = f"t{k}"
                lines.append(f"    {x} = np.empty(({shape},), '{tmp.dtype}')")
            if k < pointer_args:
                pointers.append(x)
                fmt.append("q")
                values.append("0")
            else:
                fmt.append("q")
                values.append(f"address({x})")
            fmt.append(f"{2 * ndim}q" if ndim else "")
            if ndim:
                values.append(f"*{x}.shape, *{x}.strides")
        scalar_types = {a.name: a.dtype for a in model.arguments if a.kind == "scalar"}
        for name, _ in layout.scalars:
            dt = scalar_types[name]
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
        for k, ((_, fn), trip) in enumerate(zip(self.phases, trips)):
            ns[f"f{k}"] = fn.cfunc
            if trip is None:
                lines.append(f"    f{k}(blk, 0, 0, *ptrs)")
            else:
                ns[f"trip{k}"] = trip
                lines.append(f"    run_parallel(f{k}, blk, trip{k}({', '.join(params)})[0], ptrs)")
        lines.append(f"    err = blk[{layout.error}]")
        lines.append("    if err:")
        lines.append("        raise IndexError(checks[err - 1].message)")
        for x in copy_back:
            lines.append(f"    {x}_orig[...] = {x}")
        if model.return_value is None:
            lines.append("    return None")
        else:
            slot = dict(layout.locals)[model.return_value]
            dt = model.temporary(model.return_value).dtype
            ns["rdt"] = np.dtype(dt)
            lines.append(f"    value = np.frombuffer(block, rdt, 1, {8 * slot})[0]")
            lines.append("    return value.item()" if model.return_weak else "    return value")
        src = "\n".join(lines)
        self.caller_source = src
        exec(compile(src, f"<polyjit call {model.name}>", "exec"), ns)
        return ns["call"]
