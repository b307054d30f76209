"""Random-program fuzzer for polyjit: random loop kernels, compiled vs plain Python.

Each program is generated from (seed, index) alone, so the same seed gives the same programs. A program is
written to a module file in a temporary directory (polyjit reads source through `inspect`), imported, and run
through polyjit and through its `.py_func` on copies of the same random inputs; results (every array argument
and the returned scalar) must agree bit for bit (NaN == NaN), or within rtol (1e-9 f64, 1e-4 f32) under
`fastmath=True` and for math functions on OpenCL (under fastmath, a program whose outputs move by more than
rtol when its float inputs move by rtol is ill-conditioned: the compiled result must then lie within 4x that
movement, counted as "fastmath-ill-conditioned"; it is still compared bit for bit without fastmath). Each
program also runs under random schedule keywords
(split/tile/order/unroll/vectorize/parallel over its loop names): a legal schedule must give the same
result, an illegal one must raise `polyjit.ScheduleError` (counted, not a failure). Native programs run at
every ISA tier the machine has (POLYJIT_ISA is read when a kernel is compiled; fresh kernel objects are made
per tier). The on-disk cache is disabled (POLYJIT_CACHE=0).

Programs run in worker subprocesses (`-j`), so a crash (signal) in compiled code is caught and attributed to
its program. Each failure is reduced by delta debugging (drop statements, unwrap ifs and loops, replace
expressions by sub-expressions, drop schedule keywords, shrink n) while the failure class persists, and
written as a standalone reproducer `.py` (inputs, observed vs expected in a comment) into --keep DIR.

min/max and `a if c else b` get operands of mixed types in 8% of cases: Python returns the chosen operand
with its own type, so polyjit accepts them only where the use gives the same for either choice (stored
into an array, combined with a numpy value) and raises TypingError elsewhere (counted as "beyond static
types"); the rest wrap the operands in float(). Float accumulators start as np.float64(0.0) rather than 0.0
(a Python float turns float32 at the first float32 term, a run-time type change). Python ints that outgrow
int64 (or an array's int32) are counted as "Python-int overflow", not as failures (compiled code wraps):
returned or stored into an int array, or, where one reaches a float, if Python rerun with every int wrapped to
64 bits (reference_wrapping_ints) gives the compiled result exactly. Under fastmath a result may also differ by
rtol of the largest float Python computed on the way ("fastmath-cancellation": `x - (2.0 + x)` with huge x is
0.0 in Python and -2.0 once reassociated).
The Python reference runs under a time limit (REFERENCE_LIMIT_S): an int that squares itself every iteration
never finishes in Python ("python-int-runaway"; any other timeout fails). Python's 'math domain error' (abs()
of int32's minimum stays negative) is "math-domain": compiled code gives NaN. On AVX-512 CPUs numpy's power
ufunc (`int ** 1.5`) can differ from libm's pow in the last bit: "numpy-simd-pow" within rtol.

Also generated: elif chains, math functions with arguments kept where Python's math raises no domain error
(sin/cos of clamped values, tanh, atan, log of abs + 1, log1p, fabs, expm1, erf, atan2, hypot, copysign),
powers (`** 2`, `** 3`, `abs(x) ** 0.5`, `** 1.5`), `polyjit.prange` loops (a ScheduleError where the loop
carries a dependence counts as a refused schedule), and `tail="separate"` with split factors.
Not generated yet: aliasing arguments (the same array twice), while (unsupported), int()/round()/np.*
calls, bool arrays, 0-d arrays, `schedule=` callables, pyopencl.array arguments, reductions into array
elements across several loops with `unsafe=`, and programs meant to raise UnsupportedError/TypingError.

Usage:
    python tests/fuzz.py --count 200 --seed 1                     # quick, native, all tiers
    python tests/fuzz.py --count 5000 --seed 7 --target all -j 8  # the long campaign (native + opencl)
    python tests/fuzz.py --count 500 --seed 3 --target opencl --keep /tmp/fuzz-failures
Exit status 0 when every program agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import inspect
import itertools
import json
import math  # noqa: F401  (used by generated programs executed here)
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import traceback
import warnings
import weakref

import numpy as np

FLOAT_DT = ("float64", "float32")
INT_DT = ("int64", "int32")
RTOL = {"float64": 1e-9, "float32": 1e-4}


# ======================================================================================= program trees ====

class Expr:
    """fmt with {0}, {1}, ... for the children; a leaf has no children. kind: 'f' float, 'i' int, 'b' bool."""

    def __init__(self, fmt, kids=(), kind="f", math_fn=False):
        self.fmt, self.kids, self.kind, self.math_fn = fmt, list(kids), kind, math_fn

    def render(self):
        return self.fmt.format(*[k.render() for k in self.kids]) if self.kids else self.fmt

    def uses_math(self):
        return self.math_fn or any(k.uses_math() for k in self.kids)

    def shrinks(self):
        """Smaller expressions that could replace this one."""
        for k in self.kids:
            if k.kind == self.kind or (self.kind == "f" and k.kind == "i"):
                yield k
        for n, k in enumerate(self.kids):
            for s in k.shrinks():
                e = copy.copy(self)
                e.kids = list(self.kids)
                e.kids[n] = s
                yield e


def leaf(text, kind="f"):
    return Expr(text, (), kind)


class Stmt:
    pass


class Assign(Stmt):
    def __init__(self, target, op, expr):
        self.target, self.op, self.expr = target, op, expr

    def lines(self, ind):
        return [" " * ind + f"{self.target} {self.op} {self.expr.render()}"]

    def exprs(self):
        return [("expr", self.expr)]


class Loop(Stmt):
    def __init__(self, var, header, body):
        self.var, self.header, self.body = var, header, body

    def lines(self, ind):
        return [" " * ind + f"for {self.var} in {self.header}:"] + render_block(self.body, ind + 4)

    def exprs(self):
        return []


class If(Stmt):
    def __init__(self, cond, body, orelse):
        self.cond, self.body, self.orelse = cond, body, orelse

    def lines(self, ind):
        out = [" " * ind + f"if {self.cond.render()}:"] + render_block(self.body, ind + 4)
        if len(self.orelse) == 1 and isinstance(self.orelse[0], If):  # else: if ... is written elif ...
            out += [" " * ind + "el" + line.lstrip() if k == 0 else line[4:]
                    for k, line in enumerate(self.orelse[0].lines(ind + 4))]
        elif self.orelse:
            out += [" " * ind + "else:"] + render_block(self.orelse, ind + 4)
        return out

    def exprs(self):
        return [("cond", self.cond)]


def render_block(stmts, ind):
    out = []
    for s in stmts:
        out += s.lines(ind)
    return out or [" " * ind + "pass"]


class Program:
    def __init__(self, name, params, arrays, body, ret, n):
        self.name, self.params, self.arrays, self.body, self.ret, self.n = name, params, arrays, body, ret, n

    def source(self):
        lines = ["import math", "", "import numpy as np", "", "import polyjit", "", "",
                 f"def {self.name}({', '.join(self.params)}):"]
        lines += render_block(self.body, 4)
        if self.ret:
            lines.append(f"    return {self.ret}")
        return "\n".join(lines) + "\n"

    def loop_names(self):
        names = []

        def walk(stmts):
            for s in stmts:
                if isinstance(s, Loop):
                    names.append(s.var)
                    walk(s.body)
                elif isinstance(s, If):
                    walk(s.body)
                    walk(s.orelse)
        walk(self.body)
        return names

    def nests(self):
        """Chains of directly nested loops (outer to inner), for order=/tile=."""
        chains = []

        def walk(stmts, chain):
            for s in stmts:
                if isinstance(s, Loop):
                    c = chain + [s.var]
                    chains.append(c)
                    walk(s.body, c)
                elif isinstance(s, If):
                    walk(s.body, chain)
                    walk(s.orelse, chain)
        walk(self.body, [])
        return chains

    def uses_math(self):
        found = []

        def walk(stmts):
            for s in stmts:
                for _, e in s.exprs():
                    found.append(e.uses_math())
                if isinstance(s, Loop):
                    walk(s.body)
                elif isinstance(s, If):
                    walk(s.body)
                    walk(s.orelse)
        walk(self.body)
        return any(found)


# ========================================================================================== generator ====

class Gen:
    """Random program generator. Every array dimension is n (an argument, n >= 3); each loop variable
    carries (lo, hi): its values lie in [lo, n - 1 - hi], so v + c is in bounds for -lo <= c <= hi."""

    def __init__(self, rng: random.Random, max_depth=4):
        self.r = rng
        self.max_depth = max_depth
        self.loop_count = 0
        self.temp_count = 0

    def choice_w(self, items):
        tot = sum(w for _, w in items)
        x = self.r.uniform(0, tot)
        for it, w in items:
            x -= w
            if x <= 0:
                return it
        return items[-1][0]

    # -- programs ---------------------------------------------------------------------------------------
    def program(self, name):
        r = self.r
        self.arrays = {}
        nar = r.randint(1, 4)
        max_rank = r.choice([1, 2, 2, 3])
        for a in "ABCD"[:nar]:
            rank = r.randint(1, max_rank)
            dt = self.choice_w([("float64", 4), ("float32", 3), ("int64", 2), ("int32", 2)])
            self.arrays[a] = (rank, dt)
        if not any(rank == max_rank for rank, _ in self.arrays.values()):
            self.arrays["A"] = (max_rank, self.arrays["A"][1])
        self.has_idx = r.random() < 0.3
        if self.has_idx:
            self.arrays["idx"] = (1, r.choice(INT_DT))
        params = list(self.arrays) + ["n"]
        n = {1: r.randint(3, 14), 2: r.randint(3, 10), 3: r.randint(3, 7)}[max_rank]
        self.acc = None
        body = []
        if r.random() < 0.5:
            self.acc = r.choice(["f", "f", "i"])
            # s = 0.0 (a Python float) turns float32 at the first float32 term in Python, a run-time type
            # change the compiler does not follow (reported); np.float64(0.0) keeps one type.
            # (the compiler now rejects that with TypingError).
            init = ("np.float64(0.0)" if r.random() < 0.7 else "np.float64(0)") if self.acc == "f" else "0"
            if self.acc == "f" and r.random() < 0.4 and all(dt != "float64" for _, dt in self.arrays.values()):
                init = "np.float32(0.0)"  # float32 sums: the vector accumulators' float32 paths
            body.append(Assign("s", "=", leaf(init, self.acc)))
        for _ in range(r.randint(1, 3)):
            if r.random() < 0.15:
                body.append(self.slice_stmt(None))
            else:
                body.append(self.loop({}, 1))
        ret = "s" if self.acc else None
        return Program(name, params, self.arrays, body, ret, n)

    def writable(self):
        return [a for a in self.arrays if a != "idx"]

    # -- loops ------------------------------------------------------------------------------------------
    def header(self, scope):
        r = self.r
        outer = [v for v in scope if not v.startswith("t")]
        kinds = [("n", 3), ("ab", 3), ("step", 1.5), ("neg", 1.5), ("negstep", 1)]
        if outer:
            kinds += [("tri", 2.5), ("tri_up", 1.5), ("from_o", 1), ("to_o", 1)]
        k = self.choice_w(kinds)
        a, b = r.randint(0, 2), r.randint(0, 2)
        n_b = "n" if b == 0 else f"n - {b}"
        if k == "n":
            return ("range(n)" if r.random() < 0.8 else "range(0, n)"), (0, 0)
        if k == "ab":
            return (f"range({a}, {n_b})" if a or r.random() < 0.5 else f"range({n_b})"), (a, b)
        if k == "step":
            return f"range({a}, {n_b}, {r.choice([2, 3])})", (a, b)
        if k in ("neg", "negstep"):
            start = "n - 1" if b == 0 else f"n - {1 + b}"
            return f"range({start}, {a - 1}, {-1 if k == 'neg' else -r.choice([2, 3])})", (a, b)
        o = r.choice(outer)
        lo, hi = scope[o]
        if k == "tri":
            return f"range({o})", (0, 1 + hi)
        if k == "tri_up":
            return f"range({o} + 1, n)", (lo + 1, 0)
        if k == "from_o":
            return f"range({o}, {n_b})", (lo, b)
        return f"range({o} + 1)", (0, hi)

    def loop(self, scope, depth):
        var = "ijklpqru"[self.loop_count] if self.loop_count < 8 else f"v{self.loop_count}"
        self.loop_count += 1
        head, rng = self.header(scope)
        if self.r.random() < 0.08:  # polyjit.prange: a ScheduleError where the loop carries a dependence
            head = "polyjit.p" + head
        inner = dict(scope)
        inner[var] = rng
        body = self.block(inner, depth, {})
        return Loop(var, head, body)

    def block(self, scope, depth, temps):
        r = self.r
        temps = dict(temps)
        out = []
        nstmt = r.randint(1, 3)
        for _ in range(nstmt):
            opts = [("assign", 5), ("temp", 1.5), ("if", 1.5)]
            if self.acc:
                opts.append(("acc", 2))
            if depth < self.max_depth:
                opts.append(("loop", 3 if depth < 2 else 1.5))
            if any(self.arrays[a][0] >= 2 for a in self.writable()):
                opts.append(("rowslice", 0.3))
            k = self.choice_w(opts)
            if k == "assign":
                out.append(self.assign(scope, temps))
            elif k == "temp":
                name = f"t{self.temp_count}"
                self.temp_count += 1
                kind = r.choice(["f", "f", "i"])
                out.append(Assign(name, "=", self.expr(kind, scope, temps, 2)))
                temps[name] = kind
            elif k == "if":
                cond = self.cond(scope, temps)
                body = self.block_simple(scope, temps)
                orelse = self.block_simple(scope, temps) if r.random() < 0.5 else []
                if orelse and r.random() < 0.3:  # elif
                    orelse = [If(self.cond(scope, temps), orelse, self.block_simple(scope, temps)
                                 if r.random() < 0.5 else [])]
                out.append(If(cond, body, orelse))
            elif k == "acc":
                op = r.choice(["+=", "+=", "-=", "="])
                e = self.expr(self.acc, scope, temps, 2)
                if op == "=":
                    e = Expr("{0} + {1}", [leaf("s", self.acc), e], self.acc)
                out.append(Assign("s", op, e))
            elif k == "loop":
                out.append(self.loop(scope, depth + 1))
            else:
                out.append(self.slice_stmt(scope))
        return out

    def block_simple(self, scope, temps):
        out = []
        for _ in range(self.r.randint(1, 2)):
            if self.acc and self.r.random() < 0.3:
                out.append(Assign("s", "+=", self.expr(self.acc, scope, temps, 2)))
            else:
                out.append(self.assign(scope, temps))
        return out

    def assign(self, scope, temps):
        a = self.r.choice(self.writable())
        rank, dt = self.arrays[a]
        kind = "f" if dt in FLOAT_DT else "i"
        op = self.choice_w([("=", 4), ("+=", 2), ("-=", 1), ("*=", 0.5)])
        return Assign(self.ref(a, scope, temps), op, self.expr(kind, scope, temps, 3))

    # -- subscripts -------------------------------------------------------------------------------------
    def sub(self, scope, temps, allow_idx=True):
        r = self.r
        loopvars = [v for v in scope]
        opts = [("const", 1)]
        if loopvars:
            opts += [("var", 8), ("off", 3), ("rev", 1), ("div", 0.7), ("mod", 0.5)]
            if self.has_idx and allow_idx:
                opts.append(("idx", 1.5))
        k = self.choice_w(opts)
        if k == "const":
            return r.choice(["0", "1", "2", "-1", "n - 1"])
        v = r.choice(loopvars)
        lo, hi = scope[v]
        if k == "var":
            return v
        if k == "off":
            c = r.randint(-lo, hi)
            return v if c == 0 else (f"{v} + {c}" if c > 0 else f"{v} - {-c}")
        if k == "rev":
            return f"n - 1 - {v}"
        if k == "div":
            return f"{v} // {r.choice([2, 3])}"
        if k == "mod":
            return f"{v} % {r.choice([2, 3])}" if r.random() < 0.5 else f"({v} * 2) % n"
        return f"idx[{self.sub(scope, temps, allow_idx=False)}]"

    def ref(self, a, scope, temps):
        rank = self.arrays[a][0]
        subs = [self.sub(scope, temps) for _ in range(rank)]
        if rank > 1 and self.r.random() < 0.15:
            return a + "".join(f"[{s}]" for s in subs)
        return f"{a}[{', '.join(subs)}]"

    # -- expressions ------------------------------------------------------------------------------------
    def expr(self, kind, scope, temps, depth):
        r = self.r
        if depth <= 0 or r.random() < 0.3:
            return self.atom(kind, scope, temps)
        ops = [("bin", 6), ("unary", 0.5), ("minmax", 1), ("abs", 0.5), ("ifexp", 0.8)]
        if kind == "f":
            ops += [("div", 1), ("sqrt", 0.6), ("exp", 0.5), ("sq", 0.3), ("fn1", 0.6), ("fn2", 0.3),
                    ("pow", 0.2)]
        else:
            ops += [("idiv", 0.8)]
        k = self.choice_w(ops)
        sub = lambda kk="x": self.expr(kind if kk == "x" else kk, scope, temps, depth - 1)  # noqa: E731
        mixed = lambda: self.expr(kind if kind == "i" or r.random() < 0.7 else "i", scope, temps, depth - 1)  # noqa
        if k == "bin":
            return Expr("{0} " + r.choice(["+", "-", "*", "+", "-"]) + " {1}", [sub(), mixed()], kind)
        if k == "unary":
            return Expr("-{0}", [Expr("({0})", [sub()], kind)], kind)
        if k == "minmax":  # mixed types half the time: accepted where the use hides the type, else TypingError
            fmt = "({0}, {1})" if kind == "i" or r.random() < 0.08 else "(float({0}), float({1}))"
            return Expr(r.choice(["min", "max"]) + fmt, [sub(), mixed()], kind)
        if k == "abs":
            return Expr("abs({0})", [sub()], kind)
        if k == "ifexp":  # as min/max: the chosen operand keeps its own type in Python
            fmt = "({1} if {0} else {2})" if kind == "i" or r.random() < 0.08 else \
                "(float({1}) if {0} else float({2}))"
            return Expr(fmt, [self.cond(scope, temps), sub(), sub()], kind)
        if k == "div":
            return Expr("{0} / (abs({1}) + 1.0)", [sub(), sub()], kind)
        if k == "sqrt":
            return Expr("math.sqrt(abs({0}))", [sub()], kind, math_fn=True)
        if k == "exp":
            return Expr("math.exp(min(max({0}, -3.0), 3.0))", [sub()], kind, math_fn=True)
        if k == "sq":
            return Expr("({0}) ** 2", [sub()], kind, math_fn=True)
        if k == "fn1":  # arguments kept where Python's math raises no domain error (inf, negative logs)
            fmt = r.choice(["math.sin(min(max({0}, -100.0), 100.0))", "math.cos(min(max({0}, -100.0), 100.0))",
                            "math.tanh({0})", "math.atan({0})", "math.log(abs({0}) + 1.0)",
                            "math.log1p(abs({0}))", "math.fabs({0})", "math.expm1(min(max({0}, -3.0), 3.0))",
                            "math.erf({0})", "math.sqrt(abs({0}) + 0.5)"])
            return Expr(fmt, [sub()], kind, math_fn=True)
        if k == "fn2":
            fmt = r.choice(["math.atan2({0}, {1})", "math.hypot({0}, {1})", "math.copysign({0}, {1})"])
            return Expr(fmt, [sub(), sub()], kind, math_fn=True)
        if k == "pow":
            return Expr(r.choice(["abs({0}) ** 0.5", "({0}) ** 3", "abs({0}) ** 1.5"]), [sub()], kind, math_fn=True)
        return Expr("{0} " + r.choice(["//", "%"]) + f" {r.choice([2, 3, 7])}", [sub()], kind)

    def atom(self, kind, scope, temps):
        r = self.r
        opts = [("const", 2)]
        arrs = [a for a, (_, dt) in self.arrays.items() if a != "idx" and (kind == "f" or dt in INT_DT)]
        if arrs:
            opts.append(("arr", 8))
        if scope:
            opts.append(("var", 1.5))
        tk = [t for t, tkind in temps.items() if kind == "f" or tkind == "i"]
        if tk:
            opts.append(("temp", 3))
        if self.acc and (kind == "f" or self.acc == "i"):
            opts.append(("acc", 0.5))
        k = self.choice_w(opts)
        if k == "const":
            if kind == "f":
                return leaf(r.choice(["0.5", "2.0", "1.5", "-1.25", "3.0", "0.1"]), "f")
            return leaf(r.choice(["1", "2", "3", "-2", "5"]), "i")
        if k == "arr":
            a = r.choice(arrs)
            return leaf(self.ref(a, scope, temps), "f" if self.arrays[a][1] in FLOAT_DT else "i")
        if k == "var":
            return leaf(r.choice(list(scope)), "i")
        if k == "temp":
            t = r.choice(tk)
            return leaf(t, temps[t])
        return leaf("s", self.acc)

    def cond(self, scope, temps):
        r = self.r
        vars_ = list(scope)
        opts = [("data", 3)]
        if vars_:
            opts += [("affine", 3), ("parity", 1)]
        k = self.choice_w(opts)
        cmp = r.choice(["<", "<=", ">", ">=", "==", "!="])
        if k == "affine":
            v = r.choice(vars_)
            rhs = r.choice(vars_ + ["n - 2", "2", "n // 2"]) if len(vars_) > 1 or r.random() < 0.5 else "3"
            c = Expr(f"{v} {cmp} {rhs}", [], "b")
        elif k == "parity":
            c = Expr(f"{r.choice(vars_)} % 2 == {r.randint(0, 1)}", [], "b")
        else:
            kind = r.choice(["f", "i"])
            c = Expr("{0} " + cmp + " {1}", [self.expr(kind, scope, temps, 1), self.expr(kind, scope, temps, 1)],
                     "b")
        if r.random() < 0.15:
            c = Expr("{0} " + r.choice(["and", "or"]) + " {1}", [c, self.cond(scope, temps)], "b")
        elif r.random() < 0.05:
            c = Expr("not ({0})", [c], "b")
        return c

    # -- slices -----------------------------------------------------------------------------------------
    def window(self, k, j):
        """Slice text for [j, n - k + j) in one dimension."""
        stop_gap = k - j
        if j == 0 and stop_gap == 0:
            return ":"
        start = "" if j == 0 else str(j)
        stop = "" if stop_gap == 0 else self.r.choice([f"-{stop_gap}", f"n - {stop_gap}"])
        return f"{start}:{stop}"

    def slice_stmt(self, scope):
        """A[w1, w2] op= expr of same-shaped windows. With a loop scope, a row slice A[i, w] of a 2-D+ array."""
        r = self.r
        cands = self.writable()
        row = scope is not None
        if row:
            cands = [a for a in cands if self.arrays[a][0] >= 2]
        a = r.choice(cands)
        rank, dt = self.arrays[a]
        kind = "f" if dt in FLOAT_DT else "i"
        srank = rank - 1 if row else rank
        ks = [r.choice([0, 1, 1, 2]) for _ in range(srank)]
        prefix = []
        if row:
            prefix = [self.sub(scope, {}, allow_idx=False)]

        def win_ref(name, rank_):
            pre = prefix if rank_ > srank else []
            if rank_ > srank and not row:
                return None
            ws = [self.window(kk, r.randint(0, kk)) for kk in ks]
            if row and rank_ == srank + 1:
                pre = [self.sub(scope, {}, allow_idx=False)]
            return f"{name}[{', '.join(pre + ws)}]"

        target = f"{a}[{', '.join(prefix + [self.window(kk, r.randint(0, kk)) for kk in ks])}]"
        same = [b for b, (rk, d) in self.arrays.items() if b != "idx" and rk == rank
                and (kind == "f" or d in INT_DT)]

        def sexpr(d):
            if d <= 0 or r.random() < 0.35:
                if r.random() < 0.25:
                    return leaf(r.choice(["2.0", "0.5", "1.5"]) if kind == "f" else r.choice(["2", "3"]), kind)
                return leaf(win_ref(r.choice(same), rank), kind)
            op = r.choice(["+", "-", "*"])
            return Expr("{0} " + op + " {1}", [sexpr(d - 1), sexpr(d - 1)], kind)
        e = sexpr(2)
        if e.fmt in ("2.0", "0.5", "1.5", "2", "3") and not e.kids:
            e = Expr("{0} * {1}", [leaf(win_ref(a, rank), kind), e], kind)
        return Assign(target, r.choice(["=", "=", "+=", "-="]), e)


# ============================================================================================= inputs ====

def make_inputs(prog: Program, seed, n=None):
    n = prog.n if n is None else n
    g = np.random.default_rng(seed)
    args = []
    layouts = {}
    for a, (rank, dt) in prog.arrays.items():
        shape = (n,) * rank
        lay = g.choice(["C", "C", "C", "T", "step", "rev"])
        if rank == 1 and lay == "T":
            lay = "C"
        layouts[a] = lay
        if a == "idx":
            base = g.integers(0, n, size=shape)
            lay = layouts[a] = "C"
        elif dt in FLOAT_DT:
            base = np.round(g.normal(0, 2, size=shape) * 64) / 64 if g.random() < 0.5 else g.normal(0, 2, size=shape)
        else:
            base = g.integers(-5, 6, size=shape)
        base = base.astype(dt)
        args.append(view(base, lay))
    args.append(n)
    return args, layouts


def view(arr, lay):
    if lay == "T":
        return np.ascontiguousarray(arr.T).T
    if lay == "step":
        big = np.zeros((arr.shape[0] * 2,) + arr.shape[1:], arr.dtype)
        big[::2] = arr
        return big[::2]
    if lay == "rev":
        return np.ascontiguousarray(arr[::-1])[::-1]
    return arr


# ============================================================================================= running ====

def _load_helpers():
    spec = importlib.util.spec_from_file_location("_polyjit_test_helpers",
                                                  os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "helpers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


copy_args = _load_helpers().copy_args


class Outcome:
    def __init__(self, status, cls="", detail=""):
        self.status, self.cls, self.detail = status, cls, detail  # ok | schedule | fail

    def __repr__(self):
        return f"Outcome({self.status}, {self.cls}, {self.detail[:200]!r})"


_MODDIR = None
_MODCOUNT = itertools.count()


def load_function(source, name):
    global _MODDIR
    if _MODDIR is None:
        _MODDIR = tempfile.mkdtemp(prefix="polyjit-fuzz-")
    modname = f"fz_{os.getpid()}_{next(_MODCOUNT)}"
    path = os.path.join(_MODDIR, modname + ".py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return getattr(mod, name)


def _scalar(x):
    return x.item() if isinstance(x, np.generic) else x


def compare(got, exp, got_args, exp_args, rtol_of, floor=1.0):
    """None when equal, else a description. Within rtol, differences below rtol * floor also count as equal."""
    g, e = _scalar(got), _scalar(exp)
    if (g is None) != (e is None):
        return f"return value: compiled {got!r} vs Python {exp!r}"
    if e is not None:
        if isinstance(e, bool) != isinstance(g, bool) or (isinstance(e, float) != isinstance(g, float)):
            return f"return value kind: compiled {type(got).__name__} {got!r} vs Python {type(exp).__name__} {exp!r}"
        dt = exp.dtype.name if isinstance(exp, np.generic) else "float64"
        rtol = rtol_of(dt)
        if not _close(np.asarray(g), np.asarray(e), rtol, floor):
            return f"return value: compiled {got!r} vs Python {exp!r}"
    for k, (x, y) in enumerate(zip(got_args, exp_args)):
        if isinstance(y, np.ndarray):
            if x.dtype != y.dtype or x.shape != y.shape:
                return f"array argument {k}: dtype/shape {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
            if not _close(x, y, rtol_of(y.dtype.name), floor):
                bad = np.argwhere(~_eqmask(x, y, rtol_of(y.dtype.name), floor))
                first = tuple(int(v) for v in bad[0])
                return (f"array argument {k}: {len(bad)} element(s) differ, first at {first}: "
                        f"compiled {x[first]!r} vs Python {y[first]!r}")
    return None


def _eqmask(x, y, rtol, floor=1.0):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind != "f" and y.dtype.kind != "f":
        return x == y
    x, y = x.astype(np.float64), y.astype(np.float64)
    both_nan = np.isnan(x) & np.isnan(y)
    if rtol is None:
        return both_nan | (x == y)
    with np.errstate(all="ignore"):
        scale = max(floor, float(np.nanmax(np.abs(np.where(np.isfinite(y), y, 0)), initial=0.0)))
        close = (x == y) | (np.abs(x - y) <= rtol * np.abs(y) + rtol * scale)
    return both_nan | close


def _close(x, y, rtol, floor=1.0):
    return bool(np.all(_eqmask(x, y, rtol, floor)))


def run_config(fn, args, target, tier, fastmath, sched, tolerant_math):
    """Compile fn with these options (fresh kernel object) and compare with Python. Returns an Outcome."""
    import polyjit
    if tier:  # None: leave POLYJIT_ISA as the caller set it
        os.environ["POLYJIT_ISA"] = tier
    try:
        expected, exp_args, exp_exc = run_reference(fn, args)
    except ReferenceTimeout as e:
        if e.runaway:
            # a Python int that keeps squaring itself (`s += t * t` with t from s) grows without bound: Python
            # never finishes, compiled code wraps at 64 bits (README: fixed-width wrap-around)
            return Outcome("diverge", "python-int-runaway", str(e))
        return Outcome("fail", "python-timeout", str(e))
    got_args = copy_args(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k = polyjit.kernel(fn, target=target, fastmath=fastmath, **sched)
            got = k(*got_args)
    except polyjit.ScheduleError as e:
        if sched or "polyjit.prange(" in inspect.getsource(fn):
            return Outcome("schedule", "ScheduleError", str(e).splitlines()[0] if str(e) else "")
        return Outcome("fail", "ScheduleError without hints", _short(e))
    except (polyjit.UnsupportedError, polyjit.TypingError) as e:
        if isinstance(e, polyjit.TypingError) and any(
                m in str(e) for m in ("would depend on the values", "precision would change",
                                      "depends on that type")):
            # Python's types change with the values here; polyjit says so (a clear error, not counted)
            return Outcome("diverge", "dynamic-type", _short(e))
        return Outcome("fail", f"rejected:{type(e).__name__}", _short(e))
    except Exception as e:  # noqa: BLE001
        if exp_exc is not None and type(e) is type(exp_exc):
            return Outcome("ok", "same exception", type(e).__name__)
        if exp_exc is not None and isinstance(e, IndexError) and isinstance(exp_exc, IndexError):
            return Outcome("ok", "same exception", type(e).__name__)
        return Outcome("fail", f"exception:{type(e).__name__}", _short(e) + (
            f"  [Python raised {type(exp_exc).__name__}: {exp_exc}]" if exp_exc else "  [Python ran]"))
    if exp_exc is not None:
        if isinstance(exp_exc, OverflowError) and ("out of bounds" in str(exp_exc)
                                                    or "too large to convert" in str(exp_exc)):
            # Python ints (loop variables, constants, min/max results) are unbounded and overflow when
            # stored into a fixed-width array; compiled code wraps. A known divergence of the semantics,
            # not counted as a failure.
            return Outcome("diverge", "python-int-overflow", str(exp_exc))
        if isinstance(exp_exc, OverflowError) and "out of range" in str(exp_exc):
            # a Python float's ** raises where numpy (and polyjit) give inf: documented in the README
            return Outcome("diverge", "python-float-pow-overflow", str(exp_exc))
        if isinstance(exp_exc, ValueError) and str(exp_exc) == "math domain error":
            # math.sqrt/log of a value outside the domain (abs() of int32's minimum stays negative): compiled
            # code gives NaN, as numpy and Numba do (README: math functions)
            return Outcome("diverge", "math-domain", str(exp_exc))
        return Outcome("fail", f"missing exception:{type(exp_exc).__name__}", f"Python raised {exp_exc!r}")
    loose = fastmath or tolerant_math

    # float32 intermediates (relaxed under fastmath) bound the accuracy of float64 results too
    f32 = any(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in args)

    def near(dt):  # the stated tolerance (fastmath, and the known last-bit divergences below)
        return RTOL["float32"] if f32 else RTOL.get(dt, 1e-9)

    def rtol_of(dt):
        return near(dt) if loose else None
    if type(expected) is int and not -2**63 <= expected < 2**63:
        return Outcome("diverge", "python-int-overflow", f"Python returned an int of {expected.bit_length()} bits")
    diff = compare(got, expected, got_args, exp_args, rtol_of)
    if diff and target == "opencl" and fastmath and not _all_finite(expected, exp_args):
        # -cl-fast-relaxed-math lets the OpenCL compiler assume finite values (README: fastmath)
        return Outcome("diverge", "opencl-fastmath-nonfinite", diff)
    if diff and loose and _ill_conditioned(fn, args, got, expected, got_args, exp_args, rtol_of):
        return Outcome("diverge", "fastmath-ill-conditioned", diff)
    if diff and loose:
        scale = intermediate_scale(fn, args)
        if scale > 1.0 and not compare(got, expected, got_args, exp_args, rtol_of, floor=scale):
            # reassociation (`x - (2.0 + x)` -> -2.0) changes a result by rtol of the largest terms that
            # cancelled in it, here far larger than the result itself
            return Outcome("diverge", "fastmath-cancellation", f"{diff} (intermediates up to {scale:.3g})")
    if diff and not loose and "math.hypot(" in inspect.getsource(fn):
        # CPython computes math.hypot with its own algorithm; polyjit calls libm's hypot (as np.hypot does),
        # which differs in the last bit now and then (README: math functions)
        if not compare(got, expected, got_args, exp_args, near) or _ill_conditioned(
                fn, args, got, expected, got_args, exp_args, near):
            return Outcome("diverge", "libm-hypot", diff)
    if diff and not loose and numpy_simd_math() and _FRACTIONAL_POWER.search(inspect.getsource(fn)):
        # on AVX-512 CPUs numpy computes `int ** float` (its power ufunc) with its own SIMD routine, which can
        # differ from libm's pow (what polyjit calls) in the last bit (README: math functions)
        if not compare(got, expected, got_args, exp_args, near):
            return Outcome("diverge", "numpy-simd-pow", diff)
    if diff:
        wrapped = reference_wrapping_ints(fn, args)
        if wrapped is not None and not compare(got, wrapped[0], got_args, wrapped[1], rtol_of):
            # a Python int outgrew int64 inside the program (`s = 2 * s - l`, `s * s`) and reached the results
            # through a float; Python with every int wrapped to 64 bits gives what compiled code gives
            # (README: fixed-width integer wrap-around)
            return Outcome("diverge", "python-int-overflow", "a Python int outgrew int64: " + diff)
    if diff:
        return Outcome("fail", "mismatch", diff)
    return Outcome("ok")


_FRACTIONAL_POWER = re.compile(r"\*\*\s*\(?\s*\d*\.\d*[1-9]")
REFERENCE_LIMIT_S = 20.0  # the plain-Python run of a program takes milliseconds; minutes mean it never ends
_TIMED_OUT = weakref.WeakKeyDictionary()  # fn -> its ReferenceTimeout (rerun configurations don't wait again)


class ReferenceTimeout(BaseException):
    """The plain-Python run outlived REFERENCE_LIMIT_S (a BaseException: the program's own exceptions are
    caught as Python's result). `runaway`: a local int had grown past 4096 bits when time ran out."""

    def __init__(self, message, runaway):
        super().__init__(message)
        self.runaway = runaway


def run_reference(fn, args, limit=None):
    """Python's result on copies of args: (returned value or None, the copies, the exception or None).

    Runs under a wall-clock limit where a timer signal can reach it (the main thread): a program whose Python
    ints square themselves would otherwise hang its worker."""
    if fn in _TIMED_OUT:
        raise _TIMED_OUT[fn]
    limit = REFERENCE_LIMIT_S if limit is None else limit
    exp_args = copy_args(args)
    timed = threading.current_thread() is threading.main_thread()

    def on_alarm(signum, frame):
        big = sorted(k for f in _frames(frame) if f.f_code is fn.__code__
                     for k, v in f.f_locals.items() if type(v) is int and v.bit_length() > 4096)
        raise ReferenceTimeout(f"Python ran over {limit:g} s" + (f"; ints of > 4096 bits: {', '.join(big)}"
                                                                 if big else ""), bool(big))
    old = signal.signal(signal.SIGALRM, on_alarm) if timed else None
    try:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, limit)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return fn(*exp_args), exp_args, None
            except Exception as e:  # noqa: BLE001
                return None, exp_args, e
    except ReferenceTimeout as e:
        _TIMED_OUT[fn] = e
        raise
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


