"""Hypothesis properties: conservation, no double payout, quorum safety, exact splits."""

from __future__ import annotations

from collections import Counter

import dag_cbor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbench.core import encoding, escrow, quorum
from meshbench.core.errors import LedgerError, MeshError
from meshbench.core.events import RewardDistributed
from meshbench.core.policy import MeshPolicy
from meshbench.core.protocol import AppendToLedger
from meshbench.testing.factories import make_identity
from meshbench.testing.protocol import ProtocolHarness, output_cid
from meshbench.testing.strategies import actions, ipld_values, policies

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
N_PEERS = 6
DIDS = [make_identity(i).did for i in range(10)]


def _run(h: ProtocolHarness, steps: list[tuple]) -> None:
    tasks: list = []
    outputs: dict[tuple, object] = {}
    for step in steps:
        kind = step[0]
        try:
            if kind == "publish":
                t = h.task(fee=step[1])
                h.feed(t)
                tasks.append(t)
            elif kind == "advance":
                h.advance(step[1])
            elif kind == "stake":
                h.feed(h.stake(h.peers[step[1]], step[2], step[3]))
            elif not tasks:
                continue
            else:
                t = tasks[step[1] % len(tasks)]
                rec = h.state.tasks[t.cid]
                if kind == "offer":
                    h.feed(h.offer(t, h.peers[step[2]], cost=step[3]))
                elif kind == "fire":
                    if step[2] in rec.timers:
                        h.fire(t, step[2])
                elif kind == "commit":
                    did = h.peers[step[2]].did
                    outputs[(t.cid, did)] = output_cid(step[3])
                    h.feed(h.commit(t, did, output_cid(step[3])))
                elif kind == "commit_worker" and rec.assignment is not None:
                    did = rec.assignment.worker
                    outputs[(t.cid, did)] = output_cid(step[2])
                    h.feed(h.commit(t, did, output_cid(step[2])))
                elif kind == "reveal" and rec.assignment is not None:
                    did = rec.assignment.worker
                    h.feed(h.receipt(t, did, outputs.get((t.cid, did), output_cid("good"))))
                elif kind == "verdict" and rec.receipt is not None:
                    did = h.peers[step[2]].did
                    out = outputs.get((t.cid, did), output_cid("good"))
                    h.feed(h.verdict(t, did, out, rec.receipt))
        except MeshError:
            pass
        h.state.books.check_conservation()


@FAST
@given(actions(N_PEERS))
def test_tokens_are_conserved_and_no_escrow_is_paid_twice(steps):
    h = ProtocolHarness(peers=N_PEERS)
    minted = h.state.books.minted()
    _run(h, steps)
    books = h.state.books
    books.check_conservation()
    assert books.token_total() == minted
    paid = Counter(
        e.task_cid
        for c in h.log
        if isinstance(c, AppendToLedger)
        for e in c.events
        if isinstance(e, RewardDistributed)
    )
    assert all(n == 1 for n in paid.values())
    for task_cid in paid:  # a second payout of the same escrow is refused by the books
        reward = next(
            e
            for c in h.log
            if isinstance(c, AppendToLedger)
            for e in c.events
            if isinstance(e, RewardDistributed) and e.task_cid == task_cid
        )
        try:
            books.apply(reward)
        except LedgerError:
            pass
        else:  # pragma: no cover
            raise AssertionError("double payout accepted")


@FAST
@given(policies(), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9))
def test_quorum_never_accepts_with_too_few_dishonest_approvals(policy, n, dishonest, drawn_extra):
    dishonest = min(dishonest, n)
    votes = {f"v{i}": i < dishonest for i in range(n)}  # dishonest approve a wrong result
    drawn = n + drawn_extra
    decision = quorum.tally(votes, drawn=drawn, policy=policy)
    if (
        dishonest < quorum.needed_approvals(n, policy)
        or n < policy.verification_quorum.minimum_verifiers
    ):
        assert decision != "Accepted"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 1), st.sampled_from([66, 75, 100]))
