"""numpy slice and whole-array statements as implicit loops, with numpy's semantics.

numpy reads the whole right side before writing: a forward loop is right iff no instance reads what an
earlier instance wrote (no self flow dependence); else a reversed loop iff no self anti dependence; else the
right side goes through a temporary array first.
"""

from __future__ import annotations

import islpy as isl

from . import expr as E
from .affine import param_name, to_isl
from .errors import TypingError, UnsupportedError
from .model import LoopInfo, ParamCheck, Temporary
from .program import Assign
from .types import INT, ArrayType


def has_slices(s: Assign, signature: dict) -> bool:
    def sliced(e):
        for x in E.walk(e):
            if isinstance(x, E.Slice):
                return True
            if isinstance(x, E.Var) and isinstance(signature.get(x.name), ArrayType):
                return True
            if isinstance(x, E.Index) and isinstance(signature.get(x.array), ArrayType) \
                    and len(x.indices) < signature[x.array].ndim:
                return True
        return False

    return sliced(s.target) or sliced(s.value)


class _Dim:
    """One sliced dimension of an operand: position = start + step * t, within [0, size)."""

    def __init__(self, sl: E.Slice, array: str, dim: int, names: set[str]):
        size = E.Shape(array, dim)
        self.size = param_name(size)
        self.step = sl.step

        def norm(x):
            if x is None:
                return None
            if isinstance(x, E.Const) and isinstance(x.value, int) and x.value < 0:
                return E.BinOp("add", size, x)
            return x

        start, stop = norm(sl.start), norm(sl.stop)
        if start is None:
            start = E.Const(0) if sl.step > 0 else E.BinOp("sub", size, E.Const(1))
        self.start = start
        self.start_isl = to_isl(start, names)
        self.stop_isl = None if stop is None else to_isl(stop, names)
        if self.start_isl is None or (stop is not None and self.stop_isl is None):
            raise UnsupportedError(f"slice bounds `{sl}` must be affine in sizes, integer arguments and loop "
                                   "variables", sl.loc, "compute the bounds from A.shape or integer arguments")

    def position(self, t: str) -> E.Expr:
        scaled = E.Var(t) if self.step == 1 else E.BinOp("mul", E.Const(self.step), E.Var(t))
        if isinstance(self.start, E.Const) and self.start.value == 0:
            return scaled
        return E.BinOp("add", self.start, scaled)

    def constraint(self, t: str) -> str:
        pos = f"(({self.start_isl}) + {self.step} * {t})"
        c = f"{t} >= 0 and 0 <= {pos} < {self.size}"
        if self.stop_isl is not None:
            c += f" and {pos} {'<' if self.step > 0 else '>'} ({self.stop_isl})"
        if self.step < 0 and self.start_isl is not None:
            c += f" and {pos} <= ({self.start_isl})"
        return c


def _operand_dims(index: E.Index, ndim: int, names) -> tuple[list, list[_Dim]]:
    """The indices of an operand, with full slices appended, and its sliced dimensions."""
    indices = list(index.indices) + [E.Slice(None, None, 1, index.loc)] * (ndim - len(index.indices))
    dims = [_Dim(i, index.array, d, names) for d, i in enumerate(indices) if isinstance(i, E.Slice)]
    return indices, dims


