"""SIGKILL during settlements: reopen, verify and rebuild agree, and no token is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from meshbench.store.ledger import Ledger

CHILD = textwrap.dedent(
    """
    import sys
    from meshbench.core.events import RewardDistributed
    from meshbench.sim.simulator import SimConfig, Simulation
    from meshbench.store.ledger import Ledger

    path, block_at = sys.argv[1], int(sys.argv[2])
    sim = Simulation(SimConfig(workers=12, malicious=0.2, faulty=0.2, tasks=400, seed=7))
    sim.attach_ledger(Ledger(path, authority=sim.authority.did))
    settled = 0

    def hook(events):
        global settled
        if any(isinstance(e, RewardDistributed) for e in events):
            settled += 1
            print(f"settling {settled} {len(events)}", flush=True)
            if settled == block_at:
                print("blocked inside the transaction", flush=True)
                sys.stdin.read()  # hold the open transaction until killed

    sim.ledger.before_commit = hook
    sim.run()
    print("finished", flush=True)
    """
)


def _run_until(path, block_at: int, stop_after: int):
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(block_at)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("blocked"):
            break
        if line.startswith("settling"):
            lines += 1
            if lines >= stop_after:
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc


@pytest.mark.parametrize("block_at, stop_after", [(12, 10**9), (10**9, 15)])
def test_sigkill_mid_settlement_loses_nothing(tmp_path, block_at, stop_after):
    path = tmp_path / "ledger.sqlite"
    proc = _run_until(path, block_at, stop_after)
    assert proc.returncode == -signal.SIGKILL
    with Ledger(path) as led:
        events_before = len(led)
        assert events_before > 0
        report = led.verify()
        assert report.ok, report.problems[:5]
        assert report.tokens_minted == report.tokens_held > 0
        rebuilt = led.rebuild()
        assert rebuilt.ok and rebuilt.tables_equal
        # every escrow is either still held or paid out exactly once: never half a settlement
        for key, esc in led.books.table("escrows").items():
            task = led.books.get("tasks", key)
            assert esc["paid"] == (task["state"] == "Settled")
            assert (esc["amount"] == 0) == esc["paid"]
        assert len(led) == events_before
