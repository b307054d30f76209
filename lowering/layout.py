"""The argument block of native phase functions (plain data: a cached kernel loads without isl)."""

from __future__ import annotations

from dataclasses import dataclass

POINTER_ARGS = 3  # array data pointers passed in registers (rcx, r8, r9): cffi converts them fastest


@dataclass(frozen=True)
class BlockLayout:
    """Slot numbers of everything a phase function reads from or writes to the argument block."""

    arrays: tuple[tuple[str, int, int], ...]  # (name, first slot, ndim): ptr, sizes, byte strides
    scalars: tuple[tuple[str, int], ...]
    locals: tuple[tuple[str, int], ...]
    error: int
    size: int
    pointer_args: int = 0  # how many of the first arrays arrive as pointer arguments, not in the block

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


