"""Vector loops of the native target: remainders (masked at avx512, scalar below) and their code.

The avx512 code is generated and encoded here without being run (`compile_native` takes the tier, and
nothing is loaded), so its shape and encodings are checked on any machine; running it needs a CPU with
AVX-512 (the execution tests below run at this machine's tier, i.e. masked remainders only there).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from helpers import check

import polyjit
from polyjit.asm import allocate
from polyjit.asm.encoder import encode_instruction
from polyjit.asm.operands import Instr
from polyjit.pipeline import Trace, compile_native

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "asm"))
from asm_gas import assemble_lines  # noqa: E402


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def shifted_sum(x):  # masked-off lanes compute x + 1 = 1 from zeroed loads: the add must be masked
    s = 0.0
    for i in range(len(x)):
        s += x[i] + 1.0
    return s


def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


def mixed(x, y, out):  # division and sqrt see zeros in masked-off lanes: harmless, the store is masked
    for i in range(len(x)):
        t = x[i] / y[i]
        out[i] = min(abs(t), np.sqrt(y[i])) - t


def rows(a, out):  # the remainder of an inner loop, once per row
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = 2.0 * a[i, j] + 1.0


def _programs(fn, args, isa, **options):
    k = polyjit.kernel(fn, cache=False, **options)
    args = k._bind(args, {})
    _, _, phases, _, _ = compile_native(k.program(), k.signature(args), k.options, Trace(), isa)
    return [allocate(ph.function.program()) for ph in phases]


def _instructions(fn, args, isa, **options):
    return [it for p in _programs(fn, args, isa, **options) for it in p.items if type(it) is Instr]


def _cases():
    x = np.random.default_rng(0).random(37)
    xf = x.astype(np.float32)
    return {
        "dot": (dot, (x, x.copy()), {"fastmath": True}),
        "shifted_sum": (shifted_sum, (xf,), {"fastmath": True}),
        "saxpy": (saxpy, (np.float32(2), xf, xf.copy(), np.empty_like(xf)), {}),
        "mixed": (mixed, (x, x + 1, np.empty_like(x)), {}),
        "rows": (rows, (x[:36].reshape(4, 9), np.empty((4, 9))), {}),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_avx512_remainder_is_masked(name):
    fn, args, options = _cases()[name]
    code = _instructions(fn, args, "avx512", **options)
    masked = [i for i in code if i.mask is not None]
    assert any(i.mnemonic == "kmovw" for i in code)
    loads = [i for i in masked if i.mnemonic.startswith("vmovu") and isinstance(i.operands[0], type(i.mask))]
    stores = [i for i in masked if i.mnemonic.startswith("vmovu") and not isinstance(i.operands[0], type(i.mask))]
    assert loads and all(i.zero for i in loads), "masked loads zero the masked-off lanes"
    assert all(not i.zero for i in stores), "masked stores leave memory alone"
    sums = [i for i in masked if not i.mnemonic.startswith("vmovu")]
    if options.get("fastmath"):  # the accumulation itself is merge-masked: dead lanes keep the partial sums
        assert sums and all(not i.zero for i in sums)
    else:
        assert stores and not sums


@pytest.mark.parametrize("isa", ["avx2", "sse2"])
def test_no_masks_below_avx512(isa):
    for fn, args, options in _cases().values():
        code = _instructions(fn, args, isa, **options)
        assert not any(i.mask is not None or i.mnemonic.startswith("kmov") for i in code)


def test_avx512_encodings_match_gnu_as():
    """Every instruction of the avx512 kernels (labels and branches aside) encodes as GNU as encodes it."""
    code = []
    for fn, args, options in _cases().values():
        code += [i for i in _instructions(fn, args, "avx512", **options)
                 if not (i.mnemonic.startswith("j") or i.mnemonic == "call")]
    unique = list({str(i): i for i in code}.values())
    expected = assemble_lines([str(i) for i in unique])
    bad = [f"{i}: ours {encode_instruction(i)[0].hex(' ')} gas {want.hex(' ')}"
           for i, want in zip(unique, expected) if encode_instruction(i)[0] != want]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 200])
def test_remainders_run(n):
    """Every remainder length at this machine's tier (masked at avx512): elementwise results bit-identical
    to Python, sums within rounding."""
    rng = np.random.default_rng(n)
    x, y = rng.random(n) + 0.5, rng.random(n) + 0.5
    check(polyjit.kernel(saxpy, cache=False), np.float32(3), x.astype(np.float32), y.astype(np.float32),
          np.zeros(n, np.float32))
    check(polyjit.kernel(mixed, cache=False), x, y, np.zeros(n))
    check(polyjit.kernel(dot, fastmath=True, cache=False), x, y, rtol=1e-12, exact_type=False)
    check(polyjit.kernel(shifted_sum, fastmath=True, cache=False), x.astype(np.float32), rtol=1e-5,
          exact_type=False)
    m = max(n // 3, 1)
    check(polyjit.kernel(rows, cache=False), x[: 3 * m].reshape(3, m) if n >= 3 else np.ones((3, 1)),
          np.zeros((3, m)) if n >= 3 else np.zeros((3, 1)))


def test_remainder_leaves_memory_past_the_end_alone():
    """The last elements of a view are written, the ones after it in the same buffer are not."""
    for n in range(1, 40):
        buf = np.full(n + 20, -7.0)
        x = np.arange(n, dtype=np.float64)
        polyjit.kernel(rows, cache=False)(x.reshape(1, n), buf[:n].reshape(1, n))
        assert (buf[:n] == 2 * x + 1).all() and (buf[n:] == -7.0).all()
