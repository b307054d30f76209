"""Register allocation in one call: ``allocate(program) -> AllocatedProgram``.

Liveness is computed over the control-flow graph (bitset dataflow, so loops are handled exactly);
each value's live set is a bitset of positions (use at 2i, def at 2i+1).  Physical registers named
in the program (arguments, returns, rdx:rax for div, cl for shifts, call clobbers) are values too
and block their register where live.  Virtuals are assigned greedily in order of first position
(linear scan with lifetime holes), trying move hints first; when nothing is free the value whose
lifetime ends last is spilled whole to a stack slot (64 bytes for zmm) and accessed through three
scratch registers per class (preferably r11/r10/rbx and xmm15/14/13, always ones the program does
not name itself), which are only reserved when spilling is needed.
Copies that end up between one register are elided.  The prologue saves exactly the callee-saved
registers written; the frame keeps rsp 16-byte aligned at calls; vzeroupper precedes ``ret``
whenever ymm/zmm registers were used.  Opmask virtuals spill too (8-byte slots, kmovq).
"""

from __future__ import annotations

from dataclasses import dataclass

from .assembler import MachineCode, assemble
from .effects import is_register_copy, register_effects
from .encoder import EncodingError, select_form
from .forms import EVEX_MNEMONICS
from .operands import GP, KREG, XMM, YMM, ZMM, Bind, Instr, Label, Mem, Reg
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
_VEC_KIND = {16: XMM, 32: YMM, 64: ZMM}
_RSP = Reg(GP, 8, 4)
_CLS = {GP: "gp", XMM: "vec", YMM: "vec", ZMM: "vec", KREG: "k"}
_VEC = (XMM, YMM, ZMM)
_PHYS: dict = {}


def _phys(r: Reg, num: int) -> Reg:
    """The physical register ``num`` with the view of ``r`` (cached: Reg construction is not free)."""
    key = (r.kind, r.size, num)
    p = _PHYS.get(key)
    if p is None:
        p = _PHYS[key] = Reg(r.kind, r.size, num)
    return p


def build_cfg(items):
    """Basic blocks as (start, end) item ranges and their successor lists."""
    bounds = []
    start = 0
    for i, it in enumerate(items):
        if type(it) is Bind and i != start:
            bounds.append((start, i))
            start = i
        if type(it) is Instr and it.mnemonic[0] in "jr" and (it.mnemonic[0] == "j" or it.mnemonic == "ret"):
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(items) or not bounds:
        bounds.append((start, len(items)))
    label_block = {}
    for b, (s, e) in enumerate(bounds):
        if s < e and type(items[s]) is Bind:
            label_block[items[s].label] = b
    succs = []
    for b, (s, e) in enumerate(bounds):
        last = items[e - 1] if e > s else None
        nxt = [b + 1] if b + 1 < len(bounds) else []
        if type(last) is Instr and last.mnemonic[0] in "jr" and (last.mnemonic[0] == "j" or last.mnemonic == "ret"):
            if last.mnemonic == "ret":
                succs.append([])
                continue
            target = last.operands[0] if last.operands else None
            tb = [label_block[target]] if type(target) is Label else []
            succs.append(tb if last.mnemonic == "jmp" else nxt + tb)
        else:
            succs.append(nxt)
    return bounds, succs


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
        return tuple(it for _, it in self.steps if type(it) is not Elided)

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


def _needs_low_vector(ins: Instr) -> bool:
    m = ins.mnemonic
    if m not in EVEX_MNEMONICS:
        return True
    return m.startswith(("vcmp", "vpcmp")) and type(ins.operands[0]) is Reg and ins.operands[0].kind != KREG


def allocate(program: Program) -> AllocatedProgram:
    """Assign every virtual register a physical register or a stack slot (see module docstring)."""
    items = program.items
    effects = [register_effects(it) if type(it) is Instr else ((), ()) for it in items]
    bounds, succs = build_cfg(items)
    index, masks = _liveness(items, effects, bounds, succs)
    facts = _facts(program, items, effects, index, masks)
    assigned = _assign(program, facts, index, masks, reserve=False)
    if assigned is None:  # pressure: reserve the scratch registers and assign again
        assigned = _assign(program, facts, index, masks, reserve=True)
    return _rewrite(program, items, effects, assigned[0], assigned[1], facts)


