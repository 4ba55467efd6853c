"""Injected views: what the protocol asks the outside about, at the moment it decides.

The state machine never caches a policy or a membership answer: it calls these views each
time it decides (select, tally, settle), so a policy activated by governance between two
events applies to the very next decision, with no restart.

* :class:`PolicyView` - ``policy_for(federation_did) -> MeshPolicy``.
  :class:`BooksPolicyView` (the default) reads the ``policies`` table of the books, which the
  ``MeshPolicyActivated`` fold handler fills; :class:`StaticPolicyView` is for tests.
* :class:`MembershipView` - ``is_member(federation, did, now)``, ``has_credential(...)``
  and ``federations_allowed(task_federation)``. :class:`OpenMembership` accepts everyone
  (the embedded demo); :class:`CredentialMembership` checks signed :class:`Credential`\\ s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from meshbench.core.books import Books
from meshbench.core.errors import InvalidSignature
from meshbench.core.policy import MeshPolicy
from meshbench.core.types import Credential

__all__ = [
    "BooksPolicyView",
    "CredentialMembership",
    "MembershipView",
    "OpenMembership",
    "PolicyView",
    "StaticPolicyView",
]


@runtime_checkable
class PolicyView(Protocol):
    def policy_for(self, federation_did: str) -> MeshPolicy: ...


@runtime_checkable
class MembershipView(Protocol):
    def is_member(self, federation: str, did: str, now_ms: int) -> bool:
        """``did`` belongs to ``federation`` (may publish, offer, verify) at ``now_ms``."""
        ...

    def has_credential(self, federation: str, did: str, now_ms: int) -> bool:
        """``did`` holds a valid federation credential at ``now_ms``."""
        ...

    def federations_allowed(self, task_federation: str) -> frozenset[str]:
        """Federations whose workers may serve a task published in ``task_federation``."""
        ...


class StaticPolicyView:
    """One fixed policy per federation (tests); ``set`` replaces it, as activation would."""

    def __init__(self, policy: MeshPolicy | None = None) -> None:
        self.default = policy or MeshPolicy()
        self._by_federation: dict[str, MeshPolicy] = {}

    def set(self, federation_did: str, policy: MeshPolicy) -> None:
        self._by_federation[federation_did] = policy

    def policy_for(self, federation_did: str) -> MeshPolicy:
        return self._by_federation.get(federation_did, self.default)


class BooksPolicyView:
    """The policy activated in the ledger's books (``MeshPolicyActivated``), else defaults."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def policy_for(self, federation_did: str) -> MeshPolicy:
        return self.books.policy_for(federation_did)


class OpenMembership:
    """Everyone is a member of every federation, and any federation may serve any task."""

    def is_member(self, federation: str, did: str, now_ms: int) -> bool:
        return True

    def has_credential(self, federation: str, did: str, now_ms: int) -> bool:
        return True

    def federations_allowed(self, task_federation: str) -> frozenset[str]:
        return frozenset()  # empty: no restriction


class CredentialMembership:
    """Members are those holding a valid, correctly signed :class:`Credential`.

    ``partners`` maps a federation to the other federations whose workers may serve its
    tasks (its own members always may).
    """

    def __init__(
        self,
        credentials: Iterable[Credential] = (),
        partners: dict[str, Iterable[str]] | None = None,
    ) -> None:
        self._creds: dict[tuple[str, str], list[Credential]] = {}
        self._partners = {k: frozenset(v) for k, v in (partners or {}).items()}
        for c in credentials:
            self.add(c)

    def add(self, credential: Credential) -> None:
        try:
            credential.verify()
        except InvalidSignature:
            raise
        self._creds.setdefault((credential.federation, credential.member), []).append(credential)

    def has_credential(self, federation: str, did: str, now_ms: int) -> bool:
        return any(c.valid_at(now_ms) for c in self._creds.get((federation, did), ()))

    def is_member(self, federation: str, did: str, now_ms: int) -> bool:
        return self.has_credential(federation, did, now_ms)

    def federations_allowed(self, task_federation: str) -> frozenset[str]:
        return frozenset({task_federation}) | self._partners.get(task_federation, frozenset())