class _Observe(ast.NodeTransformer):
    """Passes every arithmetic and call result, and every augmented assignment's new value, through
    `_pj_hook(...)` (which returns the value to use)."""

    def visit_BinOp(self, node):
        return self._hooked(self.generic_visit(node))

    visit_UnaryOp = visit_Call = visit_BinOp

    def visit_AugAssign(self, node):
        node = self.generic_visit(node)
        if not isinstance(node.target, ast.Name):
            return node
        name = node.target.id
        again = ast.Assign([ast.Name(name, ast.Store())], self._hooked(ast.Name(name, ast.Load())))
        return [node, ast.copy_location(again, node)]

    @staticmethod
    def _hooked(node):
        return ast.copy_location(ast.Call(ast.Name("_pj_hook", ast.Load()), [node], []), node)


def _observed(fn, hook):
    """fn recompiled from its source with every intermediate value passed through hook."""
    tree = ast.fix_missing_locations(_Observe().visit(ast.parse(textwrap.dedent(inspect.getsource(fn)))))
    env = dict(fn.__globals__, _pj_hook=hook)
    exec(compile(tree, inspect.getsourcefile(fn) or "<fuzz>", "exec"), env)
    return env[fn.__name__]


def intermediate_scale(fn, args) -> float:
    """The largest finite magnitude of any float value plain Python computes on copies of args: under
    fastmath, reassociation may change a result by rtol of the terms it cancelled, not of the result."""
    largest = [0.0]

    def see(v):
        if isinstance(v, (float, np.floating, np.ndarray)) and np.asarray(v).dtype.kind == "f":
            a = np.asarray(v, np.float64)
            with np.errstate(all="ignore"):
                finite = np.abs(a[np.isfinite(a)])
            if finite.size:
                largest[0] = max(largest[0], float(finite.max()))
        return v
    try:
        run_reference(_observed(fn, see), args)
    except ReferenceTimeout:
        pass
    return largest[0]


