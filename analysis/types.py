"""Types: argument signatures, NumPy 2 promotion (NEP 50: Python scalars are weak), inference of locals.

After `annotate`, every operation's operands carry explicit `Cast`s to the type the operation computes in,
and every operation is wrapped in a `Cast` to its result type, so emitters read types off the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import expr as E
from .errors import TypingError
from .functions import BINARY_FLOAT, ROUNDING, UNARY_FLOAT

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")


@dataclass(frozen=True)
class Ty:
    """A scalar type; `weak` marks Python int/float/bool values (NEP 50)."""

    dtype: str
    weak: bool = False

    @property
    def kind(self) -> str:
        return np.dtype(self.dtype).kind  # b i u f

    def __str__(self) -> str:
        return f"{self.dtype}{' (weak)' if self.weak else ''}"


@dataclass(frozen=True)
class ArrayType:
    dtype: str
    ndim: int
    layout: str = "C"  # "C" or "A" (any strides)

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(':' * self.ndim)}{'' if self.ndim else ''}], {self.layout}"


INT = Ty("int64", True)
FLOAT = Ty("float64", True)
BOOL = Ty("bool")


def dtype_name(dt) -> str:
    name = np.dtype(dt).name
    return "bool" if name == "bool" else name


def const_type(value) -> Ty:
    if isinstance(value, bool):
        return Ty("bool", True)
    if isinstance(value, int):
        return INT
    return FLOAT


def promote(a: Ty, b: Ty) -> Ty:
    """NumPy 2's result type for a binary operation on values of types a and b."""
    if a.weak and b.weak:
        if "f" in (a.kind, b.kind):
            return FLOAT
        if a.kind == "b" and b.kind == "b":
            return Ty("bool", True)
        return INT
    if a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if weak.kind == "b" or (weak.kind in "iu" and strong.kind in "iuf"):
            return Ty(strong.dtype)
        if weak.kind in "iu":  # strong bool
            return Ty("int64")
        return Ty(strong.dtype) if strong.kind == "f" else Ty("float64")
    return Ty(dtype_name(np.result_type(a.dtype, b.dtype)))


def float_type(t: Ty, loc=None) -> Ty:
    """The type numpy's float ufuncs (np.sqrt, ...) compute in for an argument of type t."""
    if t.kind == "f":
        return Ty(t.dtype)
    if t.weak or t.dtype in ("int32", "int64", "uint32", "uint64"):
        return Ty("float64")
    if t.dtype in ("int16", "uint16"):
        return Ty("float32")
    raise TypingError(f"numpy would compute this in float16, which polyjit does not support ({t.dtype} input)",
                      loc, "convert the argument first, e.g. np.float32(x) or float(x)")


def join(a: Ty | None, b: Ty, name: str, loc) -> Ty:
    """The type of a local that holds values of types a and b at different points."""
    if a is None or a == b:
        return b
    if (a.kind == "b") != (b.kind == "b"):
        raise TypingError(f"variable `{name}` would change type from {a.dtype} to {b.dtype}", loc,
                          "use a separate variable for each type, or convert explicitly with int()/float()")
    if not a.weak and not b.weak and a.dtype != b.dtype:
        # np.float32 in one place, np.float64 in another: Python computes in each type in turn
        raise TypingError(f"variable `{name}` holds {a.dtype} values in one place and {b.dtype} in another: its "
                          "precision would change at run time", loc,
                          f"make the types agree, e.g. np.{promote(a, b).dtype}(...) where it is first assigned")
    j = promote(a, b)
    return Ty(j.dtype, a.weak and b.weak)


def _one_type(types, what: str, loc) -> None:
    """Python's min/max and `a if c else b` return one operand *with its own type*: with two different numpy
    types the result's type would depend on the values, which no static type reproduces."""
    strong = {t.dtype for t in types if not t.weak}
    if len(strong) > 1:
        names = " and ".join(sorted(strong))
        raise TypingError(f"{what} of {names} values: Python returns one of them with its own type, so the "
                          "type of the result would depend on the values", loc,
                          "convert the operands to one type first, e.g. np.float64(a)")


def _arith_type(op: str, a: Ty, b: Ty) -> Ty:
    """The type Python/NumPy computes `a op b` in."""
    t = promote(a, b)
    if op == "truediv" and t.kind != "f":
        return Ty("float64", t.weak)
    return Ty("int64") if t.kind == "b" else t


