"""The general rewrite path of ``spill.Spiller``: any instruction (masks, implicit registers, calls, operand-
dependent effects), from the registers ``effects.register_effects`` says it reads and writes; the first
foldable spilled register is folded into its slot, the others get scratch registers (borrowed beyond the
reserved ones)."""

from __future__ import annotations

from .effects import register_effects
from .encoder import has_form
from .operands import GP, KREG, Instr, Mem, Reg
from .spill_plans import _RSP, _VEC_KINDS, SPILLED, UNALIGNED, Elided, _instr, _mem, phys


class GeneralPath:
    """Mixin of ``spill.Spiller`` (its attributes: operand_map, substitute, keys, values, slots, ...)."""

    def sub(self, r, scratch, by_reg, effects):
        """A register after allocation; spilled values get the next scratch register of their class."""
        if r is None:
            return None
        p = self.operand_map.get(r)
        if p is None:
            p = self.substitute(r)
        if p is not SPILLED:
            return p
        j = self.ids_get(r)
        if j is None:
            j = self.value(r)
        by_reg[r] = j
        n = scratch.get(j)
        if n is None:
            n = self.scratch_for(j, scratch, effects)
        return phys(r, n)

    def scratch_for(self, j, scratch, effects) -> int:
        """The next scratch register of value ``j``'s class in this instruction: reserved, or borrowed from
        the registers that none of ``effects`` (the instruction's registers) is after allocation."""
        keys = self.keys
        cls = keys[j][0]
        taken = [n for k, n in scratch.items() if keys[k][0] == cls]
        pool = self.scratch_pools[cls]
        n = scratch[j] = pool[len(taken)] if len(taken) < len(pool) else \
            self._borrow(cls, list(map(self.operand_map.get, effects)), taken)
        return n

    def fold_candidate(self, it: Instr, defs):
        """(operand index, stack-slot Mem) when a spilled register operand can be read/written in place.

        Only for instructions without another memory operand or mask, never legacy SSE (alignment and
        merge semantics differ from the register form), only for a virtual that appears once, and for
        a definition only when the view covers the whole slot (a narrower register write would have
        zero-extended)."""
        ops = it[1]
        operand_map = self.operand_map
        for j, op in enumerate(ops):
            if type(op) is not Reg or operand_map.get(op) is not SPILLED or op[0] == KREG:
                continue
            if op[0] in _VEC_KINDS and it[0][0] != "v":
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

    def spill_moves(self, scratch, by_reg, regs, load, steps):
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
            key = self.keys[j]
            pool = self.scratch_pools[key[0]]
            if n not in pool:  # a borrowed register
                steps.append((-1, self._move(key, n, load)))
                continue
            v = self.values.get(j)
            if v is None:
                v = self.values[j] = [key, [None, None, None], [None, None, None]]
            steps.append(self._value_move(v, pool.index(n), n, load))

    def rewrite(self, i, it, steps, no_fold=False):
        """Any instruction: effects from ``register_effects``, the first foldable spilled register folded."""
        uses, defs = register_effects(it)
        operand_map, sub = self.operand_map, self.sub
        ops = it[1]
        fold = None
        if it[2] is None and not no_fold and Mem not in map(type, ops):
            fold = self.fold_candidate(it, defs)
        scratch: dict = {}
        by_reg: dict = {}
        new_ops = []
        effects = uses + defs  # what a borrowed scratch register must not be
        for j, op in enumerate(ops):
            new = operand_map[op]
            if new is not SPILLED:
                new_ops.append(new)
            elif fold is not None and j == fold[0]:
                new_ops.append(fold[1])
            elif type(op) is Reg:
                new_ops.append(sub(op, scratch, by_reg, effects))
            else:
                new_ops.append(_mem((sub(op[0], scratch, by_reg, effects), sub(op[1], scratch, by_reg, effects))
                                    + op[2:]))
        mnemonic = it[0]
        if fold is not None:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
            mnemonic = UNALIGNED.get(mnemonic, mnemonic)
        mask = it[2]
        if mask is not None:
            mask = sub(mask, scratch, by_reg, effects)
        new = _instr((mnemonic, tuple(new_ops), mask, it[3], it[4], it[5]))
        if fold is not None and not has_form(new):  # no memory form there: scratch registers only
            return self.rewrite(i, it, steps, no_fold=True)
        step = (i, Elided(new) if i in self.copies and new_ops[0] == new_ops[1] else new)
        if not scratch:
            steps.append(step)
            return
        # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
        narrow = [r for r in defs if r[0] == GP and r[1] < 4]
        loads: list = []
        self.spill_moves(scratch, by_reg, uses + narrow if narrow else uses, True, loads)
        stores: list = []
        self.spill_moves(scratch, by_reg, defs, False, stores)
        counts: dict = {}
        chosen = []  # ((class, scratch index), register) in the order the scratch registers were taken
        for j, n in scratch.items():
            cls = self.keys[j][0]
            counts[cls] = s = counts.get(cls, -1) + 1
            chosen.append(((cls, s), n))
        self._around(chosen, loads, step, stores, steps)


