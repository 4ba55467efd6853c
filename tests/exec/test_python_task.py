"""The ``python`` executor: CPython tasks, deterministic across processes, failures as results.

Cost: the runtime compiles once per host (about 1-3 min on two busy cores, cached under the
user cache dir, shared with the notebooks); warm, this module takes about 30 s, most of it
the numpy + pandas + scikit-learn probe run in two processes at once.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import polars as pl
import pytest

from meshbench.core.encoding import blob_cid
from meshbench.core.errors import (
    CIDMismatch,
    EncodingError,
    ExecutionError,
    IOLimitExceeded,
    MemoryLimitExceeded,
    OutOfFuel,
)
from meshbench.core.types import CapabilityScope
from meshbench.exec.plugins import load_executor
from meshbench.exec.pyruntime import find_runtime, runtime_cache_dir
from meshbench.exec.python_task import (
    GUEST_ENV,
    PythonCall,
    PythonExecutor,
    PythonTaskFailed,
    function_source,
)

pytestmark = pytest.mark.timeout(900)  # the first test on a fresh host compiles the runtime

#: Enough for stdlib-only functions (CPython's start-up is ~5e7 instructions).
SMALL = CapabilityScope(memory_mb=256, cpu_cycles=2 * 10**9, io_mb=4)
SKLEARN = CapabilityScope(memory_mb=1024, cpu_cycles=4 * 10**10, io_mb=16)

PROBE = textwrap.dedent(
    """
    import os, random, time
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    def probe(n):
        x = np.random.default_rng().normal(size=(n, 3))  # seeded by the task, not the host
        y = (x[:, 0] + x[:, 1] > 0).astype(int)
        forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y)
        frame = pd.DataFrame({"a": x[:, 0], "y": y}).groupby("y").agg(["mean", "std"])
        os.makedirs("/tmp/d")
        for name in ["zeta", "alpha", "mid"]:
            open(f"/tmp/d/{name}", "w").write(name)
        return {
            "time": time.time(), "random": random.random(), "urandom": os.urandom(16),
            "hash": hash("meshbench"), "listdir": os.listdir("/tmp/d"),
            "float": repr(0.1 + 0.2) + format(1 / 3, ".17g"), "x": x,
            "proba": forest.predict_proba(x[:5]), "frame": frame.to_string(),
            "environ": dict(os.environ), "cwd": os.getcwd(),
        }
    """
)

_CHILD = """
import json, sys
from meshbench.core.types import CapabilityScope
from meshbench.exec.python_task import PythonCall, PythonExecutor, jsonable
scope = CapabilityScope(**json.loads(sys.argv[2]))
call = PythonCall(source=sys.stdin.read(), entry="probe", args=(int(sys.argv[1]),), scope=scope)
result = PythonExecutor().run_call(call, seed=bytes(range(32)))
value = jsonable(PythonCall.result(result)) if result.exit_code == 0 else None
print(json.dumps({"cid": str(result.output_cid), "fuel": result.summary.fuel_used,
                  "exit": result.exit_code, "stderr": result.stderr.decode()[-2000:],
                  "value": value}))
