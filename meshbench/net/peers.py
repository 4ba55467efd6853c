"""What a node knows about a connected peer (the rows of ``mesh-cli list-peers``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["PeerRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerRecord:
    peer_id: str
    #: The did:key named by the peer's Ed25519 PeerID ("" for other key types).
    did: str
    addrs: tuple[str, ...] = ()
    #: From the peer's Identify reply ("" until it has answered).
    agent: str = ""
    protocol_version: str = ""
    #: Mesh topics the peer subscribes to (short names).
    topics: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["addrs"] = list(self.addrs)
        out["topics"] = list(self.topics)
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PeerRecord:
        return cls(
            peer_id=str(value["peer_id"]),
            did=str(value.get("did", "")),
            addrs=tuple(value.get("addrs", ())),
            agent=str(value.get("agent", "")),
            protocol_version=str(value.get("protocol_version", "")),
            topics=tuple(value.get("topics", ())),
        )
