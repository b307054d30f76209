"""The machine-code entry of native specializations (lowering/entry.py, jit/native_runtime.Entry).

After the first call through the Python path, calls with the same signature and sizes start in machine code;
everything else goes back to the Python path. Each test compares with `.py_func` and checks which path ran.
"""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from helpers import check

pytestmark = pytest.mark.skipif(polyjit.kernel(lambda: None).target != "native", reason="native target only")


def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def total(x):
    s = 0
    for i in range(len(x)):
        s += x[i]
    return s


def gather(x, idx, out):
    for i in range(len(idx)):
        out[i] = x[idx[i]]


def shift(x, n, out):
    for i in range(n):
        out[i] = x[i] * 2


def in_machine_code(k) -> bool:
    return type(k).__dict__.get("__call__") is not None and type(type(k).__dict__["__call__"]).__name__ == \
        "builtin_function_or_method"


def test_second_call_starts_in_machine_code_and_agrees():
    k = polyjit.kernel(saxpy, cache=False)
    x, y = np.arange(17, dtype=np.float32), np.ones(17, np.float32)
    assert not in_machine_code(k)
    for a in (np.float32(2), np.float32(-1.5), np.float32(0)):
        check(k, a, x, y, np.zeros(17, np.float32))
    assert in_machine_code(k)
    k._dispatch.clear()  # the class keeps the entry's code alive on its own
    gc.collect()
    out = np.zeros(17, np.float32)
    k(np.float32(3), x, y, out)
    assert np.array_equal(out, 3 * x + y)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6), f32=st.booleans(),
       scalar=st.sampled_from(["py", "np"]))
def test_changing_sizes_and_signatures_agree(sizes, f32, scalar):
    """The memo of checked sizes: new sizes go through the Python path (checks), then run in machine code."""
    k = polyjit.kernel(saxpy, cache=False)
    dt = np.float32 if f32 else np.float64
    for n in sizes:
        a = 1.5 if scalar == "py" else dt(1.5)
        x = np.arange(n, dtype=dt)
        check(k, a, x, x[::-1].copy(), np.zeros(n, dt))
        check(k, a, x, x[::-1].copy(), np.zeros(n, dt))


def test_results_keep_their_types():
    for x in (np.arange(9.0), np.arange(9, dtype=np.float32)):
        k = polyjit.kernel(dot, cache=False)
        for _ in range(3):
            got, want = k(x, x), dot(x.copy(), x.copy())
            assert got == want and type(got) is type(want)
    for x in (np.arange(9), np.arange(9, dtype=np.int32)):
        k = polyjit.kernel(total, cache=False)
        for _ in range(3):
            got, want = k(x), total(x.copy())
            assert got == want and type(got) is type(want)


def test_errors_from_machine_code_match_the_python_path():
    k = polyjit.kernel(gather, cache=False)
    x = np.arange(5.0)
    out = np.zeros(3)
    k(x, np.array([0, 1, 2]), out)
    k(x, np.array([4, 3, 2]), out)
    assert in_machine_code(k)
    with pytest.raises(IndexError) as e:
        k(x, np.array([0, 9, 1]), out)  # a data-dependent index: the run-time check in the phase
    with pytest.raises(IndexError) as e2:
        gather(x, np.array([0, 9, 1]), out)
    assert "out of bounds" in str(e.value) and type(e.value) is type(e2.value)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        k(x, np.array([0, 1, 2]), ro)
    with pytest.raises(TypeError):
        k(x, np.array([0, 1, 2]))
    k(x, np.array([0, 1, 2]), out=out)  # keywords: the Python path
    assert list(out) == [0.0, 1.0, 2.0]


def test_integer_arguments_and_overflow():
    k = polyjit.kernel(shift, cache=False)
    x, out = np.arange(10.0), np.zeros(10)
    for n in (3, 3, 5, 5, 0, 10):
        check(k, x, n, out)
    with pytest.raises(IndexError):
        k(x, 11, out)  # the checked sizes include n: 11 goes through the call-time checks
    with pytest.raises((OverflowError, IndexError)):
        k(x, 2**70, out)
    check(k, x, -1, out)  # an empty range, as in Python
    check(k, x, np.int32(4), out)  # another signature
    check(k, x, 4, out)


def test_overlapping_views_take_the_python_path():
    def smooth(a, b):
        for i in range(len(a)):
            b[i] = a[i] + 1.0

    k = polyjit.kernel(smooth, cache=False)
    for _ in range(2):
        base = np.arange(12.0)
        k(base[:6], base[6:])
        assert list(base) == list(range(6)) + [1.0, 2, 3, 4, 5, 6]
    for a, b in ((slice(1, 7), slice(0, 6)), (slice(0, 6), slice(1, 7))) * 2:  # views of one buffer
        base, want = np.arange(12.0), np.arange(12.0)
        k(base[a], base[b])
        smooth(want[a], want[b])
        assert np.array_equal(base, want)


def test_no_reference_leaks():
    k, s = polyjit.kernel(dot, cache=False), polyjit.kernel(saxpy, cache=False)
    x, x2, y = np.arange(5.0), np.ones(5), np.zeros(5)
    for _ in range(3):  # compiled, memo filled: the loops below run in machine code
        k(x, x2)
        s(2.0, x, x2, y)
    assert in_machine_code(k) and in_machine_code(s)
    gc.collect()
    before = (sys.getrefcount(x), sys.getrefcount(None), sys.getrefcount(y))
    for _ in range(1000):
        k(x, x2)
        s(2.0, x, x2, y)
    gc.collect()
    assert (sys.getrefcount(x), sys.getrefcount(None), sys.getrefcount(y)) == before


def test_parallel_phases_above_the_thread_threshold_use_threads():
    from polyjit import native_runtime
    k = polyjit.kernel(saxpy, cache=False, parallel="i")
    n = 2 * native_runtime.MIN_CHUNK + 3
    x, y = np.arange(n, dtype=np.float64), np.ones(n)
    for m in (100, 100, n, n):
        check(k, 2.0, x[:m], y[:m], np.zeros(m))


def test_cached_entry_in_a_new_process(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import polyjit\n@polyjit.kernel\ndef saxpy(a, x, y, out):\n"
                   "    for i in range(len(x)):\n        out[i] = a * x[i] + y[i]\n")
    run = (f"import sys, numpy as np; sys.path.insert(0, {str(tmp_path)!r}); import mod\n"
           "x = np.arange(7.0); y = np.ones(7); out = np.zeros(7)\n"
           "for a in (1.0, 2.0, 3.0): mod.saxpy(a, x, y, out)\n"
           "print(mod.saxpy.stats.get('cache'), type(type(mod.saxpy).__dict__.get('__call__')).__name__, "
           "out.tolist())")
    env = {"POLYJIT_CACHE_DIR": str(tmp_path / "c"), "POLYJIT_CACHE": "1"}
    import os
    env = {**os.environ, **env}
    env.pop("POLYJIT_TARGET", None)
    outs = [subprocess.run([sys.executable, "-c", run], env=env, capture_output=True, text=True, check=True)
            .stdout.split() for _ in range(2)]
    assert outs[0][0] == "miss" and outs[1][0] == "hit"
    assert outs[0][1] == outs[1][1] == "builtin_function_or_method"
    assert outs[0][2:] == outs[1][2:]
