"""Register allocation in one call: ``allocate(program) -> AllocatedProgram``.

Liveness is computed over the control-flow graph (bitset dataflow, so loops are handled exactly);
each value's live set is a bitset of positions (use at 2i, def at 2i+1).  Physical registers named
in the program (arguments, returns, rdx:rax for div, cl for shifts, call clobbers) are values too
and block their register where live.  Virtuals are assigned greedily in order of first position
(linear scan with lifetime holes), trying move hints first; when nothing is free the values of least
spill weight (reads and writes per live position; on ties the one ending last) are spilled whole to a
stack slot (64 bytes for zmm) and accessed through three scratch registers per class (preferably
r11/r10/rbx and xmm15/14/13, always ones the program does not name itself), which are only reserved
when spilling is needed.  The rewrite memoises substituted operands (registers and addresses are
tuples) and builds each spill load/store once per function.
Copies that end up between one register are elided.  The prologue saves exactly the callee-saved
registers written; the frame keeps rsp 16-byte aligned at calls; vzeroupper precedes ``ret``
whenever ymm/zmm registers were used.  Opmask virtuals spill too (8-byte slots, kmovq).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import partial
from itertools import chain

from .assembler import MachineCode, assemble
from .effects import COPY_MNEMONICS, is_register_copy, register_effects
from .encoder import EncodingError, select_form
from .forms import EVEX_MNEMONICS, FORMS
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
_instr = partial(tuple.__new__, Instr)  # Instr from a 6-tuple without the Python-level __new__ (hot paths)


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


# mnemonics with vector operands that may need registers 0-15 (no EVEX form, or a vcmp writing a vector)
_LOW_CANDIDATES = frozenset(m for m, forms in FORMS.items()
                            if any(k.reg in _VEC or k.vsib for f in forms for k in f.operands)
                            and (m not in EVEX_MNEMONICS or m.startswith(("vcmp", "vpcmp"))))


def _needs_low_vector(ins: Instr) -> bool:
    m = ins.mnemonic
    if m not in EVEX_MNEMONICS:
        return True
    return m.startswith(("vcmp", "vpcmp")) and type(ins.operands[0]) is Reg and ins.operands[0].kind != KREG


def allocate(program: Program) -> AllocatedProgram:
    """Assign every virtual register a physical register or a stack slot (see module docstring)."""
    items = program.items
    scan = _scan(items)
    bounds, succs = build_cfg(items)
    masks = _liveness(scan, bounds, succs)
    facts = _facts(scan, masks)
    index = scan.index
    assigned = _assign(program, facts, index, masks, reserve=False)
    if assigned is None:  # pressure: reserve the scratch registers and assign again
        assigned = _assign(program, facts, index, masks, reserve=True)
    return _rewrite(program, items, scan, assigned[0], assigned[1], facts)


class _Scan:
    """One pass over the items: register effects as value ids, and the facts the allocator needs.

    Values are numbered in order of appearance; ``index`` maps (class, num, virtual) to the id and
    ``ids`` memoises it per register view (registers are tuples: hashing one is cheap)."""

    __slots__ = ("effects", "uses", "defs", "index", "ids", "sizes", "needs_low", "hints", "copies", "written_gp",
                 "wide")

    def value(self, r: Reg):
        """Value id of a register (None for one that no instruction reads or writes)."""
        j = self.ids.get(r)
        return j if j is not None else self.index.get((_CLS[r.kind], r.num, r.virtual))

    def __init__(self):
        self.effects, self.uses, self.defs = [], [], []
        self.index: dict = {}
        self.ids: dict = {}
        self.sizes: dict = {}
        self.needs_low: set = set()
        self.hints: dict = {}
        self.copies: set = set()
        self.written_gp: set = set()
        self.wide = False


_NO_EFFECT = ((), ())


def _scan(items) -> _Scan:
    scan = _Scan()
    index, sizes, written_gp = scan.index, scan.sizes, scan.written_gp
    effects, uses_i, defs_i = scan.effects, scan.uses, scan.defs
    ids = scan.ids
    vec_virtuals: set = set()

    def new_value(r):
        key = (_CLS[r.kind], r.num, r.virtual)
        j = index.get(key)
        if j is None:
            j = index[key] = len(index)
        ids[r] = j
        if r.virtual:
            if sizes.get(r.num, 0) < r.size:
                sizes[r.num] = r.size
            if r.kind in _VEC:
                vec_virtuals.add(r)
        if r.size > 16:
            scan.wide = True
        return j

    known = ids.__getitem__
    copies, hints = scan.copies, scan.hints
    for i, it in enumerate(items):
        if type(it) is not Instr:
            effects.append(_NO_EFFECT)
            uses_i.append(())
            defs_i.append(())
            continue
        effect = register_effects(it)
        effects.append(effect)
        uses, defs = effect
        try:  # registers seen before: the common case, a C-level map
            ui = list(map(known, uses))
            di = list(map(known, defs))
        except KeyError:
            ui = [ids[r] if r in ids else new_value(r) for r in uses]
            di = [ids[r] if r in ids else new_value(r) for r in defs]
        uses_i.append(ui)
        defs_i.append(di)
        m = it.mnemonic
        if vec_virtuals and m in _LOW_CANDIDATES and _needs_low_vector(it):
            scan.needs_low.update(r.num for r in uses + defs if r in vec_virtuals)
        if m in COPY_MNEMONICS and is_register_copy(it):
            copies.add(i)
            a, b = it.operands
            if a.virtual:
                hints.setdefault(a.key, []).append(b)
            if b.virtual:
                hints.setdefault(b.key, []).append(a)
    # physical GP registers the program writes itself (the prologue saves the callee-saved ones)
    defined = set(chain.from_iterable(defs_i))
    written_gp.update(k[1] for k, j in index.items() if k[0] == "gp" and not k[2] and j in defined)
    return scan


def _liveness(scan: _Scan, bounds, succs) -> list:
    """Per-value position bitsets (use at 2i, def at 2i+1) from a bitset dataflow over the blocks."""
    uses_i, defs_i = scan.uses, scan.defs
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
    masks = [0] * len(scan.index)
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
    return masks


def _facts(scan: _Scan, masks) -> dict:
    """Fixed-register occupancy, scratch registers, and the scan's hints, constraints and sizes."""
    fixed: dict = {}
    for key, j in scan.index.items():
        if not key[2]:
            fixed[(key[0], key[1])] = fixed.get((key[0], key[1]), 0) | masks[j]
    scratch = {}
    for cls, prefs in (("gp", _GP_SCRATCH), ("vec", _VEC_SCRATCH), ("k", _K_SCRATCH)):
        free = [n for n in prefs if not fixed.get((cls, n))]  # never a register the program names itself
        scratch[cls] = tuple((free + [n for n in prefs if n not in free])[:3])
    # spill weight: reads and writes per live position (each costs a reload or store once spilled)
    occurrences = Counter(chain(chain.from_iterable(scan.uses), chain.from_iterable(scan.defs)))
    weight = [occurrences[j] / (m.bit_count() or 1) for j, m in enumerate(masks)]
    return {"fixed": fixed, "needs_low": scan.needs_low, "hints": scan.hints, "sizes": scan.sizes,
            "wide": scan.wide, "written_gp": scan.written_gp, "scratch": scratch, "weight": weight}


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
            choice = _evict(cls, cands, j, masks, facts["weight"], fixed, occupants, index, assigned, spilled,
                            occupancy)
            if choice is None:
                spilled.add(key)
                continue
        assigned[key] = (cls, choice)
        occupancy[(cls, choice)] |= m
        occupants[(cls, choice)].append(key)
    return assigned, spilled


