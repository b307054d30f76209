"""The default schedule when the user gives no hints: legal by construction (each step is checked).

Per top-level nest: make the loop with the most unit-stride accesses innermost in perfect nests (gemm's
i, k, j), then run the outermost loop that carries no dependence in parallel.
"""

from __future__ import annotations

from ..analysis import expr as E
from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from . import transform as T
from .legality import carried, escaping, parallel_sums, violated


def _unit_stride_score(model: KernelModel, loop: str) -> int:
    score = 0
    for ins in model.instructions:
        if loop not in ins.loops:
            continue
        for acc in ins.accesses:
            if acc.index and acc.affine:
                last = acc.index[-1]
                while isinstance(last, E.Cast):
                    last = last.operand
                if isinstance(last, E.Var) and last.name == loop:
                    score += 1
    return score


def _nests(model: KernelModel):
    """The loop names of each perfect band at the top of a nest, outermost first."""
    bands: dict[str, list[str]] = {}
    for _, dims in model.schedule or model.original_schedule():
        names = [d.loop for d in dims if d.loop]
        if names:
            band = bands.setdefault(names[0], [])
            if len(names) > len(band):
                bands[names[0]] = names
    return list(bands.values())


def auto_schedule(model: KernelModel, *, parallel_reductions: bool = False) -> KernelModel:
    """Interchange for unit stride, the outermost dependence-free loop parallel (fastmath sums too where the
    target combines per-thread partial sums), the innermost vectorized."""
    for names in _nests(model):
        if len(names) >= 2:
            best = max(names, key=lambda n: (_unit_stride_score(model, n), names.index(n)))
            if best != names[-1] and _unit_stride_score(model, best) > _unit_stride_score(model, names[-1]):
                order = tuple(n for n in names if n != best) + (best,)
                try:
                    candidate = T.reorder(model, order)
                    if violated(candidate) is None:
                        model = candidate
                except ScheduleError:
                    pass
    for names in _nests(model):
        for name in names:
            sums = parallel_sums(model, parallel_reductions)
            if carried(model, name, allow_reductions=sums) is None and \
                    escaping(model, name, allow_reductions=sums) is None:
                model = T.parallelize(model, name)
                break
    return vectorize_innermost(model)


def vectorize_innermost(model: KernelModel) -> KernelModel:
    """Tags every innermost loop that carries no dependence (sums too, with fastmath) for SIMD lanes; lanes
    compute element for element what the scalar loop does, so this never changes results."""
    for name in _innermost(model):
        if (name, "vector") not in model.tags and carried(model, name, allow_reductions=model.fastmath) is None:
            model = T.vectorize(model, name)
    return model


def _innermost(model: KernelModel) -> list[str]:
    """Names of loops that are the innermost loop of every instruction they enclose."""
    last: dict[str, bool] = {}
    for _, dims in model.schedule or model.original_schedule():
        loops = [d.loop for d in dims if d.loop]
        for k, name in enumerate(loops):
            last[name] = last.get(name, True) and k == len(loops) - 1
    return [n for n, ok in last.items() if ok]
