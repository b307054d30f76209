"""Running compiled OpenCL kernels through pyopencl: devices, built programs, buffers, copies back."""

from __future__ import annotations

import os
import threading

import numpy as np

from .analysis.errors import PolyjitError
from .signature import is_device_array

_lock = threading.Lock()
_state: dict = {}
BUILD_OPTIONS = ("-cl-fp32-correctly-rounded-divide-sqrt",)
FAST_OPTIONS = ("-cl-fast-relaxed-math", "-cl-mad-enable")


def _cl():
    import pyopencl as cl
    return cl


def context_and_queue():
    """The OpenCL context and queue: POLYJIT_OPENCL_DEVICE ("P:D" indices or part of a device name)."""
    with _lock:
        if "queue" in _state:
            return _state["ctx"], _state["queue"]
        cl = _cl()
        want = os.environ.get("POLYJIT_OPENCL_DEVICE")
        if want:
            devices = [(p, d) for p in cl.get_platforms() for d in p.get_devices()]
            if ":" in want and all(part.isdigit() for part in want.split(":")):
                pi, di = (int(x) for x in want.split(":"))
                device = cl.get_platforms()[pi].get_devices()[di]
            else:
                matches = [d for _, d in devices if want.lower() in d.name.lower()]
                if not matches:
                    names = ", ".join(d.name for _, d in devices)
                    raise PolyjitError(f"POLYJIT_OPENCL_DEVICE={want!r} matches no device; available: {names}")
                device = matches[0]
            ctx = cl.Context([device])
        else:
            ctx = cl.create_some_context(interactive=False)
        _state["ctx"], _state["queue"] = ctx, cl.CommandQueue(ctx)
        return _state["ctx"], _state["queue"]


def build(source: str, fastmath: bool, needs_fp64: bool):
    ctx, _ = context_and_queue()
    device = ctx.devices[0]
    if needs_fp64 and "cl_khr_fp64" not in device.extensions and not device.double_fp_config:
        raise PolyjitError(f"OpenCL device {device.name!r} lacks cl_khr_fp64, which float64 kernels need; "
                           "use float32 arrays or another device (POLYJIT_OPENCL_DEVICE)")
    options = BUILD_OPTIONS + (FAST_OPTIONS if fastmath else ())
    key = (device.int_ptr, source, options)
    with _lock:
        prg = _state.setdefault("programs", {}).get(key)
    if prg is None:
        prg = _cl().Program(ctx, source).build(options=list(options))
        with _lock:
            _state["programs"][key] = prg
    return prg


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class OpenCLKernel:
    """A compiled specialization: call it with the kernel's arguments."""

    def __init__(self, model, code, check_source: str):
        self.model = model
        self.code = code
        ns: dict = {}
        exec(compile(check_source, f"<polyjit checks {model.name}>", "exec"), ns)
        self.checks = ns["pj_checks"]
        self.program = build(code.source, model.fastmath, code.needs_fp64)
        self.kernels = [_cl().Kernel(self.program, p.kernel) for p in code.phases]
        self.written = set(model.written_arrays())
        self.arg_index = {a.name: k for k, a in enumerate(model.arguments)}
        from .lowering.hostcode import trip_count_source
        names = ", ".join(x.name for x in model.params) or "*_"
        self.trip = []
        for p in code.phases:  # generated from isl's AST, no user text
            counts = ", ".join(trip_count_source(f.init, f.cond, f.step) for f in p.dims)
            self.trip.append(eval(f"lambda {names}: ({counts},)") if p.dims else None)

    def __call__(self, args):
        cl = _cl()
        ctx, queue = context_and_queue()
        model = self.model
        params = []
        for p in model.params:
            src = p.source
            params.append(int(args[self.arg_index[src.name]]) if hasattr(src, "name")
                          else args[self.arg_index[src.array]].shape[src.dim])
        bad = self.checks(*params)
        if bad >= 0:
            chk = model.checks[bad]
            raise {"IndexError": IndexError, "ValueError": ValueError}[chk.error](chk.message)
        mf = cl.mem_flags
        kargs = []
        copies = []  # (host array, device buffer, staged copy or None)
        roots: dict[int, tuple] = {}
        pvals = dict(zip((p.name for p in model.params), params))
        for name in self.code.arrays:
            a = model.argument(name)
            if a is None:  # a temporary
                tmp = model.temporary(name)
                shape = [pvals[s] for s in tmp.shape]
                size = max(1, int(np.prod(shape)))
                buf = cl.Buffer(ctx, mf.READ_WRITE, size * np.dtype(tmp.dtype).itemsize)
                strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
                kargs += [buf, *shape, *strides, 0]
                continue
            x = args[self.arg_index[name]]
            item = x.dtype.itemsize
            if is_device_array(x):
                kargs += [x.base_data, *x.shape, *(s // item for s in x.strides), x.offset // item]
                continue
            if name in self.written and not x.flags.writeable:
                raise ValueError(f"argument `{name}` is read-only, but the kernel assigns to it")
            root = _root(x)
            offset = x.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            direct = (root.dtype == x.dtype and x.dtype.isnative
                      and (root.flags.c_contiguous or root.flags.f_contiguous)
                      and offset % item == 0 and all(s % item == 0 for s in x.strides))
            if not direct:  # stage through a contiguous copy
                staged = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))  # native byte order
                root, offset = staged, 0
                copies_key = id(staged)
            else:
                copies_key = id(root)
            if copies_key not in roots:
                buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR,
                                hostbuf=root if root.nbytes else np.zeros(1, root.dtype))
                roots[copies_key] = (buf, root)
            buf = roots[copies_key][0]
            if name in self.written:
                copies.append((x, buf, root if not direct else None, root))
            strides = x.strides if direct else root.strides
            kargs += [buf, *x.shape, *(s // item for s in strides), offset // item]
        for name in self.code.scalars:
            a = model.argument(name)
            kargs.append(np.dtype("uint8" if a.dtype == "bool" else a.dtype).type(args[self.arg_index[name]]))
        scal = np.zeros(max(1, len(self.code.slots)), np.int64)
        scal_buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=scal)
        err = np.zeros(1, np.int32)
        err_buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=err)
        kargs += [scal_buf, err_buf]
        kargs = [np.int64(v) if isinstance(v, (int, np.integer)) and not isinstance(v, np.generic) else v
                 for v in kargs]
        for knl, trip in zip(self.kernels, self.trip):
            size = trip(*params) if trip is not None else (1,)
            if min(size) > 0:
                knl(queue, size, None, *kargs)
        cl.enqueue_copy(queue, err, err_buf)
        if err[0]:
            raise IndexError(model.checks[err[0] - 1].message)
        done = set()
        for x, buf, staged, root in copies:
            if id(root) in done:
                continue
            done.add(id(root))
            if root.nbytes:
                cl.enqueue_copy(queue, root, buf)
            if staged is not None:
                x[...] = staged
        if model.return_value is None:
            queue.finish()
            return None
        cl.enqueue_copy(queue, scal, scal_buf)
        k = self.code.slots.index(model.return_value)
        dt = np.dtype(model.temporary(model.return_value).dtype)
        value = scal[k: k + 1].view(np.uint8)[: dt.itemsize].view(dt)[0]
        return value.item() if model.return_weak else value
