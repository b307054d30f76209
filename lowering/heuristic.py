"""The default schedule when the user gives no hints: legal by construction (each step is checked).

Per top-level nest: make the loop with the most unit-stride accesses innermost in perfect nests (gemm's
i, k, j), then run the outermost loop that carries no dependence in parallel; innermost loops run in SIMD
lanes, and where they cannot (a sum without fastmath), the deepest dependence-free loop around them does.
"""

from __future__ import annotations

from dataclasses import replace

import islpy as isl
import numpy as np

from ..analysis import expr as E
from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel, SchedDim
from . import transform as T
from .blocking import _strip
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


def auto_schedule(model: KernelModel, *, parallel_reductions: bool = False, tile: str | None = None
                  ) -> KernelModel:
    """Interchange for unit stride, the outermost dependence-free loop parallel (fastmath sums too where the
    target combines per-thread partial sums), the innermost vectorized; with `tile` (native targets: the ISA
    tier), matmul-like nests tiled for register blocking first (`tile_matmul`)."""
    if tile:
        tiled = tile_matmul(model, isa=tile)
        if tiled is not model:
            return vectorize_outer(vectorize_innermost(tiled, split_names=True))
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
    return unroll_short_loops(vectorize_outer(vectorize_innermost(model, split_names=True)))


SHORT_TRIP = 8  # loops of at most this many iterations (a constant) are unrolled by the heuristic


def unroll_short_loops(model: KernelModel) -> KernelModel:
    """Tags for complete unrolling the innermost loops that run a constant number of iterations, 2 to
    SHORT_TRIP, in every instance (`for d in range(3)`), carry no other tag and sit in no loop running in
    SIMD lanes (the lane emitters take a short loop better as a loop: a 5-tap filter ran 8x slower
    unrolled there): straight-line code, the same instances in the same order, so results do not change."""
    inner = _inner_loops(model)
    tagged = {name for name, _ in model.tags}
    lanes = {name for name, tag in model.tags if tag == "vector"}
    for name in model.loop_names():
        if inner.get(name) or name in tagged or any(name in inner.get(v, ()) for v in lanes):
            continue
        trips = {_constant_trip(ins.domain, ins.loops.index(name)) for ins in model.instructions
                 if name in ins.loops}
        if len(trips) == 1 and (trip := trips.pop()) is not None and 2 <= trip <= SHORT_TRIP:
            model = T.unroll(model, name)
    return model


def _constant_trip(domain: isl.Set, pos: int) -> int | None:
    """The trip count of set dimension `pos` where it is the same constant range for every value of the
    dimensions before it (and of the parameters), else None."""
    n = domain.dim(isl.dim_type.set)
    s = domain.project_out(isl.dim_type.set, pos + 1, n - pos - 1).reset_tuple_id()
    bounds = []
    for pw in (s.dim_min(pos), s.dim_max(pos)):
        pieces = pw.get_pieces() if pw.is_cst() else []
        if len(pieces) != 1 or not pieces[0][1].get_constant_val().is_int():
            return None
        bounds.append(int(pieces[0][1].get_constant_val().to_python()))
    lo, hi = bounds
    outer = s.project_out(isl.dim_type.set, pos, 1)
    box = outer.flat_product(isl.Set(f"{{ [x] : {lo} <= x <= {hi} }}").align_params(outer.get_space()))
    for d in range(pos + 1):  # the same dimension names, so that the sets compare
        name = s.get_dim_name(isl.dim_type.set, d) or f"x{d}"
        box = box.set_dim_name(isl.dim_type.set, d, name)
        s = s.set_dim_name(isl.dim_type.set, d, name)
    return hi - lo + 1 if s.is_equal(box.reset_tuple_id()) else None


# bench/gemm_blocking.py's schedule, j outermost: a 5x8 block of C in registers (i_inner unrolled, j_inner in
# SIMD lanes) over 512 iterations of k, B's 512x8 tile packed at every k_outer iteration (blocking_pack.py),
# partial tiles guarded (full tiles run blocked, full_tiles.py), threads on j_outer
MATMUL_TILE = {"i": 5, "j": 8, "k": 512}  # by role: the rows of the block, its columns, the sum
# at avx512 a row of the block is 4 zmm vectors (256 bytes: 32 float64 or 64 float32 columns), so 20 of the 32
# registers accumulate: 42 and 83 GFLOP/s for n=512 float64/float32 here, against 27 and 50 with one zmm a row
MATMUL_ROW_BYTES = {"avx512": 256}