def _evict(cls, cands, j, masks, weight, fixed, occupants, index, assigned, spilled, occupancy):
    """Free a register for value ``j`` by spilling the occupants in its way that weigh least (uses per
    live position), or return None when value ``j`` itself weighs least; ties spill what ends last."""
    m = masks[j]
    best = None
    for n in cands:
        if fixed.get((cls, n), 0) & m:
            continue
        conflicting = [o for o in occupants[(cls, n)] if masks[index[o]] & m]
        cost = sum(weight[index[o]] for o in conflicting)
        far = max(masks[index[o]].bit_length() for o in conflicting)
        if best is None or (cost, -far) < best[0]:
            best = ((cost, -far), n, conflicting)
    if best is None or (weight[j], -m.bit_length()) <= best[0]:
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


def _rewrite(program, items, scan, assigned, spilled, facts):
    sizes = facts["sizes"]
    slots: dict = {}
    offset = 0
    for key in sorted(spilled, key=lambda k: (-sizes.get(k[1], 8), k)):  # sorted: the same layout every run
        size = sizes[key[1]] if key[0] == "vec" else 8
        offset = (offset + size - 1) // size * size
        slots[key] = (offset, size)
        offset += size
    vec_move = "movups" if program.isa == "sse2" else "vmovups"
    keys = list(scan.index)
    spilled_ids = frozenset(j for j, k in enumerate(keys) if k in spilled)
    effects, uses_i, defs_i, copies, value = scan.effects, scan.uses, scan.defs, scan.copies, scan.value
    scratch_pools = facts["scratch"]
    # operand -> operand after allocation, for registers that got one and memory over them (operands
    # are tuples, hashed in C: the same register or address is substituted once per function)
    operand_map: dict = {}

    def substitute(op):
        if type(op) is Reg:
            return _phys(op, assigned[(_CLS[op.kind], op.num, True)][1]) if op.virtual else op
        if type(op) is Mem and ((op.base is not None and op.base.virtual) or
                                (op.index is not None and op.index.virtual)):
            return Mem(substitute(op.base) if op.base is not None else None,
                       substitute(op.index) if op.index is not None else None,
                       op.scale, op.disp, op.size, op.bcst, op.label)
        return op

    def sub(r, scratch):
        """A register after allocation; spilled values get the next scratch register of their class."""
        if r is None:
            return None
        p = operand_map.get(r)
        if p is not None:
            return p
        j = value(r) if r.virtual else None
        if j not in spilled_ids:
            p = operand_map[r] = substitute(r)
            return p
        n = scratch.get(j)
        if n is None:
            cls = keys[j][0]
            taken = 0
            for k in scratch:
                if keys[k][0] == cls:
                    taken += 1
            n = scratch[j] = scratch_pools[cls][taken]
        return _phys(r, n)

    moves: dict = {}

    def spill_moves(scratch, wanted, load):
        for j, n in scratch.items():
            if j in wanted:
                move = moves.get((j, n, load))
                if move is None:
                    key = keys[j]
                    move = moves[(j, n, load)] = _spill_move(key, n, slots[key], vec_move, load)
                body.append((-1, move))

    body = []
    rets = []
    for i, it in enumerate(items):
        if type(it) is not Instr:
            body.append((i, it))
            continue
        new = None
        if not spilled_ids or spilled_ids.isdisjoint(uses_i[i] + defs_i[i]):
            new = _substitute_all(it, operand_map, substitute)
        if new is not None:
            if i in copies and new.operands[0] == new.operands[1]:
                new = Elided(new)
            body.append((i, new))
        else:
            # the instruction touches spilled values: fold one into a stack-slot operand where the form
            # allows it, reload the others into scratch registers before and store them after
            scratch: dict = {}
            fold = _fold_candidate(it, effects[i], value, spilled_ids, slots, keys)
            ops = []
            for j, op in enumerate(it.operands):
                new = operand_map.get(op)  # never a spilled register, nor memory over one
                if fold is not None and j == fold[0]:
                    ops.append(fold[1])
                elif new is not None:
                    ops.append(new)
                elif type(op) is Reg:
                    ops.append(sub(op, scratch))
                elif type(op) is Mem and ((op.base is not None and op.base.virtual) or
                                          (op.index is not None and op.index.virtual)):
                    ops.append(Mem(sub(op.base, scratch), sub(op.index, scratch), op.scale, op.disp, op.size,
                                   op.bcst, op.label))
                else:
                    ops.append(op)
            mnemonic = it.mnemonic
            if fold is not None:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
                mnemonic = _UNALIGNED.get(mnemonic, mnemonic)
            new = _instr((mnemonic, tuple(ops), sub(it.mask, scratch), it.zero, it.implicit_uses, it.implicit_defs))
            if fold is not None:
                try:
                    select_form(new)
                except EncodingError:  # the form has no memory operand there: use a scratch register
                    ops[fold[0]] = sub(it.operands[fold[0]], scratch)
                    new = new._replace(operands=tuple(ops))
            if scratch:
                # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
                narrow = [value(r) for r in effects[i][1] if r.kind == GP and r.size < 4]
                spill_moves(scratch, set(uses_i[i]).union(narrow) if narrow else uses_i[i], True)
            if i in copies and ops[0] == ops[1]:
                body.append((i, Elided(new)))
            else:
                body.append((i, new))
            if scratch:
                spill_moves(scratch, defs_i[i], False)
        if it.mnemonic == "ret":
            rets.append(len(body) - 1)
    written = set(facts["written_gp"])
    written.update(n for c, n in assigned.values() if c == "gp")
    if any(k[0] == "gp" for k in spilled):
        written.update(facts["scratch"]["gp"])
    return _frame(program, body, rets, assigned, slots, offset, written, facts["wide"])


