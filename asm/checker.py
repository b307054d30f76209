"""Independent verification of a register allocation by abstract simulation.

Every location (physical register or stack slot) carries the set of virtual values it currently
holds; original instructions must find each used virtual in the location their rewritten operand
names, and definitions/clobbers update the sets.  Inserted copies (spill loads/stores) move sets,
elided copies add the destination to the source's location.  At control-flow joins the sets are
intersected, iterated to a fixpoint.  Also checked: callee-saved registers written are saved, rsp is
16-byte aligned in the body, and no virtual register is left.
"""

from __future__ import annotations

from .effects import is_register_copy, register_effects
from .operands import GP, Instr, Mem, Reg
from .regalloc import AllocatedProgram, Elided, build_cfg, has_calls


class AllocationCheckError(AssertionError):
    pass


def _loc(op):
    if type(op) is Reg:
        return (op.cls, op.num)
    if type(op) is Mem and op.base is not None and op.base.kind == GP and op.base.num == 4 and op.index is None:
        return ("slot", op.disp)
    return None


def _step_effect(state: dict, origin: int, it, program, problems: list, where: str):
    if type(it) is Elided:
        it = it.instr
    if type(it) is not Instr:
        return
    if origin < 0:
        if it.mnemonic in ("mov", "movups", "vmovups", "movaps", "vmovaps", "kmovq") and len(it.operands) == 2:
            d, s = _loc(it.operands[0]), _loc(it.operands[1])
            if d is not None and s is not None:
                state[d] = set(state.get(s, ()))
                return
        for r in register_effects(it)[1]:
            state[(r.cls, r.num)] = set()
        return
    orig = program.items[origin]
    if (orig.mnemonic != it.mnemonic and not _unaligned_fold(orig, it)) or len(orig.operands) != len(it.operands):
        problems.append(f"{where}: {it} does not implement {orig}")
        return
    pairs = []
    for o, a in zip(orig.operands, it.operands):
        if type(o) is Reg:
            pairs.append((o, a))
        elif type(o) is Mem:
            if type(a) is not Mem or (o.base is None) != (a.base is None) or (o.index is None) != (a.index is None):
                problems.append(f"{where}: memory operand {a} does not match {o}")
                return
            pairs.extend(p for p in ((o.base, a.base), (o.index, a.index)) if p[0] is not None)
    if orig.mask is not None:
        pairs.append((orig.mask, it.mask))
    mapping: dict = {}
    for o, a in pairs:
        slot = _loc(a) if type(a) is Mem and o.virtual else None
        if slot is not None:  # a spilled operand used in place from its stack slot
            mapping.setdefault(o.key, set()).add(slot)
            continue
        if type(a) is not Reg or a.virtual or a.size != o.size or a.kind != o.kind:
            problems.append(f"{where}: {a} cannot stand for {o} in {orig}")
            return
        if not o.virtual and o != a:
            problems.append(f"{where}: fixed register {o} became {a}")
        mapping.setdefault(o.key, set()).add((a.cls, a.num))
    uses, defs = register_effects(orig)
    for u in uses:
        if u.virtual:
            for loc in mapping.get(u.key, ()):
                if u.key not in state.get(loc, ()):
                    problems.append(f"{where}: {orig} reads {u} from {loc}, which holds "
                                    f"{sorted(state.get(loc, ()))}")
    copied: set = set()
    if is_register_copy(orig):
        for loc in mapping.get(orig.operands[1].key, ()):
            copied = set(state.get(loc, ()))
    for d in defs:
        if d.virtual:
            _kill(state, d)
            for loc in mapping.get(d.key, ()):
                state[loc] = {d.key} | copied
        else:
            state[(d.cls, d.num)] = set()


# aligned vector moves and their unaligned twins (same semantics but for the alignment check)
_UNALIGNED = {"vmovaps": "vmovups", "vmovapd": "vmovupd", "vmovdqa": "vmovdqu", "vmovdqa32": "vmovdqu32",
              "vmovdqa64": "vmovdqu64", "movaps": "movups", "movapd": "movupd", "movdqa": "movdqu"}


def _unaligned_fold(orig, it) -> bool:
    """An aligned move whose spilled operand became a stack slot turns unaligned (slots are only 8-byte
    aligned in leaf functions): the same instruction otherwise."""
    return _UNALIGNED.get(orig.mnemonic) == it.mnemonic and any(_loc(a) is not None and type(a) is Mem
                                                                 for a in it.operands)


def _kill(state, reg):
    for vals in state.values():
        vals.discard(reg.key)


def _entry_state(b, preds, out_states):
    ins = [out_states[p] for p in preds[b] if out_states[p] is not None]
    if b == 0:
        return {}
    if not ins:
        return None
    state = {loc: set(v) for loc, v in ins[0].items()}
    for other in ins[1:]:
        for loc in list(state):
            state[loc] &= other.get(loc, set())
    return state


def check_allocation(program, allocated: AllocatedProgram) -> None:
    """Raise ``AllocationCheckError`` listing every problem found; return None when sound."""
    if allocated.program is not program:
        raise AllocationCheckError("allocation belongs to another program")
    steps = allocated.steps
    items = [it.instr if type(it) is Elided else it for _, it in steps]
    bounds, succs = build_cfg(items)
    preds: list = [[] for _ in bounds]
    for b, ss in enumerate(succs):
        for s in ss:
            preds[s].append(b)
    out_states: list = [None] * len(bounds)
    changed = True
    while changed:
        changed = False
        for b, (s, e) in enumerate(bounds):
            state = _entry_state(b, preds, out_states)
            if state is None:
                continue
            for i in range(s, e):
                _step_effect(state, steps[i][0], steps[i][1], program, [], "")
            if out_states[b] != state:
                out_states[b] = state
                changed = True
    problems: list = []
    for b, (s, e) in enumerate(bounds):  # final pass over the fixpoint collects the problems
        state = _entry_state(b, preds, out_states)
        if state is None:
            continue
        for i in range(s, e):
            _step_effect(state, steps[i][0], steps[i][1], program, problems, f"step {i}")
    callee = {r.num for r in program.abi.callee_saved_gp}
    saved = {r.num for r in allocated.saved}
    for _, it in steps:
        if type(it) is Instr:
            if any(type(o) is Reg and o.virtual for o in it.operands):
                problems.append(f"virtual register left in {it}")
            for r in register_effects(it)[1]:
                if r.kind == GP and r.num in callee and r.num not in saved and it.mnemonic != "pop":
                    problems.append(f"{it} writes callee-saved {r} without saving it")
    if has_calls(program) and (8 + 8 * len(allocated.saved) + allocated.frame_size) % program.abi.stack_align:
        problems.append("stack is not aligned in the function body")
    if problems:
        raise AllocationCheckError("\n".join(problems[:50]))
