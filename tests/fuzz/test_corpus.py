"""Replay of the fuzz corpus: every input of every target ends accepted or in a typed error.

The corpus (``tests/fuzz/corpus/<target>/``) is what ``make fuzz`` found, minimised, plus the
seeds and the regression inputs of crashes that were fixed. Each input runs under a time
bound: a hang is a failure too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from meshbench.core.errors import MeshError
from meshbench.testing.fuzz import replay
from meshbench.testing.fuzz.targets import TARGETS, seeds

CORPUS = Path(__file__).parent / "corpus"
#: Per input; the slowest targets (a trio run and a thread) take a few milliseconds.
MAX_SECONDS_PER_INPUT = 2.0


def test_every_target_has_a_corpus():
    assert sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) == sorted(TARGETS)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays_to_typed_errors_only(target):
    files = sorted((CORPUS / target).iterdir())
    assert files, f"no corpus for {target}"
    outcomes = {"accepted": 0, "typed": 0}
    for path in files:
        start = time.perf_counter()
        err = replay(target, path.read_bytes())  # anything but a MeshError propagates
        elapsed = time.perf_counter() - start
        assert elapsed < MAX_SECONDS_PER_INPUT, f"{path.name} took {elapsed:.2f} s"
        outcomes["typed" if isinstance(err, MeshError) else "accepted"] += 1
    # the corpus keeps inputs that get past the first checks, not only rejected garbage
    assert outcomes["accepted"] >= 1, outcomes


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_seeds_are_accepted(target):
    """The seeds are valid inputs (a seed that is refused would not guide the fuzzer far)."""
    accepted = [replay(target, data) is None for data in seeds()[target]]
    assert any(accepted)
