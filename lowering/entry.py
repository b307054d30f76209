"""The Python entry point of a native specialization, in machine code: a CPython builtin that takes the
call's argument tuple, checks it against the specialization and runs the phase functions directly.

Numba's dispatcher is C; polyjit's per-call Python (argument packing, cffi) costs microseconds. The entry
built here reads the argument objects' fields (numpy's `PyArrayObject` layout, `PyFloatObject`, numpy
scalars), fills the argument block and calls the phases. Whatever it does not recognise -- another
signature, keyword arguments, overlapping arrays, shapes other than the last ones the Python path checked,
a parallel phase big enough for threads when more than one thread is allowed -- goes to the Python path
(`slow`), which is always correct.
The code contains no addresses: C API functions, type objects and the memo live in a data array (the
builtin's `self`) that the runtime fills, so the machine code can be cached like the phases.

Memo: the call-time checks (bounds of the footprints, slice extents) depend only on the parameters (sizes
and integer arguments); the Python path records the parameters it checked and the parallel phases' trip
counts, and the entry runs only when the parameters are the same.
"""

from __future__ import annotations

import numpy as np

from ..asm import Function, Mem, Reg

# C API entries and objects the runtime puts in the data array, in this order.
FIXED = ("slow", "call", "incref", "none", "array_type", "aslong", "errclear", "setstr", "indexerr",
         "fromdouble", "fromlong", "callobj", "decref", "result_type", "valid", "par_limit", "savethread",
         "restorethread", "busy", "getenv", "threads_var", "one_cpu")
# numpy's PyArrayObject: data, nd, dimensions, strides, base, descr, flags after the object header
DATA, ND, DIMS, STRIDES, BASE, DESCR, FLAGS = 16, 24, 32, 40, 48, 56, 64
WRITEABLE = 0x0400
OB_TYPE, VALUE = 8, 16  # the type pointer; the value of a float / numpy scalar
TUPLE_SIZE, TUPLE_ITEMS = 16, 24
RESULTS = ("float64", "float32", "int64", "int32")


def entry_kinds(key) -> tuple | None:
    """Plain descriptions of the arguments from a dispatch key, or None where the entry does not apply."""
    if key[-1]:  # overlapping arrays: the Python path keeps them
        return None
    kinds = []
    for k in key[:-1]:
        if isinstance(k, tuple) and isinstance(k[0], np.dtype):
            if not k[0].isnative:
                return None
            kinds.append(("array", k[0].name, k[1]))
        elif k is float:
            kinds.append(("pyfloat",))
        elif k is int:
            kinds.append(("pyint",))
        elif isinstance(k, tuple) and len(k) == 3 and isinstance(k[1], np.dtype) and k[2] == 0 \
                and k[1].kind in "fiub" and k[1].isnative:
            kinds.append(("scalar", k[1].name))
        else:
            return None
    return tuple(kinds)


def build_entry(spec, kinds, phase_count: int) -> tuple[Function, tuple] | None:
    """(Function, data slot names) for `spec` called with arguments of `kinds`, or None if not applicable."""
    if kinds is None or spec.temporaries or spec.foreign:
        return None
    if spec.result is not None and spec.result[1] not in RESULTS:
        return None
    return _EntryBuilder(spec, kinds, phase_count).build()


