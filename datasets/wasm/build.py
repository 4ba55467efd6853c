"""Rebuild the example modules in this folder from src/, bit for bit.

    python datasets/wasm/build.py            # rebuild every .wasm
    python datasets/wasm/build.py --check    # rebuild in a temp dir, fail if any differs

WAT is assembled by the pinned wasmtime's ``wat2wasm``; C is compiled for wasm32-wasi by the
pinned ``ziglang`` (clang + wasi-libc) with stripped output, which is reproducible (no paths,
no timestamps, no build ids). ``make wasm`` runs the first form, ``make wasm-check`` the second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
#: The hostile-module corpus: src/hostile/*.wat built into hostile/ (tests/exec/test_hostile.py).
HOSTILE = "hostile"
C_FLAGS = ["--target=wasm32-wasi", "-O2", "-s", "-fno-ident"]
#: Extra flags per C module: the kernels are built with SIMD, as a worker would want them.
EXTRA = {"stencil": ["-O3", "-msimd128"], "matmul": ["-O3", "-msimd128"]}


def build(out_dir: Path, only: set[str] | None = None) -> list[Path]:
    import wasmtime

    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    sources = [(src, out_dir) for src in sorted(SRC.iterdir())]
    sources += [(src, out_dir / HOSTILE) for src in sorted((SRC / HOSTILE).glob("*.wat"))]
    for src, dest_dir in sources:
        if only and src.stem not in only:
            continue
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{src.stem}.wasm"
        if src.suffix == ".wat":
            dest.write_bytes(wasmtime.wat2wasm(src.read_text()))
        elif src.suffix == ".c":
            cmd = [sys.executable, "-m", "ziglang", "cc", *C_FLAGS, *EXTRA.get(src.stem, [])]
            subprocess.run([*cmd, "-o", str(dest), src.name], cwd=SRC, check=True)
        else:
            continue
        built.append(dest)
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files")
    parser.add_argument("names", nargs="*", help="only these modules (stems)")
    ns = parser.parse_args()
    only = set(ns.names) or None
    if not ns.check:
        for path in build(HERE, only):
            print(f"built {path.relative_to(HERE)} ({path.stat().st_size} bytes)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        bad = []
        for path in build(Path(tmp), only):
            name = path.relative_to(tmp)
            committed = HERE / name
            same = committed.is_file() and committed.read_bytes() == path.read_bytes()
            print(f"{'same' if same else 'DIFFERENT'} {name}")
            if not same:
                bad.append(str(name))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