def reference_wrapping_ints(fn, args):
    """Python's (result, argument copies) with every int computed wrapped to int64, as compiled code
    computes it; None where no int left int64's range (or Python raised or ran out of time)."""
    escaped = []

    def wrap(v):
        if type(v) is int and not -2**63 <= v < 2**63:
            escaped.append(v)
            return (v + 2**63) % 2**64 - 2**63
        return v
    try:
        result, exp_args, exc = run_reference(_observed(fn, wrap), args)
    except ReferenceTimeout:
        return None
    return (result, exp_args) if escaped and exc is None else None


def _frames(frame):
    while frame is not None:
        yield frame
        frame = frame.f_back


def numpy_simd_math() -> bool:
    """Whether numpy dispatches its float ufuncs to its AVX-512 routines on this CPU."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return bool(feats.get("AVX512_SKX"))


def _ill_conditioned(fn, args, got, expected, got_args, exp_args, rtol_of, tries=3) -> bool:
    """Whether the program amplifies rounding so much that no fixed rtol can judge a reassociated result.

    Python runs again on float inputs perturbed by a relative rtol. An output array that then moves by more
    than rtol (of its largest magnitude) comes from an ill-conditioned program (cancelling recurrences,
    branches on rounded values); its compiled result is accepted if it lies, normwise, within 4x the largest
    such movement. A wrong value in a well-conditioned program stays a failure, and every program is also
    compared bit for bit without fastmath."""
    rng = np.random.default_rng(12345)
    spread = [0.0] * (1 + len(exp_args))
    for _ in range(tries):
        pert = copy_args(args)
        for x in pert:
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size:
                x[...] = x * (1 + rtol_of(x.dtype.name) * rng.uniform(-1, 1, x.shape))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                moved = fn(*pert)
            except Exception:  # noqa: BLE001 - a perturbation that raises says nothing about rounding
                return False
        for k, (m, y) in enumerate(zip([moved, *pert], [expected, *exp_args])):
            if _is_float(y):
                spread[k] = max(spread[k], _distance(m, y))
    for k, (g, y) in enumerate(zip([got, *got_args], [expected, *exp_args])):
        if not _is_float(y) or _close(g, y, rtol_of(np.asarray(y).dtype.name)):
            continue
        yv = np.asarray(y, np.float64)
        scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(yv), yv, 0)), initial=0.0)))
        if not (spread[k] > rtol_of(np.asarray(y).dtype.name) * scale and _distance(g, y) <= 4 * spread[k]):
            return False
    return True


def _is_float(y) -> bool:
    return isinstance(y, (np.ndarray, np.floating, float)) and np.asarray(y).dtype.kind == "f"


def _distance(x, y) -> float:
    """Largest element-wise |x - y| (equal values, NaN == NaN, count 0; a non-finite difference is inf)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    with np.errstate(all="ignore"):
        d = np.where((x == y) | (np.isnan(x) & np.isnan(y)), 0.0, np.abs(x - y))
    return float(np.max(np.where(np.isnan(d), np.inf, d), initial=0.0))


