"""Legality of a schedule against the dependences of the original program order (isl).

A schedule is legal iff every dependence stays lexicographically positive under it; a loop may run in
parallel (or in vector lanes) iff no dependence is carried by it: both ends in the same iteration of every
enclosing loop but in different iterations of this one.
"""

from __future__ import annotations

import functools

import islpy as isl

from ..analysis import expr as E
from ..analysis.errors import ScheduleError
from ..analysis.model import Dependence, KernelModel


def _time_relation(model: KernelModel, dep: Dependence, time_rel: isl.Map) -> isl.Map:
    """The pairs of `dep` whose schedule times are related by `time_rel`."""
    width = model.schedule_width()
    src = model.instruction_schedule_map(dep.source, width)
    snk = model.instruction_schedule_map(dep.sink, width)
    pairs = src.apply_range(time_rel.align_params(src.get_space())).apply_range(snk.reverse())
    return dep.relation.intersect(pairs.align_params(dep.relation.get_space()))


def _time_space(model: KernelModel) -> isl.Space:
    width = model.schedule_width()
    return isl.Set(f"{{ [{', '.join(f't{k}' for k in range(width))}] }}").get_space()


def violated(model: KernelModel) -> tuple[Dependence, isl.Map] | None:
    """A dependence the model's schedule reverses (or runs at the same time), with the offending pairs."""
    later_or_same = isl.Map.lex_ge(_time_space(model))
    for dep in model.dependences:
        bad = _time_relation(model, dep, later_or_same)
        if not bad.is_empty():
            return dep, bad
    return None


def loop_positions(model: KernelModel, name: str) -> dict[str, int]:
    """instruction id -> schedule dimension of loop `name` in it."""
    out = {}
    for iid, dims in model.schedule or model.original_schedule():
        for d, dim in enumerate(dims):
            if dim.loop == name:
                out[iid] = d
    return out


def loop_sums(model: KernelModel, iids) -> set[str]:
    """Scalars that the instructions `iids` (a loop's) write only by sums: their partial sums may be combined."""
    sums = reduction_instructions(model)
    writers: dict[str, set[str]] = {}
    for iid in iids:
        a = model.instruction(iid).assignee
        if isinstance(a, E.Var):
            writers.setdefault(a.name, set()).add(iid)
    return {name for name, ws in writers.items() if all(sums.get(w) == name for w in ws)}


def reduction_instructions(model: KernelModel) -> dict[str, str]:
    """instruction id -> scalar for instructions `s = s + expr` (expr free of s) with no other use of s in the
    same loop body: their self-dependences may be reassociated (fastmath) by summing into private
    accumulators."""
    from .vectorize import _sum_into
    users: dict[str, set[str]] = {}
    for ins in model.instructions:
        for acc in ins.accesses:
            users.setdefault(acc.array, set()).add(ins.id)
    found: dict[str, str] = {}
    for ins in model.instructions:
        if isinstance(ins.assignee, E.Var) and not ins.predicates:
            name = ins.assignee.name
            addend = _sum_into(ins.expression, name)
            if addend is not None and not any(isinstance(x, E.Var) and x.name == name for x in E.walk(addend)):
                others = users.get(name, set()) - {ins.id}
                inside = {o for o in others if model.instruction(o).betas[:-1] == ins.betas[:-1]}
                if not inside:
                    found[ins.id] = name
    return found


def carried(model: KernelModel, name: str, *, allow_reductions: bool = False) -> tuple[Dependence, isl.Map] | None:
    """A dependence carried by loop `name`, with the pairs of instances that carry it, or None.

    With `allow_reductions` (fastmath), self-dependences of sums into a scalar do not count."""
    where = loop_positions(model, name)
    width = model.schedule_width()
    exempt = reduction_instructions(model) if allow_reductions else {}
    for dep in model.dependences:
        if dep.source == dep.sink and exempt.get(dep.source) == dep.array:
            continue
        d = where.get(dep.source)
        if d is None or where.get(dep.sink) != d:
            continue
        bad = _time_relation(model, dep, _carrying(width, d))
        if not bad.is_empty():
            return dep, bad
    return None


@functools.lru_cache(maxsize=64)
def _carrying(width: int, d: int) -> isl.Map:
    """Pairs of schedule times equal before dimension d and different at d (isl objects are immutable)."""
    t = [f"t{k}" for k in range(width)]
    u = [f"u{k}" for k in range(width)]
    same = " and ".join([f"t{k} = u{k}" for k in range(d)] + ["0 = 0"])
    return isl.Map(f"{{ [{', '.join(t)}] -> [{', '.join(u)}] : {same} and (t{d} < u{d} or t{d} > u{d}) }}")


