"""Analysis for the allocator: register effects, values, blocks and liveness in one backward walk.

Values are the registers an instruction reads or writes, numbered in order of appearance from the end;
``keys[j]`` is (class, num, virtual).  Each value's live set is a bitset of positions (use at 2i, def
at 2i+1).  The walk builds every block's local live ranges as if nothing were live out of it, with
the block's gen/kill sets; a bitset dataflow over the blocks then gives the live-out sets, and each
live-out value is extended from its last definition in the block (or the block start) to the end.
Instructions whose registers are all explicit operands (most) are read through their per-mnemonic
shape (``FAST_SHAPES``: does operand 0 get read, written) without building effect lists; the others
go through ``effects.register_effects``.  An operand 0 that is read and written (or written from itself as
operand 1) leaves its value's live range open: the def and the use meet at this instruction, so the
range simply continues to the earlier definition (no bitset update here).  A register a call clobbers
that no later instruction names gets no value (most of the ~25 clobbers of each call): ``clobbers``
records its class, number and the call's position, which the allocator adds to the register's fixed
occupancy; fewer values make every later phase cheaper.
"""

from __future__ import annotations

from operator import itemgetter

from .effects import COPY_MNEMONICS, is_register_copy, is_zero_idiom, plain_shapes, register_effects
from .forms import EVEX_MNEMONICS, FORMS
from .operands import GP, KREG, RIP, XMM, YMM, ZMM, Bind, Instr, Label, Mem, Reg

CLS = {GP: "gp", XMM: "vec", YMM: "vec", ZMM: "vec", KREG: "k"}
_VEC = (XMM, YMM, ZMM)
_SIZE = itemgetter(1)  # a register's view size


def _is_branch(it) -> bool:
    m = it.mnemonic
    return m[0] == "j" or m == "ret"


def build_cfg(items):
    """Basic blocks as (start, end) item ranges and their successor lists."""
    bounds = []
    start = 0
    for i, it in enumerate(items):
        if type(it) is Bind and i != start:
            bounds.append((start, i))
            start = i
        if type(it) is Instr and _is_branch(it):
            bounds.append((start, i + 1))
            start = i + 1
    if start < len(items) or not bounds:
        bounds.append((start, len(items)))
    label_block = {}
    for b, (s, e) in enumerate(bounds):
        if s < e and type(items[s]) is Bind:
            label_block[items[s].label] = b
    return bounds, _successors(items, bounds, label_block)


def _successors(items, bounds, label_block) -> list:
    succs = []
    for b, (s, e) in enumerate(bounds):
        last = items[e - 1] if e > s else None
        nxt = [b + 1] if b + 1 < len(bounds) else []
        if type(last) is Instr and _is_branch(last):
            if last.mnemonic == "ret":
                succs.append([])
                continue
            target = last.operands[0] if last.operands else None
            tb = [label_block[target]] if type(target) is Label else []
            succs.append(tb if last.mnemonic == "jmp" else nxt + tb)
        else:
            succs.append(nxt)
    return succs


# mnemonics with vector operands that may need registers 0-15 (no EVEX form, or a vcmp writing a vector)
_LOW_CANDIDATES = frozenset(m for m, forms in FORMS.items()
                            if any(k.reg in _VEC or k.vsib for f in forms for k in f.operands)
                            and (m not in EVEX_MNEMONICS or m.startswith(("vcmp", "vpcmp"))))


def _needs_low_vector(ins: Instr) -> bool:
    m = ins.mnemonic
    if m not in EVEX_MNEMONICS:
        return True
    return m.startswith(("vcmp", "vpcmp")) and type(ins.operands[0]) is Reg and ins.operands[0].kind != KREG


FAST_SHAPES: dict = {}  # mnemonic -> by operand count (0-15): (reads operand 0, writes operand 0, maybe a zero
#                         idiom, maybe a register copy, the form's one-value spill plans by int key: spill.py,
#                         operand 0's mode as one int for the liveness walk: 0 read, 1 written, 2 both, plus
#                         3 for a mnemonic that may be a zero idiom,
#                         whether the walk looks further: a copy, or a mnemonic that may need registers 0-15)
#                         or None where an instruction has no operands, implicit registers or operand-dependent
#                         effects, or is a branch, return or call


def fast_shapes(m: str) -> tuple:
    """FAST_SHAPES[m], filled on first use."""
    if m[0] == "j" or m in ("ret", "call"):  # block ends and calls: the general path looks at them
        fast = FAST_SHAPES[m] = (None,) * 16
        return fast
    shapes = plain_shapes(m)
    copy = m in COPY_MNEMONICS
    fast = FAST_SHAPES[m] = (None,) + tuple(None if s is None or s[3] or s[4] or s[5] or not (s[0] or s[1])
                                            else (s[0], s[1], s[2], copy, {},
                                                  (2 if s[0] and s[1] else int(s[1])) + 3 * s[2],
                                                  copy or m in _LOW_CANDIDATES)
                                            for s in shapes[1:]) + (None,) * 10
    return fast


