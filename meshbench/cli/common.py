"""What every CLI shares: the data dir, JSON output, and errors to stderr with exit 1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import platformdirs

from meshbench.core.errors import MeshError

__all__ = ["data_dir_option", "emit", "print_table", "resolve_data_dir", "run_cli"]

F = TypeVar("F", bound=Callable[..., Any])


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir``, else ``$MESHBENCH_HOME``, else the user's data dir."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("MESHBENCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("meshbench", appauthor=False))


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data folder (default: $MESHBENCH_HOME, else the user's data dir).",
    )(f)


def emit(value: Any, *, as_json: bool) -> None:
    """Print ``value`` as JSON (machines) or as readable text (people)."""
    if as_json:
        click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
    elif isinstance(value, dict):
        width = max((len(str(k)) for k in value), default=0)
        for k, v in value.items():
            click.echo(f"{str(k).ljust(width)}  {v}")
    else:
        click.echo(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def run_cli(group: click.Group, argv: Sequence[str] | None = None) -> None:
    """Run a click group; a MeshError becomes one line on stderr and exit status 1."""
    try:
        group.main(args=argv, standalone_mode=False, prog_name=group.name)
    except MeshError as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
