"""The on-disk cache: hits across processes, invalidation, integrity, concurrency, permissions, eviction."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import polyjit
from polyjit import cache

MODULE = '''
import numpy as np
import polyjit

SCALE = {scale}

@polyjit.kernel(target="native")
def scale(x, out):
    for i in range(len(x)):
        out[i] = SCALE * x[i]

def unrelated():
    return {unrelated}
'''

RUN = '''
import sys, json
sys.path.insert(0, {path!r})
import numpy as np
import mod
x = np.arange(5.0)
out = np.zeros(5)
mod.scale(x, out)
print(json.dumps({{"out": out.tolist(), "cache": mod.scale.stats.get("cache"),
                   "islpy": "islpy" in sys.modules, "pyopencl": "pyopencl" in sys.modules,
                   "compiler": sorted(m for m in sys.modules if m.startswith(("polyjit.lowering", "polyjit.analysis."))
                                      and m != "polyjit.analysis.errors" or m in ("polyjit.asm.encoder",
                                                                                  "polyjit.asm.cpu"))}}))
'''


def kernel_entries(d):
    """Cache entries of kernels (the CPUID probe and the CPU features it found have entries of their own)."""
    own = {cache.make_key("cpuid-probe"),
           cache.make_key("isa-tier", cache._boot_id(), os.environ.get("POLYJIT_ISA", ""))}
    return [p for p in d.glob("*.pjc") if p.stem not in own]


def write_module(tmp_path, scale=2.0, unrelated=1):
    (tmp_path / "mod.py").write_text(MODULE.format(scale=scale, unrelated=unrelated))


def run(tmp_path, cache_dir, **env):
    import json
    e = {**os.environ, "POLYJIT_CACHE_DIR": str(cache_dir), "PYTHONDONTWRITEBYTECODE": "1", "POLYJIT_CACHE": "1",
         **env}
    e.pop("POLYJIT_TARGET", None)
    p = subprocess.run([sys.executable, "-c", RUN.format(path=str(tmp_path))], env=e, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_hit_across_processes_without_islpy_or_pyopencl(tmp_path):
    write_module(tmp_path)
    first, _ = run(tmp_path, tmp_path / "c")
    second, _ = run(tmp_path, tmp_path / "c")
    assert first["cache"] == "miss" and second["cache"] == "hit"
    assert first["out"] == second["out"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert not second["islpy"] and not second["pyopencl"]
    assert second["compiler"] == []  # a hit loads machine code: no compiler module, no CPU probe
    assert oct(os.stat(tmp_path / "c").st_mode & 0o777) == "0o700"


def test_editing_function_or_constant_invalidates_unrelated_edit_does_not(tmp_path):
    write_module(tmp_path)
    run(tmp_path, tmp_path / "c")
    write_module(tmp_path, unrelated=2)
    r, _ = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "hit"
    write_module(tmp_path, scale=3.0, unrelated=2)
    r, _ = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "miss" and r["out"][1] == 3.0
    src = (tmp_path / "mod.py").read_text().replace("SCALE * x[i]", "SCALE * x[i] + 1")
    (tmp_path / "mod.py").write_text(src)
    r, _ = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "miss" and r["out"][1] == 4.0


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_entries_are_recompiled_and_replaced(tmp_path, damage):
    write_module(tmp_path)
    run(tmp_path, tmp_path / "c")
    (entry,) = kernel_entries(tmp_path / "c")
    data = entry.read_bytes()
    new = {"truncate": data[: len(data) // 2], "flip": data[:-1] + bytes([data[-1] ^ 1]),
           "garbage": cache.MAGIC + os.urandom(200), "empty": b""}[damage]
    entry.write_bytes(new)
    r, err = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "miss" and r["out"][1] == 2.0
    assert "corrupt" in err
    r, _ = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "hit"


def test_foreign_but_valid_entry_is_not_executed(tmp_path):
    """A well-formed entry whose content does not fit is recompiled, never run."""
    write_module(tmp_path)
    run(tmp_path, tmp_path / "c")
    (entry,) = kernel_entries(tmp_path / "c")
    store = cache.Cache(str(tmp_path / "c"))
    store.store(entry.stem, {"kind": "native", "spec": None, "code": [("nonsense", "void(*)(void)")]})
    r, err = run(tmp_path, tmp_path / "c")
    assert r["out"][1] == 2.0 and "could not be loaded" in err


def test_eight_processes_on_an_empty_cache(tmp_path):
    write_module(tmp_path)
    e = {**os.environ, "POLYJIT_CACHE_DIR": str(tmp_path / "c"), "POLYJIT_CACHE": "1"}
    e.pop("POLYJIT_TARGET", None)
    procs = [subprocess.Popen([sys.executable, "-c", RUN.format(path=str(tmp_path))], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert all('"out": [0.0, 2.0, 4.0, 6.0, 8.0]' in o[0] for o in outs)
    assert len(kernel_entries(tmp_path / "c")) == 1
    assert not list((tmp_path / "c").glob(".tmp-*"))
    r, _ = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "hit"


def test_read_only_directory_works_without_caching(tmp_path):
    """A directory we own but cannot write into (chmod 0500; for root, a read-only file system)."""
    write_module(tmp_path)
    if os.getuid() == 0:
        target = "/sys" if os.path.isdir("/sys") and not os.access("/sys", os.W_OK | os.X_OK) or _ro("/sys") \
            else "/proc"
    else:
        (tmp_path / "c").mkdir(mode=0o500)
        target = tmp_path / "c"
    r, err = run(tmp_path, target)
    assert r["out"][1] == 2.0 and r["cache"] == "miss"
    assert err.count("polyjit cache") == 1 and ("cannot write" in err or "cannot use" in err)


def _ro(path):
    import tempfile
    try:
        tempfile.mkstemp(dir=path)
    except OSError:
        return True
    return False


def test_unwritable_location_warns_once_and_works(tmp_path):
    write_module(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    r, err = run(tmp_path, tmp_path / "file" / "c")
    assert r["out"][1] == 2.0 and r["cache"] == "miss"
    assert err.count("polyjit cache") == 1


def test_unsafe_permissions_are_refused(tmp_path):
    write_module(tmp_path)
    run(tmp_path, tmp_path / "c")
    (entry,) = kernel_entries(tmp_path / "c")
    os.chmod(entry, 0o666)
    r, err = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "miss" and "writable by others" in err
    os.chmod(tmp_path / "c", 0o777)
    r, err = run(tmp_path, tmp_path / "c")
    assert r["cache"] == "miss" and "writable by others" in err


def test_eviction_keeps_the_size_cap(tmp_path):
    store = cache.Cache(str(tmp_path / "c"))
    os.environ["POLYJIT_CACHE_SIZE"] = "3000"
    try:
        for k in range(6):
            store.store(f"k{k}", b"x" * 1000)
            os.utime(store.file(f"k{k}"), (k, k))  # distinct ages, k0 oldest
        names = sorted(p.name for p in (tmp_path / "c").glob("*.pjc"))
    finally:
        del os.environ["POLYJIT_CACHE_SIZE"]
    assert names == ["k4.pjc", "k5.pjc"]
    assert store.load("k5") == b"x" * 1000


def test_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYJIT_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("POLYJIT_CACHE", "0")

    def f(x):
        for i in range(len(x)):
            x[i] += 1

    k = polyjit.kernel(f, target="native")
    k(np.zeros(3))
    assert not (tmp_path / "c").exists()
    monkeypatch.delenv("POLYJIT_CACHE")
    k2 = polyjit.kernel(f, target="native", cache=False)
    k2(np.zeros(3))
    assert not (tmp_path / "c").exists()


def test_cli_cache_commands(tmp_path):
    write_module(tmp_path)
    run(tmp_path, tmp_path / "c")
    e = {**os.environ, "POLYJIT_CACHE_DIR": str(tmp_path / "c")}
    out = subprocess.run([sys.executable, "-m", "polyjit", "cache", "info"], env=e, capture_output=True,
                         text=True, check=True).stdout
    assert "3 entries" in out and str(tmp_path / "c") in out
    out = subprocess.run([sys.executable, "-m", "polyjit", "cache", "list"], env=e, capture_output=True,
                         text=True, check=True).stdout
    assert ".pjc" in out
    out = subprocess.run([sys.executable, "-m", "polyjit", "cache", "clear"], env=e, capture_output=True,
                         text=True, check=True).stdout
    assert "removed 3" in out
    assert not list((tmp_path / "c").glob("*.pjc"))


def test_cli_inspect(tmp_path):
    (tmp_path / "k.py").write_text(textwrap.dedent('''
        from __future__ import annotations

        from dataclasses import dataclass

        @dataclass
        class Unrelated:  # dataclass looks its module up in sys.modules (string annotations)
            x: int

        def saxpy(a, x, y, out):
            for i in range(len(x)):
                out[i] = a * x[i] + y[i]
    '''))
    base = [sys.executable, "-m", "polyjit", "inspect", f"{tmp_path / 'k.py'}:saxpy", "--types",
            "float32,float32[:],float32[:],float32[:]"]
    out = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    assert "KERNEL: saxpy" in out and "loop structure" in out and "vmov" in out
    out = subprocess.run(base + ["--target", "opencl"], capture_output=True, text=True, check=True).stdout
    assert "__kernel void saxpy_p0" in out


@pytest.mark.opencl
def test_opencl_entries_hold_program_binaries(tmp_path):
    src = MODULE.replace('target="native"', 'target="opencl"')
    (tmp_path / "mod.py").write_text(src.format(scale=2.0, unrelated=1))
    first, _ = run(tmp_path, tmp_path / "c")
    second, _ = run(tmp_path, tmp_path / "c")
    assert first["cache"] == "miss" and second["cache"] == "hit"
    assert second["out"] == [0.0, 2.0, 4.0, 6.0, 8.0] and not second["islpy"]
    payload = cache.Cache(str(tmp_path / "c")).load(kernel_entries(tmp_path / "c")[0].stem)
    assert payload["kind"] == "opencl" and payload["binaries"]
    assert all(isinstance(b, bytes) and b for b in payload["binaries"].values())


def test_compiler_code_changes_change_every_key(monkeypatch):
    """In a source checkout, editing any compiler module (a new stamp) must not load machine code that the
    older code produced: the fingerprint of the modules' stamps is part of every key."""
    from polyjit import cache
    fp = cache.code_fingerprint()
    if "site-packages" not in cache.__file__:  # CI and the README install the checkout editable
        assert fp != "installed" and len(fp) == 32
    first = cache.make_key("f", 1)
    monkeypatch.setattr(cache, "_FINGERPRINT", ["another build"])
    assert cache.make_key("f", 1) != first
