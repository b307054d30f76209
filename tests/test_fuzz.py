"""A small, fixed budget of the random-program fuzzer (tests/fuzz.py) in the regular suite.

The long campaign is `python tests/fuzz.py --count 10000 --seed 1 --target all -j 16 --keep fuzz-failures` (see
its docstring).
Programs run in a server subprocess (a crash in compiled code fails one test, not pytest). Programs of SEED
that hit known open compiler bugs are listed in KNOWN with their class and skipped here -- not hidden: the
long campaign reports them and their reduced reproducers are in fuzz-failures/.
"""

import importlib.util
import math
import os

import numpy as np

import pytest

_spec = importlib.util.spec_from_file_location("polyjit_fuzz", os.path.join(os.path.dirname(__file__), "fuzz.py"))
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SEED = 11
NATIVE = 40
OPENCL = 6
# program indices (of SEED) that hit known open compiler bugs; see the fuzz report / fuzz-failures/
KNOWN: dict = {}


def _run(index, target):
    """Every configuration of program `index` (at the current POLYJIT_ISA), each in a server subprocess so
    that a crash in compiled code fails this test instead of killing pytest."""
    prog, rng = fuzz.program_for(SEED, index)
    seed_inputs = rng.randrange(2**32)  # the same draws, in the same order, as fuzz.run_program
    cfgs = fuzz.case_configs(rng, prog, target, 1, with_tiers=False)
    bad = []
    for cfg in cfgs:
        o = fuzz.run_isolated(prog, seed_inputs, prog.n, cfg)
        if o.status not in ("ok", "schedule", "diverge"):
            bad.append(f"{cfg}: {o.cls}: {o.detail}")
    assert not bad, "\n".join(bad) + "\n" + prog.source()


@pytest.mark.parametrize("index", [i for i in range(NATIVE) if i not in KNOWN])
def test_fuzz_native(index):
    _run(index, "native")


@pytest.mark.opencl
@pytest.mark.parametrize("index", [i for i in range(NATIVE, NATIVE + OPENCL) if i not in KNOWN])
def test_fuzz_opencl(index):
    _run(index, "opencl")


def test_same_seed_same_programs():
    a = [fuzz.program_for(SEED, i)[0].source() for i in range(5)]
    b = [fuzz.program_for(SEED, i)[0].source() for i in range(5)]
    assert a == b and len(set(a)) == 5


def test_reducer_variants_are_smaller():
    """The delta debugger's candidates (dropped statements, unwrapped ifs, sub-expressions) all differ from
    the program and none is longer."""
    prog, _ = fuzz.program_for(SEED, 3)
    src = prog.source()
    seen = [p.source() for p in fuzz.program_variants(prog)]
    assert seen and all(s != src for s in seen)
    assert all(len(s.splitlines()) <= len(src.splitlines()) for s in seen)


# ---- the harness's known divergences, each found by a long campaign (session 6, device run at da28cbf) ----

def sqrt_of_first(x, out):
    for i in range(1):
        out[i] = math.sqrt(x[i])