def test_protocol_never_accepts_a_wrong_result_with_a_dishonest_minority(dishonest, pct):
    policy = MeshPolicy.from_json(
        f'{{"verification_quorum": {{"required_percentage": {pct}, "minimum_verifiers": 3,'
        f' "maximum_verifiers": 5}}}}'
    )
    h = ProtocolHarness(peers=8, policy=policy)
    task, a = h.publish_and_assign()
    bad, good = output_cid("bad"), output_cid("good")
    outputs = {v: (bad if i < dishonest else good) for i, v in enumerate(a.verifiers)}
    h.execute(task, outputs, worker_output=bad)
    rec = h.state.tasks[task.cid]
    for v in rec.verifiers:  # escalated verifiers are honest
        if v not in rec.commitments and rec.state == "Disputed":
            h.feed(h.commit(task, v, good))
            if rec.state == "Disputed":
                h.feed(h.verdict(task, v, good, rec.receipt))
    assert h.state.books.task(task.cid)["outcome"] != "Accepted"


@FAST
@given(
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    policies(),
    st.lists(st.integers(1, 10**6), max_size=7),
    st.booleans(),
    st.integers(0, 1_000_000),
)
def test_settlement_pays_exactly_the_fee(fee, price, policy, weights, on_time, quality):
    price = min(price, fee)
    lines = escrow.settle_accepted(
        fee=fee,
        price=price,
        publisher=DIDS[0],
        worker=DIDS[1],
        treasury=DIDS[2],
        verifiers=[(DIDS[3 + i], w) for i, w in enumerate(weights)],
        policy=policy,
        on_time=on_time,
        quality_ppm=quality,
    )
    assert sum(p.amount for p in lines) == fee
    assert all(p.amount >= 0 for p in lines)


@settings(max_examples=200, deadline=None)
@given(ipld_values)
def test_fast_encoder_writes_exactly_what_dag_cbor_writes(value):
    assert encoding.encode(value) == dag_cbor.encode(value)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(10, 300),  # fee
            st.integers(0, 300),  # cost
            st.sampled_from(["good", "bad", "absent"]),  # worker
            st.lists(st.sampled_from(["good", "bad", "absent"]), min_size=7, max_size=7),
            st.sampled_from([None, "execution", "verification", "deadline"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_settlements_under_random_behaviour_conserve_tokens(scenarios):
    h = ProtocolHarness(peers=9)
    minted = h.state.books.minted()
    for fee, cost, worker_out, verifier_outs, timeout in scenarios:
        try:
            task, _ = h.publish_and_assign(fee=fee, cost=min(cost, fee))
        except (MeshError, AssertionError):
            continue
        rec = h.state.tasks[task.cid]
        outs = {
            v: output_cid(o)
            for v, o in zip(rec.verifiers, verifier_outs, strict=False)
            if o != "absent"
        }
        try:
            if worker_out != "absent":
                h.execute(task, outs, worker_output=output_cid(worker_out))
            for _ in range(3):  # disputes: new verifiers act too
                if rec.state not in ("Disputed",):
                    break
                for i, v in enumerate(rec.verifiers):
                    if v not in rec.commitments and rec.state == "Disputed":
                        o = output_cid(
                            verifier_outs[i % 7] if verifier_outs[i % 7] != "absent" else "good"
                        )
                        h.feed(h.commit(task, v, o))
                        if rec.state == "Disputed":
                            h.feed(h.verdict(task, v, o, rec.receipt))
            if timeout and timeout in rec.timers:
                h.advance(60 * 60 * 1000)
                h.fire(task, timeout)
        except MeshError:
            pass
        h.state.books.check_conservation()
    assert h.state.books.token_total() == minted
    paid = Counter(
        e.task_cid
        for c in h.log
        if isinstance(c, AppendToLedger)
        for e in c.events
        if isinstance(e, RewardDistributed)
    )
    assert all(n == 1 for n in paid.values())


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.sampled_from(["raw", "dag-cbor"]))
def test_cid_text_keys_are_the_standard_base32_form(data, codec):
    import multiformats

    from meshbench.core.books import cid_key
    from meshbench.core.cid import CID

    c = encoding.blob_cid(data) if codec == "raw" else encoding.object_cid(data)
    assert cid_key(c) == str(c) == multiformats.CID.decode(str(c)).encode("base32")
    assert cid_key(CID.decode(bytes(c))) == str(c)  # decoded from bytes too
    assert encoding.parse_cid(c, codec=codec) == c
