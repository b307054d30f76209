"""The expression language shared by every layer: immutable trees that print as Python.

The frontend builds them from Python's ast, typing annotates them, isl's AST builder's expressions are
converted into them, and the emitters turn them into C.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Loc


@dataclass(frozen=True)
class Expr:
    pass


@dataclass(frozen=True)
class Const(Expr):
    value: int | float | bool
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Var(Expr):
    name: str
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Shape(Expr):
    """`A.shape[dim]`; also what `len(A)` and `n, m = A.shape` become."""

    array: str
    dim: int
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.array}.shape[{self.dim}]"


@dataclass(frozen=True)
class Slice(Expr):
    """`start:stop:step` inside a subscript; None parts take numpy's defaults."""

    start: Expr | None
    stop: Expr | None
    step: int
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        s = f"{self.start or ''}:{self.stop or ''}"
        return s if self.step == 1 else f"{s}:{self.step}"


@dataclass(frozen=True)
class Index(Expr):
    array: str
    indices: tuple[Expr, ...]
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.array}[{', '.join(map(str, self.indices))}]"


BINARY_SYMBOLS = {
    "add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
}
COMPARE_SYMBOLS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


@dataclass(frozen=True)
class BinOp(Expr):
    op: str  # a key of BINARY_SYMBOLS
    left: Expr
    right: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"({self.left} {BINARY_SYMBOLS[self.op]} {self.right})"


@dataclass(frozen=True)
class UnOp(Expr):
    op: str  # "neg" | "not"
    operand: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"(-{self.operand})" if self.op == "neg" else f"(not {self.operand})"


@dataclass(frozen=True)
class Compare(Expr):
    op: str  # a key of COMPARE_SYMBOLS
    left: Expr
    right: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"({self.left} {COMPARE_SYMBOLS[self.op]} {self.right})"


@dataclass(frozen=True)
class BoolOp(Expr):
    op: str  # "and" | "or"; short-circuit, like Python
    left: Expr
    right: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True)
class Call(Expr):
    """A resolved function: builtins "min" "max" "abs" "int" "float" "bool", "math.sqrt", "np.exp", ..."""

    func: str
    args: tuple[Expr, ...]
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.func}({', '.join(map(str, self.args))})"


@dataclass(frozen=True)
class Select(Expr):
    """`then if cond else other`: only the chosen side is evaluated."""

    cond: Expr
    then: Expr
    other: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"({self.then} if {self.cond} else {self.other})"


@dataclass(frozen=True)
class Cast(Expr):
    """A conversion to `dtype` inserted by typing (never written by users)."""

    dtype: str
    operand: Expr
    loc: Loc | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.dtype}({self.operand})"


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Index):
        return e.indices
    if isinstance(e, Slice):
        return tuple(x for x in (e.start, e.stop) if x is not None)
    if isinstance(e, (BinOp, Compare, BoolOp)):
        return (e.left, e.right)
    if isinstance(e, (UnOp, Cast)):
        return (e.operand,)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Select):
        return (e.cond, e.then, e.other)
    return ()


def walk(e: Expr):
    """Every node of `e`, parents before children."""
    yield e
    for c in children(e):
        yield from walk(c)


def substitute(e: Expr, mapping) -> Expr:
    """`e` with every node for which `mapping(node)` is not None replaced by that value (top-down)."""
    new = mapping(e)
    if new is not None:
        return new
    if isinstance(e, Index):
        return Index(e.array, tuple(substitute(i, mapping) for i in e.indices), e.loc)
    if isinstance(e, Slice):
        return Slice(*(None if x is None else substitute(x, mapping) for x in (e.start, e.stop)), e.step, e.loc)
    if isinstance(e, (BinOp, Compare, BoolOp)):
        return type(e)(e.op, substitute(e.left, mapping), substitute(e.right, mapping), e.loc)
    if isinstance(e, UnOp):
        return UnOp(e.op, substitute(e.operand, mapping), e.loc)
    if isinstance(e, Cast):
        return Cast(e.dtype, substitute(e.operand, mapping), e.loc)
    if isinstance(e, Call):
        return Call(e.func, tuple(substitute(a, mapping) for a in e.args), e.loc)
    if isinstance(e, Select):
        return Select(*(substitute(x, mapping) for x in (e.cond, e.then, e.other)), e.loc)
    return e
