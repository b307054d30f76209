"""Legality of loop tags against the dependences: a parallel loop must carry none."""

from __future__ import annotations

import islpy as isl

from ..analysis.errors import ScheduleError
from ..analysis.model import Dependence, KernelModel, LoopInfo


def carried(model: KernelModel, loop: LoopInfo) -> tuple[Dependence, isl.Map] | None:
    """A dependence carried by `loop` with the pairs of instances that carry it, or None.

    Both ends lie inside the loop, agree on every enclosing loop's iterator and differ on this one's.
    """
    depth = len(loop.key) - 1
    inside = {ins.id: ins for ins in model.instructions if ins.betas[: depth + 1] == loop.key}
    for dep in model.dependences:
        if dep.source not in inside or dep.sink not in inside:
            continue
        src, snk = inside[dep.source], inside[dep.sink]
        a = [f"a{k}" for k in range(len(src.loops))]
        b = [f"b{k}" for k in range(len(snk.loops))]
        same = [f"a{k} = b{k}" for k in range(depth)] + [f"a{depth} != b{depth}"]
        params = dep.relation.get_space().get_var_names(isl.dim_type.param)
        m = isl.Map(f"[{', '.join(params)}] -> {{ {src.id}[{', '.join(a)}] -> {snk.id}[{', '.join(b)}] : "
                    f"{' and '.join(same).replace('!=', '<')} or "
                    f"{' and '.join(same).replace('!=', '>')} }}")
        bad = dep.relation.intersect(m.align_params(dep.relation.get_space()))
        if not bad.is_empty():
            return dep, bad
    return None


def describe(model: KernelModel, dep: Dependence, bad: isl.Map) -> str:
    """Names the dependence: source lines, array, and a concrete pair of instances with parameter values."""
    src, snk = model.instruction(dep.source), model.instruction(dep.sink)
    point = bad.wrap().sample_point()
    space = bad.get_space()
    nparam = space.dim(isl.dim_type.param)
    params = [f"{space.get_dim_name(isl.dim_type.param, k)}="
              f"{point.get_coordinate_val(isl.dim_type.param, k).to_python()}" for k in range(nparam)]
    coords = [point.get_coordinate_val(isl.dim_type.set, k).to_python() for k in range(len(src.loops) + len(snk.loops))]
    a = ", ".join(f"{n}={v}" for n, v in zip(src.loops, coords[: len(src.loops)]))
    b = ", ".join(f"{n}={v}" for n, v in zip(snk.loops, coords[len(src.loops):]))
    verb = {"flow": "written at ({a}) is read at ({b})", "anti": "read at ({a}) is overwritten at ({b})",
            "output": "written at ({a}) is written again at ({b})"}[dep.kind].format(a=a, b=b)
    return (f"the {dep.kind} dependence from line {src.line} to line {snk.line} on `{dep.array}`: "
            f"`{dep.array}` {verb}" + (f" (with {', '.join(params)})" if params else ""))


def check_parallel(model: KernelModel, *, what: str = "parallel") -> None:
    """Raise ScheduleError if a loop tagged parallel carries a dependence."""
    for loop in model.loops:
        if loop.tag != "parallel":
            continue
        found = carried(model, loop)
        if found:
            dep, bad = found
            raise ScheduleError(
                f"loop `{loop.name}` (line {loop.line}) cannot run in parallel: it carries "
                + describe(model, dep, bad),
                hint="use range() for this loop, parallelize another loop, or pass unsafe=True if you know better")
