"""What the commands that read CSV files share: the --default-region option, opening the file,
and listing its bad rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn, TypeVar

import click

from batchctl.cli.errors import UserError
from batchctl.leads.csvfile import CsvFileError, Problem
from batchctl.leads.phones import PhoneError, check_region

F = TypeVar("F", bound=Callable[..., Any])

CSV_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

# Enough to see what is wrong; a file where every row is bad would otherwise flood the screen.
PROBLEMS_SHOWN = 100


def _region(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return check_region(value)
    except PhoneError as exc:
        raise click.BadParameter(str(exc)) from None


def default_region_option(command: F) -> F:
    """``--default-region``, checked and upper-cased, passed as ``default_region``."""
    return click.option(
        "--default-region",
        metavar="CC",
        callback=_region,
        help="Country of numbers written without +country code (e.g. US, GB, DE).",
    )(command)


@contextmanager
def open_csv(path: Path) -> Iterator[IO[str]]:
    """The file as text for the csv module; a file-level problem becomes a one-line error
    naming the file."""
    # utf-8-sig: spreadsheets often start UTF-8 files with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as stream:
        try:
            yield stream
        except CsvFileError as exc:
            raise UserError(f"{path}: {exc}") from None


def echo_problems(path: Path, problems: Sequence[Problem], verb: str = "") -> None:
    """One line per bad row on stderr ("leads.csv: line 4, column phone: ...")."""
    for problem in problems[:PROBLEMS_SHOWN]:
        click.echo(f"{verb}{path.name}: {problem}", err=True)
    if len(problems) > PROBLEMS_SHOWN:
        click.echo(f"... and {len(problems) - PROBLEMS_SHOWN} more rows", err=True)


def reject(path: Path, problems: Sequence[Problem], rows: int, outcome: str) -> NoReturn:
    """Lists the bad rows and ends the command with ``outcome`` (what was not done)."""
    echo_problems(path, problems)
    raise UserError(f"{len(problems)} of {rows} rows in {path.name} are invalid: {outcome}")