def _all_finite(expected, exp_args) -> bool:
    values = [np.asarray(x, np.float64) for x in [expected, *exp_args]
              if isinstance(x, (np.ndarray, np.floating, float)) and np.asarray(x).dtype.kind == "f"]
    return all(bool(np.all(np.isfinite(v))) for v in values)


def _short(e):
    tb = traceback.extract_tb(e.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}{where}"


def random_schedule(rng: random.Random, prog: Program):
    sched = _random_keywords(rng, prog)
    split = [k for k in ("split", "tile", "unroll", "vectorize") if isinstance(sched.get(k), dict)]
    if split and rng.random() < 0.3:  # full tiles in nests of their own (the order check of lowering/tails.py)
        names = sorted({v for k in split for v in sched[k]})
        sched["tail"] = "separate" if rng.random() < 0.5 else {rng.choice(names): "separate"}
    return sched


def _random_keywords(rng: random.Random, prog: Program):
    loops = prog.loop_names()
    if not loops:
        return {}
    nests = prog.nests()
    kw = rng.choice(["split", "tile", "order", "unroll", "vectorize", "parallel", "split+unroll",
                     "parallel+tile", "parallel", "vectorize", "groups"])
    v = rng.choice(loops)
    f = rng.choice([2, 3, 4, 8])
    if kw == "split":
        return {"split": {v: f}}
    if kw == "tile":
        deep = [c for c in nests if len(c) >= 2]
        if deep:
            c = rng.choice(deep)
            return {"tile": {c[-2]: f, c[-1]: rng.choice([2, 3, 4])}}
        return {"tile": {v: f}}
    if kw == "order":
        deep = [c for c in nests if len(c) >= 2]
        if not deep:
            return {"split": {v: f}}
        c = rng.choice(deep)
        perm = list(c)
        while perm == list(c):
            rng.shuffle(perm)
        return {"order": tuple(perm)}
    if kw == "unroll":
        return {"unroll": v if rng.random() < 0.5 else {v: f}}
    if kw == "vectorize":
        return {"vectorize": v if rng.random() < 0.5 else {v: rng.choice([2, 4, 8])}}
    if kw == "parallel":
        return {"parallel": v}
    if kw == "split+unroll":
        return {"split": {v: f}, "unroll": f"{v}_inner"}
    if kw == "groups":  # OpenCL work-groups (both halves parallel); r > 1: r elements per work-item, unrolled
        deep = [c for c in nests if len(c) >= 2]
        dims = list(rng.choice(deep)[-2:]) if deep and rng.random() < 0.5 else [v]
        r = rng.choice([1, 2, 3])
        if r == 1:
            return {"tile": {d: f for d in dims}, "parallel": tuple(f"{d}_{h}" for h in ("outer", "inner")
                                                                     for d in dims)}
        return {"split": {d: r * f for d in dims}, "tile": {f"{d}_inner": f for d in dims},
                "order": tuple(f"{d}_{h}" for h in ("outer", "inner_inner", "inner_outer") for d in dims),
                "unroll": tuple(f"{d}_inner_outer" for d in dims),
                "parallel": tuple(f"{d}_outer" for d in dims) + tuple(f"{d}_inner_inner" for d in dims)}
    return {"tile": {v: f}, "parallel": f"{v}_outer"}


