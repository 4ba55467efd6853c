"""Every shell block and Python snippet of README.md, run as written, top to bottom.

The blocks run in a fresh working folder (``datasets``, ``README.md`` and ``.venv`` linked
from the repository) with a temporary ``HOME`` and no ``MESHBENCH_HOME``, on 127.0.0.1 only.
One thing is shared with the host: the compiled CPython runtime of the python executor
(``MESHBENCH_PYTHON_CACHE``, the cache ``make python-runtime`` fills), which a fresh
``HOME`` would otherwise compile again (minutes on two cores, past the tasks' deadline) for
nothing the README shows.
Shell blocks share one session: each starts with the variables exported and the folder
left by the one before (as if typed into one terminal). Python blocks run as scripts in
that folder, with that environment. A marker comment on the line before a block changes
how it runs:

* ``<!-- readme-test: background until "TEXT" -->``: a long-running server; it runs in the
  background until the test ends, and the next block starts once TEXT is in its output;
* ``<!-- readme-test: skip REASON -->``: not run (a REASON is required; use it for what
  cannot run inside the test suite, e.g. ``make test`` itself).

``json`` blocks are MeshPolicy fragments: each must apply to the default policy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<kind>background|skip)\b(?P<rest>.*?)-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
BLOCK_TIMEOUT_S = 240
READY_TIMEOUT_S = 90
TOTAL_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: str | None = None  # "background" | "skip"
    arg: str = ""  # the marker's TEXT (background) or REASON (skip)

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the marker comment just above it."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        marker, arg = None, ""
        prev = lines[start - 1].strip() if start > 0 else ""
        mm = MARKER.search(prev)
        if mm:
            marker, arg = mm["kind"], mm["rest"].strip()
            if marker == "background":
                until = re.fullmatch(r'until\s+"(.+)"', arg)
                assert until, f'README.md:{start + 1}: write background until "TEXT"'
                arg = until[1]
        blocks.append(Block(start + 1, m["lang"], "\n".join(body) + "\n", marker, arg))
    return blocks


def test_the_block_parser_reads_markers() -> None:
    text = (
        'x\n<!-- readme-test: background until "ready" -->\n```bash\nserve\n```\n'
        "<!-- readme-test: skip needs two hosts -->\n```python\nprint(1)\n```\n```\nlayout\n```\n"
    )
    a, b, c = readme_blocks(text)
    assert (a.lang, a.marker, a.arg, a.code) == ("bash", "background", "ready", "serve\n")
    assert (b.lang, b.marker, b.arg) == ("python", "skip", "needs two hosts")
    assert (c.lang, c.marker) == ("", None)


def test_every_skipped_block_says_why() -> None:
    for block in readme_blocks(README.read_text()):
        if block.marker == "skip":
            assert len(block.arg) > 10, f"{block}: a skipped block needs a reason"


def test_every_json_block_is_a_valid_policy_update() -> None:
    from meshbench.core.policy import MeshPolicy, MeshPolicyFragment

    blocks = [b for b in readme_blocks(README.read_text()) if b.lang == "json"]
    assert blocks
    for block in blocks:
        MeshPolicy().apply(MeshPolicyFragment(updates=json.loads(block.code)))


class Session:
    """One terminal: shell blocks share their exported variables and working folder."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work = work
        self.env = env
        self.state = work.parent / "session.sh"  # what the last block left: exports, cwd
        self.state.write_text(f"cd {_q(str(work))}\n")
        self.background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
        # the variables every bash has (not saved between blocks)
        self.baseline = subprocess.run(
            ["bash", "-c", "compgen -v"], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        self.deadline = time.monotonic() + TOTAL_TIMEOUT_S

    def _script(self, block: Block, *, save: bool) -> str:
        lines = [f"source {_q(str(self.state))}", "set -e -o pipefail", block.code]
        if save:
            # keep what a terminal would: exports, the block's own variables, the folder
            state = _q(str(self.state))
            lines += [
                "set +e",
                f"{{ export -p; for __v in $(compgen -v); do "
                f'case " {" ".join(self.baseline)} __v " in *" $__v "*) ;; '
                f'*) declare -p "$__v" 2>/dev/null;; esac; done; '
                f'echo cd "$(printf %q "$PWD")"; }} > {state}.new',
                f"mv {state}.new {state}",
            ]
        return "\n".join(lines)

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the README's blocks ran past {TOTAL_TIMEOUT_S} s")
        return min(BLOCK_TIMEOUT_S, left)

    def shell(self, block: Block) -> None:
        proc = subprocess.run(
            ["bash", "-c", self._script(block, save=True)],
            env=self.env,
            capture_output=True,
            timeout=self._timeout(),
            start_new_session=True,
        )
        _check(block, proc.returncode, proc.stdout, proc.stderr)

    def python(self, block: Block) -> None:
        script = self.work.parent / f"readme_{block.line}.py"
        script.write_text(block.code)
        env = {**self.env, **self._exported()}
        proc = subprocess.run(
            [sys.executable, str(script)],
            cwd=self._cwd(),
            env=env,
            capture_output=True,
            timeout=self._timeout(),
            start_new_session=True,
        )
        _check(block, proc.returncode, proc.stdout, proc.stderr)

    def start_background(self, block: Block) -> None:
        log = self.work.parent / f"background_{block.line}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", self._script(block, save=False)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((block, proc, log))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while block.arg not in log.read_text(errors="replace"):
            if proc.poll() is not None:
                pytest.fail(f"{block} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{block}: no {block.arg!r} in {READY_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.1)  # polling a log file the server writes: there is no event to wait on

    def _exported(self) -> dict[str, str]:
        out = subprocess.run(
            ["bash", "-c", f"source {_q(str(self.state))}; env -0"],
            env=self.env,
            capture_output=True,
            check=True,
        ).stdout
        pairs = (item.split(b"=", 1) for item in out.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs}

    def _cwd(self) -> Path:
        out = subprocess.run(
            ["bash", "-c", f"source {_q(str(self.state))}; pwd"],
            env=self.env,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        return Path(out.strip())

    def close(self) -> None:
        for _, proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for block, proc, log in self.background:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
                print(f"{block} needed SIGKILL; its log:\n{log.read_text()[-2000:]}")


def _q(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _check(block: Block, code: int, stdout: bytes, stderr: bytes) -> None:
    if code != 0:
        pytest.fail(
            f"{block} failed with exit status {code}\n--- code:\n{block.code}"
            f"--- stdout:\n{stdout.decode(errors='replace')[-4000:]}"
            f"\n--- stderr:\n{stderr.decode(errors='replace')[-4000:]}"
        )


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    work = tmp_path / "work"
    work.mkdir()
    (work / "datasets").symlink_to(ROOT / "datasets")
    (work / "README.md").symlink_to(README)
    (work / ".venv").symlink_to(Path(sys.prefix))
    home = tmp_path / "home"
    home.mkdir()
    from meshbench.exec.pyruntime import runtime_cache_dir

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MESHBENCH_", "PYTEST_", "LIBP2P_")) and k != "VIRTUAL_ENV"
    }
    env.update(
        MESHBENCH_PYTHON_CACHE=str(runtime_cache_dir()),
        HOME=str(home),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        PYTHONUNBUFFERED="1",
        PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p),
    )
    s = Session(work, env)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(TOTAL_TIMEOUT_S + 120)
def test_every_readme_block_runs_as_written(session: Session) -> None:
    ran = 0
    for block in readme_blocks(README.read_text()):
        if block.marker == "skip" or block.lang not in ("bash", "python"):
            continue
        if block.marker == "background":
            assert block.lang == "bash", f"{block}: only shell blocks run in the background"
            session.start_background(block)
        elif block.lang == "bash":
            session.shell(block)
        else:
            session.python(block)
        ran += 1
    assert ran >= 10
