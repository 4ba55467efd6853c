"""What every CLI shares: the data dir, JSON output, and errors to stderr with exit 1.

This module is imported by every command's start-up, so it imports nothing heavy (client
commands of ``mesh-cli`` answer in well under 0.3 s).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from meshbench.core.errors import MeshError, NoSuchFile

__all__ = [
    "InputFile",
    "data_dir_option",
    "emit",
    "group_data_dir_option",
    "human",
    "print_table",
    "resolve_data_dir",
    "run_cli",
]

F = TypeVar("F", bound=Callable[..., Any])

# The group's --data-dir (given before the subcommand) is kept here for its subcommands.
_DATA_DIR_KEY = "meshbench.data_dir"


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir`` (after or before the subcommand), else ``$MESHBENCH_HOME``, else the
    user's data dir."""
    if not explicit:
        ctx = click.get_current_context(silent=True)
        explicit = None if ctx is None else ctx.meta.get(_DATA_DIR_KEY)
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("MESHBENCH_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("meshbench", appauthor=False))


def _remember_data_dir(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        ctx.meta[_DATA_DIR_KEY] = value
    return value


_DATA_DIR_HELP = "Data folder (default: $MESHBENCH_HOME, else the user's data dir)."


def data_dir_option(f: F) -> F:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=_remember_data_dir,
        help=_DATA_DIR_HELP,
    )(f)


def group_data_dir_option(f: F) -> F:
    """``--data-dir`` on a command group: ``tool --data-dir D sub ...`` == ``tool sub
    --data-dir D ...`` (the subcommand's own option wins when both are given)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        callback=_remember_data_dir,
        expose_value=False,
        is_eager=True,
        help=_DATA_DIR_HELP,
    )(f)


class InputFile(click.ParamType):
    """A file that must exist; a missing one is ``error: NoSuchFile: ...`` with exit 1 (the
    documented form of every error), not click's usage error."""

    name = "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value).expanduser()
        if path.is_dir():
            raise NoSuchFile(f"{value} is a directory; give a file")
        if not path.is_file():
            raise NoSuchFile(f"no such file: {value} (relative paths start at {Path.cwd()})")
        return path


def human(value: Any, indent: int = 0) -> list[str]:
    """Nested dicts and lists as indented ``key  value`` lines (never Python reprs)."""
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "(none)"]
        width = max(len(str(k)) for k in value)
        lines = []
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(human(v, indent + 1))
            else:
                lines.append(f"{pad}{str(k).ljust(width)}  {_scalar(v)}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "(none)"]
        lines = []
        for item in value:
            if isinstance(item, dict | list) and item:
                sub = human(item, indent + 1)
                lines.append(pad + "- " + sub[0].strip())
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [pad + _scalar(value)]


def _scalar(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict | list):
        return "(none)"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def emit(value: Any, *, as_json: bool) -> None:
    """Print ``value`` as JSON (machines) or as readable text (people)."""
    if as_json:
        click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
    elif isinstance(value, dict | list):
        click.echo("\n".join(human(value)))
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
