"""Regenerate the transition table and diagram embedded in docs/protocol.md (`make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

from meshbench.core.protocol import transition_mermaid, transition_table_markdown

DOC = Path(__file__).with_name("protocol.md")


def main() -> None:
    text = DOC.read_text()
    text = re.sub(
        r"<!-- transition-table -->.*?<!-- /transition-table -->",
        lambda _: f"<!-- transition-table -->\n{transition_table_markdown()}\n"
        "<!-- /transition-table -->",
        text,
        flags=re.S,
    )
    text = re.sub(
        r"```mermaid\n.*?```",
        lambda _: f"```mermaid\n{transition_mermaid()}\n```",
        text,
        flags=re.S,
    )
    DOC.write_text(text)


if __name__ == "__main__":
    main()
