"""Running compiled OpenCL kernels through pyopencl: devices, built programs, buffers, copies back."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from .analysis.errors import PolyjitError
from .signature import is_device_array

_lock = threading.Lock()
_state: dict = {}
BUILD_OPTIONS = ("-cl-fp32-correctly-rounded-divide-sqrt",)
FAST_OPTIONS = ("-cl-fast-relaxed-math", "-cl-mad-enable")
UNIT_OPTIONS = ("-D", "PJ_UNIT_STRIDE")  # every array's last stride is 1: a constant, not an argument
# NVIDIA's ptxas (driver 580) miscompiles some single-work-item loops above opt level 0: an induction
# pointer is taken for its start value (fuzz seed 413 program 26 read A[j] for A[0]). A phase that runs on
# one work-item gains nothing from the optimizer worth that risk; parallel phases keep the default level.
SEQUENTIAL_OPTIONS = {"NVIDIA": ("-cl-nv-opt-level=0",)}


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


def device_identity() -> tuple:
    """What an OpenCL program binary depends on: platform, device and driver."""
    ctx, _ = context_and_queue()
    d = ctx.devices[0]
    return (d.platform.name, d.platform.version, d.name, d.driver_version, d.version)


def device_is_gpu() -> bool:
    """Whether the OpenCL device is a GPU (the heuristic then maps matmul-like nests to work-groups)."""
    return bool(context_and_queue()[0].devices[0].type & _cl().device_type.GPU)


def build_options(fastmath: bool, sequential: bool = False, unit: bool = False, group: int = 0) -> tuple:
    """The compiler options of a program; `sequential` for the phases that run on one work-item; `unit`
    for the variant whose arrays all have unit stride in their last axis (the source's PJ_LAST macro);
    `group`: the largest work-group size of its kernels (0: none fixed)."""
    options = BUILD_OPTIONS + (FAST_OPTIONS if fastmath else ()) + (UNIT_OPTIONS if unit else ())
    vendor = context_and_queue()[0].devices[0].platform.name if sequential or group else ""
    if sequential:
        options += next((extra for name, extra in SEQUENTIAL_OPTIONS.items() if name in vendor), ())
    if group and "NVIDIA" in vendor:
        # NVIDIA's compiler gives a register-tiled kernel as many registers as it likes (222 for sgemm's
        # 8x8 tiles: one 256-item work-group per SM, 19.8 TFLOP/s on the H100); capped so that two
        # work-groups fit an SM's 65536 registers, the same kernel ran at 24.4 (session 8, .whl/s8_mut.py)
        cap = 65536 // (2 * group) // 8 * 8
        if 32 <= cap < 255:
            options += (f"-cl-nv-maxrregcount={cap}",)
    return options


def build(source: str, fastmath: bool, needs_fp64: bool, binary: bytes | None = None, sequential: bool = False,
          unit: bool = False, group: int = 0):
    ctx, _ = context_and_queue()
    device = ctx.devices[0]
    if needs_fp64 and "cl_khr_fp64" not in device.extensions and not device.double_fp_config:
        raise PolyjitError(f"OpenCL device {device.name!r} lacks cl_khr_fp64, which float64 kernels need; "
                           "use float32 arrays or another device (POLYJIT_OPENCL_DEVICE)")
    options = build_options(fastmath, sequential, unit, group)
    key = (device.int_ptr, source, options)
    with _lock:
        prg = _state.setdefault("programs", {}).get(key)
    if prg is None:
        if binary is not None:
            prg = _cl().Program(ctx, [device], [binary]).build(options=list(options))
        else:
            prg = _cl().Program(ctx, source).build(options=list(options))
        with _lock:
            _state["programs"][key] = prg
    return prg


def _unused_buffer(ctx):
    """A small buffer that no kernel reads or writes, passed where a kernel's parameter goes unused."""
    with _lock:
        buf = _state.get("unused")
        if buf is None or buf.context != ctx:
            buf = _state["unused"] = _cl().Buffer(ctx, _cl().mem_flags.READ_WRITE, 8)
        return buf


def _check_group_size(knl, local: tuple) -> None:
    """A clear error instead of CL_INVALID_WORK_GROUP_SIZE when the split factors ask too much."""
    ctx, _ = context_and_queue()
    device = ctx.devices[0]
    limit = knl.get_work_group_info(_cl().kernel_work_group_info.WORK_GROUP_SIZE, device)
    total = int(np.prod(local))
    if total > limit or any(s > m for s, m in zip(local, device.max_work_item_sizes)):
        raise PolyjitError(f"work-groups of {' x '.join(map(str, reversed(local)))} work-items (the split factors "
                           f"of the loops mapped to work-groups) exceed what device {device.name!r} allows for this "
                           f"kernel ({limit} in all, {tuple(device.max_work_item_sizes)} per dimension); use smaller "
                           "factors")


def _root(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


@dataclass(frozen=True)
class OpenCLSpec:
    """What a call needs, as plain data: picklable for the cache, usable without isl."""

    name: str
    arguments: tuple  # (name, kind, dtype)
    params: tuple  # (name, argument name, dim or None)
    checks: tuple  # (exception name, message)
    check_source: str
    written: frozenset
    temporaries: dict  # name -> (dtype, shape as parameter names)
    arrays: tuple  # kernel-argument order
    scalars: tuple
    slots: tuple  # scalar locals by scratch slot
    slot_types: tuple
    phases: tuple  # (kernel name, Python source of the NDRange size or None[, work-group size or None[,
    #                 scratch slots of the fastmath sums whose per-work-item partial sums are added]])
    result: tuple | None  # (slot name, dtype, weak)
    source: str
    fastmath: bool
    needs_fp64: bool


def spec_from_model(model, code, check_source: str) -> OpenCLSpec:
    from .lowering.hostcode import trip_count_source
    phases = []
    for p in code.phases:  # generated from isl's AST, no user text
        # innermost loop: axis 0; with work-groups, the loops count groups of `local` work-items
        local = tuple(reversed(p.local)) if p.local else None
        counts = ", ".join(trip_count_source(f.init, f.cond, f.step) + (f" * {local[k]}" if local else "")
                           for k, f in enumerate(reversed(p.dims)))
        phases.append((p.kernel, f"({counts},)" if p.dims else None, local, p.sums))
    result = None
    if model.return_value is not None:
        result = (model.return_value, model.temporary(model.return_value).dtype, model.return_weak)
    return OpenCLSpec(
        model.name, tuple((a.name, a.kind, a.dtype) for a in model.arguments),
        tuple((p.name, p.source.name, None) if hasattr(p.source, "name") else (p.name, p.source.array, p.source.dim)
              for p in model.params),
        tuple((c.error, c.message) for c in model.checks), check_source, frozenset(model.written_arrays()),
        {t.name: (t.dtype, t.shape) for t in model.temporaries if t.shape}, code.arrays, code.scalars, code.slots,
        tuple(model.temporary(n).dtype for n in code.slots), tuple(phases), result, code.source, model.fastmath,
        code.needs_fp64)


def _add_partial_sums(scal, part, sums, slot_types) -> None:
    """scal[k] += the work-items' partial sums of slot k (each value in the low bytes of an 8-byte slot)."""
    rows = part.reshape(-1, len(sums))
    for r, k in enumerate(sums):
        dt = np.dtype(slot_types[k])
        values = rows[:, r].copy().view(np.uint8).reshape(-1, 8)[:, :dt.itemsize].copy().view(dt).ravel()
        current = scal[k:k + 1].view(np.uint8)[:dt.itemsize].view(dt)[0]
        with np.errstate(over="ignore"):
            total = (np.float64(current) + values.sum(dtype=np.float64)) if dt.kind == "f" else \
                (np.int64(current) + values.sum(dtype=np.int64))
        slot = np.zeros(8, np.uint8)
        slot[:dt.itemsize] = np.array([total]).astype(dt).view(np.uint8)
        scal[k] = slot.view(np.int64)[0]


class OpenCLKernel:
    """A compiled specialization: call it with the kernel's arguments."""

    def __init__(self, spec: OpenCLSpec, binaries: dict | None = None):
        self.spec = spec
        ns: dict = {}
        exec(compile(spec.check_source, f"<polyjit checks {spec.name}>", "exec"), ns)
        self.checks = ns["pj_checks"]
        self.local = [p[2] if len(p) > 2 else None for p in spec.phases]
        self.sums = [p[3] if len(p) > 3 else () for p in spec.phases]
        self.saved = {k: v for k, v in (binaries or {}).items() if isinstance(k, tuple)}
        self.programs: dict = {}  # (one work-item?, unit strides?) -> program
        self.arg_types = None  # the kernels' argument types (None for buffers), known at the first call
        self.launching = threading.Lock()
        self.variants: dict = {}  # unit strides? -> the phases' kernels
        self.variant(True)  # the common case is built at once; the general one when a call needs it
        self.checked = "pj_check(" in spec.source.split("__kernel", 1)[-1]  # bounds checks in the kernels
        self.arg_index = {a[0]: k for k, a in enumerate(spec.arguments)}
        self.dtypes = {a[0]: a[2] for a in spec.arguments}
        names = ", ".join(p[0] for p in spec.params) or "*_"
        self.trip = [None if p[1] is None else eval(f"lambda {names}: {p[1]}") for p in spec.phases]

    def variant(self, unit: bool) -> list:
        """The phases' kernels, built for arrays of unit last stride (`unit`) or of any strides. Programs are
        per kind of phase (one work-item or an NDRange): on some vendors they build differently."""
        kernels = self.variants.get(unit)
        if kernels is None:
            spec = self.spec
            group = max((int(np.prod(p[2])) for p in spec.phases if len(p) > 2 and p[2]), default=0)
            for one in sorted({p[1] is None for p in spec.phases}):
                self.programs[one, unit] = build(spec.source, spec.fastmath, spec.needs_fp64,
                                                 self.saved.get((one, unit)), one, unit, 0 if one else group)
            kernels = [_cl().Kernel(self.programs[p[1] is None, unit], p[0]) for p in spec.phases]
            for knl, local in zip(kernels, self.local):
                if local is not None:
                    _check_group_size(knl, local)
                if self.arg_types is not None:
                    knl.set_scalar_arg_dtypes(self.arg_types)
            self.variants[unit] = kernels
        return kernels

    def set_arg_types(self, kargs) -> None:
        """Declares the scalar arguments' types to pyopencl (packed in one go: setting an untyped numpy
        scalar argument cost ~19 us each on NVIDIA's driver, a quarter of a millisecond per launch)."""
        cl = _cl()
        self.arg_types = [None if isinstance(v, cl.MemoryObjectHolder) else
                          v.dtype if isinstance(v, np.generic) else np.dtype(np.int64) for v in kargs]
        for kernels in self.variants.values():
            for knl in kernels:
                knl.set_scalar_arg_dtypes(self.arg_types)

    def binaries(self) -> dict:
        return {key: prg.get_info(_cl().program_info.BINARIES)[0] for key, prg in self.programs.items()}

    def payload(self) -> dict:
        return {"kind": "opencl", "spec": self.spec, "binaries": self.binaries()}

    def __call__(self, args):
        cl = _cl()
        ctx, queue = context_and_queue()
        spec = self.spec
        params = [int(args[self.arg_index[arg]]) if dim is None else args[self.arg_index[arg]].shape[dim]
                  for _, arg, dim in spec.params]
        bad = self.checks(*params)
        if bad >= 0:
            error, message = spec.checks[bad]
            raise (IndexError if error == "IndexError" else ValueError)(message)
        mf = cl.mem_flags
        kargs = []
        copies = []  # (host array, device buffer, staged copy or None)
        roots: dict[int, tuple] = {}
        pvals = dict(zip((p[0] for p in spec.params), params))
        unit = True  # every array's last axis has stride 1 (or at most one element)
        for name in spec.arrays:
            if name in spec.temporaries:
                dtype, tshape = spec.temporaries[name]
                shape = [pvals[s] for s in tshape]
                size = max(1, int(np.prod(shape)))
                buf = cl.Buffer(ctx, mf.READ_WRITE, size * np.dtype(dtype).itemsize)
                strides = [int(np.prod(shape[d + 1:])) for d in range(len(shape))]
                kargs += [buf, *shape, *strides, 0]
                continue
            x = args[self.arg_index[name]]
            item = x.dtype.itemsize
            if is_device_array(x):
                kargs += [x.base_data, *x.shape, *(s // item for s in x.strides), x.offset // item]
                unit = unit and (x.ndim == 0 or x.shape[-1] <= 1 or x.strides[-1] == item)
                continue
            if name in spec.written and not x.flags.writeable:
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
            if name in spec.written:
                copies.append((x, buf, root if not direct else None, root))
            strides = x.strides if direct else root.strides
            kargs += [buf, *x.shape, *(s // item for s in strides), offset // item]
            unit = unit and (x.ndim == 0 or x.shape[-1] <= 1 or strides[-1] == item)
        for name in spec.scalars:
            dt = self.dtypes[name]
            kargs.append(np.dtype("uint8" if dt == "bool" else dt).type(args[self.arg_index[name]]))
        scal = np.zeros(max(1, len(spec.slots)), np.int64)
        # kernels without scalars or in-kernel bounds checks never touch those buffers: one shared, unread
        # buffer stands in for them (no allocations, and no read-back that waits for the kernels)
        unused = _unused_buffer(ctx)
        scal_buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=scal) if spec.slots else unused
        err = np.zeros(1, np.int32)
        err_buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=err) if self.checked else unused
        kargs += [scal_buf, err_buf, unused]
        # a kernel object holds its arguments until the launch: calls from several threads take turns
        with self.launching:
            if self.arg_types is None:
                self.set_arg_types(kargs)
            for knl, trip, local, sums in zip(self.variant(unit), self.trip, self.local, self.sums):
                size = trip(*params) if trip is not None else (1,)
                if min(size) > 0:
                    if not sums:
                        knl(queue, size, local, *kargs)
                        continue
                    part = np.zeros(int(np.prod(size)) * len(sums), np.int64)
                    part_buf = cl.Buffer(ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=part)
                    knl(queue, size, local, *kargs[:-1], part_buf)
                    cl.enqueue_copy(queue, part, part_buf)
                    cl.enqueue_copy(queue, scal, scal_buf)
                    _add_partial_sums(scal, part, sums, spec.slot_types)
                    cl.enqueue_copy(queue, scal_buf, scal)
        if self.checked:
            cl.enqueue_copy(queue, err, err_buf)
        if err[0]:
            raise IndexError(spec.checks[err[0] - 1][1])
        done = set()
        for x, buf, staged, root in copies:
            if id(root) in done:
                continue
            done.add(id(root))
            if root.nbytes:
                cl.enqueue_copy(queue, root, buf)
            if staged is not None:
                x[...] = staged
        if spec.result is None:
            queue.finish()
            return None
        cl.enqueue_copy(queue, scal, scal_buf)
        name, dtype, weak = spec.result
        k = spec.slots.index(name)
        dt = np.dtype(dtype)
        value = scal[k: k + 1].view(np.uint8)[: dt.itemsize].view(dt)[0]
        return value.item() if weak else value
