"""Python source -> program tree: one `visit_X` per supported construct; everything else is rejected by name."""

from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import textwrap
import types

from . import expr as E
from .errors import Loc, UnsupportedError
from .functions import CONSTANTS, canonical_name
from .program import Assign, If, Loop, Program, Return

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv", ast.FloorDiv: "floordiv",
           ast.Mod: "mod", ast.Pow: "pow"}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}

_HINTS = {
    "While": "use a `for v in range(...)` loop with affine bounds",
    "Break": "fold the exit condition into the loop bounds or an `if`",
    "Continue": "wrap the rest of the loop body in an `if`",
    "List": "use a numpy array argument",
    "Dict": "use numpy arrays or scalar arguments",
    "Set": "use numpy arrays",
    "ListComp": "write an explicit loop over an output array",
    "GeneratorExp": "write an explicit loop",
    "Lambda": "inline the expression",
    "Try": "check the condition with `if` instead",
    "Raise": "return a status value instead",
    "With": "remove the `with` block",
    "FunctionDef": "define helper code at module level and inline it",
    "Yield": "write results into an output array",
    "Attribute": "only `A.shape` is supported on arrays; resolve other values outside the kernel",
    "Global": "pass the value as an argument",
    "Starred": "pass the values explicitly",
}


def source_of(fn) -> tuple[str, str, int, int]:
    """(dedented source, filename, first line number, removed indent) of `fn`; works for IPython cells."""
    filename = inspect.getsourcefile(fn) or inspect.getfile(fn)
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise UnsupportedError(f"cannot read the source of {fn.__qualname__}: {e}",
                               hint="define the kernel in a file or notebook cell, not with exec()") from e
    linecache.checkcache(filename)
    raw = "".join(lines)
    dedented = textwrap.dedent(raw)
    indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
    return dedented, filename, first, indent


def parse(fn) -> Program:
    """Parse `fn`'s source into a Program, resolving globals, closure constants and functions."""
    source, filename, first, indent = source_of(fn)
    tree = ast.parse(source)
    fdef = tree.body[0]
    if isinstance(fdef, ast.ClassDef) or not isinstance(fdef, ast.FunctionDef):
        raise UnsupportedError(f"{fn.__qualname__} is not a plain function")
    return _Frontend(fn, source, filename, first - 1, indent).visit_FunctionDef(fdef)