def _substitute_all(it: Instr, operand_map: dict, substitute):
    """``it`` over allocated registers when none of its values is spilled, else None."""
    ops = it.operands
    try:  # operands seen before: the common case, a C-level map
        new_ops = tuple(map(operand_map.__getitem__, ops))
    except KeyError:
        try:
            new_ops = tuple([operand_map[op] if op in operand_map else operand_map.setdefault(op, substitute(op))
                             for op in ops])
        except KeyError:  # a spilled zero-idiom source (not among the effects): the caller spills
            return None
    mask = it.mask
    if mask is not None and mask.virtual:
        mask = substitute(mask)
    if mask is it.mask and new_ops == ops:
        return it
    return _instr((it.mnemonic, new_ops, mask, it.zero, it.implicit_uses, it.implicit_defs))


_UNALIGNED = {"vmovaps": "vmovups", "vmovapd": "vmovupd", "vmovdqa": "vmovdqu", "vmovdqa32": "vmovdqu32",
              "vmovdqa64": "vmovdqu64"}


def _fold_candidate(it: Instr, effect, value, spilled_ids, slots, keys):
    """(operand index, stack-slot Mem) when a spilled register operand can be read/written in place.

    Only for instructions without another memory operand or mask, never legacy SSE (alignment and
    merge semantics differ from the register form), only for a virtual that appears once, and for
    a definition only when the view covers the whole slot (a narrower register write would have
    zero-extended)."""
    ops = it.operands
    if it.mask is not None or Mem in map(type, ops):
        return None
    for j, op in enumerate(ops):
        if type(op) is not Reg or not op.virtual or op.kind == KREG:
            continue
        v = value(op)
        if v not in spilled_ids:
            continue
        if op.kind in _VEC and it.mnemonic[0] != "v":
            continue
        if sum(1 for o in ops if type(o) is Reg and o.num == op.num and o.virtual) != 1:
            continue
        off, size = slots[keys[v]]
        if j == 0 and op.size != size and op in effect[1]:
            continue
        return j, Mem(_RSP, disp=off, size=op.size)
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


def _frame(program, body, rets, assigned, slots, spill_bytes, written, wide):
    callee = program.abi.callee_saved_gp
    saved = tuple(r for r in callee if r.num in written)
    frame = spill_bytes
    if has_calls(program):  # rsp must be 16-byte aligned at every call
        frame += -(8 + 8 * len(saved) + spill_bytes) % program.abi.stack_align
    steps = [(-1, Instr("push", (r,))) for r in saved]
    if frame:
        steps.append((-1, Instr("sub", (_RSP, frame))))
    epilogue = [(-1, Instr("vzeroupper"))] if wide else []
    if frame:
        epilogue.append((-1, Instr("add", (_RSP, frame))))
    epilogue.extend((-1, Instr("pop", (r,))) for r in reversed(saved))
    done = 0
    for r in rets:  # body positions of the returns: the epilogue goes before each
        steps.extend(body[done:r])
        steps.extend(epilogue)
        done = r
    steps.extend(body[done:])
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
