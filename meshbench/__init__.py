"""meshbench: a workbench and runtime for verifiable mesh compute (the ICN Mesh Compute Overlay).

The public API is what ``__all__`` lists; ``tests/test_api.py`` pins it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from meshbench.core.encoding import CID, blob_cid, decode, encode, object_cid, parse_cid
from meshbench.core.errors import (
    BlobNotFound,
    BlobTooLarge,
    CIDMismatch,
    DecryptionError,
    DoubleVote,
    EncodingError,
    ExecutionError,
    ExecutionTimeout,
    GovernanceError,
    GuestTrap,
    IdentityError,
    InsufficientFunds,
    InvalidCID,
    InvalidDID,
    InvalidModule,
    InvalidSignature,
    IOLimitExceeded,
    KeyNotFound,
    LedgerError,
    MemoryLimitExceeded,
    MeshError,
    NetworkError,
    NonCanonicalEncoding,
    NotAMember,
    OutOfFuel,
    PolicyValidationError,
    ProposalClosed,
    ProtocolError,
    SchemaError,
    StaleProposal,
    StoreError,
    UnknownFederation,
    UnknownPeer,
)
from meshbench.core.events import (
    EscrowDispute,
    EscrowStateChanged,
    MeshPolicyActivated,
    MeshPolicyProposal,
    MeshPolicyVote,
    Mint,
    Payout,
    QuorumReached,
    RewardDistributed,
    TaskAssigned,
    TaskExpired,
    Transfer,
)
from meshbench.core.governance import (
    CredentialRevoked,
    FederationCreated,
    FederationSucceeded,
    GovernanceRules,
    SuccessorShare,
)
from meshbench.core.identity import Identity
from meshbench.core.model import Model, Signed, decode_object
from meshbench.core.policy import (
    BondingRequirements,
    MeshPolicy,
    MeshPolicyFragment,
    RewardSettings,
    SchedulingParams,
    VerificationQuorum,
)
from meshbench.core.types import (
    CapabilityScope,
    ComputeOffer,
    Credential,
    ExecutionReceipt,
    ExecutionSummary,
    HardwareProfile,
    PeerInfo,
    ReputationSnapshot,
    ResultCommitment,
    TaskIntent,
    VerificationReceipt,
    result_commitment,
)
from meshbench.store.blobs import BlobStore, EncryptedBlob
from meshbench.store.keystore import Keystore

_LAZY = {
    # heavier modules (Polars, the runtime) load on first use, not on ``import meshbench``
    "Mesh": "meshbench.runtime.mesh",
    "open_ledger": "meshbench.store.frames",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshbench' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


try:
    __version__ = _version("meshbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

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
