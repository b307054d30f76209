"""Spill plans and spill moves, shared by the rewrite paths of ``spill.Spiller``.

A plan says how an instruction whose registers are all explicit operands is rewritten, as a function of its
mnemonic and of the pattern of its spilled operands only (positions, classes, which are one value, narrow GP
views, views narrower than their slot), so that each plan is made once per pattern and process: which
operand is folded into its stack slot, which scratch register (index within the class) each spilled value
gets, and which values are loaded before and stored after.  Spill loads and stores depend only on class,
register and slot: they are built once per process too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from .encoder import has_form
from .forms import FORMS
from .operands import GP, K_REGS, XMM_REGS, YMM_REGS, ZMM_REGS, Instr, Mem, Reg

_RSP = Reg(GP, 8, 4)
_VEC_KINDS = ("xmm", "ymm", "zmm")
_PHYS: dict = {}
_MOVES: dict = {}  # (class, register number, slot, vector move, load) -> spill load or store
_instr = partial(tuple.__new__, Instr)  # Instr from a 6-tuple without the Python-level __new__ (hot paths)
_new = tuple.__new__  # _new(Instr, fields): the same without the partial's call (hottest paths)
_mem = partial(tuple.__new__, Mem)  # Mem from a 7-tuple whose fields were validated already

SPILLED = ("spilled",)  # the allocator's operand map value for operands over spilled values (a 1-tuple:
#                         unequal to any operand at the length check, so ``SPILLED in ops`` is cheap)



class ScratchShortage(Exception):
    """An instruction needs more scratch registers of a class than were reserved (the allocator then
    reserves more and starts over)."""


@dataclass(frozen=True, slots=True)
class Elided:
    """A register copy whose source and destination got the same register (emits nothing)."""

    instr: Instr

    def __str__(self) -> str:
        return f"; elided {self.instr}"


def phys(r: Reg, num: int) -> Reg:
    """The physical register ``num`` with the view of ``r`` (cached: Reg construction is not free)."""
    key = (r.kind, r.size, num)
    p = _PHYS.get(key)
    if p is None:
        p = _PHYS[key] = Reg(r.kind, r.size, num)
    return p


_UNALIGNED_MOVE = {"movaps": "movups", "vmovaps": "vmovups"}
_VIEW0 = {"gp": _RSP, "k": K_REGS[0], 16: XMM_REGS[0], 32: YMM_REGS[0], 64: ZMM_REGS[0]}


def spill_move(key, num, slot, vec_move, load):
    """Load (``load``) or store of value ``key``'s slot through physical register ``num`` (cached: the
    same few moves recur in every function that spills)."""
    cache_key = (key[0], num, slot, vec_move, load)
    move = _MOVES.get(cache_key)
    if move is None:
        move = _MOVES[cache_key] = _spill_move(key, num, slot, vec_move, load)
    return move


def _spill_move(key, num, slot, vec_move, load):
    off, size = slot
    mem = _mem((_RSP, None, 1, off, size, 0, None))
    if key[0] == "gp":
        move, reg = "mov", phys(_RSP, num)
    elif key[0] == "k":  # AVX512BW: part of the avx512 tier, the only one with opmasks
        move, reg = "kmovq", phys(_VIEW0["k"], num)
    else:
        reg = phys(_VIEW0[size], num)
        # unaligned moves: spill slots are 16-byte aligned only in functions that call out (found by the
        # fuzzer: an xmm spill with movaps faulted in a leaf function)
        move = "vmovups" if size > 16 else _UNALIGNED_MOVE.get(vec_move, vec_move)
    return _instr((move, (reg, mem) if load else (mem, reg), None, False, (), ()))


UNALIGNED = {"vmovaps": "vmovups", "vmovapd": "vmovupd", "vmovdqa": "vmovdqu", "vmovdqa32": "vmovdqu32",
             "vmovdqa64": "vmovdqu64"}

PLANS: dict = {}  # (mnemonic, zero idiom, folding allowed, per-operand spill pattern) -> plan (make_plan)
CLASSES = ("gp", "vec", "k")
UNFOLDABLE: dict = {}  # (plan key, operands, view size) or folded instruction -> no encoding


def _decode(code):
    """Pattern entry of an operand code (see ``Spiller.rewrite_simple``)."""
    if type(code) is tuple:  # an address over spilled registers
        return ("m", _decode(code[1]), _decode(code[2]))
    if code <= 0:
        return "M" if code else None
    a, c = code % 8, code // 8 - 1
    return (a, CLASSES[c % 3], (c // 3) % 2 == 1, c // 6 == 1)


def make_plan(m, fast, zero, fold_ok, codes):
    """How to rewrite an instruction of mnemonic ``m`` (shape ``fast``) whose operands are, by position
    (decoded ``codes``), None (not spilled), "M" (an address over allocated registers) or a spilled
    register (a, cls, whole, narrow) with ``a`` numbering the spilled values of the instruction in order of
    first appearance, or a spilled address ("m", base, index) with each register None or as above.

    Returns (mnemonic, fold position or -1, actions, loads, store) where actions are (position, kind, s, s2)
    with kind 0: fold into the slot, 1: scratch register ``s``, 2: address with base/index in scratch s/s2
    (-1: allocated); loads are (a, s) in order, store (a, s) or None."""
    pattern = [_decode(c) for c in codes]
    fold = -1
    # folding: only without another memory operand, never opmasks or legacy SSE (alignment and merge
    # semantics differ from the register form), only for a value that appears once, and for a definition
    # only when the view covers the whole slot (a narrower register write would have zero-extended)
    if fold_ok and "M" not in pattern and not any(type(p) is tuple and p[0] == "m" for p in pattern):
        for k, p in enumerate(pattern):
            if p is None or p[1] == "k" or (p[1] == "vec" and m[0] != "v"):
                continue
            if sum(1 for q in pattern if q is not None and q[0] == p[0]) > 1:
                continue
            if k == 0 and not p[2] and (fast[1] or zero):
                continue
            fold = k
            break
    scratch: dict = {}   # a -> scratch index
    taken: dict = {}     # cls -> scratch indices handed out

    def scratch_of(p):
        s = scratch.get(p[0])
        if s is None:
            s = scratch[p[0]] = taken.get(p[1], 0)
            taken[p[1]] = s + 1
        return s

    actions, loads = [], []
    store = None
    for k, p in enumerate(pattern):
        if p is None or p == "M":
            continue
        if p[0] == "m":
            s = scratch_of(p[1]) if p[1] is not None else -1
            s2 = scratch_of(p[2]) if p[2] is not None else -1
            actions.append((k, 2, s, s2))
            if not zero:
                for q in (p[1], p[2]):
                    if q is not None:
                        loads.append((q[0], scratch[q[0]]))
            continue
        if k == fold:
            actions.append((k, 0, -1, -1))
            continue
        s = scratch_of(p)
        actions.append((k, 1, s, -1))
        if k:
            if not zero:
                loads.append((p[0], s))
        else:
            if fast[1] or zero:
                store = (p[0], s)
            # 8/16-bit writes keep the register's other bytes: reload so a spilled value behaves the same
            if (fast[0] and not zero) or ((fast[1] or zero) and p[3]):
                loads.append((p[0], s))
    if fold >= 0:  # a stack slot is only 8-byte aligned in leaf functions: no aligned moves there
        m = UNALIGNED.get(m, m)
    return m, fold, tuple(actions), tuple(dict.fromkeys(loads)), store


# bits of a one-value plan key above the view code (bits 0-6) and the operand positions (bits 7-12)
ZERO_IDIOM = 1 << 13
NO_FOLD = 1 << 14
MULTI = 1 << 15  # a several-value key (``Spiller.rewrite_values``): 7 bits per operand from bit 16
UNSPILLED_ADDRESS = 127  # its operand field for an address over allocated registers


def values_plan(m, fast, key, n):
    """``make_plan`` for a several-value key, with the scratch registers it needs, and the same without
    folding: (mnemonic, fold, actions, loads, store, scratch needed, plan without folding or None)."""
    codes = []
    for k in range(n):
        code = key >> (16 + 7 * k) & 127
        codes.append(-1 if code == UNSPILLED_ADDRESS else code)
    zero = bool(key & ZERO_IDIOM)
    plans = []
    for fold_ok in (True, False):
        plan = make_plan(m, fast, zero, fold_ok, codes)
        plans.append(plan + (1 + max((s for _, _, s, _ in plan[2]), default=-1),))
    return plans[0] + (plans[1] + (None,) if plans[0][1] >= 0 else None,)


def _single_plan(m, fast, key, n):
    """``make_plan`` for one spilled value, from its key: the view's code, a bitmask of the operands (of
    ``n``) that are that view, ZERO_IDIOM, NO_FOLD (another address, or the folded form has no encoding);
    as (mnemonic, folds, scratch index, loads, stores)."""
    where, code = key >> 7, key & 127
    codes = [code if where >> k & 1 else 0 for k in range(n)]
    mnemonic, fold, actions, loads, store = make_plan(m, fast, bool(key & ZERO_IDIOM), not key & NO_FOLD, codes)
    if fold >= 0 and not any(len(f.operands) == n and f.operands[fold].mem for f in FORMS.get(m, ())):
        # no form takes memory there (``vfmadd231pd`` at operand 0): never try to fold
        return _single_plan(m, fast, key | NO_FOLD, n)
    return mnemonic, fold >= 0, actions[0][2], bool(loads), store is not None


def one_value_plan(m, fast, key, n):
    """The one-value path's plan for ``key`` (see ``_single_plan``): (mnemonic, folds, loads, stores, plan
    with NO_FOLD or None).  Without folding the value always gets scratch 0 (its load and store are cached
    in the register's entry: ``Spiller._reg``)."""
    mnemonic, folds, s, load, store = _single_plan(m, fast, key, n)
    if folds:
        return mnemonic, True, False, False, one_value_plan(m, fast, key | NO_FOLD, n)
    assert s == 0
    return mnemonic, False, load, store, None


def unfoldable_form(key, new) -> bool:
    """Whether ``new`` (a spilled register folded into its slot) has no encoding, cached by ``key``: the
    single plan's key, the other operands and the view's size (the slot's offset does not matter), or
    ``new`` itself (plans over several values)."""
    unfoldable = UNFOLDABLE.get(key)
    if unfoldable is None:
        if len(UNFOLDABLE) > 100_000:  # many distinct immediates: start over rather than grow forever
            UNFOLDABLE.clear()
        unfoldable = UNFOLDABLE[key] = not has_form(new)
    return unfoldable


def with_operand(ops, k, op):
    """``ops`` with operand ``k`` replaced by ``op`` (one tuple built for the common operand counts)."""
    n = len(ops)
    if n == 3:
        return (op, ops[1], ops[2]) if k == 0 else (ops[0], op, ops[2]) if k == 1 else (ops[0], ops[1], op)
    if n == 2:
        return (op, ops[1]) if k == 0 else (ops[0], op)
    return ops[:k] + (op,) + ops[k + 1:]