def tiers():
    from polyjit.asm.cpu import available_tiers
    return list(available_tiers())


def case_configs(rng, prog, target, nsched, with_tiers=True):
    """The configurations (target, tier, fastmath, sched) one program runs under."""
    cfgs = []
    targets = ["native", "opencl"] if target == "all" else [target]
    for t in targets:
        tl = (tiers() if with_tiers else [None]) if t == "native" else [None]
        for tier in tl:
            cfgs.append((t, tier, False, {}))
        tier = tl[-1]
        cfgs.append((t, tier, True, {}))
        for _ in range(nsched):
            cfgs.append((t, rng.choice(tl), rng.random() < 0.2, random_schedule(rng, prog)))
    return cfgs


def program_for(seed, index, max_depth=4):
    rng = random.Random(f"polyjit-fuzz:{seed}:{index}")
    prog = Gen(rng, max_depth).program(f"fz{index}")
    return prog, rng


def run_program(seed, index, target, nsched, with_tiers=True):
    """Run program `index`: a list of (config, Outcome)."""
    prog, rng = program_for(seed, index)
    src = prog.source()
    fn = load_function(src, prog.name)
    args, _ = make_inputs(prog, rng.randrange(2**32))
    results = []
    for cfg in case_configs(rng, prog, target, nsched, with_tiers):
        t, tier, fm, sched = cfg
        out = run_config(fn, args, t, tier, fm, sched, tolerant_math=(t == "opencl" and prog.uses_math()))
        results.append((cfg, out))
    return prog, args, results


