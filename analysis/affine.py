"""Affine expressions: our Expr trees to isl's textual syntax, when they are affine."""

from __future__ import annotations

from . import expr as E


def param_name(e: E.Shape) -> str:
    return f"{e.array}_shape{e.dim}"


def to_isl(e: E.Expr, names: set[str]) -> str | None:
    """`e` as an isl quasi-affine expression over `names` (loop variables and parameters), or None."""
    if isinstance(e, E.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return str(e.value)
    if isinstance(e, E.Var):
        return e.name if e.name in names else None
    if isinstance(e, E.Shape):
        return param_name(e)
    if isinstance(e, E.Cast):
        return to_isl(e.operand, names) if e.dtype in ("int64", "int32") else None
    if isinstance(e, E.UnOp) and e.op == "neg":
        a = to_isl(e.operand, names)
        return None if a is None else f"-({a})"
    if isinstance(e, E.BinOp):
        a, b = to_isl(e.left, names), to_isl(e.right, names)
        if a is None or b is None:
            return None
        if e.op in ("add", "sub"):
            return f"({a}) {'+' if e.op == 'add' else '-'} ({b})"
        ca, cb = _const(e.left), _const(e.right)
        if e.op == "mul" and ca is not None:
            return f"{ca} * ({b})"
        if e.op == "mul" and cb is not None:
            return f"{cb} * ({a})"
        if e.op == "floordiv" and cb is not None and cb > 0:
            return f"floor(({a}) / {cb})"
        if e.op == "mod" and cb is not None and cb > 0:
            return f"(({a}) mod {cb})"
    return None


def _const(e: E.Expr) -> int | None:
    while isinstance(e, E.Cast):
        e = e.operand
    if isinstance(e, E.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    if isinstance(e, E.UnOp) and e.op == "neg":
        c = _const(e.operand)
        return None if c is None else -c
    return None


_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "="}


def condition_to_isl(e: E.Expr, names: set[str]) -> str | None:
    """A boolean expression as an isl constraint string, when it is a combination of affine comparisons."""
    if isinstance(e, E.Compare):
        a, b = to_isl(e.left, names), to_isl(e.right, names)
        if a is None or b is None:
            return None
        if e.op == "ne":
            return f"(({a}) < ({b}) or ({a}) > ({b}))"
        return f"(({a}) {_CMP[e.op]} ({b}))"
    if isinstance(e, E.BoolOp):
        a, b = condition_to_isl(e.left, names), condition_to_isl(e.right, names)
        return None if a is None or b is None else f"({a} {e.op} {b})"
    if isinstance(e, E.UnOp) and e.op == "not":
        a = condition_to_isl(e.operand, names)
        return None if a is None else f"(not {a})"
    if isinstance(e, E.Const) and isinstance(e.value, bool):
        return "(0 = 0)" if e.value else "(1 = 0)"
    return None
