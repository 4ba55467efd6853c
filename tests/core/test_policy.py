"""MeshPolicy defaults, validation and fragments (the spec's JSON example works as written)."""

from __future__ import annotations

import pytest

import meshbench as mb

SPEC_EXAMPLE = """
{
  "reward_settings": {
    "worker_percentage": 75,
    "verifier_percentage": 20,
    "platform_fee_percentage": 5
  },
  "verification_quorum": {
    "required_percentage": 66,
    "minimum_verifiers": 3
  }
}
"""


def test_defaults_follow_reference_and_spec_split() -> None:
    p = mb.MeshPolicy()
    assert (p.policy_version, p.alpha, p.beta, p.gamma, p.lambda_) == (1, 0.6, 0.3, 0.1, 0.05)
    assert (p.stake_weight, p.min_fee) == (0.4, 10)
    assert p.base_capability_scope == mb.CapabilityScope(
        memory_mb=128, cpu_cycles=1_000_000, gpu_flops=0, io_mb=50
    )
    r = p.reward_settings
    assert (r.worker_percentage, r.verifier_percentage, r.platform_fee_percentage) == (90, 10, 0)
    assert r.use_reputation_weighting
    b = p.bonding_requirements
    assert (b.min_stake, b.lock_period, b.tokens) == (100, 7 * 86400, ("ICN",))
    s = p.scheduling
    assert (s.use_fair_queuing, s.max_queue_length, s.reputation_priority_boost) == (
        True, 100, 1.5,
    )  # fmt: skip
    assert s.task_timeout == 1800
    q = p.verification_quorum
    assert (q.required_percentage, q.minimum_verifiers, q.maximum_verifiers) == (66, 3, 7)
    assert q.verification_timeout == 900
    assert p.to_ipld()["lambda"] == 0.05  # the wire name is the spec's


def test_spec_example_applies() -> None:
    base = mb.MeshPolicy()
    frag = mb.MeshPolicyFragment.from_update_json(SPEC_EXAMPLE)
    new = base.apply(frag)
    assert new.policy_version == 2
    assert new.previous_policy_cid == base.cid
    r = new.reward_settings
    assert (r.worker_percentage, r.verifier_percentage, r.platform_fee_percentage) == (75, 20, 5)
    assert new.verification_quorum.maximum_verifiers == 7  # untouched fields keep their values
    assert set(base.diff(new)) == {
        "policy_version", "previous_policy_cid", "reward_settings.worker_percentage",
        "reward_settings.verifier_percentage", "reward_settings.platform_fee_percentage",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ('{"reward_settings": {"worker_percentage": 75}}', "sum to 85"),
        ('{"verification_quorum": {"required_percentage": 49}}', "50 to 100"),
        ('{"verification_quorum": {"required_percentage": 101}}', "100"),
        ('{"verification_quorum": {"minimum_verifiers": 9}}', "above maximum"),
        ('{"bonding_requirements": {"tokens": ["DOGE"]}}', "unknown token"),
        ('{"min_fee": -1}', ">= 0"),
        ('{"alpha": 1.5}', "<= 1.0"),
    ],
)
def test_invalid_policies(update: str, message: str) -> None:
    with pytest.raises(mb.PolicyValidationError, match=message):
        mb.MeshPolicy().apply(mb.MeshPolicyFragment.from_update_json(update))


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("{}", "at least one"),
        ('{"reward_settings": {"worker_pct": 75}}', "unknown policy field"),
        ('{"nope": 1}', "unknown policy field"),
        ('{"reward_settings": 5}', "section"),
        ('{"reward_settings": {"worker_percentage": "75"}}', "Expected `int`"),
        ('{"policy_version": 9}', "set by activation"),
    ],
)
def test_invalid_fragments(update: str, message: str) -> None:
    with pytest.raises(mb.PolicyValidationError, match=message):
        mb.MeshPolicyFragment.from_update_json(update)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(mb.PolicyValidationError, match="sum"):
        mb.MeshPolicy(reward_settings=mb.RewardSettings(worker_percentage=50))
