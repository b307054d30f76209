"""Register tiles for OpenCL work-group kernels: scalar replacement of the elements a work-item updates.

In a nest mapped to work-groups (workgroups.py), each work-item runs the serial loops between the group
and item loops (gemm's `k_outer`) and the loops of its body (`k_inner`, unrolled register loops). Where
every access to a written array names an element that does not move with those loops (`C[i, j]`, with the
register loops unrolled: `C[i + 16, j]`, ...), the work-item loads each element into a private variable
before the serial loops, updates it there and stores it after them: the GPU's registers hold the tile,
and the loops touch only the inputs (from __local memory when prefetched). The analogue of blocking.py.

Identity: per element the same operations in the same order as the loop tree (the private variable has the
array's type, so every rounding is the same; results are bit-identical). Conditions, each checked here:
- every access to the array inside the nest is affine and needs no run-time bounds check, and its indices
  (with the instance's bindings substituted) use only the group and item iterators, parameters (shapes)
  and scalar arguments;
- the loops between and inside the body have bounds that use none of the group or item iterators (every
  work-item runs the same iterations), and the conditions guarding an element's updates use only what its
  indices may use: an element is loaded and stored exactly where the work-item updates it (loading and
  storing an element nobody updates leaves it as it was);
- distinct elements are distinct in memory: the elements of one array share their index expressions up to
  constant offsets, and the kernel checks, from the call's strides, that the offsets cannot meet
  (`separated`); where they can, the work-item runs the nest unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import expr as E
from .blocking import _split_const
from .full_tiles import var_names
from .looptree import For, If, Run


@dataclass(frozen=True)
class Element:
    register: str  # the private variable's name
    index: E.Index  # over the AST iterators
    guard: E.Expr | None  # where the work-item updates it (besides its item guard)


@dataclass(frozen=True)
class RegisterTile:
    array: str
    elements: tuple[Element, ...]
    offsets: tuple[tuple[int, ...], ...]  # per element, the constant offset of each index
    keys: dict  # (id of the Run, str of the source Index) -> register name

    def separated(self, ndim: int, stride) -> str:
        """An OpenCL condition: elements with distinct offsets lie at distinct addresses (`stride(d)` is the
        C expression of dimension d's stride). Sufficient: in one of the two nesting orders of the
        dimensions, each varying dimension's |stride| exceeds what the later ones span together."""
        spans = [max(o[d] for o in self.offsets) - min(o[d] for o in self.offsets) for d in range(ndim)]
        varying = [d for d in range(ndim) if spans[d]]
        if not varying:
            return "1"
        conds = []
        for order in (varying, varying[::-1]):
            parts, inner = [], []
            for d in reversed(order):  # innermost first
                size = " + ".join(f"{spans[x]}L * (long)abs({stride(x)})" for x in inner) or "0L"
                parts.append(f"(long)abs({stride(d)}) > {size}")
                inner.append(d)
            conds.append("(" + " && ".join(parts) + ")")
        return "(" + " || ".join(conds) + ")"


def plan_tiles(model, nest) -> tuple[RegisterTile, ...]:
    """The register tiles of a work-group nest: one per written array that qualifies (module docstring)."""
    outside = {a.group.var for a in nest.axes} | {f.var for f in nest.items}
    allowed = _allowed(model, nest)
    for f in nest.between:
        if var_names(f.init) & outside or var_names(f.cond) & outside:
            return ()
    written = set(model.written_arrays())
    seen: dict[str, list] = {}  # array -> [(run, source Index, bound Index, guard)]
    spoiled: set[str] = set()

    def visit(nodes, guard):
        for n in nodes:
            if isinstance(n, For):
                if var_names(n.init) & outside or var_names(n.cond) & outside:
                    spoiled.update(written)
                visit(n.body, guard)
            elif isinstance(n, If):
                for branch, cond in ((n.then, n.cond), (n.orelse, E.UnOp("not", n.cond))):
                    ok = guard is not False and not (var_names(cond) - allowed)
                    visit(branch, (cond if guard is None else E.BoolOp("and", guard, cond)) if ok else False)
            elif isinstance(n, Run):
                ins = model.instruction(n.instruction)
                binds = dict(n.bindings)
                for acc in ins.accesses:
                    if acc.array in written and (not acc.affine or acc.checked):
                        spoiled.add(acc.array)
                for x in [ins.assignee, ins.expression]:
                    for node in E.walk(x):
                        if isinstance(node, E.Index) and node.array in written:
                            bound = E.substitute(node, lambda v, b=binds: b.get(v.name) if isinstance(v, E.Var)
                                                 else None)
                            if guard is False or set().union(*map(var_names, bound.indices)) - allowed:
                                spoiled.add(node.array)
                            seen.setdefault(node.array, []).append((n, node, bound, guard))

    visit(nest.body, None)
    tiles, count = [], 0
    for array in sorted(set(seen) - spoiled):
        elements, offsets, keys, by_text, cores = [], [], {}, {}, None
        ok = True
        for run, node, bound, guard in seen[array]:
            text = str(bound)
            if text in by_text:
                element = by_text[text]
                if str(element.guard) != str(guard):
                    ok = False
                    break
            else:
                parts = [_split_const(i) for i in bound.indices]
                core = tuple(str(c) for c, _ in parts)
                if cores is not None and core != cores:
                    ok = False
                    break
                cores = core
                element = Element(f"pj_r{count}", bound, guard)
                count += 1
                by_text[text] = element
                elements.append(element)
                offsets.append(tuple(o for _, o in parts))
            keys[(id(run), str(node))] = element.register
        if ok and elements:
            tiles.append(RegisterTile(array, tuple(elements), tuple(offsets), keys))
    return tuple(tiles)


def invariant_conditions(nest, model) -> tuple[E.Expr, ...]:
    """The conditions of the body's `if`s that use only group and item iterators, parameters and scalar
    arguments (partial register tiles, as isl guards unrolled loops): constant for a work-item, so it may
    test them all once and run a body without them (distinct by text, in order of appearance)."""
    allowed = _allowed(model, nest)
    found: dict[str, E.Expr] = {}

    def visit(nodes):
        for n in nodes:
            if isinstance(n, For):
                visit(n.body)
            elif isinstance(n, If):
                if not (var_names(n.cond) - allowed):
                    found.setdefault(str(n.cond), n.cond)
                visit(n.then)
                visit(n.orelse)

    visit(nest.body)
    return tuple(found.values())


def _allowed(model, nest) -> set[str]:
    outside = {a.group.var for a in nest.axes} | {f.var for f in nest.items}
    return outside | {a.name for a in model.arguments if a.kind == "scalar"} | {p.name for p in model.params}
