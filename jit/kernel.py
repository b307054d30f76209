"""`@polyjit.kernel`: the decorator, its options, and the per-signature dispatcher."""

from __future__ import annotations

import functools
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np

from .analysis.errors import ScheduleError

TARGETS = ("native", "opencl")
SCHEDULE_KEYWORDS = ("split", "tile", "order", "unroll", "vectorize", "parallel", "schedule", "unsafe")


def default_target() -> str:
    """Native x86-64 code on x86-64 Linux, else OpenCL; POLYJIT_TARGET overrides it."""
    import platform
    native = platform.machine().lower() in ("x86_64", "amd64") and sys.platform.startswith("linux")
    return os.environ.get("POLYJIT_TARGET", "native" if native else "opencl")


@dataclass(frozen=True)
class Options:
    target: str | None = None
    cache: bool = True
    fastmath: bool = False
    split: dict | None = None
    tile: dict | None = None
    order: tuple | None = None
    unroll: dict | str | tuple | None = None
    vectorize: dict | str | None = None
    parallel: str | tuple | None = None
    schedule: object = None
    unsafe: bool = False
    sequential: bool = False  # set for calls whose arrays overlap: program order, no tags
    tail: str | dict = "guard"  # split/tile/unroll tails: "guard" | "separate", or per source loop name
    prefetch: dict | None = None  # OpenCL: array name -> loop at which a work-group copies it to __local

    def key(self) -> tuple:
        """The options as they affect compiled code (for the cache key)."""
        return tuple((f, repr(getattr(self, f))) for f in ("fastmath", "split", "tile", "order", "unroll",
                                                            "vectorize", "parallel", "unsafe", "sequential",
                                                            "tail", "prefetch"))

    def validate(self) -> Options:
        if self.target is not None and self.target not in TARGETS:
            raise ValueError(f"target={self.target!r}: choose one of {', '.join(TARGETS)}")
        for kw in ("split", "tile"):
            v = getattr(self, kw)
            if v is not None and not (isinstance(v, dict) and all(
                    isinstance(k, str) and isinstance(f, int) and f > 0 for k, f in v.items())):
                raise ScheduleError(f"{kw}= takes a dict of loop name -> positive factor, e.g. {{'i': 16}}")
        if self.order is not None and not (isinstance(self.order, (tuple, list))
                                           and all(isinstance(n, str) for n in self.order)):
            raise ScheduleError("order= takes a tuple of loop names, e.g. ('i', 'k', 'j')")
        for kw in ("unroll", "vectorize"):
            v = getattr(self, kw)
            names = kw == "unroll" and isinstance(v, tuple) and v and all(isinstance(n, str) for n in v)
            if v is not None and not isinstance(v, str) and not names and not (isinstance(v, dict) and all(
                    isinstance(k, str) and isinstance(f, int) and f > 0 for k, f in v.items())):
                more = ", a tuple of loop names (each unrolled completely)" if kw == "unroll" else ""
                raise ScheduleError(f"{kw}= takes a loop name{more} or a dict of loop name -> positive factor")
        if self.parallel is not None and not isinstance(self.parallel, str) and not (
                isinstance(self.parallel, (tuple, list)) and all(isinstance(n, str) for n in self.parallel)):
            raise ScheduleError("parallel= takes a loop name or a tuple of loop names")
        if self.schedule is not None and not callable(self.schedule):
            raise ScheduleError("schedule= takes a callable: model -> model")
        tails = self.tail.values() if isinstance(self.tail, dict) else (self.tail,)
        if not (isinstance(self.tail, (str, dict)) and all(t in ("guard", "separate") for t in tails)
                and all(isinstance(k, str) for k in (self.tail if isinstance(self.tail, dict) else ()))):
            raise ScheduleError(f"tail={self.tail!r}: write tail=\"guard\" (the default), tail=\"separate\", "
                                "or a dict of source loop name -> one of those, e.g. {'i': 'separate'}")
        if self.prefetch is not None and not (isinstance(self.prefetch, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.prefetch.items())):
            raise ScheduleError("prefetch= takes a dict of array name -> loop name, e.g. {'A': 'k_outer'}")
        return self