"""


@pytest.fixture(scope="module")
def executor() -> PythonExecutor:
    ex = PythonExecutor()
    ex.load()  # compiles on a fresh host, else loads from the disk cache
    return ex


def _run(executor: PythonExecutor, source: str, entry: str = "f", *args, scope=SMALL):
    return executor.run_call(PythonCall(source=source, entry=entry, args=args, scope=scope))


def test_entry_point_and_runtime_are_installed_and_checked():
    runtime = find_runtime()
    assert runtime.module_cid == blob_cid(runtime.module_path.read_bytes())
    assert runtime.stdlib_name == "python315.zip"
    assert isinstance(load_executor("python"), PythonExecutor)


def _stats(xs, weights=None):
    import statistics

    return {"mean": statistics.fmean(xs, weights), "n": len(xs), "half": HALF * len(xs)}


HALF = 0.5


def _uses_helper(xs):
    return _stats(xs)["mean"] + math.pi


def test_function_with_helpers_runs_and_values_round_trip(executor):
    source = function_source(_uses_helper)
    assert "import math" in source and "HALF = 0.5" in source and "def _stats" in source
    result = executor.run_call(PythonCall.from_function(_uses_helper, [1.0, 2.0], scope=SMALL))
    assert result.exit_code == 0, result.stderr.decode()
    assert PythonCall.result(result) == 1.5 + math.pi
    echo = "def f(*a, **k):\n    return [list(a), k]\n"
    args = ({"$weird": 1}, b"\x00\xff", float("nan"), -(2**63), [None, True, "é"])
    value = PythonCall.result(_run(executor, echo, "f", *args))
    assert value[0][0] == {"$weird": 1} and value[0][1] == b"\x00\xff"
    assert math.isnan(value[0][2]) and value[0][3:] == [-(2**63), [None, True, "é"]]


def test_frames_and_arrays_cross_as_polars_and_numpy(executor):
    import numpy as np

    source = textwrap.dedent(
        """
        import pandas as pd
        def f(frame, arr):
            df = frame.assign(z=frame["x"] * arr.sum())
            return {"df": df, "s": df["z"], "arr": arr.T, "n": df.shape[0]}
        """
    )
    frame = pl.DataFrame({"x": [1.0, 2.5, float("nan")], "name": ["a", "b", None]})
    arr = np.arange(6, dtype=np.int32).reshape(2, 3)
    scope = CapabilityScope(memory_mb=512, cpu_cycles=10**10, io_mb=8)
    value = PythonCall.result(_run(executor, source, "f", frame, arr, scope=scope))
    df = value["df"]
    assert isinstance(df, pl.DataFrame) and df.columns == ["x", "name", "z"]
    assert df["z"].to_list()[:2] == [15.0, 37.5] and math.isnan(df["z"][2])
    assert df["name"].to_list() == ["a", "b", None]
    assert isinstance(value["s"], pl.Series) and value["n"] == 3
    assert value["arr"].dtype == np.int32 and (value["arr"] == arr.T).all()


def test_numpy_pandas_sklearn_task_is_identical_across_processes(tmp_path):
    """Two processes with different environments, side by side: same output CID and fuel."""
    envs = []
    for i, (seed, tz, lang) in enumerate([("1", "UTC", "C"), ("4242", "Asia/Tokyo", "de_DE")]):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz, "LANG": lang, "HOME": str(tmp_path)}
        env["MESHBENCH_PROBE"] = str(i)  # visible to the host, never to the guest
        env["MESHBENCH_PYTHON_CACHE"] = str(runtime_cache_dir())  # HOME moved; the cache not
        envs.append(env)
    scope = json.dumps({f: getattr(SKLEARN, f) for f in ("memory_mb", "cpu_cycles", "io_mb")})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, "64", scope],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(tmp_path) if i else None,
            text=True,
        )
        for i, env in enumerate(envs)
    ]
    outs = [json.loads(p.communicate(PROBE, timeout=600)[0]) for p in procs]
    assert outs[0]["exit"] == 0, outs[0]["stderr"]
    assert outs[0] == outs[1]
    # and the value is what the probe promises: virtual time, sorted listing, no environment
    value = outs[0]["value"]
    assert value["listdir"] == ["alpha", "mid", "zeta"]
    assert 1_704_067_200 <= value["time"] < 1_704_067_201  # the virtual clock's epoch
    # the guest's environment is ours alone (scikit-learn adds two KMP_ variables itself)
    own = {k: v for k, v in value["environ"].items() if not k.startswith("KMP_")}
    assert own == GUEST_ENV and own["PYTHONHASHSEED"] == "0"
    assert value["float"] == "0.300000000000000040.33333333333333331"
    assert len(value["proba"]) == 5 and len(value["x"]) == 64 and len(value["x"][0]) == 3
    assert value["urandom"]["hex"] != bytes(16).hex()


def test_the_task_seed_feeds_the_guest_random_sources(executor):
    source = "import os, random\ndef f():\n    return [os.urandom(8), random.random()]\n"
    call = PythonCall(source=source, entry="f", scope=SMALL)
    a = executor.run_call(call, seed=bytes(32))
    b = executor.run_call(call, seed=bytes(32))
    c = executor.run_call(call, seed=b"\x01" * 32)
    assert a.output_cid == b.output_cid and a.summary.fuel_used == b.summary.fuel_used
    assert PythonCall.result(a)[0] != PythonCall.result(c)[0]


@pytest.mark.parametrize(
    ("source", "error_type"),
    [
        ("def f(:\n    pass\n", "SyntaxError"),
        ("def f():\n    return 1 / 0\n", "ZeroDivisionError"),
        ("def f():\n    import torch\n", "ModuleNotFoundError"),
        ("def f():\n    import socket\n    socket.create_connection(('1.1.1.1', 80))\n", None),
        ("def f():\n    return open('/etc/passwd').read()\n", "FileNotFoundError"),
        ("def f():\n    return open('/usr/local/lib/x', 'w')\n", None),
        ("def f():\n    return object()\n", "TypeError"),
        ("def g():\n    return 1\n", "NameError"),
    ],
)
def test_guest_failures_are_reproducible_results(executor, source, error_type):
    first = _run(executor, source)
    again = _run(executor, source)
    assert first.exit_code == 1
    assert (first.output_cid, first.summary.fuel_used) == (
        again.output_cid,
        again.summary.fuel_used,
    )
    with pytest.raises(PythonTaskFailed) as info:
        PythonCall.result(first)
    assert info.value.error_type == (error_type or info.value.error_type)
    assert info.value.error_type in first.stderr.decode()  # the guest's traceback
    if error_type is None:  # sockets and writes to the stdlib mount are refused as OS errors
        assert info.value.error_type in ("OSError", "PermissionError", "AttributeError")


def test_infinite_loop_runs_out_of_fuel(executor):
    scope = CapabilityScope(memory_mb=256, cpu_cycles=5 * 10**8, io_mb=4)
    with pytest.raises(OutOfFuel) as info:
        _run(executor, "def f():\n    while True:\n        pass\n", scope=scope)
    assert info.value.fuel_used == 5 * 10**8


def test_memory_bomb_hits_the_memory_limit(executor):
    with pytest.raises(MemoryLimitExceeded) as info:
        _run(executor, "def f():\n    return len(bytearray(1 << 30))\n")
    assert info.value.fuel_used and info.value.fuel_used > 0


def test_output_flood_hits_the_io_limit(executor):
    with pytest.raises(IOLimitExceeded):
        _run(executor, "def f():\n    while True:\n        print('x' * 4096)\n")
    with pytest.raises(IOLimitExceeded):
        _run(executor, "def f():\n    return b'x' * (8 << 20)\n")


def test_corrupted_runtime_blob_and_foreign_bundle_fail_their_cid_checks(executor, tmp_path):
    from meshbench.core.types import TaskIntent
    from meshbench.exec.python_task import python_args
    from meshbench.testing.factories import make_identity

    runtime = executor.runtime
    call = PythonCall(source="def f():\n    return 1\n", entry="f", scope=SMALL)
    bundle = call.bundle(runtime)
    task = TaskIntent(
        publisher=make_identity(1).did, federation=make_identity(0).did,
        wasm_cid=runtime.module_cid, input_cid=blob_cid(bundle), fee=100, scope=SMALL,
        executor="python", args=python_args(), created_at=1, deadline=2,
    )  # fmt: skip
    assert executor.accepts(task)
    assert executor.run_task(task, runtime.module_bytes(), bundle).exit_code == 0
    wasm = bytearray(runtime.module_bytes())
    wasm[len(wasm) // 2] ^= 0xFF
    with pytest.raises(CIDMismatch):
        executor.run_task(task, bytes(wasm), bundle)
    with pytest.raises(CIDMismatch):
        executor.load(bytes(wasm))
    foreign = bundle.replace(bytes(runtime.stdlib_cid), bytes(blob_cid(b"another stdlib")))
    with pytest.raises(CIDMismatch):
        executor.run(executor.load(), foreign, args=python_args(), scope=SMALL)
    # an artifact directory whose files do not match SHA256SUMS
    (tmp_path / "python-snapshot.wasm").write_bytes(b"\0asm\x01\0\0\0")
    (tmp_path / "python-stdlib.zip").write_bytes(b"PK")
    (tmp_path / "MANIFEST").write_text("python 3.15.0\n")
    sums = (runtime.module_path.parent / "SHA256SUMS").read_text()
    (tmp_path / "SHA256SUMS").write_text(sums)
    with pytest.raises(CIDMismatch, match="corrupted"):
        find_runtime(tmp_path)


def test_functions_that_cannot_be_shipped_are_refused_before_publishing():
    offset = 3

    def closure(x):
        return x + offset

    with pytest.raises(ExecutionError, match="closes over offset"):
        PythonCall.from_function(closure, 1)
    with pytest.raises(ExecutionError, match="plain function"):
        PythonCall.from_function(len, [1])
    with pytest.raises(EncodingError):
        PythonCall.from_function(_stats, {1, 2}).bundle(find_runtime())
    with pytest.raises(ExecutionError, match="not a Python name"):
        PythonCall(source="", entry="no such").bundle(find_runtime())


def test_meshbench_run_python_file_json(tmp_path):
    from click.testing import CliRunner

    from meshbench.cli.meshbench import main_group

    script = tmp_path / "stats.py"
    script.write_text(
        "import statistics\n\ndef summary(xs, label):\n"
        "    return {'mean': statistics.fmean(xs), 'label': label}\n\n"
        "def main(data):\n    return data.decode().upper()\n\n"
        "if __name__ == '__main__':  # a task imports the file, it does not run it\n"
        "    raise SystemExit(3)\n"
    )
    data = tmp_path / "in.txt"
    data.write_text("hello")
    runner = CliRunner()
    args = ["run", "--python", str(script), "--fuel", str(SMALL.cpu_cycles), "--mem-mb", "256"]
    res = runner.invoke(
        main_group, [*args, "--entry", "summary", "--arg", "[1, 2, 4]", "--arg", "x", "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["value"] == {"mean": 7 / 3, "label": "x"} and report["exit_code"] == 0
    assert report["engine"].startswith("wasmtime-") and report["fuel_used"] > 0
    assert report["output_cid"].startswith("bafkrei")
    res = runner.invoke(main_group, [*args, "--input", str(data)])
    assert res.exit_code == 0 and json.loads(res.stdout) == "HELLO"
    res = runner.invoke(main_group, [*args, "--entry", "summary", "--arg", "1", "--arg", "x"])
    assert res.exit_code == 1 and "TypeError" in res.stderr
    res = runner.invoke(main_group, ["run", "--python", str(script), "--wasm", str(script)])
    assert res.exit_code != 0 and "exactly one" in res.output


def test_bench_python_quick_json(executor):
    from click.testing import CliRunner

    from meshbench.cli.meshbench import main_group

    res = CliRunner().invoke(main_group, ["bench", "python", "--json", "--quick"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["runtime_cached_from_disk"] is True and report["runtime_cached_load_s"] > 0
    for key in ("trivial_ms", "numpy_pandas_ms", "task_ms"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["trivial_fuel_deterministic"] and report["numpy_pandas_fuel_deterministic"]
    assert report["numpy_pandas_fuel"] > 10**9
