"""Python code run on the host before a kernel: parameter checks and NDRange sizes, generated from isl."""

from __future__ import annotations

import islpy as isl

from ..analysis import expr as E
from ..analysis.model import KernelModel
from .looptree import convert_expr

_PY = {"add": "+", "sub": "-", "mul": "*", "floordiv": "//", "mod": "%", "truediv": "/"}
_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def python_expr(e: E.Expr) -> str:
    """Integer expression `e` as Python source (isl's floor division and remainders match Python's)."""
    if isinstance(e, E.Const):
        return repr(e.value)
    if isinstance(e, E.Var):
        return e.name
    if isinstance(e, E.BinOp):
        return f"({python_expr(e.left)} {_PY[e.op]} {python_expr(e.right)})"
    if isinstance(e, E.UnOp):
        return f"(-{python_expr(e.operand)})" if e.op == "neg" else f"(not {python_expr(e.operand)})"
    if isinstance(e, E.Compare):
        return f"({python_expr(e.left)} {_CMP[e.op]} {python_expr(e.right)})"
    if isinstance(e, E.BoolOp):
        return f"({python_expr(e.left)} {e.op} {python_expr(e.right)})"
    if isinstance(e, E.Call) and e.func in ("min", "max"):
        return f"{e.func}({', '.join(python_expr(a) for a in e.args)})"
    if isinstance(e, E.Select):
        return f"({python_expr(e.then)} if {python_expr(e.cond)} else {python_expr(e.other)})"
    raise NotImplementedError(type(e).__name__)


def check_function_source(model: KernelModel) -> str:
    """`def pj_checks(params...)` returning the index of the first violated check, or -1."""
    names = [p.name for p in model.params]
    build = isl.AstBuild.from_context(model.context)
    lines = [f"def pj_checks({', '.join(names)}):"]
    for k, chk in enumerate(model.checks):
        violation = chk.violation.intersect_params(model.context).coalesce()
        if violation.is_empty():
            continue
        violation = violation.align_params(model.context.get_space())
        cond = python_expr(convert_expr(build.expr_from_set(violation)))
        lines.append(f"    if {cond}:")
        lines.append(f"        return {k}")
    lines.append("    return -1")
    return "\n".join(lines)


def trip_count_source(init: E.Expr, cond: E.Compare, step: int) -> str:
    """Python source counting the iterations of `for (v = init; v < / <= bound; v += step)`."""
    lo, hi = python_expr(init), python_expr(cond.right)
    if cond.op == "le":
        hi = f"({hi} + 1)"
    return f"max(0, -(-({hi} - {lo}) // {step}))"
