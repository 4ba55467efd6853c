"""Govern a running mesh's federation from a notebook: create it, admit, propose, vote.

``Mesh`` starts an *ungoverned* federation (its ledger authority sets the policy directly).
:meth:`FederationDesk.govern` turns it into a governed one without a restart: the
federation's own key signs a :class:`~meshbench.core.governance.FederationCreated` (this
node stays its ledger authority), and credentials admit the mesh's workers, its publisher
and the members you name. From then on the policy changes only through proposals, votes
and the authority's activation, exactly as in ``icn-wallet`` (the same signed events, folded
by the same rules); the next task that settles pays by the new policy.

Members' keys live in the mesh's keystore (``<data_dir>/keys``). Every event goes through
the node's driver thread, into its protocol state and its ledger, and out to its listeners
(so the workbench panels update).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from meshbench.core import governance as gov
from meshbench.core.books import Books
from meshbench.core.encoding import CID, parse_cid
from meshbench.core.federation_acts import YEAR_MS, admit, create_federation, propose, vote
from meshbench.core.governance import GovernanceRules, Tally
from meshbench.core.identity import Identity
from meshbench.core.model import Model
from meshbench.core.policy import MeshPolicy, MeshPolicyFragment
from meshbench.store.keystore import Keystore

if TYPE_CHECKING:
    from meshbench.runtime.mesh import Mesh
    from meshbench.runtime.node import AuthorityNode

T = TypeVar("T")

__all__ = ["FederationDesk", "append_events"]


def append_events(node: AuthorityNode, *events: Model) -> None:
    """Fold ``events`` into ``node``'s protocol state and append them to its ledger.

    Runs on the node's driver thread; a refused event raises its typed error (a
    :class:`~meshbench.core.errors.GovernanceError`, ``DoubleVote``, ...) and changes nothing.
    """

    node.append(*events)


class FederationDesk:
    """The governance actions of one mesh's federation, signed by its members' keys."""

    def __init__(self, mesh: Mesh, members: Mapping[str, Identity]) -> None:
        self.mesh = mesh
        self.node = mesh.node
        self.federation: str = mesh.node.federation
        self.members = dict(members)

    @classmethod
    def govern(
        cls,
        mesh: Mesh,
        members: Iterable[str] = ("alice", "bob", "carol"),
        *,
        name: str = "notebook-coop",
        rules: GovernanceRules | None = None,
    ) -> FederationDesk:
        """Make ``mesh``'s federation a governed one; admit workers, publisher and members."""
        keys = Keystore(mesh.data_dir / "keys")
        fed = keys.load_or_create("federation")
        node = mesh.node
        people = {m: keys.load_or_create(f"member-{m}") for m in members}
        now = node.clock()
        snap = node.snapshot()
        current = snap.books.policy_for(node.federation)
        policy = current if current.federation == fed.did else MeshPolicy(federation=fed.did)
        created = create_federation(
            fed, node.authority.did, name=name, rules=rules, policy=policy, now_ms=now
        )
        dids = [*snap.peers, mesh.publisher.did, *(p.did for p in people.values())]
        creds = [admit(fed, did, now_ms=now, ttl_ms=YEAR_MS) for did in dict.fromkeys(dids)]
        append_events(node, created, *creds)
        return cls(mesh, people)

    # --- reading -------------------------------------------------------------------------
    def _books(self, fn: Callable[[Books], T]) -> T:
        """``fn`` of the node's books as of now (a snapshot: it never races the driver)."""
        return fn(self.node.snapshot().books)

    @property
    def policy(self) -> MeshPolicy:
        return self._books(lambda b: b.policy_for(self.federation))

    def tally(self, proposal_cid: CID | str) -> Tally:
        now = self.node.clock()
        return self._books(lambda b: gov.tally(b, proposal_cid, now))

    def proposals(self) -> list[dict[str, Any]]:
        now = self.node.clock()
        return self._books(lambda b: gov.proposals(b, self.federation, now))

    def history(self) -> list[MeshPolicy]:
        return self._books(lambda b: gov.policy_history(b, self.federation))

    # --- acting --------------------------------------------------------------------------
    def _member(self, name: str) -> Identity:
        try:
            return self.members[name]
        except KeyError:
            from meshbench.core.errors import NotAMember

            raise NotAMember(
                f"{name!r} is not a member this desk holds keys for "
                f"(members: {', '.join(self.members)})"
            ) from None

    def propose(
        self,
        member: str,
        fragment: MeshPolicyFragment | Mapping[str, Any],
        *,
        description: str,
    ) -> CID:
        """``member`` proposes ``fragment`` against the active policy; returns its CID."""
        frag = (
            fragment
            if isinstance(fragment, MeshPolicyFragment)
            else MeshPolicyFragment(updates=dict(fragment))
        )
        who = self._member(member)
        now = self.node.clock()
        p = self._books(
            lambda b: propose(b, self.federation, who, frag, description=description, now_ms=now)
        )
        append_events(self.node, p)
        return p.cid

    def vote(self, member: str, proposal_cid: CID | str, *, approve: bool = True) -> Tally:
        """``member`` votes; once the proposal is approved the authority activates it."""
        who = self._member(member)
        cid = parse_cid(proposal_cid) if isinstance(proposal_cid, str) else proposal_cid
        row = self._books(lambda b: gov.proposal(b, cid))
        ballot = vote(
            parse_cid(row["cid"]), row["federation"], who, approve=approve, now_ms=self.node.clock()
        )
        append_events(self.node, ballot)
        tally = self.tally(cid)
        if tally.status == "Approved":
            act = self._books(
                lambda b: gov.activation_for(b, cid, self.node.authority, self.node.clock())
            )
            append_events(self.node, act)
            tally = self.tally(cid)
        return tally
