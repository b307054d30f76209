"""Loop transformations: pure functions `model -> model` on the model's schedule (and tags).

Instruction domains never change: a transformation only changes *when* each instance runs, so results stay
those of the original program exactly when `legality.check_legal` accepts the new schedule.
"""

from __future__ import annotations

from dataclasses import replace

from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel, SchedDim
from .tails import TAIL_STRATEGIES, separate_key


def _schedule(model: KernelModel):
    return list(model.schedule or model.original_schedule())


def _require(model: KernelModel, name: str, keyword: str) -> None:
    if name not in model.loop_names():
        raise ScheduleError(f"{keyword} names loop `{name}`, but the kernel has no such loop; valid names: "
                            f"{', '.join(model.loop_names()) or '(none)'}")


def _check_tail(tail, loop: str) -> None:
    if tail not in TAIL_STRATEGIES:
        raise ScheduleError(f"tail={tail!r} for loop `{loop}` is not a tail strategy; write tail=\"guard\" "
                            "(partial tiles run with bound guards, the default) or tail=\"separate\" (full "
                            "tiles run guard-free, the remainder after them as its own loop)")


def split(model: KernelModel, loop: str, factor: int, *, outer: str | None = None,
          inner: str | None = None, tail: str = "guard") -> KernelModel:
    """Splits `loop` into `loop_outer` and `loop_inner`, preserving `i == i_inner + factor*i_outer`.

    Partial tiles (at either end of the range) run with min()/max() bounds from isl's AST builder
    (`tail="guard"`), or, with `tail="separate"`, full tiles run in a loop nest of their own whose inner
    bounds are the constants 0..factor-1 and partial tiles in separate nests before/after it (tails.py);
    the order of all instances is the same either way.
    """
    _require(model, loop, "split=")
    if not isinstance(factor, int) or factor < 1:
        raise ScheduleError(f"split factor for `{loop}` must be a positive integer, not {factor!r}")
    _check_tail(tail, loop)
    outer, inner = outer or f"{loop}_outer", inner or f"{loop}_inner"
    counter = _iteration_counter(model, loop)
    out = []
    for iid, dims in _schedule(model):
        new = []
        for d in dims:
            if d.loop == loop:
                e = counter.get(d.expr, d.expr)
                new.append(SchedDim(f"floor(({e})/{factor})", outer))
                new.append(SchedDim(f"(({e}) mod {factor})", inner))
            else:
                new.append(d)
        out.append((iid, tuple(new)))
    tags = tuple((inner if n == loop and t in ("vector", "unroll") else n, t) for n, t in model.tags)
    if tail == "separate":
        tags += ((separate_key(outer, inner), "separate"),)
    return replace(model, schedule=tuple(out), tags=tags)


def _iteration_counter(model: KernelModel, loop: str) -> dict[str, str]:
    """For a loop with step ±s (s > 1): its schedule expression (`j` or `-j`) -> the iteration counter
    `(j - offset)/s` (or its negation), so that a split counts iterations rather than values of j. (It is
    also what isl's AST builder handles correctly: floor(-j/8) over a stride-3 domain lost instances.)"""
    found = set()
    for ins in model.instructions:
        if loop in ins.loops:
            info = ins.domain.get_stride_info(ins.loops.index(loop))
            stride = info.get_stride().to_python()
            if stride > 1:
                text = str(info.get_offset())
                found.add((stride, text[text.rindex("[") + 1: text.rindex("]")]))
            else:
                found.add((1, None))
    if len(found) != 1 or next(iter(found))[0] == 1:  # unit steps, or statements at different strides
        return {}
    stride, offset = next(iter(found))
    return {loop: f"floor(({loop} - ({offset}))/{stride})", f"-{loop}": f"floor((({offset}) - {loop})/{stride})"}


def reorder(model: KernelModel, order: tuple[str, ...]) -> KernelModel:
    """Nests the loops named in `order` in that order (outermost first), keeping other dimensions in place.

    The loops must form a perfect band: every instruction inside one of them lies inside all of them.
    """
    for n in order:
        _require(model, n, "order=")
    if len(set(order)) != len(order):
        raise ScheduleError(f"order={tuple(order)} names a loop twice")
    out, bands = [], {}
    for iid, dims in _schedule(model):
        where = [k for k, d in enumerate(dims) if d.loop in order]
        if not where:
            out.append((iid, dims))
            continue
        present = tuple(dims[k].loop for k in where)
        prefix = tuple(str(d) for d in dims[: where[0]])
        between = tuple(str(dims[k]) for k in range(where[0], where[-1] + 1) if dims[k].loop is None)
        seen = bands.setdefault(prefix, (present, between, iid))
        if seen[:2] != (present, between):
            raise ScheduleError(f"order={tuple(order)} needs a perfect nest, but statements {seen[2]} and {iid} "
                                f"sit at different depths of loops {', '.join(sorted(set(present) | set(seen[0])))}",
                                hint="distribute the statements into separate loops first, or accumulate "
                                     "directly into the array (C[i, j] += ...)")
        ranked = sorted(present, key=order.index)
        moved = {k: next(d for d in dims if d.loop == name) for k, name in zip(where, ranked)}
        out.append((iid, tuple(moved.get(k, d) for k, d in enumerate(dims))))
    return replace(model, schedule=tuple(out))


