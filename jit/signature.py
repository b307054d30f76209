"""Argument types at call time: the dispatch key and the analysis signature."""

from __future__ import annotations

import numpy as np

from .analysis.types import DTYPES, ArrayType, Ty, dtype_name

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def is_device_array(x) -> bool:
    return type(x).__module__.startswith("pyopencl") and hasattr(x, "base_data")


def arg_type(name: str, x):
    """The analysis type of argument `x` (raises TypeError for unsupported values)."""
    if isinstance(x, np.ndarray) or is_device_array(x):
        dt = dtype_name(x.dtype)
        if dt not in DTYPES:
            raise TypeError(f"argument `{name}` has dtype {x.dtype}, which polyjit does not support "
                            f"(supported: {', '.join(DTYPES)})")
        layout = "C" if getattr(x, "flags", None) is not None and x.flags.c_contiguous else "A"
        return ArrayType(dt, x.ndim, layout)
    if isinstance(x, np.generic):  # first: np.float64 is a subclass of float, but it is not weak
        dt = dtype_name(x.dtype)
        if dt not in DTYPES:
            raise TypeError(f"argument `{name}` has type {type(x).__name__}, which polyjit does not support")
        return Ty(dt)
    if isinstance(x, bool):
        return Ty("bool", True)
    if isinstance(x, int):
        if not INT64_MIN <= x <= INT64_MAX:
            raise OverflowError(f"argument `{name}` = {x} does not fit in int64")
        return Ty("int64", True)
    if isinstance(x, float):
        return Ty("float64", True)
    raise TypeError(f"argument `{name}` is a {type(x).__name__}; polyjit kernels take numpy arrays and numbers")
