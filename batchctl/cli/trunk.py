"""``batchctl trunk``: a tenant's SIP trunks and their caller-ID pools (docs/trunks.md).

Every setting is judged by the database (batchctl.trunk_problem, add_caller_ids), whose message
names what is wrong; the command line reads numbers and files, and checks the numbers' form
first only so that a bad one is named by its argument or its file's line."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import psycopg
from psycopg.rows import dict_row

from batchctl.cli.context import AppContext
from batchctl.cli.csv_input import PROBLEMS_SHOWN
from batchctl.cli.errors import UserError
from batchctl.cli.output import json_option, print_fields, print_json, print_table
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect

# batchctl.is_e164 (sql/025): the form add_caller_ids accepts. National formats are refused,
# not guessed: a caller ID in the wrong country would be presented on every call.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
E164_HINT = "not an E.164 number (+ country code and number, e.g. +14155550123)"
# add_caller_ids' limit per call; a longer file is sent in parts, in one transaction.
NUMBERS_PER_CALL = 10_000
# The header names of a caller-ID file's number column (any case).
NUMBER_COLUMNS = ("number", "phone")


def resolve_trunk(conn: psycopg.Connection[Any], tenant_id: UUID, ref: str) -> UUID:
    """The id of the tenant's trunk ``ref`` names, by id or by its name within the tenant."""
    try:
        candidate: UUID | None = UUID(ref)
    except ValueError:
        candidate = None
    rows = conn.execute(
        """SELECT id FROM batchctl.trunks
            WHERE tenant_id = %s AND (id = %s OR name = %s) ORDER BY created_at, id""",
        (tenant_id, candidate, ref),
    ).fetchall()
    if not rows:
        raise UserError(f'trunk "{ref}" not found (batchctl trunk list TENANT shows them)')
    if len(rows) > 1:  # a name written like another trunk's id
        ids = ", ".join(str(row[0]) for row in rows)
        raise UserError(f'"{ref}" names {len(rows)} trunks; use an id: {ids}')
    return rows[0][0]


