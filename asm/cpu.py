"""ISA tier detection with CPUID/XGETBV run through this assembler; capped by ``POLYJIT_ISA``."""

from __future__ import annotations

import os

TIERS = ("sse2", "avx2", "avx512")
_cache: dict = {}


def _cpuid_function():
    from .operands import Mem, eax, ebx, ecx, edx, rax, rcx
    from .program import Function
    f = Function("polyjit_cpuid", args=[("leaf", "uint32_t"), ("sub", "uint32_t"), ("out", "uint32_t*")],
                 isa="sse2")
    leaf, sub, out = f.args
    f.mov(eax, leaf)
    f.mov(ecx, sub)
    f.cpuid()
    for i, r in enumerate((eax, ebx, ecx, edx)):
        f.mov(Mem(out, disp=4 * i, size=4), r)
    f.xor(ecx, ecx)
    f.xgetbv()  # only valid when OSXSAVE is set: the caller checks before asking for XCR0
    f.mov(Mem(out, disp=16, size=4), eax)
    f.ret()
    g = Function("polyjit_cpuid_only", args=[("leaf", "uint32_t"), ("sub", "uint32_t"), ("out", "uint32_t*")],
                 isa="sse2")
    leaf, sub, out = g.args
    g.mov(rax.d, leaf)
    g.mov(rcx.d, sub)
    g.cpuid()
    for i, r in enumerate((eax, ebx, ecx, edx)):
        g.mov(Mem(out, disp=4 * i, size=4), r)
    g.ret()
    return f.compile(), g.compile()


def cpu_features(probes=None) -> dict:
    """Feature flags relevant to the tiers (cached). `probes` may supply the two CPUID functions already
    loaded (e.g. from polyjit's code cache) instead of assembling them now."""
    if "features" in _cache:
        return _cache["features"]
    from .loader import ffi
    with_xgetbv, cpuid = probes or _cpuid_function()
    buf = ffi.new("uint32_t[5]")

    def query(leaf, sub=0, xcr=False):
        (with_xgetbv if xcr else cpuid)(leaf, sub, buf)
        return list(buf)

    max_leaf = query(0)[0]
    l1 = query(1)
    osxsave = bool(l1[2] >> 27 & 1)
    xcr0 = query(1, 0, xcr=True)[4] if osxsave else 0
    l7 = query(7) if max_leaf >= 7 else [0, 0, 0, 0, 0]
    ebx7 = l7[1]
    feats = {
        "sse2": bool(l1[3] >> 26 & 1), "avx": bool(l1[2] >> 28 & 1), "fma": bool(l1[2] >> 12 & 1),
        "osxsave": osxsave, "avx2": bool(ebx7 >> 5 & 1), "avx512f": bool(ebx7 >> 16 & 1),
        "avx512dq": bool(ebx7 >> 17 & 1), "avx512bw": bool(ebx7 >> 30 & 1), "avx512vl": bool(ebx7 >> 31 & 1),
        "os_ymm": (xcr0 & 0x6) == 0x6, "os_zmm": (xcr0 & 0xE6) == 0xE6, "xcr0": xcr0,
    }
    _cache["features"] = feats
    return feats


def hardware_tier() -> str:
    f = cpu_features()
    if f["avx512f"] and f["avx512vl"] and f["avx512dq"] and f["avx512bw"] and f["os_zmm"] and f["avx2"] \
            and f["fma"]:
        return "avx512"
    if f["avx2"] and f["fma"] and f["avx"] and f["os_ymm"]:
        return "avx2"
    return "sse2"


def isa_tier() -> str:
    """Best tier the CPU and OS support, capped (never raised) by ``POLYJIT_ISA``."""
    cap = os.environ.get("POLYJIT_ISA", "avx512").strip().lower() or "avx512"
    if cap not in TIERS:
        raise ValueError(f"POLYJIT_ISA must be one of {TIERS}, not {cap!r}")
    hw = hardware_tier()
    return TIERS[min(TIERS.index(hw), TIERS.index(cap))]


def available_tiers() -> tuple:
    """All tiers this machine can run (for tests and benchmarks)."""
    return TIERS[:TIERS.index(hardware_tier()) + 1]
