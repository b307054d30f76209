"""The "separate" tail strategy of split/tile: full tiles in a loop of their own, free of bound guards.

`transform.split(..., tail="separate")` records the split as the tag `("X_outer/X_inner", "separate")`; the
schedule dimensions keep the usual `floor(e/f)`, `e mod f` pair, so legality checks see the same order as
with the guard strategy. Here, just before isl's AST builder runs, a constant dimension is inserted in front
of the outer loop's dimension: 0 for partial tiles before the first full one, 1 for full tiles, 2 for partial
tiles after the last one. Partial tiles come only at the ends of a loop's range, so ordering by
(piece, outer) is ordering by outer, and isl emits one loop nest per piece: the full-tile nest gets the
constant bounds 0..f-1 that it knows from the piece's constraints.

A separation that would change the order of any two instances (holes in the middle of a range, statements
sharing a prefix outside the loop) is dropped and that loop keeps its guarded tail: correctness first.
"""

from __future__ import annotations

import re

import islpy as isl

from ..analysis.model import KernelModel

TAIL_STRATEGIES = ("guard", "separate")
_OUTER = re.compile(r"^floor\(\((.*)\)/(\d+)\)$")


def separate_key(outer: str, inner: str) -> str:
    """The tag name recording a separate-tail split (not a loop name, so loop_tag never returns it)."""
    return f"{outer}/{inner}"


def _splits(model: KernelModel):
    """(outer, inner, factor) for each split tagged separate."""
    for key, tag in model.tags:
        if tag != "separate":
            continue
        outer, inner = key.split("/")
        for _, dims in model.schedule:
            for d in dims:
                m = _OUTER.match(d.expr) if d.loop == outer else None
                if m:
                    yield outer, inner, int(m.group(2))
                    break
            else:
                continue
            break


def _anon(width: int, name: str = "t") -> str:
    return ", ".join(f"{name}{k}" for k in range(width))


def _insert_map(params: str, width: int, d: int, value: int, where: isl.Set | None) -> isl.Map:
    """[t0..t(width-1)] -> [t0..t(d-1), value, td..] restricted to time points whose prefix t0..td is in
    `where` (None: everywhere)."""
    t = _anon(width)
    out = [f"t{k}" for k in range(d)] + [str(value)] + [f"t{k}" for k in range(d, width)]
    m = isl.Map(f"[{params}] -> {{ [{t}] -> [{', '.join(out)}] }}")
    if where is not None:
        lifted = where.add_dims(isl.dim_type.set, width - d - 1)
        m = m.intersect_domain(lifted.align_params(m.get_space()))
    return m


def _pieces(times: isl.Set, params: str, width: int, d: int, d2: int, f: int):
    """(head, full, tail) sets over t0..td: tiles of the loop at dim d (inner dim d2, factor f) that are
    partial before the first full tile, full, and partial after; None when the ends are not monotone."""
    t = _anon(width)
    keep = [f"t{k}" for k in range(d + 1)] + [f"t{d2}"]
    proj = isl.Map(f"[{params}] -> {{ [{t}] -> [{', '.join(keep)}] }}")
    present = times.apply(proj.align_params(times.get_space()))
    x = _anon(d + 1, "x")
    tiles = present.project_out(isl.dim_type.set, d + 1, 1)
    span = isl.Map(f"[{params}] -> {{ [{x}] -> [{x}, r] : 0 <= r < {f} }}")
    missing = tiles.apply(span.align_params(tiles.get_space())).subtract(present)
    partial = missing.project_out(isl.dim_type.set, d + 1, 1)
    full = tiles.subtract(partial)
    y = _anon(d + 1, "y")
    same = " and ".join([f"x{k} = y{k}" for k in range(d)] + ["0 = 0"])
    later = isl.Map(f"[{params}] -> {{ [{x}] -> [{y}] : {same} and y{d} > x{d} }}")
    later = later.align_params(tiles.get_space())
    head = partial.intersect(full.apply(later.reverse()))
    tail = partial.subtract(head)
    if not head.intersect(full.apply(later)).is_empty():  # a partial tile after a full one and before another
        return None
    return head, full, tail


PIECE = "__pj"  # piece maps are named S0__pj0, S0__pj1: isl emits one code copy per statement


def base_id(name: str) -> str:
    """The instruction id of a (possibly piece-renamed) statement name."""
    return name.split(PIECE)[0]


