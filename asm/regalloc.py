"""Register allocation in one call: ``allocate(program) -> AllocatedProgram``.

Liveness is computed over the control-flow graph (bitset dataflow, so loops are handled exactly) in
one backward walk that also collects the register effects (``liveness.analyse``); each value's live
set is a bitset of positions (use at 2i, def at 2i+1).  Physical registers named in the program
(arguments, returns, rdx:rax for div, cl for shifts) are values too and block their register where
live; call clobbers that no later instruction names only block their register at the call (no values:
fewer values make every phase cheaper).  Virtuals are assigned greedily in order of first position
(linear scan with lifetime holes), trying move hints first; when nothing is free the values of least
spill weight (reads and writes per live position; on ties the one ending last) are spilled whole to a
stack slot (64 bytes for zmm) and accessed through a scratch register of its class (preferably r11 and
xmm15, always ones the program does not name itself), which is only reserved when spilling is needed (at
once when more virtuals of a class are live at a block entry than it has registers, otherwise after an
assignment without it fails).  One per class: an instruction that touches more spilled values of a class
borrows registers it does not name (caller-saved GP, vectors 0-15), each saved to a frame slot of its own
before and restored after; only where no register can be borrowed (``ScratchShortage``) does the
assignment start over with two, then three, reserved.  The rewrite memoises substituted
operands (registers and addresses are tuples) and creates instructions only where operands change;
instructions touching spilled values go to ``spill.Spiller`` (per-pattern plans, folding into slot
operands, spill loads/stores built once per process).
Copies that end up between one register are elided.  The prologue saves exactly the callee-saved
registers written (prologue and epilogue steps are built once per process for each frame shape); the
frame keeps rsp 16-byte aligned at calls; vzeroupper precedes ``ret`` whenever ymm/zmm registers were
used.  Opmask virtuals spill too (8-byte slots, kmovq).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from operator import itemgetter

from .assembler import MachineCode, assemble
from .liveness import CLS as _CLS
from .liveness import FAST_SHAPES, analyse, build_cfg, fast_shapes
from .operands import GP, GP64_REGS, K_REGS, XMM, YMM, YMM_REGS, ZMM, ZMM_REGS, Bind, Instr, Mem, Reg
from .program import Program
from .spill import Spiller
from .spill_plans import _PHYS, SPILLED, Elided, ScratchShortage
from .spill_plans import phys as _phys


class AllocationError(RuntimeError):
    pass


_GP_ORDER = (0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 12, 13, 14, 15, 5)   # caller-saved first, never rsp
_GP_SCRATCH = (11, 10, 3, 9, 8, 12, 13, 14, 15)    # preference; 3 unused by fixed registers are taken
_VEC_SCRATCH = (15, 14, 13, 12, 11, 10, 9, 8)
_K_SCRATCH = (7, 6, 5, 4, 3, 2, 1)
_RSP = Reg(GP, 8, 4)
_VZEROUPPER = Instr("vzeroupper")
_VEC = (XMM, YMM, ZMM)
_SPILLED = SPILLED
_instr = partial(tuple.__new__, Instr)  # Instr from a 6-tuple without the Python-level __new__ (hot paths)
_mem = partial(tuple.__new__, Mem)  # Mem from a 7-tuple whose fields were validated already
_second = itemgetter(1)

__all__ = ["AllocatedProgram", "AllocationError", "Elided", "allocate", "build_cfg", "encode", "has_calls"]


@dataclass(frozen=True)
class AllocatedProgram:
    """Phase 2: physical registers, spill code, prologue/epilogue.  ``steps`` pairs each emitted
    item with the index of the original item it implements (-1: inserted by the allocator;
    item ``Elided``: a copy whose source and destination share a register)."""

    program: Program
    steps: tuple
    assignment: dict            # virtual number -> physical Reg (full width) or ('slot', offset, size)
    saved: tuple                # callee-saved registers pushed by the prologue
    frame_size: int             # bytes subtracted from rsp after the pushes
    spilled: tuple

    @property
    def items(self) -> tuple:
        items = tuple(map(_second, self.steps))
        if Elided in map(type, items):
            return tuple(it for it in items if type(it) is not Elided)
        return items

    def listing(self) -> str:
        lines = [f"; {self.program.name}: saved {[str(r) for r in self.saved]}, frame {self.frame_size}, "
                 f"spilled {len(self.spilled)}"]
        for origin, it in self.steps:
            if type(it) is Bind:
                lines.append(str(it))
            else:
                lines.append(f"    {it}" + ("" if origin >= 0 else "    ; alloc"))
        return "\n".join(lines)

    __str__ = listing


def allocate(program: Program) -> AllocatedProgram:
    """Assign every virtual register a physical register or a stack slot (see module docstring)."""
    items = program.items
    a = analyse(items, program.isa == "avx512")
    facts = _facts(a)
    assigned = None if _must_spill(program, a, facts) else _assign(program, a, facts, reserve=False)
    if assigned is not None:
        return _rewrite(program, items, a, assigned[0], assigned[1], facts)
    # pressure: reserve scratch registers and assign again; one per class first (each register kept out of
    # the pools spills more values; where a rewritten instruction needs more, the plans borrow registers it
    # does not name), more where instructions outside the plans need them (``ScratchShortage``)
    for width in (1, 2, 3):
        few = dict(facts, scratch={cls: pool[:width] for cls, pool in facts["scratch"].items()})
        assigned = _assign(program, a, few, reserve=True)
        try:
            return _rewrite(program, items, a, assigned[0], assigned[1], few)
        except ScratchShortage:
            if width == 3:
                raise


def _must_spill(program, a, facts) -> bool:
    """Whether more virtuals of one class are live at some block entry than the class has registers (then
    the assignment without scratch registers would fail: reserve them at once)."""
    by_cls = facts["virtual_bits"]
    limits = (("gp", by_cls["gp"], len(_GP_ORDER)), ("vec", by_cls["vec"], 32 if program.isa == "avx512" else 16),
              ("k", by_cls["k"], 7))
    for live in a.live_in:
        for _, virtuals, limit in limits:
            if (live & virtuals).bit_count() > limit:
                return True
    return False


def _facts(a) -> dict:
    """Fixed-register occupancy by class and number, scratch registers, the virtuals (ids, and as a bitset
    by class)."""
    fixed = {"gp": [0] * 16, "vec": [0] * 32, "k": [0] * 8}
    virtual_bits = {"gp": 0, "vec": 0, "k": 0}
    virtuals = []
    masks = a.masks
    defined = a.defined
    written_gp = set()
    for j, key in enumerate(a.keys):
        if key[2]:
            virtuals.append(j)
            virtual_bits[key[0]] |= 1 << j
        else:
            fixed[key[0]][key[1]] |= masks[j]
            if key[0] == "gp" and (defined >> j) & 1:
                written_gp.add(key[1])  # physical GP registers the program writes itself
    for cls, num, pos in a.clobbers:  # call clobbers that are no value (see liveness.analyse)
        fixed[cls][num] |= 1 << pos
        if cls == "gp":
            written_gp.add(num)
    scratch = {}
    for cls, prefs in (("gp", _GP_SCRATCH), ("vec", _VEC_SCRATCH), ("k", _K_SCRATCH)):
        free = [n for n in prefs if not fixed[cls][n]]  # never a register the program names itself
        scratch[cls] = tuple((free + [n for n in prefs if n not in free])[:3])
    return {"fixed": fixed, "written_gp": written_gp, "scratch": scratch, "virtuals": virtuals,
            "virtual_bits": virtual_bits}


def _assign(program, a, facts, reserve):
    """Greedy assignment in order of first position; None when spilling is needed but not reserved.
    Returns ({value id: register number}, {spilled value ids})."""
    keys, masks, hints, needs_low = a.keys, a.masks, a.hints, a.needs_low
    fixed, scratch = facts["fixed"], facts["scratch"]
    nvec = 32 if program.isa == "avx512" else 16
    pools = {"gp": [n for n in _GP_ORDER if not (reserve and n in scratch["gp"])],
             "vec": [n for n in range(nvec) if not (reserve and n in scratch["vec"])],
             "k": [n for n in range(1, 8) if not (reserve and n in scratch["k"])]}
    low_vec = [n for n in pools["vec"] if n < 16]
    if reserve:
        weight = a.weights()
        ends = [m.bit_length() for m in masks]
    occupancy = {cls: list(occ) for cls, occ in fixed.items()}
    occupants = {cls: [[] for _ in occ] for cls, occ in fixed.items()}
    assigned: dict = {}
    spilled: set = set()
    first = [(m & -m).bit_length() for m in masks]  # first live position (a list: no key function calls)
    virtuals = sorted(facts["virtuals"], key=first.__getitem__)
    for j in virtuals:
        cls, num, _ = keys[j]
        m = masks[j]
        occ = occupancy[cls]
        cands = low_vec if needs_low and cls == "vec" and num in needs_low else pools[cls]
        choice = None
        for h in hints.get(j, ()):
            hn = assigned.get(h) if keys[h][2] else keys[h][1]
            if hn is not None and not occ[hn] & m and hn in cands:
                choice = hn
                break
        if choice is None:
            for n in cands:
                if not occ[n] & m:
                    choice = n
                    break
            else:
                if not reserve:
                    return None
                choice = _evict(cands, j, masks, weight, ends, fixed[cls], occupants[cls], assigned, spilled,
                                occ)
                if choice is None:
                    spilled.add(j)
                    continue
        assigned[j] = choice
        occ[choice] |= m
        occupants[cls][choice].append(j)
    return assigned, spilled


def _evict(cands, j, masks, weight, ends, fixed, occupants, assigned, spilled, occupancy):
    """Free a register for value ``j`` by spilling the occupants in its way that weigh least (uses per
    live position), or return None when value ``j`` itself weighs least; ties spill what ends last."""
    m = masks[j]
    # the best so far as (cost, end), value j itself at first: a register is freed only for occupants that
    # weigh strictly less (or as much and end later)
    bound, bound_end = weight[j], ends[j]
    best_n = None
    for n in cands:
        if fixed[n] & m:
            continue
        held = occupants[n]
        if len(held) == 1:  # its one occupant is in the way (nothing was free): no overlap test needed
            o = held[0]
            cost = weight[o]
            if cost < bound or (cost == bound and ends[o] > bound_end):
                bound, bound_end, best_n = cost, ends[o], n
            continue
        cost = 0.0
        far = 0
        for o in held:
            if masks[o] & m:
                cost += weight[o]
                if cost > bound:  # never chosen: the best so far weighs less
                    break
                if ends[o] > far:
                    far = ends[o]
        else:
            if cost < bound or (cost == bound and far > bound_end):
                bound, bound_end, best_n = cost, far, n
    if best_n is None:
        return None
    n = best_n
    keep = []
    occ = fixed[n]
    for o in occupants[n]:
        if masks[o] & m:
            del assigned[o]
            spilled.add(o)
        else:
            keep.append(o)
            occ |= masks[o]
    occupants[n] = keep
    occupancy[n] = occ
    return n


class _OperandMap(dict):
    """Operand -> operand after allocation; a miss substitutes (no exception on the hot path)."""

    __slots__ = ("substitute",)

    def __missing__(self, op):
        p = self[op] = self.substitute(op)
        return p


def _rewrite(program, items, a, assigned, spilled_ids, facts):
    keys, sizes = a.keys, a.sizes
    spilled = {keys[j] for j in spilled_ids}
    slots: dict = {}
    offset = 0
    for key in sorted(spilled, key=lambda k: (-sizes.get(k[1], 8), k)):  # sorted: the same layout every run
        size = sizes[key[1]] if key[0] == "vec" else 8
        offset = (offset + size - 1) // size * size
        slots[key] = (offset, size)
        offset += size
    ids_get, index = a.ids.get, a.index

    def substitute(op):
        """``op`` over allocated registers; _SPILLED when it involves a spilled value."""
        if type(op) is Reg:
            if not op[3]:
                return op
            j = ids_get(op)
            if j is None:
                j = index[(_CLS[op[0]], op[2], True)]
            n = assigned.get(j)
            return _SPILLED if n is None else _phys(op, n)
        if type(op) is Mem:
            base, idx = op[0], op[1]
            if (base is not None and base[3]) or (idx is not None and idx[3]):
                if base is not None:
                    base = substitute(base)
                    if base is _SPILLED:
                        return base
                if idx is not None:
                    idx = substitute(idx)
                    if idx is _SPILLED:
                        return idx
                return _mem((base, idx) + op[2:])
        return op

    # operand -> operand after allocation (operands are tuples, hashed in C: the same register or
    # address is substituted once per function)
    operand_map = _OperandMap()
    operand_map.substitute = substitute
    phys = _PHYS.get
    for r, j in a.ids.items():
        if r[3]:
            n = assigned.get(j)
            if n is None:
                operand_map[r] = _SPILLED
            else:
                operand_map[r] = phys((r[0], r[1], n)) or _phys(r, n)
        else:
            operand_map[r] = r

    spill = Spiller(program, a, slots, facts["scratch"], operand_map, substitute, offset)
    copies = a.copies
    steps: list = []  # (index of the original item it implements or -1, emitted item)
    step = steps.append
    rets = []         # step positions of the returns: the epilogue goes before each
    # the loop's common case (no spilled operand, no mask) runs for every instruction: few lines there
    new_tuple = tuple.__new__
    marker = _SPILLED
    for i, it in enumerate(items):
        try:
            m, ops, mask, zero, extra_uses, extra_defs = it
        except TypeError:  # a Bind or Align (no fields by index)
            step((i, it))
            continue
        n = len(ops)
        if n == 3:
            p, q, r = ops
            new_ops = p, q, r = operand_map[p], operand_map[q], operand_map[r]
            touched = spilled and (p is marker or q is marker or r is marker)
        elif n == 2:
            p, q = ops
            new_ops = p, q = operand_map[p], operand_map[q]
            touched = spilled and (p is marker or q is marker)
        elif n == 1:
            new_ops = (operand_map[ops[0]],)
            touched = spilled and new_ops[0] is marker
        elif n:
            new_ops = tuple(map(operand_map.__getitem__, ops))
            touched = spilled and _SPILLED in new_ops
        else:
            if m == "ret":
                rets.append(len(steps))
            if mask is None:
                step((i, it))
                continue
            new_ops, touched = ops, False
        if mask is not None and mask[3]:
            mask = substitute(mask)
            touched = touched or (spilled and mask is _SPILLED)
        if touched:
            fast = (FAST_SHAPES.get(m) or fast_shapes(m))[n] if n < 16 else None
            if fast is None or mask is not None or zero or extra_uses or extra_defs:
                spill.rewrite(i, it, steps)
            elif not spill.rewrite_one_value(i, it, new_ops, fast, steps):
                spill.rewrite_simple(i, it, new_ops, fast, steps)
            continue
        new = new_tuple(Instr, (m, new_ops, mask, zero, extra_uses, extra_defs))  # an Instr, no partial call
        step((i, Elided(new) if i in copies and new_ops[0] == new_ops[1] else new))
    if len(rets) != len(a.rets):  # a return with operands: find them by origin
        ret_items = set(a.rets)
        rets = [k for k, (origin, _) in enumerate(steps) if origin in ret_items]
    written = set(facts["written_gp"])
    written.update(n for j, n in assigned.items() if keys[j][0] == "gp")
    if any(k[0] == "gp" for k in spilled):
        written.update(facts["scratch"]["gp"])
    return _frame(program, steps, rets, assigned, keys, slots, spill.frame_end, written, a.wide, a.calls)


def _frame(program, steps, rets, assigned, keys, slots, spill_bytes, written, wide, calls):
    callee = program.abi.callee_saved_gp
    saved = tuple(r for r in callee if r.num in written)
    frame = spill_bytes
    if calls:  # rsp must be 16-byte aligned at every call
        frame += -(8 + 8 * len(saved) + spill_bytes) % program.abi.stack_align
    prologue, epilogue = _frame_steps(saved, frame, wide)
    if prologue or epilogue:
        body, steps, done = steps, list(prologue), 0
        for r in rets:  # the epilogue goes before each return
            steps += body[done:r]
            steps += epilogue
            done = r
        steps += body[done:]
    full = _FULL_REGS[program.isa == "avx512"]
    assignment = {keys[j][1]: full[keys[j][0]][n] for j, n in assigned.items()}
    if slots:
        assignment.update({k[1]: ("slot", off, size) for k, (off, size) in slots.items()})
    return AllocatedProgram(program, tuple(steps), assignment, saved, frame, tuple(sorted(slots)))


_FULL_REGS = ({"gp": GP64_REGS, "vec": YMM_REGS, "k": K_REGS}, {"gp": GP64_REGS, "vec": ZMM_REGS, "k": K_REGS})
_FRAME_STEPS: dict = {}  # (saved registers, frame size, wide) -> (prologue steps, epilogue steps)


def _frame_steps(saved, frame, wide):
    """The prologue and epilogue steps (built once per process for each frame shape)."""
    key = (saved, frame, wide)
    made = _FRAME_STEPS.get(key)
    if made is None:
        if len(_FRAME_STEPS) > 10_000:  # many distinct frame sizes: start over rather than grow forever
            _FRAME_STEPS.clear()
        prologue = [(-1, Instr("push", (r,))) for r in saved]
        if frame:
            prologue.append((-1, Instr("sub", (_RSP, frame))))
        epilogue = [(-1, _VZEROUPPER)] if wide else []
        if frame:
            epilogue.append((-1, Instr("add", (_RSP, frame))))
        epilogue.extend((-1, Instr("pop", (r,))) for r in reversed(saved))
        made = _FRAME_STEPS[key] = (tuple(prologue), tuple(epilogue))
    return made


def has_calls(program: Program) -> bool:
    return any(type(it) is Instr and it.mnemonic == "call" for it in program.items)


def encode(allocated: AllocatedProgram) -> MachineCode:
    """Phase 3: machine code (position independent, with relocation records)."""
    prog = allocated.program
    return assemble(allocated.items, prog.constants, prog.name, repeats=bool(allocated.spilled))  # spill moves
