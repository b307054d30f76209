"""Loop code: the kernel model's schedule through isl's AST builder into a small printable loop tree."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import islpy as isl

from ..analysis import expr as E
from ..analysis.model import KernelModel
from .ast_audit import Audit, has_strides, hull_maps, order_kept
from .tails import base_id, separated_schedule, union_maps


@dataclass(frozen=True)
class Node:
    pass


@dataclass(frozen=True)
class For(Node):
    var: str  # the AST iterator, e.g. c1
    init: E.Expr
    cond: E.Expr  # evaluated before each iteration, over var
    step: int
    body: tuple[Node, ...]
    name: str  # the loop's name in the schedule (source name, or one made by split/tile)
    tag: str | None = None


@dataclass(frozen=True)
class If(Node):
    cond: E.Expr
    then: tuple[Node, ...]
    orelse: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Run(Node):
    """One instance of an instruction; `bindings` give its loop variables in terms of AST iterators."""

    instruction: str
    bindings: tuple[tuple[str, E.Expr], ...]


@dataclass(frozen=True)
class LoopTree:
    body: tuple[Node, ...]

    def __str__(self) -> str:
        return format_tree(self.body)


def format_tree(nodes, depth: int = 0) -> str:
    pad = "  " * depth
    out = []
    for n in nodes:
        if isinstance(n, For):
            tag = f"  # {n.name}{' ' + n.tag if n.tag else ''}"
            out.append(f"{pad}for {n.var} = {n.init}; {n.cond}; {n.var} += {n.step}:{tag}")
            out.append(format_tree(n.body, depth + 1))
        elif isinstance(n, If):
            out.append(f"{pad}if {n.cond}:")
            out.append(format_tree(n.then, depth + 1))
            if n.orelse:
                out.append(f"{pad}else:")
                out.append(format_tree(n.orelse, depth + 1))
        else:
            binds = ", ".join(f"{k}={v}" for k, v in n.bindings)
            out.append(f"{pad}{n.instruction}({binds})")
    return "\n".join(x for x in out if x)


_OPS = {
    isl.ast_expr_op_type.add: ("bin", "add"), isl.ast_expr_op_type.sub: ("bin", "sub"),
    isl.ast_expr_op_type.mul: ("bin", "mul"), isl.ast_expr_op_type.fdiv_q: ("bin", "floordiv"),
    isl.ast_expr_op_type.pdiv_q: ("bin", "floordiv"), isl.ast_expr_op_type.div: ("bin", "floordiv"),
    isl.ast_expr_op_type.pdiv_r: ("bin", "mod"), isl.ast_expr_op_type.zdiv_r: ("bin", "mod"),
    isl.ast_expr_op_type.eq: ("cmp", "eq"), isl.ast_expr_op_type.le: ("cmp", "le"),
    isl.ast_expr_op_type.lt: ("cmp", "lt"), isl.ast_expr_op_type.ge: ("cmp", "ge"),
    isl.ast_expr_op_type.gt: ("cmp", "gt"), isl.ast_expr_op_type.and_: ("bool", "and"),
    isl.ast_expr_op_type.or_: ("bool", "or"), isl.ast_expr_op_type.and_then: ("bool", "and"),
    isl.ast_expr_op_type.or_else: ("bool", "or"),
}


def convert_expr(e: isl.AstExpr) -> E.Expr:
    """An isl AST expression as our Expr (integer arithmetic with Python's floor semantics)."""
    t = e.get_type()
    if t == isl.ast_expr_type.id:
        return E.Var(e.get_id().get_name())
    if t == isl.ast_expr_type.int:
        return E.Const(int(e.get_val().to_python()))
    op = e.get_op_type()
    args = [convert_expr(e.get_op_arg(k)) for k in range(e.get_op_n_arg())]
    if op == isl.ast_expr_op_type.minus:
        return E.UnOp("neg", args[0])
    if op in (isl.ast_expr_op_type.min, isl.ast_expr_op_type.max):
        return E.Call("min" if op == isl.ast_expr_op_type.min else "max", tuple(args))
    if op in (isl.ast_expr_op_type.select, isl.ast_expr_op_type.cond):
        return E.Select(args[0], args[1], args[2])
    kind, name = _OPS[op]
    if kind == "bin":
        return E.BinOp(name, args[0], args[1])
    if kind == "cmp":
        return E.Compare(name, args[0], args[1])
    return E.BoolOp(name, args[0], args[1])


def _ast(model: KernelModel, maps: dict, origin: list, schedule: isl.UnionMap, names: list | None = None,
         audit: Audit | None = None):
    """isl's AST for `schedule`, with the unroll options of the model's tags (`names`: the loop iterators'),
    `audit` called at every statement placed."""
    build = isl.AstBuild.from_context(model.context)
    if audit is not None:
        build = build.set_at_each_domain(audit)[0]
    if names:
        ids = isl.IdList.alloc(schedule.get_ctx(), len(names))
        for name in names:
            ids = ids.add(isl.Id(name, context=schedule.get_ctx()))
        build = build.set_iterators(ids)
    options = _ast_options(model, maps, origin)
    if options is not None:
        build = build.set_options(options)
    try:
        return build.node_from_schedule_map(schedule)
    except isl.Error as e:
        if options is None or "unroll" not in str(e):
            raise
        from ..analysis.errors import ScheduleError
        loops = ", ".join(f"`{name}`" for name, tag in model.tags if tag == "unroll")
        raise ScheduleError(f"unroll= cannot fully unroll loop {loops}: its trip count is not a constant "
                            "(isl finds no constant bound)", None,
                            "give a factor instead, e.g. unroll={'k': 4}") from None


# isl operations allowed for the AST of a separated schedule before falling back to guarded tails. Counted in
# isl's own units, so the cut is the same on every machine: gemm's hints (two separated splits, README) need
# 5e6..1e7 (~3 s here); the separations the fuzzer found taking minutes need far more.
SEPARATED_AST_QUOTA = 15_000_000


@contextlib.contextmanager
def _operation_quota(ctx: isl.Context, limit: int):
    """isl calls inside the block fail with isl.Error after `limit` operations."""
    ctx.set_max_operations(limit)
    ctx.reset_operations()
    try:
        yield
    finally:
        ctx.set_max_operations(0)  # 0: no limit
        ctx.reset_operations()


def _ast_options(model: KernelModel, maps: dict, origin: list) -> isl.UnionMap | None:
    """isl AST build options: `unroll` for the schedule dimensions of loops tagged unroll (`origin` maps
    the built schedule's dimensions to the model's, see tails.py)."""
    result = None
    if None in origin:  # loops outside a separated split stay single loops (isl would otherwise copy them
        # per parameter case, e.g. "a full tile exists", hiding a parallel loop under an if)
        space = f"{{ [{', '.join(f't{k}' for k in range(len(origin)))}] -> atomic[d] : 0 <= d < {origin.index(None)} }}"
        result = isl.UnionMap(space)
    for name, tag in model.tags:
        if tag != "unroll":
            continue
        for iid, dims in model.schedule or model.original_schedule():
            for d, dim in enumerate(dims):
                if dim.loop == name:
                    times = None
                    for piece, m in maps.items():
                        if base_id(piece) == iid:
                            times = m.range() if times is None else times.union(m.range())
                    if times is None:  # every piece of the statement is empty (tails.py drops those)
                        continue
                    opt = isl.Map.from_domain_and_range(times, isl.Set(f"{{ unroll[{origin.index(d)}] }}"))
                    opt = isl.UnionMap.from_map(opt)
                    result = opt if result is None else result.union(opt)
    return result


def _without_constant_dims(model: KernelModel, maps: dict, width: int) -> tuple[dict, list]:
    """The maps without the schedule dimensions that hold one constant for every instruction (the sequence
    positions of a single nest): they order nothing, and isl's AST builder takes about twice as long with
    them (gemm's 7 dimensions: 12 ms; 4: 6 ms). `origin` maps the remaining dimensions to the model's."""
    rows = [tuple(d.expr for d in dims) + ("0",) * (width - len(dims))
            for _, dims in model.schedule or model.original_schedule()]
    fixed = [d for d in range(width) if len({r[d] for r in rows}) == 1 and rows[0][d].lstrip("-").isdigit()]
    if not fixed or len(fixed) == width:
        return maps, list(range(width))
    out = {}
    for iid, m in maps.items():
        for d in reversed(fixed):
            m = m.project_out(isl.dim_type.out, d, 1)
        out[iid] = m
    return out, [d for d in range(width) if d not in fixed]


def _order_kept(audit: Audit) -> bool:
    try:
        return order_kept(audit)
    except isl.Error:  # cannot tell: the guarded rebuild is right either way
        return False


def _names(origin: list) -> list | None:
    return [f"c{d}" for d in origin] if None not in origin and origin != list(range(len(origin))) else None


def _annotation(node) -> str | None:
    try:
        annotation = node.get_annotation()
    except isl.Error:  # none
        return None
    return None if annotation is None else annotation.get_name()


def build_loop_tree(model: KernelModel, schedule: isl.UnionMap | None = None) -> LoopTree:
    """Loop code for `model` under `schedule` (default: the original program order)."""
    width = model.schedule_width()
    plain = {ins.id: model.instruction_schedule_map(ins.id, width) for ins in model.instructions}
    maps, origin = plain, list(range(width))
    if schedule is None:
        if any(tag == "separate" for _, tag in model.tags):
            maps, origin = separated_schedule(model, plain)
        else:
            maps, origin = _without_constant_dims(model, plain, width)
        schedule = union_maps(maps) if maps else isl.UnionMap("{ }")
    if schedule.is_empty():
        return LoopTree(())
    # iterators keep the number of the model's schedule dimension where the built schedule drops some
    names = _names(origin)

    def ast(maps, origin, schedule, names, exact=None):
        audit = Audit(maps, names, exact) if exact is not None or has_strides(maps) else None
        return _ast(model, maps, origin, schedule, names, audit), audit

    try:
        if None in origin:
            with _operation_quota(schedule.get_ctx(), SEPARATED_AST_QUOTA):
                node, audit = ast(maps, origin, schedule, None)
        else:
            node, audit = ast(maps, origin, schedule, names)
    except isl.Error:
        if None not in origin:
            raise
        # isl's AST builder refuses some separations (fuzz seed 802 program 74: a reversed strided loop
        # unrolled by 8) and takes minutes over others (seed 1003 program 210: split by 8, unrolled, under a
        # strided reversed loop); the guarded tails run the same instances in the same order
        maps, origin = plain, list(range(width))
        node, audit = ast(maps, origin, union_maps(maps), None)
    guards = {}
    if audit is not None and (audit.failed is not None or (audit.shifted and not _order_kept(audit))):
        # isl placed a statement with strides off its schedule (ast_audit.py): stride-free hulls, guarded
        maps, exact = hull_maps(model, width)
        maps, origin = _without_constant_dims(model, maps, width)
        names = _names(origin)
        node, audit = ast(maps, origin, union_maps(maps), names, exact)
        if audit.shifted or audit.failed is not None:
            raise RuntimeError(f"isl's AST places instructions of {model.name} off their schedule "
                               "even over stride-free domains") from audit.failed
        guards = audit.guards
    dim_of = {f"c{d}": d for d in origin} if names else {f"c{k}": d for k, d in enumerate(origin)}
    instructions = {ins.id: ins for ins in model.instructions}
    schedules = dict(model.schedule or model.original_schedule())

    def first_run(n):
        for x in n:
            if isinstance(x, Run):
                return x
            inner = first_run(x.body if isinstance(x, For) else x.then + x.orelse)
            if inner:
                return inner
        return None

    def convert(n: isl.AstNode) -> tuple[Node, ...]:
        t = n.get_type()
        if t == isl.ast_node_type.block:
            lst = n.block_get_children()
            return tuple(x for k in range(lst.n_ast_node()) for x in convert(lst.get_at(k)))
        if t == isl.ast_node_type.for_:
            var = n.for_get_iterator().get_id().get_name()
            body = convert(n.for_get_body())
            run = first_run(body)
            dims = schedules[run.instruction]
            d = dim_of.get(var)
            name = dims[d].loop if d is not None and d < len(dims) and dims[d].loop else var
            return (For(var, convert_expr(n.for_get_init()), convert_expr(n.for_get_cond()),
                        int(n.for_get_inc().get_val().to_python()), body, name, model.loop_tag(name)),)
        if t == isl.ast_node_type.if_:
            orelse = convert(n.if_get_else_node()) if n.if_has_else_node() else ()
            return (If(convert_expr(n.if_get_cond()), convert(n.if_get_then_node()), orelse),)
        if t == isl.ast_node_type.user:
            call = n.user_get_expr()
            iid = base_id(call.get_op_arg(0).get_id().get_name())
            ins = instructions[iid]
            args = [convert_expr(call.get_op_arg(k)) for k in range(1, call.get_op_n_arg())]
            run = Run(iid, tuple(zip(ins.loops, args)))
            guard = guards.get(_annotation(n)) if guards else None
            return (run,) if guard is None else (If(convert_expr(guard), (run,)),)
        if t == isl.ast_node_type.mark:
            return convert(n.mark_get_node())
        raise NotImplementedError(f"isl AST node {t}")

    return LoopTree(_sequential_where_scalars_escape(model, convert(node)))


def _sequential_where_scalars_escape(model: KernelModel, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    """A top-level parallel loop whose scalar locals are read by code isl placed after it (a statement of the
    loop's last iteration, split off as `if (...) S(i=n-2)`) runs sequentially: threads and work-items each
    keep their own copy of a scalar. Fastmath sums are exempt: the runtimes combine them."""
    from .legality import loop_sums
    out = list(nodes)
    for k, n in enumerate(out):
        if isinstance(n, For) and n.tag == "parallel":
            iids = [r.instruction for r in runs_of(n.body)]
            sums = loop_sums(model, iids) if model.fastmath else set()
            written = {a.name for a in _assignees(model, n.body) if isinstance(a, E.Var)} - sums
            if written & _reads(model, out[k + 1:]):
                tag = "vector" if (n.name, "vector") in model.tags else None
                out[k] = For(n.var, n.init, n.cond, n.step, n.body, n.name, tag)
    return tuple(out)


def runs_of(nodes):
    """The Run nodes under `nodes`, in order."""
    for n in nodes:
        if isinstance(n, For):
            yield from runs_of(n.body)
        elif isinstance(n, If):
            yield from runs_of(n.then + n.orelse)
        else:
            yield n


def _assignees(model: KernelModel, nodes):
    return [model.instruction(r.instruction).assignee for r in runs_of(nodes)]


def _reads(model: KernelModel, nodes) -> set[str]:
    names = set()
    for r in runs_of(nodes):
        ins = model.instruction(r.instruction)
        parts = [ins.expression] + ([] if isinstance(ins.assignee, E.Var) else [ins.assignee])
        names |= {x.name for e in parts for x in E.walk(e) if isinstance(x, E.Var)}
        names |= {p for p, _ in ins.predicates}
    return names
