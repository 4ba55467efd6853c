"""``meshbench cluster run``: the batch file is checked before anything is published."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshbench.cli.cluster_cmd import load_batch
from meshbench.core.errors import SchemaError


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty list"),
        ('[{"input_text": "x"}]', "names no wasm"),
        ('[{"wasm": "missing.wasm"}]', "no such file"),
        ('[{"wasm": "m.wasm", "colour": "red"}]', "unknown fields"),
        ("[1]", "not an object"),
    ],
)
def test_bad_batches(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "m.wasm").write_bytes(b"\\0asm")
    f = tmp_path / "tasks.json"
    f.write_text(content)
    with pytest.raises(SchemaError, match=message):
        load_batch(f)


def test_paths_are_relative_to_the_batch_file(tmp_path: Path) -> None:
    (tmp_path / "m.wasm").write_bytes(b"\\0asm")
    f = tmp_path / "tasks.json"
    f.write_text('{"defaults": {"fee": 7}, "tasks": [{"wasm": "m.wasm", "input_text": "x"}]}')
    [spec] = load_batch(f)
    assert spec["wasm"] == tmp_path / "m.wasm" and spec["fee"] == 7


def test_the_batch_warns_when_policy_or_cluster_size_change_the_verifiers() -> None:
    from meshbench.cli.cluster_cmd import verifier_warnings
    from meshbench.core.policy import VerificationQuorum

    quorum = VerificationQuorum(minimum_verifiers=3, maximum_verifiers=7)
    specs = [{"verifiers": 2}, {"verifiers": 9}, {}]
    lines = verifier_warnings(specs, quorum, workers=4)
    assert lines == [
        '"verifiers": 2 becomes 3: the policy\'s minimum_verifiers is 3',
        '"verifiers": 9 becomes 7: the policy\'s maximum_verifiers is 7',
        "7 verifiers need 8 workers (the worker never verifies itself); this cluster has 4: "
        "tasks get at most 3",
    ]
    assert verifier_warnings([{"verifiers": 3}], quorum, workers=4) == []
