"""A task's outcome as its users see it: the quorum's decision, and a verified guest failure.

The quorum decides whether the worker's result is the right one (``Accepted``). A result can
be the right one and still be a failure of the guest: a module that is not wasm, a trap, an
out-of-fuel, a non-zero exit. Every honest re-execution reaches the same failure, so it is
verified, and paid by policy like any accepted work; but it is not an answer, so users see it
as its own outcome, ``Failed``, with the error (the receipt's exit code, and the error type
the worker's output names). One function for the node's handles, the frames, the dashboard,
``mesh-cli status`` and the story.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ERROR_PREFIX", "guest_error", "task_outcome"]

#: How a worker's output names a deterministic execution error (``runtime.agent``).
ERROR_PREFIX: Final = b"meshbench-error "


def guest_error(exit_code: int, output: bytes | None) -> str | None:
    """What failed in the guest, or None when it exited 0."""
    if exit_code == 0:
        return None
    if output is not None and output.startswith(ERROR_PREFIX):
        kind = output[len(ERROR_PREFIX) :].split(b"\n", 1)[0].decode("utf-8", "replace")
        return f"{kind} (exit code {exit_code})"
    return f"the guest exited with code {exit_code}"


def task_outcome(
    decision: str | None, exit_code: int | None, output: bytes | None = None
) -> tuple[str | None, str | None]:
    """``(outcome, error)``: ``Failed`` for an accepted result whose guest failed."""
    if decision == "Accepted" and exit_code:
        return "Failed", guest_error(exit_code, output)
    return decision, None
