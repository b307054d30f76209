"""Register allocation in one call: ``allocate(program) -> AllocatedProgram``.

Liveness is computed over the control-flow graph (bitset dataflow, so loops are handled exactly) in
one backward walk that also collects the register effects (``liveness.analyse``); each value's live
set is a bitset of positions (use at 2i, def at 2i+1).  Physical registers named
in the program (arguments, returns, rdx:rax for div, cl for shifts, call clobbers) are values too
and block their register where live.  Virtuals are assigned greedily in order of first position
(linear scan with lifetime holes), trying move hints first; when nothing is free the values of least
spill weight (reads and writes per live position; on ties the one ending last) are spilled whole to a
stack slot (64 bytes for zmm) and accessed through three scratch registers per class (preferably
r11/r10/rbx and xmm15/14/13, always ones the program does not name itself), which are only reserved
when spilling is needed.  The rewrite memoises substituted operands (registers and addresses are
tuples), creates instructions only where operands change, rewrites instructions whose registers are
all operands (most) from their per-mnemonic shape without effect lists, and builds each spill
load/store once per function.
Copies that end up between one register are elided.  The prologue saves exactly the callee-saved
registers written; the frame keeps rsp 16-byte aligned at calls; vzeroupper precedes ``ret``
whenever ymm/zmm registers were used.  Opmask virtuals spill too (8-byte slots, kmovq).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from operator import itemgetter

from .assembler import MachineCode, assemble
from .effects import is_zero_idiom, register_effects
from .encoder import has_form
from .liveness import CLS as _CLS
from .liveness import FAST_SHAPES, analyse, build_cfg
from .operands import GP, K_REGS, KREG, XMM, XMM_REGS, YMM, YMM_REGS, ZMM, ZMM_REGS, Bind, Instr, Mem, Reg
from .program import Program


class AllocationError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Elided:
    """A register copy whose source and destination got the same register (emits nothing)."""

    instr: Instr

    def __str__(self) -> str:
        return f"; elided {self.instr}"


_GP_ORDER = (0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 12, 13, 14, 15, 5)   # caller-saved first, never rsp
_GP_SCRATCH = (11, 10, 3, 9, 8, 12, 13, 14, 15)    # preference; 3 unused by fixed registers are taken
_VEC_SCRATCH = (15, 14, 13, 12, 11, 10, 9, 8)
_K_SCRATCH = (7, 6, 5, 4, 3, 2, 1)
_RSP = Reg(GP, 8, 4)
_VEC = (XMM, YMM, ZMM)
_PHYS: dict = {}
_instr = partial(tuple.__new__, Instr)  # Instr from a 6-tuple without the Python-level __new__ (hot paths)
_mem = partial(tuple.__new__, Mem)  # Mem from a 7-tuple whose fields were validated already
_second = itemgetter(1)

__all__ = ["AllocatedProgram", "AllocationError", "Elided", "allocate", "build_cfg", "encode", "has_calls"]


def _phys(r: Reg, num: int) -> Reg:
    """The physical register ``num`` with the view of ``r`` (cached: Reg construction is not free)."""
    key = (r.kind, r.size, num)
    p = _PHYS.get(key)
    if p is None:
        p = _PHYS[key] = Reg(r.kind, r.size, num)
    return p


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
    assigned = _assign(program, a, facts, reserve=False)
    if assigned is None:  # pressure: reserve the scratch registers and assign again
        assigned = _assign(program, a, facts, reserve=True)
    return _rewrite(program, items, a, assigned[0], assigned[1], facts)


def _facts(a) -> dict:
    """Fixed-register occupancy by class and number, scratch registers and spill weights."""
    fixed = {"gp": [0] * 16, "vec": [0] * 32, "k": [0] * 8}
    masks = a.masks
    defined = a.defined
    written_gp = set()
    for j, key in enumerate(a.keys):
        if not key[2]:
            fixed[key[0]][key[1]] |= masks[j]
            if key[0] == "gp" and (defined >> j) & 1:
                written_gp.add(key[1])  # physical GP registers the program writes itself
    scratch = {}
    for cls, prefs in (("gp", _GP_SCRATCH), ("vec", _VEC_SCRATCH), ("k", _K_SCRATCH)):
        free = [n for n in prefs if not fixed[cls][n]]  # never a register the program names itself
        scratch[cls] = tuple((free + [n for n in prefs if n not in free])[:3])
    return {"fixed": fixed, "written_gp": written_gp, "scratch": scratch}


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
    virtuals = [j for j, k in enumerate(keys) if k[2]]
    virtuals.sort(key=lambda j: (masks[j] & -masks[j]).bit_length())
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
    best = best_n = None
    for n in cands:
        if fixed[n] & m:
            continue
        cost = 0.0
        far = 0
        for o in occupants[n]:
            if masks[o] & m:
                cost += weight[o]
                if ends[o] > far:
                    far = ends[o]
        if best is None or (cost, -far) < best:
            best, best_n = (cost, -far), n
    if best is None or (weight[j], -ends[j]) <= best:
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


_SPILLED = ("spilled",)  # operand_map's value for operands over spilled values (a 1-tuple: unequal to any
#                          operand at the length check, so ``_SPILLED in ops`` is cheap)


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
    operand = operand_map.__getitem__
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

    spill = _Spiller(program, a, spilled_ids, slots, facts["scratch"], operand_map, substitute)
    copies = a.copies
    origins: list = []  # per emitted item: the index of the original item it implements, or -1
    news: list = []
    origin, emit = origins.append, news.append
    for i in range(len(items)):
        it = items[i]
        if type(it) is not Instr:
            origin(i)
            emit(it)
            continue
        ops = it[1]
        n = len(ops)
        if n == 2:
            new_ops = (operand(ops[0]), operand(ops[1]))
        elif n == 1:
            new_ops = (operand(ops[0]),)
        elif n == 3:
            new_ops = (operand(ops[0]), operand(ops[1]), operand(ops[2]))
        else:
            new_ops = tuple(map(operand, ops))
        mask = it[2]
        if mask is not None and mask[3]:
            mask = substitute(mask)
        if spilled and (_SPILLED in new_ops or mask is _SPILLED):
            fast = FAST_SHAPES[it[0]][n] if n < 6 else None
            if fast is None or mask is not None or it[3] or it[4] or it[5] or (fast[2] and is_zero_idiom(it)):
                spill.rewrite(i, it, origins, news)
            else:
                spill.rewrite_simple(i, it, new_ops, fast, origins, news)
            continue
        origin(i)
        if not ops and mask is None:
            emit(it)
        else:
            new = _instr((it[0], new_ops, mask, it[3], it[4], it[5]))
            emit(Elided(new) if i in copies and new_ops[0] == new_ops[1] else new)
    rets = []
    for r in sorted(a.rets):  # where the returns went: the epilogue goes before each
        rets.append(origins.index(r, rets[-1] if rets else 0))
    written = set(facts["written_gp"])
    written.update(n for j, n in assigned.items() if keys[j][0] == "gp")
    if any(k[0] == "gp" for k in spilled):
        written.update(facts["scratch"]["gp"])
    return _frame(program, origins, news, rets, assigned, keys, slots, offset, written, a.wide, a.calls)


_UNALIGNED = {"vmovaps": "vmovups", "vmovapd": "vmovupd", "vmovdqa": "vmovdqu", "vmovdqa32": "vmovdqu32",
              "vmovdqa64": "vmovdqu64"}


class _Spiller:
    """Rewrites instructions that touch spilled values: one of them may be folded into a stack-slot
    operand where the form allows it, the others are reloaded into scratch registers before and
    stored after; spill loads/stores and slot operands are built once per function."""

    def __init__(self, program, a, spilled_ids, slots, scratch_pools, operand_map, substitute):
        self.keys, self.ids_get, self.copies = a.keys, a.ids.get, a.copies
        self.value, self.spilled_ids, self.slots, self.scratch_pools = a.value, spilled_ids, slots, scratch_pools
        self.operand_map, self.substitute = operand_map, substitute
        self.vec_move = "movups" if program.isa == "sse2" else "vmovups"
        self.loads: dict = {}
        self.stores: dict = {}
        self.slot_mems: dict = {}

    def sub(self, r, scratch, by_reg):
        """A register after allocation; spilled values get the next scratch register of their class."""
        if r is None:
            return None
        p = self.operand_map.get(r)
        if p is None:
            p = self.substitute(r)
        if p is not _SPILLED:
            return p
        j = self.ids_get(r)
        if j is None:
            j = self.value(r)
        by_reg[r] = j
        n = scratch.get(j)
        if n is None:
            n = self.scratch_for(j, scratch)
        return _phys(r, n)

    def fold_candidate(self, it: Instr, defs):
        """(operand index, stack-slot Mem) when a spilled register operand can be read/written in place.

        Only for instructions without another memory operand or mask, never legacy SSE (alignment and
        merge semantics differ from the register form), only for a virtual that appears once, and for
        a definition only when the view covers the whole slot (a narrower register write would have
        zero-extended)."""
        ops = it[1]
        operand_map = self.operand_map
        for j, op in enumerate(ops):
            if type(op) is not Reg or operand_map.get(op) is not _SPILLED or op[0] == KREG:
                continue
            if op[0] in _VEC and it[0][0] != "v":
                continue
            num = op[2]
            for k, o in enumerate(ops):
                if k != j and type(o) is Reg and o[2] == num and o[3]:
                    break
            else:
                mem = self.slot_mems.get(op)
                if mem is None:
                    off, size = self.slots[self.keys[self.value(op)]]
                    mem = self.slot_mems[op] = (Mem(_RSP, disp=off, size=op[1]), op[1] == size)
                if j == 0 and not mem[1] and op in defs:
                    continue
                return j, mem[0]
        return None

    def spill_moves(self, scratch, by_reg, regs, moves, load, origins, news):
        """Loads (before) or stores (after) of the scratch-held values among ``regs``."""
        done = None
        for r in regs:
            j = by_reg.get(r)
            if j is None:
                continue
            if done is None:
                done = {j}
            elif j in done:
                continue
            else:
                done.add(j)
            n = scratch[j]
            move = moves.get(j * 64 + n)
            if move is None:
                key = self.keys[j]
                move = moves[j * 64 + n] = _spill_move(key, n, self.slots[key], self.vec_move, load)
            origins.append(-1)
            news.append(move)

    def rewrite_simple(self, i, it, new_ops, fast, origins, news):
        """``rewrite`` for an instruction whose registers are all explicit operands, read or written as
        ``fast`` (liveness.FAST_SHAPES) says: no effect lists, loads and stores straight from the operands."""
        ops = it[1]
        fold = None
        if Mem not in map(type, ops):
            fold = self.fold_candidate(it, (ops[0],) if fast[1] else ())
        new_ops = list(new_ops)
        ids_get, operand_map = self.ids_get, self.operand_map
        scratch: dict = {}
        loads = []
        store = None
        for k, p in enumerate(new_ops):
            if p is not _SPILLED:
                continue
            op = ops[k]
            if type(op) is Reg:
                if fold is not None and k == fold[0]:
                    new_ops[k] = fold[1]
                    continue
                j = ids_get(op)
                n = scratch.get(j)
                if n is None:
                    n = self.scratch_for(j, scratch)
                new_ops[k] = _phys(op, n)
                if k:
                    loads.append(j)
                else:
                    if fast[1]:
                        store = j
                    # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
                    if fast[0] or (fast[1] and op[0] == GP and op[1] < 4):
                        loads.append(j)
            else:
                regs = [op[0], op[1]]
                for x, r in enumerate(regs):
                    if r is not None and r[3]:
                        q = operand_map[r]
                        if q is _SPILLED:
                            j = ids_get(r)
                            n = scratch.get(j)
                            if n is None:
                                n = self.scratch_for(j, scratch)
                            q = _phys(r, n)
                            loads.append(j)
                        regs[x] = q
                new_ops[k] = _mem((regs[0], regs[1]) + op[2:])
        mnemonic = it[0]
        if fold is not None:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
            mnemonic = _UNALIGNED.get(mnemonic, mnemonic)
        new = _instr((mnemonic, tuple(new_ops)) + it[2:])
        if fold is not None and not has_form(new):  # no memory form there: the general path
            return self.rewrite(i, it, origins, news, no_fold=True)
        if loads:
            moves, keys = self.loads, self.keys
            for j in dict.fromkeys(loads) if len(loads) > 1 else loads:
                n = scratch[j]
                move = moves.get(j * 64 + n)
                if move is None:
                    key = keys[j]
                    move = moves[j * 64 + n] = _spill_move(key, n, self.slots[key], self.vec_move, True)
                origins.append(-1)
                news.append(move)
        origins.append(i)
        news.append(Elided(new) if i in self.copies and new_ops[0] == new_ops[1] else new)
        if store is not None:
            n = scratch[store]
            move = self.stores.get(store * 64 + n)
            if move is None:
                key = self.keys[store]
                move = self.stores[store * 64 + n] = _spill_move(key, n, self.slots[key], self.vec_move, False)
            origins.append(-1)
            news.append(move)

    def scratch_for(self, j, scratch) -> int:
        """The next scratch register of value ``j``'s class in this instruction."""
        keys = self.keys
        cls = keys[j][0]
        taken = 0
        for k in scratch:
            if keys[k][0] == cls:
                taken += 1
        n = scratch[j] = self.scratch_pools[cls][taken]
        return n

    def rewrite(self, i, it, origins, news, no_fold=False):
        uses, defs = register_effects(it)
        operand_map, sub = self.operand_map, self.sub
        ops = it[1]
        fold = None
        if it[2] is None and not no_fold and Mem not in map(type, ops):
            fold = self.fold_candidate(it, defs)
        scratch: dict = {}
        by_reg: dict = {}
        new_ops = []
        for j, op in enumerate(ops):
            new = operand_map[op]
            if new is not _SPILLED:
                new_ops.append(new)
            elif fold is not None and j == fold[0]:
                new_ops.append(fold[1])
            elif type(op) is Reg:
                new_ops.append(sub(op, scratch, by_reg))
            else:
                new_ops.append(_mem((sub(op[0], scratch, by_reg), sub(op[1], scratch, by_reg)) + op[2:]))
        mnemonic = it[0]
        if fold is not None:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
            mnemonic = _UNALIGNED.get(mnemonic, mnemonic)
        mask = it[2]
        if mask is not None:
            mask = sub(mask, scratch, by_reg)
        new = _instr((mnemonic, tuple(new_ops), mask, it[3], it[4], it[5]))
        if fold is not None and not has_form(new):  # the form has no memory operand there: use a scratch register
            new_ops[fold[0]] = sub(ops[fold[0]], scratch, by_reg)
            new = _instr((it[0], tuple(new_ops)) + new[2:])
        if scratch:
            # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
            narrow = [r for r in defs if r[0] == GP and r[1] < 4]
            self.spill_moves(scratch, by_reg, uses + narrow if narrow else uses, self.loads, True, origins, news)
        origins.append(i)
        news.append(Elided(new) if i in self.copies and new_ops[0] == new_ops[1] else new)
        if scratch:
            self.spill_moves(scratch, by_reg, defs, self.stores, False, origins, news)


