"""Federation governance as a fold: proposals, votes, activation, history, lineage."""

from __future__ import annotations

import pytest

import meshbench as mb
from meshbench.core import governance as gov
from meshbench.core.books import Books
from meshbench.core.errors import (
    DoubleVote,
    GovernanceError,
    NotAMember,
    ProposalClosed,
    StaleProposal,
    UnknownFederation,
)
from meshbench.core.governance import FederationSucceeded, GovernanceRules, SuccessorShare
from meshbench.testing.factories import make_identity
from meshbench.testing.governance import admit, create_federation, propose, stamped, vote

T0 = 1_700_000_000_000
SPEC_EXAMPLE = (
    '{"reward_settings": {"worker_percentage": 75, "verifier_percentage": 20,'
    ' "platform_fee_percentage": 5},'
    ' "verification_quorum": {"required_percentage": 66, "minimum_verifiers": 3}}'
)

FED, AUTH = make_identity(100), make_identity(101)
ALICE, BOB, CAROL, DAVE = (make_identity(i) for i in (102, 103, 104, 105))


@pytest.fixture
def books() -> Books:
    b = Books(AUTH.did)
    b.apply(create_federation(FED, AUTH, now_ms=T0))
    for m in (ALICE, BOB, CAROL):
        b.apply(admit(FED, m.did, now_ms=T0))
    return b


def _state(b: Books) -> list[tuple[str, str, object]]:
    return list(b)


def test_three_members_two_approvals_activate(books: Books) -> None:
    frag = mb.MeshPolicyFragment.from_update_json(SPEC_EXAMPLE)
    base = books.policy_for(FED.did)
    assert base.policy_version == 1 and base.reward_settings.worker_percentage == 90
    p = propose(books, FED.did, ALICE, frag, description="Increase worker rewards", now_ms=T0 + 1)
    books.apply(*stamped(AUTH, p))
    books.apply(*stamped(AUTH, vote(p, ALICE, approve=True, now_ms=T0 + 2)))
    assert gov.tally(books, p.cid).status == "Open"
    assert gov.pending_activations(books) == []
    books.apply(*stamped(AUTH, vote(p, BOB, approve=True, now_ms=T0 + 3)))
    t = gov.tally(books, p.cid)
    assert (t.status, t.approvals, t.required, t.members) == ("Approved", 2, 2, 3)
    assert gov.pending_activations(books) == [str(p.cid)]
    books.apply(gov.activation_for(books, p.cid, AUTH, now_ms=T0 + 4))
    new = books.policy_for(FED.did)
    assert new.policy_version == 2 and new.previous_policy_cid == base.cid
    r = new.reward_settings
    assert (r.worker_percentage, r.verifier_percentage, r.platform_fee_percentage) == (75, 20, 5)
    history = gov.policy_history(books, FED.did)
    assert [h.policy_version for h in history] == [1, 2] and history[
        1
    ].previous_policy_cid == history[0].cid
    assert gov.policy_version(books, FED.did, 1) == base
    assert gov.proposal(books, p.cid)["status"] == "Activated"


def test_bad_votes_change_nothing(books: Books) -> None:
    frag = mb.MeshPolicyFragment(updates={"min_fee": 20})
    p = propose(books, FED.did, ALICE, frag, description="fee", now_ms=T0 + 1)
    books.apply(*stamped(AUTH, p))
    books.apply(*stamped(AUTH, vote(p, ALICE, approve=True, now_ms=T0 + 2)))
    before = _state(books)
    with pytest.raises(DoubleVote):
        books.apply(*stamped(AUTH, vote(p, ALICE, approve=False, now_ms=T0 + 3)))
    with pytest.raises(NotAMember):
        books.apply(*stamped(AUTH, vote(p, DAVE, approve=True, now_ms=T0 + 3)))
    with pytest.raises(ProposalClosed):
        books.apply(*stamped(AUTH, vote(p, BOB, approve=True, now_ms=p.expires_at)))
    other = mb.MeshPolicyProposal(
        federation_did=FED.did,
        proposer_did=ALICE.did,
        base_policy_cid=mb.MeshPolicy().cid,
        fragment=frag,
        description="x",
        timestamp=T0,
        expires_at=T0 + 10,
    ).sign(ALICE)
    with pytest.raises(GovernanceError, match="unknown proposal"):
        books.apply(*stamped(AUTH, vote(other, BOB, approve=True, now_ms=T0 + 3)))
    forged = vote(p, BOB, approve=True, now_ms=T0 + 3)
    import msgspec

    forged = msgspec.structs.replace(forged, signature=ALICE.sign(forged.signing_payload()))
    with pytest.raises(mb.InvalidSignature):
        books.apply(*stamped(AUTH, forged))
    assert _state(books) == before


