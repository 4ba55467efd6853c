"""Fixtures for the execution engine tests: one executor and one module cache per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from meshbench.core.types import CapabilityScope
from meshbench.exec.wasm import WasmExecutor

DATASETS = Path(__file__).resolve().parents[2] / "datasets" / "wasm"
#: Enough of everything for the C examples (wasi-libc start-up alone is a few thousand fuel).
ROOMY = CapabilityScope(memory_mb=64, cpu_cycles=10**9, io_mb=16)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wasm-cache")


@pytest.fixture(scope="session")
def executor(cache_dir: Path) -> WasmExecutor:
    return WasmExecutor(cache_dir=cache_dir)


@pytest.fixture(scope="session")
def module() -> Callable[[str], bytes]:
    def load(name: str) -> bytes:
        return (DATASETS / f"{name}.wasm").read_bytes()

    return load