def separated_schedule(model: KernelModel, maps: dict[str, isl.Map], *, exact: bool = False):
    """Per-statement schedule maps with the piece dimensions inserted (statements renamed per piece, see
    base_id), and for each new schedule dimension the model's dimension it came from (None for inserted
    ones). `exact` decides each separation by comparing the order relations over all instances (slow; the
    tests check that the prefix-set check gives the same schedules)."""
    origin: list[int | None] = list(range(model.schedule_width()))
    sched = dict(model.schedule)
    for outer, inner, f in _splits(model):
        width = len(origin)
        users = {}
        for name in maps:
            dims = sched[base_id(name)]
            pos = {dims[k].loop: origin.index(k) for k in range(len(dims)) if dims[k].loop in (outer, inner)}
            if outer in pos and inner in pos:
                users[name] = (pos[outer], pos[inner])
        if not users or len(set(users.values())) != 1:
            continue
        d, d2 = next(iter(users.values()))
        space = next(iter(maps.values())).get_space()
        params = ", ".join(space.get_dim_name(isl.dim_type.param, k) for k in range(space.dim(isl.dim_type.param)))
        times = None
        for name in users:
            r = maps[name].range()
            times = r if times is None else times.union(r.align_params(times.get_space()))
        pieces = _pieces(times, params, width, d, d2, f)
        if pieces is None:
            continue
        new = {}
        for name, m in maps.items():
            if name not in users:
                new[name] = m.apply_range(_insert_map(params, width, d, 1, None).align_params(m.get_space()))
                continue
            for value, where in enumerate(pieces):
                e = _insert_map(params, width, d, value, where).align_params(m.get_space())
                piece = m.apply_range(e)
                if not piece.is_empty():
                    new[f"{name}{PIECE}{value}"] = piece.set_tuple_name(isl.dim_type.in_, f"{name}{PIECE}{value}")
        if exact:
            if not _same_order(maps, new):
                continue
        elif not _keeps_order(times, [m.range() for name, m in maps.items() if name not in users],
                              pieces, params, width, d):
            continue
        maps = new
        origin.insert(d, None)
    return maps, origin


def union_maps(maps: dict[str, isl.Map], rename: bool = False) -> isl.UnionMap:
    """The maps as one union map (with `rename`, pieces under their instruction's name again)."""
    out = None
    for name, m in maps.items():
        if rename:
            m = m.set_tuple_name(isl.dim_type.in_, base_id(name))
        u = isl.UnionMap.from_map(m)
        out = u if out is None else out.union(u)
    return out


def _keeps_order(times: isl.Set, others: list, pieces, params: str, width: int, d: int) -> bool:
    """Whether inserting the piece dimension in front of dimension d keeps the order of every two instances.

    The piece depends on the time prefix t0..td only (users of the split: head 0, full 1, tail 2; all other
    statements 1). Two instances can only swap when their prefixes t0..t(d-1) agree: then the earlier one
    (td <= td') must not get the larger piece. Checked on prefix sets, which is far cheaper than comparing the
    two schedules' order relations over all instances (_same_order) and never accepts what that rejects:
    equal prefixes in different pieces count as a swap (conservative)."""
    t = _anon(width)
    proj = isl.Map(f"[{params}] -> {{ [{t}] -> [{', '.join(f't{k}' for k in range(d + 1))}] }}")

    def prefixes(s):
        return s.apply(proj.align_params(s.get_space()))

    mine = prefixes(times)
    groups = [mine.intersect(p.align_params(mine.get_space())) for p in pieces]
    for s in others:
        groups[1] = groups[1].union(prefixes(s).align_params(groups[1].get_space()))
    x, y = _anon(d + 1, "x"), _anon(d + 1, "y")
    same = " and ".join([f"x{k} = y{k}" for k in range(d)] + [f"x{d} <= y{d}"])
    not_later = isl.Map(f"[{params}] -> {{ [{x}] -> [{y}] : {same} }}")
    for p in range(len(groups)):
        for q in range(p):
            g = groups[p]
            reach = g.apply(not_later.align_params(g.get_space()))
            if not reach.intersect(groups[q].align_params(reach.get_space())).is_empty():
                return False
    return True


def _same_order(old: dict[str, isl.Map], new: dict[str, isl.Map]) -> bool:
    """Whether both schedules run every pair of instances in the same relative order."""
    a, b = union_maps(old, True), union_maps(new, True)
    return a.lex_lt_union_map(a).is_equal(b.lex_lt_union_map(b))
