"""Helpers: assemble many Intel-syntax lines with GNU as in one run and split the bytes per line."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile


def gas_path() -> str:
    path = shutil.which("as")
    if path is None:
        # The encoder tests need binutils: install it, or fail loudly (never skip).
        subprocess.run(["apt-get", "install", "-y", "binutils"], check=True, capture_output=True)
        path = shutil.which("as")
    assert path, "GNU as is required for the encoder tests (apt-get install binutils)"
    return path


def _elf_sections(data: bytes) -> dict:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    out = {}
    for i, h in enumerate(headers):
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        out[name] = (i, h)
    return out


def _symbols(data: bytes, sections: dict) -> dict:
    _, symtab = sections[".symtab"]
    _, strtab = sections[".strtab"]
    strings = data[strtab[4]:strtab[4] + strtab[5]]
    result = {}
    for off in range(symtab[4], symtab[4] + symtab[5], 24):
        st_name, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", data, off)
        if st_name:
            result[strings[st_name:strings.index(b"\0", st_name)].decode()] = value
    return result


def assemble_lines(lines: list[str], prologue: str = "") -> list[bytes]:
    """Bytes GNU as produces for each line (one instruction per line), in one `as --64` run."""
    src = [".intel_syntax noprefix", ".text", prologue]
    for i, line in enumerate(lines):
        src.append(f"__i{i}:")
        src.append(line)
    src.append(f"__i{len(lines)}:")
    with tempfile.TemporaryDirectory() as tmp:
        s_path, o_path = os.path.join(tmp, "t.s"), os.path.join(tmp, "t.o")
        with open(s_path, "w") as f:
            f.write("\n".join(src) + "\n")
        proc = subprocess.run([gas_path(), "--64", "-o", o_path, s_path], capture_output=True, text=True)
        if proc.returncode != 0:
            bad = []
            for err in proc.stderr.splitlines():
                parts = err.split(":")
                if len(parts) > 2 and parts[1].isdigit():
                    bad.append(f"{src[int(parts[1]) - 1]!r}: {err}")
            raise AssertionError("GNU as rejected:\n" + "\n".join(bad[:30] or [proc.stderr[:3000]]))
        data = open(o_path, "rb").read()
    sections = _elf_sections(data)
    _, text = sections[".text"]
    code = data[text[4]:text[4] + text[5]]
    symbols = _symbols(data, sections)
    offsets = [symbols[f"__i{i}"] for i in range(len(lines) + 1)]
    return [code[offsets[i]:offsets[i + 1]] for i in range(len(lines))]