def _matmul_roles(model: KernelModel):
    """(i, j, k, instruction) of a matmul-like nest: one instruction in a perfect band of three loops,
    `X[.., j] = X[.., j] + ...` (one element updated and read back, its last index the loop j, the index
    free of the third loop k); else None."""
    bands = [names for names in _nests(model) if len(names) == 3]
    if len(bands) != 1 or len(model.instructions) != 1:
        return None
    names, ins = bands[0], model.instructions[0]
    target = ins.assignee
    if tuple(ins.loops) != tuple(names) or not isinstance(target, E.Index) or not target.indices:
        return None
    used = {v.name for i in target.indices for v in E.walk(i) if isinstance(v, E.Var)}
    last = _strip(target.indices[-1])
    rest = [n for n in names if n not in used]
    if not isinstance(last, E.Var) or last.name not in names or len(rest) != 1 or \
            not any(x == target for x in E.walk(ins.expression)):
        return None
    j, k = last.name, rest[0]
    return next(n for n in names if n not in (j, k)), j, k, ins


def tile_matmul(model: KernelModel, *, isa: str = "avx2") -> KernelModel:
    """The model with its matmul-like nest (`_matmul_roles`) tiled as MATMUL_TILE says (the columns as
    MATMUL_ROW_BYTES says at the tiers it names), or the model itself;
    an array indexed by k and j is packed. Kept only where legal and j_inner carries nothing (checked); every
    instance runs in the same order per element of X, so results are bit-identical."""
    roles = _matmul_roles(model)
    if roles is None:
        return model
    i, j, k, ins = roles
    columns = MATMUL_TILE["j"]
    if isa in MATMUL_ROW_BYTES:
        dtype = next((a.dtype for a in model.arguments if a.name == ins.assignee.array), None)
        if dtype is not None:
            columns = MATMUL_ROW_BYTES[isa] // np.dtype(dtype).itemsize
    packed = [a.array for a in ins.accesses if not a.write and a.affine and a.array != ins.assignee.array
              and a.index and isinstance(_strip(a.index[-1]), E.Var) and _strip(a.index[-1]).name == j
              and any(isinstance(_strip(x), E.Var) and _strip(x).name == k for x in a.index[:-1])]
    try:
        t = model
        for name, role in ((i, "i"), (j, "j"), (k, "k")):
            t = T.split(t, name, columns if role == "j" else MATMUL_TILE[role])
        t = T.reorder(t, (f"{j}_outer", f"{k}_outer", f"{i}_outer", f"{k}_inner", f"{i}_inner", f"{j}_inner"))
        t = T.vectorize(T.unroll(t, f"{i}_inner"), f"{j}_inner")
        for array in packed[:1]:
            t = T.prefetch(t, array, f"{k}_outer")
        if violated(t) is not None or carried(t, f"{j}_inner") is not None:
            return model
        if carried(t, f"{j}_outer") is None and escaping(t, f"{j}_outer") is None:
            t = T.parallelize(t, f"{j}_outer")
    except ScheduleError:
        return model
    return t


# OpenCL on GPUs (bench/gpu_schedules.py's REGISTER_TILES): work-groups of 16x16 work-items, each updating
# 8x8 elements 16 apart in registers (opencl_tiles.py), the read arrays' tiles copied to __local memory at
# every iteration of k_outer (k in tiles of 16)
GPU_TILE = {"block": 128, "items": 16, "k": 16}


def tile_matmul_groups(model: KernelModel) -> KernelModel:
    """For OpenCL on GPUs: the matmul-like nest (`_matmul_roles`) mapped to work-groups with register tiles,
    or the model itself. Only where every other array is read through bare loop variables (its tile is a
    box), the schedule is legal, its parallel loops carry nothing and the loop tree maps to work-groups."""
    from .looptree import build_loop_tree
    from .workgroups import find_group_nest
    roles = _matmul_roles(model)
    if roles is None:
        return model
    i, j, k, ins = roles
    reads = sorted({a.array for a in ins.accesses if a.array != ins.assignee.array})
    for a in ins.accesses:
        if a.array in reads and not (a.affine and not a.checked and not a.write and all(
                isinstance(_strip(x), E.Var) and _strip(x).name in (i, j, k) for x in a.index)):
            return model
    items = (f"{i}_inner_inner", f"{j}_inner_inner")
    parallel = (f"{i}_outer", f"{j}_outer") + items
    try:
        t = model
        for name in (i, j, k):
            t = T.split(t, name, GPU_TILE["k" if name == k else "block"])
        t = T.tile(t, {f"{i}_inner": GPU_TILE["items"], f"{j}_inner": GPU_TILE["items"]})
        t = T.reorder(t, parallel[:2] + (f"{k}_outer",) + items + (f"{k}_inner", f"{i}_inner_outer",
                                                                   f"{j}_inner_outer"))
        t = T.unroll(T.unroll(t, f"{i}_inner_outer"), f"{j}_inner_outer")
        for name in parallel:
            t = T.parallelize(t, name)
        for array in reads:
            t = T.prefetch(t, array, f"{k}_outer")
        if violated(t) is not None or any(carried(t, name) is not None for name in parallel):
            return model
        tree = build_loop_tree(t)
        if len(tree.body) != 1 or find_group_nest(t, tree.body[0]) is None:
            return model
    except ScheduleError:
        return model
    return t


