"""The runtime end to end: real wasm executions, real signatures, real ledger.

Each test has its own mesh on a :class:`ManualClock` (virtual time: a deadline passes when
the test advances the clock, never by waiting), so no test depends on another's tasks.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import meshbench as mb
from meshbench.exec.wasm import WasmExecutor
from meshbench.runtime.clock import ManualClock
from meshbench.runtime.mesh import Mesh
from meshbench.store.frames import SCHEMAS

WASM = Path(__file__).resolve().parents[2] / "datasets" / "wasm"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def mesh(tmp_path: Path, clock: ManualClock) -> Mesh:
    """Five honest workers (quorums of two verifiers or more): every task is accepted."""
    with Mesh.in_process(
        workers=5,
        data_dir=tmp_path / "mesh",
        policy={"verification_quorum": {"minimum_verifiers": 2}},
        clock=clock,
    ) as m:
        yield m


@pytest.fixture
def cheats(tmp_path: Path, clock: ManualClock) -> Mesh:
    """Two of five workers cheat; once their bonds are slashed below min_stake only three
    peers remain eligible, so the quorum may use two verifiers. Selection ignores reputation
    here, so the cheaters do get tasks to execute (with it, honest veterans outrank them
    from the first settled task and a cheater might only ever verify)."""
    with Mesh.in_process(
        workers=5,
        data_dir=tmp_path / "cheats",
        behaviours={0: "wrong", 1: "lazy"},
        policy={
            "verification_quorum": {"minimum_verifiers": 2},
            "selection": {"reputation_weight": 0.0},
        },
        clock=clock,
    ) as m:
        yield m


def test_results_are_verified_re_executions(cheats: Mesh) -> None:
    mesh = cheats
    wasm = (WASM / "sha256.wasm").read_bytes()
    inputs = [f"input {i}".encode() for i in range(10)]
    handles = [mesh.publish(wasm, x, fee=100, verifiers=3) for x in inputs]
    results = [h.result(timeout=60) for h in handles]
    expected = [WasmExecutor().run(wasm, x).output for x in inputs]
    agents = mesh.node.backend.agents
    for r, want in zip(results, expected, strict=True):
        assert r.receipt is not None
        # verifiers re-execute honestly (the cheats cheat only as workers): exactly the
        # honest workers' results are accepted
        honest = agents[r.receipt.worker].behaviour == "honest"
        assert r.outcome == ("Accepted" if honest else "Rejected")
        if r.accepted:
            assert r.output == want and r.output_cid == mb.blob_cid(want)
            assert all(v.approved for v in r.verifications) and len(r.verifications) >= 2
        else:  # a dishonest worker was chosen: caught, and the publisher refunded in full
            assert r.output is None
            assert r.receipt.output_cid != mb.blob_cid(want)
            refunds = [p for p in r.settlement.payouts if p.role == "refund"]
            assert sum(p.amount for p in refunds) == 100
    assert mesh.node.verify_ledger().ok


def test_frames_have_their_documented_schemas(mesh: Mesh) -> None:
    mesh.publish(WASM / "hello.wasm", b"").result(timeout=60)
    for name in SCHEMAS:
        frame = getattr(mesh, name)()
        assert isinstance(frame, pl.DataFrame)
        assert dict(frame.schema) == SCHEMAS[name], name
        if name not in ("reputation", "slashes", "audits"):  # audits: sampling is off here
            assert frame.height > 0, name
    offers = mesh.offers()
    per_task = offers.group_by("task_cid").agg(pl.col("selected").sum())
    assert (per_task["selected"] <= 1).all()
    minted = mesh.events().filter(pl.col("type") == "Mint").height
    assert minted == 6  # the five workers and the publisher were funded by genesis events


def test_reputation_separates_honest_from_dishonest(cheats: Mesh) -> None:
    mesh = cheats
    wasm = (WASM / "wordcount.wasm").read_bytes()
    for i in range(12):
        mesh.publish(wasm, f"some words {i}".encode()).result(timeout=60)
    rep = {r["peer"]: r["score"] for r in mesh.reputation().iter_rows(named=True)}
    agents = mesh.node.backend.agents
    # a cheater cheats as the worker only: one the draws never made a worker has verified
    # honestly all along (the draws depend on the run's keys), and its score says so
    receipts = mesh.receipts()
    worked = set(receipts.filter(pl.col("kind") == "execution")["peer"].to_list())
    honest = [rep[d] for d, a in agents.items() if a.behaviour == "honest" and d in rep]
    bad = [rep[d] for d, a in agents.items() if a.behaviour != "honest" and d in worked]
    assert bad and min(honest) > max(bad)


def test_bad_publications_are_refused_and_change_nothing(mesh: Mesh) -> None:
    before = mesh.node.books_tables()
    with pytest.raises(mb.ProtocolError, match="not in this mesh"):
        mesh.publish(mb.blob_cid(b"never stored"), b"x")
    with pytest.raises(mb.ProtocolError, match="below the minimum"):
        mesh.publish(WASM / "hello.wasm", b"", fee=1)
    with pytest.raises(mb.ProtocolError, match="no such file"):
        mesh.publish(WASM / "missing.wasm", b"")
    assert mesh.node.books_tables() == before


def test_no_eligible_worker_expires_and_refunds(mesh: Mesh, clock: ManualClock) -> None:
    huge = mb.CapabilityScope(memory_mb=60_000)
    h = mesh.publish(WASM / "hello.wasm", b"", fee=5_000, scope=huge, deadline_s=1.0)
    clock.advance(999)
    assert not h.done()
    clock.advance(1)  # the deadline: the node expires the task before advance returns
    assert h.done()
    r = h.result(timeout=0)
    assert r.outcome == "Expired" and r.output is None
    states = mesh.escrow().filter(pl.col("task_cid") == str(h.cid))["to_state"].to_list()
    assert states[0] == "Created" and states[-1] == "Expired"
    refunded = mesh.payouts().filter(pl.col("task_cid") == str(h.cid))
    assert refunded["amount"].sum() == 5_000 and set(refunded["role"]) == {"refund"}


def test_policy_change_applies_without_restart(mesh: Mesh) -> None:
    new = mesh.set_policy(
        mb.MeshPolicyFragment(
            updates={
                "reward_settings": {
                    "worker_percentage": 70,
                    "verifier_percentage": 20,
                    "platform_fee_percentage": 10,
                }
            }
        )
    )
    r = mesh.publish(WASM / "hello.wasm", b"").result(timeout=60)
    assert r.settlement is not None and r.settlement.policy_cid == new.cid


def test_private_input_is_opened_only_by_the_chosen_peers(mesh: Mesh) -> None:
    wasm = (WASM / "sha256.wasm").read_bytes()
    secret = b"a secret input only the chosen peers may read"
    h = mesh.publish(wasm, secret, private=True, verifiers=2)
    r = h.result(timeout=60)
    rec = mesh.node.records[h.cid]
    assert r.accepted and r.output == WasmExecutor().run(wasm, secret).output
    assert h.task.input_cid != mb.blob_cid(secret)  # the task names the ciphertext
    chosen = {r.receipt.worker, *(v.verifier for v in r.verifications)}
    holders = {s.recipient for s in rec.envelope.recipients}
    assert holders == chosen | {mesh.publisher.did}
    outsiders = [a for d, a in mesh.node.backend.agents.items() if d not in holders]
    assert len(outsiders) == 2  # five workers, one chosen to execute and two to verify
    ciphertext = mesh.node.blobs.get(h.task.input_cid)
    from meshbench.store.blobs import decrypt

    for agent in outsiders:
        with pytest.raises(mb.DecryptionError, match="not a recipient"):
            decrypt(ciphertext, rec.envelope, agent.identity)


def test_a_reopened_mesh_resumes_from_its_ledger(tmp_path: Path) -> None:
    wasm = (WASM / "hello.wasm").read_bytes()
    clock = ManualClock()
    with Mesh.in_process(workers=4, data_dir=tmp_path, clock=clock) as first:
        assert first.publish(wasm, b"").result(timeout=60).accepted
        minted = first.events().filter(pl.col("type") == "Mint").height
        events = first.events().height
    clock.advance(60_000)  # restarted a minute later
    with Mesh.in_process(workers=4, data_dir=tmp_path, clock=clock) as again:
        # the same identities, balances and reputation: nothing minted twice
        assert again.events().filter(pl.col("type") == "Mint").height == minted
        assert again.publish(wasm, b"").result(timeout=60).accepted
        assert again.events().height > events
        assert again.node.verify_ledger().ok


def test_private_input_plaintext_is_never_stored(mesh: Mesh) -> None:
    secret = b"never stored in the clear"
    h = mesh.publish(WASM / "hello.wasm", secret, private=True, verifiers=2)
    assert h.result(timeout=60).accepted
    assert not mesh.node.blobs.has(mb.blob_cid(secret))
