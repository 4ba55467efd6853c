"""The ``meshbench`` CLI: content, keys, inspect, errors to stderr with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import meshbench as mb
from meshbench.cli.meshbench import main
from meshbench.testing.factories import make_identity, make_task


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and mb.__version__ in out


def test_cid_put_get(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hello.txt"
    f.write_bytes(b"hello world")
    d = str(tmp_path / "data")
    code, out, _ = run(capsys, "cid", str(f))
    assert out.strip() == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert not (tmp_path / "data").exists()  # cid stores nothing
    code, out2, _ = run(capsys, "put", str(f), "--data-dir", d)
    assert code == 0 and out2 == out
    code, _, _ = run(capsys, "get", out.strip(), "-o", str(tmp_path / "o.bin"), "--data-dir", d)
    assert code == 0 and (tmp_path / "o.bin").read_bytes() == b"hello world"


def test_key_new_show_uses_env_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHBENCH_HOME", str(tmp_path))
    code, did, _ = run(capsys, "key", "new", "--name", "alice")
    assert code == 0 and did.startswith("did:key:z6Mk")
    code, shown, _ = run(capsys, "key", "show", "--name", "alice", "--json")
    assert json.loads(shown) == {"name": "alice", "did": did.strip()}
    assert (tmp_path / "keys" / "alice.key").exists()
    secret = json.loads((tmp_path / "keys" / "alice.key").read_text())["ed25519_seed"]
    assert secret not in did + shown


def test_inspect_file_and_cid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = make_task(make_identity(1), sign=True)
    f = tmp_path / "task.cbor"
    f.write_bytes(task.encode())
    code, out, _ = run(capsys, "inspect", str(f))
    report = json.loads(out)
    assert code == 0 and report["type"] == "TaskIntent" and report["cid"] == str(task.cid)
    assert report["signature"] == f"valid, by {task.publisher}"
    store = mb.BlobStore(tmp_path / "data" / "blobs")
    store.put_object(task.encode())
    code, out, _ = run(capsys, "inspect", str(task.cid), "--data-dir", str(tmp_path / "data"))
    assert code == 0 and json.loads(out)["object"]["fee"] == task.fee


def test_inspect_tampered_fails_with_typed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray(make_task(make_identity(1), sign=True).encode())
    raw[-10] ^= 0x40
    f = tmp_path / "task.cbor"
    f.write_bytes(bytes(raw))
    code, out, err = run(capsys, "inspect", str(f))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and ("Signature" in err or "Schema" in err)


@pytest.mark.parametrize(
    "argv",
    [
        ("get", "bafkrei"),
        ("get", "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"),
        ("key", "show", "--name", "ghost"),
        ("inspect", "notacid"),
        ("bench", "nope"),
    ],
)
def test_errors_go_to_stderr(
    argv: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, *argv, *(() if argv[0] == "bench" else ("--data-dir", str(tmp_path)))
    )
    assert code == 1 and out == "" and err.startswith("error: ")


def test_console_script_and_bench_quick(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("meshbench")
    proc = subprocess.run(
        [str(exe), "bench", "encoding", "--quick", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    for key in ("encode_us", "sign_us", "verify_us", "decode_us"):
        assert figures[key] > 0


def test_demo_refuses_a_data_dir_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the demo itself, run twice and compared: tests/test_demo.py
    (tmp_path / "ledger.sqlite").write_bytes(b"")
    code, out, err = run(capsys, "demo", "--data-dir", str(tmp_path))
    assert code == 1 and out == ""
    assert err.startswith("error: StoreError: the demo needs an empty data dir")


def test_bench_transport_p2p_names_the_p2p_crash_suite(capsys: pytest.CaptureFixture[str]) -> None:
    from meshbench.bench import BENCHMARKS, ON_DEMAND

    assert BENCHMARKS["reliability-p2p"] == "meshbench.bench.reliability_p2p"
    assert "reliability-p2p" in ON_DEMAND  # not in `bench all`: make soak runs it
    code, out, err = run(capsys, "bench", "encoding", "--transport", "p2p")
    assert code != 0 and out == "" and "has no p2p form" in err
