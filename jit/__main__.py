"""`python -m polyjit demo` (and the `polyjit` console script)."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="polyjit", description="polyjit command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run example kernels against Python and numpy")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo
        return demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