# ============================================================================================= reducing ====

def stmt_paths(stmts, prefix=()):
    for n, s in enumerate(stmts):
        yield prefix + (n,), s
        if isinstance(s, Loop):
            yield from stmt_paths(s.body, prefix + (n, "body"))
        elif isinstance(s, If):
            yield from stmt_paths(s.body, prefix + (n, "body"))
            yield from stmt_paths(s.orelse, prefix + (n, "orelse"))


def get_list(stmts, path):
    lst = stmts
    for k in range(0, len(path) - 1, 2):
        lst = getattr(lst[path[k]], path[k + 1])
    return lst


def program_variants(prog: Program):
    """Smaller programs: drop a statement, unwrap an if/loop body, shrink an expression, drop the return."""
    def with_body(fn):
        p = copy.deepcopy(prog)
        fn(p)
        return p
    paths = list(stmt_paths(prog.body))
    for path, s in paths:
        def drop(p, path=path):
            lst = get_list(p.body, path)
            del lst[path[-1]]
        yield with_body(drop)
    for path, s in paths:
        if isinstance(s, If):
            for part in ("body", "orelse"):
                def unwrap(p, path=path, part=part):
                    lst = get_list(p.body, path)
                    lst[path[-1]:path[-1] + 1] = getattr(lst[path[-1]], part)
                yield with_body(unwrap)
        if isinstance(s, Loop):
            for h in ("range(n)", "range(1)", "range(2)"):
                if s.header != h:
                    def rehead(p, path=path, h=h):
                        get_list(p.body, path)[path[-1]].header = h
                    yield with_body(rehead)
    for path, s in paths:
        for attr, e in s.exprs():
            for smaller in e.shrinks():
                def shrink(p, path=path, attr=attr, smaller=smaller):
                    setattr(get_list(p.body, path)[path[-1]], attr, copy.deepcopy(smaller))
                yield with_body(shrink)
    if prog.ret:
        p = copy.deepcopy(prog)
        p.ret = None
        yield p


