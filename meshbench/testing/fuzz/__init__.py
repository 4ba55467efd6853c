"""Fuzzing meshbench's decoders and wire parsers (see :mod:`.targets`).

``python -m meshbench.testing.fuzz TARGET`` runs one target under atheris (coverage-guided,
libFuzzer), starting from and adding to ``tests/fuzz/corpus/TARGET``; ``make fuzz`` runs
them all for a bounded time. :func:`replay` feeds one input to a target the way the corpus
test does.
"""

from __future__ import annotations

from meshbench.core.errors import MeshError

__all__ = ["replay"]


def replay(target: str, data: bytes) -> MeshError | None:
    """Run ``target`` on ``data``: the typed error it raised, None if it accepted the input.

    Any other exception propagates: that is a finding.
    """
    from meshbench.testing.fuzz.targets import TARGETS

    try:
        TARGETS[target](data)
    except MeshError as exc:
        return exc
    return None