def _liveness(items, effects, bounds, succs):
    """Per-value position bitsets.  Values are Reg.key tuples (virtual and physical)."""
    index: dict = {}
    uses_i, defs_i = [], []
    for uses, defs in effects:
        ui = []
        for r in uses:
            k = (_CLS[r.kind], r.num, r.virtual)
            j = index.setdefault(k, len(index))
            if j not in ui:
                ui.append(j)
        di = []
        for r in defs:
            k = (_CLS[r.kind], r.num, r.virtual)
            j = index.setdefault(k, len(index))
            if j not in di:
                di.append(j)
        uses_i.append(ui)
        defs_i.append(di)
    nb = len(bounds)
    gen, kill = [0] * nb, [0] * nb
    for b, (s, e) in enumerate(bounds):
        g = k = 0
        for i in range(s, e):
            for j in uses_i[i]:
                if not (k >> j) & 1:
                    g |= 1 << j
            for j in defs_i[i]:
                k |= 1 << j
        gen[b], kill[b] = g, k
    live_in, live_out = [0] * nb, [0] * nb
    changed = True
    while changed:
        changed = False
        for b in range(nb - 1, -1, -1):
            out = 0
            for sb in succs[b]:
                out |= live_in[sb]
            new_in = gen[b] | (out & ~kill[b])
            if new_in != live_in[b] or out != live_out[b]:
                live_in[b], live_out[b] = new_in, out
                changed = True
    masks = [0] * len(index)
    for b, (s, e) in enumerate(bounds):
        end_pos = 2 * e - 1 if e > s else 2 * s
        ends: dict = {}
        lo = live_out[b]
        while lo:
            low = lo & -lo
            ends[low.bit_length() - 1] = end_pos
            lo ^= low
        for i in range(e - 1, s - 1, -1):
            d = 2 * i + 1
            for j in defs_i[i]:
                end = ends.pop(j, d)
                masks[j] |= (1 << (end + 1)) - (1 << d)
            for j in uses_i[i]:
                if j not in ends:
                    ends[j] = 2 * i
        start = 2 * s
        for j, end in ends.items():
            masks[j] |= (1 << (end + 1)) - (1 << start)
    return index, masks


def _facts(program, items, effects, index, masks):
    """Fixed-register occupancy, move hints, vector constraints and sizes gathered in one pass."""
    fixed: dict = {}
    for key, j in index.items():
        if not key[2]:
            fixed[(key[0], key[1])] = fixed.get((key[0], key[1]), 0) | masks[j]
    needs_low: set = set()
    hints: dict = {}
    sizes: dict = {}
    wide = False
    written_gp = set()
    for it, (uses, defs) in zip(items, effects):
        if type(it) is not Instr:
            continue
        low = _needs_low_vector(it)
        for r in uses:
            if r.virtual:
                if sizes.get(r.num, 0) < r.size:
                    sizes[r.num] = r.size
                if low and r.kind in _VEC:
                    needs_low.add(r.num)
            if r.size > 16:
                wide = True
        for r in defs:
            if r.virtual:
                if sizes.get(r.num, 0) < r.size:
                    sizes[r.num] = r.size
                if low and r.kind in _VEC:
                    needs_low.add(r.num)
            elif r.kind == GP:
                written_gp.add(r.num)
            if r.size > 16:
                wide = True
        if is_register_copy(it):
            a, b = it.operands
            if a.virtual:
                hints.setdefault(a.key, []).append(b)
            if b.virtual:
                hints.setdefault(b.key, []).append(a)
    scratch = {}
    for cls, prefs in (("gp", _GP_SCRATCH), ("vec", _VEC_SCRATCH), ("k", _K_SCRATCH)):
        free = [n for n in prefs if not fixed.get((cls, n))]  # never a register the program names itself
        scratch[cls] = tuple((free + [n for n in prefs if n not in free])[:3])
    return {"fixed": fixed, "needs_low": needs_low, "hints": hints, "sizes": sizes, "wide": wide,
            "written_gp": written_gp, "scratch": scratch}