class Analysis:
    """What the allocator needs to know about a program (see the module docstring)."""

    __slots__ = ("keys", "index", "ids", "masks", "counts", "sizes", "wide", "needs_low", "hints", "copies",
                 "rets", "defined", "calls", "live_in", "clobbers")

    def value(self, r):
        """Value id of a register (None for one that no instruction reads or writes)."""
        j = self.ids.get(r)
        return j if j is not None else self.index.get((CLS[r.kind], r.num, r.virtual))

    def weights(self) -> list:
        """Spill weight of each value: reads and writes per live position (each costs a reload or
        store once spilled)."""
        return [c / (m.bit_count() or 1) for c, m in zip(self.counts, self.masks)]


def _hint(it, i, ids, copies, hints) -> None:
    """A register copy: a coalescing candidate (each side is a hint for the other)."""
    copies.add(i)
    x, y = it[1]
    jx, jy = ids[x], ids[y]
    if x[3]:
        hints.setdefault(jx, []).append(jy)
    if y[3]:
        hints.setdefault(jy, []).append(jx)


def _close(blocks, masks, s, e, ends, lastdef):
    """Finish block [s, e): values used before any definition there are live from its start."""
    start_bit = 1 << (2 * s)
    gen = kill = 0
    for j, end in ends.items():
        masks[j] |= (2 << end) - start_bit
        gen |= 1 << j
    for j in lastdef:
        kill |= 1 << j
    blocks.append((s, e, gen, kill, dict(lastdef)))
    ends.clear()
    lastdef.clear()


