"""SIMD loops on OpenCL: the full tiles of a loop tagged vector run as one operation on OpenCL vector types.

`vectorize={"i": 4}` splits i and tags `i_inner` (0..3, bounded by `min(3, e)` for the partial tile). In the
program variant for unit last strides (`PJ_UNIT_STRIDE`, see opencl.py), a work-item whose tile is full runs
the loop's statements once on `float4`s: reads of `x[.., core + i_inner]` become one vector load, the store one
vector store, loop-invariant operands stay scalars (OpenCL widens them). Where every vector access is aligned to
the vector's size, loads and stores go through vector pointers (GPUs then move 16 bytes per instruction: a
saxpy kernel reached 83-86% of the H100's bandwidth that way against 77% for one float per work-item);
otherwise through vload/vstore. Partial tiles, other strides and statements outside this form run the loop
as written.

Identity: lane l computes statement s of iteration l with the same operations in the same types (IEEE
element-wise arithmetic), so results are bit-identical; the statements of one iteration must not read what
another iteration's statement writes (checked: a vector statement's array is written only at its lane's
element, and no array it reads is written by the loop, except the element itself).
"""

from __future__ import annotations

from ..analysis import expr as E
from .ctypes_ import C_TYPES
from .full_tiles import constant_bound
from .looptree import For, Run
from .vectorize import _uses, linear

WIDTHS = (2, 4, 8, 16)
_OPS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/"}


class VectorLoops:
    """Mixed into OpenCLEmitter: `vector_loop` emits a vector-tagged loop as vector code plus the loop."""

    def vector_loop(self, n: For, depth: int) -> list[str] | None:
        if (n.name, "vector") not in self.model.tags or self.keep_loops:
            return None
        bound = constant_bound(n)
        if bound is None or not (isinstance(n.init, E.Const) and n.init.value == 0 and n.step == 1):
            return None
        width = bound[0].value + (n.cond.op == "le")
        if width not in WIDTHS or not n.body or not all(isinstance(r, Run) for r in n.body):
            return None
        plan = [self._vector_statement(r, n.var) for r in n.body]
        if any(p is None for p in plan) or not _independent(plan):
            return None
        pad, inner = self.indent_unit * depth, self.indent_unit * (depth + 1)
        aligned = " && ".join(sorted({f"((ulong)({a}) % {width * item} == 0)" for p in plan
                                      for a, item in p["addresses"]}))
        out = ["#ifdef PJ_UNIT_STRIDE", f"{pad}if (({self.expr(bound[1])}) >= ({self.expr(bound[0])})) {{",
               f"{inner}if ({aligned}) {{  /* vector pointers */"]
        for p in plan:
            out += [f"{inner}{self.indent_unit}{line}" for line in self._emit(p, width, True)]
        out.append(f"{inner}}} else {{")
        for p in plan:
            out += [f"{inner}{self.indent_unit}{line}" for line in self._emit(p, width, False)]
        out += [f"{inner}}}", f"{pad}}} else", "#endif", f"{pad}{{"]
        out += self.loop(n, depth + 1, vector=False)
        out.append(f"{pad}}}")
        return out

    # -- one statement --------------------------------------------------------------------------------------
    def _vector_statement(self, run: Run, var: str):
        ins = self.model.instruction(run.instruction)
        if ins.predicates or not isinstance(ins.assignee, E.Index):
            return None
        dtype = self.types.get(ins.assignee.array)
        if dtype not in ("float32", "float64"):
            return None
        binds = dict(run.bindings)
        plan = {"run": run, "ins": ins, "dtype": dtype, "addresses": [], "reads": set(), "var": var,
                "binds": binds, "at": {}}  # at: id of a read Index -> its address at lane 0, or "scalar"
        target = self._access(ins.assignee, plan, dtype)
        if target is None or target == "scalar":
            return None
        plan["target"] = target
        if not self._check(ins.expression, plan, dtype):
            return None
        return plan

    def _bound(self, e, plan):
        return E.substitute(e, lambda v: plan["binds"].get(v.name) if isinstance(v, E.Var) else None)

    def _access(self, node: E.Index, plan, dtype):
        """'scalar' for an access free of the vector loop, (address at lane 0) for a unit-stride one, else
        None."""
        if self.types.get(node.array) != dtype or self.local_reads.get(node.array) is not None:
            return None
        var = plan["var"]
        idx = [self._bound(i, plan) for i in node.indices]
        if not any(_uses(i, {var}) for i in idx):
            return "scalar"
        if not idx or any(_uses(i, {var}) for i in idx[:-1]):
            return None
        lin = linear(idx[-1], var)
        if lin is None or lin[0] != 1:
            return None
        # the vector's first element: the access with the vector loop at 0 (PJ_LAST(stride) is 1 here)
        at0 = E.Index(node.array, tuple(idx[:-1]) + (lin[1],))
        address = f"&{self.expr(at0)}"
        plan["addresses"].append((address, 8 if dtype == "float64" else 4))
        return address

    def _check(self, e, plan, dtype) -> bool:
        if isinstance(e, E.Const):
            return True
        if isinstance(e, E.Var):
            return e.name != plan["var"] and e.name not in plan["binds"] and self.type_of(e) == dtype
        if isinstance(e, E.Index):
            got = self._access(e, plan, dtype)
            if got is None:
                return False
            plan["reads"].add((e.array, got))
            plan["at"][id(e)] = got
            return True
        if isinstance(e, E.Cast):
            return e.dtype == dtype and self.type_of(e.operand) == dtype and self._check(e.operand, plan, dtype)
        if isinstance(e, E.BinOp):
            return e.op in _OPS and self.type_of(e) == dtype and self._check(e.left, plan, dtype) \
                and self._check(e.right, plan, dtype)
        if isinstance(e, E.UnOp):
            return e.op == "neg" and self._check(e.operand, plan, dtype)
        return False

    def _emit(self, plan, width: int, aligned: bool) -> list[str]:
        vtype = f"{C_TYPES[plan['dtype']]}{width}"
        scalar = C_TYPES[plan["dtype"]]

        def load(address):
            return f"(*(__global {vtype} *)({address}))" if aligned else f"vload{width}(0, {address})"

        def walk(e):
            if isinstance(e, E.Index):
                got = plan["at"][id(e)]
                return f"(({scalar})({self.expr(self._bound(e, plan))}))" if got == "scalar" else load(got)
            if isinstance(e, E.Cast):
                return walk(e.operand)
            if isinstance(e, E.BinOp):
                return f"({walk(e.left)} {_OPS[e.op]} {walk(e.right)})"
            if isinstance(e, E.UnOp):
                return f"(-{walk(e.operand)})"
            return f"(({scalar})({self.expr(e)}))"

        value, target = walk(plan["ins"].expression), plan["target"]
        if aligned:
            return [f"*(__global {vtype} *)({target}) = {value};  /* {plan['ins'].id} */"]
        return [f"vstore{width}({value}, 0, {target});  /* {plan['ins'].id} */"]


def _independent(plan) -> bool:
    """No statement reads elements of an array the loop writes other than the ones it writes itself (the
    same lane's), so running all lanes of each statement in turn keeps every value."""
    targets = {p["ins"].assignee.array: p["target"] for p in plan}
    if len(targets) != len(plan):  # two statements write one array
        return False
    return all(array not in targets or where == targets[array] for p in plan for array, where in p["reads"])
