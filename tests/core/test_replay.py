"""Replaying an old signed object is harmless, for every type a task's life produces.

Through the protocol harness (the authority's AuthorityState): after a task has settled, each
signed object that went into it (task, offer, assignment, commitments, receipt, verdicts,
stake request, peer info, and the authority's own ledger events) is delivered again, both
to the live state and to a state rebuilt from the ledger after a restart. Each replay is
refused with a typed error and leaves the books and every task record exactly as they were.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from meshbench.core.errors import MeshError
from meshbench.core.model import Signed
from meshbench.core.protocol import AppendToLedger, AuthorityState, Broadcast
from meshbench.core.types import TaskIntent
from meshbench.testing.protocol import ProtocolHarness, output_cid


def _fingerprint(state: AuthorityState) -> str:
    tasks = {
        str(cid): {
            "state": rec.state,
            "offers": sorted(rec.offers),
            "assignment": str(rec.assignment.cid) if rec.assignment else None,
            "commitments": sorted(rec.commitments),
            "receipt": str(rec.receipt.cid) if rec.receipt else None,
            "verdicts": sorted(rec.verdicts),
            "timers": rec.timers,
        }
        for cid, rec in state.tasks.items()
    }
    peers = {did: str(p.cid) for did, p in state.peers.items()}
    return json.dumps([state.books.tables(), tasks, peers], default=str, sort_keys=True)


def _settled() -> tuple[ProtocolHarness, TaskIntent, dict[str, Signed], list[Any]]:
    h = ProtocolHarness(peers=5)
    stake = h.stake(h.peers[4], "bond", 10)
    h.feed(stake)
    task, _ = h.publish_and_assign()
    good = output_cid("good")
    rec = h.state.tasks[task.cid]
    offer = next(iter(rec.offers.values()))
    worker = rec.assignment.worker
    commits = {v: h.commit(task, v, good) for v in (worker, *rec.verifiers)}
    for c in commits.values():
        h.feed(c)
    receipt = h.receipt(task, worker, good)
    h.feed(receipt)
    verdicts = [h.verdict(task, v, good, receipt) for v in rec.verifiers]
    for v in verdicts:
        h.feed(v)
    assert h.state.state_of(task.cid) == "Settled"
    objects: dict[str, Signed] = {
        "TaskIntent": task,
        "ComputeOffer": offer,
        "ResultCommitment(worker)": commits[worker],
        "ResultCommitment(verifier)": commits[rec.verifiers[0]],
        "ExecutionReceipt": receipt,
        "VerificationReceipt": verdicts[0],
        "StakeRequest": stake,
        "PeerInfo": h.state.peers[h.peers[0].did],
    }
    ledger: list[Any] = list(h.history)  # the journal and the events, as the ledger holds them
    for command in h.log:
        if isinstance(command, Broadcast | AppendToLedger):
            for obj in command.events if isinstance(command, AppendToLedger) else (command.obj,):
                if isinstance(obj, Signed):
                    objects.setdefault(type(obj).__name__, obj)  # TaskAssigned, escrow, ...
    return h, task, objects, ledger


_H, _TASK, _OBJECTS, _LEDGER = _settled()


@pytest.mark.parametrize("kind", sorted(_OBJECTS))
def test_a_replay_to_the_live_authority_is_refused_and_changes_nothing(kind: str) -> None:
    h = copy.deepcopy(_H)
    obj = copy.deepcopy(_OBJECTS[kind])
    before = _fingerprint(h.state)
    with pytest.raises(MeshError):
        h.state.handle(obj, h.now + 1000)
    assert _fingerprint(h.state) == before


@pytest.mark.parametrize("kind", sorted(_OBJECTS))
def test_a_replay_after_a_restart_is_refused_and_changes_nothing(kind: str) -> None:
    h = copy.deepcopy(_H)
    fresh = AuthorityState(h.authority, policies=h.policies)
    fresh.restore(copy.deepcopy(_LEDGER), h.now)
    assert fresh.state_of(_TASK.cid) == "Settled"
    before = _fingerprint(fresh)
    with pytest.raises(MeshError):
        fresh.handle(copy.deepcopy(_OBJECTS[kind]), h.now + 1000)
    assert _fingerprint(fresh) == before


def test_governance_replays_are_refused_and_change_nothing() -> None:
    """Proposal, votes, activation and credentials delivered again to the books."""
    import meshbench as mb
    from meshbench.core import governance as gov
    from meshbench.core.books import Books
    from meshbench.testing.factories import make_identity
    from meshbench.testing.governance import admit, create_federation, propose, stamped, vote

    t0 = 1_700_000_000_000
    fed, auth = make_identity(100), make_identity(101)
    alice, bob, carol = (make_identity(i) for i in (102, 103, 104))
    books = Books(auth.did)
    history: list[Any] = [create_federation(fed, auth, now_ms=t0)]
    history += [admit(fed, m.did, now_ms=t0) for m in (alice, bob, carol)]
    books.apply(*history)
    frag = mb.MeshPolicyFragment(updates={"min_fee": 20})
    p = propose(books, fed.did, alice, frag, description="fee", now_ms=t0 + 1)
    proposed = stamped(auth, p)  # the authority's clock comes first (issue 18 item 1)
    books.apply(*proposed)
    votes = [vote(p, m, approve=True, now_ms=t0 + 2) for m in (alice, bob)]
    voted = stamped(auth, *votes)
    books.apply(*voted)
    activation = gov.activation_for(books, p.cid, auth, now_ms=t0 + 3)
    books.apply(activation)
    history += [*proposed, *voted, activation]
    before = list(books)
    for old in history:
        try:
            books.apply(copy.deepcopy(old))
        except MeshError:
            pass
        else:  # only the very same credential, or the authority's latest clock stamp, may
            # come again, and it changes nothing (the ledger refuses the duplicate CID anyway)
            assert type(old).__name__ in ("Credential", "AuthorityClock")
        assert list(books) == before, type(old).__name__


def test_an_old_credential_or_revocation_replayed_does_not_change_membership() -> None:
    """Books without a ledger (a peer folding gossip past its dedupe window) see replays too:
    a revoked member is not re-admitted by its old credential, and a re-admitted member is not
    revoked again by the old revocation."""
    from meshbench.core import governance as gov
    from meshbench.core.books import Books
    from meshbench.core.errors import GovernanceError
    from meshbench.testing.factories import make_identity
    from meshbench.testing.governance import admit, create_federation

    t0 = 1_700_000_000_000
    fed, auth, alice = make_identity(100), make_identity(101), make_identity(102)
    books = Books(auth.did)
    books.apply(create_federation(fed, auth, now_ms=t0))
    first = admit(fed, alice.did, now_ms=t0)
    books.apply(first)
    books.apply(first)  # the same credential again: idempotent
    revoked = gov.CredentialRevoked(
        federation=fed.did, member=alice.did, reason="left", timestamp=t0 + 10
    ).sign(fed)
    books.apply(revoked)
    assert not gov.is_member(books, fed.did, alice.did, t0 + 20)
    before = list(books)
    with pytest.raises(GovernanceError, match="revoked"):
        books.apply(first)
    assert list(books) == before and not gov.is_member(books, fed.did, alice.did, t0 + 20)
    again = admit(fed, alice.did, now_ms=t0 + 30)  # a new credential does re-admit
    books.apply(again)
    assert gov.is_member(books, fed.did, alice.did, t0 + 40)
    before = list(books)
    for old in (revoked, first):
        with pytest.raises(GovernanceError):
            books.apply(old)
        assert list(books) == before
    assert gov.is_member(books, fed.did, alice.did, t0 + 40)
