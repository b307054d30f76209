"""Memory-based dependences (flow, anti, output) of instructions under a schedule, with isl."""

from __future__ import annotations

import islpy as isl

from .model import Dependence, Instruction


def _union(maps) -> isl.UnionMap | None:
    result = None
    for m in maps:
        u = isl.UnionMap.from_map(m)
        result = u if result is None else result.union(u)
    return result


def _maps(u: isl.UnionMap) -> list[isl.Map]:
    lst = u.get_map_list()
    return [lst.get_at(k) for k in range(lst.n_map())]


def compute_dependences(instructions: tuple[Instruction, ...], schedule: isl.UnionMap) -> tuple[Dependence, ...]:
    """Every pair of instances touching the same element, ordered by `schedule`, at least one a write.

    A dependence relation maps source instances to the sink instances that must run after them.
    """
    before = schedule.lex_lt_union_map(schedule)
    arrays: dict[str, tuple[list, list]] = {}
    for ins in instructions:
        for acc in ins.accesses:
            arrays.setdefault(acc.array, ([], []))[0 if acc.write else 1].append(acc.relation)
    found = []
    for array, (writes, reads) in arrays.items():
        if not writes:
            continue
        w = _union(writes)
        r = _union(reads) if reads else None
        pairs = [("flow", w, r), ("anti", r, w), ("output", w, w)]
        for kind, src, snk in pairs:
            if src is None or snk is None:
                continue
            rel = src.apply_range(snk.reverse()).intersect(before)
            for m in _maps(rel):
                if not m.is_empty():
                    found.append(Dependence(kind, m.get_tuple_name(isl.dim_type.in_),
                                            m.get_tuple_name(isl.dim_type.out), array, m.coalesce()))
    order = {ins.id: k for k, ins in enumerate(instructions)}
    found.sort(key=lambda d: (order[d.source], order[d.sink], d.array, d.kind))
    return tuple(found)