class _EntryBuilder:
    def __init__(self, spec, kinds, phase_count):
        self.spec, self.kinds, self.phase_count = spec, kinds, phase_count
        self.index = {a[0]: k for k, a in enumerate(spec.arguments)}
        names = list(FIXED) + [f"type{k}" for k in range(len(kinds))]
        names += [f"memo{j}" for j in range(len(spec.params))]
        names += [f"trip{p}" for p in range(phase_count)] + [f"phase{p}" for p in range(phase_count)]
        names += [f"msg{c}" for c in range(len(spec.checks))]
        names += [f"block{s}" for s in range(spec.layout.size)]
        self.slots = {n: k for k, n in enumerate(names)}

    def d(self, name: str, size: int = 8) -> Mem:
        return Mem(self.data, disp=8 * self.slots[name], size=size)

    def ccall(self, target: str, *values, double=None) -> Reg:
        """Call the C function whose address is in data slot `target`; GP arguments, an optional double."""
        f = self.f
        regs = f.abi.int_args[: len(values)]
        for r, v in zip(regs, values):
            f.mov(r, v)
        uses = list(regs)
        if double is not None:
            f.movaps(f.abi.float_args[0], double)
            uses.append(f.abi.float_args[0])
        clobbers = list(f.abi.caller_saved_gp) + [Reg("xmm", 16, i) for i in range(16)]
        fn = f.gp64()
        f.mov(fn, self.d(target))
        f.emit("call", fn, implicit_uses=uses, implicit_defs=clobbers)
        out = f.gp64()
        f.mov(out, f.abi.int_return)
        return out

    def build(self):
        spec, kinds = self.spec, self.kinds
        f = self.f = Function(f"{spec.name}_entry", args=[("self", "int64_t"), ("args", "int64_t"),
                                                          ("kw", "int64_t")], ret="int64_t", isa="sse2")
        me, args, kw = f.args
        self.data = f.gp64()
        f.mov(self.data, Mem(me, disp=DATA, size=8))
        slow = self.slow = f.label("slow")
        f.test(kw, kw)
        f.jnz(slow)
        f.cmp(Mem(args, disp=TUPLE_SIZE, size=8), len(kinds))
        f.jne(slow)
        f.cmp(self.d("valid"), 1)
        f.jne(slow)
        objs, values, roots = [], {}, []
        for k, kind in enumerate(kinds):
            a = f.gp64()
            f.mov(a, Mem(args, disp=TUPLE_ITEMS + 8 * k, size=8))
            objs.append(a)
            t = f.gp64()
            f.mov(t, Mem(a, disp=OB_TYPE, size=8))
            if kind[0] == "array":
                f.cmp(t, self.d("array_type"))
                f.jne(slow)
                f.mov(t, Mem(a, disp=DESCR, size=8))
                f.cmp(t, self.d(f"type{k}"))
                f.jne(slow)
                f.cmp(Mem(a, disp=ND, size=4), kind[2])
                f.jne(slow)
                if spec.arguments[k][0] in spec.written:
                    f.test(Mem(a, disp=FLAGS, size=4), WRITEABLE)
                    f.jz(slow)
                root = f.gp64()
                f.mov(root, Mem(a, disp=BASE, size=8))
                f.test(root, root)
                f.cmovz(root, a)
                for other in roots:  # two views of one buffer: the Python path orders them
                    f.cmp(root, other)
                    f.je(slow)
                roots.append(root)
            else:
                f.cmp(t, self.d(f"type{k}"))
                f.jne(slow)
                values[k] = self.scalar(a, kind)
        for j, (_, arg, dim) in enumerate(spec.params):
            k = self.index[arg]
            if dim is None:
                v = values[k]
            else:
                dims = f.gp64()
                f.mov(dims, Mem(objs[k], disp=DIMS, size=8))
                v = f.gp64()
                f.mov(v, Mem(dims, disp=8 * dim, size=8))
            f.cmp(v, self.d(f"memo{j}"))
            f.jne(slow)
        if any(trip is not None for trip in spec.trips):
            self.single_thread_or_small()
        # the GIL is released while the phases run, so the block is this call's only while `busy` is set
        # (set and cleared with the GIL held); a call meanwhile from another thread takes the Python path
        f.cmp(self.d("busy"), 0)
        f.jne(slow)
        f.mov(self.d("busy"), 1)
        self.fill_block(objs, values)
        pointers = self.pointers(objs)
        block = f.gp64()
        f.lea(block, self.d("block0"))
        tstate = self.ccall("savethread")
        for p, trip in enumerate(spec.trips):
            skip = f.label()
            n = f.gp64()
            if trip is None:
                f.xor(n.d, n.d)
            else:
                f.mov(n, self.d(f"trip{p}"))
                f.test(n, n)
                f.jle(skip)
            zero = f.gp64()
            f.xor(zero.d, zero.d)
            self.ccall(f"phase{p}", block, zero, n, *pointers)
            f.bind(skip)
        self.ccall("restorethread", tstate)
        err = f.gp64()
        f.mov(err, self.d(f"block{spec.layout.error}"))
        f.mov(self.d("busy"), 0)  # what is still read from the block is read before any Python code runs
        failed = f.label("failed")
        f.test(err, err)
        f.jnz(failed)
        f.ret(self.result())
        f.bind(failed)
        if spec.checks:
            msg = f.gp64()
            f.mov(msg, Mem(self.data, err, 8, 8 * (self.slots["msg0"] - 1), size=8))
            exc = f.gp64()
            f.mov(exc, self.d("indexerr"))
            self.ccall("setstr", exc, msg)
        out = f.gp64()
        f.xor(out.d, out.d)
        f.ret(out)
        f.bind(slow)
        slow_fn = f.gp64()
        f.mov(slow_fn, self.d("slow"))
        f.ret(self.ccall("call", slow_fn, args, kw))
        return f, tuple(self.slots)

    def single_thread_or_small(self) -> None:
        """Go on when every parallel phase is below the thread threshold or only one thread is allowed
        (POLYJIT_NUM_THREADS is "1", or unset/empty on a one-CPU machine): the Python path would then run
        each phase in one piece too, but its per-call Python, run with the caches just flushed by a large
        phase, costs tens of microseconds. Other settings take the Python path, which reads them."""
        f, spec, slow = self.f, self.spec, self.slow
        small, threaded = f.label("small"), f.label("threaded")
        limit = f.gp64()
        f.mov(limit, self.d("par_limit"))
        for p, trip in enumerate(spec.trips):
            if trip is not None:
                f.cmp(limit, self.d(f"trip{p}"))
                f.jle(threaded)
        f.jmp(small)
        f.bind(threaded)
        var = f.gp64()
        f.mov(var, self.d("threads_var"))
        value = self.ccall("getenv", var)  # the C environment: os.environ's assignments reach it (putenv)
        unset = f.label("unset")
        f.test(value, value)
        f.jz(unset)
        f.cmp(Mem(value, size=1), 0)
        f.je(unset)
        f.cmp(Mem(value, size=1), ord("1"))
        f.jne(slow)
        f.cmp(Mem(value, disp=1, size=1), 0)
        f.jne(slow)
        f.jmp(small)
        f.bind(unset)
        f.cmp(self.d("one_cpu"), 1)
        f.jne(slow)
        f.bind(small)

    def scalar(self, a: Reg, kind) -> Reg:
        """The argument's value as the block holds it (int64, or the float's bits)."""
        f = self.f
        v = f.gp64()
        if kind[0] == "pyfloat":
            f.mov(v, Mem(a, disp=VALUE, size=8))
        elif kind[0] == "pyint":
            v = self.ccall("aslong", a)
            ok = f.label()
            f.cmp(v, -1)  # -1 is also an error (overflow): let the Python path decide
            f.jne(ok)
            self.ccall("errclear")
            f.jmp(self.slow)
            f.bind(ok)
        else:
            dt = np.dtype(kind[1])
            m = Mem(a, disp=VALUE, size=dt.itemsize)
            if dt.itemsize == 8:
                f.mov(v, m)
            elif dt.kind == "i" and dt.itemsize == 4:
                f.movsxd(v, m)
            elif dt.kind == "i":
                f.movsx(v, m)
            elif dt.itemsize == 4:  # float32 bits or uint32: zero-extended, as the block holds them
                f.mov(v.d, m)
            else:
                f.movzx(v, m)
        return v

    def fill_block(self, objs, values) -> None:
        f, layout = self.f, self.spec.layout
        for k, (name, slot, ndim) in enumerate(layout.arrays):
            a = objs[self.index[name]]
            if k >= layout.pointer_args:
                p = f.gp64()
                f.mov(p, Mem(a, disp=DATA, size=8))
                f.mov(self.d(f"block{slot}"), p)
            for part, base in ((DIMS, slot + 1), (STRIDES, slot + 1 + ndim)):
                arr = f.gp64()
                f.mov(arr, Mem(a, disp=part, size=8))
                for i in range(ndim):
                    x = f.gp64()
                    f.mov(x, Mem(arr, disp=8 * i, size=8))
                    f.mov(self.d(f"block{base + i}"), x)
        for name, slot in layout.scalars:
            f.mov(self.d(f"block{slot}"), values[self.index[name]])
        zero = f.gp64()
        f.xor(zero.d, zero.d)
        for _, slot in layout.locals:
            f.mov(self.d(f"block{slot}"), zero)
        f.mov(self.d(f"block{layout.error}"), zero)

    def pointers(self, objs) -> list:
        f, layout = self.f, self.spec.layout
        out = []
        for name, _, _ in layout.arrays[: layout.pointer_args]:
            p = f.gp64()
            f.mov(p, Mem(objs[self.index[name]], disp=DATA, size=8))
            out.append(p)
        while len(out) < 3:
            z = f.gp64()
            f.xor(z.d, z.d)
            out.append(z)
        return out

    def result(self) -> Reg:
        """A new reference to the return value (None, a Python number, or a numpy scalar)."""
        f, spec = self.f, self.spec
        if spec.result is None:
            none = f.gp64()
            f.mov(none, self.d("none"))
            self.ccall("incref", none)
            return none
        name, dt, weak = spec.result
        slot = dict(spec.layout.locals)[name]
        if dt.startswith("float"):
            x = f.xmm()
            if dt == "float64":
                f.movsd(x, self.d(f"block{slot}"))
            else:
                f.cvtss2sd(x, self.d(f"block{slot}", 4))
            obj = self.ccall("fromdouble", double=x)
        else:
            v = f.gp64()
            if dt == "int64":
                f.mov(v, self.d(f"block{slot}"))
            else:
                f.movsxd(v, self.d(f"block{slot}", 4))
            obj = self.ccall("fromlong", v)
        if weak:
            return obj
        done = f.label()
        out = f.gp64()
        f.mov(out, obj)
        f.test(obj, obj)
        f.jz(done)
        typ, zero = f.gp64(), f.gp64()
        f.mov(typ, self.d("result_type"))
        f.xor(zero.d, zero.d)
        scalar = self.ccall("callobj", typ, obj, zero)  # np.float32(x): exact for the value it holds
        f.mov(out, scalar)
        self.ccall("decref", obj)
        f.bind(done)
        return out