def test_non_member_cannot_propose_and_invalid_fragment_refused(books: Books) -> None:
    with pytest.raises(NotAMember):
        books.apply(
            *stamped(
                AUTH,
                propose(
                    books,
                    FED.did,
                    DAVE,
                    mb.MeshPolicyFragment(updates={"min_fee": 1}),
                    description="x",
                    now_ms=T0 + 1,
                ),
            )
        )
    bad = mb.MeshPolicyFragment(updates={"reward_settings": {"worker_percentage": 50}})
    with pytest.raises(mb.PolicyValidationError, match="sum"):
        books.apply(
            *stamped(AUTH, propose(books, FED.did, ALICE, bad, description="x", now_ms=T0 + 1))
        )
    assert gov.proposals(books, FED.did) == []


def test_rejection_and_activation_checks(books: Books) -> None:
    p = propose(
        books,
        FED.did,
        ALICE,
        mb.MeshPolicyFragment(updates={"min_fee": 5}),
        description="x",
        now_ms=T0 + 1,
    )
    books.apply(*stamped(AUTH, p))
    with pytest.raises(ProposalClosed):  # not approved yet
        gov.activation_for(books, p.cid, AUTH, now_ms=T0 + 2)
    books.apply(*stamped(AUTH, vote(p, BOB, approve=False, now_ms=T0 + 2)))
    books.apply(*stamped(AUTH, vote(p, CAROL, approve=False, now_ms=T0 + 3)))
    assert gov.tally(books, p.cid).status == "Rejected"
    with pytest.raises(ProposalClosed):
        books.apply(*stamped(AUTH, vote(p, ALICE, approve=True, now_ms=T0 + 4)))


def test_forged_activation_refused(books: Books) -> None:
    p = propose(
        books,
        FED.did,
        ALICE,
        mb.MeshPolicyFragment(updates={"min_fee": 5}),
        description="x",
        now_ms=T0 + 1,
    )
    books.apply(*stamped(AUTH, p))
    books.apply(*stamped(AUTH, vote(p, ALICE, approve=True, now_ms=T0 + 2)))
    books.apply(*stamped(AUTH, vote(p, BOB, approve=True, now_ms=T0 + 3)))
    good = gov.activation_for(books, p.cid, AUTH, now_ms=T0 + 4)
    other_policy = books.policy_for(FED.did).apply(mb.MeshPolicyFragment(updates={"min_fee": 999}))
    import msgspec

    evil = msgspec.structs.replace(
        good, policy=other_policy, policy_cid=other_policy.cid, signature=b""
    ).sign(AUTH)
    with pytest.raises(GovernanceError, match="not the active policy amended"):
        books.apply(evil)
    not_auth = msgspec.structs.replace(good, authority=ALICE.did, signature=b"").sign(ALICE)
    with pytest.raises(mb.LedgerError):
        books.apply(not_auth)
    books.apply(good)
    assert books.policy_for(FED.did).min_fee == 5
    with pytest.raises(ProposalClosed):
        books.apply(good)  # an activation cannot be replayed


