"""Schedule hints given as decorator keywords, applied to the model and checked for legality.

This first version applies `parallel=` (and `polyjit.prange`, which the frontend already tagged); the other
keywords are validated against the model's loop names.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from .legality import check_parallel

NOT_YET_APPLIED = ("split", "tile", "order", "unroll", "vectorize")


def loop_names(model: KernelModel) -> list[str]:
    return sorted({lp.name for lp in model.loops})


def _check_names(model: KernelModel, keyword: str, names) -> None:
    valid = loop_names(model)
    for n in names:
        base = n.removesuffix("_outer").removesuffix("_inner")
        if n not in valid and base not in valid:
            raise ScheduleError(f"{keyword}= names loop `{n}`, but the kernel has no such loop; "
                                f"valid names: {', '.join(valid) or '(none)'}")


def parallelize(model: KernelModel, *, loops: tuple[str, ...]) -> KernelModel:
    """Tags every loop named in `loops` parallel. Identity preserved: the iteration set is unchanged."""
    new = tuple(replace(lp, tag="parallel") if lp.name in loops else lp for lp in model.loops)
    return replace(model, loops=new)


def apply_hints(model: KernelModel, options) -> KernelModel:
    """The model with the decorator's schedule hints applied, after checking them against the dependences."""
    if options.parallel:
        names = (options.parallel,) if isinstance(options.parallel, str) else tuple(options.parallel)
        _check_names(model, "parallel", names)
        model = parallelize(model, loops=names)
    for kw in NOT_YET_APPLIED:
        value = getattr(options, kw)
        if value:
            names = [value] if isinstance(value, str) else list(value)
            _check_names(model, kw, names)
            warnings.warn(f"polyjit: schedule keyword {kw}= is validated but not applied yet", stacklevel=4)
    if options.schedule is not None:
        model = options.schedule(model)
    if not options.unsafe:
        check_parallel(model)
    return model
