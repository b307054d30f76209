"""The on-disk cache of compiled kernels: one file per specialization, written atomically, checksummed.

An entry is `MAGIC + sha512(payload)[:32] + payload` where the payload is a pickle of plain data (machine code,
relocations and the per-call spec for native kernels; program binaries per device for OpenCL). The key
hashes polyjit's version (and, in a source checkout, its modules' stamps: `code_fingerprint`), the function's
code (bytecode, constants, names: comments and blank lines do not matter), the values of the globals and
closure variables it reads, the options, the argument signature and the target (ISA tier, or OpenCL
platform, device and driver). Entries live in POLYJIT_CACHE_DIR (or the user cache directory), created 0700;
an entry or directory owned by another user or writable by group or others is refused. POLYJIT_CACHE=0 turns
the cache off; POLYJIT_CACHE_SIZE (bytes) caps it, evicting the least recently used entries.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
import warnings

# SHA-512 from the module `random` has already loaded (numpy imports it): hashlib would load libcrypto and
# _blake2 another extension module, each a fraction of the two milliseconds of the cached path.
_loaded = sys.modules.get("_sha2") or sys.modules.get("_sha512")  # Python >= 3.12 / 3.11 (a failed import
if _loaded is not None:                                            # searches sys.path: ~0.1 ms)
    _hash = _loaded.sha512
else:  # pragma: no cover - depends on the Python version and on what numpy loaded
    try:
        from _sha2 import sha512 as _hash
    except ImportError:
        try:
            from _sha512 import sha512 as _hash
        except ImportError:
            from hashlib import sha512 as _hash

MAGIC = b"PJC\x03"
FORMAT = 9
DEFAULT_SIZE = 256 * 2**20
_warned: set[str] = set()


def _warn(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(f"polyjit cache: {message}", RuntimeWarning, stacklevel=4)


def enabled(option: bool) -> bool:
    return option and os.environ.get("POLYJIT_CACHE", "1") not in ("0", "false", "no", "off")


def directory() -> str:
    d = os.environ.get("POLYJIT_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "polyjit")


def _safe(path: str, st=None) -> bool:
    """Owned by us and not writable by group or others (the cache holds code we will execute)."""
    st = st or os.stat(path)
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _value_key(v, depth=0):
    """A stable description of a value the function reads from its globals or closure."""
    if isinstance(v, (bool, int, float, complex, str, bytes, type(None))):
        return (type(v).__name__, repr(v))
    if hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:
        return ("scalar", str(v.dtype), repr(v.item()))
    if isinstance(v, types.ModuleType):
        return ("module", v.__name__)
    if isinstance(v, types.CodeType) and depth < 3:
        return code_key(v, depth + 1)
    if callable(v):
        return ("callable", getattr(v, "__module__", None), getattr(v, "__qualname__", repr(type(v))))
    return ("object", type(v).__qualname__)


def code_key(code: types.CodeType, depth: int = 0):
    consts = tuple(_value_key(c, depth) for c in code.co_consts)
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars, code.co_argcount)


def function_key(fn) -> tuple:
    """What decides the compiled code, from the function object (fast: no source parsing)."""
    code = fn.__code__
    g = fn.__globals__
    globs = tuple((n, _value_key(g[n])) for n in code.co_names if n in g)
    cells = ()
    if fn.__closure__:
        cells = tuple((n, _value_key(c.cell_contents) if _filled(c) else None)
                      for n, c in zip(code.co_freevars, fn.__closure__))
    return (fn.__module__, fn.__qualname__, code_key(code), globs, cells)


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
        return True
    except ValueError:
        return False


def make_key(*parts) -> str:
    from . import __version__
    # entries hold marshaled Python code: the interpreter's version is part of every key
    return _hash(repr((__version__, FORMAT, sys.version_info[:2], code_fingerprint()) + parts)
                 .encode()).hexdigest()[:64]


_FINGERPRINT: list = []


def code_fingerprint() -> str:
    """Path, size and modification time of every module of polyjit's compiler, hashed once per process.

    The version alone would let a source checkout (an editable install) load machine code that older compiler
    code produced. Stat calls, not reading the files (under 1 ms), and only for a checkout: an installed
    package changes with its version."""
    if not _FINGERPRINT:
        import importlib.util
        stamps = []
        here = os.path.dirname(os.path.abspath(__file__))
        if any(part in ("site-packages", "dist-packages") for part in here.split(os.sep)):
            _FINGERPRINT.append("installed")
            return _FINGERPRINT[0]
        for name in ("polyjit", "polyjit.analysis", "polyjit.lowering", "polyjit.asm"):
            spec = importlib.util.find_spec(name)
            for folder in (spec.submodule_search_locations or ()) if spec else ():
                with os.scandir(folder) as entries:
                    for e in entries:
                        if e.name.endswith(".py"):
                            st = e.stat()
                            stamps.append((e.path, st.st_size, st.st_mtime_ns))
        _FINGERPRINT.append(_hash(repr(sorted(stamps)).encode()).hexdigest()[:32])
    return _FINGERPRINT[0]


def _digest(data: bytes) -> bytes:
    return _hash(data).digest()[:32]


class Cache:
    """A directory of entries. Failures never break a call: they warn once and compile instead."""

    def __init__(self, path: str | None = None):
        self.path = path or directory()
        self.writable = True

    def _ready(self, create: bool) -> bool:
        try:
            if not os.path.isdir(self.path):
                if not create:
                    return False
                os.makedirs(self.path, mode=0o700, exist_ok=True)
            if not _safe(self.path):
                _warn("unsafe-dir", f"{self.path} is owned by another user or writable by others; not used")
                return False
            return True
        except OSError as e:
            _warn("no-dir", f"cannot use {self.path} ({e}); compiling without a cache")
            return False

    def file(self, key: str) -> str:
        return os.path.join(self.path, f"{key}.pjc")

    def load(self, key: str):
        """The payload stored under `key`, or None (missing, corrupt, foreign or unsafe entries)."""
        if not self._ready(create=False):
            return None
        path = self.file(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not _safe(path, st):
                _warn("unsafe-file", f"{path} is owned by another user or writable by others; recompiling")
                return None
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
        finally:
            os.close(fd)
        if len(data) < 36 or data[:4] != MAGIC or _digest(data[36:]) != data[4:36]:
            _warn("corrupt", f"{path} is corrupt or truncated; recompiling and replacing it")
            return None
        try:
            payload = pickle.loads(data[36:])
        except Exception:  # noqa: BLE001 - any unpickling failure means a foreign entry
            _warn("corrupt", f"{path} cannot be read; recompiling and replacing it")
            return None
        try:
            os.utime(path)  # marks the entry as recently used, for eviction
        except OSError:
            pass
        return payload

    def store(self, key: str, payload) -> None:
        if not self.writable or not self._ready(create=True):
            return
        body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        data = MAGIC + _digest(body) + body
        import tempfile
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".pjc")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, self.file(key))  # atomic: readers see the old entry or the whole new one
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            self.writable = False
            _warn("read-only", f"cannot write to {self.path} ({e}); working without caching")
            return
        self.evict()

    def entries(self) -> list[tuple[str, int, float]]:
        """(path, size, last use) of every entry."""
        out = []
        try:
            names = os.listdir(self.path)
        except OSError:
            return out
        for name in names:
            if name.endswith(".pjc") and not name.startswith(".tmp-"):
                p = os.path.join(self.path, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                out.append((p, st.st_size, st.st_mtime))
        return out

    def evict(self) -> None:
        limit = int(os.environ.get("POLYJIT_CACHE_SIZE", DEFAULT_SIZE))
        entries = self.entries()
        total = sum(s for _, s, _ in entries)
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= limit:
                break
            try:
                os.unlink(path)
                total -= size
            except OSError:
                pass

    def clear(self) -> int:
        n = 0
        for path, _, _ in self.entries():
            try:
                os.unlink(path)
                n += 1
            except OSError:
                pass
        return n


_known_features: dict = {}


def native_tier(store: Cache) -> str:
    """The ISA tier for `POLYJIT_ISA` as set now. The CPU is probed once (CPUID code built by polyjit.asm, kept
    in the cache) and the tier kept per boot of this machine, so that a cache hit imports no assembler."""
    boot = _boot_id()
    cap = os.environ.get("POLYJIT_ISA", "")
    if boot is not None:
        known = store.load(make_key("isa-tier", boot, cap))
        if isinstance(known, tuple) and len(known) == 2 and isinstance(known[1], dict):
            _known_features.update(known[1])
            return known[0]
    from .asm import cpu
    prime_cpu_features()
    if "features" not in cpu._cache:
        from .asm.loader import from_plain, to_plain
        key = make_key("cpuid-probe")
        payload = store.load(key)
        probes = None
        if isinstance(payload, list) and len(payload) == 2:
            try:
                probes = tuple(from_plain(p) for p in payload)
            except Exception:  # noqa: BLE001 - a foreign entry: assemble the probes again
                probes = None
        if probes is None:
            probes = cpu._cpuid_function()
            store.store(key, [to_plain(p) for p in probes])
        cpu.cpu_features(probes)
    tier = cpu.isa_tier()  # raises for a bad POLYJIT_ISA before anything is stored
    if boot is not None:
        store.store(make_key("isa-tier", boot, cap), (tier, dict(cpu._cache["features"])))
    return tier


def prime_cpu_features() -> None:
    """Hand the features a cached tier came with to polyjit.asm, which then need not probe the CPU again."""
    if _known_features:
        from .asm import cpu
        cpu._cache.setdefault("features", dict(_known_features))


def _boot_id() -> str | None:
    """This boot of this machine (Linux): a cache directory shared between machines keeps one per machine."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None
