"""The one error hierarchy of meshbench.

Every failure a user can cause (bad bytes, a bad signature, a hostile module, an invalid
policy, too little money) raises a subclass of :class:`MeshError` whose message says what
was wrong and, where possible, what to do about it. Nothing below ever raises a bare
``ValueError`` across the public API.
"""

from __future__ import annotations

__all__ = [
    "ArrayFormatError",
    "BlobNotFound",
    "BlobTooLarge",
    "CIDMismatch",
    "DecryptionError",
    "DoubleVote",
    "EncodingError",
    "ExecutionError",
    "ExecutionTimeout",
    "GovernanceError",
    "GuestTrap",
    "IOLimitExceeded",
    "IdentityError",
    "InsufficientFunds",
    "InvalidCID",
    "InvalidDID",
    "InvalidModule",
    "InvalidSignature",
    "KernelBudgetExceeded",
    "KernelError",
    "KernelHashMismatch",
    "KernelNotApproved",
    "KeyNotFound",
    "LaunchParameterError",
    "LedgerError",
    "MemoryLimitExceeded",
    "MeshError",
    "MeshWarning",
    "NetworkError",
    "NoSuchFile",
    "NonCanonicalEncoding",
    "NotAMember",
    "OutOfFuel",
    "PolicyValidationError",
    "ProposalClosed",
    "ProtocolError",
    "SchemaError",
    "StaleProposal",
    "StoreError",
    "TransitionError",
    "UnknownFederation",
    "UnknownKernel",
    "UnknownPeer",
    "WasiError",
]


class MeshError(Exception):
    """Root of every error meshbench raises on purpose."""


# --- encoding and content addressing -------------------------------------------------
class EncodingError(MeshError):
    """Bytes that are not a valid DAG-CBOR object (malformed, truncated, absurd lengths)."""


class NonCanonicalEncoding(EncodingError):
    """Valid CBOR that is not canonical DAG-CBOR (key order, duplicate keys, floats...)."""


class InvalidCID(MeshError):
    """A string or bytes that do not parse as a CIDv1 of the expected codec."""


class CIDMismatch(MeshError):
    """Content whose hash does not match the CID it was asked for or claims."""


class SchemaError(MeshError):
    """A decoded object whose fields are missing, unknown, of the wrong type or out of range."""


# --- identity ----------------------------------------------------------------------------
class IdentityError(MeshError):
    """Problems with keys and identities."""


class InvalidDID(IdentityError):
    """A string that is not an Ed25519 ``did:key``."""


class InvalidSignature(IdentityError):
    """A signature that is missing, malformed, or not made by the claimed signer."""


class KeyNotFound(IdentityError):
    """A key name that the keystore does not hold."""


# --- storage -------------------------------------------------------------------------------
class StoreError(MeshError):
    """Blob store and ledger failures."""


class BlobNotFound(StoreError):
    """No blob with that CID is stored here."""


class BlobTooLarge(StoreError):
    """A blob over the store's configured size limit."""


class DecryptionError(StoreError):
    """An encrypted blob that cannot be opened with the keys at hand, or was tampered with."""


class NoSuchFile(StoreError):
    """A path given on the command line or to the API that is not a readable file."""


class LedgerError(StoreError):
    """An event that the ledger refuses (unknown parent, broken invariant, conflict)."""


# --- economics and governance -------------------------------------------------------------
class InsufficientFunds(MeshError):
    """An account that cannot cover the fee, stake or transfer asked of it."""


class PolicyValidationError(MeshError):
    """A MeshPolicy or MeshPolicyFragment that breaks a rule (sums, ranges, token types)."""


class GovernanceError(MeshError):
    """A governance event that the federation's rules refuse."""


class UnknownFederation(GovernanceError):
    """A federation DID this ledger has no record of."""


class NotAMember(GovernanceError):
    """A proposal, vote or credential use by a DID that is not a current member."""


class DoubleVote(GovernanceError):
    """A member voting a second time on the same proposal (votes cannot be changed)."""


class ProposalClosed(GovernanceError):
    """A vote or activation on a proposal that is expired, rejected, activated or superseded."""


class StaleProposal(GovernanceError):
    """A proposal whose base policy is no longer the federation's active policy."""


class ProtocolError(MeshError):
    """An event that the protocol state machine does not allow in the task's state."""


class TransitionError(ProtocolError):
    """A handler left a task in a state its transition-table entry does not allow (a bug)."""


class UnknownPeer(MeshError):
    """A message from, or about, a peer that this node does not know."""


class NetworkError(MeshError):
    """Transport failures: unreachable peers, closed streams, refused messages."""


# --- execution -----------------------------------------------------------------------------
class ExecutionError(MeshError):
    """A task execution that did not produce a result.

    ``fuel_used`` is the fuel consumed up to the failure, when the engine knows it.
    """

    def __init__(self, message: str, *, fuel_used: int | None = None) -> None:
        super().__init__(message)
        self.fuel_used = fuel_used


class InvalidModule(ExecutionError):
    """Bytes that are not a loadable WebAssembly module for this engine."""


class OutOfFuel(ExecutionError):
    """The guest used all the fuel its CapabilityScope allows."""


class MemoryLimitExceeded(ExecutionError):
    """The guest asked for more linear memory than its CapabilityScope allows."""


class IOLimitExceeded(ExecutionError):
    """The guest read or wrote more bytes than its CapabilityScope's ``io_mb``."""


class ExecutionTimeout(ExecutionError):
    """The wall-clock backstop interrupted the guest."""


class WasiError(ExecutionError):
    """A system call of the guest that its sandbox refuses (a bad pointer, no such file, a
    read-only file, a path outside its preopened directory...).

    ``errno`` is the WASI errno the guest receives; inside a run the call returns it (an ABI
    without errno values traps instead)."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(f"{message} (WASI errno {errno})")
        self.errno = errno


class GuestTrap(ExecutionError):
    """The guest trapped (unreachable, out-of-bounds access, stack overflow, ...)."""


# --- kernel (accelerator) tasks: refused before anything is launched ---------------------------
class KernelError(ExecutionError):
    """A kernel task refused before launch: nothing was executed on the device."""

    def __init__(self, message: str, *, fuel_used: int | None = 0) -> None:
        super().__init__(message, fuel_used=fuel_used)


class UnknownKernel(KernelError):
    """The task names a kernel (name and version) that this worker has not installed."""


class KernelNotApproved(KernelError):
    """The kernel is installed but the worker's operator has not approved it."""


class KernelHashMismatch(KernelError):
    """The task's kernel content hash is not the hash of the installed kernel's code."""


class ArrayFormatError(KernelError):
    """An array bundle that is malformed, or arrays of the wrong names, dtypes or shapes."""


class LaunchParameterError(KernelError):
    """A kernel call with a malformed descriptor, or launch parameters out of range."""


class KernelBudgetExceeded(KernelError):
    """The kernel call needs more FLOPs (or device memory) than its budget allows."""


class MeshWarning(UserWarning):
    """Something will not go as asked (a task this mesh cannot meet yet, k raised by policy):
    not an error, but said at once."""
