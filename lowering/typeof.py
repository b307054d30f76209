"""The dtype of a typed expression, read off the tree (typing made every operation's type explicit)."""

from __future__ import annotations

from ..analysis import expr as E


def type_of(e: E.Expr, types: dict[str, str]) -> str:
    """`types` maps argument, temporary and local names to dtypes; anything else (iterators) is int64."""
    if isinstance(e, E.Cast):
        return e.dtype
    if isinstance(e, E.Var):
        return types.get(e.name, "int64")
    if isinstance(e, E.Index):
        return types[e.array]
    if isinstance(e, E.Const):
        return "float64" if isinstance(e.value, float) else "bool" if isinstance(e.value, bool) else "int64"
    if isinstance(e, (E.Compare, E.BoolOp)) or (isinstance(e, E.UnOp) and e.op == "not"):
        return "bool"
    if isinstance(e, E.BinOp):
        return type_of(e.left, types)
    if isinstance(e, E.UnOp):
        return type_of(e.operand, types)
    if isinstance(e, E.Select):
        return type_of(e.then, types)
    if isinstance(e, E.Call) and e.args:
        return type_of(e.args[0], types) if e.func != "_check" else "int64"
    return "int64"
