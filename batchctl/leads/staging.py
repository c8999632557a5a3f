"""A lead file -> a batch, through ``batchctl.create_batch_from_rows`` and ``add_entries``.

The leads go a chunk at a time with COPY into a temporary table, and each chunk's
``p_entries`` rows are assembled from it on the server: no JSON document of the file is built
and taken apart again, and the database itself judges the time zones (with the same function
create_batch uses), so a bad zone is reported by its CSV line instead of by its index. The
first chunk creates the batch and each later one is added to it, all in one transaction: the
server stores a chunk while the worker processes (batchctl.leads.parallel) parse the next ones,
and no statement holds the whole file in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from batchctl.client.sync import Client
from batchctl.leads.csvfile import Problem
from batchctl.leads.parallel import chunked
from batchctl.leads.rows import Lead

STAGE = "pg_temp.batchctl_csv_leads"
CHUNK_ROWS = 5_000  # leads per COPY and per create/add call


class InvalidRows(ValueError):
    """Rows were bad and skipping them was not asked for: nothing was created."""

    def __init__(self, problems: list[Problem], rows: int) -> None:
        super().__init__(f"{len(problems)} of {rows} rows are invalid")
        self.problems = problems
        self.rows = rows


@dataclass
class Staged:
    rows: int = 0  # data rows read, valid or not
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return self.rows - len(self.problems)


def open_stage(conn: psycopg.Connection[Any]) -> None:
    """The temporary table leads are staged in, dropped at commit or rollback: call this
    inside a transaction."""
    conn.execute(
        f"CREATE TEMP TABLE {STAGE} (line integer NOT NULL,"
        " to_phone text NOT NULL, lead_name text, lead_id text, context jsonb NOT NULL,"
        " timezone text, number_timezone text, region text) ON COMMIT DROP"
    )


class ZoneVerdicts:
    """The database's verdicts on time-zone names (``batchctl.timezone_verdicts``, the rule
    create_batch and add_entries apply), asked once per name for a whole import: the server
    reads its zone list for each question (about 10 ms), and a file names few zones."""

    def __init__(self) -> None:
        self._problems: dict[str, str | None] = {}  # name -> what is wrong with it, or None

    def judge(self, conn: psycopg.Connection[Any], names: Iterable[str]) -> None:
        """Asks the database about the names not judged yet."""
        new = sorted(set(names) - self._problems.keys())
        if not new:
            return
        self._problems.update(Client(conn).timezone_verdicts(new))

    def problem(self, name: str) -> str | None:
        """What is wrong with a judged name, or None when the database takes it."""
        return self._problems[name]


def stage_leads(
    conn: psycopg.Connection[Any],
    leads: Iterable[Lead | Problem],
    zones: ZoneVerdicts | None = None,
) -> Staged:
    """Copies the valid leads into the stage (see open_stage) and collects the problems, the
    database's time-zone verdicts on the rows staged included, in line order. A number's own
    zone that the database does not take is dropped (the tenant's zone then applies). ``zones``
    keeps the verdicts from one call to the next."""
    zones = ZoneVerdicts() if zones is None else zones
    staged = Staged()
    row_zones: set[str] = set()
    number_zones: set[str] = set()
    columns = "line, to_phone, lead_name, lead_id, context, timezone, number_timezone, region"
    with conn.cursor().copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
        for item in leads:
            staged.rows += 1
            if isinstance(item, Problem):
                staged.problems.append(item)
                continue
            copy.write_row(item.copy_row())
            if item.timezone is not None:
                row_zones.add(item.timezone)
            if item.number_timezone is not None:
                number_zones.add(item.number_timezone)
    zones.judge(conn, row_zones | number_zones)
    bad = {name: problem for name in row_zones if (problem := zones.problem(name))}
    if bad:
        lines = conn.execute(
            f"SELECT line, timezone FROM {STAGE} WHERE timezone IN (SELECT unnest(%s::text[]))",
            (list(bad),),
        )
        staged.problems += [Problem(line, "timezone", bad[tz]) for line, tz in lines]
    unknown = [name for name in number_zones if zones.problem(name)]
    if unknown:
        conn.execute(
            f"UPDATE {STAGE} SET number_timezone = NULL"
            " WHERE number_timezone IN (SELECT unnest(%s::text[]))",
            (unknown,),
        )
    staged.problems.sort(key=lambda p: p.line)
    return staged


def drop_staged(conn: psycopg.Connection[Any], problems: list[Problem]) -> None:
    """Leaves the rows with problems out of the batch (--skip-invalid)."""
    # IN (unnest) is a hash semi-join; "= ANY(array)" would scan the array once per row.
    lines = [p.line for p in problems]
    conn.execute(f"DELETE FROM {STAGE} WHERE line IN (SELECT unnest(%s::int[]))", (lines,))


# The staged leads as p_entries, in line order. A row without a zone of its own gets its
# number's (stage_leads kept it only if the database takes it); else the tenant's applies.
STAGED_ENTRIES = sql.SQL(f"""(
    SELECT array_agg(ROW(s.to_phone, s.lead_name, s.lead_id, s.context,
                         coalesce(s.timezone, s.number_timezone), s.region)::batchctl.new_entry
                     ORDER BY s.line)
      FROM {STAGE} s)""")


def create_batch_from_stage(
    conn: psycopg.Connection[Any], tenant_id: UUID, options: Mapping[str, Any]
) -> UUID:
    """``create_batch_from_rows`` with the staged leads."""
    return Client(conn).create_batch_from_rows(tenant_id, STAGED_ENTRIES, options)


def add_staged(conn: psycopg.Connection[Any], tenant_id: UUID, batch_id: UUID) -> None:
    """``add_entries`` with the staged leads."""
    Client(conn).add_entries(tenant_id, batch_id, STAGED_ENTRIES)


def import_batch(
    conn: psycopg.Connection[Any],
    tenant_id: UUID,
    leads: Iterable[Lead | Problem],
    options: Mapping[str, Any],
    *,
    skip_invalid: bool = False,
) -> tuple[UUID, list[Problem]]:
    """Creates a batch from ``leads`` in one transaction; returns its id and the rows skipped.
    Raises InvalidRows (creating nothing) when rows are bad and ``skip_invalid`` is false."""
    with conn.transaction():
        open_stage(conn)
        read = Staged()
        zones = ZoneVerdicts()
        batch: UUID | None = None
        for chunk in chunked(leads, CHUNK_ROWS):
            staged = stage_leads(conn, chunk, zones)
            read.rows += staged.rows
            read.problems += staged.problems
            # Once a row is bad and bad rows are not skipped, the rest is only read, so that
            # every bad row can be listed.
            if staged.valid and (skip_invalid or not read.problems):
                if staged.problems:
                    drop_staged(conn, staged.problems)
                if batch is None:
                    batch = create_batch_from_stage(conn, tenant_id, options)
                else:
                    add_staged(conn, tenant_id, batch)
            conn.execute(f"TRUNCATE {STAGE}")
        if read.problems and not skip_invalid:
            raise InvalidRows(read.problems, read.rows)
        if batch is None:  # no valid row: create_batch_from_rows says the list is empty
            batch = create_batch_from_stage(conn, tenant_id, options)
        return batch, read.problems