def reduce_case(prog, seed_inputs, cfg, cls, max_tries=250, isolated=False):
    """Greedy delta debugging: keep any smaller variant whose failure class stays `cls`."""
    t, tier, fm, sched = cfg
    tries = [0]

    def fails(p, n, fm, sched):
        tries[0] += 1
        if tries[0] > max_tries:
            return None
        if isolated:
            o = run_isolated(p, seed_inputs, n, (t, tier, fm, sched))
        else:
            try:
                fn = load_function(p.source(), p.name)
                args, _ = make_inputs(p, seed_inputs, n)
                o = run_config(fn, args, t, tier, fm, sched,
                               tolerant_math=(t == "opencl" and p.uses_math()))
            except Exception as e:  # noqa: BLE001
                return None if tries[0] else e
        return o if (o.status == "fail" and o.cls == cls) else None

    n = prog.n
    best = fails(prog, n, fm, sched)
    if best is None:  # flaky: keep as it is
        return prog, n, fm, sched, None
    changed = True
    pos = 0
    while changed and tries[0] <= max_tries:
        changed = False
        # options first: no schedule, no fastmath, smaller n
        for key in list(sched):
            s2 = {k: v for k, v in sched.items() if k != key}
            o = fails(prog, n, fm, s2)
            if o:
                sched, best, changed = s2, o, True
        if fm:
            o = fails(prog, n, False, sched)
            if o:
                fm, best, changed = False, o, True
        for n2 in range(3, n):
            o = fails(prog, n2, fm, sched)
            if o:
                n, best, changed = n2, o, True
                break
        variants = list(program_variants(prog))
        order = list(range(pos, len(variants))) + list(range(0, min(pos, len(variants))))
        for vi in order:
            p = variants[vi]
            if tries[0] > max_tries:
                break
            if sched and not all(_sched_names_ok(sched, p)):
                continue
            o = fails(p, n, fm, sched)
            if o:
                prog, best, changed, pos = p, o, True, vi
                break
    return prog, n, fm, sched, best


def _sched_names_ok(sched, p):
    names = set(p.loop_names())
    for k, v in sched.items():
        vals = [v] if isinstance(v, str) else list(v)
        for name in vals:
            yield name.replace("_outer", "").replace("_inner", "") in names


class _IsoServer:
    """A subprocess running configurations one JSON line at a time; restarted when it dies (a crash)."""
    proc = None

    @classmethod
    def ask(cls, payload):
        if cls.proc is None or cls.proc.poll() is not None:
            cls.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--run-one"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
        try:
            cls.proc.stdin.write(payload + "\n")
            cls.proc.stdin.flush()
            line = cls.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            rc = cls.proc.wait()
            cls.proc = None
            return Outcome("fail", "crash", f"process died with status {rc}")
        d = json.loads(line)
        return Outcome(d["status"], d["cls"], d["detail"])


def run_isolated(prog, seed_inputs, n, cfg):
    """Run one configuration in a subprocess (for crashes)."""
    t, tier, fm, sched = cfg
    payload = json.dumps({"src": prog.source(), "name": prog.name, "arrays": prog.arrays, "n": n,
                          "seed": seed_inputs, "cfg": [t, tier, fm, _json_sched(sched)],
                          "math": prog.uses_math()})
    return _IsoServer.ask(payload)


def _json_sched(s):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()}


def _unjson_sched(s):
    return {k: (tuple(v) if k in ("order", "parallel") and isinstance(v, list) else v) for k, v in s.items()}


def run_one_stdin():
    for line in sys.stdin:
        try:
            o = _run_one(json.loads(line))
        except Exception as e:  # noqa: BLE001  (e.g. a reduced program that no longer compiles in Python)
            o = Outcome("error", "harness", _short(e))
        print(json.dumps({"status": o.status, "cls": o.cls, "detail": o.detail}), flush=True)


def _run_one(d):
    p = Program(d["name"], [], {k: tuple(v) for k, v in d["arrays"].items()}, [], None, d["n"])
    fn = load_function(d["src"], d["name"])
    args, _ = make_inputs(p, d["seed"], d["n"])
    t, tier, fm, sched = d["cfg"]
    return run_config(fn, args, t, tier, fm, _unjson_sched(sched), tolerant_math=(t == "opencl" and d["math"]))


# ======================================================================================== reproducers ====

def reproducer_text(prog, n, seed_inputs, cfg, outcome, orig):
    t, tier, fm, sched = cfg
    args, layouts = make_inputs(prog, seed_inputs, n)
    np.set_printoptions(threshold=100000, floatmode="unique", linewidth=110)
    lines = ['"""polyjit fuzz reproducer.', "",
             f"Found by: python tests/fuzz.py {orig}", f"Class: {outcome.cls}",
             f"Configuration: target={t!r} POLYJIT_ISA={tier!r} fastmath={fm} schedule={sched!r}", "",
             "Observed vs expected:", f"    {outcome.detail}", '"""', "", "import math", "import os", "",
             "os.environ['POLYJIT_CACHE'] = '0'"]
    if tier:
        lines.append(f"os.environ['POLYJIT_ISA'] = {tier!r}")
    lines += ["", "import numpy as np", "import polyjit", "", ""]
    src = prog.source().split("\n")
    body = "\n".join(src[src.index(next(s for s in src if s.startswith("def "))):])
    lines.append(body.rstrip())
    lines += ["", "", "def inputs():", "    nan, inf = np.nan, np.inf"]
    lines.append("    args = []")
    for (a, (rank, dt)), x in zip(prog.arrays.items(), args):
        arr = np.array(x)
        lines.append(f"    base = np.array({np.array2string(arr, separator=', ')}, dtype=np.{dt})"
                     .replace("\n", "\n" + " " * 8))
        lay = layouts[a]
        if lay == "T":
            lines.append("    base = np.ascontiguousarray(base.T).T  # Fortran order")
        elif lay == "step":
            lines.append("    big = np.zeros((base.shape[0] * 2,) + base.shape[1:], base.dtype); big[::2] = base; "
                         "base = big[::2]  # strided")
        elif lay == "rev":
            lines.append("    base = np.ascontiguousarray(base[::-1])[::-1]  # negative stride")
        lines.append("    args.append(base)")
    lines.append(f"    args.append({n})")
    lines.append("    return args")
    lines += ["", "", "if __name__ == '__main__':",
              f"    k = polyjit.kernel({prog.name}, target={t!r}, fastmath={fm}"
              + "".join(f", {k}={v!r}" for k, v in sched.items()) + ")",
              "    a1, a2 = inputs(), inputs()",
              "    with np.errstate(all='ignore'):",
              f"        expected = {prog.name}(*a2)",
              "    got = k(*a1)",
              "    print('return:', got, 'expected:', expected)",
              "    for n_, (x, y) in enumerate(zip(a1, a2)):",
              "        if isinstance(x, np.ndarray) and not np.array_equal(x, y, equal_nan=x.dtype.kind == 'f'):",
              "            print(f'argument {n_} differs:\\n  got      {x!r}\\n  expected {y!r}')", ""]
    return "\n".join(lines)


