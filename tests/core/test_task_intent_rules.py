"""A TaskIntent pays and is verified: a zero fee or zero verifiers is refused, built or
decoded; and any entry point decodes every protocol type (``import meshbench`` is lazy)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meshbench.core import encoding
from meshbench.core.errors import SchemaError
from meshbench.core.types import TaskIntent
from meshbench.testing.protocol import ProtocolHarness


@pytest.mark.parametrize(
    ("kw", "field"), [({"fee": 0}, "fee"), ({"verifiers": 0}, "verifier_count")]
)
def test_zero_fee_or_zero_verifiers_is_refused_when_built(kw: dict, field: str) -> None:
    with pytest.raises(SchemaError, match=rf"TaskIntent.*>= 1.*\$\.{field}"):
        ProtocolHarness().task(**kw)


def test_zero_fee_is_refused_when_decoded() -> None:
    task = ProtocolHarness().task(fee=1)
    value = encoding.decode(task.encode())
    value["fee"] = 0
    with pytest.raises(SchemaError, match="fee"):
        TaskIntent.from_ipld(value)


def test_decoding_needs_nothing_but_the_decoder_imported() -> None:
    task = ProtocolHarness().task()
    code = (
        "import sys\n"
        "from meshbench.core.model import decode_object\n"
        f"obj = decode_object(bytes.fromhex({task.encode().hex()!r}))\n"
        "print(type(obj).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "TaskIntent"
