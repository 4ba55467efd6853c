"""Verdicts under a task's validator, and who may verify a GPU task (no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from meshbench.core.errors import ProtocolError
from meshbench.core.types import CapabilityScope, HardwareProfile, PeerInfo, VerificationReceipt
from meshbench.testing.protocol import ProtocolHarness, output_cid

CLOSE, MINE, FAR = output_cid("close"), output_cid("mine"), output_cid("far")


def committed(h: ProtocolHarness, task, a, outputs, worker_output):
    h.feed(h.commit(task, a.worker, worker_output))
    for v in a.verifiers:
        h.feed(h.commit(task, v, outputs[v]))
    receipt = h.receipt(task, a.worker, worker_output)
    h.feed(receipt)
    return receipt


def judge(h: ProtocolHarness, task, verifiers, approved: bool) -> None:
    """The authority's runtime answers each judgement the state machine asked for."""
    from meshbench.core.protocol import VerdictJudgement

    for v in verifiers:
        h.feed(VerdictJudgement(task_cid=task.cid, verifier=v, approved=approved))


def flipped(vr: VerificationReceipt, h: ProtocolHarness) -> VerificationReceipt:
    fields = {f: getattr(vr, f) for f in vr.__struct_fields__ if f != "signature"}
    fields["approved"] = not vr.approved
    return VerificationReceipt(**fields).sign(h.by_did[vr.verifier])


def test_exact_task_approval_must_equal_the_cid_match():
    h = ProtocolHarness()
    task, a = h.publish_and_assign()
    receipt = committed(h, task, a, dict.fromkeys(a.verifiers, MINE), CLOSE)
    v = a.verifiers[0]
    lying = flipped(h.verdict(task, v, MINE, receipt), h)
    with pytest.raises(ProtocolError, match="approved must say"):
        h.feed(lying)


def test_tolerance_task_accepts_different_cids_approved_by_the_validator():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(validator="tolerance")
    receipt = committed(h, task, a, dict.fromkeys(a.verifiers, MINE), CLOSE)
    for v in a.verifiers:  # outputs differ, the verifier's validator found them close
        h.feed(flipped(h.verdict(task, v, MINE, receipt), h))
    assert h.state.state_of(task.cid) == "Verifying"  # the verifiers' word does not decide
    judge(h, task, a.verifiers, True)  # the authority's own run of the validator
    assert h.state.books.task(task.cid)["outcome"] == "Accepted"
    h.state.books.check_conservation()


def test_tolerance_task_cannot_reject_an_identical_output():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(validator="tolerance")
    receipt = committed(h, task, a, dict.fromkeys(a.verifiers, CLOSE), CLOSE)
    lying = flipped(h.verdict(task, a.verifiers[0], CLOSE, receipt), h)
    with pytest.raises(ProtocolError, match="identical must approve"):
        h.feed(lying)


def test_tolerance_task_rejection_of_a_far_output_rejects_the_worker():
    h = ProtocolHarness()
    task, a = h.publish_and_assign(validator="tolerance")
    receipt = committed(h, task, a, dict.fromkeys(a.verifiers, MINE), FAR)
    for v in a.verifiers:
        h.feed(h.verdict(task, v, MINE, receipt))  # approved=False: the CIDs differ
    judge(h, task, a.verifiers, False)
    assert h.state.books.task(task.cid)["outcome"] == "Rejected"


def test_task_validator_defaults_to_exact_and_is_signed():
    h = ProtocolHarness()
    task = h.task()
    assert task.validator == "exact"
    assert h.task(validator="tolerance").validator == "tolerance"
    with pytest.raises((msgspec.ValidationError, Exception)):
        h.task(validator="not a name!")


def test_gpu_task_verifiers_are_drawn_only_among_peers_with_enough_gpu():
    h = ProtocolHarness(peers=6)
    gpu = HardwareProfile(memory_mb=4096, gpu_flops=10**9, gpu_class="sim")
    for p in h.peers[:4]:
        h.feed(
            PeerInfo(
                did=p.did, federation=h.federation.did, hardware=gpu, updated_at=h.now + 1
            ).sign(p)
        )
    scope = CapabilityScope(gpu_flops=10**6)
    task = h.task(scope=scope, verifiers=2)
    h.feed(task)
    h.feed(h.offer(task, h.peers[0], hardware=gpu))
    h.advance(h.state.policy(task.federation).selection.offer_window_ms)
    h.fire(task, "offers")
    a = h.state.tasks[task.cid].assignment
    gpu_dids = {p.did for p in h.peers[:4]}
    assert a is not None and a.worker == h.peers[0].did
    assert set(a.verifiers) <= gpu_dids - {a.worker}


def test_default_validator_is_left_out_of_the_encoding():
    from meshbench.core import encoding
    from meshbench.core.errors import NonCanonicalEncoding
    from meshbench.core.model import decode_object

    h = ProtocolHarness()
    exact, tolerant = h.task(), h.task(validator="tolerance")
    assert "validator" not in encoding.decode(exact.encode())  # older tasks keep their CIDs
    assert decode_object(exact.encode()) == exact
    assert decode_object(tolerant.encode()).validator == "tolerance"
    spelled = {**encoding.decode(exact.encode()), "validator": "exact"}
    with pytest.raises(NonCanonicalEncoding):
        decode_object(encoding.encode(spelled), verify_signature=False)


@pytest.mark.parametrize("homogeneous", [False, True])
def test_homogeneous_redundancy_draws_verifiers_of_the_workers_gpu_class(homogeneous):
    from meshbench.core.policy import MeshPolicy, MeshPolicyFragment

    fragment = {
        "selection": {"homogeneous_gpu_verifiers": homogeneous},
        "verification_quorum": {"minimum_verifiers": 1},
    }
    policy = MeshPolicy().apply(MeshPolicyFragment(updates=fragment))
    assert policy.selection.homogeneous_gpu_verifiers is homogeneous
    h = ProtocolHarness(peers=7, policy=policy)
    classes = ["A100", "A100", "A100", "H100", "H100", "H100"]
    for p, cls in zip(h.peers, classes, strict=False):
        hw = HardwareProfile(memory_mb=4096, gpu_flops=10**9, gpu_class=cls)
        info = PeerInfo(did=p.did, federation=h.federation.did, hardware=hw, updated_at=h.now + 1)
        h.feed(info.sign(p))
    task = h.task(scope=CapabilityScope(gpu_flops=10**6), verifiers=4)
    h.feed(task)
    worker_hw = HardwareProfile(memory_mb=4096, gpu_flops=10**9, gpu_class="A100")
    h.feed(h.offer(task, h.peers[0], hardware=worker_hw))
    h.advance(h.state.policy(task.federation).selection.offer_window_ms)
    h.fire(task, "offers")
    a = h.state.tasks[task.cid].assignment
    drawn = {classes[[p.did for p in h.peers].index(v)] for v in a.verifiers}
    assert drawn == ({"A100"} if homogeneous else {"A100", "H100"})


def test_policy_encoding_leaves_the_new_default_out():
    from meshbench.core import encoding
    from meshbench.core.policy import MeshPolicy

    assert "homogeneous_gpu_verifiers" not in encoding.decode(MeshPolicy().encode())["selection"]
