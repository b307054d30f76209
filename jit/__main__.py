"""The command line: `python -m polyjit` or `polyjit`.

    polyjit cache info | list | clear
    polyjit inspect FILE.py:FUNC [--target native|opencl] [--types float64[:],int64,...]
    polyjit demo
"""

from __future__ import annotations

import argparse
import sys
import time


def _cache(action: str) -> int:
    from .cache import Cache
    store = Cache()
    entries = store.entries()
    if action == "info":
        total = sum(s for _, s, _ in entries)
        print(f"cache directory: {store.path}")
        print(f"{len(entries)} entries, {total / 1024:.1f} KiB")
    elif action == "list":
        for path, size, used in sorted(entries, key=lambda e: -e[2]):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(used))}  {size:8d}  {path}")
    else:
        print(f"removed {store.clear()} entries from {store.path}")
    return 0


def example_argument(spec: str):
    """An example argument of the type `spec`: float64, int64, float (a Python float), float32[:,:], ..."""
    import numpy as np
    spec = spec.strip()
    if spec in ("float", "int", "bool"):
        return {"float": 1.0, "int": 8, "bool": True}[spec]
    if "[" in spec:
        dtype, dims = spec.split("[", 1)
        ndim = dims.count(":")
        return np.zeros((8,) * ndim, dtype=dtype)
    return np.dtype(spec).type(1)


def _inspect(target: str, types: str | None, where: str) -> int:
    import importlib.util

    import polyjit
    path, _, name = where.rpartition(":")
    spec = importlib.util.spec_from_file_location("_polyjit_inspected", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    fn = getattr(module, name)
    fn = getattr(fn, "py_func", fn)
    k = polyjit.kernel(fn, target=target, cache=False)
    if types:
        args = [example_argument(t) for t in types.split(",")] if "[" not in types else \
            [example_argument(t) for t in _split_types(types)]
    else:
        args = [example_argument("float64[:]") for _ in range(fn.__code__.co_argcount)]
    print(k.inspect_model(*args))
    print(k.inspect_schedule(*args))
    print(k.inspect_opencl(*args) if target == "opencl" else k.inspect_asm(*args))
    return 0


def _split_types(text: str) -> list[str]:
    """Split at commas outside brackets: float64[:,:],int64 -> [float64[:,:], int64]."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur] if cur else parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="polyjit", description="polyjit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run example kernels against Python and numpy")
    c = sub.add_parser("cache", help="the on-disk cache of compiled kernels")
    c.add_argument("action", choices=("info", "list", "clear"))
    i = sub.add_parser("inspect", help="print a kernel's model, schedule and generated code")
    i.add_argument("where", metavar="FILE.py:FUNC")
    i.add_argument("--target", choices=("native", "opencl"), default="native")
    i.add_argument("--types", help="argument types, e.g. float64[:],float64[:,:],int64 (default: float64[:])")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo
        return demo()
    if args.command == "cache":
        return _cache(args.action)
    return _inspect(args.target, args.types, args.where)


if __name__ == "__main__":
    sys.exit(main())
