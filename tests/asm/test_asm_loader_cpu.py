"""Executable memory (W^X, memfd fallback, lifetime), C calls into libm/libmvec, CPU tier detection."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from polyjit.asm import Function, Mem, allocate, available_tiers, check_allocation, cpu_features, encode, \
    hardware_tier, isa_tier, load
from polyjit.asm.loader import symbol_address


def _maps_entry(address):
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            if lo <= address < hi:
                return line.split()[1]
    return None


def _add_one():
    f = Function("add1", args=[("a", "int64_t")], ret="int64_t", isa="sse2")
    (a,) = f.args
    f.add(a, 1)
    f.ret(a)
    return encode(allocate(f.program()))


@pytest.mark.parametrize("use_memfd", [False, True])
def test_mapping_is_never_writable_and_executable(use_memfd):
    fn = load(_add_one(), "int64_t(*)(int64_t)", use_memfd=use_memfd)
    assert fn(41) == 42
    perms = _maps_entry(fn.address)
    assert perms is not None and perms[:3] == "r-x"
    assert fn.memory.method == ("memfd" if use_memfd else "mprotect")


def test_mapping_lives_exactly_as_long_as_the_callable():
    fn = load(_add_one(), "int64_t(*)(int64_t)")
    address = fn.address
    assert _maps_entry(address) is not None
    del fn
    gc.collect()
    assert _maps_entry(address) is None or _maps_entry(address)[:3] != "r-x"


def test_libm_scalar_calls():
    for name in ("exp", "log", "sin", "cos"):
        f = Function(f"call_{name}", args=[("x", "double")], ret="double")
        (x,) = f.args
        y = f.call(name, args=[x], ret="double")
        f.ret(y)
        prog = f.program()
        check_allocation(prog, allocate(prog))
        fn = f.compile()
        for v in (0.5, 1.0, 2.25):
            assert fn(v) == getattr(math, name)(v)


def test_libmvec_vector_call_if_present():
    tiers = available_tiers()
    variants = [("avx2", "_ZGVdN4v_exp", 32, 4), ("avx512", "_ZGVeN8v_exp", 64, 8)]
    ran = 0
    for tier, symbol, size, lanes in variants:
        if tier not in tiers or symbol_address(symbol) is None:
            continue
        f = Function(f"vexp_{tier}", args=[("x", "double*"), ("out", "double*")], isa=tier)
        x, out = f.args
        v = f.vreg(size)
        f.vmovupd(v, Mem(x, size=size))
        y = f.call(symbol, args=[v], ret="vector", vector=True)
        f.vmovupd(Mem(out, size=size), y)
        f.ret()
        prog = f.program()
        check_allocation(prog, allocate(prog))
        fn = f.compile()
        xs = np.linspace(-3, 3, lanes)
        got = np.zeros(lanes)
        fn(xs, got)
        np.testing.assert_allclose(got, np.exp(xs), rtol=1e-14)
        ran += 1
    assert ran >= (1 if symbol_address("_ZGVdN4v_exp") is not None and "avx2" in tiers else 0)


def test_cpu_features_agree_with_proc_cpuinfo():
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":")[1].split())
                break
    feats = cpu_features()
    for name in ("sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl"):
        assert feats[name] == (name in flags), name


def test_isa_tier_cap_from_environment(monkeypatch):
    hw = hardware_tier()
    monkeypatch.setenv("POLYJIT_ISA", "sse2")
    assert isa_tier() == "sse2"
    monkeypatch.setenv("POLYJIT_ISA", "avx512")
    assert isa_tier() == hw  # a cap never raises the tier above the hardware
    monkeypatch.setenv("POLYJIT_ISA", "avx2")
    assert isa_tier() == ("sse2" if hw == "sse2" else "avx2")
    monkeypatch.delenv("POLYJIT_ISA")
    assert isa_tier() == hw
    monkeypatch.setenv("POLYJIT_ISA", "avx9000")
    with pytest.raises(ValueError):
        isa_tier()


def test_vzeroupper_before_calls_and_returns_when_ymm_used():
    f = Function("ymm_then_exp", args=[("x", "double*")], ret="double", isa="avx2")
    (x,) = f.args
    v, s = f.ymm(), f.xmm()
    f.vmovupd(v, Mem(x, size=32))
    f.vaddpd(v, v, v)
    f.vmovupd(Mem(x, size=32), v)
    f.vmovsd(s, Mem(x, size=8))
    r = f.call("exp", args=[s], ret="double")
    f.ret(r)
    prog = f.program()
    alloc = allocate(prog)
    check_allocation(prog, alloc)
    mnems = [it.mnemonic for it in alloc.items if hasattr(it, "mnemonic")]
    assert mnems[mnems.index("call") - 1] == "vzeroupper"
    last = len(mnems) - 1 - mnems[::-1].index("vzeroupper")  # the epilogue's vzeroupper
    assert last > mnems.index("call") and set(mnems[last + 1:-1]) <= {"add", "pop"} and mnems[-1] == "ret"
    fn = f.compile()
    xs = np.array([0.25, 1, 2, 3])
    assert fn(xs) == math.exp(0.5)
    assert "JitFunction ymm_then_exp" in repr(fn) and "loaded at" in fn.listing()