class CallsPerSecond(click.ParamType):
    """A decimal number of calls per second, kept exact (0.5, 0.001); its range is the
    database's to judge."""

    name = "CPS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Decimal):
            return value
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            self.fail(f"{value!r} is not a number of calls per second (e.g. 5 or 0.5)", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a number of calls per second (e.g. 5 or 0.5)", param, ctx)
        return number


CPS = CallsPerSecond()


def _json_number(value: Decimal) -> int | float:
    """A rate for update_trunk's JSON: exact for what a person types (float's shortest repr
    gives back the same decimal digits up to 15 of them)."""
    return int(value) if value == value.to_integral_value() else float(value)


@click.group()
def trunk() -> None:
    """SIP trunks a tenant dials through, and the caller IDs each presents (docs/trunks.md)."""


@trunk.command()
@click.argument("tenant")
@click.argument("name")
@click.option(
    "--livekit-trunk-id", required=True, metavar="ID", help="LiveKit's outbound SIP trunk (ST_…)."
)
@click.option(
    "--max-cps",
    type=CPS,
    required=True,
    help="New calls per second the carrier accepts on it (0.5: one every 2 s).",
)
@click.option(
    "--max-concurrent",
    type=int,
    metavar="N",
    help="Calls in flight on it at once [no cap of its own].",
)
@json_option
@click.pass_obj
def create(
    app: AppContext,
    tenant: str,
    name: str,
    livekit_trunk_id: str,
    max_cps: Decimal,
    max_concurrent: int | None,
    as_json: bool,
) -> None:
    """Create a trunk of TENANT (id or exact name) and print its id. A tenant's first trunk
    is its default."""
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        trunk_id = Client(conn).create_trunk(
            tenant_id, name, livekit_trunk_id, max_cps, max_concurrent
        )
    if as_json:
        print_json({"tenant_id": tenant_id, "trunk_id": trunk_id})
    else:
        click.echo(trunk_id)


@trunk.command("list")
@click.argument("tenant")
@json_option
@click.pass_obj
def list_trunks(app: AppContext, tenant: str, as_json: bool) -> None:
    """List TENANT's trunks, with their limits and caller IDs."""
    with connect(app.read_url()) as conn, conn.cursor(row_factory=dict_row) as cur:
        tenant_id = resolve_tenant(conn, tenant)
        # "default": the tenant's first trunk by (created_at, id), as trunk_status says it.
        rows = cur.execute(
            """SELECT t.id AS trunk_id, t.name, t.livekit_trunk_id, t.max_cps, t.max_concurrent,
                      row_number() OVER (ORDER BY t.created_at, t.id) = 1 AS "default",
                      (SELECT count(*) FROM batchctl.caller_ids n
                        WHERE n.tenant_id = t.tenant_id AND n.trunk_id = t.id) AS caller_ids,
                      t.created_at
                 FROM batchctl.trunks t WHERE t.tenant_id = %s ORDER BY t.created_at, t.id""",
            (tenant_id,),
        ).fetchall()
    if as_json:
        print_json([{**row, "max_cps": _json_number(row["max_cps"])} for row in rows])
        return
    print_table(
        rows,
        [
            ("name", "NAME"),
            ("trunk_id", "TRUNK"),
            ("livekit_trunk_id", "LIVEKIT TRUNK"),
            ("max_cps", "MAX CPS"),
            ("max_concurrent", "MAX CONCURRENT"),
            ("default", "DEFAULT"),
            ("caller_ids", "CALLER IDS"),
        ],
        empty="no trunks yet (batchctl trunk create TENANT NAME --livekit-trunk-id ID --max-cps N)",
    )


@trunk.command()
@click.argument("tenant")
@click.argument("trunk_ref", metavar="TRUNK")
@json_option
@click.pass_obj
def show(app: AppContext, tenant: str, trunk_ref: str, as_json: bool) -> None:
    """Show TRUNK (id or name) of TENANT: its settings, calls in flight and started lately,
    and its caller IDs with today's calls (since midnight in the tenant's zone)."""
    with connect(app.read_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        status = Client(conn).trunk_status(tenant_id, resolve_trunk(conn, tenant_id, trunk_ref))
    _print_status(status, as_json)


@trunk.command()
@click.argument("tenant")
@click.argument("trunk_ref", metavar="TRUNK")
@click.option("--name", help="A new name.")
@click.option("--livekit-trunk-id", metavar="ID", help="Another LiveKit outbound SIP trunk.")
@click.option("--max-cps", type=CPS, help="New calls per second the carrier accepts.")
@click.option("--max-concurrent", type=int, metavar="N", help="Calls in flight on it at once.")
@click.option("--no-max-concurrent", is_flag=True, help="No cap of its own on calls in flight.")
@json_option
@click.pass_obj
def update(
    app: AppContext,
    tenant: str,
    trunk_ref: str,
    name: str | None,
    livekit_trunk_id: str | None,
    max_cps: Decimal | None,
    max_concurrent: int | None,
    no_max_concurrent: bool,
    as_json: bool,
) -> None:
    """Change some of TRUNK's settings (the others keep theirs) and show it."""
    if max_concurrent is not None and no_max_concurrent:
        raise click.UsageError("give --max-concurrent N or --no-max-concurrent, not both")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if livekit_trunk_id is not None:
        changes["livekit_trunk_id"] = livekit_trunk_id
    if max_cps is not None:
        changes["max_cps"] = _json_number(max_cps)
    if max_concurrent is not None or no_max_concurrent:
        changes["max_concurrent"] = max_concurrent
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --livekit-trunk-id, --max-cps, --max-concurrent "
            "or --no-max-concurrent"
        )
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        trunk_id = resolve_trunk(conn, tenant_id, trunk_ref)
        status = Client(conn).update_trunk(tenant_id, trunk_id, changes)
    _print_status(status, as_json)


@trunk.command("add-numbers")
@click.argument("tenant")
@click.argument("trunk_ref", metavar="TRUNK")
@click.argument("numbers", metavar="[NUMBER]...", nargs=-1)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help='Read the numbers from FILE: one a row, in its "number" or "phone" column, else its '
    "first.",
)
@click.option("--daily-cap", type=int, metavar="N", help="Calls a day each may place [no cap].")
@json_option
@click.pass_obj
def add_numbers(
    app: AppContext,
    tenant: str,
    trunk_ref: str,
    numbers: tuple[str, ...],
    csv_file: Path | None,
    daily_cap: int | None,
    as_json: bool,
) -> None:
    """Add caller IDs (E.164: +14155550123) to TRUNK's pool. Numbers the pool has already
    keep their daily cap. All or nothing: one bad number (named by its argument or its line)
    and none is added."""
    if bool(numbers) == (csv_file is not None):
        raise click.UsageError("give the numbers as NUMBER... or --csv FILE (one of them)")
    given = _numbers_from_file(csv_file) if csv_file is not None else _numbers_from_args(numbers)
    unique = list(dict.fromkeys(given))
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        trunk_id = resolve_trunk(conn, tenant_id, trunk_ref)
        client = Client(conn)
        with conn.transaction():
            added = sum(
                client.add_caller_ids(tenant_id, trunk_id, part, daily_cap)
                for part in _parts(unique)
            )
    if as_json:
        print_json({"trunk_id": trunk_id, "added": added, "already_in_pool": len(unique) - added})
    else:
        click.echo(f"{added} caller IDs added ({len(unique) - added} were in the pool already)")


