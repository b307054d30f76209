"""OpenCL work-group kernels (workgroups.py's nests), a part of the emitter in opencl.py: group and local ids,
the serial loops every work-item runs, __local tile copies with their barriers, and register tiles
(opencl_tiles.py)."""

from __future__ import annotations

from ..analysis import expr as E
from .ctypes_ import C_TYPES
from .opencl_tiles import invariant_conditions, plan_tiles
from .workgroups import item_guard


class GroupKernels:
    """Mixed into OpenCLEmitter: the methods that emit a work-group nest's kernel."""

    def group_kernel(self, name: str, nest, boxes) -> str:
        """A work-group kernel (workgroups.py): group and local ids give the split loops' values; the
        loops between run in every work-item; `boxes` are copied to __local at their loop's iterations.
        With register tiles (opencl_tiles.py) the nest runs on private copies of the elements it updates
        where the call's strides keep those apart, else as written."""
        out = [f"__kernel void {name}({self.params()})", "{", self.ERROR_FLAG]
        for k, s in enumerate(self.slots):
            c = C_TYPES[self.types[s]]
            out.append(f"    {c} {s} = *(__global {c} *)(pj_scal + {k});")
        for b in boxes:  # OpenCL wants __local variables at kernel scope
            out.append(f"    __local {C_TYPES[self.types[b.array]]} pj_{b.array}_loc[{b.count}];")
        n = len(nest.axes)
        for k, a in enumerate(nest.axes):
            g, axis = a.group, n - 1 - k
            # ids in 32-bit ints where they fit (a loop from 0 by 1; local ids): values live across the
            # serial loops then take one register each (the expressions still compute in 64 bits)
            small = isinstance(g.init, E.Const) and g.init.value == 0 and g.step == 1
            out.append(f"    const {'int' if small else 'long'} {g.var} = {self.expr(g.init)} + "
                       f"({'int' if small else 'long'})get_group_id({axis}) * {g.step};")
            out.append(f"    const int {a.item.var} = (int)get_local_id({axis});")
        if boxes:
            out.append("    const int pj_lid = (int)(get_local_id(0) + get_local_size(0) * "
                       "(get_local_id(1) + get_local_size(1) * get_local_id(2)));")
        tiles = plan_tiles(self.model, nest) if self.restrict else ()
        if not tiles:
            out += self.group_body(nest, boxes, 1)
        else:
            ndim = {t.array: self.ndim(t.array) for t in tiles}
            apart = " && ".join(t.separated(ndim[t.array], lambda d, a=t.array: self.stride(a, d, ndim[a]))
                                for t in tiles)
            guard = self.expr(item_guard(nest))
            out.append(f"    if ({apart}) {{")
            loads, stores = [], []
            for t in tiles:
                c = C_TYPES[self.types[t.array]]
                for el in t.elements:
                    out.append(f"        {c} {el.register} = 0;")
                    where = f"if ({self.expr(el.guard)}) " if el.guard is not None else ""
                    loads.append(f"            {where}{el.register} = {self.expr(el.index)};")
                    stores.append(f"            {where}{self.expr(el.index)} = {el.register};")
            out += [f"        if ({guard}) {{", *loads, "        }"]
            full = invariant_conditions(nest, self.model)
            if full:
                out.append(f"        const int pj_full = {' && '.join(f'({self.expr(c)})' for c in full)};")
            self.registers = {key: r for t in tiles for key, r in t.keys.items()}
            try:
                out += self.group_body(nest, boxes, 2, full)
            finally:
                self.registers = {}
            out += [f"        if ({guard}) {{", *stores, "        }", "    } else {"]
            out += self.group_body(nest, boxes, 2)
            out.append("    }")
        out += [self.ERROR_STORE, "}"]
        return "\n".join(out)

    def group_body(self, nest, boxes, depth: int, full=()) -> list[str]:
        """The serial loops between, with their tile copies and barriers, around the item-guarded body;
        `full`: the conditions `pj_full` holds, which work-items with the whole register tile assume."""
        out, closers = [], []
        for f in nest.between:
            pad = self.indent_unit * depth
            out.append(f"{pad}for (long {f.var} = {self.expr(f.init)}; {self.expr(f.cond)}; {f.var} += {f.step}) {{")
            mine = [b for b in boxes if b.loop == f.name]
            for b in mine:
                out += self.copy_in(b, nest.local_size, depth + 1)
            if mine:
                out.append(f"{pad}{self.indent_unit}barrier(CLK_LOCAL_MEM_FENCE);")
            closers.append((pad, bool(mine)))
            depth += 1
        pad = self.indent_unit * depth
        out.append(f"{pad}if ({self.expr(item_guard(nest))}) {{")
        self.local_reads = {b.array: b for b in boxes}
        try:
            if full:  # work-items whose guards on the tile all hold run the body without them
                out.append(f"{pad}{self.indent_unit}if (pj_full) {{")
                self.assume_true = {str(c) for c in full}
                try:
                    out += self.lines(nest.body, depth + 2)
                finally:
                    self.assume_true = set()
                out.append(f"{pad}{self.indent_unit}}} else {{")
                out += self.lines(nest.body, depth + 2)
                out.append(f"{pad}{self.indent_unit}}}")
            else:
                out += self.lines(nest.body, depth + 1)
        finally:
            self.local_reads = {}
        out.append(f"{pad}}}")
        for pad, barrier in reversed(closers):
            if barrier:  # nobody may overwrite the tile while others still read it
                out.append(f"{pad}{self.indent_unit}barrier(CLK_LOCAL_MEM_FENCE);")
            out.append(f"{pad}}}")
        return out

    def copy_in(self, b, group: int, depth: int) -> list[str]:
        """Work-items copy the box cooperatively (consecutive ids, consecutive elements); elements outside
        the array are skipped (never read: the accesses are checked in bounds before the call). Where the
        box lies inside the array the copy has no per-element test: its unrolled rounds' loads are then all
        in flight together (GPUs hide their latency that way; a load behind a branch waits for the last)."""
        pad, a = self.indent_unit * depth, b.array
        out = [f"{pad}const long pj_{a}_o{d} = {self.expr(o)};" for d, o in enumerate(b.offsets)]
        inside = " && ".join(f"pj_{a}_o{d} >= 0 && pj_{a}_o{d} + {n} <= {a}_shape{d}"
                             for d, n in enumerate(b.sizes))
        rounds = -(-b.count // group)
        rest, conds, terms, head = "pj_e", [], [f"{a}_off"], []
        # the position inside the box in 32-bit ints: GPUs divide those by constants in a few instructions
        head.append(f"    const int pj_e = (int)pj_lid + pj_n * {group};")
        for d in reversed(range(len(b.sizes))):
            head.append(f"    const long pj_x{d} = pj_{a}_o{d} + (long)(({rest}) % {b.sizes[d]});")
            rest = f"({rest}) / {b.sizes[d]}"
            conds.append(f"pj_x{d} >= 0 && pj_x{d} < {a}_shape{d}")
            terms.append(f"pj_x{d} * {self.stride(a, d, len(b.sizes))}")
        copy = f"pj_{a}_loc[pj_e] = {a}[{' + '.join(terms)}];"
        partial = [] if rounds * group == b.count else [f"pj_e < {b.count}"]

        def rounds_loop(checks):
            test = f"if ({' && '.join(checks)}) " if checks else ""
            return [f"{pad}    #pragma unroll{'' if rounds <= 16 else ' 8'}",
                    f"{pad}    for (int pj_n = 0; pj_n < {rounds}; pj_n++) {{",
                    *(f"{pad}    {line}" for line in head), f"{pad}        {test}{copy}", f"{pad}    }}"]

        return out + [f"{pad}if ({inside}) {{", *rounds_loop(partial), f"{pad}}} else {{",
                      *rounds_loop(partial + conds[::-1]), f"{pad}}}"]