def _assign(program, facts, index, masks, reserve):
    """Greedy assignment in order of first position; None when spilling is needed but not reserved."""
    keys = list(index)
    fixed, needs_low, hints = facts["fixed"], facts["needs_low"], facts["hints"]
    nvec = 32 if program.isa == "avx512" else 16
    scratch = facts["scratch"]
    pools = {"gp": [n for n in _GP_ORDER if not (reserve and n in scratch["gp"])],
             "vec": [n for n in range(nvec) if not (reserve and n in scratch["vec"])],
             "k": [n for n in range(1, 8) if not (reserve and n in scratch["k"])]}
    low_vec = [n for n in pools["vec"] if n < 16]
    occupancy = {(c, n): fixed.get((c, n), 0) for c, ns in pools.items() for n in ns}
    occupants: dict = {slot: [] for slot in occupancy}
    assigned: dict = {}
    spilled: set = set()
    virtuals = sorted((j for j, k in enumerate(keys) if k[2] and masks[j]),
                      key=lambda j: (masks[j] & -masks[j]).bit_length())
    for j in virtuals:
        key = keys[j]
        cls = key[0]
        m = masks[j]
        cands = low_vec if cls == "vec" and key[1] in needs_low else pools[cls]
        choice = None
        for h in hints.get(key, ()):
            hn = assigned.get(h.key, (None, None))[1] if h.virtual else h.num
            if hn is not None and hn in cands and not occupancy[(cls, hn)] & m:
                choice = hn
                break
        if choice is None:
            for n in cands:
                if not occupancy[(cls, n)] & m:
                    choice = n
                    break
        if choice is None:
            if not reserve:
                return None
            choice = _evict(cls, cands, m, fixed, occupants, masks, index, assigned, spilled, occupancy)
            if choice is None:
                spilled.add(key)
                continue
        assigned[key] = (cls, choice)
        occupancy[(cls, choice)] |= m
        occupants[(cls, choice)].append(key)
    return assigned, spilled


def _evict(cls, cands, m, fixed, occupants, masks, index, assigned, spilled, occupancy):
    """Free a register for a value with live mask ``m`` by spilling the occupants that end last."""
    my_end = m.bit_length()
    best = None
    for n in cands:
        if fixed.get((cls, n), 0) & m:
            continue
        conflicting = [o for o in occupants[(cls, n)] if masks[index[o]] & m]
        far = max(masks[index[o]].bit_length() for o in conflicting)
        if best is None or far > best[0]:
            best = (far, n, conflicting)
    if best is None or best[0] <= my_end:
        return None
    _, n, conflicting = best
    for o in conflicting:
        occupants[(cls, n)].remove(o)
        del assigned[o]
        spilled.add(o)
    occ = fixed.get((cls, n), 0)
    for o in occupants[(cls, n)]:
        occ |= masks[index[o]]
    occupancy[(cls, n)] = occ
    return n


def _rewrite(program, items, effects, assigned, spilled, facts):
    sizes = facts["sizes"]
    slots: dict = {}
    offset = 0
    for key in sorted(spilled, key=lambda k: -sizes.get(k[1], 8)):
        size = sizes[key[1]] if key[0] == "vec" else 8
        offset = (offset + size - 1) // size * size
        slots[key] = (offset, size)
        offset += size
    vec_move = "movups" if program.isa == "sse2" else "vmovups"
    body = []
    scratch_pools = facts["scratch"]
    # physical register for each (kind, size, virtual number) view, built lazily
    views: dict = {}
    for i, it in enumerate(items):
        if type(it) is not Instr:
            body.append((i, it))
            continue
        scratch: dict = {}

        def sub(r, scratch=scratch):
            if r is None or not r.virtual:
                return r
            view = (r.kind, r.size, r.num)
            p = views.get(view)
            if p is not None:
                return p
            key = (_CLS[r.kind], r.num, True)
            if key not in spilled:
                p = views[view] = _phys(r, assigned[key][1])
                return p
            if key not in scratch:
                pool = scratch_pools[key[0]]
                scratch[key] = pool[sum(1 for k in scratch if k[0] == key[0])]
            return _phys(r, scratch[key])

        fold = _fold_candidate(it, effects[i], spilled, slots) if spilled else None
        ops = []
        for j, op in enumerate(it.operands):
            if fold is not None and j == fold[0]:
                ops.append(fold[1])
            elif type(op) is Reg:
                ops.append(sub(op) if op.virtual else op)
            elif type(op) is Mem and ((op.base is not None and op.base.virtual) or
                                      (op.index is not None and op.index.virtual)):
                ops.append(Mem(sub(op.base), sub(op.index), op.scale, op.disp, op.size, op.bcst, op.label))
            else:
                ops.append(op)
        mnemonic = it.mnemonic
        if fold is not None:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
            mnemonic = _UNALIGNED.get(mnemonic, mnemonic)
        new = Instr(mnemonic, tuple(ops), sub(it.mask), it.zero, it.implicit_uses, it.implicit_defs)
        if fold is not None:
            try:
                select_form(new)
            except EncodingError:  # the form has no memory operand there: use a scratch register
                ops[fold[0]] = sub(it.operands[fold[0]])
                new = new._replace(operands=tuple(ops))
        if scratch:
            uses, defs = effects[i]
            # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
            use_keys = {r.key for r in uses} | {r.key for r in defs if r.kind == GP and r.size < 4}
            for key, n in scratch.items():
                if key in use_keys:
                    body.append((-1, _spill_move(key, n, slots[key], vec_move, load=True)))
        if len(ops) == 2 and ops[0] == ops[1] and is_register_copy(new):
            body.append((i, Elided(new)))
        else:
            body.append((i, new))
        if scratch:
            def_keys = {r.key for r in defs}
            for key, n in scratch.items():
                if key in def_keys:
                    body.append((-1, _spill_move(key, n, slots[key], vec_move, load=False)))
    written = set(facts["written_gp"])
    written.update(n for c, n in assigned.values() if c == "gp")
    if any(k[0] == "gp" for k in spilled):
        written.update(facts["scratch"]["gp"])
    return _frame(program, body, assigned, slots, offset, written, facts["wide"])