# =========================================================================================== workers ====

def worker(seed, start, count, target, nsched, with_tiers):
    """Run programs [start, start+count), one JSON line per program (and a 'begin' line before each)."""
    for idx in range(start, start + count):
        print(json.dumps({"begin": idx}), flush=True)
        try:
            prog, args, results = run_program(seed, idx, target, nsched, with_tiers)
            res = [{"cfg": [c[0], c[1], c[2], _json_sched(c[3])], "status": o.status, "cls": o.cls,
                    "detail": o.detail} for c, o in results]
        except Exception as e:  # noqa: BLE001  (a generator/harness error)
            res = [{"cfg": None, "status": "fail", "cls": "harness", "detail": _short(e)}]
        print(json.dumps({"index": idx, "results": res}), flush=True)


def run_campaign(seed, count, target, nsched=2, jobs=1, with_tiers=True, log=print, start=0):
    """Run programs in worker subprocesses; returns (stats, failures[(index, cfg, cls, detail)])."""
    pending = list(range(start, start + count))
    chunks = [pending[k::jobs] for k in range(jobs)]
    stats = {"programs": 0, "configs": 0, "agree": 0, "schedule": 0, "diverge": 0, "fail": 0}
    failures = []

    def spawn(indices):
        # contiguous ranges per worker: restart after a crash from the next index
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", "--seed", str(seed),
                                 "--indices", ",".join(map(str, indices)), "--target", target,
                                 "--nsched", str(nsched)] + ([] if with_tiers else ["--no-tiers"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import selectors
    sel = selectors.DefaultSelector()
    state = {}
    for ch in chunks:
        if ch:
            p = spawn(ch)
            state[p] = {"todo": list(ch), "cur": None}
            sel.register(p.stdout, selectors.EVENT_READ, p)
    while state:
        for key, _ in sel.select():
            p = key.data
            line = p.stdout.readline()
            st = state[p]
            if not line:
                sel.unregister(p.stdout)
                rc = p.wait()
                err = p.stderr.read()
                del state[p]
                if st["cur"] is not None:  # died inside a program
                    idx = st["cur"]
                    stats["programs"] += 1
                    stats["fail"] += 1
                    failures.append((idx, None, "crash", f"worker died with status {rc}: {err[-500:]}"))
                    log(f"program {idx}: CRASH (status {rc})")
                    rest = [i for i in st["todo"] if i != idx]
                    if rest:
                        q = spawn(rest)
                        state[q] = {"todo": rest, "cur": None}
                        sel.register(q.stdout, selectors.EVENT_READ, q)
                continue
            d = json.loads(line)
            if "begin" in d:
                st["cur"] = d["begin"]
                continue
            st["cur"] = None
            st["todo"].remove(d["index"])
            stats["programs"] += 1
            bad = False
            for r in d["results"]:
                stats["configs"] += 1
                if r["status"] == "ok":
                    stats["agree"] += 1
                elif r["status"] == "schedule":
                    stats["schedule"] += 1
                elif r["status"] == "diverge":
                    stats["diverge"] += 1
                    kinds = stats.setdefault("diverge_kinds", {})
                    kinds[r["cls"]] = kinds.get(r["cls"], 0) + 1
                else:
                    bad = True
                    cfg = r["cfg"] and (r["cfg"][0], r["cfg"][1], r["cfg"][2], _unjson_sched(r["cfg"][3]))
                    failures.append((d["index"], cfg, r["cls"], r["detail"]))
            if bad:
                stats["fail"] += 1
                log(f"program {d['index']}: FAIL " + "; ".join(
                    f"{r['cls']}" for r in d["results"] if r["status"] == "fail"))
    return stats, failures


def main(argv=None):
    os.environ.setdefault("POLYJIT_CACHE", "0")  # thousands of programs: keep them out of the disk cache
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first program index")
    ap.add_argument("--target", default="native", choices=["native", "opencl", "all"])
    ap.add_argument("--keep", default="fuzz-failures")
    ap.add_argument("--nsched", type=int, default=2, help="random schedules per program and target")
    ap.add_argument("-j", "--jobs", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--no-tiers", action="store_true", help="native: only the default ISA tier")
    ap.add_argument("--no-reduce", action="store_true")
    ap.add_argument("--max-reduce", type=int, default=20, help="reduce at most this many failures")
    ap.add_argument("--show", type=int, help="print program INDEX and exit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--indices", help=argparse.SUPPRESS)
    ap.add_argument("--run-one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.run_one:
        run_one_stdin()
        return 0
    if a.worker:
        for idx in map(int, a.indices.split(",")):
            worker(a.seed, idx, 1, a.target, a.nsched, not a.no_tiers)
        return 0
    if a.show is not None:
        prog, rng = program_for(a.seed, a.show)
        print(prog.source())
        return 0
    stats, failures = run_campaign(a.seed, a.count, a.target, a.nsched, a.jobs, not a.no_tiers,
                                   log=lambda s: print(s, flush=True), start=a.start)
    by_class = {}
    for idx, cfg, cls, detail in failures:
        by_class.setdefault(cls, []).append((idx, cfg, detail))
    print(f"\nprograms {stats['programs']}, configurations {stats['configs']}: agree {stats['agree']}, "
          f"ScheduleError {stats['schedule']}, known divergences (not counted) {stats['diverge']}, "
          f"failing programs {stats['fail']}")
    if stats.get("diverge_kinds"):
        print("  known divergences: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["diverge_kinds"].items())))
    for cls, items in sorted(by_class.items()):
        print(f"  {cls}: {len(items)} configuration(s), programs {sorted({i for i, _, _ in items})[:20]}")
        print(f"      e.g. {items[0][2][:300]}")
    if failures and not a.no_reduce:
        os.makedirs(a.keep, exist_ok=True)
        done = set()
        nred = 0
        for idx, cfg, cls, detail in failures:
            if (idx, cls) in done or nred >= a.max_reduce:
                continue
            done.add((idx, cls))
            nred += 1
            prog, rng = program_for(a.seed, idx)
            seed_inputs = rng.randrange(2**32)
            if cfg is None:  # crash: find the configuration in a subprocess
                cfgs = case_configs(rng, prog, a.target, a.nsched, not a.no_tiers)
                cfg = next((c for c in cfgs if run_isolated(prog, seed_inputs, prog.n, c).cls == "crash"), None)
                if cfg is None:
                    print(f"program {idx}: crash did not reproduce in isolation")
                    continue
            red, n, fm, sched, out = reduce_case(prog, seed_inputs, cfg, cls, isolated=(cls == "crash"))
            if out is None:
                out = Outcome("fail", cls, detail)
                print(f"program {idx}: {cls} did not reproduce in reduction; writing it unreduced")
            name = f"seed{a.seed}_prog{idx}_{_slug(cls)}.py"
            path = os.path.join(a.keep, name)
            with open(path, "w") as f:
                f.write(reproducer_text(red, n, seed_inputs, (cfg[0], cfg[1], fm, sched), out,
                                        f"--seed {a.seed} --start {idx} --count 1 --target {cfg[0]}"))
            print(f"wrote {path}")
    return 1 if failures else 0


def _slug(s):
    return "".join(c if c.isalnum() else "_" for c in s)[:40]


if __name__ == "__main__":
    sys.exit(main())
