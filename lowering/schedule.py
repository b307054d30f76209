"""Schedule hints given as decorator keywords, applied as transformations and checked for legality."""

from __future__ import annotations

from dataclasses import replace

from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from ..asm import isa_tier
from . import transform as T
from .blocking import BLOCKING_ISAS
from .heuristic import auto_schedule, tile_matmul_groups, vectorize_innermost
from .legality import check_legal

KEYWORDS = ("split", "tile", "order", "unroll", "vectorize", "parallel", "schedule")


def has_hints(options) -> bool:
    return any(getattr(options, kw) for kw in KEYWORDS)


def apply_hints(model: KernelModel, options, *, target: str = "native", gpu: bool = False) -> KernelModel:
    """The model with the decorator's schedule hints applied (or the heuristic's, when none are given),
    after checking them against the dependences unless `unsafe=True`. Both targets combine the partial sums of
    fastmath sums in parallel loops (threads natively, work-items on OpenCL: not inside work-group nests)."""
    reductions = target in ("native", "opencl")
    if getattr(options, "sequential", False):
        return replace(model, schedule=model.original_schedule(), tags=(), arrays_overlap=True)
    if not has_hints(options) and not model.tags:
        if target == "opencl" and gpu:  # `gpu`: the OpenCL device is a GPU
            tiled = tile_matmul_groups(model)
            if tiled is not model:
                return tiled
        # tiles for register blocking only where the block emitter writes code for the machine's tier
        tile = isa_tier() if target == "native" and isa_tier() in BLOCKING_ISAS else None
        return _prefetch(auto_schedule(model, parallel_reductions=reductions, tile=tile), options)
    tail = getattr(options, "tail", "guard")

    def tail_of(loop: str) -> str:  # "separate" for all splits, or per source loop name
        return tail.get(loop, "guard") if isinstance(tail, dict) else tail

    if isinstance(tail, dict):
        split_loops = [n for kw in ("split", "tile", "unroll", "vectorize")
                       if isinstance(getattr(options, kw), dict) for n in getattr(options, kw)]
        for name in tail:
            if name not in split_loops:
                raise ScheduleError(f"tail={tail!r} names loop `{name}`, which no split=, tile=, unroll= or "
                                    f"vectorize= factor splits; split loops: {', '.join(split_loops) or '(none)'}")

    for name, factor in (options.split or {}).items():
        model = T.split(model, name, factor, tail=tail_of(name))
    if options.tile:
        model = T.tile(model, options.tile, tail={name: tail_of(name) for name in options.tile})
    if options.order:
        model = T.reorder(model, tuple(options.order))
    if isinstance(options.unroll, (str, tuple)):
        for name in (options.unroll,) if isinstance(options.unroll, str) else options.unroll:
            model = T.unroll(model, name)
    else:
        for name, factor in (options.unroll or {}).items():
            model = T.unroll(model, name, factor, tail=tail_of(name))
    if isinstance(options.vectorize, str):
        model = T.vectorize(model, options.vectorize)
    else:
        for name, width in (options.vectorize or {}).items():
            model = T.vectorize(model, name, width, tail=tail_of(name))
    if options.parallel:
        for name in (options.parallel,) if isinstance(options.parallel, str) else tuple(options.parallel):
            model = T.parallelize(model, name)
    model = _prefetch(model, options)
    if options.schedule is not None:
        model = options.schedule(model)
        if not isinstance(model, KernelModel):
            raise ScheduleError(f"schedule= must return a KernelModel, not {type(model).__name__}")
    if not options.unsafe:
        check_legal(model, _describe(options), parallel_reductions=reductions)
    if options.vectorize is None:  # where the hints are silent about SIMD, the heuristic decides
        model = vectorize_innermost(model)
    return model


def _prefetch(model: KernelModel, options) -> KernelModel:
    """prefetch= as tags; the OpenCL emitter checks that the nest is mapped to work-groups."""
    for array, loop in (getattr(options, "prefetch", None) or {}).items():
        model = T.prefetch(model, array, loop)
    return model


def _describe(options) -> str:
    parts = [f"{kw}={getattr(options, kw)!r}" for kw in KEYWORDS if getattr(options, kw) and kw != "schedule"]
    if options.schedule is not None:
        parts.append("schedule=...")
    return ", ".join(parts) or "the schedule"
