"""``/meshbench/sync/1.0.0`` frames: the event log a node hands a late joiner.

Wire format (the server writes frames, then closes the stream)::

    frame = uvarint(len(topic)) topic-utf8 uvarint(len(obj)) obj   ; obj: a signed DAG-CBOR object

The reader refuses a bad topic name or an object over its size limit before reading the
object's bytes; what the object is worth is the gossip guard's call, not this module's.
"""

from __future__ import annotations

from typing import Final

from meshbench.core.errors import NetworkError
from meshbench.net.topics import Topic
from meshbench.net.wire import StreamReader, uvarint

__all__ = ["MAX_TOPIC_BYTES", "SYNC_PROTOCOL", "encode_frame", "read_frame"]

SYNC_PROTOCOL: Final = "/meshbench/sync/1.0.0"
MAX_TOPIC_BYTES: Final = 64


def encode_frame(topic: Topic, data: bytes) -> bytes:
    name = topic.value.encode()
    return uvarint(len(name)) + name + uvarint(len(data)) + data


async def read_frame(reader: StreamReader, max_bytes: int) -> tuple[Topic, bytes] | None:
    """The next (topic, object bytes) frame, or None at the end of the stream.

    Raises :class:`NetworkError` for a truncated frame, an unknown topic or an object over
    ``max_bytes``.
    """
    if await reader.at_end():
        return None
    n = await reader.uvarint()
    if n > MAX_TOPIC_BYTES:
        raise NetworkError(f"sync frame has a topic name of {n} bytes (at most {MAX_TOPIC_BYTES})")
    topic = Topic.parse((await reader.exactly(n)).decode(errors="replace"))
    size = await reader.uvarint()
    if size > max_bytes:
        raise NetworkError(f"sync frame of {size} bytes is over the {max_bytes}-byte limit")
    return topic, await reader.exactly(size)
