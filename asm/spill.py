"""Spill code for the allocator: rewriting instructions that touch spilled values.

A spilled value lives in a stack slot.  An instruction reading or writing it gets the slot itself as an
operand where the form allows (folding; one spilled register per instruction, never for legacy SSE or
opmasks), otherwise a scratch register of the value's class, loaded before and stored after.  One scratch
register per class is reserved; an instruction that needs more borrows registers it does not name, each
saved to a frame slot of its own around it.

Instructions whose registers are all explicit operands (``liveness.FAST_SHAPES``) are rewritten from a
plan (``spill_plans``).  The common case, one spilled register view (at one or more operands), keys its
plan by an int (view code, operand positions, zero idiom, no-fold) in its form's table
``FAST_SHAPES[m][n][4]`` (``rewrite_one_value``; it always gets scratch 0); several spilled views among
three operands key theirs by an int too (``rewrite_values``); spilled addresses go through per-operand
tuple keys (``rewrite_simple``).  Whether a folded form encodes is cached by the other operands.  Emitted
items are (origin, item) steps; scratch views, slot operands and spill loads and stores depend only on
view, slot and scratch registers: they are built once per process.  Other instructions (masks, implicit
registers, calls) take the general path (``spill_general``) through ``effects.register_effects``.
"""

from __future__ import annotations

from .effects import is_zero_idiom
from .operands import GP, Instr, Mem, Reg
from .spill_general import GeneralPath
from .spill_plans import (
    _RSP,
    CLASSES,
    MULTI,
    PLANS,
    SPILLED,
    UNFOLDABLE,
    UNSPILLED_ADDRESS,
    ZERO_IDIOM,
    Elided,
    ScratchShortage,
    _instr,
    _mem,
    _new,
    make_plan,
    one_value_plan,
    phys,
    spill_move,
    unfoldable_form,
    values_plan,
    with_operand,
)

_VIEW_SPILLS: dict = {}  # (view kind, view size, slot, scratch pool, vector move) -> (plan code, scratch views,
#                         slot operand, load and store steps through scratch 0)
_CLASS_OF = {"gp": "gp", "xmm": "vec", "ymm": "vec", "zmm": "vec", "k": "k", "rip": "rip"}
_BORROWABLE = {"gp": (0, 1, 2, 6, 7, 8, 9, 10, 11), "vec": tuple(range(16)), "k": tuple(range(1, 8))}


