"""Building what a native specialization needs at run time: its spec, per-call Python and machine-code entry.

Compile time only: a cached kernel loads through jit/native_runtime.py without this module.
"""

from __future__ import annotations

import numpy as np

from .native_runtime import Entry

_FORMAT = {"float64": "d", "float32": "f4x", "uint64": "Q"}


def spec_from_model(model, layout, trips, check_source, foreign=frozenset(), sums=()):
    from .lowering.layout import NativeSpec
    params = tuple((p.name, p.source.name, None) if hasattr(p.source, "name") else
                   (p.name, p.source.array, p.source.dim) for p in model.params)
    result = None
    if model.return_value is not None:
        result = (model.return_value, model.temporary(model.return_value).dtype, model.return_weak)
    return NativeSpec(model.name, tuple((a.name, a.kind, a.dtype) for a in model.arguments), params,
                      tuple((c.error, c.message) for c in model.checks), check_source,
                      frozenset(model.written_arrays()),
                      tuple((t.name, t.dtype, t.shape) for t in model.temporaries if t.shape), result, layout,
                      tuple(trips), foreign, tuple(sums))


def caller_source(spec) -> str:
    """The per-call Python of a specialization: checks, argument block, phases (or the machine-code entry)."""
    layout = spec.layout
    index = {a[0]: k for k, a in enumerate(spec.arguments)}
    lines = [spec.check_source, ""]
    names = ", ".join(p[0] for p in spec.params) or "*_"
    for k, trip in enumerate(spec.trips):  # generated from isl's AST, no user text
        if trip is not None:
            lines += [f"def trip{k}({names}):", f"    return {trip}", ""]
    lines.append("def call(args):")
    lines.append(f"    {_tuple([f'a{k}' for k in range(len(index))])} = args")
    params = [f"int(a{index[arg]})" if dim is None else f"a{index[arg]}.shape[{dim}]"
              for _, arg, dim in spec.params]
    param_names = [p[0] for p in spec.params]
    lines.append(f"    bad = pj_checks({', '.join(params)})")
    lines.append("    if bad >= 0:")
    lines.append("        error, message = checks[bad]")
    lines.append("        raise (IndexError if error == 'IndexError' else ValueError)(message)")
    temps = {t[0]: t for t in spec.temporaries}
    fmt, values, pointers, copy_back = [], [], [], []
    for k, (name, _, ndim) in enumerate(layout.arrays):
        if name in index:
            x = f"a{index[name]}"
            if name in spec.written:
                lines.append(f"    if not {x}.flags.writeable:")
                lines.append(f"        raise ValueError('argument `{name}` is read-only, but the kernel "
                             f"assigns to it')")
            if name in spec.foreign:  # the machine code reads native byte order
                lines.append(f"    {x}_orig, {x} = {x}, {x}.astype({x}.dtype.newbyteorder('='))")
                if name in spec.written:
                    copy_back.append(x)
        else:
            _, dtype, shape = temps[name]
            x = f"t{k}"
            dims = ", ".join(params[param_names.index(s)] for s in shape)
            lines.append(f"    {x} = np.empty(({dims},), '{dtype}')")
        fmt.append("q")
        if k < layout.pointer_args:
            pointers.append(x)
            values.append("0")
        else:
            values.append(f"address({x})")
        if ndim:
            fmt.append(f"{2 * ndim}q")
            values.append(f"*{x}.shape, *{x}.strides")
    for name, _ in layout.scalars:
        dt = spec.arguments[index[name]][2]
        fmt.append(_FORMAT.get(dt, "q"))
        values.append(f"a{index[name]}" if dt.startswith("float") else f"int(a{index[name]})")
    for k, trip in enumerate(spec.trips):
        if trip is not None:
            lines.append(f"    n{k} = trip{k}({', '.join(params)})")
    if not spec.temporaries and not spec.foreign:  # the machine-code entry (if built) takes the call
        trips = [("0" if t is None else f"n{k}") for k, t in enumerate(spec.trips)]
        lines.append(f"    if entry is not None and remember({_tuple(params)}, {_tuple(trips)}) and not busy:")
        lines.append("        busy.append(1)  # a call the entry declines comes back here: cffi then")
        lines.append("        try:")
        lines.append("            return entry(*args)")
        lines.append("        finally:")
        lines.append("            busy.pop()")
    lines.append("    if ffi is None:")
    lines.append("        load_cffi()")
    lines.append(f"    block = bytearray(struct.pack('<{''.join(fmt)}', {', '.join(values)}) + "
                 f"bytes({8 * (len(layout.locals) + 1)}))")
    lines.append("    blk = ffi.from_buffer('int64_t[]', block)")
    if pointers:  # from_buffer is the fast way, but only for contiguous arrays
        lines.append("    try:")
        lines.append(f"        ptrs = {_tuple([f'ffi.from_buffer({x})' for x in pointers])}")
        lines.append("    except ValueError:")
        lines.append(f"        ptrs = {_tuple([f'pointer({x})' for x in pointers])}")
    else:
        lines.append("    ptrs = ()")
    pad = 3 - len(pointers)
    if pad:
        lines.append(f"    ptrs = ptrs + (ffi.NULL,) * {pad}")
    for k, trip in enumerate(spec.trips):
        if trip is None:
            lines.append(f"    f{k}(blk, 0, 0, *ptrs)")
        else:
            sums = tuple((8 * slot, dt) for slot, dt in (spec.sums[k] if spec.sums else ()))
            lines.append(f"    run_parallel(f{k}, blk, n{k}, ptrs, block, {sums!r}, {8 * layout.error})")
    lines.append(f"    err = blk[{layout.error}]")
    lines.append("    if err:")
    lines.append("        raise IndexError(checks[err - 1][1])")
    for x in copy_back:
        lines.append(f"    {x}_orig[...] = {x}")
    if spec.result is None:
        lines.append("    return None")
    else:
        name, dt, weak = spec.result
        slot = dict(layout.locals)[name]
        lines.append(f"    value = np.frombuffer(block, '{np.dtype(dt).str}', 1, {8 * slot})[0]")
        lines.append("    return value.item()" if weak else "    return value")
    return "\n".join(lines)


def _tuple(items) -> str:
    """Python source of a tuple of the expressions `items` (also of none or one)."""
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def make_entry(spec, key, functions):
    """The machine-code entry for a freshly compiled specialization (None where it does not apply)."""
    from .asm import allocate, encode, load
    from .lowering.entry import build_entry, entry_kinds
    kinds = entry_kinds(key)
    built = build_entry(spec, kinds, len(functions))
    if built is None:
        return None
    f, slots = built
    return Entry(load(encode(allocate(f.program())), f.c_signature()), slots, kinds, functions, spec.checks,
                 spec.result)