def vectorize_outer(model: KernelModel) -> KernelModel:
    """Tags for SIMD lanes the deepest loop around inner loops that carries no dependence (sums included)
    when nothing inside it runs in lanes (conv2d's `j` around its `di`, `dj` sum): each lane runs one
    iteration in its own order (lanes.py), so results do not change; the native emitter takes it where the
    body fits and otherwise runs the loop as before."""
    inner = _inner_loops(model)
    for name in model.loop_names():
        if (name, "vector") in model.tags or not inner.get(name):
            continue
        if any((x, "vector") in model.tags or carried(model, x) is None for x in inner[name]):
            continue
        if carried(model, name) is None and escaping(model, name) is None:
            model = T.vectorize(model, name)
    return model


def _inner_loops(model: KernelModel) -> dict[str, set]:
    """Loop name -> the names of the loops nested inside it."""
    out: dict[str, set] = {}
    for _, dims in model.schedule or model.original_schedule():
        loops = [d.loop for d in dims if d.loop]
        for k, name in enumerate(loops):
            out.setdefault(name, set()).update(loops[k + 1:])
    return out


def vectorize_innermost(model: KernelModel, *, split_names: bool = False) -> KernelModel:
    """Tags every innermost loop that carries no dependence (sums too, with fastmath) for SIMD lanes; lanes
    compute element for element what the scalar loop does, so this never changes results.

    Tags name loops, and one source name often covers several loops (atax's `j` loops: one carries the sum
    into `tmp[i]`, the next is free of dependences). With `split_names` (the default schedule, where no hint
    names loops any more), such a name is split into one name per loop, and each loop that carries nothing
    is tagged on its own."""
    for name in _innermost(model):
        if (name, "vector") in model.tags:
            continue
        if carried(model, name, allow_reductions=model.fastmath) is None:
            model = T.vectorize(model, name)
        elif split_names:
            model = _vectorize_instances(model, name)
    return model


def _instances(model: KernelModel, name: str) -> list[list[str]]:
    """The instructions of each distinct loop called `name` (same schedule prefix up to that loop)."""
    groups: dict[tuple, list[str]] = {}
    for iid, dims in model.schedule or model.original_schedule():
        for d, dim in enumerate(dims):
            if dim.loop == name:
                groups.setdefault(tuple(str(x) for x in dims[: d + 1]), []).append(iid)
    return list(groups.values())


def _vectorize_instances(model: KernelModel, name: str) -> KernelModel:
    loops = _instances(model, name)
    if len(loops) < 2 or any(t.private_to == name for t in model.temporaries):
        return model
    taken = set(model.loop_names())
    for k, iids in enumerate(loops):
        new = f"{name}_v{k}"
        while new in taken:
            new += "_"
        candidate = _rename(model, name, new, set(iids))
        if carried(candidate, new, allow_reductions=model.fastmath) is None:
            model = T.vectorize(candidate, new)
            taken.add(new)
    return model


def _rename(model: KernelModel, name: str, new: str, iids: set) -> KernelModel:
    schedule = tuple((iid, tuple(SchedDim(d.expr, new) if iid in iids and d.loop == name else d for d in dims))
                     for iid, dims in model.schedule or model.original_schedule())
    return replace(model, schedule=schedule)


def _innermost(model: KernelModel) -> list[str]:
    """Names of loops that are the innermost loop of every instruction they enclose."""
    last: dict[str, bool] = {}
    for _, dims in model.schedule or model.original_schedule():
        loops = [d.loop for d in dims if d.loop]
        for k, name in enumerate(loops):
            last[name] = last.get(name, True) and k == len(loops) - 1
    return [n for n, ok in last.items() if ok]
