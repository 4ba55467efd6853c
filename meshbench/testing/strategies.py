"""Hypothesis strategies for protocol properties (used by tests, notebooks, extensions)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from meshbench.core.policy import MeshPolicy, RewardSettings, VerificationQuorum

__all__ = ["actions", "ipld_values", "policies", "reward_settings"]


@st.composite
def reward_settings(draw: st.DrawFn) -> RewardSettings:
    w = draw(st.integers(0, 100))
    v = draw(st.integers(0, 100 - w))
    return RewardSettings(
        worker_percentage=w,
        verifier_percentage=v,
        platform_fee_percentage=100 - w - v,
        use_reputation_weighting=draw(st.booleans()),
    )


@st.composite
def policies(draw: st.DrawFn) -> MeshPolicy:
    lo = draw(st.integers(1, 5))
    hi = draw(st.integers(lo, 9))
    return MeshPolicy(
        reward_settings=draw(reward_settings()),
        verification_quorum=VerificationQuorum(
            required_percentage=draw(st.integers(50, 100)),
            minimum_verifiers=lo,
            maximum_verifiers=hi,
        ),
    )


def actions(n_peers: int, max_tasks: int = 3) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Random protocol stimuli: (kind, args...) tuples interpreted by the property test."""
    peer = st.integers(0, n_peers - 1)
    task = st.integers(0, max_tasks - 1)
    output = st.sampled_from(["good", "bad"])
    one = st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 400)),
        st.tuples(st.just("offer"), task, peer, st.integers(0, 300)),
        st.tuples(
            st.just("fire"),
            task,
            st.sampled_from(["offers", "execution", "verification", "deadline"]),
        ),
        st.tuples(st.just("commit"), task, peer, output),
        st.tuples(st.just("commit_worker"), task, output),
        st.tuples(st.just("reveal"), task),
        st.tuples(st.just("verdict"), task, peer),
        st.tuples(st.just("advance"), st.integers(0, 40 * 60 * 1000)),
        st.tuples(
            st.just("stake"),
            peer,
            st.sampled_from(["bond", "unbond", "withdraw"]),
            st.integers(1, 500),
        ),
    )
    return st.lists(one, min_size=1, max_size=40)


ipld_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