_VIEW0 = {"gp": _RSP, "k": K_REGS[0], 16: XMM_REGS[0], 32: YMM_REGS[0], 64: ZMM_REGS[0]}


def _spill_move(key, num, slot, vec_move, load):
    off, size = slot
    mem = _mem((_RSP, None, 1, off, size, 0, None))
    if key[0] == "gp":
        move, reg = "mov", _phys(_RSP, num)
    elif key[0] == "k":  # AVX512BW: part of the avx512 tier, the only one with opmasks
        move, reg = "kmovq", _phys(_VIEW0["k"], num)
    else:
        reg = _phys(_VIEW0[size], num)
        # unaligned moves: spill slots are 16-byte aligned only in functions that call out (found by the
        # fuzzer: an xmm spill with movaps faulted in a leaf function)
        move = "vmovups" if size > 16 else {"movaps": "movups", "vmovaps": "vmovups"}.get(vec_move, vec_move)
    return _instr((move, (reg, mem) if load else (mem, reg), None, False, (), ()))


def _frame(program, origins, news, rets, assigned, keys, slots, spill_bytes, written, wide, calls):
    callee = program.abi.callee_saved_gp
    saved = tuple(r for r in callee if r.num in written)
    frame = spill_bytes
    if calls:  # rsp must be 16-byte aligned at every call
        frame += -(8 + 8 * len(saved) + spill_bytes) % program.abi.stack_align
    prologue = [Instr("push", (r,)) for r in saved]
    if frame:
        prologue.append(Instr("sub", (_RSP, frame)))
    epilogue = [Instr("vzeroupper")] if wide else []
    if frame:
        epilogue.append(Instr("add", (_RSP, frame)))
    epilogue.extend(Instr("pop", (r,)) for r in reversed(saved))
    if prologue or epilogue:
        step_origins, step_items = [-1] * len(prologue), prologue
        done = 0
        for r in rets:  # body positions of the returns: the epilogue goes before each
            step_origins += origins[done:r]
            step_items += news[done:r]
            step_origins += [-1] * len(epilogue)
            step_items += epilogue
            done = r
        step_origins += origins[done:]
        step_items += news[done:]
        origins, news = step_origins, step_items
    steps = tuple(zip(origins, news))
    full = {"gp": _RSP, "vec": ZMM_REGS[0] if program.isa == "avx512" else YMM_REGS[0], "k": K_REGS[0]}
    assignment = {keys[j][1]: _phys(full[keys[j][0]], n) for j, n in assigned.items()}
    assignment.update({k[1]: ("slot", off, size) for k, (off, size) in slots.items()})
    return AllocatedProgram(program, steps, assignment, saved, frame, tuple(sorted(slots)))


def has_calls(program: Program) -> bool:
    return any(type(it) is Instr and it.mnemonic == "call" for it in program.items)


def encode(allocated: AllocatedProgram) -> MachineCode:
    """Phase 3: machine code (position independent, with relocation records)."""
    prog = allocated.program
    return assemble(allocated.items, prog.constants, prog.name, repeats=bool(allocated.spilled))  # spill moves
