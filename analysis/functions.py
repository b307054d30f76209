"""The functions a kernel may call, as data: canonical name -> how it types and what it computes."""

from __future__ import annotations

import builtins
import math

import numpy as np

# Unary float functions: math.X always computes in float64 and returns a Python float (weak);
# np.X keeps float32 for float32 input (numpy's ufunc loops).
UNARY_FLOAT = (
    "sqrt", "exp", "log", "log2", "log10", "sin", "cos", "tan", "tanh", "sinh", "cosh", "asin", "acos",
    "atan", "expm1", "log1p", "erf", "erfc", "fabs", "cbrt",
)
# numpy's names for some of them
NUMPY_ALIASES = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "absolute": "abs"}
BINARY_FLOAT = ("pow", "atan2", "hypot", "fmod", "copysign")
NUMPY_BINARY_ALIASES = {"power": "pow", "arctan2": "atan2"}
# math.floor/ceil/trunc return Python ints; np.floor/ceil/trunc keep the float type
ROUNDING = ("floor", "ceil", "trunc")
NUMPY_MINMAX = ("minimum", "maximum", "fmin", "fmax")
BUILTINS = ("min", "max", "abs", "int", "float", "bool", "round")
SCALAR_TYPES = (
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64",
)
CONSTANTS = {"math.pi": math.pi, "math.e": math.e, "math.inf": math.inf, "math.nan": math.nan,
             "np.pi": np.pi, "np.e": np.e, "np.inf": np.inf, "np.nan": np.nan}


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for name in BUILTINS + ("range", "len"):
        table[id(getattr(builtins, name))] = name
    for name in UNARY_FLOAT + BINARY_FLOAT + ROUNDING:
        if hasattr(math, name):
            table[id(getattr(math, name))] = f"math.{name}"
    for name in UNARY_FLOAT + BINARY_FLOAT + ROUNDING + NUMPY_MINMAX + ("abs",):
        if hasattr(np, name):
            table[id(getattr(np, name))] = f"np.{name}"
    for alias, name in {**NUMPY_ALIASES, **NUMPY_BINARY_ALIASES}.items():
        table[id(getattr(np, alias))] = f"np.{name}"
    for name in SCALAR_TYPES:
        table[id(getattr(np, name))] = f"np.{name}"
    return table


_TABLE = _build_table()


def canonical_name(obj) -> str | None:
    """The canonical name of a supported callable, or None."""
    if getattr(obj, "_polyjit_prange", False):
        return "prange"
    return _TABLE.get(id(obj))


def known_names() -> list[str]:
    return sorted(set(_TABLE.values()))