class Kernel:
    """A Python loop function compiled at first call for each argument signature."""

    def __init__(self, fn, options: Options):
        self.py_func = fn
        self.options = options.validate()
        self._program = None
        self._lock = threading.RLock()
        self._dispatch: dict = {}
        self.stats: dict = {}
        functools.update_wrapper(self, fn)
        self._names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
        self._nargs = len(self._names)
        # a class of its own, whose __call__ can become a specialization's machine-code entry (a builtin,
        # so no Python frame per call); the entry sends every call it does not take back to `_call`
        self.__class__ = type(type(self).__name__, (type(self),), {"__module__": __name__})

    @property
    def target(self) -> str:
        return self.options.target or default_target()

    # -- compilation -------------------------------------------------------------------------------------
    def program(self):
        if self._program is None:
            from .analysis.frontend import parse
            from .pipeline import Trace
            trace = Trace()
            self._program = trace.stage("source", parse, self.py_func)
            self.stats["source"] = trace.times["source"]
        return self._program

    def _bind(self, args, kwargs):
        if kwargs:
            import inspect
            bound = inspect.signature(self.py_func).bind(*args, **kwargs)
            args = tuple(bound.arguments[n] for n in self._names)
        if len(args) != len(self._names):
            raise TypeError(f"{self.py_func.__name__}() takes {len(self._names)} positional argument(s) but "
                            f"{len(args)} were given")
        return args

    def signature(self, args):
        from .signature import arg_type
        return {name: arg_type(name, x) for name, x in zip(self._names, args)}

    def specialize(self, *args, **kwargs):
        """The compiled specialization for these arguments (compiling it on first use)."""
        args = self._bind(args, kwargs)
        key = _dispatch_key(args)
        hit = self._dispatch.get(key)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._dispatch.get(key)
            if hit is None:
                if self.target == "native" and any(type(a).__module__.startswith("pyopencl") for a in args):
                    raise TypeError("pyopencl arrays are device memory: use target='opencl' for them")
                foreign = frozenset(n for n, a in zip(self._names, args)
                                    if isinstance(a, np.ndarray) and not a.dtype.isnative)
                hit = self._cached(key, args, foreign)
                self._dispatch[key] = hit
        return hit

    def _cached(self, key, args, foreign):
        """From the on-disk cache when an entry exists (native target), else compiled and stored there."""
        from . import cache
        if not cache.enabled(self.options.cache) or self.options.schedule is not None:
            return self._compile(self.signature(args), sequential=key[-1], foreign=foreign, key=key)
        store = cache.Cache()
        if self.target == "native":
            where = ("native", cache.native_tier(store))
        else:
            from .opencl_runtime import device_identity
            where = ("opencl", device_identity())
        entry = cache.make_key(cache.function_key(self.py_func), self.options.key(), _key_text(key),
                               sorted(foreign), where)
        payload = store.load(entry)
        if payload is not None and payload.get("kind") == where[0]:
            try:
                if where[0] == "native":
                    from .native_runtime import load_native
                    compiled = load_native(payload)
                else:
                    from .opencl_runtime import OpenCLKernel
                    compiled = OpenCLKernel(payload["spec"], payload["binaries"])
                self.stats = {"cache": "hit"}
                return compiled
            except Exception as e:  # noqa: BLE001 - a stale or foreign entry: compile instead
                cache._warn("bad-entry", f"entry {entry} could not be loaded ({e}); recompiling")
        compiled = self._compile(self.signature(args), sequential=key[-1], foreign=foreign, key=key)
        store.store(entry, compiled.payload())
        self.stats["cache"] = "miss"
        return compiled

    def _compile(self, signature, sequential=False, foreign=frozenset(), target=None, key=None):
        from .pipeline import Trace, compile_opencl
        target = target or self.target
        program = self.program()
        trace = Trace()
        options = self.options
        if sequential:  # overlapping arrays: dependences between names do not hold, keep program order
            options = Options(options.target, options.cache, options.fastmath, sequential=True)
        import time
        if target == "native":
            return self._compile_native(program, signature, options, trace, foreign, key)
        model, tree, code, checks = compile_opencl(program, signature, options, trace)

        from .opencl_runtime import OpenCLKernel, spec_from_model
        t0 = time.perf_counter()
        compiled = OpenCLKernel(spec_from_model(model, code, checks))
        trace.times["opencl build"] = time.perf_counter() - t0
        compiled.trace = trace
        compiled.tree = tree
        self.stats = {**self.stats, **trace.times}
        return compiled

    def _compile_native(self, program, signature, options, trace, foreign=frozenset(), key=None):
        import time

        from .asm import allocate, encode, isa_tier, load
        from .cache import prime_cpu_features
        from .lowering.hostcode import trip_count_source
        from .native_build import make_entry, spec_from_model
        from .native_runtime import NativeKernel
        from .pipeline import compile_native
        prime_cpu_features()
        isa = isa_tier()
        model, tree, phases, layout, checks = compile_native(program, signature, options, trace, isa)
        t0 = time.perf_counter()
        functions = [load(encode(allocate(ph.function.program())), ph.function.c_signature()) for ph in phases]
        trips = [trip_count_source(ph.loop.init, ph.loop.cond, ph.loop.step) if ph.parallel else None
                 for ph in phases]
        spec = spec_from_model(model, layout, trips, checks, foreign, [ph.sums for ph in phases])
        entry = None if key is None else make_entry(spec, key, functions)
        trace.times["assemble+load"] = time.perf_counter() - t0
        compiled = NativeKernel(spec, functions, entry=entry)
        compiled.trace, compiled.tree, compiled.isa = trace, tree, isa
        self.stats = {**self.stats, **trace.times}
        return compiled

    # -- calling -----------------------------------------------------------------------------------------
    def _call(self, *args, **kwargs):
        if kwargs or len(args) != self._nargs:
            args = self._bind(args, kwargs)
        compiled = self._dispatch.get(_dispatch_key(args))
        if compiled is None:
            compiled = self.specialize(*args)
        entry = getattr(compiled, "entry", None)
        if entry is not None and type(self).__dict__.get("__call__") is not entry.builtin:
            if entry.slow is None:
                entry.bind(self._call)
            cls = type(self)
            cls._entry = entry  # keeps the machine code mapped while the class calls into it
            cls.__call__ = entry.builtin  # later calls with this signature start in machine code
        return compiled(args)

    __call__ = _call

    # -- inspection --------------------------------------------------------------------------------------
    def inspect_model(self, *args, **kwargs) -> str:
        from .analysis.build import build_model
        from .pipeline import ISL_LOCK
        args = self._bind(args, kwargs)
        with ISL_LOCK:
            return str(build_model(self.program(), self.signature(args), fastmath=self.options.fastmath))

    def inspect_schedule(self, *args, **kwargs) -> str:
        """The chosen schedule (per instruction), the loop tags, and the resulting loop structure."""
        from .analysis.build import build_model
        from .lowering.looptree import build_loop_tree
        from .lowering.schedule import apply_hints, has_hints
        from .pipeline import ISL_LOCK
        args = self._bind(args, kwargs)
        gpu = False
        if self.target == "opencl":
            from . import opencl_runtime
            gpu = opencl_runtime.device_is_gpu()
        with ISL_LOCK:
            model = build_model(self.program(), self.signature(args), fastmath=self.options.fastmath)
            origin = "hints" if has_hints(self.options) or model.tags else "heuristic"
            model = apply_hints(model, self.options, target=self.target, gpu=gpu)
            tree = build_loop_tree(model)
        sched = "\n".join(f"  {iid}: [{', '.join(map(str, dims))}]" for iid, dims in model.schedule)
        tags = ", ".join(f"{n}={t}" for n, t in model.tags) or "(none)"
        return f"schedule ({origin}):\n{sched}\ntags: {tags}\nloop structure:\n{tree}"

    def inspect_opencl(self, *args, **kwargs) -> str:
        from .pipeline import Trace, compile_opencl
        args = self._bind(args, kwargs)
        _, _, code, _ = compile_opencl(self.program(), self.signature(args), self.options, Trace())
        return code.source

    def inspect_asm(self, *args, **kwargs) -> str:
        """The assembly listing (allocated and encoded) of the native specialization for these arguments."""
        from .asm import isa_tier
        args = self._bind(args, kwargs)
        if self.target == "native":
            compiled = self.specialize(*args)
        else:  # this kernel runs on OpenCL: compile the native specialization just for the listing
            compiled = self._compile(self.signature(args), sequential=_dispatch_key(args)[-1], target="native")
        return f"; isa={isa_tier()}\n" + compiled.listing()

    def __repr__(self) -> str:
        return f"<polyjit.kernel {self.py_func.__qualname__} target={self.target}>"