def test_stale_proposals_are_superseded_not_rebased(books: Books) -> None:
    p1 = propose(
        books,
        FED.did,
        ALICE,
        mb.MeshPolicyFragment(updates={"min_fee": 5}),
        description="a",
        now_ms=T0 + 1,
    )
    p2 = propose(
        books,
        FED.did,
        BOB,
        mb.MeshPolicyFragment(updates={"min_fee": 7}),
        description="b",
        now_ms=T0 + 2,
    )
    books.apply(*stamped(AUTH, p1))
    books.apply(*stamped(AUTH, p2))
    for m in (ALICE, BOB):
        books.apply(*stamped(AUTH, vote(p1, m, approve=True, now_ms=T0 + 3)))
    books.apply(gov.activation_for(books, p1.cid, AUTH, now_ms=T0 + 4))
    assert gov.proposal(books, p2.cid)["status"] == "Superseded"
    with pytest.raises(ProposalClosed):
        books.apply(*stamped(AUTH, vote(p2, CAROL, approve=True, now_ms=T0 + 5)))
    stale = propose(
        books,
        FED.did,
        CAROL,
        mb.MeshPolicyFragment(updates={"min_fee": 9}),
        description="c",
        now_ms=T0 + 6,
    )
    import msgspec

    stale = msgspec.structs.replace(stale, base_policy_cid=p1.base_policy_cid, signature=b"")
    with pytest.raises(StaleProposal):
        books.apply(*stamped(AUTH, stale.sign(CAROL)))


def test_expired_credentials_and_revocation(books: Books) -> None:
    short = admit(FED, DAVE.did, now_ms=T0, ttl_ms=10)
    books.apply(short)
    assert gov.is_member(books, FED.did, DAVE.did, T0 + 5)
    assert not gov.is_member(books, FED.did, DAVE.did, T0 + 10)
    books.apply(
        gov.CredentialRevoked(federation=FED.did, member=CAROL.did, timestamp=T0 + 1).sign(FED)
    )
    assert gov.members(books, FED.did, T0 + 20) == sorted([ALICE.did, BOB.did])
    # two members left: a 51% quorum is 2 of 2
    assert GovernanceRules().required_approvals(2) == 2
    assert GovernanceRules(approval_count=1).required_approvals(5) == 1


def test_credential_must_be_signed_by_the_federation(books: Books) -> None:
    forged = mb.Credential(federation=FED.did, member=DAVE.did, issued_at=T0, expires_at=T0 + 9)
    forged = forged.sign(FED)
    import msgspec

    forged = msgspec.structs.replace(forged, signature=DAVE.sign(forged.signing_payload()))
    with pytest.raises(mb.InvalidSignature):
        books.apply(*stamped(AUTH, forged))
    with pytest.raises(UnknownFederation):
        books.apply(admit(make_identity(999), DAVE.did, now_ms=T0))


def test_ungoverned_federation_authority_sets_policy() -> None:
    b = Books(AUTH.did)
    fed = make_identity(200).did
    new = mb.MeshPolicy(federation=fed, policy_version=2, min_fee=3)
    ev = mb.MeshPolicyActivated(
        authority=AUTH.did,
        policy_cid=new.cid,
        federation_did=fed,
        policy_version=2,
        policy=new,
        timestamp=T0,
    ).sign(AUTH)
    b.apply(ev)
    assert b.policy_for(fed).min_fee == 3


def test_governed_policy_only_through_proposals(books: Books) -> None:
    new = books.policy_for(FED.did).apply(mb.MeshPolicyFragment(updates={"min_fee": 1}))
    ev = mb.MeshPolicyActivated(
        authority=AUTH.did,
        policy_cid=new.cid,
        federation_did=FED.did,
        policy_version=2,
        previous_policy_cid=new.previous_policy_cid,
        policy=new,
        timestamp=T0 + 1,
    ).sign(AUTH)
    with pytest.raises(GovernanceError, match="only through a proposal"):
        books.apply(ev)


