"""The program tree: a Python kernel after parsing and name resolution, before the polyhedral model.

Statements are immutable; loops keep their source variable names and whether `prange` asked for threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Loc
from .expr import Expr


@dataclass(frozen=True)
class Stmt:
    pass


@dataclass(frozen=True)
class Loop(Stmt):
    var: str
    start: Expr
    stop: Expr
    step: int
    body: tuple[Stmt, ...]
    parallel: bool = False
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Assign(Stmt):
    target: Expr  # Var or Index (an Index may hold Slices)
    value: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class If(Stmt):
    cond: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...]
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr | None
    loc: Loc | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Program:
    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]
    filename: str
    source: str  # the function's dedented source, part of the cache key
    constants: tuple[tuple[str, object], ...]  # globals/closure numbers read, with their values

    def __str__(self) -> str:
        return format_program(self)


def format_program(p: Program) -> str:
    lines = [f"def {p.name}({', '.join(p.params)}):"]

    def emit(stmts, depth):
        pad = "    " * depth
        for s in stmts:
            if isinstance(s, Loop):
                rng = "prange" if s.parallel else "range"
                lines.append(f"{pad}for {s.var} in {rng}({s.start}, {s.stop}, {s.step}):")
                emit(s.body, depth + 1)
            elif isinstance(s, Assign):
                lines.append(f"{pad}{s.target} = {s.value}")
            elif isinstance(s, If):
                lines.append(f"{pad}if {s.cond}:")
                emit(s.body or (), depth + 1)
                if s.orelse:
                    lines.append(f"{pad}else:")
                    emit(s.orelse, depth + 1)
            elif isinstance(s, Return):
                lines.append(f"{pad}return {s.value}")

    emit(p.body, 1)
    return "\n".join(lines)
