"""Bad kernels raise clear errors at first call: file:line:col, the source line, a caret, a hint."""

import math
import numpy as np
import pytest

import polyjit
from helpers import check


def while_loop(x):
    i = 0
    while i < len(x):
        x[i] = 0
        i += 1


def unknown_call(x):
    for i in range(len(x)):
        x[i] = print(x[i])


def list_literal(x):
    for i in range(len(x)):
        x[i] = [1, 2][0]


def data_dependent_bound(x, n):
    for i in range(len(x)):
        for j in range(int(x[i])):
            x[i] = j


def assign_argument(x, n):
    n = 3
    x[0] = n


def breaking(x):
    for i in range(len(x)):
        if x[i] > 0:
            break


def attribute(x):
    for i in range(len(x)):
        x[i] = x.size


def bool_then_float(x):
    flag = x[0] > 0
    flag = 1.5
    x[0] = flag


def recurrence(x):
    for i in polyjit.prange(1, len(x)):
        x[i] = x[i - 1] + 1


def two_loops(x):
    for i in range(len(x)):
        x[i] = 1


def source_line(fn, text):
    import inspect
    lines, first = inspect.getsourcelines(fn)
    for k, line in enumerate(lines):
        if text in line and k > 0:
            return first + k, line.rstrip("\n")
    raise AssertionError(text)


@pytest.mark.parametrize("fn, text, what, hint", [
    (while_loop, "while i < len(x):", "`While` is not supported", "for v in range"),
    (unknown_call, "print(x[i])", "unsupported function `print`", "math.*"),
    (list_literal, "[1, 2]", "`List` is not supported", "numpy array"),
    (data_dependent_bound, "int(x[i])", "is not affine", "data-dependent"),
    (assign_argument, "n = 3", "rebinds a name", "new local name"),
    (breaking, "break", "`Break` is not supported", "loop bounds"),
    (attribute, "x.size", "`Attribute` is not supported", "A.shape"),
])
def test_unsupported_points_at_the_construct(fn, text, what, hint):
    k = polyjit.kernel(fn)
    args = (np.zeros(4),) if fn.__code__.co_argcount == 1 else (np.zeros(4), 2)
    with pytest.raises(polyjit.UnsupportedError) as info:
        k(*args)
    err = info.value
    line, source = source_line(fn, text)
    assert err.loc.line == line
    assert err.loc.filename == __file__
    assert err.loc.text == source
    assert source[err.loc.col:].startswith(text.split()[0])
    message = str(err)
    assert what in message and hint in message
    assert f"{__file__}:{line}:{err.loc.col + 1}" in message
    caret_line = message.splitlines()[3]
    assert caret_line.strip().startswith("^") and caret_line.index("^") - 4 == err.loc.col


def test_errors_are_polyjit_errors():
    assert issubclass(polyjit.UnsupportedError, polyjit.PolyjitError)
    assert issubclass(polyjit.TypingError, polyjit.PolyjitError)
    assert issubclass(polyjit.ScheduleError, polyjit.PolyjitError)


def test_variable_changing_kind_is_a_typing_error():
    k = polyjit.kernel(bool_then_float)
    with pytest.raises(polyjit.TypingError, match="would change type") as info:
        k(np.ones(3))
    assert info.value.loc.line == source_line(bool_then_float, "flag = 1.5")[0]


def test_prange_on_recurrence_names_the_dependence():
    k = polyjit.kernel(recurrence)
    with pytest.raises(polyjit.ScheduleError) as info:
        k.inspect_schedule(np.zeros(8))
    line = source_line(recurrence, "x[i] = x[i - 1] + 1")[0]
    message = str(info.value)
    assert f"flow dependence from line {line} to line {line} on `x`" in message
    assert "is read at" in message


def test_unknown_loop_name_lists_valid_names():
    k = polyjit.kernel(two_loops, parallel="j")
    with pytest.raises(polyjit.ScheduleError, match="valid names: i"):
        k.inspect_schedule(np.zeros(3))


def test_bad_option_values():
    with pytest.raises(ValueError, match="target"):
        polyjit.kernel(two_loops, target="cuda")
    with pytest.raises(polyjit.ScheduleError, match="split="):
        polyjit.kernel(two_loops, split={"i": 0})
    with pytest.raises(polyjit.ScheduleError, match="order="):
        polyjit.kernel(two_loops, order="i")


