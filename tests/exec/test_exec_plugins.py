"""Executors and validators are plug-ins found through entry points."""

from __future__ import annotations

import pytest

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import MeshError
from meshbench.exec.plugins import (
    ExactCIDValidator,
    Executor,
    Validator,
    executor_names,
    load_executor,
    load_validator,
    validator_names,
)
from meshbench.exec.wasm import WasmExecutor


def test_builtins_are_registered():
    assert "wasm" in executor_names()
    assert "exact" in validator_names()


def test_load_the_wasm_executor(tmp_path, module):
    ex = load_executor("wasm", cache_dir=tmp_path)
    assert isinstance(ex, WasmExecutor) and isinstance(ex, Executor)
    assert ex.run(module("hello")).output == b"hello, mesh\n"


def test_unknown_plugins_are_mesh_errors():
    with pytest.raises(MeshError, match="no executor plug-in 'gpu-x'"):
        load_executor("gpu-x")
    with pytest.raises(MeshError, match="no validator"):
        load_validator("fuzzy-x")


def test_exact_validator(executor, module):
    v = load_validator()
    assert isinstance(v, ExactCIDValidator) and isinstance(v, Validator)
    mine = executor.run(module("hello"))
    assert v.confirms(mine.output_cid, mine.summary, mine) == (True, "")
    ok, reason = v.confirms(blob_cid(b"forged"), mine.summary, mine)
    assert not ok and "output" in reason
    # fuel is compared only on the same engine identity
    other_fuel = type(mine.summary)(**{**_fields(mine.summary), "fuel_used": 1})
    ok, reason = v.confirms(mine.output_cid, other_fuel, mine)
    assert not ok and "fuel" in reason
    other_engine = type(mine.summary)(
        **{**_fields(mine.summary), "fuel_used": 1, "engine": "wasmtime-1.0/x"}
    )
    assert v.confirms(mine.output_cid, other_engine, mine) == (True, "")


def _fields(s):
    return {f: getattr(s, f) for f in s.__struct_fields__}


def test_package_exports_are_stable():
    import meshbench.exec as ex

    assert sorted(ex.__all__) == [
        "ExactCIDValidator",
        "ExecutionResult",
        "Executor",
        "LoadedModule",
        "ModuleCache",
        "Validator",
        "WasmExecutor",
        "engine_identity",
        "executor_names",
        "fuel_for",
        "load_executor",
        "load_validator",
        "tree_from_host_dir",
        "tree_from_manifest",
        "validator_names",
    ]
    for name in ex.__all__:
        assert getattr(ex, name) is not None
