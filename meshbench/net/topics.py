"""Gossip topics of the mesh, namespaced on the wire, and which object types each carries.

A topic carries only the signed types listed here (by ``@type`` tag, so that types added by
other layers can be routed by adding a line, not an import). Anything else on a topic is a
schema error: the validator drops it before it reaches the protocol core.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from meshbench.core.errors import NetworkError

__all__ = ["NAMESPACE", "TOPIC_TYPES", "Topic", "topic_for_type", "wire_topic"]

NAMESPACE: Final = "/meshbench/1/"


class Topic(StrEnum):
    TASKS = "tasks"
    OFFERS = "offers"
    EXECUTIONS = "executions"
    VERIFICATIONS = "verifications"
    POLICY = "policy"
    PEERS = "peers"
    #: Ledger events the federation's authority orders (mints, transfers, escrow, rewards).
    LEDGER = "ledger"
    #: Objects sealed to one recipient: reveals, verdicts, private requests (ciphertext).
    SEALED = "sealed"

    @property
    def wire(self) -> str:
        return NAMESPACE + self.value

    @classmethod
    def parse(cls, name: str) -> Topic:
        """A topic from its short (``tasks``) or wire (``/meshbench/1/tasks``) name."""
        short = name.removeprefix(NAMESPACE)
        try:
            return cls(short)
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise NetworkError(f"unknown topic {name!r}; known: {known}") from None


TOPIC_TYPES: Final[dict[Topic, frozenset[str]]] = {
    Topic.TASKS: frozenset({"TaskIntent", "TaskAssigned", "TaskExpired", "WorkRequest"}),
    Topic.OFFERS: frozenset({"ComputeOffer"}),
    Topic.EXECUTIONS: frozenset({"ResultCommitment", "ExecutionReceipt"}),
    # AuditDrawn is made once the worker has committed (who audits is no secret by then);
    # VerdictJudged and RefereeRuled are the authority's judgements behind a decision
    Topic.VERIFICATIONS: frozenset(
        {"VerificationReceipt", "QuorumReached", "VerdictJudged", "AuditDrawn", "RefereeRuled"}
    ),
    # meshbench.store.sealing: a task's private objects, readable by their one recipient
    Topic.SEALED: frozenset({"SealedMessage"}),
    Topic.POLICY: frozenset(
        {
            "AuthorityClock",  # the authority's stamp before the proposals and votes it accepts
            "MeshPolicyProposal",
            "MeshPolicyVote",
            "MeshPolicyActivated",
            "FederationCreated",
            "FederationSucceeded",
        }
    ),
    Topic.PEERS: frozenset({"PeerInfo", "Credential", "CredentialRevoked", "ReputationSnapshot"}),
    Topic.LEDGER: frozenset(
        {
            "Mint",
            "Transfer",
            "EscrowStateChanged",
            "EscrowDispute",
            "HeldReleased",
            "ResultClawedBack",
            "RewardDistributed",
            "StakeRequest",
            "StakeBonded",
            "StakeUnbonding",
            "StakeWithdrawn",
            "StakeSlashed",
        }
    ),
}


def wire_topic(topic: Topic | str) -> str:
    return Topic.parse(topic).wire


def topic_for_type(tag: str) -> Topic:
    """The topic an object of type ``tag`` is published on."""
    for topic, tags in TOPIC_TYPES.items():
        if tag in tags:
            return topic
    raise NetworkError(f"no gossip topic carries {tag!r} objects")