def test_wrong_arguments_raise_type_errors():
    k = polyjit.kernel(two_loops)
    with pytest.raises(TypeError, match="takes 1 positional argument"):
        k(np.zeros(3), np.zeros(3))
    with pytest.raises(TypeError, match="dtype complex128"):
        k.inspect_model(np.zeros(3, complex))
    with pytest.raises(TypeError, match="numpy arrays and numbers"):
        k.inspect_model([1, 2, 3])


def test_kernel_keeps_py_func_and_forms():
    k1 = polyjit.kernel(two_loops)
    k2 = polyjit.kernel(target="opencl")(two_loops)
    assert k1.py_func is two_loops and k2.py_func is two_loops
    assert k1.__name__ == "two_loops"


def precision_changes(x, n):
    s = 0.0
    for k in range(n):
        s += math.sqrt(x[k])
    for k in range(n):
        s += x[k]
    return s


def test_local_whose_precision_would_change_is_a_typing_error():
    """fuzz: Python keeps `s` a float64 Python float through the first loop and a float32 after; one static
    type cannot do both, so polyjit says so instead of rounding differently."""
    k = polyjit.kernel(precision_changes)
    with pytest.raises(polyjit.TypingError, match="precision would change") as info:
        k(np.ones(3, np.float32), 3)
    assert info.value.loc.line == source_line(precision_changes, "math.sqrt")[0]
    assert k(np.ones(3), 3) == precision_changes(np.ones(3), 3)  # float64 arrays: one precision, fine


def mixed_max(x32, x64, out):
    for i in range(len(out)):
        out[i] = max(x32[i], x64[i]) + 0.1


def mixed_select(a, b, out):
    for i in range(len(out)):
        out[i] = (a[i] if i % 2 else b[i]) * 3


def test_value_dependent_types_are_typing_errors():
    """fuzz: Python's max / `a if c else b` return the chosen operand with its own type; with two numpy types
    the result's type depends on the values, which one static type cannot follow."""
    with pytest.raises(polyjit.TypingError, match="`max` of float32 and float64") as info:
        polyjit.kernel(mixed_max)(np.ones(3, np.float32), np.ones(3), np.zeros(3))
    assert info.value.loc.line == source_line(mixed_max, "max(")[0]
    with pytest.raises(polyjit.TypingError, match="conditional expression of int32 and int64"):
        polyjit.kernel(mixed_select)(np.ones(3, np.int32), np.ones(3, np.int64), np.zeros(3))
    out = np.zeros(3)
    polyjit.kernel(mixed_select)(np.ones(3), np.ones(3), out)  # one type: fine
    assert out.tolist() == [3.0, 3.0, 3.0]


def clamp_store(x, out):
    for i in range(len(x)):
        out[i] = min(max(x[i], 0.1), 0.75)


def relu_times(x, y, out):
    for i in range(len(x)):
        out[i] = (max(x[i], 0.0) * y[i]) if x[i] > -0.5 else (x[i] if x[i] < -0.9 else 0.25) + y[i]


def relu_local(x, out):
    for i in range(len(x)):
        v = max(x[i], 0.1)
        out[i] = v


def relu_weak_use(x, out):
    for i in range(len(x)):
        out[i] = max(x[i], 0.1) * 2.0


@pytest.mark.parametrize("target", ["native", "opencl"])
def test_a_python_number_against_a_numpy_value_where_the_use_hides_the_type(target):
    """fuzz: max(x32[i], 0.1) is np.float32 or the Python float 0.1 in Python. Stored into a float32 array, or
    multiplied by a float32 value, both give the same; kept in a local, scaled by a Python number or stored
    into a float64 array they differ, and polyjit says so instead of picking one."""
    x = np.linspace(-1, 1, 11).astype(np.float32)
    y = np.linspace(2, 3, 11).astype(np.float32)
    check(polyjit.kernel(clamp_store, target=target, cache=False), x, np.zeros(11, np.float32))
    check(polyjit.kernel(relu_times, target=target, cache=False), x, y, np.zeros(11, np.float64))
    check(polyjit.kernel(clamp_store, target=target, cache=False), x.astype(np.float64), np.zeros(11))
    for fn, out, text in ((relu_local, np.zeros(11, np.float32), "max("), (relu_weak_use, np.zeros(11), "max("),
                          (clamp_store, np.zeros(11), "max(")):
        with pytest.raises(polyjit.TypingError, match="of a Python float and a float32 value") as info:
            polyjit.kernel(fn, target=target, cache=False)(x, out)
        assert info.value.loc.line == source_line(fn, text)[0]
        assert "np.float32(" in str(info.value)
