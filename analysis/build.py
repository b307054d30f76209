"""Program tree + argument types -> KernelModel: domains, typed instructions, accesses, dependences, checks."""

from __future__ import annotations

import islpy as isl

from . import expr as E
from .affine import condition_to_isl, param_name, to_isl
from .deps import compute_dependences
from .errors import TypingError, UnsupportedError
from .model import Access, Argument, Instruction, KernelModel, LoopInfo, Param, ParamCheck, Temporary
from .program import Assign, If, Loop, Program, Return
from .slices import expand_slice_assignment, has_slices
from .types import INT, ArrayType, Ty, Typer, join


def build_model(program: Program, signature: dict, *, fastmath: bool = False) -> KernelModel:
    """The kernel model of `program` specialized to `signature` (argument name -> Ty or ArrayType)."""
    return _Builder(program, signature, fastmath).run()


class _Builder:
    def __init__(self, program: Program, signature: dict, fastmath: bool):
        self.program = program
        self.signature = signature
        self.fastmath = fastmath
        self.arguments = []
        self.params: list[Param] = []
        for name in program.params:
            t = signature[name]
            if isinstance(t, ArrayType):
                self.arguments.append(Argument(name, "array", t.dtype, t.ndim, t.layout))
                self.params += [Param(param_name(E.Shape(name, d)), E.Shape(name, d)) for d in range(t.ndim)]
            else:
                self.arguments.append(Argument(name, "scalar", t.dtype, weak=t.weak))
                if t.kind in "iu":
                    self.params.append(Param(name, E.Var(name)))
        self.param_names = [p.name for p in self.params]
        self.param_decl = f"[{', '.join(self.param_names)}]"
        sizes = " and ".join(f"{p.name} >= 0" for p in self.params if isinstance(p.source, E.Shape)) or "0 = 0"
        self.context = isl.Set(f"{self.param_decl} -> {{ : {sizes} }}")
        self.aliases: dict[str, E.Expr] = {}
        self.typer = Typer(signature)
        self.instructions: list[Instruction] = []
        self.temporaries: dict[str, Temporary] = {}
        self.loops: list[LoopInfo] = []
        self.checks: list[ParamCheck] = []
        self.scalar_sets: dict[str, isl.Set] = {}  # `{ name[] }` per scalar, parsed once
        self.counter = 0
        self.return_value = None
        self.return_weak = False

    # -- driver -----------------------------------------------------------------------------------------
    def run(self) -> KernelModel:
        body = self.find_aliases(self.program.body)
        self.infer_locals(body)
        self.walk(body, (), [], None, ())
        instructions = self.privatize(tuple(self.instructions))
        model = KernelModel(self.program.name, tuple(self.arguments), tuple(self.params), self.context,
                            instructions, tuple(self.temporaries.values()), tuple(self.loops), (),
                            tuple(self.checks), self.return_value, self.return_weak, self.fastmath)
        from dataclasses import replace
        tags = tuple(dict.fromkeys((lp.name, lp.tag) for lp in self.loops if lp.tag))
        model = replace(model, schedule=model.original_schedule(), tags=tags)
        return replace(model, dependences=compute_dependences(instructions, model.schedule_map()))

    def new_id(self) -> str:
        self.counter += 1
        return f"S{self.counter - 1}"

    # -- aliases: top-level locals set once from sizes and integer arguments ----------------------------
    def find_aliases(self, body):
        counts: dict[str, int] = {}

        def count(stmts):
            for s in stmts:
                if isinstance(s, Assign) and isinstance(s.target, E.Var):
                    counts[s.target.name] = counts.get(s.target.name, 0) + 1
                elif isinstance(s, Loop):
                    counts[s.var] = counts.get(s.var, 0) + 2
                    count(s.body)
                elif isinstance(s, If):
                    count(s.body)
                    count(s.orelse)

        count(body)
        out = []
        for s in body:
            s = self.subst_aliases(s)
            if isinstance(s, Assign) and isinstance(s.target, E.Var) and counts.get(s.target.name) == 1:
                if to_isl(s.value, set(self.param_names)) is not None:
                    self.aliases[s.target.name] = s.value
                    continue
            out.append(s)
        return tuple(out)

    def subst_aliases(self, s):
        def sub(e):
            return E.substitute(e, lambda x: self.aliases.get(x.name) if isinstance(x, E.Var) else None)

        if isinstance(s, Assign):
            return Assign(s.target if isinstance(s.target, E.Var) else sub(s.target), sub(s.value), s.loc)
        if isinstance(s, Loop):
            return Loop(s.var, sub(s.start), sub(s.stop), s.step, tuple(self.subst_aliases(x) for x in s.body),
                        s.parallel, s.loc)
        if isinstance(s, If):
            return If(sub(s.cond), tuple(self.subst_aliases(x) for x in s.body),
                      tuple(self.subst_aliases(x) for x in s.orelse), s.loc)
        if isinstance(s, Return):
            return Return(None if s.value is None else sub(s.value), s.loc)
        return s

    # -- types of locals --------------------------------------------------------------------------------
    def infer_locals(self, body):
        types: dict[str, Ty] = {}
        computed_python_float: dict[str, object] = {}  # local -> where it gets a computed Python float
        weak: dict[str, dict] = {}  # local -> {id(value): (Python number's type, value)} it is assigned
        chosen: set[str] = set()  # locals assigned a value whose type Python picks at run time (min, ...)
        last_numpy: dict[str, int] = {}  # local -> the position of its last assignment of a numpy value
        self.positions = _positions(body)
        passes, final = 0, False
        while True:
            def visit(stmts, final=final):
                for s in stmts:
                    self.typer.position = self.positions[id(s)]
                    if isinstance(s, Loop):
                        self.typer.env[s.var] = INT
                        visit(s.body)
                    elif isinstance(s, If):
                        visit(s.body)
                        visit(s.orelse)
                    elif isinstance(s, Assign) and isinstance(s.target, E.Var):
                        name = s.target.name
                        if isinstance(self.signature.get(name), ArrayType):
                            raise TypingError(f"`{name}` is an array argument and cannot be reassigned", s.loc)
                        try:
                            _, t = self.typer.annotate(s.value, hold=True)
                        except TypingError:
                            if final:
                                raise
                            continue
                        types[name] = join(types.get(name), t, name, s.loc)
                        self.typer.env[name] = types[name]
                        if t.weak and t.kind == "f" and not _exact_in_float32(s.value):
                            computed_python_float.setdefault(name, s.loc)
                        sources = weak.setdefault(name, {})
                        if t.weak:
                            sources[id(s.value)] = (t, s.value)
                        else:
                            last_numpy[name] = max(last_numpy.get(name, -1), self.typer.position)
                        for own, x in self.typer.accepted:  # min(...) or `t = s` with s mixed: t is mixed too
                            if own.weak:
                                sources[id(x)] = (own, x)
                                chosen.add(name)
            visit(body)
            if final:
                break
            # a local that gets a Python number, then numpy values, holds the Python number up to its first
            # numpy assignment: uses up to (the position of) the last one can see it; later ones only where
            # no numpy assignment ran (loops that ran no iteration), where it keeps its numpy type as
            # documented. A local assigned a run-time choice of types has the question at every use.
            mixed = {name: (tuple(src.values()), None if name in chosen else last_numpy.get(name, -1))
                     for name, src in weak.items() if src and not types[name].weak}
            passes += 1
            final = passes >= 8 or (passes >= 2 and mixed == self.typer.mixed)
            self.typer.mixed = mixed
            for name, loc in computed_python_float.items() if final else ():
                if types[name].dtype == "float32":
                    # Python holds a float64 Python float here and a float32 elsewhere: the precision of the
                    # variable would change at run time, which one static type cannot reproduce
                    raise TypingError(f"variable `{name}` holds a Python float (float64) here but float32 values "
                                      "elsewhere: its precision would change at run time", loc,
                                      "make the types agree, e.g. np.float32(...) here, or use a separate variable")
        self.local_types = types

    # -- statements -------------------------------------------------------------------------------------
    def walk(self, stmts, prefix, loops, cond, preds):
        """loops: [(var, constraint)]; cond: isl constraint string of enclosing ifs; preds: predicates."""
        for s in stmts:
            self.typer.position = self.positions[id(s)]
            if isinstance(s, Loop):
                self.visit_loop(s, prefix, loops, cond, preds)
            elif isinstance(s, If):
                self.visit_if(s, prefix, loops, cond, preds)
            elif isinstance(s, Assign):
                self.visit_assign(s, prefix, loops, cond, preds)
            elif isinstance(s, Return):
                self.visit_return(s, prefix, loops, cond, preds)

    def next_beta(self, prefix):
        key = ("beta",) + prefix
        b = getattr(self, "_betas", {})
        self._betas = b
        b[key] = b.get(key, -1) + 1
        return b[key]

    def names(self, loops):
        return set(self.param_names) | {v for v, _ in loops}

    def visit_loop(self, s: Loop, prefix, loops, cond, preds):
        if any(v == s.var for v, _ in loops):
            raise UnsupportedError(f"loop variable `{s.var}` is already used by an enclosing loop", s.loc,
                                   "use a different name for the inner loop")
        names = self.names(loops)
        bounds = []
        for part in (s.start, s.stop):
            a, t = self.typer.annotate(part, hold=True)
            if t.kind not in "iu":
                raise TypingError(f"range bounds must be integers, not {t.dtype}", part.loc, "use int(...)")
            aff = to_isl(a, names)
            if aff is None:
                raise UnsupportedError(f"loop bound `{part}` is not affine in the integer arguments, array sizes "
                                       "and outer loop variables", part.loc or s.loc,
                                       "compute the bound from A.shape or integer arguments; "
                                       "data-dependent bounds need an `if` inside the loop")
            bounds.append(aff)
        start, stop = bounds
        v = s.var
        if s.step > 0:
            c = f"({start}) <= {v} < ({stop})"
            if s.step > 1:
                c += f" and ({v} - ({start})) mod {s.step} = 0"
        else:
            c = f"({stop}) < {v} <= ({start})"
            if s.step < -1:
                c += f" and (({start}) - {v}) mod {-s.step} = 0"
        key = prefix + (self.next_beta(prefix),)
        self.loops.append(LoopInfo(v, key, 1 if s.step > 0 else -1, "parallel" if s.parallel else None,
                                   s.loc.line if s.loc else 0))
        self.typer.env[v] = INT
        self.walk(s.body, key, loops + [(v, c)], cond, preds)

    def visit_if(self, s: If, prefix, loops, cond, preds):
        test, t = self.typer.annotate(s.cond, hold=True)
        test = self.typer.truth(test, t)
        affine = condition_to_isl(test, self.names(loops))
        if affine is not None:
            both = (f"{cond} and " if cond else "")
            self.walk(s.body, prefix, loops, both + affine, preds)
            self.walk(s.orelse, prefix, loops, both + f"(not {affine})", preds)
            return
        name = f"_c{len([t for t in self.temporaries if t.startswith('_c')])}"
        self.temporaries[name] = Temporary(name, "bool")
        self.emit(E.Var(name), test, prefix, loops, cond, preds, s.loc)
        self.walk(s.body, prefix, loops, cond, preds + ((name, True),))
        self.walk(s.orelse, prefix, loops, cond, preds + ((name, False),))

    def visit_return(self, s: Return, prefix, loops, cond, preds):
        if loops or cond or preds:
            raise UnsupportedError("`return` is only supported as the last statement of the kernel", s.loc,
                                   "store the value in a local and return it at the end")
        if s.value is None:
            return
        value, t = self.typer.annotate(s.value, hold=True)
        self.temporaries["_ret"] = Temporary("_ret", t.dtype)
        self.return_value, self.return_weak = "_ret", t.weak
        self.emit(E.Var("_ret"), value, prefix, loops, cond, preds, s.loc)

    def visit_assign(self, s: Assign, prefix, loops, cond, preds):
        if isinstance(s.target, E.Var):
            name = s.target.name
            t = self.local_types[name]
            if name not in self.temporaries:
                self.temporaries[name] = Temporary(name, t.dtype)
            value, vt = self.typer.annotate(s.value, hold=True)
            self.emit(E.Var(name, s.target.loc), self.typer.cast(value, vt, t), prefix, loops, cond, preds, s.loc)
            return
        if has_slices(s, self.signature):
            for step in expand_slice_assignment(self, s, prefix, loops, cond, preds):
                self.emit(*step)
            return
        target, tt = self.typer.annotate(s.target)
        if len(target.indices) != self.signature[target.array].ndim:
            raise TypingError(f"`{target}` is a sub-array; assigning to it needs a slice", s.loc,
                              f"write {target.array}[..., :] = ... or index every dimension")
        value, vt = self.typer.annotate(s.value, store=tt.dtype)
        self.emit(target, self.typer.cast(value, vt, tt), prefix, loops, cond, preds, s.loc)

    # -- instructions -----------------------------------------------------------------------------------
    def domain(self, iid, loops, cond) -> isl.Set:
        parts = [c for _, c in loops] + ([cond] if cond else [])
        text = f"{self.param_decl} -> {{ {iid}[{', '.join(v for v, _ in loops)}] : {' and '.join(parts) or '0 = 0'} }}"
        return isl.Set(text).coalesce()

    def emit(self, assignee, expression, prefix, loops, cond, preds, loc):
        iid = self.new_id()
        betas = prefix + (self.next_beta(prefix),)
        dom = self.domain(iid, loops, cond)
        names = self.names(loops)
        accesses: list[Access] = []
        assignee = self.rewrite_accesses(assignee, iid, dom, names, accesses, lazy=bool(preds), loc=loc, write=True)
        expression = self.rewrite_accesses(expression, iid, dom, names, accesses, lazy=bool(preds), loc=loc)
        for p, _ in preds:
            accesses.append(self.scalar_access(iid, dom, p, False))
        self.instructions.append(Instruction(iid, assignee, expression, tuple(v for v, _ in loops), dom, betas,
                                             preds, tuple(accesses), loc))

    def scalar_access(self, iid, dom, name, write):
        if name not in self.scalar_sets:
            self.scalar_sets[name] = isl.Set(f"{self.param_decl} -> {{ {name}[] }}")
        rel = isl.Map.from_domain_and_range(dom, self.scalar_sets[name])
        return Access(name, (), write, True, False, rel)

    def rewrite_accesses(self, e, iid, dom, names, out, *, lazy, loc, write=False):
        """Record the accesses of `e`; indices that need a run-time check become `_check(...)` calls."""
        if isinstance(e, E.Var):
            if e.name in self.temporaries or e.name in self.local_types:
                out.append(self.scalar_access(iid, dom, e.name, write))
            return e
        if isinstance(e, E.Index):
            indices = [self.rewrite_accesses(i, iid, dom, names, out, lazy=lazy, loc=loc) for i in e.indices]
            indices, acc = self.array_access(e.array, indices, iid, dom, names, lazy, write, e.loc or loc)
            out.append(acc)
            return E.Index(e.array, tuple(indices), e.loc)
        if isinstance(e, E.Select):
            c = self.rewrite_accesses(e.cond, iid, dom, names, out, lazy=lazy, loc=loc)
            a = self.rewrite_accesses(e.then, iid, dom, names, out, lazy=True, loc=loc)
            b = self.rewrite_accesses(e.other, iid, dom, names, out, lazy=True, loc=loc)
            return E.Select(c, a, b, e.loc)
        if isinstance(e, E.BoolOp):
            a = self.rewrite_accesses(e.left, iid, dom, names, out, lazy=lazy, loc=loc)
            b = self.rewrite_accesses(e.right, iid, dom, names, out, lazy=True, loc=loc)
            return E.BoolOp(e.op, a, b, e.loc)
        kids = E.children(e)
        if not kids:
            return e
        new = [self.rewrite_accesses(k, iid, dom, names, out, lazy=lazy, loc=loc) for k in kids]
        it = iter(new)
        return E.substitute(e, lambda x: next(it) if any(x is k for k in kids) else None)

    def array_access(self, array, indices, iid, dom, names, lazy, write, loc):
        ndim = self.signature[array].ndim
        # numpy's negative constant indices count from the end
        indices = [E.Cast("int64", E.BinOp("add", E.Shape(array, d), i)) if _negative_const(i) else i
                   for d, i in enumerate(indices)]
        affs = [to_isl(i, names) for i in indices]
        tmp = self.temporaries.get(array)
        # a slice temporary's sizes are the target array's size parameters (it has none of its own)
        shape = list(tmp.shape) if tmp is not None and tmp.shape else [param_name(E.Shape(array, d))
                                                                         for d in range(ndim)]
        space = f"{self.param_decl} -> {{ {iid}[{', '.join(dom.get_space().get_var_names(isl.dim_type.set))}]"
        affine = all(a is not None for a in affs)
        wraps = []
        if affine:  # one parse; the bounds checks below add constraints to it (isl's parser costs ~0.1 ms)
            exact = isl.Map(f"{space} -> {array}[{', '.join(affs)}] }}").intersect_domain(dom)
            within = exact.intersect_params(self.context)
            wraps = [not within.add_constraint(_bound(within, d, below=True)).is_empty() for d in range(ndim)]
        checked = not affine or lazy or any(wraps)
        if affine and not any(wraps):
            rel = exact
        else:
            outs = ", ".join(f"o{d}" for d in range(ndim))
            rel = isl.Map(f"{space} -> {array}[{outs}] }}").intersect_domain(dom)
        if checked:
            indices = [E.Call("_check", (i, E.Shape(array, d), E.Const(len(self.checks) + 1)), i.loc)
                       for d, i in enumerate(indices)]
            self.checks.append(ParamCheck(isl.Set.empty(dom.get_space().params()), "IndexError",
                                          _oob_message(array, loc)))
        else:
            for d in range(ndim):
                over = within.add_constraint(_bound(within, d, size=shape[d]))
                if not over.is_empty():
                    self.checks.append(ParamCheck(over.params().coalesce(), "IndexError",
                                                  _oob_message(array, loc, d, indices[d])))
        return indices, Access(array, tuple(indices), write, affine and not any(wraps), checked, rel)

    # -- scalar privatization ---------------------------------------------------------------------------
    def privatize(self, instructions):
        """Scalars written before being read in every iteration of a loop are private to it.

        Their accesses are expanded by that loop's iterators (outer ones included), which removes the false
        dependences they would otherwise carry.
        """
        from dataclasses import replace
        by_scalar: dict[str, list[Instruction]] = {}
        for ins in instructions:
            for acc in ins.accesses:
                if acc.array in self.temporaries and not self.temporaries[acc.array].shape:
                    by_scalar.setdefault(acc.array, []).append(ins)
        expand: dict[str, int] = {}
        for name, users in by_scalar.items():
            users = sorted(set(users), key=lambda i: i.betas)
            common = min(len(i.loops) for i in users)
            depth = 0
            while depth < common and len({i.betas[: depth + 1] for i in users}) == 1:
                depth += 1
            first = users[0]
            reads_first = any(a.array == name and not a.write for a in first.accesses)
            writes_first = any(a.array == name and a.write for a in first.accesses)
            if depth and writes_first and not reads_first and len(first.loops) == depth \
                    and not first.predicates and _covers(first, users, depth):
                expand[name] = depth
                key = first.betas[:depth]
                self.temporaries[name] = replace(self.temporaries[name], private_to=self.model_loop(key).name)
        if not expand:
            return instructions
        out = []
        for ins in instructions:
            accs = []
            for acc in ins.accesses:
                if acc.array in expand:
                    k = expand[acc.array]
                    its = ", ".join(ins.loops[:k])
                    rel = isl.Map(f"{self.param_decl} -> {{ {ins.id}[{', '.join(ins.loops)}] -> {acc.array}[{its}] }}")
                    acc = replace(acc, relation=rel.intersect_domain(ins.domain))
                accs.append(acc)
            out.append(replace(ins, accesses=tuple(accs)))
        return tuple(out)

    def model_loop(self, key):
        return next(lp for lp in self.loops if lp.key == key)


