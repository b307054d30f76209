"""Analysis for the allocator: register effects, values, blocks and liveness in one backward walk.

Values are the registers an instruction reads or writes, numbered in order of appearance from the end;
``keys[j]`` is (class, num, virtual).  Each value's live set is a bitset of positions (use at 2i, def
at 2i+1).  The walk builds every block's local live ranges as if nothing were live out of it, with
the block's gen/kill sets; a bitset dataflow over the blocks then gives the live-out sets, and each
live-out value is extended from its last definition in the block (or the block start) to the end.
Instructions whose registers are all explicit operands (most) are read through their per-mnemonic
shape (``FAST_SHAPES``: does operand 0 get read, written) without building effect lists; those of two
or three operands go by a branch per shape (``_BRANCHES``), which reads operand 0 by its mode and the
others as plain reads, with no loop; a memory operand's base and index registers, which tend to recur,
are matched by identity with the last ones (no dict lookup).  The others go through
``effects.register_effects``.  An operand 0 that is read and written (or written from itself as
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


# The walk's branches for the common shapes (two or three operands; by operand 0's mode); _LOOP: any other.
_LOOP, _RW3, _W3, _R2, _RW2, _W2, _COPY2, _ZW3, _ZRW2 = range(9)
_BRANCH = {(2, 0): _R2, (2, 1): _W2, (2, 2): _RW2, (3, 1): _W3, (3, 2): _RW3}
_BRANCHES: tuple = ({}, {})  # without AVX-512, with it: mnemonic -> the walk's branch by operand count


def _branches(m: str, avx512: bool) -> tuple:
    """_BRANCHES[avx512][m], filled on first use: from FAST_SHAPES (_LOOP where it has no shape)."""
    low = avx512 and m in _LOW_CANDIDATES  # the loop branch checks which registers must be 0-15
    branches = []
    for n, fast in enumerate(FAST_SHAPES.get(m) or fast_shapes(m)):
        mode = None if fast is None or low else fast[5]
        if mode is None:
            branches.append(_LOOP)
        elif mode > 2:  # a zero-idiom mnemonic
            branches.append({(2, 5): _ZRW2, (3, 4): _ZW3}.get((n, mode), _LOOP))
        elif fast[3]:  # a copy mnemonic
            branches.append(_COPY2 if (n, mode) == (2, 1) else _LOOP)
        else:
            branches.append(_BRANCH.get((n, mode), _LOOP))
    branches = _BRANCHES[1 if avx512 else 0][m] = tuple(branches)
    return branches


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
        cls = CLS[r[0]]  # (before the unpacking: a non-register fails with the same KeyError as ever)
        _, size, num, virtual = r
        key = (cls, num, virtual)
        j = index_get(key)
        if j is None:
            j = index[key] = len(keys)
            keys.append(key)
            masks.append(0)
            counts.append(0)
        ids[r] = j
        if virtual and sizes_get(num, 0) < size:  # the widest view of each virtual
            sizes[num] = size
        return j

    index_get, sizes_get = index.get, sizes.get
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
    branch_get = _BRANCHES[1 if avx512 else 0].get

    def zero_def(r, pos):
        """``vxorpd x, x, x``: a definition of operand 0 only."""
        j = ids_get(r)
        if j is None:
            j = new_value(r)
        masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
        lastdef_setdefault(j, pos)
        counts[j] += 1

    def read_address(op, use):
        """The base and index registers of memory operand ``op`` are read at ``use`` (the walk's common
        shapes inline this, with the registers of the last address remembered: see below)."""
        r, x = op[0], op[1]
        if r is not None and r[0] != RIP:
            j = ids_get(r)
            if j is None:
                j = new_value(r)
            ends_setdefault(j, use)
            counts[j] += 1
        if x is not None:
            j = ids_get(x)
            if j is None:
                j = new_value(x)
            ends_setdefault(j, use)
            counts[j] += 1

    def first_value(op, use):
        """Operand 0 seen for the first time: its new value, or None for memory (whose registers are read)."""
        if type(op) is Reg:
            return new_value(op)
        if type(op) is Mem:
            read_address(op, use)
        return None

    # the registers of the last memory operand read as u1 (and as u2), their values and how often each was
    # read since: base and index registers recur, a dict lookup hashes the register (most of the cost of a
    # register), and a register's value never changes; the counts are added when the register changes
    base1 = base1_j = index1 = index1_j = base2 = base2_j = index2 = index2_j = None
    base1_n = index1_n = base2_n = index2_n = 0
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
        branch = (branch_get(m) or _branches(m, avx512))[len(ops)]
        if branch and mask is None and not zero and not extra_uses and not extra_defs:
            # explicit operands only, two or three of them (most): no loop over the operands, no slicing;
            # operand 0 goes by the branch, and the operands only read are u1 and u2 (None where absent)
            if branch >= _ZW3:  # a zero-idiom mnemonic
                if branch == _ZW3:
                    op0, u1, u2 = ops
                    if type(u1) is Reg and u1 == u2 and type(op0) is Reg:  # ``vxorpd x, x, x``
                        zero_def(op0, pos)  # a definition of operand 0 only
                        continue
                    branch = _W3
                else:
                    op0, u2 = ops
                    if type(op0) is Reg and op0 == u2:  # ``xor r, r``
                        zero_def(op0, pos)
                        continue
                    branch = _RW2
            # operand 0 read and written, or written from itself (``vaddpd a, a, b``): the live range
            # continues through here (no bitset update); written only: a range starts here.  Counts are
            # updated as ``counts[j] = counts[j] + 1``: fewer bytecodes than ``+=`` on a subscript
            if branch == _RW3:
                op0, u1, u2 = ops
                j = ids_get(op0)
                if j is None:
                    j = first_value(op0, use)
                if j is not None:
                    ends_setdefault(j, pos)
                    lastdef_setdefault(j, pos)
                    counts[j] = counts[j] + 2
            elif branch == _W3:
                op0, u1, u2 = ops
                j = ids_get(op0)
                if j is None:
                    j = first_value(op0, use)
                if j is None:  # memory: no register written
                    pass
                elif u1 is op0:
                    u1 = None
                    ends_setdefault(j, pos)
                    lastdef_setdefault(j, pos)
                    counts[j] = counts[j] + 2
                else:
                    masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
                    lastdef_setdefault(j, pos)
                    counts[j] = counts[j] + 1
            elif branch == _R2:
                u1, u2 = ops
            else:  # two operands, operand 0 written
                op0, u2 = ops
                u1 = None
                if type(op0) is not Reg:  # a store: the registers of operand 0 are read
                    u1 = op0
                else:
                    j = ids_get(op0)
                    if j is None:
                        j = new_value(op0)
                    if branch == _RW2 or u2 is op0:
                        if branch != _RW2:
                            u2 = None
                        ends_setdefault(j, pos)
                        lastdef_setdefault(j, pos)
                        counts[j] = counts[j] + 2
                    else:
                        masks[j] |= (2 << ends_pop(j, pos)) - (1 << pos)
                        lastdef_setdefault(j, pos)
                        counts[j] = counts[j] + 1
            if u1 is not None:
                if type(u1) is Reg:
                    j = ids_get(u1)
                    if j is None:
                        j = new_value(u1)
                    ends_setdefault(j, use)
                    counts[j] = counts[j] + 1
                elif type(u1) is Mem:
                    r, x = u1[0], u1[1]
                    if r is not base1:
                        if base1_n:
                            counts[base1_j] += base1_n
                        base1, base1_j, base1_n = r, ids_get(r), 0
                        if base1_j is None and r is not None and r[0] != RIP:
                            base1_j = new_value(r)
                    if base1_j is not None:
                        ends_setdefault(base1_j, use)
                        base1_n += 1
                    if x is not index1:
                        if index1_n:
                            counts[index1_j] += index1_n
                        index1, index1_j, index1_n = x, ids_get(x), 0
                        if index1_j is None and x is not None:
                            index1_j = new_value(x)
                    if index1_j is not None:
                        ends_setdefault(index1_j, use)
                        index1_n += 1
            if type(u2) is Reg:
                j = ids_get(u2)
                if j is None:
                    j = new_value(u2)
                ends_setdefault(j, use)
                counts[j] = counts[j] + 1
            elif type(u2) is Mem:
                r, x = u2[0], u2[1]
                if r is not base2:
                    if base2_n:
                        counts[base2_j] += base2_n
                    base2, base2_j, base2_n = r, ids_get(r), 0
                    if base2_j is None and r is not None and r[0] != RIP:
                        base2_j = new_value(r)
                if base2_j is not None:
                    ends_setdefault(base2_j, use)
                    base2_n += 1
                if x is not index2:
                    if index2_n:
                        counts[index2_j] += index2_n
                    index2, index2_j, index2_n = x, ids_get(x), 0
                    if index2_j is None and x is not None:
                        index2_j = new_value(x)
                if index2_j is not None:
                    ends_setdefault(index2_j, use)
                    index2_n += 1
            if branch == _COPY2 and type(ops[1]) is Reg and is_register_copy(it):
                _hint(it, pos >> 1, ids, copies, hints)
            continue
        fast = (fast_get(m) or fast_shapes(m))[len(ops)]
        if fast is not None and mask is None and not zero and not extra_uses and not extra_defs:
            # explicit operands only: no list of effects
            first = ops[0]
            mode = fast[5]
            if mode > 2:  # a zero-idiom mnemonic
                if is_zero_idiom(it):  # ``vxorpd x, x, x``: a definition of operand 0 only
                    zero_def(first, pos)
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
                    read_address(op, use)
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
            if len(ops) == 1 and type(ops[0]) is Label and c == "j" and mask is None and not extra_uses \
                    and not extra_defs:
                continue  # a jump to a label: no registers
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
    for j, n in ((base1_j, base1_n), (index1_j, index1_n), (base2_j, base2_n), (index2_j, index2_n)):
        if n:
            counts[j] += n
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