def tile(model: KernelModel, sizes: dict[str, int], *, tail: str | dict[str, str] = "guard") -> KernelModel:
    """Splits each loop of `sizes` and nests all `_outer` loops outside all `_inner` loops.

    Identity preserved per loop: `i == i_inner + size*i_outer`. `tail` is split's strategy, for all loops or
    per loop name (missing names: "guard").
    """
    for name, f in sizes.items():
        model = split(model, name, f, tail=tail.get(name, "guard") if isinstance(tail, dict) else tail)
    names = list(sizes)
    return reorder(model, tuple(f"{n}_outer" for n in names) + tuple(f"{n}_inner" for n in names))


def _tag(model: KernelModel, loop: str, tag: str) -> KernelModel:
    tags = [(n, t) for n, t in model.tags if not (n == loop and t == tag)]
    return replace(model, tags=tuple(tags) + ((loop, tag),))


def parallelize(model: KernelModel, loop: str) -> KernelModel:
    """Runs `loop`'s iterations in parallel (threads natively, work-items on OpenCL); the iteration set is
    unchanged."""
    _require(model, loop, "parallel=")
    return _tag(model, loop, "parallel")


def vectorize(model: KernelModel, loop: str, width: int | None = None, *, tail: str = "guard") -> KernelModel:
    """Runs `loop` in SIMD lanes; with `width`, splits it first (`i == i_inner + width*i_outer`, partial
    tiles handled by `tail` as in split) and vectorizes `i_inner`."""
    _require(model, loop, "vectorize=")
    _check_tail(tail, loop)
    if width is not None:
        model = split(model, loop, width, tail=tail)
        loop = f"{loop}_inner"
    return _tag(model, loop, "vector")


def unroll(model: KernelModel, loop: str, factor: int | None = None, *, tail: str = "guard") -> KernelModel:
    """Unrolls `loop` completely (its trip count must be a constant), or by `factor` after splitting
    (`i == i_inner + factor*i_outer`, `i_inner` unrolled, partial tiles handled by `tail` as in split)."""
    _require(model, loop, "unroll=")
    _check_tail(tail, loop)
    if factor is not None:
        model = split(model, loop, factor, tail=tail)
        loop = f"{loop}_inner"
    return _tag(model, loop, "unroll")


def prefetch(model: KernelModel, array: str, loop: str) -> KernelModel:
    """On OpenCL, copies the tile of `array` that a work-group reads inside `loop` into __local memory at
    every iteration of `loop`, and reads it from there (workgroups.py); native targets ignore it.

    Identity: every read returns the same element value (the array is only read by the kernel). Needs the
    nest mapped to work-groups, checked when the OpenCL C is generated.
    """
    _require(model, loop, "prefetch=")
    arg = model.argument(array)
    if arg is None or arg.kind != "array":
        arrays = ", ".join(a.name for a in model.arguments if a.kind == "array") or "(none)"
        raise ScheduleError(f"prefetch= names `{array}`, which is not an array argument; arrays: {arrays}")
    tags = [(n, t) for n, t in model.tags if not (n == array and t.startswith("prefetch:"))]
    return replace(model, tags=tuple(tags) + ((array, f"prefetch:{loop}"),))


def distribute(model: KernelModel, loop: str) -> KernelModel:
    """Gives each statement directly inside `loop` its own copy of the loop, in program order.

    Identity: the set of instances is unchanged; only their interleaving across statements changes.
    """
    _require(model, loop, "distribute")
    sched = _schedule(model)
    out = []
    for iid, dims in sched:
        k = next((k for k, d in enumerate(dims) if d.loop == loop), None)
        if k is None or k == 0 or dims[k - 1].loop is not None or k + 1 >= len(dims) or dims[k + 1].loop is not None:
            out.append((iid, dims))
            continue
        # the sequence position before the loop becomes (old position, position inside the loop)
        pos = int(dims[k - 1].expr) * _SPREAD + int(dims[k + 1].expr)
        out.append((iid, dims[: k - 1] + (SchedDim(str(pos)),) + dims[k:]))
    return replace(model, schedule=tuple(out))


_SPREAD = 1000  # positions within one sequence stay below this


def fuse(model: KernelModel, first: str, second: str) -> KernelModel:
    """Runs two sibling loops as one: iteration v of `second` right after iteration v of `first`.

    Both loops must be consecutive in the same sequence; the fused loop keeps the name `first`.
    """
    _require(model, first, "fuse")
    _require(model, second, "fuse")
    sched = _schedule(model)
    pos = {}
    for _, dims in sched:
        for k, d in enumerate(dims):
            if d.loop in (first, second) and k > 0 and dims[k - 1].loop is None:
                pos.setdefault(d.loop, (k, dims[: k - 1], int(dims[k - 1].expr)))
    if first not in pos or second not in pos or pos[first][0] != pos[second][0] \
            or tuple(map(str, pos[first][1])) != tuple(map(str, pos[second][1])):
        raise ScheduleError(f"loops `{first}` and `{second}` are not siblings at the same depth; cannot fuse")
    k, _, b1 = pos[first]
    b2 = pos[second][2]
    if b2 != b1 + 1:
        raise ScheduleError(f"loops `{first}` and `{second}` are not consecutive; cannot fuse")
    out = []
    for iid, dims in sched:
        if len(dims) > k and dims[k].loop == second:
            inner = str(_SPREAD + int(dims[k + 1].expr))
            dims = dims[: k - 1] + (SchedDim(str(b1)), SchedDim(dims[k].expr, first), SchedDim(inner)) + dims[k + 2:]
        out.append((iid, dims))
    return replace(model, schedule=tuple(out))
