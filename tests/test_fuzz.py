"""A small, fixed budget of the random-program fuzzer (tests/fuzz.py) in the regular suite.

The long campaign is `python tests/fuzz.py --count 5000 --seed 7 --target all -j 8` (see its docstring).
Programs run in a server subprocess (a crash in compiled code fails one test, not pytest). Programs of SEED
that hit known open compiler bugs are listed in KNOWN with their class and skipped here -- not hidden: the
long campaign reports them and their reduced reproducers are in fuzz-failures/.
"""

import importlib.util
import os

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
