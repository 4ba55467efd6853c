"""meshbench: a workbench and runtime for verifiable mesh compute (the ICN Mesh Compute Overlay).

The public API is what ``__all__`` lists; ``tests/test_api.py`` pins it. Every name loads on
first use (PEP 562), so ``import meshbench`` (and every CLI's start-up) costs next to nothing.
"""

from __future__ import annotations

_LAZY = {
    # heavier modules (Polars, the runtime) load on first use, not on ``import meshbench``
    "Mesh": "meshbench.runtime.mesh",
    "open_ledger": "meshbench.store.frames",
    "CID": "meshbench.core.encoding",
    "blob_cid": "meshbench.core.encoding",
    "decode": "meshbench.core.encoding",
    "encode": "meshbench.core.encoding",
    "object_cid": "meshbench.core.encoding",
    "parse_cid": "meshbench.core.encoding",
    "BlobNotFound": "meshbench.core.errors",
    "BlobTooLarge": "meshbench.core.errors",
    "CIDMismatch": "meshbench.core.errors",
    "DecryptionError": "meshbench.core.errors",
    "DoubleVote": "meshbench.core.errors",
    "EncodingError": "meshbench.core.errors",
    "ExecutionError": "meshbench.core.errors",
    "ExecutionTimeout": "meshbench.core.errors",
    "GovernanceError": "meshbench.core.errors",
    "GuestTrap": "meshbench.core.errors",
    "IdentityError": "meshbench.core.errors",
    "InsufficientFunds": "meshbench.core.errors",
    "InvalidCID": "meshbench.core.errors",
    "InvalidDID": "meshbench.core.errors",
    "InvalidModule": "meshbench.core.errors",
    "InvalidSignature": "meshbench.core.errors",
    "IOLimitExceeded": "meshbench.core.errors",
    "KeyNotFound": "meshbench.core.errors",
    "LedgerError": "meshbench.core.errors",
    "MemoryLimitExceeded": "meshbench.core.errors",
    "MeshError": "meshbench.core.errors",
    "NetworkError": "meshbench.core.errors",
    "NonCanonicalEncoding": "meshbench.core.errors",
    "NotAMember": "meshbench.core.errors",
    "OutOfFuel": "meshbench.core.errors",
    "PolicyValidationError": "meshbench.core.errors",
    "ProposalClosed": "meshbench.core.errors",
    "ProtocolError": "meshbench.core.errors",
    "SchemaError": "meshbench.core.errors",
    "StaleProposal": "meshbench.core.errors",
    "StoreError": "meshbench.core.errors",
    "UnknownFederation": "meshbench.core.errors",
    "UnknownPeer": "meshbench.core.errors",
    "EscrowDispute": "meshbench.core.events",
    "EscrowStateChanged": "meshbench.core.events",
    "MeshPolicyActivated": "meshbench.core.events",
    "MeshPolicyProposal": "meshbench.core.events",
    "MeshPolicyVote": "meshbench.core.events",
    "Mint": "meshbench.core.events",
    "Payout": "meshbench.core.events",
    "QuorumReached": "meshbench.core.events",
    "RewardDistributed": "meshbench.core.events",
    "TaskAssigned": "meshbench.core.events",
    "TaskExpired": "meshbench.core.events",
    "Transfer": "meshbench.core.events",
    "CredentialRevoked": "meshbench.core.governance",
    "FederationCreated": "meshbench.core.governance",
    "FederationSucceeded": "meshbench.core.governance",
    "GovernanceRules": "meshbench.core.governance",
    "SuccessorShare": "meshbench.core.governance",
    "Identity": "meshbench.core.identity",
    "Model": "meshbench.core.model",
    "Signed": "meshbench.core.model",
    "decode_object": "meshbench.core.model",
    "BondingRequirements": "meshbench.core.policy",
    "MeshPolicy": "meshbench.core.policy",
    "MeshPolicyFragment": "meshbench.core.policy",
    "RewardSettings": "meshbench.core.policy",
    "SchedulingParams": "meshbench.core.policy",
    "VerificationQuorum": "meshbench.core.policy",
    "CapabilityScope": "meshbench.core.types",
    "ComputeOffer": "meshbench.core.types",
    "Credential": "meshbench.core.types",
    "ExecutionReceipt": "meshbench.core.types",
    "ExecutionSummary": "meshbench.core.types",
    "HardwareProfile": "meshbench.core.types",
    "PeerInfo": "meshbench.core.types",
    "ReputationSnapshot": "meshbench.core.types",
    "ResultCommitment": "meshbench.core.types",
    "TaskIntent": "meshbench.core.types",
    "VerificationReceipt": "meshbench.core.types",
    "result_commitment": "meshbench.core.types",
    "BlobStore": "meshbench.store.blobs",
    "EncryptedBlob": "meshbench.store.blobs",
    "Keystore": "meshbench.store.keystore",
}


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("meshbench")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> object:
    if name == "__version__":  # read from the installed metadata on first use (~20 ms)
        globals()[name] = value = _installed_version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CID",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "BondingRequirements",
    "CIDMismatch",
    "CapabilityScope",
    "ComputeOffer",
    "Credential",
    "CredentialRevoked",
    "DecryptionError",
    "DoubleVote",
    "EncodingError",
    "EncryptedBlob",
    "EscrowDispute",
    "EscrowStateChanged",
    "ExecutionError",
    "ExecutionReceipt",
    "ExecutionSummary",
    "ExecutionTimeout",
    "FederationCreated",
    "FederationSucceeded",
    "GovernanceError",
    "GovernanceRules",
    "GuestTrap",
    "HardwareProfile",
    "IOLimitExceeded",
    "Identity",
    "IdentityError",
    "InsufficientFunds",
    "InvalidCID",
    "InvalidDID",
    "InvalidModule",
    "InvalidSignature",
    "KeyNotFound",
    "Keystore",
    "LedgerError",
    "MemoryLimitExceeded",
    "Mesh",
    "MeshError",
    "MeshPolicy",
    "MeshPolicyActivated",
    "MeshPolicyFragment",
    "MeshPolicyProposal",
    "MeshPolicyVote",
    "Mint",
    "Model",
    "NetworkError",
    "NonCanonicalEncoding",
    "NotAMember",
    "OutOfFuel",
    "Payout",
    "PeerInfo",
    "PolicyValidationError",
    "ProposalClosed",
    "ProtocolError",
    "QuorumReached",
    "ReputationSnapshot",
    "ResultCommitment",
    "RewardDistributed",
    "RewardSettings",
    "SchedulingParams",
    "SchemaError",
    "Signed",
    "StaleProposal",
    "StoreError",
    "SuccessorShare",
    "TaskAssigned",
    "TaskExpired",
    "TaskIntent",
    "Transfer",
    "UnknownFederation",
    "UnknownPeer",
    "VerificationQuorum",
    "VerificationReceipt",
    "__version__",
    "blob_cid",
    "decode",
    "decode_object",
    "encode",
    "object_cid",
    "open_ledger",
    "parse_cid",
    "result_commitment",
]