@trunk.command("remove-numbers")
@click.argument("tenant")
@click.argument("trunk_ref", metavar="TRUNK")
@click.argument("numbers", metavar="NUMBER...", nargs=-1, required=True)
@json_option
@click.pass_obj
def remove_numbers(
    app: AppContext, tenant: str, trunk_ref: str, numbers: tuple[str, ...], as_json: bool
) -> None:
    """Take caller IDs out of TRUNK's pool (a number it does not have is ignored)."""
    unique = list(dict.fromkeys(n.strip() for n in numbers))
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        trunk_id = resolve_trunk(conn, tenant_id, trunk_ref)
        client = Client(conn)
        with conn.transaction():
            removed = sum(
                client.remove_caller_ids(tenant_id, trunk_id, part) for part in _parts(unique)
            )
    if as_json:
        print_json({"trunk_id": trunk_id, "removed": removed})
    else:
        click.echo(f"{removed} caller IDs removed ({len(unique) - removed} were not in the pool)")


def _parts(numbers: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(numbers), NUMBERS_PER_CALL):
        yield list(numbers[start : start + NUMBERS_PER_CALL])


def _numbers_from_args(numbers: Sequence[str]) -> list[str]:
    for position, number in enumerate(numbers, start=1):
        if not E164.fullmatch(number.strip()):
            raise UserError(f"NUMBER {position} ({_quoted(number)}) is {E164_HINT}")
    return [number.strip() for number in numbers]


@dataclass(frozen=True)
class BadLine:
    line: int
    message: str


def _numbers_from_file(path: Path) -> list[str]:
    """The numbers of a caller-ID file; every bad line is listed, then none is added."""
    numbers: list[str] = []
    bad: list[BadLine] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as text:
            reader = csv.reader(text, strict=True)
            for line, cell in _number_cells(reader):
                if not cell:
                    bad.append(BadLine(line, "no number"))
                elif not E164.fullmatch(cell):
                    bad.append(BadLine(line, f"{_quoted(cell)} is {E164_HINT}"))
                else:
                    numbers.append(cell)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text (save it as CSV UTF-8)") from None
    except csv.Error as exc:
        raise UserError(f"{path}: line {reader.line_num}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    rows = len(numbers) + len(bad)
    if bad:
        for problem in bad[:PROBLEMS_SHOWN]:
            click.echo(f"{path.name}: line {problem.line}: {problem.message}", err=True)
        if len(bad) > PROBLEMS_SHOWN:
            click.echo(f"... and {len(bad) - PROBLEMS_SHOWN} more rows", err=True)
        first = bad[0]
        raise UserError(
            f"{len(bad)} of {rows} rows in {path.name} are invalid (line {first.line}: "
            f"{first.message}): no number was added"
        )
    if not numbers:
        raise UserError(f"{path}: no numbers in it")
    return numbers


def _number_cells(reader: Any) -> Iterator[tuple[int, str]]:
    """(line, the row's number cell, stripped) for each row that is not blank. The first row
    is a header when it names a "number" or "phone" column (that column is read) or when its
    first cell is no number at all (the first column is read); else every row is data."""
    column: int | None = None
    start = 1
    for fields in reader:
        line, start = start, reader.line_num + 1
        if not any(field.strip() for field in fields):
            continue
        if column is None:
            names = [field.strip().lower() for field in fields]
            found = next((names.index(n) for n in NUMBER_COLUMNS if n in names), None)
            if found is not None or not _looks_like_a_number(names[0]):
                column = found or 0
                continue
            column = 0
        yield line, fields[column].strip() if column < len(fields) else ""


def _looks_like_a_number(cell: str) -> bool:
    """A first row's cell that is a number (even a badly written one), not a column's name."""
    return bool(re.fullmatch(r"[+0-9(][0-9 ()./-]*", cell))


def _quoted(text: str) -> str:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return f'"{shown}"'


def _backoff(backoff: dict[str, Any]) -> str:
    """The carrier's back-off (docs/trunks.md#back-off), for people."""
    if not backoff["active"]:
        return "none"
    until = datetime.fromisoformat(backoff["until"]).strftime("%Y-%m-%d %H:%M:%S")
    return f"until {until} UTC ({backoff['refusals']} capacity refusals in a row)"


def _print_status(status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(status)
        return
    print_fields(
        [
            ("trunk", status["trunk_id"]),
            ("name", status["name"]),
            ("livekit trunk", status["livekit_trunk_id"]),
            ("max cps", status["max_cps"]),
            ("max concurrent", status["max_concurrent"] or "- (no cap of its own)"),
            ("default", status["default"]),
            ("in flight", status["in_flight"]),
            ("started, last second", status["started_last_second"]),
            ("started, last minute", status["started_last_minute"]),
            ("back-off", _backoff(status["backoff"])),
            ("created (UTC)", datetime.fromisoformat(status["created_at"])),
            ("updated (UTC)", datetime.fromisoformat(status["updated_at"])),
        ]
    )
    click.echo()
    print_table(
        status["caller_ids"],
        [
            ("number", "CALLER ID"),
            ("country", "COUNTRY"),
            ("daily_cap", "DAILY CAP"),
            ("today", "TODAY"),
        ],
        empty="no caller IDs (batchctl trunk add-numbers TENANT TRUNK NUMBER...)",
    )
