"""The fold: registry extension, atomic batches, escrow rules, reputation, policy reads."""

from __future__ import annotations

from typing import ClassVar

import pytest

from meshbench.core import reputation
from meshbench.core.books import ECONOMY_RULES, LEDGER_RULES, Books
from meshbench.core.encoding import CID
from meshbench.core.errors import InsufficientFunds, LedgerError
from meshbench.core.events import MeshPolicyActivated, Mint, Transfer
from meshbench.core.governance import GOVERNANCE_RULES
from meshbench.core.model import DID, Signed, TimestampMs
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.core.protocol import AppendToLedger, SnapshotReputation
from meshbench.core.types import CapabilityScope, ReputationSnapshot
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid

AUTH, ALICE, BOB = make_identity(1000), make_identity(1), make_identity(2)


def mint(who, amount):
    return Mint(authority=AUTH.did, account=who.did, amount=amount, timestamp=1).sign(AUTH)


def test_rule_sets_are_explicit_values_a_module_can_extend():
    from meshbench.core import model

    class FederationJoined(Signed, tag="test.FederationJoined"):
        """An event type a later module defines and folds with its own rule."""

        SIGNER: ClassVar[str] = "member"
        member: DID
        timestamp: TimestampMs
        parents: tuple[CID, ...] = ()

    def fold_joined(books: Books, ev: FederationJoined) -> None:
        books.put("members", ev.member, {"since": ev.timestamp})

    try:
        books = Books(AUTH.did, rules={**LEDGER_RULES, FederationJoined: fold_joined})
        books.apply(FederationJoined(member=ALICE.did, timestamp=5).sign(ALICE))
        assert books.get("members", ALICE.did) == {"since": 5}
        plain = Books(AUTH.did)  # the ledger's own rules are untouched by that extension
        plain.apply(FederationJoined(member=ALICE.did, timestamp=5).sign(ALICE))
        assert plain.get("members", ALICE.did) is None
        with pytest.raises(TypeError):
            LEDGER_RULES[FederationJoined] = fold_joined  # type: ignore[index]
        assert set(LEDGER_RULES) == set(ECONOMY_RULES) | set(GOVERNANCE_RULES)
        assert not set(ECONOMY_RULES) & set(GOVERNANCE_RULES)  # no handler is shadowed
    finally:
        model._REGISTRY.pop("test.FederationJoined", None)  # other tests list every type


def test_a_refused_event_leaves_the_whole_batch_unapplied():
    books = Books(AUTH.did)
    books.apply(mint(ALICE, 10))
    before = books.tables()
    bad = Transfer(sender=ALICE.did, recipient=BOB.did, amount=50, nonce=1, timestamp=2)
    with pytest.raises(InsufficientFunds):
        books.apply(mint(BOB, 5), bad.sign(ALICE))
    assert books.tables() == before
    books.check_conservation()


def test_only_the_authority_mints():
    books = Books(AUTH.did)
    with pytest.raises(LedgerError):
        books.apply(Mint(authority=ALICE.did, account=ALICE.did, amount=1, timestamp=1).sign(ALICE))


def test_activated_policy_is_what_books_and_the_default_view_read():
    books = Books(AUTH.did)
    fed = make_identity(1001).did
    new = MeshPolicy().apply(MeshPolicyFragment(updates={"min_fee": 25}))
    books.apply(
        MeshPolicyActivated(
            authority=AUTH.did,
            policy_cid=new.cid,
            federation_did=fed,
            policy_version=new.policy_version,
            policy=new,
            timestamp=3,
        ).sign(AUTH)
    )
    assert books.policy_for(fed).min_fee == 25
    assert books.policy_for(ALICE.did) == MeshPolicy()


def test_reputation_rewards_good_work_punishes_bad_and_decays():
    p = MeshPolicy()
    good = reputation.observe(None, "exec_ok", 0, p)
    bad = reputation.observe(None, "exec_bad", 0, p)
    assert bad["score"] < reputation.NEW_PEER_SCORE < good["score"]
    wrong = reputation.observe(None, "verify_bad", 0, p)
    right = reputation.observe(None, "verify_ok", 0, p)
    assert wrong["score"] < reputation.NEW_PEER_SCORE < right["score"]
    assert reputation.NEW_PEER_SCORE - wrong["score"] > right["score"] - reputation.NEW_PEER_SCORE
    ten_days = 10 * reputation.DAY_MS
    assert reputation.decayed(good, ten_days, p) == pytest.approx(good["score"] * 0.95**10)


def test_min_fee_scales_with_scope():
    p = MeshPolicy()
    assert p.min_fee_for(CapabilityScope()) == p.min_fee
    assert p.min_fee_for(CapabilityScope(memory_mb=1128)) == p.min_fee + 10
    assert MeshPolicyFragment(updates={"penalties": {"no_show_percentage": 5}})


def test_reputation_snapshots_are_signed_events_of_the_fold():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    h.execute(task, {v: output_cid("good") for v in a.verifiers}, worker_output=output_cid("good"))
    [cmd] = h.feed(SnapshotReputation(federation=h.federation.did))
    assert isinstance(cmd, AppendToLedger)
    snaps = [e for e in cmd.events if isinstance(e, ReputationSnapshot)]
    assert {s.peer for s in snaps} == {a.worker, *a.verifiers}
    assert all(s.verify() and s.score > 0.5 for s in snaps)
    assert h.state.books.get("snapshots", a.worker)["score"] == next(
        s.score for s in snaps if s.peer == a.worker
    )


def test_ledger_task_state_follows_the_lifecycle():
    h = ProtocolHarness()
    task = h.task()
    h.feed(task)
    states = [h.state.books.task(task.cid)["state"]]
    h.feed(h.offer(task, h.peers[0]))
    states.append(h.state.books.task(task.cid)["state"])
    h.advance(5_000)
    h.fire(task, "offers")
    a = h.state.tasks[task.cid].assignment
    states.append(h.state.books.task(task.cid)["state"])
    good = output_cid("good")
    h.feed(h.commit(task, a.worker, good))
    states.append(h.state.books.task(task.cid)["state"])
    for v in a.verifiers:
        h.feed(h.commit(task, v, good))
    receipt = h.receipt(task, a.worker, good)
    h.feed(receipt)
    states.append(h.state.books.task(task.cid)["state"])
    for v in a.verifiers:
        h.feed(h.verdict(task, v, good, receipt))
    states.append(h.state.books.task(task.cid)["state"])
    assert states == ["Published", "Offered", "Assigned", "Executed", "Verifying", "Settled"]
