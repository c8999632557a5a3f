"""A lead file -> a batch, through ``batchctl.create_batch_from_rows`` and ``add_entries``.

The leads go a chunk at a time with COPY into a temporary table, and each chunk's
``p_entries`` rows are assembled from it on the server: no JSON document of the file is built
and taken apart again, and the database itself judges the time zones (with the same function
create_batch uses), so a bad zone is reported by its CSV line instead of by its index. The
first chunk creates the batch and each later one is added to it, all in one transaction: the
server stores a chunk while the worker processes (batchctl.leads.parallel) parse the next ones,
and no statement holds the whole file in memory.

Consent evidence (``consent_at``, ``consent_source``) is judged on the server as well, by the
functions create_batch uses (``timestamp_problem``, then ``entry_problem`` with the tenant's
``require_consent``), so a bad or missing consent is reported by its line. The rows
--skip-invalid leaves out are recorded (``record_intake_refusals``) in the transaction that
creates the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from batchctl.client.sync import Client
from batchctl.leads.csvfile import Problem
from batchctl.leads.parallel import chunked
from batchctl.leads.rows import CONSENT_AT, CONSENT_SOURCE, Lead

STAGE = "pg_temp.batchctl_csv_leads"
CHUNK_ROWS = 5_000  # leads per COPY and per create/add call
# batchctl.max_text_length(): record_intake_refusals refuses a longer problem text.
MAX_PROBLEM_LENGTH = 1000


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
        " timezone text, number_timezone text, region text, consent_at text,"
        " consent_source text) ON COMMIT DROP"
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


def consent_required(conn: psycopg.Connection[Any], tenant_id: UUID) -> bool:
    """Whether the tenant's policy requires consent evidence with every lead, as
    create_batch and add_entries read it (``batchctl.consent_required``)."""
    cursor = conn.cursor(row_factory=tuple_row)
    row = cursor.execute("SELECT batchctl.consent_required(%s)", (tenant_id,)).fetchone()
    return bool(row and row[0])


# The consent problems of the staged rows: create_batch's words and checks, the form of
# consent_at first (timestamp_problem: a text that passes casts without error), then
# entry_problem's consent rules (missing under require_consent, in the future, too long). The
# row's other fields are given as null: they were checked here already, or are checked by
# add_entries itself (entry_problem's first check, E.164, holds for every staged number).
CONSENT_PROBLEMS = f"""
    SELECT s.line, v.problem
      FROM {STAGE} s
      CROSS JOIN LATERAL (SELECT CASE
          WHEN batchctl.timestamp_problem(s.consent_at) IS NOT NULL
              THEN pg_catalog.format('consent_at %%s %%s',
                                     pg_catalog.to_jsonb(batchctl.excerpt(s.consent_at)),
                                     batchctl.timestamp_problem(s.consent_at))
          ELSE batchctl.entry_problem(s.to_phone, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                      s.consent_at::timestamptz, s.consent_source, %s)
          END AS problem) v
     WHERE v.problem IS NOT NULL
     ORDER BY s.line"""


def consent_problem(line: int, problem: str, to_phone: str | None) -> Problem:
    """A problem CONSENT_PROBLEMS found, under its column: "consent_at is missing: …" is
    "column consent_at: missing: …"."""
    for column in (CONSENT_AT, CONSENT_SOURCE):
        if problem.startswith(column + " "):
            message = problem.removeprefix(column + " ")
            if message.startswith("is missing:"):
                message = message.removeprefix("is ")
            return Problem(line, column, message, to_phone=to_phone)
    return Problem(line, None, problem, to_phone=to_phone)


def stage_leads(
    conn: psycopg.Connection[Any],
    leads: Iterable[Lead | Problem],
    zones: ZoneVerdicts | None = None,
    *,
    require_consent: bool = False,
) -> Staged:
    """Copies the valid leads into the stage (see open_stage) and collects the problems, the
    database's time-zone and consent verdicts on the rows staged included, in line order, one
    per row. A number's own zone that the database does not take is dropped (the tenant's zone
    then applies). ``zones`` keeps the verdicts from one call to the next;
    ``require_consent``: the tenant's policy (consent_required)."""
    zones = ZoneVerdicts() if zones is None else zones
    staged = Staged()
    row_zones: set[str] = set()
    number_zones: set[str] = set()
    given: dict[int, str | None] = {}  # line -> phone cell, for the problems found below
    has_consent = False
    columns = (
        "line, to_phone, lead_name, lead_id, context, timezone, number_timezone, region,"
        " consent_at, consent_source"
    )
    with conn.cursor().copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
        for item in leads:
            staged.rows += 1
            if isinstance(item, Problem):
                staged.problems.append(item)
                continue
            copy.write_row(item.copy_row())
            given[item.line] = item.given_phone
            if item.timezone is not None:
                row_zones.add(item.timezone)
            if item.number_timezone is not None:
                number_zones.add(item.number_timezone)
            has_consent = has_consent or bool(item.consent_at or item.consent_source)
    zones.judge(conn, row_zones | number_zones)
    bad = {name: problem for name in row_zones if (problem := zones.problem(name))}
    found: dict[int, Problem] = {}
    if bad:
        lines = conn.execute(
            f"SELECT line, timezone FROM {STAGE} WHERE timezone IN (SELECT unnest(%s::text[]))",
            (list(bad),),
        )
        for line, tz in lines:
            found[line] = Problem(line, "timezone", bad[tz], to_phone=given.get(line))
    # Without consent in the chunk and without the policy, no row can have a consent problem.
    if given and (has_consent or require_consent):
        cursor = conn.cursor(row_factory=tuple_row)
        for line, problem in cursor.execute(CONSENT_PROBLEMS, (require_consent,)):
            # One problem per row: a bad zone is named first, as entry_problem would.
            found.setdefault(line, consent_problem(line, problem, given.get(line)))
    staged.problems += found.values()
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
# (consent_at casts without error: a row whose text timestamp_problem refuses is never sent.)
STAGED_ENTRIES = sql.SQL(f"""(
    SELECT array_agg(ROW(s.to_phone, s.lead_name, s.lead_id, s.context,
                         coalesce(s.timezone, s.number_timezone), s.region,
                         s.consent_at::timestamptz, s.consent_source)::batchctl.new_entry
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
    """Creates a batch from ``leads`` in one transaction; returns its id and the rows skipped,
    which are recorded as the batch's intake refusals. Raises InvalidRows (creating nothing)
    when rows are bad and ``skip_invalid`` is false."""
    with conn.transaction():
        open_stage(conn)
        read = Staged()
        zones = ZoneVerdicts()
        require_consent = consent_required(conn, tenant_id)
        batch: UUID | None = None
        for chunk in chunked(leads, CHUNK_ROWS):
            staged = stage_leads(conn, chunk, zones, require_consent=require_consent)
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
        record_refusals(conn, tenant_id, batch, read.problems)
        return batch, read.problems


def record_refusals(
    conn: psycopg.Connection[Any], tenant_id: UUID, batch_id: UUID, problems: Sequence[Problem]
) -> None:
    """The rows left out of the batch, as its intake refusals (the report's Compliance sheet):
    line, phone cell as written, problem. In parts, so that no call has a huge document."""
    client = Client(conn)
    for part in chunked(problems, CHUNK_ROWS):
        refusals = [
            {"line": p.line, "to_phone": p.to_phone, "problem": _shortened(p.detail)} for p in part
        ]
        client.record_intake_refusals(tenant_id, batch_id, refusals)


def _shortened(text: str) -> str:
    # A problem quotes its cell, which may be long; the database takes 1000 characters.
    if len(text) <= MAX_PROBLEM_LENGTH:
        return text
    return text[: MAX_PROBLEM_LENGTH - 3] + "..."
