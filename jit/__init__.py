"""polyjit: a JIT compiler for numerical Python loops.

    @polyjit.kernel
    def saxpy(a, x, y, out):
        for i in range(len(x)):
            out[i] = a * x[i] + y[i]

At first call the function's source becomes a polyhedral kernel model (isl), schedule hints are applied and
checked against its dependences, and the loop code is compiled (OpenCL C through pyopencl; x86-64 machine
code through polyjit.asm once the native backend lands).
"""

# cache, native_runtime and asm.loader are what a call needs to run a kernel from the on-disk cache: loaded
# with polyjit (about 1.5 ms) rather than at the first call; the compiler (islpy, analysis, lowering, the
# assembler) stays unloaded until a cache miss.
from . import cache as _cache  # noqa: F401
from . import native_runtime as _native_runtime  # noqa: F401
from .analysis.errors import PolyjitError, ScheduleError, TypingError, UnsupportedError
from .asm import loader as _loader  # noqa: F401
from .kernel import Kernel, kernel, prange

__version__ = "0.1.0"
__all__ = ["kernel", "prange", "Kernel", "PolyjitError", "UnsupportedError", "TypingError", "ScheduleError"]