def analyse(items, avx512: bool) -> Analysis:
    """Effects, values, blocks and per-value position bitsets (see the module docstring)."""
    a = Analysis()
    ids: dict = {}
    index: dict = {}
    keys: list = []
    masks: list = []
    sizes: dict = {}

    def new_value(r):
        key = (CLS[r[0]], r[2], r[3])
        j = index.get(key)
        if j is None:
            j = index[key] = len(keys)
            keys.append(key)
            masks.append(0)
            counts.append(0)
        ids[r] = j
        if r[3] and sizes.get(r[2], 0) < r[1]:  # the widest view of each virtual
            sizes[r[2]] = r[1]
        return j

    ids_get = ids.get
    hints: dict = {}
    copies: set = set()
    rets: list = []
    clobbers: list = []     # (class, number, position) of call clobbers that are no value
    wide_clobber = False    # whether one of them is a ymm/zmm view
    needs_low: set = set()
    calls = False
    counts: list = []       # reads and writes of each value (spill weights)
    blocks: list = []       # in reverse order: (start, end, gen, kill, last definition of each value)
    label_blocks: dict = {}
    ends: dict = {}         # value -> last use position in the block after the walk's position
    lastdef: dict = {}      # value -> its last definition in the block
    ends_pop, ends_setdefault, lastdef_setdefault = ends.pop, ends.setdefault, lastdef.setdefault
    fast_get = FAST_SHAPES.get
    cur_end = len(items)
    # the walk goes by definition position (2i + 1); fewer lines per instruction count here: every line
    # of this loop runs for every instruction of every function
    for pos, use, it in zip(range(2 * cur_end - 1, 0, -2), range(2 * cur_end - 2, -1, -2), reversed(items)):
        if type(it) is not Instr:
            if type(it) is Bind:  # always closes a non-empty block: it belongs to it
                _close(blocks, masks, pos >> 1, cur_end, ends, lastdef)
                cur_end = pos >> 1
                label_blocks[it.label] = len(blocks) - 1
            continue
        m, ops, mask, zero, extra_uses, extra_defs = it
        fast = (fast_get(m) or fast_shapes(m))[len(ops)]
        if fast is not None and mask is None and not zero and not extra_uses and not extra_defs:
            # explicit operands only: no list of effects
            first = ops[0]
            mode = fast[5]
            if mode > 2:  # a zero-idiom mnemonic
                if is_zero_idiom(it):  # ``vxorpd x, x, x``: a definition of operand 0 only
                    j = ids_get(first)
                    if j is None:
                        j = new_value(first)
                    masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
                    lastdef_setdefault(j, pos)
                    counts[j] += 1
                    if avx512 and m in _LOW_CANDIDATES and _needs_low_vector(it) and first[3] and first[0] in _VEC:
                        needs_low.add(first[2])
                    continue
                mode -= 3
            if type(first) is Reg:
                j = ids_get(first)
                if j is None:
                    j = new_value(first)
                # read and written (or written from itself, ``vaddpd a, a, b``): the live range only
                # continues through here, no mask update; written only: a range starts here
                if mode == 2:
                    ends_setdefault(j, pos)
                    lastdef_setdefault(j, pos)
                    counts[j] += 2
                    ops = ops[1:]
                elif not mode:
                    ends_setdefault(j, use)
                    counts[j] += 1
                    ops = ops[1:]
                elif len(ops) > 1 and ops[1] is first:
                    ends_setdefault(j, pos)
                    lastdef_setdefault(j, pos)
                    counts[j] += 2
                    ops = ops[2:]
                else:
                    masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
                    lastdef_setdefault(j, pos)
                    counts[j] += 1
                    ops = ops[1:]
            for op in ops:
                if type(op) is Reg:
                    j = ids_get(op)
                    if j is None:
                        j = new_value(op)
                    ends_setdefault(j, use)
                    counts[j] += 1
                elif type(op) is Mem:
                    r = op[0]
                    if r is not None and r[0] != RIP:
                        j = ids_get(r)
                        if j is None:
                            j = new_value(r)
                        ends_setdefault(j, use)
                        counts[j] += 1
                    r = op[1]
                    if r is not None:
                        j = ids_get(r)
                        if j is None:
                            j = new_value(r)
                        ends_setdefault(j, use)
                        counts[j] += 1
            if fast[6]:  # a register copy (a coalescing hint) or an instruction that may need registers 0-15
                if fast[3] and type(it[1][-1]) is Reg and is_register_copy(it):  # (not ``mov r, imm``)
                    _hint(it, pos >> 1, ids, copies, hints)
                if avx512 and m in _LOW_CANDIDATES and _needs_low_vector(it):
                    uses, defs = register_effects(it)
                    needs_low.update(r.num for r in uses + defs if r.virtual and r.kind in _VEC)
            continue
        # branches, calls, returns and everything else FAST_SHAPES has no shape for
        i = pos >> 1
        c = m[0]
        if c == "j" or m == "ret":
            if c == "r":
                rets.append(i)
            if i + 1 < cur_end:
                _close(blocks, masks, i + 1, cur_end, ends, lastdef)
                cur_end = i + 1
        elif m == "call":
            calls = True
        uses, defs = register_effects(it)
        for r in defs:
            j = ids_get(r)
            if j is None:
                if m == "call" and not r[3]:  # a clobber no later instruction names: no value (see above)
                    clobbers.append((CLS[r[0]], r[2], pos))
                    wide_clobber = wide_clobber or r[1] > 16
                    continue
                j = new_value(r)
            masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
            lastdef_setdefault(j, pos)
            counts[j] += 1
        for r in uses:
            j = ids_get(r)
            if j is None:
                j = new_value(r)
            ends_setdefault(j, use)
            counts[j] += 1
        if m in COPY_MNEMONICS and is_register_copy(it):
            _hint(it, i, ids, copies, hints)
        if avx512 and m in _LOW_CANDIDATES and _needs_low_vector(it):
            needs_low.update(r.num for r in uses + defs if r.virtual and r.kind in _VEC)
    if cur_end > 0 or not blocks:
        _close(blocks, masks, 0, cur_end, ends, lastdef)
    blocks.reverse()
    nb = len(blocks)
    bounds = [(s, e) for s, e, _, _, _ in blocks]
    succs = _successors(items, bounds, {lab: nb - 1 - b for lab, b in label_blocks.items()})
    # dataflow over the blocks
    live_in, live_out = [0] * nb, [0] * nb
    changed = True
    while changed:
        changed = False
        for b in range(nb - 1, -1, -1):
            out = 0
            for sb in succs[b]:
                out |= live_in[sb]
            _, _, gen, kill, _ = blocks[b]
            new_in = gen | (out & ~kill)
            if new_in != live_in[b] or out != live_out[b]:
                live_in[b], live_out[b] = new_in, out
                changed = True
    defined = 0
    for b, (s, e, _, kill, last_defs) in enumerate(blocks):
        defined |= kill
        lo = live_out[b]
        if not lo:
            continue
        top = 2 << (2 * e - 1)
        for j, d in last_defs.items():  # defined in the block: live from the last definition
            if (lo >> j) & 1:
                masks[j] |= top - (1 << d)
        lo &= ~kill
        whole = top - (1 << (2 * s))
        while lo:  # live through the block (or used before any definition there)
            low = lo & -lo
            masks[low.bit_length() - 1] |= whole
            lo ^= low
    a.keys, a.index, a.ids, a.masks, a.counts = keys, index, ids, masks, counts
    wide = wide_clobber or max(map(_SIZE, ids), default=0) > 16  # whether any view is wider than xmm
    a.sizes, a.wide, a.needs_low, a.hints, a.copies, a.rets = sizes, wide, needs_low, hints, copies, rets
    a.defined, a.calls, a.live_in, a.clobbers = defined, calls, live_in, clobbers
    return a
