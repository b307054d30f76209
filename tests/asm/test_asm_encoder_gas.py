"""The encoder agrees byte-for-byte with GNU as (binutils) on every table form and on edge operands."""

from __future__ import annotations

import random

from asm_draw import draw_instruction, draw_mem
from asm_gas import assemble_lines
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyjit.asm.encoder import encode_instruction
from polyjit.asm.forms import FORMS
from polyjit.asm.operands import GP, Instr, Mem, Reg, rip


def _compare(instrs):
    expected = assemble_lines([str(i) for i in instrs])
    bad = []
    for ins, want in zip(instrs, expected):
        got, _ = encode_instruction(ins)
        if got != want:
            bad.append(f"{ins}: ours {got.hex(' ')} gas {want.hex(' ')}")
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:40])


def _forms_sample(seed, copies):
    rng = random.Random(seed)
    out = []
    for forms in FORMS.values():
        for form in forms:
            if any(k.rel for k in form.operands):
                continue
            out.extend(draw_instruction(rng, form) for _ in range(copies))
    return out


def test_every_form_matches_gas():
    _compare(_forms_sample(1234, 6))


GP64 = [Reg(GP, 8, i) for i in range(16)]


@st.composite
def mem_operands(draw, size):
    base = draw(st.sampled_from([None, rip] + GP64))
    disp = draw(st.one_of(st.sampled_from([0, 1, -1, 127, 128, -128, -129, 0x7FFFFFFF, -0x80000000]),
                          st.integers(-0x80000000, 0x7FFFFFFF), st.integers(-600, 600).map(lambda v: v * 8)))
    if base is rip:
        return Mem(rip, disp=disp, size=size)
    index = draw(st.sampled_from([None] + [r for r in GP64 if r.num != 4]))
    scale = draw(st.sampled_from([1, 2, 4, 8])) if index is not None else 1
    if base is None and index is not None and scale == 1:
        scale = 2
    return Mem(base, index, scale, disp, size)


_MEM_TEMPLATES = [
    ("mov", lambda r, m: (r, m.sized(8))), ("mov", lambda r, m: (m.sized(4), r.d)),
    ("add", lambda r, m: (m.sized(8), 0x1000)), ("lea", lambda r, m: (r, m.sized(None))),
    ("movzx", lambda r, m: (r.d, m.sized(1))), ("vaddps", lambda r, m: (Reg("ymm", 32, 3), Reg("ymm", 32, 9),
                                                                       m.sized(32))),
    ("vaddps", lambda r, m: (Reg("zmm", 64, 17), Reg("zmm", 64, 2), m.sized(64))),
    # GNU as rejects a broadcast from a bare absolute address, so give those a base
    ("vaddpd", lambda r, m: (Reg("zmm", 64, 1), Reg("zmm", 64, 30),
                             (m if m.base or m.index else Mem(r, disp=m.disp)).broadcast(8, 8))),
    ("vmovss", lambda r, m: (Reg("xmm", 16, 20), m.sized(4))),
    ("vextractf32x4", lambda r, m: (m.sized(16), Reg("zmm", 64, 5), 3)),
    ("call", lambda r, m: (m.sized(8),)), ("cvtsi2sd", lambda r, m: (Reg("xmm", 16, 12), m.sized(8))),
]


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(_MEM_TEMPLATES) - 1), st.sampled_from(GP64), mem_operands(None)),
                min_size=300, max_size=300))
def test_memory_operands_match_gas(items):
    instrs = []
    for t, r, m in items:
        mnem, build = _MEM_TEMPLATES[t]
        instrs.append(Instr(mnem, build(r, m)))
    _compare(instrs)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32))
def test_random_forms_match_gas(seed):
    rng = random.Random(seed)
    forms = [f for fs in FORMS.values() for f in fs if not any(k.rel for k in f.operands)]
    _compare([draw_instruction(rng, rng.choice(forms)) for _ in range(400)])


def test_draw_mem_helper_is_deterministic():
    a = draw_mem(random.Random(5), 8)
    b = draw_mem(random.Random(5), 8)
    assert a == b