def _uncast(e):
    while isinstance(e, E.Cast):
        e = e.operand
    return e


def _lossless(own: Ty, expr, t: Ty) -> bool:
    """Whether every value of an operand of type `own` (or the constant `expr`) survives conversion to t."""
    if own.dtype == t.dtype or np.can_cast(own.dtype, t.dtype, "safe"):
        return True
    expr = _uncast(expr)
    if not isinstance(expr, E.Const):
        return False
    value = expr.value
    if t.kind in "iu":
        info = np.iinfo(t.dtype)
        return float(value).is_integer() and info.min <= value <= info.max
    with np.errstate(all="ignore"):
        return float(np.array(value).astype(t.dtype)[()]) == value  # compared as Python floats


class Typer:
    """Infers types of locals and annotates expressions with casts.

    `env` maps names to Ty (scalars) or ArrayType (arrays); locals are added by `infer_locals`.

    Python's min/max, `a if c else b` and `a or b` return one operand *with its own type*. With operands of
    different types (x[i] a float32, 0.1 a Python float) the compiled code computes in the promoted type;
    that agrees with Python only where the result is used in a way that gives the same for each choice:
    stored into an array, or combined with a numpy value whose type decides the result. Such results wait
    in `ambiguous` until a use accepts them; any left when the statement's expression is typed are errors.
    """

    def __init__(self, env: dict):
        self.env = dict(env)
        self.ambiguous: dict = {}  # id(node) -> (node, loc, what, ((own type, operand), ...), type)
        # locals that hold a Python number before numpy values (`s = 0` then `s += x32[i]`): name ->
        # (((Python number's type, assigned value), ...), position of the last numpy assignment, or None
        # where every use can see either); a use up to that position is ambiguous like a min/max result
        self.mixed: dict = {}
        self.accepted: tuple = ()  # the operands a store accepted in the last annotate(..., store=)
        self.position = 0  # program-order place of the statement being typed (mixed locals' uses)
        self._depth = 0

    def type_of_name(self, v: E.Var) -> Ty:
        t = self.env.get(v.name)
        if t is None:
            raise TypingError(f"`{v.name}` is used before it is assigned", v.loc, "assign it a value first")
        if isinstance(t, ArrayType):
            raise TypingError(f"array `{v.name}` used as a scalar", v.loc,
                              f"index it, e.g. {v.name}[i], or use a slice statement like out[:] = ...")
        return t

    def annotate(self, e: E.Expr, *, store: str | None = None, hold: bool = False) -> tuple[E.Expr, Ty]:
        """The typed expression and its type; `store` is the dtype of the array element it is stored into,
        `hold` says the value is kept as it is (in a local, or returned)."""
        method = getattr(self, f"ann_{type(e).__name__}")
        self._depth += 1
        try:
            node, t = method(e)
        finally:
            self._depth -= 1
        if self._depth == 0:
            pending, self.ambiguous = self.ambiguous, {}
            self.accepted = ()
            if (store is not None or hold) and id(node) in pending:
                info = pending.pop(id(node))
                if store == info[4].dtype or all(_lossless(own, x, info[4]) for own, x in info[3]):
                    self.accepted = info[3]
                else:
                    pending[id(node)] = info
            if pending:
                _, loc, what, operands, t = next(iter(pending.values()))
                if what.startswith("variable"):
                    weak = next(o for o, _ in operands if o.weak)
                    kind = {"f": "float", "b": "bool"}.get(weak.kind, "int")
                    raise TypingError(f"{what} holds a Python {kind} before it holds {t.dtype} values, and how it "
                                      "is used here depends on that type", loc,
                                      f"start it as a numpy value, e.g. np.{t.dtype}(0), so it has one type")
                kinds = " and ".join(sorted({"a Python " + {"f": "float", "b": "bool"}.get(o.kind, "int")
                                             if o.weak else f"a {o.dtype} value" for o, _ in operands}))
                raise TypingError(f"{what} of {kinds}: Python returns the chosen operand with its own type, and "
                                  "how the result is used here depends on that type", loc,
                                  f"give the operands one type, e.g. np.{t.dtype}(...) around the Python "
                                  "number, or store the result directly into an array")
        return node, t

    def _ambiguous(self, node, loc, what: str, operands, t: Ty) -> None:
        flat = []
        for own, x in operands:  # min(max(x, 0.1), 0.75): the inner choice's types are the outer's too
            inner = self.ambiguous.pop(id(x), None) or self.ambiguous.pop(id(_uncast(x)), None)
            flat.extend(inner[3] if inner is not None else [(own, x)])
        operands = flat
        if any(own != t for own, _ in operands):
            self.ambiguous[id(node)] = (node, loc, what, tuple(operands), t)

    def _carry(self, node, other: Ty, result, t: Ty, how) -> None:
        """`node` combined with a Python number of type `other` into `result` (type t): if each operand type
        gives the same dtype (`how(own, other)`), the result is as ambiguous as `node` (weak or not), else
        `node` stays pending."""
        info = self.ambiguous.get(id(node))
        if info is None or not other.weak:
            return
        types = [how(own, other) for own, _ in info[3]]
        # integers: a Python int and a numpy one differ only where the Python one would not fit, which
        # Python reports (OverflowError) and compiled code wraps, as everywhere else
        if all(r.dtype == t.dtype or r.kind in "iu" and t.kind in "iu" for r in types):
            del self.ambiguous[id(node)]
            if result is not None:  # the derived value is no longer the operand: no constant to check
                self._ambiguous(result, info[1], info[2], [(r, result) for r in types], t)

    def _pass_on(self, node, result) -> None:
        """`result` has the type of `node` whichever operand type it holds (-x, abs(x))."""
        info = self.ambiguous.pop(id(node), None)
        if info is not None:
            # exact operations: a constant that converts without loss still does after them
            self._ambiguous(result, info[1], info[2], list(info[3]), info[4])

    def _use_converted(self, node) -> None:
        info = self.ambiguous.get(id(node))
        if info is not None and all(_lossless(own, x, info[4]) for own, x in info[3]):
            del self.ambiguous[id(node)]

    def _use(self, node, other: Ty) -> None:
        """`node` combined with a value of type `other`: fine if the result is the same for either operand."""
        info = self.ambiguous.get(id(node))
        if info is None or other.weak:
            return
        _, _, _, operands, t = info
        r = promote(t, other)
        if all(promote(own, other) == r and (r.dtype == t.dtype or _lossless(own, x, t)) for own, x in operands):
            del self.ambiguous[id(node)]

    def cast(self, e: E.Expr, have: Ty, want: Ty) -> E.Expr:
        return e if have.dtype == want.dtype else E.Cast(want.dtype, e, e.loc)

    def ann_Const(self, e):
        return e, const_type(e.value)

    def ann_Var(self, e):
        t = self.type_of_name(e)
        mixed = self.mixed.get(e.name)
        if mixed is not None and (mixed[1] is None or self.position <= mixed[1]):
            self._ambiguous(e, e.loc, f"variable `{e.name}`", list(mixed[0]) + [(t, e)], t)
        return e, t

    def ann_Shape(self, e):
        t = self.env.get(e.array)
        if not isinstance(t, ArrayType):
            raise TypingError(f"`{e.array}` is not an array argument", e.loc, "`.shape` applies to arrays")
        if not 0 <= e.dim < t.ndim:
            raise TypingError(f"`{e.array}` has {t.ndim} dimension(s); shape[{e.dim}] does not exist", e.loc)
        return e, INT

    def ann_Index(self, e):
        t = self.env.get(e.array)
        if not isinstance(t, ArrayType):
            raise TypingError(f"`{e.array}` is not an array argument", e.loc, "only array arguments can be indexed")
        if len(e.indices) > t.ndim:
            raise TypingError(f"too many indices for `{e.array}`: it has {t.ndim} dimension(s)", e.loc)
        indices = []
        for i in e.indices:
            if isinstance(i, E.Slice):
                parts = [None if p is None else self.int_index(p) for p in (i.start, i.stop)]
                indices.append(E.Slice(parts[0], parts[1], i.step, i.loc))
            else:
                indices.append(self.int_index(i))
        return E.Index(e.array, tuple(indices), e.loc), Ty(t.dtype)

    def int_index(self, e):
        a, t = self.annotate(e)
        self.ambiguous.pop(id(a), None)  # an index is the same number whichever integer type holds it
        if t.kind not in "iu":
            raise TypingError(f"an index must be an integer, not {t.dtype}", e.loc, "convert with int(...)")
        return self.cast(a, t, INT)

    def ann_BinOp(self, e):
        left, lt = self.annotate(e.left)
        right, rt = self.annotate(e.right)
        if lt.kind == "b" and rt.kind == "b" and e.op != "truediv":
            raise TypingError(f"arithmetic `{E.BINARY_SYMBOLS[e.op]}` on two booleans", e.loc,
                              "convert with int(...) first")
        self._use(left, rt)
        self._use(right, lt)
        t = _arith_type(e.op, lt, rt)
        node = E.Cast(t.dtype, E.BinOp(e.op, self.cast(left, lt, t), self.cast(right, rt, t), e.loc), e.loc)
        self._carry(left, rt, node, t, lambda own, other: _arith_type(e.op, own, other))
        self._carry(right, lt, node, t, lambda own, other: _arith_type(e.op, other, own))
        return node, t

    def ann_UnOp(self, e):
        operand, t = self.annotate(e.operand)
        if e.op == "not":
            self.ambiguous.pop(id(operand), None)  # the same truth whichever type the operand has
            return E.UnOp("not", self.truth(operand, t), e.loc), BOOL
        if t.kind == "b":
            raise TypingError("unary minus on a boolean", e.loc, "convert with int(...) first")
        node = E.Cast(t.dtype, E.UnOp("neg", operand, e.loc), e.loc)
        self._pass_on(operand, node)
        return node, t

    def truth(self, e, t: Ty):
        return e if t.kind == "b" else E.Compare("ne", e, E.Cast(t.dtype, E.Const(0)), e.loc)

    def ann_Compare(self, e):
        left, lt = self.annotate(e.left)
        right, rt = self.annotate(e.right)
        self._use(left, rt)
        self._use(right, lt)
        t = promote(lt, rt)
        for side, other in ((left, rt), (right, lt)):
            info = self.ambiguous.get(id(side))
            if info is not None and other.kind in "iu" and all(own.kind in "iu" for own, _ in info[3]):
                del self.ambiguous[id(side)]  # NumPy 2 compares integers by value, whatever their types
            self._carry(side, other, None, t, promote)  # compared in the same dtype: the same truth
        if lt.weak != rt.weak and "i" in (lt.kind, rt.kind) and t.kind in "iu" and t.dtype not in ("int64", "uint64"):
            # NumPy 2 compares a narrow integer with a Python int by value (np.uint8(0) > -1 is True): compare
            # in int64 unless the weak side is a constant that fits the narrow type
            weak = left if lt.weak else right
            info = np.iinfo(t.dtype)
            if not (isinstance(weak, E.Const) and info.min <= weak.value <= info.max):
                t = Ty("int64")
        cmp = E.Compare(e.op, self.cast(left, lt, t), self.cast(right, rt, t), e.loc)
        if t.dtype == "uint64" and lt.weak != rt.weak and "i" in (lt.kind, rt.kind):
            # uint64 against a Python int that may be negative: a negative one is below every uint64
            weak_left = lt.weak
            weak = left if weak_left else right
            if not (isinstance(weak, E.Const) and weak.value >= 0):
                below = {"lt": True, "le": True, "ne": True} if weak_left else {"gt": True, "ge": True, "ne": True}
                cmp = E.Select(E.Compare("lt", weak, E.Const(0), e.loc), E.Const(below.get(e.op, False), e.loc),
                               cmp, e.loc)
        return cmp, Ty("bool", lt.weak and rt.weak)

    def ann_BoolOp(self, e):
        left, lt = self.annotate(e.left)
        right, rt = self.annotate(e.right)
        if lt.kind == "b" and rt.kind == "b":
            return E.BoolOp(e.op, left, right, e.loc), Ty("bool", lt.weak and rt.weak)
        # Python's `a or b` yields one of the operands: a if truthy(a) else b
        t = promote(lt, rt)
        a, b = self.cast(left, lt, t), self.cast(right, rt, t)
        cond = self.truth(left, lt)
        sel = E.Select(cond, a, b, e.loc) if e.op == "or" else E.Select(cond, b, a, e.loc)
        node = E.Cast(t.dtype, sel, e.loc)
        self._ambiguous(node, e.loc, f"`{e.op}`", ((lt, left), (rt, right)), t)
        return node, t

    def ann_Select(self, e):
        cond, ct = self.annotate(e.cond)
        then, tt = self.annotate(e.then)
        other, ot = self.annotate(e.other)
        _one_type((tt, ot), "a conditional expression", e.loc)
        t = promote(tt, ot)
        sel = E.Select(self.truth(cond, ct), self.cast(then, tt, t), self.cast(other, ot, t), e.loc)
        node = E.Cast(t.dtype, sel, e.loc)
        self._ambiguous(node, e.loc, "a conditional expression", ((tt, then), (ot, other)), t)
        return node, t

    def ann_Call(self, e):
        args = [self.annotate(a) for a in e.args]
        name = e.func
        family, _, base = name.rpartition(".")
        if family == "math" or name in ("float", "int", "round"):
            for a, _ in args:  # Python converts the chosen operand itself: the same where no value is lost
                self._use_converted(a)

        def arity(n):
            if len(args) != n:
                raise TypingError(f"{name} takes {n} argument(s), got {len(args)}", e.loc)

        if name in ("min", "max", "np.minimum", "np.maximum", "np.fmin", "np.fmax"):
            if len(args) < 2 or (family == "np" and len(args) != 2):
                raise TypingError(f"{name} needs {'two' if family else 'at least two'} scalar arguments", e.loc,
                                  "min/max of arrays is not supported; write a reduction loop")
            if family == "":
                _one_type([at for _, at in args], f"`{name}`", e.loc)
            t = args[0][1]
            for _, at in args[1:]:
                t = promote(t, at)
            if family == "np":
                t = Ty(t.dtype)
            node = E.Cast(t.dtype, E.Call(name, tuple(self.cast(a, at, t) for a, at in args), e.loc), e.loc)
            if family == "":
                self._ambiguous(node, e.loc, f"`{name}`", [(at, a) for a, at in args], t)
            return node, t
        if name in ("abs", "np.abs"):
            arity(1)
            a, t = args[0]
            if t.kind == "b":
                t = Ty("int64", t.weak) if name == "abs" else t
            t = Ty(t.dtype, t.weak and family == "")
            node = E.Cast(t.dtype, E.Call("abs", (self.cast(a, args[0][1], t),), e.loc), e.loc)
            if name == "abs" and args[0][1].kind != "b":
                self._pass_on(a, node)  # Python's abs keeps the operand's own type
            return node, t
        if name in ("int", "float", "bool", "round") or base in ("bool_",) or name.startswith("np.") and \
                base in DTYPES:
            arity(1)
            a, t = args[0]
            target = {"int": INT, "float": FLOAT, "bool": BOOL, "round": INT, "bool_": BOOL}.get(
                base if family == "np" else name) or Ty(base)
            if name == "round":
                a = E.Call("rint", (self.cast(a, t, FLOAT) if t.kind != "f" else a,), e.loc)
                return self.cast(a, Ty("float64" if t.kind != "f" else t.dtype), target), target
            if target.kind == "b":
                return self.truth(a, t), target
            return (E.Cast(target.dtype, a, e.loc) if t.dtype != target.dtype else a), target
        if base in UNARY_FLOAT or base in ROUNDING:
            arity(1)
            a, t = args[0]
            if family == "math":
                if base in ROUNDING:
                    ft = Ty(t.dtype) if t.kind == "f" else FLOAT
                    call = E.Call(base, (self.cast(a, t, ft),), e.loc)
                    return (E.Cast("int64", call, e.loc) if t.kind == "f" else self.cast(a, t, INT)), INT
                return E.Call(base, (self.cast(a, t, FLOAT),), e.loc), FLOAT
            if base in ROUNDING and t.kind in "iub":
                return a, Ty(t.dtype)
            ft = float_type(t, e.loc)
            return E.Cast(ft.dtype, E.Call(base, (self.cast(a, t, ft),), e.loc), e.loc), ft
        if base in BINARY_FLOAT:
            arity(2)
            (a, at), (b, bt) = args
            if family == "math":
                t = FLOAT
            else:
                t = promote(at, bt)
                t = Ty(t.dtype) if t.kind == "f" or base == "pow" else float_type(Ty(t.dtype), e.loc)
            if t.kind in "iub":  # np.power on integers
                return E.Cast(t.dtype, E.BinOp("pow", self.cast(a, at, t), self.cast(b, bt, t), e.loc), e.loc), t
            return E.Cast(t.dtype, E.Call(base, (self.cast(a, at, t), self.cast(b, bt, t)), e.loc), e.loc), t
        raise TypingError(f"function {name} is not supported here", e.loc)

    def ann_Slice(self, e):
        raise TypingError("a slice is only allowed as a subscript", e.loc)

    def ann_Cast(self, e):
        a, _ = self.annotate(e.operand)
        return E.Cast(e.dtype, a, e.loc), Ty(e.dtype)
