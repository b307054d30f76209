"""OpenCL C from the loop tree: a visitor returning strings; one __kernel per phase.

A phase is a run of top-level loop-tree nodes executed by one work-item, or one top-level loop tagged
parallel whose iterations become the NDRange. Scalar locals live in private variables and travel between
phases through a global scratch buffer (8 bytes a slot). Fastmath sums in an NDRange start at zero in every
work-item, which writes its partial sum to `pj_part`; the runtime adds them to the scratch slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..analysis import expr as E
from ..analysis.errors import ScheduleError
from ..analysis.model import KernelModel
from .ctypes_ import C_TYPES, UNSIGNED
from .full_tiles import constant_bound
from .legality import loop_sums
from .looptree import For, If, LoopTree, Run, runs_of
from .opencl_groups import GroupKernels
from .opencl_vector import VectorLoops
from .typeof import type_of
from .workgroups import find_group_nest, footprint, prefetches, trip_form

_CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
_FLOAT_CALLS = {
    "sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan",
    "expm1", "log1p", "erf", "erfc", "fabs", "cbrt", "floor", "ceil", "trunc", "rint", "pow", "atan2", "hypot",
    "fmod", "copysign",
}


@dataclass(frozen=True)
class Phase:
    kernel: str  # the __kernel's name
    dims: tuple[For, ...] = ()  # the loops mapped to NDRange dimensions 0, 1, 2; () runs one work-item
    local: tuple[int, ...] = ()  # work-group sizes per dim (dims then count groups, see workgroups.py)
    sums: tuple[int, ...] = ()  # scratch slots of the fastmath sums whose partial sums `pj_part` holds

    @property
    def parallel(self) -> bool:
        return bool(self.dims)


@dataclass(frozen=True)
class OpenCLProgram:
    source: str
    phases: tuple[Phase, ...]
    arrays: tuple[str, ...]  # array arguments and temporaries, in kernel-argument order
    scalars: tuple[str, ...]  # scalar arguments, in kernel-argument order
    slots: tuple[str, ...]  # scalar locals by scratch slot
    needs_fp64: bool


_HELPERS_INT = """
{T} pj_floordiv_{T}({T} a, {T} b) {{
    if (b == 0) return 0;
    if (b == -1) return ({T})(-({U})a);
    {T} q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
    return q;
}}
{T} pj_mod_{T}({T} a, {T} b) {{
    if (b == 0 || b == -1) return 0;
    {T} r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}}
{T} pj_pow_{T}({T} a, {T} b) {{
    if (b < 0) return (a == 1) ? 1 : (a == -1) ? ((b & 1) ? -1 : 1) : 0;
    {U} r = 1, x = ({U})a;
    while (b) {{ if (b & 1) r *= x; x *= x; b >>= 1; }}
    return ({T})r;
}}
"""
_HELPERS_UINT = """
{T} pj_floordiv_{T}({T} a, {T} b) {{ return b == 0 ? 0 : a / b; }}
{T} pj_mod_{T}({T} a, {T} b) {{ return b == 0 ? 0 : a % b; }}
{T} pj_pow_{T}({T} a, {T} b) {{
    {T} r = 1;
    while (b) {{ if (b & 1) r *= a; a *= a; b >>= 1; }}
    return r;
}}
"""
_HELPERS_FLOAT = """
{T} pj_floordiv_{T}({T} a, {T} b) {{
    if (b == 0) return a / b;
    {T} mod = fmod(a, b);
    {T} div = (a - mod) / b;
    if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1;
    if (div == 0) return copysign(({T})0, a / b);
    {T} f = floor(div);
    if (div - f > ({T})0.5) f += 1;
    return f;
}}
{T} pj_mod_{T}({T} a, {T} b) {{
    {T} mod = fmod(a, b);
    if (b == 0) return mod;
    if (mod != 0) {{ if ((b < 0) != (mod < 0)) mod += b; }}
    else mod = copysign(({T})0, b);
    return mod;
}}
"""
# the last axis' stride: the constant 1 in the program variant built for arrays that all have unit last
# strides (the runtime picks the variant per call), else the argument (simpler address arithmetic: GPUs
# reach more of their memory bandwidth)
_LAST_STRIDE = """
#ifdef PJ_UNIT_STRIDE
#define PJ_LAST(stride) 1
#else
#define PJ_LAST(stride) (stride)
#endif
"""
_CHECK = """
long pj_check(long i, long n, int code, int *err) {
    if (i < 0) i += n;
    if (i < 0 || i >= n) { *err = code; return 0; }
    return i;
}
"""


class OpenCLEmitter(GroupKernels, VectorLoops):
    """Emits OpenCL C for a model and its loop tree; target variants override class attributes."""

    # bounds checks set a private flag that reaches the global error word once, at the kernel's end (the
    # guards' early returns come before any check): NVIDIA's compiler (driver 580) crashed on a select
    # whose arm held a check storing to global memory (fuzz seed 1681, program 378)
    ERROR_FLAG = "    int pj_bad = 0;"
    ERROR_STORE = "    if (pj_bad) *pj_err = pj_bad;"
    keep_loops = False  # `#pragma unroll 1` on every loop (set while emitting a single-work-item kernel)
    restrict = ""
    indent_unit = "    "

    def __init__(self, model: KernelModel, tree: LoopTree):
        self.model = model
        self.tree = tree
        self.types: dict[str, str] = {}
        for a in model.arguments:
            self.types[a.name] = a.dtype
        for t in model.temporaries:
            self.types[t.name] = t.dtype
        self.arrays = tuple(a.name for a in model.arguments if a.kind == "array") + tuple(
            t.name for t in model.temporaries if t.shape)
        self.scalars = tuple(a.name for a in model.arguments if a.kind == "scalar")
        self.slots = tuple(t.name for t in model.temporaries if not t.shape)
        self.used_dtypes = set(self.types.values()) | {"int64"}
        self.local_reads: dict = {}  # array -> Footprint while emitting a prefetching work-group body
        self.registers: dict = {}  # (id of a Run, str of an Index) -> private variable (register tiles)
        self.current_run = None
        self.assume_true: set[str] = set()  # conditions known to hold (a register tile's full-tile path)

    # -- types ------------------------------------------------------------------------------------------
    def type_of(self, e: E.Expr) -> str:
        return type_of(e, self.types)

    # -- expressions ------------------------------------------------------------------------------------
    def expr(self, e: E.Expr) -> str:
        return getattr(self, f"expr_{type(e).__name__}")(e)

    def expr_Const(self, e):
        return self.literal(e.value, self.type_of(e))

    def literal(self, v, dtype):
        if isinstance(v, bool):
            return "1" if v else "0"
        if isinstance(v, float) or dtype.startswith("float"):
            v = float(v)
            suffix = "f" if dtype == "float32" else ""
            if math.isnan(v):
                return f"(({C_TYPES[dtype]})NAN)"
            if math.isinf(v):
                return f"(({C_TYPES[dtype]}){'-' if v < 0 else ''}INFINITY)"
            return f"{v!r}{suffix}" if dtype == "float64" else f"(({C_TYPES[dtype]}){v!r})"
        if dtype.startswith("uint"):
            return f"{v}UL"
        return f"{v}L" if -(2**63) < v < 2**63 else f"({v - 1}L + 1)"

    def expr_Var(self, e):
        return e.name

    def expr_Shape(self, e):
        return f"{e.array}_shape{e.dim}"

    def expr_Index(self, e):
        if self.registers:
            reg = self.registers.get((id(self.current_run), str(e)))
            if reg is not None:
                return reg
        box = self.local_reads.get(e.array)
        if box is not None:  # a read of a tile prefetched to __local memory: row-major inside the box
            flat = None
            for d, i in enumerate(e.indices):
                rel = f"(({self.expr(i)}) - pj_{e.array}_o{d})"
                flat = rel if flat is None else f"({flat} * {box.sizes[d]} + {rel})"
            return f"pj_{e.array}_loc[{flat}]"
        terms = [f"{e.array}_off"] + [f"({self.expr(i)}) * {self.stride(e.array, d, len(e.indices))}"
                                      for d, i in enumerate(e.indices)]
        return f"{e.array}[{' + '.join(terms)}]"

    @staticmethod
    def stride(array: str, d: int, ndim: int) -> str:
        return f"PJ_LAST({array}_stride{d})" if d == ndim - 1 else f"{array}_stride{d}"

    def expr_Cast(self, e):
        inner = e.operand
        if isinstance(inner, E.Const):
            return self.literal(inner.value, e.dtype) if e.dtype != "bool" else ("1" if inner.value else "0")
        if e.dtype == "bool":
            return f"(({self.expr(inner)}) != 0)"
        return f"(({C_TYPES[e.dtype]})({self.expr(inner)}))"

    def expr_BinOp(self, e):
        t = self.type_of(e.left)
        a, b = self.expr(e.left), self.expr(e.right)
        c = C_TYPES[t]
        if e.op in ("add", "sub", "mul"):
            sym = E.BINARY_SYMBOLS[e.op]
            if t in UNSIGNED:  # wrap around like numpy instead of C's undefined signed overflow
                u = UNSIGNED[t]
                return f"(({c})(({u})({a}) {sym} ({u})({b})))"
            if t.startswith("uint") or t == "bool":
                return f"(({c})(({a}) {sym} ({b})))"
            return f"(({a}) {sym} ({b}))"
        if e.op == "truediv":
            return f"(({a}) / ({b}))"
        if e.op in ("floordiv", "mod"):
            name = "floordiv" if e.op == "floordiv" else "mod"
            return f"pj_{name}_{c}({a}, {b})"
        if e.op == "pow":
            if t.startswith("float") and _constant(e.right) == 2:  # x*x is pow(x, 2) correctly rounded; OpenCL's
                return f"(({a}) * ({a}))"                          # pow may be an ulp off (glibc's is not)
            return f"pow({a}, {b})" if t.startswith("float") else f"pj_pow_{c}({a}, {b})"
        raise NotImplementedError(e.op)

    def expr_UnOp(self, e):
        a = self.expr(e.operand)
        if e.op == "not":
            return f"(!({a}))"
        t = self.type_of(e.operand)
        if t in UNSIGNED:
            return f"(({C_TYPES[t]})(-({UNSIGNED[t]})({a})))"
        return f"(-({a}))"

    def expr_Compare(self, e):
        return f"(({self.expr(e.left)}) {_CMP[e.op]} ({self.expr(e.right)}))"

    def expr_BoolOp(self, e):
        return f"(({self.expr(e.left)}) {'&&' if e.op == 'and' else '||'} ({self.expr(e.right)}))"

    def expr_Select(self, e):
        return f"(({self.expr(e.cond)}) ? ({self.expr(e.then)}) : ({self.expr(e.other)}))"

    def expr_Call(self, e):
        args = [self.expr(a) for a in e.args]
        t = self.type_of(e.args[0]) if e.args else "float64"
        f = e.func
        if f == "_check":
            return f"pj_check({args[0]}, {args[1]}, {args[2]}, &pj_bad)"
        if f in ("min", "max"):  # Python's: the first of equals wins, NaN handling follows `<`
            out = args[0]
            for b in args[1:]:
                out = f"pj_py{f}_{C_TYPES[t]}({out}, {b})"
            return out
        if f in ("np.minimum", "np.maximum"):
            op = "<" if f == "np.minimum" else ">"
            if t.startswith("float"):
                return f"((({args[0]}) {op} ({args[1]}) || isnan({args[0]})) ? ({args[0]}) : ({args[1]}))"
            return f"(({args[0]}) {op} ({args[1]}) ? ({args[0]}) : ({args[1]}))"
        if f in ("np.fmin", "np.fmax"):
            if t.startswith("float"):
                return f"{f[3:]}({args[0]}, {args[1]})"
            return f"(({args[0]}) {'<' if f == 'np.fmin' else '>'} ({args[1]}) ? ({args[0]}) : ({args[1]}))"
        if f == "abs":
            if t.startswith("float"):
                return f"fabs({args[0]})"
            if t in UNSIGNED:
                u = UNSIGNED[t]
                return f"(({C_TYPES[t]})(({args[0]}) < 0 ? -({u})({args[0]}) : ({u})({args[0]})))"
            return args[0]
        if f in _FLOAT_CALLS:
            return f"{f}({', '.join(args)})"
        raise NotImplementedError(f)

    # -- statements -------------------------------------------------------------------------------------
    def lines(self, nodes, depth) -> list[str]:
        pad = self.indent_unit * depth
        out = []
        for n in nodes:
            if isinstance(n, For):
                bound = constant_bound(n) if self.assume_true else None
                if bound is None:
                    out += self.loop(n, depth)
                else:  # in a full register tile, full tiles of a split loop get its constant bound, which
                    # the compiler unrolls (sgemm's k_inner by 8 on the H100: 22.1 -> 23.9 TFLOP/s)
                    out.append(f"{pad}if (({self.expr(bound[0])}) <= ({self.expr(bound[1])})) {{")
                    out += self.loop(replace(n, cond=E.Compare(n.cond.op, n.cond.left, bound[0])), depth + 1)
                    out.append(f"{pad}}} else {{")
                    out += self.loop(n, depth + 1)
                    out.append(f"{pad}}}")
            elif isinstance(n, If) and str(n.cond) in self.assume_true:
                out += self.lines(n.then, depth)
            elif isinstance(n, If):
                out.append(f"{pad}if ({self.expr(n.cond)}) {{")
                out += self.lines(n.then, depth + 1)
                if n.orelse:
                    out.append(f"{pad}}} else {{")
                    out += self.lines(n.orelse, depth + 1)
                out.append(f"{pad}}}")
            else:
                out += self.run(n, depth)
        return out

    def loop(self, n: For, depth, vector: bool = True) -> list[str]:
        """The loop as written, or, for a vector-tagged loop that fits (opencl_vector.py), as vector code for
        full tiles beside it."""
        lines = self.vector_loop(n, depth) if vector else None
        if lines is not None:
            return lines
        pad = self.indent_unit * depth
        out = [f"{pad}#pragma unroll 1"] if self.keep_loops else []
        out.append(f"{pad}for (long {n.var} = {self.expr(n.init)}; {self.expr(n.cond)}; {n.var} += {n.step}) {{")
        out += self.lines(n.body, depth + 1)
        out.append(f"{pad}}}")
        return out

    def run(self, n: Run, depth) -> list[str]:
        pad = self.indent_unit * depth
        ins = self.model.instruction(n.instruction)
        self.current_run = n
        out = [f"{pad}{{  /* {ins.id}, line {ins.line} */"]
        for name, value in n.bindings:
            out.append(f"{pad}{self.indent_unit}const long {name} = {self.expr(value)};")
        body = f"{self.expr(ins.assignee)} = {self.expr(ins.expression)};"
        if ins.predicates:
            cond = " && ".join(p if want else f"!{p}" for p, want in ins.predicates)
            body = f"if ({cond}) {body}"
        out.append(f"{pad}{self.indent_unit}{body}")
        out.append(f"{pad}}}")
        return out

    # -- kernels ----------------------------------------------------------------------------------------
    def params(self) -> str:
        parts = []
        for name in self.arrays:
            ndim = self.ndim(name)
            parts.append(f"__global {C_TYPES[self.types[name]]} *{self.restrict}{name}")
            parts += [f"long {name}_shape{d}" for d in range(ndim)]
            parts += [f"long {name}_stride{d}" for d in range(ndim)]
            parts.append(f"long {name}_off")
        for name in self.scalars:
            parts.append(f"{C_TYPES[self.types[name]]} {name}")
        parts += ["__global long *pj_scal", "__global int *pj_err", "__global long *pj_part"]
        return ", ".join(parts)

    def ndim(self, name) -> int:
        a = self.model.argument(name)
        return a.ndim if a is not None else len(self.model.temporary(name).shape)

    def phase_sums(self, dims) -> tuple[int, ...]:
        """Scratch slots of the fastmath sums an NDRange phase accumulates (each work-item a partial sum)."""
        if not dims or not self.model.fastmath:
            return ()
        runs = [r.instruction for r in runs_of(dims[-1].body)]
        sums = loop_sums(self.model, runs)
        written = {self.model.instruction(r).assignee.name for r in runs
                   if isinstance(self.model.instruction(r).assignee, E.Var)}
        return tuple(k for k, s in enumerate(self.slots) if s in sums and s in written)

    def kernel(self, name: str, nodes, dims: tuple[For, ...] = (), sums: tuple[int, ...] = ()) -> str:
        """`sums`: the phase_sums(dims) of an NDRange phase."""
        out = [f"__kernel void {name}({self.params()})", "{", self.ERROR_FLAG]
        for k, s in enumerate(self.slots):
            c = C_TYPES[self.types[s]]
            start = "0" if k in sums else f"*(__global {c} *)(pj_scal + {k})"
            out.append(f"    {c} {s} = {start};")
        if dims:
            for k, f in enumerate(dims):  # the innermost loop is dimension 0: neighbouring work-items, which
                # GPUs group into warps, then touch neighbouring elements (coalesced accesses)
                axis = len(dims) - 1 - k
                out.append(f"    const long {f.var} = {self.expr(f.init)} + (long)get_global_id({axis}) * {f.step};")
                out.append(f"    if (!({self.expr(f.cond)})) return;")
            out += self.lines(dims[-1].body, 1)
            if sums:  # this work-item's partial sums; items that returned above leave zeros
                out.append("    const long pj_gid = (long)get_global_id(0) + (long)get_global_size(0) * "
                           "((long)get_global_id(1) + (long)get_global_size(1) * (long)get_global_id(2));")
                for r, k in enumerate(sums):
                    c = C_TYPES[self.types[self.slots[k]]]
                    out.append(f"    *(__global {c} *)(pj_part + pj_gid * {len(sums)} + {r}) = {self.slots[k]};")
        else:
            # a single work-item runs the program in order: NVIDIA's compiler (driver 580) unrolled the
            # loops of one such kernel into code that never finished (fuzz seed 103, program 366); its
            # loops stay as written (the schedule's own unroll= hints are applied before this)
            self.keep_loops = True
            try:
                out += self.lines(nodes, 1)
            finally:
                self.keep_loops = False
            for k, s in enumerate(self.slots):
                out.append(f"    *(__global {C_TYPES[self.types[s]]} *)(pj_scal + {k}) = {s};")
        out += [self.ERROR_STORE, "}"]
        return "\n".join(out)

    def preamble(self, needs_fp64: bool) -> str:
        parts = []
        if needs_fp64:
            parts.append("#pragma OPENCL EXTENSION cl_khr_fp64 : enable")
        if not self.model.fastmath:
            parts.append("#pragma OPENCL FP_CONTRACT OFF")
        parts += [_LAST_STRIDE, _CHECK]
        ints = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
        floats = ["float32"] + (["float64"] if needs_fp64 else [])
        for t in ints:
            template = _HELPERS_INT if t in UNSIGNED else _HELPERS_UINT
            parts.append(template.format(T=C_TYPES[t], U=UNSIGNED.get(t, C_TYPES[t])))
        for t in floats:
            parts.append(_HELPERS_FLOAT.format(T=C_TYPES[t]))
        for t in ints + floats:
            c = C_TYPES[t]
            parts.append(f"{c} pj_pymin_{c}({c} a, {c} b) {{ return b < a ? b : a; }}")
            parts.append(f"{c} pj_pymax_{c}({c} a, {c} b) {{ return b > a ? b : a; }}")
        return "\n".join(parts)

    def program(self) -> OpenCLProgram:
        phases, kernels = [], []
        wanted = prefetches(self.model)
        done: set[str] = set()
        for nodes, dims in split_phases(self.tree):
            name = f"{self.model.name}_p{len(phases)}"
            nest = find_group_nest(self.model, dims[0]) if dims else None
            sums = self.phase_sums(dims)
            if nest is not None:
                if sums:
                    raise ScheduleError("fastmath sums inside a loop nest mapped to OpenCL work-groups are not "
                                        "supported", hint="keep the sum's loop out of the work-group split, or "
                                        "use parallel= on one loop without splitting it into work-groups")
                loops = {f.name for f in nest.between}
                boxes = [footprint(self.model, nest, a, lp) for a, lp in wanted.items() if lp in loops]
                done |= {b.array for b in boxes}
                kernels.append(self.group_kernel(name, nest, boxes))
                phases.append(Phase(name, tuple(a.group for a in nest.axes), tuple(a.size for a in nest.axes)))
                continue
            kernels.append(self.kernel(name, nodes, dims, sums))
            phases.append(Phase(name, dims, (), sums))
        for array, loop in wanted.items():
            if array not in done:
                raise ScheduleError(f"prefetch={{'{array}': '{loop}'}} needs loop `{loop}` to lie in a loop nest "
                                    "mapped to OpenCL work-groups, between the work-group loops and the "
                                    "work-item loops (both halves of each split loop parallel, e.g. tile={'i': "
                                    "16, 'j': 16, 'k': 16}, parallel=('i_outer', 'j_outer', 'i_inner', "
                                    "'j_inner')); this schedule has none there")
        body = "\n\n".join(kernels)
        needs_fp64 = "double" in body or any(t == "float64" for t in self.types.values())
        source = self.preamble(needs_fp64) + "\n\n" + body + "\n"
        return OpenCLProgram(source, tuple(phases), self.arrays, self.scalars, self.slots, needs_fp64)


def _constant(e):
    while isinstance(e, E.Cast):
        e = e.operand
    return e.value if isinstance(e, E.Const) else None


def _ndrange(node) -> tuple[For, ...]:
    """The perfectly nested parallel loops at the top of `node` that become NDRange dimensions (at most 3)."""
    dims: list[For] = []
    while isinstance(node, For) and node.tag == "parallel" and len(dims) < 3 \
            and trip_form(node, {f.var for f in dims}):
        dims.append(node)
        node = node.body[0] if len(node.body) == 1 else None
    return tuple(dims)


def split_phases(tree: LoopTree) -> list[tuple[tuple, tuple[For, ...]]]:
    """The kernel's phases in order: (nodes, ()) runs serially; ((), loops) runs `loops` in parallel."""
    out, pending = [], []
    for node in tree.body:
        dims = _ndrange(node)
        if dims:
            if pending:
                out.append((tuple(pending), ()))
                pending = []
            out.append(((), dims))
        else:
            pending.append(node)
    if pending:
        out.append((tuple(pending), ()))
    return out


class NoAliasEmitter(OpenCLEmitter):
    """For calls whose arrays do not overlap: `restrict` lets the OpenCL compiler keep elements in registers."""

    restrict = "restrict "


def emit_opencl(model: KernelModel, tree: LoopTree, *, arrays_overlap: bool = True) -> OpenCLProgram:
    return (OpenCLEmitter if arrays_overlap else NoAliasEmitter)(model, tree).program()