_UNALIGNED = {"vmovaps": "vmovups", "vmovapd": "vmovupd", "vmovdqa": "vmovdqu", "vmovdqa32": "vmovdqu32",
              "vmovdqa64": "vmovdqu64"}


def _fold_candidate(it: Instr, effect, spilled, slots):
    """(operand index, stack-slot Mem) when a spilled register operand can be read/written in place.

    Only for instructions without another memory operand or mask, never legacy SSE (alignment and
    merge semantics differ from the register form), only for a virtual that appears once, and for
    a definition only when the view covers the whole slot (a narrower register write would have
    zero-extended)."""
    ops = it.operands
    for j, op in enumerate(ops):
        if type(op) is not Reg or not op.virtual:
            continue
        key = (_CLS[op.kind], op.num, True)
        if key not in spilled or key[0] == "k":
            continue
        if it.mask is not None or any(type(o) is Mem for o in ops):
            return None
        if op.kind in _VEC and it.mnemonic[0] != "v":
            continue
        if sum(1 for o in ops if type(o) is Reg and o.virtual and o.num == op.num) != 1:
            continue
        if j == 0 and any(d is op or d == op for d in effect[1]) and op.size != slots[key][1]:
            continue
        return j, Mem(_RSP, disp=slots[key][0], size=op.size)
    return None


def _spill_move(key, num, slot, vec_move, load):
    off, size = slot
    mem = Mem(_RSP, disp=off, size=size)
    if key[0] == "gp":
        reg = Reg(GP, 8, num)
        return Instr("mov", (reg, mem) if load else (mem, reg))
    if key[0] == "k":  # AVX512BW: part of the avx512 tier, the only one with opmasks
        reg = Reg(KREG, 8, num)
        return Instr("kmovq", (reg, mem) if load else (mem, reg))
    reg = Reg(_VEC_KIND[size], size, num)
    # unaligned moves: spill slots are 16-byte aligned only in functions that call out (found by the fuzzer:
    # an xmm spill with movaps faulted in a leaf function)
    move = "vmovups" if size > 16 else {"movaps": "movups", "vmovaps": "vmovups"}.get(vec_move, vec_move)
    return Instr(move, (reg, mem) if load else (mem, reg))


def _frame(program, body, assigned, slots, spill_bytes, written, wide):
    callee = program.abi.callee_saved_gp
    saved = tuple(r for r in callee if r.num in written)
    frame = spill_bytes
    if has_calls(program):  # rsp must be 16-byte aligned at every call
        frame += -(8 + 8 * len(saved) + spill_bytes) % program.abi.stack_align
    steps = [(-1, Instr("push", (r,))) for r in saved]
    if frame:
        steps.append((-1, Instr("sub", (_RSP, frame))))
    for origin, it in body:
        if type(it) is Instr and it.mnemonic == "ret":
            if wide:
                steps.append((-1, Instr("vzeroupper")))
            if frame:
                steps.append((-1, Instr("add", (_RSP, frame))))
            steps.extend((-1, Instr("pop", (r,))) for r in reversed(saved))
        steps.append((origin, it))
    assignment = {k[1]: Reg({"gp": GP, "vec": ZMM if program.isa == "avx512" else YMM, "k": KREG}[c],
                            {"gp": 8, "vec": 64 if program.isa == "avx512" else 32, "k": 8}[c], n)
                  for k, (c, n) in assigned.items()}
    assignment.update({k[1]: ("slot", off, size) for k, (off, size) in slots.items()})
    return AllocatedProgram(program, tuple(steps), assignment, saved, frame, tuple(sorted(slots)))


def has_calls(program: Program) -> bool:
    return any(type(it) is Instr and it.mnemonic == "call" for it in program.items)


def encode(allocated: AllocatedProgram) -> MachineCode:
    """Phase 3: machine code (position independent, with relocation records)."""
    prog = allocated.program
    return assemble(allocated.items, prog.constants, prog.name)
