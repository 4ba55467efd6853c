"""Property: whatever events are offered to the ledger, tokens are conserved and a refused
append writes nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshbench.core.errors import MeshError
from meshbench.core.events import (
    Mint,
    StakeBonded,
    StakeSlashed,
    StakeUnbonding,
    StakeWithdrawn,
    Transfer,
)
from meshbench.store.ledger import Ledger
from meshbench.testing.factories import make_identity

AUTH = make_identity(1000)
PEOPLE = [make_identity(i) for i in range(3)]

op = st.one_of(
    st.tuples(st.just("mint"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("transfer"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("bond"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("unbond"), st.integers(0, 2), st.integers(1, 500), st.integers(0, 5)),
    st.tuples(st.just("withdraw"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("slash"), st.integers(0, 2), st.integers(1, 500)),
    st.tuples(st.just("tick"), st.integers(1, 10)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=25))
def test_any_event_sequence_conserves_tokens(ops):
    with (
        tempfile.TemporaryDirectory() as d,
        Ledger(Path(d) / "l.sqlite", authority=AUTH.did) as led,
    ):
        t, nonce = 1, 0
        for o in ops:
            a = AUTH.did
            try:
                if o[0] == "mint":
                    ev = Mint(authority=a, account=PEOPLE[o[1]].did, amount=o[2], timestamp=t)
                    events = [ev.sign(AUTH)]
                elif o[0] == "transfer":
                    nonce += 1
                    p = PEOPLE[o[1]]
                    ev = Transfer(
                        sender=p.did,
                        recipient=PEOPLE[o[2]].did,
                        amount=o[3],
                        nonce=nonce,
                        timestamp=t,
                    )
                    events = [ev.sign(p)]
                elif o[0] == "bond":
                    events = [
                        StakeBonded(
                            authority=a, account=PEOPLE[o[1]].did, amount=o[2], timestamp=t
                        ).sign(AUTH)
                    ]
                elif o[0] == "unbond":
                    ev = StakeUnbonding(
                        authority=a,
                        account=PEOPLE[o[1]].did,
                        amount=o[2],
                        unlock_at=t + o[3],
                        timestamp=t,
                    )
                    events = [ev.sign(AUTH)]
                elif o[0] == "withdraw":
                    events = [
                        StakeWithdrawn(
                            authority=a, account=PEOPLE[o[1]].did, amount=o[2], timestamp=t
                        ).sign(AUTH)
                    ]
                elif o[0] == "slash":
                    ev = StakeSlashed(
                        authority=a,
                        account=PEOPLE[o[1]].did,
                        recipient=PEOPLE[0].did,
                        amount=o[2],
                        offence="wrong_vote",
                        timestamp=t,
                    )
                    events = [ev.sign(AUTH)]
                else:
                    t += o[1]
                    continue
            except MeshError:
                continue
            before = (len(led), led.stored_tables())
            try:
                led.append(*events)
            except MeshError:
                assert (len(led), led.stored_tables()) == before
            led.books.check_conservation()
        report = led.verify()
        assert report.ok, report.problems
        assert report.tokens_minted == report.tokens_held
