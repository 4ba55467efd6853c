"""Hypothesis strategies for the guest file system (:mod:`meshbench.exec.vfs`).

``trees()`` are input directories as an executor receives them; ``guest_paths(tree)`` are
relative paths that mix names that exist, names that do not, ``.``, ``..``, empty components
and the occasional leading ``/``: what a hostile guest would try.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

__all__ = ["file_names", "guest_paths", "trees"]

file_names = st.sampled_from(["a", "b", "data.txt", "sub", "x y", "é", "..a", ".hidden"])


def trees() -> st.SearchStrategy[dict[str, Any]]:
    """Input trees: names to bytes or to sub-trees (a few levels, a dozen entries at most)."""
    leaves = st.binary(max_size=32)
    return st.recursive(
        st.dictionaries(file_names, leaves, max_size=4),
        lambda inner: st.dictionaries(file_names, leaves | inner, max_size=4),
        max_leaves=12,
    )


def _names(tree: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for name, value in tree.items():
        out.append(name)
        if isinstance(value, dict):
            out.extend(_names(value))
    return out


def guest_paths(tree: dict[str, Any]) -> st.SearchStrategy[str]:
    """Paths a guest might pass for ``tree``: existing names, ``..``, ``.``, ``/`` and junk."""
    parts = st.sampled_from(sorted({*_names(tree), "..", ".", "", "missing"})) | file_names
    return st.builds(
        lambda absolute, ps: ("/" if absolute else "") + "/".join(ps),
        st.sampled_from([False, False, False, True]),
        st.lists(parts, min_size=1, max_size=6),
    )