class Spiller(GeneralPath):
    """Rewrites instructions that touch spilled values (see the module docstring)."""

    def __init__(self, program, a, slots, scratch_pools, operand_map, substitute, frame_end=0):
        self.keys, self.ids_get, self.copies = a.keys, a.ids.get, a.copies
        self.frame_end = frame_end  # bytes of frame slots so far (borrowed registers add theirs)
        self.temps: dict = {}       # (class, borrowed register) -> its frame slot
        # a borrowed vector register is saved whole: ymm/zmm where the program uses them
        self.vec_temp = (64 if program.isa == "avx512" else 32) if a.wide else 16
        self.value, self.slots, self.scratch_pools = a.value, slots, scratch_pools
        self.operand_map, self.substitute = operand_map, substitute
        self.vec_move = "movups" if program.isa == "sse2" else "vmovups"
        self.nscratch = min(map(len, scratch_pools.values()))  # (the allocator gives every class as many)
        self.slot_mems: dict = {}
        self.values: dict = {}  # spilled value id -> [key, loads by scratch index, stores by scratch index]
        self.regs: dict = {}    # spilled register view -> (code, value entry, scratch views, slot operand,
        #                         load and store steps through scratch 0)
        self.addrs: dict = {}   # (address over a spilled register, scratch indices) -> address after allocation

    # ---- plans: instructions of FAST_SHAPES ------------------------------------------------------------
    def _reg(self, op):
        j = self.ids_get(op)
        if j is None:
            j = self.value(op)
        key = self.keys[j]
        slot = self.slots[key]
        v = self.values.get(j)
        if v is None:
            v = self.values[j] = [key, [None, None, None], [None, None, None]]
        pool = self.scratch_pools[key[0]]
        cache_key = (op[0], op[1], slot, pool, self.vec_move)
        spills = _VIEW_SPILLS.get(cache_key)
        if spills is None:
            off, size = slot
            cls = key[0]
            code = 8 * (1 + CLASSES.index(cls) + 3 * ((op[1] == size) + 2 * (op[0] == GP and op[1] < 4)))
            views = tuple(phys(op, n) for n in pool)
            spills = _VIEW_SPILLS[cache_key] = (code, views, _mem((_RSP, None, 1, off, op[1], 0, None)),
                                                (-1, spill_move(key, pool[0], slot, self.vec_move, True)),
                                                (-1, spill_move(key, pool[0], slot, self.vec_move, False)))
        # the same steps for every view of the value (the general path may have made one of them already)
        if v[1][0] is None:
            v[1][0] = spills[3]
        if v[2][0] is None:
            v[2][0] = spills[4]
        info = self.regs[op] = (spills[0], v, spills[1], spills[2], v[1][0], v[2][0])
        return info

    def _code(self, op, values, vinfos):
        """Operand code of a spilled register (its class and view, ``a`` in its low bits) or address."""
        if type(op) is not Reg:
            codes = ["m"]
            for r in (op[0], op[1]):
                codes.append(0 if r is None or not r[3] or self.operand_map[r] is not SPILLED
                             else self._code(r, values, vinfos))
            return tuple(codes)
        info = self.regs.get(op)
        if info is None:
            info = self._reg(op)
        v = info[1]
        if v in values:
            return info[0] + values.index(v)
        values.append(v)
        vinfos.append(info)
        return info[0] + len(values) - 1

    def rewrite_one_value(self, i, it, new_ops, fast, steps) -> bool:
        """Rewrite ``it`` (registers all explicit operands, read and written as ``fast`` says) when its
        spilled operands are one register view (the common case), from a plan in ``fast[4]`` keyed by an int
        (no per-operand codes); False (nothing emitted) otherwise.  Runs for most instructions touching
        spilled values: each line here counts (operand tuples are built by arity, not by helpers)."""
        ops = it[1]
        k = new_ops.index(SPILLED)
        op = ops[k]
        info = self.regs.get(op)
        if info is None:
            if type(op) is not Reg:
                return False
            info = self._reg(op)
        n = len(ops)
        spills = new_ops.count(SPILLED)
        if spills == 1:
            key = info[0] | 128 << k
        elif ops.count(op) == spills:  # an unspilled operand never equals a spilled register view
            key = info[0]
            for j in range(k, n):
                if new_ops[j] is SPILLED:
                    key |= 128 << j
        else:
            return n < 4 and self.rewrite_values(i, it, new_ops, fast, steps)
        if fast[2] and is_zero_idiom(it):
            key |= ZERO_IDIOM
        plan = fast[4].get(key)
        if plan is None:
            plan = fast[4][key] = one_value_plan(it[0], fast, key, n)
        if plan[1]:  # fold into the slot: only without another address and where the form encodes
            if n == 3:
                folds = type(new_ops[0]) is not Mem and type(new_ops[1]) is not Mem and type(new_ops[2]) is not Mem
            elif n == 2:
                folds = type(new_ops[0]) is not Mem and type(new_ops[1]) is not Mem
            else:
                folds = Mem not in map(type, new_ops)
            if folds:
                cache_key = (it[0], key, new_ops, op[1])
                unfoldable = UNFOLDABLE.get(cache_key)
                if not unfoldable:
                    new = _new(Instr, (plan[0], with_operand(new_ops, k, info[3]), None, False, (), ()))
                    if unfoldable is not None or not unfoldable_form(cache_key, new):
                        steps.append((i, new))
                        return True
            plan = plan[4]  # the plan without folding
        view = info[2][0]
        if spills > 1:
            out = tuple([view if p is SPILLED else p for p in new_ops])
        elif n == 3:
            out = (view, new_ops[1], new_ops[2]) if k == 0 else \
                (new_ops[0], view, new_ops[2]) if k == 1 else (new_ops[0], new_ops[1], view)
        elif n == 2:
            out = (view, new_ops[1]) if k == 0 else (new_ops[0], view)
        else:
            out = new_ops[:k] + (view,) + new_ops[k + 1:]
        new = _new(Instr, (plan[0], out, None, False, (), ()))  # (no mask, no implicit registers here)
        if fast[3] and i in self.copies and out[0] == out[1]:
            new = Elided(new)
        if plan[2]:
            if plan[3]:
                steps += (info[4], (i, new), info[5])
            else:
                steps += (info[4], (i, new))
        elif plan[3]:
            steps += ((i, new), info[5])
        else:
            steps.append((i, new))
        return True

    def rewrite_values(self, i, it, new_ops, fast, steps) -> bool:
        """``rewrite_one_value`` for several spilled register views among at most three operands: the plan is
        keyed by an int (MULTI, 7 bits per operand: 0, UNSPILLED_ADDRESS or the view's code plus which
        spilled value of the instruction it is) in ``fast[4]``; False (nothing emitted) for a spilled
        address, which ``rewrite_simple`` handles."""
        ops = it[1]
        values: list = []  # value entries by a
        infos: list = []   # a register info by a (its scratch views give the scratch register numbers)
        at: list = []      # register info by operand position (None: not spilled)
        key = MULTI
        shift = 16
        regs_get = self.regs.get
        for k, p in enumerate(new_ops):
            if p is SPILLED:
                op = ops[k]
                info = regs_get(op)
                if info is None:
                    if type(op) is not Reg:
                        return False
                    info = self._reg(op)
                v = info[1]
                if v in values:
                    key |= (info[0] + values.index(v)) << shift
                else:
                    key |= (info[0] + len(values)) << shift
                    values.append(v)
                    infos.append(info)
                at.append(info)
            else:
                if type(p) is Mem:
                    key |= UNSPILLED_ADDRESS << shift
                at.append(None)
            shift += 7
        if fast[2] and is_zero_idiom(it):
            key |= ZERO_IDIOM
        plan = fast[4].get(key)
        if plan is None:
            plan = fast[4][key] = values_plan(it[0], fast, key, len(ops))
        if plan[5] > self.nscratch:
            self._rewrite_borrowing(i, it, new_ops, (plan, plan[6]) if plan[6] else (plan,), values, steps)
            return True
        mnemonic, fold, actions, loads, store = plan[:5]
        out = list(new_ops)
        for k, kind, s, _ in actions:
            out[k] = at[k][2][s] if kind == 1 else at[k][3]
        new = _new(Instr, (mnemonic, tuple(out), None, False, (), ()))
        if fold >= 0 and unfoldable_form(new, new):  # no memory form there: scratch registers only
            plan = plan[6]
            if plan[5] > self.nscratch:  # the value that was to be folded needs a scratch register too
                self._rewrite_borrowing(i, it, new_ops, (plan,), values, steps)
                return True
            mnemonic, fold, actions, loads, store = plan[:5]
            for k, _, s, _ in actions:
                out[k] = at[k][2][s]
            new = _new(Instr, (mnemonic, tuple(out), None, False, (), ()))
        self._emit(loads, (i, Elided(new) if fast[3] and i in self.copies and out[0] == out[1] else new), store,
                   values, infos, steps)
        return True

    def _rewrite_borrowing(self, i, it, new_ops, plans, values, steps):
        """Rewrite from a plan (``plans``: it, then the plan without folding or None) that needs more scratch
        registers of a class than are reserved (one per class at first, which spills fewer values): the
        others are borrowed from registers that the instruction does not name, each saved to a frame slot
        of its own before and restored after (``_borrow``)."""
        ops = it[1]
        regs = self.regs
        # the registers it names after allocation: an address over a spilled register is SPILLED as a whole
        # in new_ops, but its other register (allocated) is named too
        named = list(new_ops)
        for op, p in zip(ops, new_ops):
            if p is SPILLED and type(op) is Mem:
                named += [self.operand_map.get(r) for r in (op[0], op[1]) if r is not None]
        for plan in plans:
            mnemonic, fold, actions, loads, store = plan[:5]
            chosen: dict = {}  # (class, scratch index) -> register number
            out = list(new_ops)
            for k, kind, s, s2 in actions:
                op = ops[k]
                if kind == 1:
                    out[k] = phys(op, self._scratch(regs[op][1][0][0], s, chosen, named))
                elif kind == 0:
                    out[k] = regs[op][3]
                else:  # an address over spilled registers
                    base, index = op[0], op[1]
                    base = phys(base, self._scratch("gp", s, chosen, named)) if s >= 0 else \
                        (None if base is None else self.operand_map[base])
                    index = phys(index, self._scratch("gp", s2, chosen, named)) if s2 >= 0 else \
                        (None if index is None else self.operand_map[index])
                    out[k] = _mem((base, index) + op[2:])
            new = _instr((mnemonic, tuple(out)) + it[2:])
            if fold < 0 or not unfoldable_form(new, new):
                break
        slots = self.slots
        moves = [(-1, spill_move(values[a][0], chosen[(values[a][0][0], s)], slots[values[a][0]], self.vec_move,
                                 True)) for a, s in loads]
        after = []
        if store is not None:
            key = values[store[0]][0]
            after.append((-1, spill_move(key, chosen[(key[0], store[1])], slots[key], self.vec_move, False)))
        self._around(chosen.items(), moves, (i, Elided(new) if i in self.copies and out[0] == out[1] else new),
                     after, steps)

    def _scratch(self, cls, s, chosen, named) -> int:
        """Scratch register ``s`` of class ``cls`` in this instruction: reserved, or borrowed."""
        n = chosen.get((cls, s))
        if n is None:
            pool = self.scratch_pools[cls]
            n = chosen[(cls, s)] = pool[s] if s < len(pool) else \
                self._borrow(cls, named, [m for (c, _), m in chosen.items() if c == cls])
        return n

    def _around(self, chosen, loads, step, stores, steps):
        """Emit an instruction with its spill loads and stores, saving and restoring the borrowed registers
        among ``chosen`` ((class, scratch index) -> register number) around all of it."""
        borrowed = [(cls, n) for (cls, s), n in chosen if s >= len(self.scratch_pools[cls])]
        for cls, n in borrowed:
            steps.append((-1, spill_move((cls,), n, self._temp(cls, n), self.vec_move, False)))
        steps += loads
        steps.append(step)
        steps += stores
        for cls, n in borrowed:
            steps.append((-1, spill_move((cls,), n, self._temp(cls, n), self.vec_move, True)))

    def _borrow(self, cls, named, taken) -> int:
        """A register of class ``cls`` that no operand in ``named`` (registers and addresses after allocation)
        names, that is no reserved scratch register and not in ``taken``: caller-saved for GP (the prologue
        need not save it), 0-15 for vectors (every encoding reaches them)."""
        taken = set(taken)
        taken.update(self.scratch_pools[cls])
        for p in named:
            if type(p) is Reg:
                if _CLASS_OF[p[0]] == cls:
                    taken.add(p[2])
            elif type(p) is Mem and cls == "gp":
                taken.update(r[2] for r in (p[0], p[1]) if r is not None and r[0] == GP)
        for n in _BORROWABLE[cls]:
            if n not in taken:
                return n
        raise ScratchShortage(cls)

    def _temp(self, cls, n):
        """The frame slot that saves borrowed register ``n`` of class ``cls`` (its whole width)."""
        slot = self.temps.get((cls, n))
        if slot is None:
            size = self.vec_temp if cls == "vec" else 8
            self.frame_end = (self.frame_end + size - 1) // size * size
            slot = self.temps[(cls, n)] = (self.frame_end, size)
            self.frame_end += size
        return slot

    def rewrite_simple(self, i, it, new_ops, fast, steps):
        """Rewrite ``it`` (registers all explicit operands, read and written as ``fast`` says) from its plan.

        The plan's key codes each spilled operand as an int (class, view, which spilled value of the
        instruction it is) or, for an address, a tuple; other operands as 0 (-1 for an address)."""
        m, ops = it[0], it[1]
        values: list = []   # value entries by a
        vinfos: list = []   # a register info by a (its scratch views give the scratch register numbers)
        codes = [m, fast[2] and is_zero_idiom(it), True]
        regs_get = self.regs.get
        for k in range(len(ops)):
            p = new_ops[k]
            if p is not SPILLED:
                codes.append(-1 if type(p) is Mem else 0)
                continue
            op = ops[k]
            info = regs_get(op) if type(op) is Reg else None
            if info is None:
                codes.append(self._code(op, values, vinfos))
                continue
            v = info[1]
            if v in values:
                codes.append(info[0] + values.index(v))
            else:
                codes.append(info[0] + len(values))
                values.append(v)
                vinfos.append(info)
        key = tuple(codes)
        plan = PLANS.get(key)
        if plan is None:
            plan = PLANS[key] = make_plan(m, fast, key[1], True, key[3:])
        mnemonic, fold, actions, loads, store = plan
        out = list(new_ops)
        nscratch = self.nscratch
        if any(s >= nscratch or s2 >= nscratch for _, _, s, s2 in actions):
            no_fold = self._plan_without_folding(codes, m, fast) if fold >= 0 else None
            self._rewrite_borrowing(i, it, new_ops, (plan, no_fold) if no_fold else (plan,), values, steps)
            return
        for k, kind, s, s2 in actions:
            if kind == 1:
                out[k] = regs_get(ops[k])[2][s]
            elif kind == 0:
                out[k] = regs_get(ops[k])[3]
            else:
                out[k] = self._address(ops[k], s, s2)
        new = _instr((mnemonic, tuple(out)) + it[2:])
        if fold >= 0 and unfoldable_form(new, new):  # no memory form there: scratch registers only
            plan = self._plan_without_folding(codes, m, fast)
            mnemonic, fold, actions, loads, store = plan
            if any(s >= nscratch for _, _, s, _ in actions):  # the value to fold needs a scratch register too
                self._rewrite_borrowing(i, it, new_ops, (plan,), values, steps)
                return
            for k, _, s, _ in actions:  # scratch registers only: folding needs no other address
                out[k] = regs_get(ops[k])[2][s]
            new = _instr((mnemonic, tuple(out)) + it[2:])
        self._emit(loads, (i, Elided(new) if i in self.copies and out[0] == out[1] else new), store, values,
                   vinfos, steps)

    def _emit(self, loads, step, store, values, infos, steps):
        """A plan's spill loads ((a, scratch index) pairs), the rewritten instruction's step, its spill store;
        ``values`` and ``infos`` give each spilled value (by a) its entry and a register info."""
        for a, s in loads:
            v = values[a]
            move = v[1][s]
            steps.append(move if move is not None else self._value_move(v, s, infos[a][2][s][2], True))
        steps.append(step)
        if store is not None:
            a, s = store
            v = values[a]
            move = v[2][s]
            steps.append(move if move is not None else self._value_move(v, s, infos[a][2][s][2], False))

    @staticmethod
    def _plan_without_folding(codes, m, fast):
        key = (codes[0], codes[1], False) + tuple(codes[3:])
        plan = PLANS.get(key)
        if plan is None:
            plan = PLANS[key] = make_plan(m, fast, key[1], False, key[3:])
        return plan

    def _value_move(self, v, s, n, load):
        """Step (-1, spill load or store) of value ``v`` ([key, load steps, store steps by scratch index])
        through its scratch ``s``, physical register ``n``: built once per value and scratch."""
        moves = v[1] if load else v[2]
        move = moves[s]
        if move is None:
            move = moves[s] = (-1, self._move(v[0], n, load))
        return move

    def _move(self, key, n, load):
        return spill_move(key, n, self.slots[key], self.vec_move, load)

    def _address(self, op, s, s2):
        key = (op, s, s2)
        new = self.addrs.get(key)
        if new is None:
            base, index = op[0], op[1]
            base = self.regs[base][2][s] if s >= 0 else (None if base is None else self.operand_map[base])
            index = self.regs[index][2][s2] if s2 >= 0 else (None if index is None else self.operand_map[index])
            new = self.addrs[key] = _mem((base, index) + op[2:])
        return new
