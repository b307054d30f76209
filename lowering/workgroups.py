"""OpenCL work-groups (Loo.py's g.N / l.N) for split parallel loops, and __local prefetch footprints (isl).

When both halves of a split loop are parallel (`i_outer` over tiles, `i_inner` within a tile), the outer
loop's iterations become work-groups and the inner loop's values 0..factor-1 the work-items' local ids: local
size = factor, global size = tiles * factor. Serial loops between the two (gemm's `k_outer` in a 3-d tile)
are run by every work-item of the group; that runs the inner loops "outside" them, so it is used only where
the schedule with the inner loops hoisted above them is legal (checked with isl), else the nest keeps the
plain NDRange mapping. Work-items whose inner value lies outside the loop's bounds (partial tiles, the
guarded tail) stay alive but idle, so that barriers are reached by the whole group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import islpy as isl

from ..analysis import expr as E
from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from .legality import carried, violated
from .looptree import For, Node, convert_expr, runs_of

_OUTER = re.compile(r"^floor\(\((.*)\)/(\d+)\)$")
_INNER = re.compile(r"^\(\((.*)\) mod (\d+)\)$")


@dataclass(frozen=True)
class Axis:
    group: For  # iterations are work-groups
    item: For  # values 0..size-1 are local ids
    size: int


@dataclass(frozen=True)
class GroupNest:
    axes: tuple[Axis, ...]  # outermost first; axis k is NDRange dimension len(axes)-1-k
    between: tuple[For, ...]  # serial loops run by every work-item, outermost first
    items: tuple[For, ...]  # the item loops as nested (their bounds guard each work-item)
    body: tuple[Node, ...]  # what one work-item runs

    @property
    def local_size(self) -> int:
        n = 1
        for a in self.axes:
            n *= a.size
        return n


def _dim(model: KernelModel, node: For):
    run = next(runs_of(node.body), None)
    if run is None:
        return None
    dims = dict(model.schedule or model.original_schedule())[run.instruction]
    return next((d for d in dims if d.loop == node.name), None)


def _partner(model: KernelModel, outer: For, inner: For) -> int | None:
    """The split factor if `inner` is the `e mod f` half of the split whose `floor(e/f)` half is `outer`."""
    a, b = _dim(model, outer), _dim(model, inner)
    ma = _OUTER.match(a.expr) if a is not None else None
    mb = _INNER.match(b.expr) if b is not None else None
    if ma and mb and ma.groups() == mb.groups():
        return int(ma.group(2))
    # the inner half of a split of the inner half (`(e mod F) mod f`, f dividing F): work-items take the
    # values 0..f-1 and each runs the serial loop `floor((e mod F)/f)` (register tiles)
    if ma and mb and mb.group(1) == f"(({ma.group(1)}) mod {ma.group(2)})" \
            and int(ma.group(2)) % int(mb.group(2)) == 0:
        return int(mb.group(2))
    return None


def trip_form(f: For, outer: set[str]) -> bool:
    """Whether the host can count the iterations: `var < e` or `var <= e`, positive step, e and the
    first value free of loop iterators."""
    c = f.cond
    if not (f.step > 0 and isinstance(c, E.Compare) and c.op in ("lt", "le") and isinstance(c.left, E.Var)
            and c.left.name == f.var):
        return False
    used = {v.name for x in (c.right, f.init) for v in E.walk(x) if isinstance(v, E.Var)}
    return not (used & (outer | {f.var}))


def _single(node: For):
    return node.body[0] if len(node.body) == 1 and isinstance(node.body[0], For) else None


def find_group_nest(model: KernelModel, node) -> GroupNest | None:
    """The work-group mapping of a top-level loop nest, or None where it does not apply."""
    groups: list[For] = []
    while isinstance(node, For) and node.tag == "parallel" and trip_form(node, {g.var for g in groups}) \
            and not any(_partner(model, g, node) for g in groups):
        groups.append(node)
        node = _single(node)
    between: list[For] = []
    while isinstance(node, For) and not any(_partner(model, g, node) for g in groups):
        between.append(node)
        node = _single(node)
    items: list[For] = []
    partners: dict[str, tuple[For, int]] = {}  # item loop var -> (its group loop, the split factor)
    while isinstance(node, For) and node.tag == "parallel" and len(items) < len(groups):
        hit = next(((g, f) for g in groups if (f := _partner(model, g, node))), None)
        if hit is None or any(hit[0] is p[0] for p in partners.values()):
            break
        partners[node.var] = hit
        items.append(node)
        if len(items) < len(groups):
            node = _single(node)
    if not groups or len(items) != len(groups) or len(groups) > 3:
        return None
    by_group = {partners[it.var][0].var: it for it in items}
    axes = tuple(Axis(g, by_group[g.var], partners[by_group[g.var].var][1]) for g in groups)
    if between and not _hoistable(model, groups, between, items):
        return None
    return GroupNest(axes, tuple(between), tuple(items), items[-1].body)


def _hoistable(model, groups, between, items) -> bool:
    """Whether the item loops may run outside the serial loops between (each work-item runs those loops
    on its own, unsynchronized): the schedule with them hoisted must be legal and they must stay parallel."""
    from . import transform as T
    order = tuple(f.name for f in groups + items + between)
    try:
        candidate = T.reorder(model, order)
    except ScheduleError:
        return False
    return violated(candidate) is None and all(carried(candidate, f.name) is None for f in items)


def item_guard(nest: GroupNest) -> E.Expr | None:
    """The condition under which a work-item's inner values lie inside its item loops' bounds."""
    conds = []
    for f in nest.items:
        v = E.Var(f.var)
        conds += [E.Compare("ge", v, f.init), f.cond]
        if f.step != 1:
            conds.append(E.Compare("eq", E.BinOp("mod", E.BinOp("sub", v, f.init), E.Const(f.step)), E.Const(0)))
    out = None
    for c in conds:
        out = c if out is None else E.BoolOp("and", out, c)
    return out


# -- prefetch footprints ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Footprint:
    array: str
    loop: str  # the `between` loop at whose every iteration the tile is copied
    offsets: tuple[E.Expr, ...]  # first element per dimension, over the AST iterators of enclosing loops
    sizes: tuple[int, ...]

    @property
    def count(self) -> int:
        n = 1
        for s in self.sizes:
            n *= s
        return n


def prefetches(model: KernelModel) -> dict[str, str]:
    """array -> loop, from the tags apply_hints records for prefetch=."""
    return {name: tag.split(":", 1)[1] for name, tag in model.tags if tag.startswith("prefetch:")}


def footprint(model: KernelModel, nest: GroupNest, array: str, loop: str) -> Footprint:
    """The box of `array` elements the work-group reads at one iteration of `loop`, as offsets affine in the
    enclosing loops' iterators and constant sizes (isl: exact min per dimension, widest extent)."""
    names = [f.name for f in nest.between]
    if loop not in names:
        where = "a loop of the kernel" if loop in model.loop_names() else "no loop of the kernel"
        raise ScheduleError(f"prefetch={{'{array}': '{loop}'}}: `{loop}` is {where}, but prefetch needs a serial "
                            "loop between the work-group loops and the work-item loops of a nest mapped to "
                            "work-groups (both halves of split loops parallel, e.g. tile={'i': 16, 'j': 16, "
                            "'k': 16} with parallel=('i_outer', 'j_outer', 'i_inner', 'j_inner'))")
    if array in model.written_arrays():
        raise ScheduleError(f"prefetch= cannot copy `{array}` to local memory: the kernel writes it "
                            "(only arrays the kernel only reads can be prefetched)")
    kept = [a.group for a in nest.axes] + list(nest.between[: names.index(loop) + 1])
    rel = None
    for run in {r.instruction: r for r in runs_of(nest.body)}.values():
        ins = model.instruction(run.instruction)
        dims = dict(model.schedule or model.original_schedule())[ins.id]
        where = [next((k for k, d in enumerate(dims) if d.loop == f.name), None) for f in kept]
        for acc in ins.accesses:
            if acc.array != array:
                continue
            if not acc.affine or acc.checked:
                raise ScheduleError(f"prefetch= cannot copy `{array}`: its access on line {ins.line} is not "
                                    "affine (or needs run-time bounds checks)")
            t = model.instruction_schedule_map(ins.id)
            width = t.dim(isl.dim_type.out)
            proj = isl.Map(f"{{ [{', '.join(f't{k}' for k in range(width))}] -> "
                           f"[{', '.join(f't{k}' for k in where)}] }}")
            r = t.reverse().apply_range(acc.relation.align_params(t.get_space()))
            r = r.apply_domain(proj.align_params(r.get_space())).reset_tuple_id(isl.dim_type.out)
            rel = r if rel is None else rel.union(r.align_params(rel.get_space()))
    if rel is None:
        raise ScheduleError(f"prefetch= names `{array}`, but no statement inside loop `{loop}` reads it")
    rel = rel.intersect_params(model.context.align_params(rel.get_space())).coalesce()
    for k, f in enumerate(kept):  # the iterators become parameters named as the AST's: isl's expression
        rel = rel.set_dim_name(isl.dim_type.in_, k, f.var)  # builder then writes offsets over them
    nparam = rel.dim(isl.dim_type.param)
    elems = rel.move_dims(isl.dim_type.param, nparam, isl.dim_type.in_, 0, len(kept)).range()
    build = isl.AstBuild.from_context(elems.params())
    offsets, sizes = [], []
    ndim = elems.dim(isl.dim_type.set)
    for d in range(ndim):
        sd = elems.project_out(isl.dim_type.set, d + 1, ndim - d - 1).project_out(isl.dim_type.set, 0, d)
        width = isl.Map.from_domain_and_range(sd, sd).deltas().dim_max_val(0)
        if not width.is_int():
            raise ScheduleError(f"prefetch= cannot copy `{array}` at loop `{loop}`: the tile it reads there has "
                                f"no constant extent in dimension {d} (tile the loops that index it)")
        sizes.append(int(width.to_python()) + 1)
        offsets.append(convert_expr(build.expr_from_pw_aff(sd.dim_min(0))))
    return Footprint(array, loop, tuple(offsets), tuple(sizes))