def test_rename_carries_members_and_policy(books: Books) -> None:
    p = propose(
        books,
        FED.did,
        ALICE,
        mb.MeshPolicyFragment(updates={"min_fee": 42}),
        description="x",
        now_ms=T0 + 1,
    )
    books.apply(*stamped(AUTH, p))
    for m in (ALICE, BOB):
        books.apply(*stamped(AUTH, vote(p, m, approve=True, now_ms=T0 + 2)))
    books.apply(gov.activation_for(books, p.cid, AUTH, now_ms=T0 + 3))
    new_fed = make_identity(300)
    books.apply(create_federation(new_fed, AUTH, name="renamed", now_ms=T0 + 4))
    books.apply(
        FederationSucceeded(
            federation_did=FED.did,
            kind="rename",
            successors=(SuccessorShare(federation=new_fed.did),),
            timestamp=T0 + 5,
        ).sign(FED)
    )
    assert gov.members(books, new_fed.did, T0 + 6) == sorted(m.did for m in (ALICE, BOB, CAROL))
    carried = books.policy_for(new_fed.did)
    assert carried.min_fee == 42 and carried.federation == new_fed.did
    assert carried.previous_policy_cid == books.policy_for(FED.did).cid
    assert gov.resolve_federation(books, FED.did) == new_fed.did
    with pytest.raises(GovernanceError, match="succeeded"):
        books.apply(
            *stamped(
                AUTH,
                propose(
                    books,
                    FED.did,
                    ALICE,
                    mb.MeshPolicyFragment(updates={"min_fee": 1}),
                    description="x",
                    now_ms=T0 + 7,
                ),
            )
        )
    # the successor governs with the carried members
    q = propose(
        books,
        new_fed.did,
        CAROL,
        mb.MeshPolicyFragment(updates={"min_fee": 43}),
        description="y",
        now_ms=T0 + 8,
    )
    books.apply(q)
    books.apply(*stamped(AUTH, vote(q, CAROL, approve=True, now_ms=T0 + 9)))
    books.apply(*stamped(AUTH, vote(q, BOB, approve=True, now_ms=T0 + 9)))
    assert gov.tally(books, q.cid).status == "Approved"


def test_split_shares_members(books: Books) -> None:
    a, b = make_identity(301), make_identity(302)
    for f in (a, b):
        books.apply(create_federation(f, AUTH, name=f.did[-6:], now_ms=T0 + 1))
    with pytest.raises(NotAMember):
        books.apply(
            FederationSucceeded(
                federation_did=FED.did,
                kind="split",
                timestamp=T0 + 2,
                successors=(
                    SuccessorShare(federation=a.did, members=(DAVE.did,)),
                    SuccessorShare(federation=b.did, members=(BOB.did,)),
                ),
            ).sign(FED)
        )
    books.apply(
        FederationSucceeded(
            federation_did=FED.did,
            kind="split",
            timestamp=T0 + 2,
            carry_policy=False,
            successors=(
                SuccessorShare(federation=a.did, members=(ALICE.did,)),
                SuccessorShare(federation=b.did, members=(BOB.did, CAROL.did)),
            ),
        ).sign(FED)
    )
    assert gov.members(books, a.did, T0 + 3) == [ALICE.did]
    assert gov.members(books, b.did, T0 + 3) == sorted([BOB.did, CAROL.did])
    assert gov.resolve_federation(books, FED.did) == FED.did  # a split has no single heir
    with pytest.raises(mb.SchemaError):
        FederationSucceeded(
            federation_did=FED.did,
            kind="rename",
            timestamp=T0,
            successors=(SuccessorShare(federation=a.did), SuccessorShare(federation=b.did)),
        )


def test_refold_gives_identical_books(books: Books) -> None:
    events = [create_federation(FED, AUTH, now_ms=T0)] + [
        admit(FED, m.did, now_ms=T0) for m in (ALICE, BOB, CAROL)
    ]
    p = propose(
        books,
        FED.did,
        ALICE,
        mb.MeshPolicyFragment.from_update_json(SPEC_EXAMPLE),
        description="x",
        now_ms=T0 + 1,
    )
    batch = stamped(AUTH, p)
    books.apply(*batch)
    events += batch
    for m in (ALICE, BOB):
        batch = stamped(AUTH, vote(p, m, approve=True, now_ms=T0 + 2))
        books.apply(*batch)
        events += batch
    act = gov.activation_for(books, p.cid, AUTH, now_ms=T0 + 3)
    books.apply(act)
    events.append(act)
    again = Books(AUTH.did).fold(mb.decode_object(e.encode()) for e in events)
    assert list(again) == list(books)


