"""What the commands that read lead files share: --default-region, --encoding, --delimiter and
--sheet, opening the file (batchctl.leads.files), and listing its bad rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from batchctl.cli.errors import UserError
from batchctl.leads.csvfile import CsvFileError, Problem
from batchctl.leads.files import LeadFile, check_delimiter, check_encoding
from batchctl.leads.phones import PhoneError, check_region

F = TypeVar("F", bound=Callable[..., Any])

LEAD_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)

# Enough to see what is wrong; a file where every row is bad would otherwise flood the screen.
PROBLEMS_SHOWN = 100


def _checked(check: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        try:
            return None if value is None else check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _region(value: str) -> str | None:
    try:
        return check_region(value)
    except PhoneError as exc:
        raise ValueError(str(exc)) from None


def default_region_option(command: F) -> F:
    """``--default-region``, checked and upper-cased, passed as ``default_region``."""
    return click.option(
        "--default-region",
        metavar="CC",
        callback=_checked(_region),
        help="Country of numbers written without +country code (e.g. US, GB, DE).",
    )(command)


def lead_file_options(command: F) -> F:
    """``--encoding``, ``--delimiter`` and ``--sheet``, checked, passed under those names."""
    options = [
        click.option(
            "--encoding",
            metavar="ENCODING",
            callback=_checked(check_encoding),
            help="A CSV file's encoding when it is not UTF-8, e.g. cp1252 (older Excel's).",
        ),
        click.option(
            "--delimiter",
            metavar="CHAR",
            callback=_checked(check_delimiter),
            help="A CSV file's delimiter: , ; tab or | [found from the header line].",
        ),
        click.option("--sheet", metavar="NAME", help="A workbook's sheet [the first]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@contextmanager
def open_lead_file(path: Path, **reading: str | None) -> Iterator[LeadFile]:
    """The file opened for its records (``reading``: encoding, delimiter, sheet); a problem
    with the file as a whole becomes a one-line error naming it."""
    try:
        with LeadFile(path, **reading) as source:
            yield source
    except CsvFileError as exc:
        raise UserError(f"{path}: {exc}") from None


def echo_problems(source: LeadFile, problems: Sequence[Problem], verb: str = "") -> None:
    """One line per bad row on stderr ("leads.csv: line 4, column phone: ...")."""
    for problem in problems[:PROBLEMS_SHOWN]:
        click.echo(f"{verb}{source.path.name}: {source.describe(problem)}", err=True)
    if len(problems) > PROBLEMS_SHOWN:
        click.echo(f"... and {len(problems) - PROBLEMS_SHOWN} more rows", err=True)


def reject(source: LeadFile, problems: Sequence[Problem], rows: int, outcome: str) -> NoReturn:
    """Lists the bad rows and ends the command with ``outcome`` (what was not done)."""
    echo_problems(source, problems)
    raise UserError(f"{len(problems)} of {rows} rows in {source.path.name} are invalid: {outcome}")