def _dispatch_key(args) -> tuple:
    """Types of the arguments (dtype and rank for arrays: the code handles any strides), and whether two
    array arguments may overlap in memory (numpy points every view's `.base` at the owner of the memory)."""
    key = []
    roots = set()
    arrays = 0
    for a in args:
        t = type(a)
        if t is np.ndarray:
            key.append((a.dtype, a.ndim))
            b = a.base
            roots.add(id(a if b is None else b))
            arrays += 1
        elif t is float or t is int or t is bool:
            key.append(t)
        else:
            dtype = getattr(a, "dtype", None)
            key.append(t if dtype is None else (t, dtype, getattr(a, "ndim", 0)))
            base = getattr(a, "base_data", None)  # a pyopencl array: views share their buffer
            if base is not None:
                roots.add(getattr(base, "int_ptr", id(base)))
                arrays += 1
    key.append(len(roots) < arrays)
    return tuple(key)


def _key_text(key) -> str:
    """The dispatch key as text for the cache key (dtypes by their `str`: numpy's dtype repr is slow)."""
    return repr(tuple(tuple(x.str if isinstance(x, np.dtype) else x for x in k) if type(k) is tuple else k
                      for k in key))


def kernel(fn=None, /, *, target=None, cache=True, fastmath=False, split=None, tile=None, order=None,
           unroll=None, vectorize=None, parallel=None, schedule=None, unsafe=False, tail="guard", prefetch=None):
    """Compile a Python loop function over numpy arrays at first call.

    Use bare (`@polyjit.kernel`), with options (`@polyjit.kernel(target="opencl")`) or programmatically
    (`polyjit.kernel(fn)`). The result behaves like `fn` and keeps it as `.py_func`.
    """
    if isinstance(unroll, list):  # several loops unrolled completely
        unroll = tuple(unroll)
    options = Options(target, cache, fastmath, split, tile, order, unroll, vectorize, parallel, schedule, unsafe,
                      tail=tail, prefetch=prefetch)
    options.validate()
    if fn is None:
        return lambda f: Kernel(f, options)
    if not callable(fn):
        raise TypeError("polyjit.kernel decorates a function")
    return Kernel(fn, options)


def prange(*args):
    """`range` with a hint that the loop's iterations may run in parallel (Numba's habit)."""
    return range(*args)


prange._polyjit_prange = True