class _LiveBooksPolicy:
    """The policy view a node uses: whatever its books say at the moment of asking."""

    def __init__(self) -> None:
        self.harness: object = None

    def policy_for(self, federation_did: str) -> mb.MeshPolicy:
        if self.harness is None:  # while the harness sets itself up
            return mb.MeshPolicy()
        return self.harness.state.books.policy_for(federation_did)  # type: ignore[attr-defined]


def test_activated_policy_pays_the_next_settled_task_75_20_5() -> None:
    from meshbench.core.events import RewardDistributed
    from meshbench.core.protocol import AppendToLedger
    from meshbench.testing.protocol import ProtocolHarness, output_cid

    view = _LiveBooksPolicy()
    h = ProtocolHarness(policies=view)
    view.harness = h
    books = h.state.books
    books.apply(create_federation(h.federation, h.authority, now_ms=h.now))
    trio = h.peers[:3]
    for m in trio:
        books.apply(admit(h.federation, m.did, now_ms=h.now))
    frag = mb.MeshPolicyFragment.from_update_json(SPEC_EXAMPLE)
    p = propose(books, h.federation.did, trio[0], frag, description="spec", now_ms=h.now)
    books.apply(*stamped(h.authority, p))
    for m in trio[:2]:
        books.apply(*stamped(h.authority, vote(p, m, approve=True, now_ms=h.now)))
    books.apply(gov.activation_for(books, p.cid, h.authority, now_ms=h.now))
    assert books.policy_for(h.federation.did).policy_version == 2

    task, a = h.publish_and_assign(fee=100, cost=100)
    good = output_cid("good")
    h.execute(task, dict.fromkeys(a.verifiers, good), worker_output=good)
    rewards = [
        e
        for c in h.log
        if isinstance(c, AppendToLedger)
        for e in c.events
        if isinstance(e, RewardDistributed)
    ]
    roles: dict[str, int] = {}
    for payout in rewards[-1].payouts:
        roles[payout.role] = roles.get(payout.role, 0) + payout.amount
    assert roles == {"worker": 75, "verifier": 20, "platform": 5}
    assert rewards[-1].policy_cid == books.policy_for(h.federation.did).cid


def test_a_second_node_picks_the_policy_up_from_the_dag(tmp_path: object) -> None:
    """Node B replays node A's ledger (every event checked) and reaches the same policy."""
    from pathlib import Path

    from meshbench.store.ledger import Ledger

    root = Path(str(tmp_path))
    with Ledger(root / "a.sqlite", authority=AUTH.did) as a:
        a.append(create_federation(FED, AUTH, now_ms=T0))
        for m in (ALICE, BOB, CAROL):
            a.append(admit(FED, m.did, now_ms=T0))
        frag = mb.MeshPolicyFragment.from_update_json(SPEC_EXAMPLE)
        p = propose(a.books, FED.did, ALICE, frag, description="x", now_ms=T0 + 1)
        a.append(*stamped(AUTH, p))
        for m in (ALICE, BOB):
            a.append(*stamped(AUTH, vote(p, m, approve=True, now_ms=T0 + 2)))
        a.append(gov.activation_for(a.books, p.cid, AUTH, now_ms=T0 + 3))
        with Ledger(root / "b.sqlite", authority=AUTH.did) as b:
            before = b.books.policy_for(FED.did)
            for _, _, event in a.iter_events():
                b.append(mb.decode_object(event.encode()))
            after = b.books.policy_for(FED.did)
            assert before.policy_version == 1 and after == a.books.policy_for(FED.did)
            assert after.reward_settings.worker_percentage == 75
            assert b.verify().ok
