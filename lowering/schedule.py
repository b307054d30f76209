"""Schedule hints given as decorator keywords, applied as transformations and checked for legality."""

from __future__ import annotations

from dataclasses import replace

from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from . import transform as T
from .heuristic import auto_schedule, vectorize_innermost
from .legality import check_legal

KEYWORDS = ("split", "tile", "order", "unroll", "vectorize", "parallel", "schedule")


def has_hints(options) -> bool:
    return any(getattr(options, kw) for kw in KEYWORDS)


def apply_hints(model: KernelModel, options) -> KernelModel:
    """The model with the decorator's schedule hints applied (or the heuristic's, when none are given),
    after checking them against the dependences unless `unsafe=True`."""
    if getattr(options, "sequential", False):
        return replace(model, schedule=model.original_schedule(), tags=())
    if not has_hints(options) and not model.tags:
        return auto_schedule(model)
    for name, factor in (options.split or {}).items():
        model = T.split(model, name, factor)
    if options.tile:
        model = T.tile(model, options.tile)
    if options.order:
        model = T.reorder(model, tuple(options.order))
    if isinstance(options.unroll, str):
        model = T.unroll(model, options.unroll)
    else:
        for name, factor in (options.unroll or {}).items():
            model = T.unroll(model, name, factor)
    if isinstance(options.vectorize, str):
        model = T.vectorize(model, options.vectorize)
    else:
        for name, width in (options.vectorize or {}).items():
            model = T.vectorize(model, name, width)
    if options.parallel:
        for name in (options.parallel,) if isinstance(options.parallel, str) else tuple(options.parallel):
            model = T.parallelize(model, name)
    if options.schedule is not None:
        model = options.schedule(model)
        if not isinstance(model, KernelModel):
            raise ScheduleError(f"schedule= must return a KernelModel, not {type(model).__name__}")
    if not options.unsafe:
        check_legal(model, _describe(options))
    if options.vectorize is None:  # where the hints are silent about SIMD, the heuristic decides
        model = vectorize_innermost(model)
    return model


def _describe(options) -> str:
    parts = [f"{kw}={getattr(options, kw)!r}" for kw in KEYWORDS if getattr(options, kw) and kw != "schedule"]
    if options.schedule is not None:
        parts.append("schedule=...")
    return ", ".join(parts) or "the schedule"