def _exact_in_float32(e) -> bool:
    """A literal whose value float32 holds exactly (0.0, 1.5, ...): starting a float32 sum from it is exact."""
    while isinstance(e, E.UnOp) and e.op == "neg":
        e = e.operand
    if isinstance(e, E.Const) and isinstance(e.value, (int, float)):
        import numpy as np
        return float(np.float32(e.value)) == float(e.value)
    return False


def _covers(first: Instruction, users, depth: int) -> bool:
    """Whether `first` runs in every iteration of the outer `depth` loops in which any of `users` runs."""
    def outer(ins):
        d = ins.domain
        return d.project_out(isl.dim_type.set, depth, d.dim(isl.dim_type.set) - depth).reset_tuple_id()

    mine = outer(first)
    return all(outer(u).is_subset(mine) for u in users)


def _bound(rel: isl.Map, d: int, *, below: bool = False, size: str = "") -> isl.Constraint:
    """The constraint `out_d < 0` (below) or `out_d >= size` (a parameter of rel) on the access relation."""
    c = isl.Constraint.inequality_alloc(isl.LocalSpace.from_space(rel.get_space()))
    if below:  # -out_d - 1 >= 0
        return c.set_coefficient_val(isl.dim_type.out, d, -1).set_constant_val(-1)
    p = rel.find_dim_by_name(isl.dim_type.param, size)
    return c.set_coefficient_val(isl.dim_type.out, d, 1).set_coefficient_val(isl.dim_type.param, p, -1)


def _negative_const(e) -> bool:
    while isinstance(e, E.Cast):
        e = e.operand
    return isinstance(e, E.Const) and isinstance(e.value, int) and e.value < 0


def _oob_message(array, loc, dim=None, index=None) -> str:
    where = f" at {loc}" if loc else ""
    text = f"\n    {loc.text.strip()}" if loc else ""
    if dim is None:
        return f"index out of bounds for array `{array}`{where}{text}"
    return f"index `{index}` out of bounds for axis {dim} of `{array}`{where}{text}"


def _positions(body) -> dict:
    """id(statement) -> its place in program order (pre-order: a loop or if before the statements in it)."""
    order: dict = {}

    def visit(stmts):
        for s in stmts:
            order[id(s)] = len(order)
            if isinstance(s, Loop):
                visit(s.body)
            elif isinstance(s, If):
                visit(s.body)
                visit(s.orelse)
    visit(body)
    return order
