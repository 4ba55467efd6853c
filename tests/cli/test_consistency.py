"""What every CLI shares: options before or after the subcommand, errors in the documented
form (``error: <Type>: ...``, exit 1), an example in every ``--help``, quiet and fast start-up."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest

from meshbench.cli import icn_wallet, mesh_cli
from meshbench.cli import meshbench as meshbench_cli
from meshbench.cli.peer_service import NodeService

ROOT = Path(__file__).resolve().parents[2]
WASM = ROOT / "datasets" / "wasm"
TOOLS: dict[str, Callable[[list[str] | None], None]] = {
    "meshbench": meshbench_cli.main,
    "mesh-cli": mesh_cli.main,
    "icn-wallet": icn_wallet.main,
}


def run(capsys: pytest.CaptureFixture[str], tool: str, *argv: str | Path) -> tuple[int, str, str]:
    code = 0
    try:
        TOOLS[tool]([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def failed(capsys: pytest.CaptureFixture[str], tool: str, *argv: str | Path) -> str:
    """The one error line of a command that must fail in the documented form."""
    code, _, err = run(capsys, tool, *argv)
    assert code == 1, (code, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeService]:
    svc = NodeService(tmp_path / "node", listen=["/ip4/127.0.0.1/tcp/0"], mdns=False).start()
    try:
        yield svc
    finally:
        svc.close()


# --- options before or after the subcommand --------------------------------------------------
def test_data_dir_before_or_after_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "home"
    code, before, err = run(capsys, "meshbench", "--data-dir", d, "key", "new", "--name", "a")
    assert code == 0, err
    code, after, _ = run(capsys, "meshbench", "key", "show", "--name", "a", "--data-dir", d)
    assert code == 0 and after == before and before.startswith("did:key:")
    # the subcommand's own --data-dir wins over the group's
    other = tmp_path / "other"
    code, _, err = run(capsys, "meshbench", "--data-dir", d, "key", "show", "--data-dir", other)
    assert code == 1 and "KeyNotFound" in err
    code, out, _ = run(capsys, "icn-wallet", "--data-dir", d, "key", "show", "--name", "a")
    assert code == 0 and out == before


def test_mesh_cli_group_data_dir_reaches_the_node(
    node: NodeService, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "mesh-cli", "--data-dir", node.data_dir, "status", "--json")
    assert code == 0, err
    assert json.loads(out)["peer_id"] == node.node.peer_id
    code, out, _ = run(capsys, "mesh-cli", "--data-dir", node.data_dir, "status", "--field", "did")
    assert code == 0 and out.strip() == node.node.did
    code, out, _ = run(
        capsys, "mesh-cli", "status", "--field", "addrs.0", "--data-dir", node.data_dir
    )
    assert out.strip() == node.node.addrs[0] and "/p2p/" in out
    err = failed(capsys, "mesh-cli", "status", "--field", "nope", "--data-dir", node.data_dir)
    assert "SchemaError" in err and "no field 'nope'" in err


def test_status_reads_as_text_not_python(
    node: NodeService, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "mesh-cli", "status", "--data-dir", node.data_dir)
    assert code == 0
    assert "{'" not in out and "['" not in out and "None" not in out
    assert re.search(rf"^peer_id +{node.node.peer_id}$", out, re.M) and "\nnetwork:\n" in out


# --- errors in the documented form -----------------------------------------------------------
@pytest.mark.parametrize(
    ("tool", "argv"),
    [
        ("meshbench", ["cid", "missing.bin"]),
        ("meshbench", ["put", "missing.bin"]),
        ("meshbench", ["inspect", "task.cbor"]),
        ("meshbench", ["run", "--wasm", "missing.wasm"]),
        ("meshbench", ["cluster", "run", "missing.json", "--local", "2"]),
        ("mesh-cli", ["provide", "missing.wasm"]),
        ("mesh-cli", ["publish", "task.cbor"]),
        ("icn-wallet", ["mesh", "policy", "propose", "--update-file", "missing.json",
                        "--description", "x"]),
    ],
)  # fmt: skip
def test_a_missing_file_is_a_typed_error_with_exit_1(
    tool: str,
    argv: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    err = failed(capsys, tool, "--data-dir", tmp_path / "home", *argv)
    assert (err.startswith("error: NoSuchFile: ") and "missing" in err) or "task.cbor" in err


def test_publishing_a_file_that_is_not_an_object_names_it(
    node: NodeService, capsys: pytest.CaptureFixture[str]
) -> None:
    err = failed(capsys, "mesh-cli", "publish", ROOT / "README.md", "--data-dir", node.data_dir)
    assert err.startswith(("error: EncodingError: ", "error: SchemaError: "))
    assert "README.md is not a signed meshbench object" in err
    assert node.node.stats()["published"] == 0 if "published" in node.node.stats() else True


def test_a_second_federation_of_the_same_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "wallet"
    code, _, err = run(capsys, "icn-wallet", "federation", "create", "coop", "--data-dir", d)
    assert code == 0, err
    err = failed(capsys, "icn-wallet", "federation", "create", "coop", "--data-dir", d)
    assert "GovernanceError" in err and "a federation named 'coop' already exists" in err
    code, out, _ = run(capsys, "icn-wallet", "federation", "members", "--json", "--data-dir", d)
    assert code == 0 and json.loads(out) == []  # the first federation is untouched


def test_icn_wallet_version_and_readable_policy_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import meshbench

    code, out, _ = run(capsys, "icn-wallet", "--version")
    assert code == 0 and meshbench.__version__ in out and "icn-wallet" in out
    d = tmp_path / "wallet"
    assert run(capsys, "icn-wallet", "federation", "create", "coop", "--data-dir", d)[0] == 0
    code, out, _ = run(capsys, "icn-wallet", "mesh", "policy", "history", "--data-dir", d)
    assert code == 0 and "ACTIVATED" in out
    row = out.splitlines()[1]
    assert row.split()[-1].endswith("Z") and row.split()[-2].count("-") == 2  # 2026-12-01 08:30:00Z


# --- defaults that run the project's own examples --------------------------------------------
def test_meshbench_run_default_fuel_runs_sha256_of_the_readme(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import hashlib

    code, out, err = run(capsys, "meshbench", "run", "--wasm", WASM / "sha256.wasm",
                         "--input", ROOT / "README.md")  # fmt: skip
    assert code == 0, err
    assert out.split()[0] == hashlib.sha256((ROOT / "README.md").read_bytes()).hexdigest()


def test_out_of_fuel_names_the_flag_the_user_typed(capsys: pytest.CaptureFixture[str]) -> None:
    err = failed(capsys, "meshbench", "run", "--wasm", WASM / "loop.wasm", "--fuel", "5000")
    assert err.startswith("error: OutOfFuel: ") and "--fuel" in err and "cpu_cycles" not in err


# --- every --help shows an example of its own command ----------------------------------------
def _commands(group: click.Group, prefix: str) -> Iterator[tuple[str, click.Command]]:
    yield prefix, group
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


ALL_COMMANDS = [
    (tool, path)
    for tool, group in [
        ("meshbench", meshbench_cli.main_group),
        ("mesh-cli", mesh_cli.main_group),
        ("icn-wallet", icn_wallet.main_group),
    ]
    for path, _ in _commands(group, tool)
]


@pytest.mark.parametrize(("tool", "path"), ALL_COMMANDS)
def test_every_help_shows_an_example_of_the_command(
    tool: str, path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, tool, *path.split()[1:], "--help")
    assert code == 0
    assert "Example" in out, f"{path} --help has no example"
    example = out[out.index("Example") :]
    # the key commands are shared: 'meshbench key new' runs the same code as icn-wallet's
    runs = [f"{t} {' '.join(path.split()[1:])}".strip() for t in TOOLS]
    assert any(r in example for r in runs), f"{path} --help: the example does not run {path}"


def test_help_examples_name_files_that_exist_or_placeholders(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Example paths are the repository's own files (datasets/...), or made by the example."""
    for tool, path in ALL_COMMANDS:
        out = run(capsys, tool, *path.split()[1:], "--help")[1]
        for word in out[out.index("Example") :].split():
            if word.startswith("datasets/"):
                assert (ROOT / word.rstrip(",;)")).exists(), f"{path}: {word}"


