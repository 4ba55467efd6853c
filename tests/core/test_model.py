"""The data model: round-trips for every type, signatures, and tamper detection."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meshbench as mb
from meshbench.core import encoding
from meshbench.core.model import decode_object, model_types
from meshbench.testing.factories import make_identity, make_task
from meshbench.testing.strategies import any_model, models, signed_models

ALL_TYPES = sorted(model_types().values(), key=lambda c: c.__name__)


def test_every_spec_type_is_registered() -> None:
    names = set(model_types())
    for required in [
        "CapabilityScope", "TaskIntent", "ComputeOffer", "ExecutionReceipt", "ExecutionSummary",
        "VerificationReceipt", "PeerInfo", "ReputationSnapshot", "Credential", "MeshPolicy",
        "MeshPolicyFragment", "MeshPolicyActivated", "MeshPolicyVote", "EscrowStateChanged",
        "RewardDistributed", "EscrowDispute", "TaskAssigned", "QuorumReached",
    ]:  # fmt: skip
        assert required in names


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_every_type(cls: type[mb.Model], data: st.DataObject) -> None:
    obj = data.draw(models(cls))
    raw = obj.encode()
    back = decode_object(raw, expected_cid=obj.cid)
    assert back == obj and back.encode() == raw and back.cid == obj.cid
    assert type(obj).from_json(obj.to_json()) == obj
    assert "<table>" in obj._repr_html_()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signed_models(), st.data())
def test_any_mutation_of_a_signed_object_is_detected(obj: mb.Signed, data: st.DataObject) -> None:
    raw = bytearray(obj.encode())
    i = data.draw(st.integers(0, len(raw) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    raw[i] ^= 1 << bit
    # Without a CID to check against, decoding must still fail (bad CBOR, schema or signature).
    with pytest.raises(mb.MeshError):
        decode_object(bytes(raw))
    # With the expected CID, the hash alone catches it.
    with pytest.raises(mb.CIDMismatch):
        decode_object(bytes(raw), expected_cid=obj.cid)


@settings(max_examples=50, deadline=None)
@given(any_model())
def test_cid_is_over_the_whole_object(obj: mb.Model) -> None:
    assert obj.cid == encoding.object_cid(obj.encode())
    assert str(obj.cid).startswith("bafyrei")


def test_signature_covers_object_without_signature_field() -> None:
    alice = make_identity(1)
    task = make_task(alice, sign=True)
    body = task.to_ipld()
    del body["signature"]
    assert task.signing_payload() == encoding.encode(body)
    from meshbench.core.identity import verify

    verify(alice.did, encoding.encode(body), task.signature)


def test_signing_with_the_wrong_key_is_refused() -> None:
    task = make_task(make_identity(1))
    with pytest.raises(mb.InvalidSignature):
        task.sign(make_identity(2))


def test_unsigned_and_forged() -> None:
    alice, mallory = make_identity(1), make_identity(2)
    task = make_task(alice)
    with pytest.raises(mb.InvalidSignature, match="not signed"):
        decode_object(task.encode())
    forged = msgspec.structs.replace(task, signature=mallory.sign(task.signing_payload()))
    with pytest.raises(mb.InvalidSignature):
        decode_object(forged.encode())


def test_unknown_missing_and_wrong_fields() -> None:
    task = make_task(make_identity(1), sign=True)
    body = task.to_ipld()
    with pytest.raises(mb.SchemaError, match="unknown field"):
        decode_object(encoding.encode({**body, "surprise": 1}))
    missing = dict(body)
    del missing["fee"]
    with pytest.raises(mb.SchemaError, match="fee"):
        decode_object(encoding.encode(missing))
    with pytest.raises(mb.SchemaError, match="fee"):
        decode_object(encoding.encode({**body, "fee": -5}))
    with pytest.raises(mb.SchemaError, match="fee"):
        decode_object(encoding.encode({**body, "fee": 2**60}))
    with pytest.raises(mb.SchemaError, match="unknown object type"):
        decode_object(encoding.encode({**body, "@type": "Nope"}))
    with pytest.raises(mb.SchemaError):
        decode_object(encoding.encode([1, 2]))
    wrong_codec = {**body, "wasm_cid": task.cid}  # a dag-cbor CID where a raw one belongs
    with pytest.raises(mb.SchemaError, match="codec"):
        decode_object(encoding.encode(wrong_codec))


def test_defaulted_field_left_out_is_not_canonical() -> None:
    summary = mb.ExecutionSummary(fuel_used=1, peak_memory_bytes=2, wall_time_us=3)
    body = summary.to_ipld()
    del body["engine"]  # decodes to the same object, but these are not its canonical bytes
    with pytest.raises(mb.NonCanonicalEncoding):
        decode_object(encoding.encode(body))


@pytest.mark.parametrize(
    "bad",
    [
        {"fee": -1},
        {"fee": 2**53},
        {"fee": True},
        {"fee": 1.5},
        {"verifier_count": 1000},
        {"publisher": "did:key:zshort"},
        {"deadline": 0},
        {"args": ("x" * 5000,)},
        {"args": tuple(["a"] * 1000)},
        {"output": "relative/path"},
    ],
)
def test_construction_validates(bad: dict[str, object]) -> None:
    alice = make_identity(1)
    good = make_task(alice)
    fields = {f: getattr(good, f) for f in good.__struct_fields__ if f != "signature"}
    with pytest.raises(mb.SchemaError):
        mb.TaskIntent(**{**fields, **bad})


def test_decoded_objects_are_not_checked_twice_and_floats_still_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """msgspec checks every type and constraint while it decodes: the model's own check of
    the same declarations ran again on every object decoded and signed (8 % of the
    authority's driver thread). Objects made in code are checked whole; decoded and signed
    ones are not checked again, except that a float is finite."""
    import meshbench.core.model as model

    checked: list[str] = []
    whole = model._check_fields
    monkeypatch.setattr(
        model, "_check_fields", lambda obj: (checked.append(type(obj).__name__), whole(obj))[1]
    )
    alice = make_identity(1)
    task = make_task(alice)
    made = list(checked)
    assert made[-1] == "TaskIntent"  # and its parts, made in code too
    signed = task.sign(alice)
    assert decode_object(signed.encode()) == signed
    assert checked == made  # neither the signed copy nor the decoded one checked again
    summary = mb.ExecutionSummary(fuel_used=1, peak_memory_bytes=2, wall_time_us=3)
    for bad in (float("nan"), float("inf"), 1.5):
        with pytest.raises(mb.SchemaError, match="contribution_score"):
            mb.ExecutionSummary.from_ipld({**summary.to_ipld(), "contribution_score": bad})
    with pytest.raises(mb.SchemaError):  # made in code: every field checked
        mb.ExecutionSummary(fuel_used=-1, peak_memory_bytes=2, wall_time_us=3)
    assert model._check_floats is not None and "contribution_score" in dict(
        model._checks(mb.ExecutionSummary)[1]
    )


def test_receipt_commitment_must_open() -> None:
    alice = make_identity(1)
    task = make_task(alice)
    out = encoding.blob_cid(b"out")
    summary = mb.ExecutionSummary(fuel_used=1, peak_memory_bytes=1, wall_time_us=1)
    salt = b"s" * 16
    good = mb.result_commitment(task.cid, alice.did, out, salt)
    mb.ExecutionReceipt(
        task_cid=task.cid, worker=alice.did, output_cid=out, result_commitment=good, salt=salt,
        summary=summary, created_at=1,
    )  # fmt: skip
    copied = mb.result_commitment(task.cid, make_identity(2).did, out, salt)
    with pytest.raises(mb.SchemaError, match="commitment"):
        mb.ExecutionReceipt(
            task_cid=task.cid, worker=alice.did, output_cid=out, result_commitment=copied,
            salt=salt, summary=summary, created_at=1,
        )  # fmt: skip


def test_hardware_and_scope() -> None:
    scope = mb.CapabilityScope(memory_mb=256, cpu_cycles=10**6, gpu_flops=0, io_mb=10)
    hw = mb.HardwareProfile(memory_mb=512, cpu_cores=4)
    assert hw.satisfies(scope) and not hw.shortfall(scope)
    small = mb.HardwareProfile(memory_mb=128)
    assert not small.satisfies(scope)
    assert small.shortfall(scope) == ["memory_mb 128 < 256"]
    assert mb.CapabilityScope(io_mb=10).fits_within(scope)
    assert not mb.CapabilityScope().fits_within(scope)  # io_mb 50 > 10


def test_credential_validity_window() -> None:
    fed, member = make_identity(0), make_identity(1)
    cred = mb.Credential(federation=fed.did, member=member.did, issued_at=10, expires_at=20)
    cred = cred.sign(fed)
    assert cred.valid_at(10) and not cred.valid_at(20)
    with pytest.raises(mb.SchemaError):
        mb.Credential(federation=fed.did, member=member.did, issued_at=10, expires_at=10)


def test_reward_distribution_must_conserve() -> None:
    auth = make_identity(0)
    task = make_task(make_identity(1))
    pay = (mb.Payout(account=make_identity(2).did, amount=90, role="worker"),)
    with pytest.raises(mb.SchemaError, match="sum"):
        mb.RewardDistributed(
            authority=auth.did, task_cid=task.cid, total=100, payouts=pay, timestamp=1
        )