class _Frontend:
    def __init__(self, fn, source: str, filename: str, line_offset: int, indent: int):
        self.fn = fn
        self.source = source
        self.filename = filename
        self.line_offset = line_offset
        self.indent = indent
        self.lines = source.splitlines()
        self.namespace = dict(fn.__globals__)
        if fn.__closure__:
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
                try:
                    self.namespace[name] = cell.cell_contents
                except ValueError:  # an empty cell: the name is assigned later in the outer scope
                    pass
        self.params: tuple[str, ...] = ()
        self.locals: set[str] = set()
        self.constants: dict[str, object] = {}

    # -- helpers ----------------------------------------------------------------------------------------
    def loc(self, node) -> Loc:
        line = getattr(node, "lineno", 1)
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        end_col = node.end_col_offset if getattr(node, "end_lineno", line) == line else len(text)
        return Loc(self.filename, line + self.line_offset, node.col_offset + self.indent,
                   None if end_col is None else end_col + self.indent, " " * self.indent + text)

    def reject(self, node, what: str | None = None, hint: str | None = None):
        kind = type(node).__name__
        raise UnsupportedError(what or f"`{kind}` is not supported in a polyjit kernel", self.loc(node),
                               hint or _HINTS.get(kind, "rewrite it with loops over numpy arrays"))

    def resolve(self, node):
        """The Python object a Name or dotted Attribute refers to outside the kernel, or a sentinel."""
        if isinstance(node, ast.Name):
            if node.id in self.params or node.id in self.locals:
                return _LOCAL
            if node.id in self.namespace:
                return self.namespace[node.id]
            if hasattr(builtins, node.id):
                return getattr(builtins, node.id)
            raise UnsupportedError(f"name `{node.id}` is not defined", self.loc(node),
                                   "pass it as an argument or define it at module level")
        if isinstance(node, ast.Attribute):
            base = self.resolve(node.value)
            if base is _LOCAL or not isinstance(base, types.ModuleType):
                return _LOCAL
            if not hasattr(base, node.attr):
                raise UnsupportedError(f"module `{base.__name__}` has no `{node.attr}`", self.loc(node))
            return getattr(base, node.attr)
        return _LOCAL

    # -- statements -------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> Program:
        a = node.args
        if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults:
            self.reject(node, "kernel arguments must be plain positional names (no *args, defaults, keywords)",
                        "list every argument explicitly")
        self.params = tuple(arg.arg for arg in a.args)
        self.locals = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # docstring
        stmts = self.block(body)
        for i, s in enumerate(stmts):
            if isinstance(s, Return) and i != len(stmts) - 1:
                raise UnsupportedError("code after `return` never runs", s.loc)
        return Program(node.name, self.params, stmts, self.filename, self.source,
                       tuple(sorted(self.constants.items(), key=lambda kv: kv[0])))

    def block(self, stmts) -> tuple:
        out = []
        for s in stmts:
            method = getattr(self, f"visit_{type(s).__name__}", None)
            if method is None or isinstance(s, ast.FunctionDef):
                self.reject(s)
            r = method(s)
            out.extend(r if isinstance(r, list) else [r] if r is not None else [])
        return tuple(out)

    def visit_Pass(self, node):
        return None

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):
            return None  # a bare string or number does nothing
        self.reject(node, "an expression statement has no effect in a kernel (calls with side effects are "
                          "not supported)", "assign the value to an array element or a local")

    def visit_For(self, node: ast.For):
        if node.orelse:
            self.reject(node, "`for ... else` is not supported", "move the `else` code after the loop")
        if not isinstance(node.target, ast.Name):
            self.reject(node.target, "the loop variable must be a single name",
                        "iterate with `for i in range(len(A))` and index A[i]")
        it = node.iter
        fname = canonical_name(self.resolve(it.func)) if isinstance(it, ast.Call) else None
        if fname not in ("range", "prange"):
            self.reject(it, "a kernel loop must iterate over `range(...)` or `polyjit.prange(...)`",
                        "write `for i in range(len(A))` and index A[i]")
        if it.keywords or not 1 <= len(it.args) <= 3:
            self.reject(it, "range takes 1 to 3 positional arguments")
        args = [self.expr(a) for a in it.args]
        start, stop = (E.Const(0), args[0]) if len(args) == 1 else (args[0], args[1])
        step = 1
        if len(args) == 3:
            step = _const_int(args[2])
            if step is None or step == 0:
                self.reject(it.args[2], "the range step must be a non-zero integer constant",
                            "use a constant step such as 2 or -1")
        var = node.target.id
        if var in self.params:
            self.reject(node.target, f"loop variable `{var}` shadows an argument", "rename the loop variable")
        return Loop(var, start, stop, step, self.block(node.body), fname == "prange", self.loc(node))

    def visit_While(self, node):
        self.reject(node)

    def visit_If(self, node: ast.If):
        return If(self.expr(node.test), self.block(node.body), self.block(node.orelse), self.loc(node))

    def visit_Return(self, node: ast.Return):
        if isinstance(node.value, ast.Tuple):
            self.reject(node.value, "only a single scalar can be returned", "write extra results into arrays")
        return Return(None if node.value is None else self.expr(node.value), self.loc(node))

    def visit_Assign(self, node: ast.Assign):
        if len(node.targets) != 1:
            self.reject(node, "chained assignment `a = b = ...` is not supported", "assign each name separately")
        target = node.targets[0]
        if isinstance(target, ast.Tuple):
            return self.unpack(target, node.value)
        return Assign(self.target(target), self.expr(node.value), self.loc(node))

    def unpack(self, target: ast.Tuple, value):
        names = [t.id if isinstance(t, ast.Name) else self.reject(t, "unpack only into plain names")
                 for t in target.elts]
        if isinstance(value, ast.Attribute) and value.attr == "shape" and isinstance(value.value, ast.Name):
            return [Assign(E.Var(n, self.loc(t)), E.Shape(value.value.id, d, self.loc(value)), self.loc(t))
                    for d, (n, t) in enumerate(zip(names, target.elts))]
        if isinstance(value, ast.Tuple) and len(value.elts) == len(names):
            values = [self.expr(v) for v in value.elts]
            read = {v.name for x in values for v in E.walk(x) if isinstance(v, E.Var)}
            if read & set(names):
                self.reject(target, "swapping through tuple assignment is not supported",
                            "use a temporary variable")
            return [Assign(E.Var(n, self.loc(t)), v, self.loc(t)) for n, t, v in zip(names, target.elts, values)]
        self.reject(value, "tuple assignment needs `A.shape` or a tuple of the same length on the right")

    def visit_AugAssign(self, node: ast.AugAssign):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.reject(node, f"operator `{type(node.op).__name__}` is not supported")
        target = self.target(node.target)
        return Assign(target, E.BinOp(op, target, self.expr(node.value), self.loc(node)), self.loc(node))

    def target(self, node):
        if isinstance(node, ast.Name):
            if node.id in self.params:
                self.reject(node, f"assigning to argument `{node.id}` rebinds a name the caller never sees",
                            f"write into its elements, e.g. `{node.id}[i] = ...`, or use a new local name")
            return E.Var(node.id, self.loc(node))
        if isinstance(node, ast.Subscript):
            return self.expr(node)
        self.reject(node, "only names and array elements can be assigned to")

    # -- expressions ------------------------------------------------------------------------------------
    def expr(self, node) -> E.Expr:
        method = getattr(self, f"expr_{type(node).__name__}", None)
        if method is None:
            self.reject(node)
        return method(node)

    def expr_Constant(self, node):
        if isinstance(node.value, bool) or isinstance(node.value, (int, float)):
            return E.Const(node.value, self.loc(node))
        self.reject(node, f"constant {node.value!r} is not a number", "kernels compute with numbers only")

    def expr_Name(self, node):
        obj = self.resolve(node)
        if obj is _LOCAL:
            return E.Var(node.id, self.loc(node))
        return self.global_value(node, node.id, obj)

    def global_value(self, node, name, obj):
        if isinstance(obj, (bool, int, float)) or (hasattr(obj, "dtype") and getattr(obj, "ndim", 1) == 0
                                                   and obj.dtype.kind in "biuf"):
            value = obj.item() if hasattr(obj, "item") else obj
            self.constants[name] = value
            return E.Const(value, self.loc(node))
        self.reject(node, f"`{name}` refers to a {type(obj).__name__} outside the kernel; only numbers "
                          "can be read from globals or closures", "pass arrays and other values as arguments")

    def expr_Attribute(self, node):
        dotted = _dotted(node)
        key = dotted and (dotted.replace("numpy.", "np.", 1) if dotted.startswith("numpy.") else dotted)
        obj = self.resolve(node)
        if obj is not _LOCAL:
            for prefix, module in (("math.", "math"), ("np.", "numpy")):
                mod = self.resolve(node.value)
                if getattr(mod, "__name__", None) == module and f"{prefix}{node.attr}" in CONSTANTS:
                    return E.Const(CONSTANTS[f"{prefix}{node.attr}"], self.loc(node))
            return self.global_value(node, key or node.attr, obj)
        self.reject(node)

    def expr_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.reject(node, f"operator `{type(node.op).__name__}` is not supported",
                        "bitwise operators and @ are not in polyjit's subset")
        return E.BinOp(op, self.expr(node.left), self.expr(node.right), self.loc(node))

    def expr_UnaryOp(self, node):
        operand = self.expr(node.operand)
        if isinstance(node.op, ast.USub):
            if isinstance(operand, E.Const) and not isinstance(operand.value, bool):
                return E.Const(-operand.value, self.loc(node))
            return E.UnOp("neg", operand, self.loc(node))
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return E.UnOp("not", operand, self.loc(node))
        self.reject(node, "operator `~` is not supported")

    def expr_Compare(self, node):
        result, left = None, self.expr(node.left)
        for op, comp in zip(node.ops, node.comparators):
            name = _CMPOPS.get(type(op))
            if name is None:
                self.reject(node, f"comparison `{type(op).__name__}` is not supported", "use < <= > >= == !=")
            right = self.expr(comp)
            c = E.Compare(name, left, right, self.loc(node))
            result = c if result is None else E.BoolOp("and", result, c, self.loc(node))
            left = right
        return result

    def expr_BoolOp(self, node):
        op = "and" if isinstance(node.op, ast.And) else "or"
        values = [self.expr(v) for v in node.values]
        result = values[0]
        for v in values[1:]:
            result = E.BoolOp(op, result, v, self.loc(node))
        return result

    def expr_IfExp(self, node):
        return E.Select(self.expr(node.test), self.expr(node.body), self.expr(node.orelse), self.loc(node))

    def expr_Call(self, node):
        if node.keywords:
            self.reject(node, "keyword arguments are not supported in kernel calls", "pass them positionally")
        name = canonical_name(self.resolve(node.func))
        if name is None:
            label = _dotted(node.func) or type(node.func).__name__
            self.reject(node, f"call to unsupported function `{label}`",
                        "use builtins min/max/abs/int/float, math.* or numpy elementwise functions")
        if name == "len":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                self.reject(node, "`len` takes one array argument")
            return E.Shape(node.args[0].id, 0, self.loc(node))
        if name in ("range", "prange"):
            self.reject(node, "`range` can only be iterated by a `for` loop")
        return E.Call(name, tuple(self.expr(a) for a in node.args), self.loc(node))

    def expr_Subscript(self, node):
        if isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
            arr = node.value.value
            dim = _const_int(self.expr(node.slice))
            if not isinstance(arr, ast.Name) or dim is None:
                self.reject(node, "use `A.shape[d]` with an argument name and a constant d")
            return E.Shape(arr.id, dim, self.loc(node))
        base = node.value
        indices = self.subscript(node.slice)
        if isinstance(base, ast.Subscript):  # A[i][j] is A[i, j]
            inner = self.expr(base)
            if not isinstance(inner, E.Index):
                self.reject(node)
            return E.Index(inner.array, inner.indices + indices, self.loc(node))
        if not isinstance(base, ast.Name):
            self.expr(base)  # rejects lists, calls, ... by name
        if not isinstance(base, ast.Name) or self.resolve(base) is not _LOCAL:
            self.reject(node, "only array arguments can be subscripted", "pass the array as an argument")
        return E.Index(base.id, indices, self.loc(node))

    def subscript(self, node) -> tuple:
        if isinstance(node, ast.Tuple):
            return tuple(self.index(e) for e in node.elts)
        return (self.index(node),)

    def index(self, node):
        if isinstance(node, ast.Slice):
            step = 1
            if node.step is not None:
                step = _const_int(self.expr(node.step))
                if not step:
                    self.reject(node.step, "a slice step must be a non-zero integer constant")
            return E.Slice(None if node.lower is None else self.expr(node.lower),
                           None if node.upper is None else self.expr(node.upper), step, self.loc(node))
        if isinstance(node, ast.Constant) and node.value is Ellipsis:
            self.reject(node, "`...` is not supported in subscripts", "write `:` for each dimension")
        return self.expr(node)

    def expr_Tuple(self, node):
        self.reject(node, "tuples are only supported in subscripts and `n, m = A.shape`")


class _Local:
    pass


_LOCAL = _Local()


def _const_int(e) -> int | None:
    if isinstance(e, E.Const) and isinstance(e.value, int) and not isinstance(e.value, bool):
        return e.value
    return None


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return base and f"{base}.{node.attr}"
    return None