def test_math_domain_error_is_a_known_divergence():
    """Seed 1652 program 1481: abs() of int32's minimum stays negative (numpy wraps), so Python's math.sqrt
    raised 'math domain error'; compiled code gives NaN, as numpy and Numba do."""
    x, out = np.array([-1.0]), np.zeros(1)
    o = fuzz.run_config(sqrt_of_first, [x, out], "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("diverge", "math-domain")


def squares_itself(n):
    s = 3
    for i in range(n):
        t = s - i
        s += t * t
    return s


def test_runaway_python_int_is_a_known_divergence(monkeypatch):
    """Seed 1653 program 989: `s += max(abs(t0), t0 * t0)` with t0 from s doubles s's bits every iteration, so
    the Python reference never ended and the worker hung until the watchdog killed it. The reference now runs
    under a time limit, and a timeout with an int of thousands of bits is counted, not waited for again."""
    monkeypatch.setattr(fuzz, "REFERENCE_LIMIT_S", 1.0)
    o = fuzz.run_config(squares_itself, [64], "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("diverge", "python-int-runaway")
    assert "s" in o.detail
    again = fuzz.run_config(squares_itself, [64], "native", None, False, {}, tolerant_math=False)
    assert again.cls == "python-int-runaway"  # remembered: no second wait


def doubles_into_a_float(A, n):  # device fuzz seed 1912 program 478, reduced
    s = 0
    for j in range(n):
        for k in range(n):
            for l in range(n):
                s -= l - s
            A[j - 1, j] = s


def test_int_outgrowing_int64_inside_a_program_is_a_known_divergence(monkeypatch):
    """`s -= l - s` doubles s 64 times; Python's int grew past int64 and reached A through a float32 store,
    where compiled code had wrapped. Counted only where Python with every int wrapped to 64 bits gives the
    compiled result exactly; a compiled result differing from that stays a mismatch."""
    import polyjit

    args = [np.zeros((4, 4), np.float32), 4]
    o = fuzz.run_config(doubles_into_a_float, args, "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("diverge", "python-int-overflow")
    real_kernel = polyjit.kernel

    def one_ulp_off(fn, **kw):
        def run(A, n):
            real_kernel(fn, **kw)(A, n)
            A[0, 1] = np.nextafter(A[0, 1], np.inf)
        return run
    monkeypatch.setattr(polyjit, "kernel", one_ulp_off)
    o = fuzz.run_config(doubles_into_a_float, [np.zeros((4, 4), np.float32), 4], "native", None, False, {},
                        tolerant_math=False)
    assert (o.status, o.cls) == ("fail", "mismatch")


def squares_then_cancels(A, n):  # device fuzz seed 1924 program 386 (OpenCL, fastmath), reduced
    for i in range(2):
        for j in range(n):
            for k in range(2):
                A[j] = A[k] * A[i]
    A[:] -= 2.0 + A[:]


def test_fastmath_cancellation_of_huge_terms_is_a_known_divergence(monkeypatch):
    """`A - (2.0 + A)` with |A| ~ 1e17: Python rounds to 0.0, -cl-fast-relaxed-math simplifies it to -2.0.
    Under fastmath a result may differ by rtol of the largest terms cancelled in it; a difference beyond
    that, or any difference without fastmath, stays a mismatch."""
    import polyjit

    def reassociated(value):
        def make(fn, **kw):
            def run(A, n):
                fn(A, n)
                A[:] = value
            return run
        return make
    args = [np.array([-2.8482956, -0.45985448, -1.15101357]), 3]
    monkeypatch.setattr(polyjit, "kernel", reassociated(-2.0))
    o = fuzz.run_config(squares_then_cancels, args, "native", None, True, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("diverge", "fastmath-cancellation")
    o = fuzz.run_config(squares_then_cancels, args, "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("fail", "mismatch")
    monkeypatch.setattr(polyjit, "kernel", reassociated(-2.0e12))  # beyond rtol of the terms
    small = [np.array([0.5, 0.25, 0.125]), 3]
    o = fuzz.run_config(squares_then_cancels, small, "native", None, True, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("fail", "mismatch")


def int_pow(a, out, n):
    for i in range(n):
        out[i] = abs(a[i]) ** 1.5


def test_numpy_simd_pow_is_a_known_divergence_only_on_avx512(monkeypatch):
    """Seeds 1651/1652 (programs 273, 430), AVX-512 host only: numpy computes `int64 ** 1.5` with its power
    ufunc, which runs its own AVX-512 routine there and differs from libm's pow in the last bit; polyjit calls
    libm. Within rtol it is a known divergence where numpy dispatches to AVX-512, and a mismatch elsewhere."""
    import polyjit

    def one_ulp_off(fn, **kw):
        def run(a, out, n):
            fn(a, out, n)
            out[:] = np.nextafter(out, np.inf)
        return run
    monkeypatch.setattr(polyjit, "kernel", one_ulp_off)
    args = [np.arange(-3, 4, dtype=np.int64), np.zeros(7), 7]
    monkeypatch.setattr(fuzz, "numpy_simd_math", lambda: True)
    o = fuzz.run_config(int_pow, args, "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("diverge", "numpy-simd-pow")
    monkeypatch.setattr(fuzz, "numpy_simd_math", lambda: False)
    o = fuzz.run_config(int_pow, args, "native", None, False, {}, tolerant_math=False)
    assert (o.status, o.cls) == ("fail", "mismatch")


def test_native_int_pow_is_libm_pow():
    """What polyjit promises for `int ** float` natively: libm's pow of the float64 value (README)."""
    import polyjit
    a = np.arange(-50, 50, dtype=np.int64) * 7919
    out = np.zeros(a.shape)
    polyjit.kernel(int_pow, target="native", cache=False)(a, out, len(a))
    assert np.array_equal(out, [math.pow(float(abs(v)), 1.5) for v in a])