# --- quiet, fast start-up --------------------------------------------------------------------
def test_no_py_libp2p_info_lines_without_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    import libp2p.network.auto_connector as auto

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    try:
        root.addHandler(keep)
        mesh_cli._configure_logging(0)
        auto.logger.info("auto-connector tick")
        assert records == []
        auto.logger.error("a real problem")
        assert [r.getMessage() for r in records] == ["a real problem"]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_a_mesh_cli_client_call_loads_no_runtime(node: NodeService) -> None:
    """What makes a client call answer in well under 0.3 s: it imports click and the control
    socket's client, not libp2p, Polars, wasmtime, Dask or the runtime."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from meshbench.cli.mesh_cli import main\n"
        "try:\n"
        f"    main(['status', '--json', '--data-dir', {str(node.data_dir)!r}])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = [m for m in ('libp2p', 'polars', 'wasmtime', 'distributed', 'trio',\n"
        "         'meshbench.runtime', 'meshbench.core.protocol') if m in sys.modules]\n"
        "print(heavy, round(time.perf_counter() - t, 3), file=sys.stderr)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["peer_id"] == node.node.peer_id


# commands whose example needs no running node, ledger or earlier state (in this order)
SELF_CONTAINED = ["meshbench cid", "meshbench put", "meshbench get", "meshbench key new",
                  "meshbench key show", "meshbench run"]  # fmt: skip


def test_self_contained_help_examples_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "datasets").symlink_to(ROOT / "datasets")
    (tmp_path / "README.md").symlink_to(ROOT / "README.md")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESHBENCH")},
        "MESHBENCH_HOME": str(tmp_path / "home"),
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    for path in SELF_CONTAINED:
        out = run(capsys, "meshbench", *path.split()[1:], "--help")[1]
        lines = out[out.index("Example") :].split("\n\n")[0].splitlines()[1:]
        for line in (x.strip() for x in lines if x.strip()):
            if "--python" in line:  # the python runtime (a long first compile) has its own tests
                continue
            proc = subprocess.run(
                ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, timeout=120
            )
            assert proc.returncode == 0, (path, line, proc.stderr.decode()[-2000:])
