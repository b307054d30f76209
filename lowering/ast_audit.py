"""A check of isl's AST against the schedule, and the stride-free rebuild used where it fails.

isl's AST builder may *shift* a statement whose domain has strides (existential variables: `k % 2 == 1`
from an `if`) along a loop, running instance `k` in iteration `k - 1`. That is legal only where nothing at
the same loop depth is ordered between the two; isl 0.26's builder (islpy 2026.2) also shifts where it is
not (fuzz seed 3302 program 2369: `S4(c1, c3 + 1)` ran before `S2(2, c3 + 1)`, which the schedule puts
first), and the kernel computes a wrong result.

`Audit` runs at every statement isl places (`set_at_each_domain`) and notes where the loop iterations isl runs
an instance in differ from that instance's schedule times in the loops' dimensions (a shift). A shift is kept
when it keeps the schedule's order (`order_kept`); otherwise the caller builds the AST again from `hull_maps`
-- every domain replaced by its polyhedral hull, which has no strides, so there is nothing to shift -- with
each statement guarded by its exact domain (`Audit` with `exact`: an isl expression over the iterators,
attached to the node as an annotation `guards` keys).
Identity: the guarded statements over the hulls run exactly the instances of the exact domains, each in its
scheduled iteration; statements whose domains have no strides are never audited (no cost).
"""

from __future__ import annotations

import islpy as isl

from ..analysis.model import KernelModel


def has_strides(maps: dict) -> bool:
    """Whether some map's domain needs existential variables (a stride isl may shift)."""
    found = []
    for m in maps.values():
        m.domain().foreach_basic_set(lambda b: found.append(b.dim(isl.dim_type.div)))
        if any(found):
            return True
    return False


class Audit:
    """The `set_at_each_domain` callback: records placements that differ from the schedule (`shifted`);
    with `exact` (statement -> exact domain), attaches to each statement the guard of its exact domain."""

    def __init__(self, maps: dict, names: list | None, exact: dict | None = None):
        self.maps, self.exact = maps, exact
        self.position = {name: k for k, name in enumerate(names)} if names else None
        self.shifted = False
        self.failed: Exception | None = None
        self.guards: dict = {}  # annotation name -> isl AstExpr of the guard
        self.placements: list = []  # (statement, instance -> loop iterations, schedule dimension of each loop)

    def __call__(self, node, build):
        try:
            placed = isl.Map.from_union_map(build.get_schedule())  # instance -> iterations of the loops
            name = placed.get_tuple_name(isl.dim_type.in_)
            space = build.get_schedule_space()
            loops = [space.get_dim_name(isl.dim_type.set, k) for k in range(space.dim(isl.dim_type.set))]
            times = self.maps[name]
            width = times.dim(isl.dim_type.out)
            dims = [self.position.get(x, width) if self.position else int(x[1:]) for x in loops]
            for d in reversed(range(width)):
                if d not in dims:
                    times = times.project_out(isl.dim_type.out, d, 1)
            # loops past the schedule's dimensions run instances that share their times (a schedule that is
            # not one-to-one on a hull): any order is the schedule's
            on_schedule = placed
            for k in reversed(range(len(dims))):
                if dims[k] >= width:
                    on_schedule = on_schedule.project_out(isl.dim_type.out, k, 1)
            if self.exact is not None:  # instances of the hull outside the domain never run
                on_schedule = on_schedule.intersect_domain(self.exact[name])
            if not on_schedule.is_equal(times.intersect_domain(on_schedule.domain())):
                self.shifted = True
            self.placements.append((name, placed, dims))
            if self.exact is not None:
                wanted = self.exact[name].apply(placed)
                if not wanted.is_equal(placed.range()):
                    key = f"guard{len(self.guards)}"
                    self.guards[key] = build.expr_from_set(wanted)
                    node = node.set_annotation(isl.Id(key, context=node.get_ctx()))
        except Exception as e:  # an exception must not cross isl's C callback: reported after the build
            self.failed = e
        return node


def hull_maps(model: KernelModel, width: int) -> tuple[dict, dict]:
    """(instruction -> schedule map over the polyhedral hull of its domain, instruction -> exact domain)."""
    maps, exact = {}, {}
    for ins in model.instructions:
        hull = isl.Set.from_basic_set(ins.domain.polyhedral_hull())
        maps[ins.id] = model.instruction_schedule_map(ins.id, width, domain=hull)
        exact[ins.id] = ins.domain
    return maps, exact


def order_kept(audit: Audit) -> bool:
    """Whether isl's shifts keep the schedule's order: an instance runs at its times with the loop dimensions
    replaced by the iterations isl runs it in (the other dimensions order the statements of one iteration),
    and no pair of instances may run in the opposite order of their times. isl's legal shifts pass (an odd-k
    statement beside an even-k one, both in iteration k of a loop of step 2); fuzz seed 3302 program 2369's
    does not."""
    run = None
    for name, placed, dims in audit.placements:
        times = audit.maps[name]
        width, loops = times.dim(isl.dim_type.out), placed.dim(isl.dim_type.out)
        t = [f"t{d}" for d in range(width)]
        i = [f"i{k}" for k in range(loops)]
        at = {d: i[k] for k, d in enumerate(dims) if d < width}
        substitute = isl.Map(f"{{ [{', '.join(t + i)}] -> [{', '.join(at.get(d, t[d]) for d in range(width))}] }}",
                             context=times.get_ctx())
        when = times.intersect_domain(placed.domain()).flat_range_product(placed)
        when = when.apply_range(substitute.align_params(when.get_space()))
        run = isl.UnionMap.from_map(when) if run is None else run.union(isl.UnionMap.from_map(when))
    if run is None:
        return True
    scheduled = None
    for m in audit.maps.values():
        scheduled = isl.UnionMap.from_map(m) if scheduled is None else scheduled.union(isl.UnionMap.from_map(m))
    inverted = scheduled.lex_lt_union_map(scheduled).intersect(run.lex_gt_union_map(run))
    return inverted.is_empty()
