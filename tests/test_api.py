"""The public API is pinned: changing it is a deliberate act, reflected here."""

from __future__ import annotations

import meshbench

EXPECTED = sorted(meshbench.__all__)


def test_all_names_exist() -> None:
    for name in meshbench.__all__:
        assert hasattr(meshbench, name), name


def test_api_is_pinned() -> None:
    pinned = {
        "CID", "BlobNotFound", "BlobStore", "BlobTooLarge", "BondingRequirements",
        "CIDMismatch", "CapabilityScope", "ComputeOffer", "Credential", "DecryptionError",
        "EncodingError", "EncryptedBlob", "EscrowDispute", "EscrowStateChanged",
        "ExecutionError", "ExecutionReceipt", "ExecutionSummary", "ExecutionTimeout",
        "GuestTrap", "HardwareProfile", "IOLimitExceeded", "IdentityError", "Identity",
        "InsufficientFunds", "InvalidCID", "InvalidDID", "InvalidModule", "InvalidSignature",
        "KeyNotFound", "Keystore", "LedgerError", "MemoryLimitExceeded", "MeshError",
        "MeshPolicy", "MeshPolicyActivated", "MeshPolicyFragment", "MeshPolicyProposal",
        "MeshPolicyVote", "Mint", "Model", "NetworkError", "NonCanonicalEncoding", "OutOfFuel",
        "PeerInfo", "Payout", "PolicyValidationError", "ProtocolError", "QuorumReached",
        "ReputationSnapshot", "ResultCommitment", "RewardDistributed", "RewardSettings",
        "SchedulingParams", "SchemaError", "Signed", "StoreError", "TaskAssigned",
        "TaskExpired", "TaskIntent", "Transfer", "UnknownPeer", "VerificationQuorum",
        "VerificationReceipt", "__version__", "blob_cid", "decode", "decode_object", "encode",
        "object_cid", "parse_cid", "result_commitment",
        # governance
        "CredentialRevoked", "FederationCreated", "FederationSucceeded", "GovernanceRules",
        "SuccessorShare", "DoubleVote", "GovernanceError", "NotAMember", "ProposalClosed",
        "StaleProposal", "UnknownFederation",
        # runtime and offline ledger (loaded lazily)
        "Mesh", "open_ledger",
    }  # fmt: skip
    assert set(meshbench.__all__) == pinned


def test_every_error_is_a_mesh_error() -> None:
    for name in meshbench.__all__:
        obj = getattr(meshbench, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, meshbench.MeshError), name
