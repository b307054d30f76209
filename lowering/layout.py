"""The argument block of native phase functions (plain data: a cached kernel loads without isl)."""

from __future__ import annotations

POINTER_ARGS = 3  # array data pointers passed in registers (rcx, r8, r9): cffi converts them fastest


class PlainRecord:
    """An immutable record with named fields, cheap to define and to unpickle.

    Records that cached kernels carry are not dataclasses on purpose: creating a dataclass costs about a
    millisecond at import, and the cached path has two milliseconds in all.
    """

    __slots__ = ()

    def __init__(self, *values, **named):
        fields = self.__slots__
        values = values + tuple(named[f] for f in fields[len(values):] if f in named)
        values = values + tuple(getattr(type(self), f"default_{f}") for f in fields[len(values):])
        for f, v in zip(fields, values):
            object.__setattr__(self, f, v)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self):
        return type(self), tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __hash__(self):
        return hash(tuple(getattr(self, f) for f in self.__slots__))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self.__slots__)})"


class BlockLayout(PlainRecord):
    """Slot numbers of everything a phase function reads from or writes to the argument block.

    arrays: (name, first slot, ndim) with the data pointer, sizes and byte strides from that slot; scalars and
    locals: (name, slot); error: the slot of the run-time check code; pointer_args: how many of the first
    arrays arrive as pointer arguments rather than in the block.
    """

    __slots__ = ("arrays", "scalars", "locals", "error", "size", "pointer_args")
    default_pointer_args = 0

    def array(self, name):
        return next((s, n) for a, s, n in self.arrays if a == name)


def block_layout(model) -> BlockLayout:
    slot, arrays = 0, []
    names = [a.name for a in model.arguments if a.kind == "array"] + [t.name for t in model.temporaries if t.shape]
    for name in names:
        a = model.argument(name)
        ndim = a.ndim if a is not None else len(model.temporary(name).shape)
        arrays.append((name, slot, ndim))
        slot += 1 + 2 * ndim
    scalars = []
    for a in model.arguments:
        if a.kind == "scalar":
            scalars.append((a.name, slot))
            slot += 1
    local = []
    for t in model.temporaries:
        if not t.shape:
            local.append((t.name, slot))
            slot += 1
    nargs = sum(1 for a in model.arguments if a.kind == "array")
    return BlockLayout(tuple(arrays), tuple(scalars), tuple(local), slot, slot + 1, min(POINTER_ARGS, nargs))


class NativeSpec(PlainRecord):
    """What the per-call path needs, as plain data: picklable for the cache, loadable without isl.

    arguments: (name, "array" | "scalar", dtype); params: (name, argument name, dim or None for an integer
    argument); checks: (exception name, message); temporaries: (name, dtype, shape as parameter names);
    result: (slot name, dtype, weak) or None; trips: per phase, the Python source of a parallel phase's
    iteration count, or None; foreign: arrays in non-native byte order, staged through native copies;
    sums: per phase, the (slot, dtype) of fastmath sums whose per-thread partial sums are combined.
    """

    __slots__ = ("name", "arguments", "params", "checks", "check_source", "written", "temporaries", "result",
                 "layout", "trips", "foreign", "sums")
    default_foreign = frozenset()
    default_sums = ()
