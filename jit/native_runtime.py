"""Running native phase functions: the argument block, threads for parallel phases, errors, the result."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .asm.loader import ffi

_pool_lock = threading.Lock()
_pool: dict = {}


def num_threads() -> int:
    return max(1, int(os.environ.get("POLYJIT_NUM_THREADS", os.cpu_count() or 1)))


def pool() -> ThreadPoolExecutor:
    n = num_threads()
    with _pool_lock:
        if _pool.get("n") != n:
            _pool["pool"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="polyjit")
            _pool["n"] = n
        return _pool["pool"]


MIN_CHUNK = 2048  # iterations below which a parallel loop is not worth waking threads for


class NativeKernel:
    """A compiled specialization: phase functions loaded in executable memory."""

    def __init__(self, model, phases, layout, trips, check_source: str):
        self.model = model
        ns: dict = {}
        exec(compile(check_source, f"<polyjit checks {model.name}>", "exec"), ns)
        self.checks = ns["pj_checks"]
        self.written = set(model.written_arrays())
        self.phases = phases  # (NativePhase, JitFunction)
        self.layout = layout
        self.trips = trips
        self.arg_index = {a.name: k for k, a in enumerate(model.arguments)}
        self.scalar_types = {a.name: a.dtype for a in model.arguments if a.kind == "scalar"}
        self.local_types = {t.name: t.dtype for t in model.temporaries if not t.shape}

    def listing(self) -> str:
        return "\n\n".join(fn.listing() for _, fn in self.phases)

    def __call__(self, args):
        model, layout = self.model, self.layout
        params = []
        for p in model.params:
            src = p.source
            params.append(int(args[self.arg_index[src.name]]) if hasattr(src, "name")
                          else args[self.arg_index[src.array]].shape[src.dim])
        bad = self.checks(*params)
        if bad >= 0:
            chk = model.checks[bad]
            raise {"IndexError": IndexError, "ValueError": ValueError}[chk.error](chk.message)
        block = np.zeros(layout.size, np.int64)
        keep, copy_back = [], []
        pvals = None
        for name, slot, ndim in layout.arrays:
            k = self.arg_index.get(name)
            if k is None:  # a temporary
                if pvals is None:
                    pvals = dict(zip((p.name for p in model.params), params))
                tmp = model.temporary(name)
                x = np.empty([pvals[s] for s in tmp.shape], tmp.dtype)
                keep.append(x)
            else:
                x = args[k]
                if name in self.written and not x.flags.writeable:
                    raise ValueError(f"argument `{name}` is read-only, but the kernel assigns to it")
                if not x.dtype.isnative:  # the machine code reads native byte order: stage a copy
                    staged = x.astype(x.dtype.newbyteorder("="))
                    if name in self.written:
                        copy_back.append((x, staged))
                    x = staged
                    keep.append(x)
            block[slot] = x.__array_interface__["data"][0]
            block[slot + 1: slot + 1 + ndim] = x.shape
            block[slot + 1 + ndim: slot + 1 + 2 * ndim] = x.strides
        for name, slot in layout.scalars:
            v = args[self.arg_index[name]]
            dt = self.scalar_types[name]
            # ints sit sign- or zero-extended in their slot, like the generated code keeps them in registers
            block[slot: slot + 1].view(dt if dt.startswith("float") else "uint64" if dt == "uint64" else "int64")[0] = v
        ptr = ffi.from_buffer("int64_t[]", block)
        for (phase, fn), trip in zip(self.phases, self.trips):
            if trip is None:
                fn.cfunc(ptr, 0, 0)
                continue
            n = trip(*params)[0]
            threads = min(num_threads(), n // MIN_CHUNK)
            if threads <= 1:
                if n > 0:
                    fn.cfunc(ptr, 0, n)
                continue
            step = -(-n // threads)
            futures = [pool().submit(fn.cfunc, ptr, lo, min(n, lo + step)) for lo in range(0, n, step)]
            for fut in futures:
                fut.result()
        if block[layout.error]:
            raise IndexError(model.checks[int(block[layout.error]) - 1].message)
        for x, staged in copy_back:
            x[...] = staged
        if model.return_value is None:
            return None
        slot = dict(layout.locals)[model.return_value]
        value = block[slot: slot + 1].view(np.uint8)[: np.dtype(self.local_types[model.return_value]).itemsize]
        value = value.view(self.local_types[model.return_value])[0]
        return value.item() if model.return_weak else value