def escaping(model: KernelModel, name: str, *, allow_reductions: bool = False) -> Dependence | None:
    """A scalar written inside loop `name` and read after it: threads and work-items each have their own copy
    of a scalar, so a parallel loop cannot hand its value on (the flow dependence, or None). With
    `allow_reductions`, scalars the loop writes only by sums are fine: the runtime combines partial sums."""
    where = loop_positions(model, name)
    exempt = loop_sums(model, where) if allow_reductions else set()
    scalars = {t.name for t in model.temporaries if not t.shape} - exempt
    for dep in model.dependences:
        if dep.kind == "flow" and dep.array in scalars and dep.source in where and dep.sink not in where:
            return dep
    return None


def describe(model: KernelModel, dep: Dependence, bad: isl.Map) -> str:
    """Names the dependence: source lines, array, and a concrete pair of instances with parameter values."""
    src, snk = model.instruction(dep.source), model.instruction(dep.sink)
    valid = model.context
    for chk in model.checks:  # prefer parameter values for which the program runs without IndexError
        valid = valid.subtract(chk.violation.align_params(valid.get_space()))
    plausible = bad.intersect_params(valid.align_params(bad.get_space()))
    point = (bad if plausible.is_empty() else plausible).wrap().sample_point()
    space = bad.get_space()
    params = [f"{space.get_dim_name(isl.dim_type.param, k)}="
              f"{point.get_coordinate_val(isl.dim_type.param, k).to_python()}"
              for k in range(space.dim(isl.dim_type.param))]
    n = len(src.loops) + len(snk.loops)
    coords = [point.get_coordinate_val(isl.dim_type.set, k).to_python() for k in range(n)]
    a = ", ".join(f"{v}={c}" for v, c in zip(src.loops, coords[: len(src.loops)]))
    b = ", ".join(f"{v}={c}" for v, c in zip(snk.loops, coords[len(src.loops):]))
    verb = {"flow": "written at ({a}) is read at ({b})", "anti": "read at ({a}) is overwritten at ({b})",
            "output": "written at ({a}) is written again at ({b})"}[dep.kind].format(a=a, b=b)
    return (f"the {dep.kind} dependence from line {src.line} to line {snk.line} on `{dep.array}`: "
            f"`{dep.array}` {verb}" + (f" (with {', '.join(params)})" if params else ""))


def parallel_sums(model: KernelModel, parallel_reductions: bool) -> bool:
    """Whether parallel loops may carry sums: with fastmath, on targets that combine partial sums."""
    return parallel_reductions and model.fastmath


def check_legal(model: KernelModel, what: str = "the schedule", *, parallel_reductions: bool = False) -> None:
    """Raise ScheduleError if the schedule breaks a dependence or a parallel/vector loop carries one.

    `parallel_reductions`: the target privatizes fastmath sums per thread and combines them (native)."""
    found = violated(model)
    if found:
        raise ScheduleError(f"{what} reverses " + describe(model, *found),
                            hint="choose another loop order or factor, or pass unsafe=True if you know better")
    for name, tag in model.tags:
        if tag not in ("parallel", "vector"):
            continue
        found = carried(model, name, allow_reductions=model.fastmath and (tag == "vector" or parallel_reductions))
        if found:
            how = "in parallel" if tag == "parallel" else "in vector lanes"
            line = next((lp.line for lp in model.loops if lp.name == name), 0)
            at = f" (line {line})" if line else ""
            raise ScheduleError(f"loop `{name}`{at} cannot run {how}: it carries " + describe(model, *found),
                                hint="use range() for this loop, choose another loop, "
                                     "or pass unsafe=True if you know better")
        out = escaping(model, name, allow_reductions=parallel_sums(model, parallel_reductions)) \
            if tag == "parallel" else None
        if out is not None:
            src, snk = model.instruction(out.source), model.instruction(out.sink)
            raise ScheduleError(f"loop `{name}` cannot run in parallel: `{out.array}` is assigned in it (line "
                                f"{src.line}) and read after it (line {snk.line}); each thread would have its own "
                                f"`{out.array}`", hint="use range() for this loop, or store the value into an "
                                                       "array element instead of a scalar")