def expand_slice_assignment(b, s: Assign, prefix, loops, cond, preds):
    """The emit() argument tuples that implement `s`; adds loops, checks and temporaries to builder `b`."""
    sig = b.signature
    names = b.names(loops)
    target = s.target
    if not isinstance(target, E.Index):
        raise UnsupportedError("a whole-array value can only be stored into an array slice", s.loc,
                               "write `out[:] = ...`")
    ndim = sig[target.array].ndim
    t_indices, t_dims = _operand_dims(target, ndim, names)
    depth = len(loops)
    tvars = [f"_{target.array}{k}" if depth == 0 else f"_{target.array}{k}_{depth}" for k in range(len(t_dims))]
    t_constraints = [d.constraint(t) for d, t in zip(t_dims, tvars)]
    space = f"[{', '.join(b.param_names + [v for v, _ in loops])}]"

    def place(indices, dims, vars_):
        it = iter(zip(dims, vars_))
        out = []
        for i in indices:
            if isinstance(i, E.Slice):
                d, t = next(it)
                out.append(d.position(t))
            else:
                out.append(i)
        return tuple(out)

    reads = []  # (array, isl index strings or None)

    def rewrite(e):
        if isinstance(e, E.Var) and isinstance(sig.get(e.name), ArrayType):
            e = E.Index(e.name, (), e.loc)
        if isinstance(e, E.Index) and isinstance(sig.get(e.array), ArrayType):
            arr_ndim = sig[e.array].ndim
            if len(e.indices) > arr_ndim:
                raise TypingError(f"too many indices for `{e.array}`", e.loc)
            indices, dims = _operand_dims(E.Index(e.array, tuple(rewrite(i) for i in e.indices), e.loc),
                                          arr_ndim, names)
            if len(dims) > len(t_dims):
                raise UnsupportedError(f"`{e}` has more sliced dimensions than the assignment's target", e.loc,
                                       "match the target's dimensions")
            vars_ = tvars[len(tvars) - len(dims):]
            for d, t, tc in zip(dims, vars_, t_constraints[len(tvars) - len(dims):]):
                lhs = isl.Set(f"{space} -> {{ [{t}] : {tc} }}")
                rhs = isl.Set(f"{space} -> {{ [{t}] : {d.constraint(t)} }}")
                bad = lhs.subtract(rhs).union(rhs.subtract(lhs)).params()
                if loops:  # some iteration of the enclosing loops sees different extents
                    running = " and ".join(c for _, c in loops)
                    bad = bad.intersect(isl.Set(f"{space} -> {{ : {running} }}"))
                    bad = bad.project_out(isl.dim_type.param, len(b.param_names), len(loops))
                bad = bad.intersect_params(b.context)
                if not bad.is_empty():
                    b.checks.append(ParamCheck(bad.coalesce(), "ValueError",
                                               f"could not broadcast `{e}` to the shape of `{target}` at {e.loc}"))
            placed = place(indices, dims, vars_)
            reads.append((e.array, [to_isl(p, names | set(tvars)) for p in placed]))
            return E.Index(e.array, placed, e.loc)
        kids = E.children(e)
        if not kids:
            return e
        new = iter([rewrite(k) for k in kids])
        return E.substitute(e, lambda x: next(new) if any(x is k for k in kids) else None)

    value = rewrite(s.value)
    lhs = E.Index(target.array, place(t_indices, t_dims, tvars), target.loc)
    direction = _direction(b, space, lhs, reads, tvars, t_constraints, names, cond)
    all_loops = loops + list(zip(tvars, t_constraints))
    if direction != 0:
        key = prefix
        for t in tvars:
            key = key + (b.next_beta(key),)
            b.loops.append(LoopInfo(t, key, direction, None, s.loc.line if s.loc else 0))
        for t in tvars:
            b.typer.env[t] = INT
        target_t, tt = b.typer.annotate(lhs)
        v, vt = b.typer.annotate(value, store=tt.dtype)
        return [(target_t, b.typer.cast(v, vt, tt), key, all_loops, cond, preds, s.loc)]
    # through a temporary shaped like the target array's sliced dimensions
    tmp = f"_tmp{len([t for t in b.temporaries if t.startswith('_tmp')])}"
    dt = sig[target.array].dtype
    b.temporaries[tmp] = Temporary(tmp, dt, tuple(d.size for d in t_dims))
    sig_tmp = ArrayType(dt, len(tvars))
    b.signature[tmp] = sig_tmp
    b.typer.env[tmp] = sig_tmp
    for t in tvars:
        b.typer.env[t] = INT
    steps = []
    tmp_index = E.Index(tmp, tuple(E.Var(t) for t in tvars), target.loc)
    for assignee, rhs in ((tmp_index, value), (lhs, tmp_index)):
        key = prefix
        for t in tvars:
            key = key + (b.next_beta(key),)
            b.loops.append(LoopInfo(t, key, 1, None, s.loc.line if s.loc else 0))
        at, att = b.typer.annotate(assignee)
        v, vt = b.typer.annotate(rhs, store=att.dtype)
        steps.append((at, b.typer.cast(v, vt, att), key, all_loops, cond, preds, s.loc))
    return steps


def _direction(b, space, lhs, reads, tvars, constraints, names, cond) -> int:
    """+1 (forward), -1 (reversed) or 0 (needs a temporary) for numpy's read-everything-first semantics."""
    same = [idx for arr, idx in reads if arr == lhs.array]
    if not same:
        return 1
    if any(i is None or any(x is None for x in i) for i in same):
        return 0
    all_names = names | set(tvars)
    w_idx = [to_isl(p, all_names) for p in lhs.indices]
    if any(x is None for x in w_idx):
        return 0
    tv = ", ".join(tvars)
    dom = " and ".join(constraints) + (f" and {cond}" if cond else "")
    w = isl.Map(f"{space} -> {{ [{tv}] -> {lhs.array}[{', '.join(w_idx)}] : {dom} }}")
    r = None
    for idx in same:
        m = isl.Map(f"{space} -> {{ [{tv}] -> {lhs.array}[{', '.join(idx)}] : {dom} }}")
        r = m if r is None else r.union(m)
    dspace = w.domain().get_space()
    lt = isl.Map.lex_lt(dspace)
    flow = w.apply_range(r.reverse()).intersect(lt)
    if flow.is_empty():
        return 1
    anti = r.apply_range(w.reverse()).intersect(lt)
    return -1 if anti.is_empty() else 0
