"""Random structured programs (branches, nested loops, calls) over many GP values: the allocation passes
the checker and the machine code computes what a Python interpreter of the same program computes."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyjit.asm import Function, Mem, allocate, check_allocation, rsp

_PROBE = []


def _rsp_probe():
    """A JIT function returning rsp mod 16 at its entry (8 when the caller kept rsp aligned)."""
    if not _PROBE:
        probe = Function("rsp_probe", args=[], ret="int64_t", isa="sse2")
        v = probe.gp64()
        probe.mov(v, rsp)
        probe.and_(v, 15)
        probe.ret(v)
        _PROBE.append(probe.compile())
    return _PROBE[0]

OPS = ("add", "sub", "xor", "imul", "and", "or")


def _wrap(v):
    return ((v + 2**63) % 2**64) - 2**63


def _gen_block(rng, depth, nvals):
    stmts = []
    for _ in range(rng.randint(2, 6)):
        r = rng.random()
        if r < 0.15 and depth < 2:
            stmts.append(("if", rng.randrange(nvals), rng.randrange(nvals), rng.choice(["l", "g", "e", "ne"]),
                          _gen_block(rng, depth + 1, nvals), _gen_block(rng, depth + 1, nvals)))
        elif r < 0.27 and depth < 2:
            stmts.append(("loop", rng.randint(0, 3), _gen_block(rng, depth + 1, nvals)))
        elif r < 0.32:
            stmts.append(("call", rng.randrange(nvals), rng.randrange(nvals)))
        else:
            stmts.append((rng.choice(OPS), rng.randrange(nvals), rng.randrange(nvals)))
    return stmts


def _emit(f, vals, stmts):
    for s in stmts:
        if s[0] == "if":
            _, a, b, cc, then, other = s
            else_l, end_l = f.label("else"), f.label("end")
            f.cmp(vals[a], vals[b])
            f.emit({"l": "jge", "g": "jle", "e": "jne", "ne": "je"}[cc], else_l)
            _emit(f, vals, then)
            f.jmp(end_l)
            f.bind(else_l)
            _emit(f, vals, other)
            f.bind(end_l)
        elif s[0] == "loop":
            _, count, body = s
            c = f.gp64()
            top, done = f.label("top"), f.label("done")
            f.mov(c, count)
            f.bind(top)
            f.test(c, c)
            f.jz(done)
            _emit(f, vals, body)
            f.dec(c)
            f.jmp(top)
            f.bind(done)
        elif s[0] == "call":  # labs(vals[b]) -> vals[a]: everything live must survive the call
            _, a, b = s
            r = f.call("labs", args=[vals[b]], ret="long")
            f.mov(vals[a], r)
        else:
            op, a, b = s
            f.emit(op, vals[a], vals[b])


def _interpret(v, stmts):
    for s in stmts:
        if s[0] == "if":
            _, a, b, cc, then, other = s
            cond = {"l": v[a] < v[b], "g": v[a] > v[b], "e": v[a] == v[b], "ne": v[a] != v[b]}[cc]
            _interpret(v, then if cond else other)
        elif s[0] == "loop":
            for _ in range(s[1]):
                _interpret(v, s[2])
        elif s[0] == "call":
            v[s[1]] = _wrap(abs(v[s[2]]))
        else:
            op, a, b = s
            x, y = v[a], v[b]
            v[a] = _wrap({"add": x + y, "sub": x - y, "xor": x ^ y, "imul": x * y, "and": x & y,
                          "or": x | y}[op])


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 2**32), st.sampled_from([6, 14, 22]))
def test_random_programs_allocate_check_and_run(seed, nvals):
    rng = random.Random(seed)
    stmts = _gen_block(rng, 0, nvals)
    f = Function(f"rand{seed}", args=[("x", "int64_t*"), ("out", "int64_t*")], isa="sse2")
    x, out = f.args
    vals = [f.gp64() for _ in range(nvals)]
    for j, v in enumerate(vals):
        f.mov(v, Mem(x, disp=8 * j, size=8))
    _emit(f, vals, stmts)
    misalign = f.call(_rsp_probe().address, ret="int64_t")  # with every frame shape drawn
    f.mov(Mem(out, disp=8 * nvals, size=8), misalign)
    for j, v in enumerate(vals):
        f.mov(Mem(out, disp=8 * j, size=8), v)
    f.ret()
    prog = f.program()
    check_allocation(prog, allocate(prog))
    fn = f.compile()
    xs = np.array([rng.randrange(-50, 50) for _ in range(nvals)], dtype=np.int64)
    got = np.zeros(nvals + 1, dtype=np.int64)
    fn(xs, got)
    expected = [int(t) for t in xs]
    _interpret(expected, stmts)
    assert list(got) == expected + [8]
