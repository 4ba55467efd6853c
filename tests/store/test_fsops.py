"""File-system calls that keep the GIL: os.replace's and os.mkdir's results and errors."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from meshbench.store import fsops


def test_rename_and_mkdir_do_what_os_does_with_its_errors(tmp_path: Path) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(b"one")
    dst.write_bytes(b"old")
    fsops.rename(src, dst)  # replaces, as os.replace
    assert dst.read_bytes() == b"one" and not src.exists()
    with pytest.raises(FileNotFoundError) as caught:
        fsops.rename(src, dst)
    assert caught.value.filename == str(src) and caught.value.filename2 == str(dst)
    fsops.mkdir(tmp_path / "d")
    assert (tmp_path / "d").is_dir()
    with pytest.raises(FileExistsError):
        fsops.mkdir(tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        fsops.mkdir(tmp_path / "no" / "such")
    with pytest.raises(NotADirectoryError):
        fsops.mkdir(dst / "x")


@pytest.mark.skipif(fsops._LIBC is None, reason="no C library: fsops is os's own calls")
def test_a_thread_that_wants_the_gil_does_not_run_during_a_rename(tmp_path: Path) -> None:
    counter = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            counter[0] += 1

    def ran_during(rename: Callable[[Path, Path], None]) -> int:
        hits = 0
        for n in range(50):
            src = tmp_path / f"s{n}"
            src.write_bytes(b"x")
            before = counter[0]
            rename(src, tmp_path / f"d{n}")
            hits += counter[0] != before
        return hits

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        kept = ran_during(fsops.rename)
        let_go = ran_during(os.replace)
    finally:
        stop.set()
        spinner.join()
    if let_go < 25:  # the control: os.replace lets the spinner in, given a free core
        pytest.skip(f"the spinner got no CPU ({let_go} of 50): nothing to compare")
    assert kept <= 10, kept
