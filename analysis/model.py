"""The polyhedral kernel model: immutable, printable, the one core type of analysis/.

A kernel is a set of instructions, each with an isl domain (its loop iterators as set dimensions, array
sizes and integer arguments as parameters), an assignee and an expression, the predicates guarding it, and
its position in the original program order (`betas`: the 2d+1 schedule's constant dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import islpy as isl

from .errors import Loc
from .expr import Expr

_SCHEDULE_MAPS: dict = {}  # see KernelModel.instruction_schedule_map


@dataclass(frozen=True)
class Argument:
    name: str
    kind: str  # "array" | "scalar"
    dtype: str
    ndim: int = 0
    layout: str = "C"
    weak: bool = False

    def __str__(self) -> str:
        if self.kind == "array":
            return f"{self.name}: {self.dtype}[{', '.join([':'] * self.ndim)}] layout={self.layout}"
        return f"{self.name}: {self.dtype}{' (python scalar)' if self.weak else ''}"


@dataclass(frozen=True)
class Param:
    """An isl parameter and where its value comes from at call time: an int argument or an array size."""

    name: str
    source: Expr  # Var(arg) or Shape(array, dim)


@dataclass(frozen=True)
class Temporary:
    name: str
    dtype: str
    shape: tuple[str, ...] = ()  # parameter names; () for scalars
    private_to: str | None = None  # loop name a scalar is privatized in, if any


@dataclass(frozen=True)
class Access:
    array: str
    index: tuple[Expr, ...]
    write: bool
    affine: bool  # the relation is exact; otherwise it covers the whole array
    checked: bool  # bounds checked in generated code rather than before the call
    relation: isl.Map = field(compare=False)


@dataclass(frozen=True)
class LoopInfo:
    """One loop of the program: `key` is the betas prefix its instructions share."""

    name: str
    key: tuple[int, ...]
    direction: int  # +1, or -1 for loops that run downwards
    tag: str | None = None  # "parallel" when written with prange; the model's `tags` are what counts
    line: int = 0


@dataclass(frozen=True)
class SchedDim:
    """One dimension of an instruction's schedule: a loop (named) or a position in a sequence (loop=None).

    `expr` is an isl quasi-affine expression over the instruction's iterators (a constant for sequences).
    """

    expr: str
    loop: str | None = None

    def __str__(self) -> str:
        return self.expr if self.loop is None or self.loop == self.expr else f"{self.loop}:{self.expr}"


@dataclass(frozen=True)
class Instruction:
    id: str
    assignee: Expr
    expression: Expr
    loops: tuple[str, ...]
    domain: isl.Set = field(compare=False)
    betas: tuple[int, ...]
    predicates: tuple[tuple[str, bool], ...] = ()
    accesses: tuple[Access, ...] = ()
    loc: Loc | None = field(default=None, compare=False)

    @property
    def line(self) -> int:
        return self.loc.line if self.loc else 0

    def loop_keys(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.betas[: d + 1] for d in range(len(self.loops)))


@dataclass(frozen=True)
class Dependence:
    kind: str  # "flow" | "anti" | "output"
    source: str
    sink: str
    array: str
    relation: isl.Map = field(compare=False)

    def __str__(self) -> str:
        return f"{self.kind:6s} {self.source} -> {self.sink} on {self.array}: {self.relation}"


@dataclass(frozen=True)
class ParamCheck:
    """A call-time check: if the parameter values lie in `violation`, raise `error` with `message`."""

    violation: isl.Set = field(compare=False)
    error: str  # "IndexError" | "ValueError"
    message: str


@dataclass(frozen=True)
class KernelModel:
    name: str
    arguments: tuple[Argument, ...]
    params: tuple[Param, ...]
    context: isl.Set = field(compare=False)
    instructions: tuple[Instruction, ...]
    temporaries: tuple[Temporary, ...]
    loops: tuple[LoopInfo, ...]
    dependences: tuple[Dependence, ...] = ()
    checks: tuple[ParamCheck, ...] = ()
    return_value: str | None = None  # a scalar temporary
    return_weak: bool = False
    fastmath: bool = False
    schedule: tuple[tuple[str, tuple[SchedDim, ...]], ...] = ()  # instruction id -> its schedule dims
    tags: tuple[tuple[str, str], ...] = ()  # loop name -> "parallel" | "vector" | "unroll"
    arrays_overlap: bool = False  # built for a call whose array arguments may share memory (program order)

    def loop_tag(self, name: str) -> str | None:
        return next((t for n, t in self.tags if n == name), None)

    def schedule_of(self, iid: str) -> tuple[SchedDim, ...]:
        return next(dims for i, dims in self.schedule if i == iid)

    def loop_names(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for _, dims in self.schedule:
            for d in dims:
                if d.loop is not None:
                    seen.setdefault(d.loop)
        return tuple(seen)

    def instruction(self, iid: str) -> Instruction:
        for ins in self.instructions:
            if ins.id == iid:
                return ins
        raise KeyError(iid)

    def loop(self, key: tuple[int, ...]) -> LoopInfo:
        for lp in self.loops:
            if lp.key == key:
                return lp
        raise KeyError(key)

    def argument(self, name: str) -> Argument | None:
        return next((a for a in self.arguments if a.name == name), None)

    def temporary(self, name: str) -> Temporary | None:
        return next((t for t in self.temporaries if t.name == name), None)

    def written_arrays(self) -> tuple[str, ...]:
        names = {a.array for ins in self.instructions for a in ins.accesses if a.write}
        return tuple(a.name for a in self.arguments if a.kind == "array" and a.name in names)

    def original_schedule(self) -> tuple[tuple[str, tuple[SchedDim, ...]], ...]:
        """Program order: S[i, j] -> [b0, ±i, b1, ±j, b2] (the 2d+1 form, downward loops negated)."""
        out = []
        for ins in self.instructions:
            dims = []
            for d, b in enumerate(ins.betas):
                dims.append(SchedDim(str(b)))
                if d < len(ins.loops):
                    sign = self.loop(ins.betas[: d + 1]).direction
                    v = ins.loops[d]
                    dims.append(SchedDim(v if sign > 0 else f"-{v}", v))
            out.append((ins.id, tuple(dims)))
        return tuple(out)

    def schedule_width(self) -> int:
        return max((len(dims) for _, dims in self.schedule or self.original_schedule()), default=0)

    def instruction_schedule_map(self, iid: str, width: int | None = None, domain: isl.Set | None = None
                                 ) -> isl.Map:
        """S[i, j] -> [time] for one instruction, restricted to its domain (or to `domain`), padded with
        zeros to `width`."""
        dims = dict(self.schedule or self.original_schedule())[iid]
        width = self.schedule_width() if width is None else width
        ins = self.instruction(iid)
        domain = ins.domain if domain is None else domain
        exprs = [d.expr for d in dims] + ["0"] * (width - len(dims))
        # the legality checks ask for the same maps many times per compilation (each candidate schedule,
        # each dependence): built once per (instruction domain, schedule row). isl objects are immutable.
        key = (iid, tuple(exprs), tuple(ins.loops), id(domain))
        hit = _SCHEDULE_MAPS.get(key)
        if hit is not None and hit[0] is domain:
            return hit[1]
        space = domain.get_space()
        params = ", ".join(space.get_dim_name(isl.dim_type.param, k) for k in range(space.dim(isl.dim_type.param)))
        m = isl.Map(f"[{params}] -> {{ {ins.id}[{', '.join(ins.loops)}] -> [{', '.join(exprs)}] }}")
        m = m.intersect_domain(domain)
        if len(_SCHEDULE_MAPS) >= 512:
            _SCHEDULE_MAPS.clear()
        _SCHEDULE_MAPS[key] = (domain, m)  # the domain kept alive, so its id is not reused
        return m

    def schedule_map(self) -> isl.UnionMap:
        """The schedule as a union map restricted to the domains, padded with zeros to equal length."""
        width = self.schedule_width()
        result = None
        for ins in self.instructions:
            u = isl.UnionMap.from_map(self.instruction_schedule_map(ins.id, width))
            result = u if result is None else result.union(u)
        return result if result is not None else isl.UnionMap("{ }")

    def __str__(self) -> str:
        return format_model(self)


def format_model(m: KernelModel) -> str:
    """A stable text form, à la Loo.py's kernel printout."""
    bar = "-" * 78
    out = [bar, f"KERNEL: {m.name}", bar, "ARGUMENTS:"]
    out += [f"  {a}" for a in m.arguments]
    if m.params:
        out.append("PARAMETERS:")
        out += [f"  {p.name} = {p.source}" for p in m.params]
    out.append(bar)
    out.append("DOMAINS:")
    for ins in m.instructions:
        out.append(f"  {ins.domain}")
    if m.temporaries:
        out.append(bar)
        out.append("TEMPORARIES:")
        for t in m.temporaries:
            shape = f"[{', '.join(t.shape)}]" if t.shape else "scalar"
            priv = f" private to loop {t.private_to}" if t.private_to else ""
            out.append(f"  {t.name}: {t.dtype} {shape}{priv}")
    out.append(bar)
    out.append("LOOPS:")
    for lp in m.loops:
        out.append(f"  {lp.name} at {list(lp.key)}{' downwards' if lp.direction < 0 else ''}")
    if m.schedule and m.schedule != m.original_schedule():
        out.append(bar)
        out.append("SCHEDULE:")
        out += [f"  {iid}: [{', '.join(map(str, dims))}]" for iid, dims in m.schedule]
    if m.tags:
        out.append("TAGS: " + ", ".join(f"{n}={t}" for n, t in m.tags))
    out.append(bar)
    out.append("INSTRUCTIONS:")
    for ins in m.instructions:
        preds = "".join(f" if {'' if want else 'not '}{p}" for p, want in ins.predicates)
        loops = ", ".join(ins.loops)
        out.append(f"  {ins.id} [{loops}] line {ins.line}: {ins.assignee} <- {ins.expression}{preds}")
    if m.dependences:
        out.append(bar)
        out.append("DEPENDENCES:")
        out += [f"  {d}" for d in m.dependences]
    if m.return_value:
        out.append(bar)
        out.append(f"RETURNS: {m.return_value}")
    out.append(bar)
    return "\n".join(out)
