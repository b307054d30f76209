"""Full tiles of a loop's body, for versioning at run time (split tails kept as guards by isl).

With `tail="guard"`, isl bounds the inner loops of a split by `min(f - 1, e)` and guards the unrolled
instances of a partial tile with `if`s. Where those bounds and conditions do not depend on a loop `K` nor
on the loops inside it, they are constant over K's iterations: `full_tiles(K)` gives the condition under
which every one of them allows the whole tile, and the loop K with constant inner bounds and without the
guards. Emitters run that version when the condition holds (one test per execution of K) and K as written
otherwise, so register blocking (blocking.py) applies to the full tiles without isl separating them
(separating costs isl seconds for gemm's split of three loops).

Identity: where the condition holds, every replaced bound `min(c, e)` equals c and every dropped `if` is
true, so both versions run the same instances in the same order.
"""

from __future__ import annotations

from dataclasses import replace

from ..analysis import expr as E
from .looptree import For, If, Run


def var_names(e: E.Expr) -> set[str]:
    """The names of the variables `e` reads."""
    return {v.name for v in E.walk(e) if isinstance(v, E.Var)}


def constant_bound(n: For):
    """(c, e) for a loop `var < min(c, e)` or `var <= min(c, e)` with a constant c, else None."""
    c = n.cond
    if isinstance(c, E.Compare) and c.op in ("lt", "le") and isinstance(c.right, E.Call) \
            and c.right.func == "min" and len(c.right.args) == 2:
        a, b = c.right.args
        if isinstance(a, E.Const) and isinstance(a.value, int):
            return a, b
        if isinstance(b, E.Const) and isinstance(b.value, int):
            return b, a
    return None


def full_tiles(k: For) -> tuple[E.Expr, For] | None:
    """(condition, K for full tiles), or None where K's body has no partial-tile bounds or guards that the
    loops from K inward leave constant."""
    inner = {k.var} | {x.var for x in _loops(k.body)}
    conds: dict[str, E.Expr] = {}

    def rewrite(nodes):
        out = []
        for n in nodes:
            if isinstance(n, For):
                bound = constant_bound(n)
                if bound is not None and not (var_names(bound[1]) & inner):
                    conds.setdefault(f"{bound[1]} >= {bound[0]}", E.Compare("ge", bound[1], bound[0]))
                    n = replace(n, cond=E.Compare(n.cond.op, n.cond.left, bound[0]))
                out.append(replace(n, body=tuple(rewrite(n.body))))
            elif isinstance(n, If) and not (var_names(n.cond) & inner):
                conds.setdefault(str(n.cond), n.cond)
                out += rewrite(n.then)
            elif isinstance(n, If):
                out.append(replace(n, then=tuple(rewrite(n.then)), orelse=tuple(rewrite(n.orelse))))
            else:
                out.append(n)
        return out

    body = tuple(rewrite(k.body))
    if not conds:
        return None
    cond = None
    for c in conds.values():
        cond = c if cond is None else E.BoolOp("and", cond, c)
    return cond, replace(k, body=body)


def _loops(nodes):
    for n in nodes:
        if isinstance(n, For):
            yield n
            yield from _loops(n.body)
        elif isinstance(n, If):
            yield from _loops(n.then)
            yield from _loops(n.orelse)
        elif not isinstance(n, Run):
            raise TypeError(n)
