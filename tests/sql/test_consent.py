"""Consent evidence at intake (docs/compliance.md, Consent): create_batch and add_entries store
an entry's consent_at and consent_source; under the tenant's require_consent policy an entry
without consent_at is BC001 naming it, and nothing is created; a malformed or future
consent_at is refused. record_intake_refusals checks its rows and answers BC002 for another
tenant's batch (who sees the rows: tests/sql/test_tenancy.py, through tests/helpers/tenancy.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from checks import Conn, rejected
from sqlapi import SqlApi, phones

MISSING = (
    "consent_at is missing: the tenant's policy requires consent evidence for every entry"
    " (require_consent)"
)
GIVEN = "2026-11-23T09:00:00Z"


@pytest.fixture
def tenant(api: SqlApi) -> uuid.UUID:
    return api.create_tenant("acme", 3, "Europe/Berlin")


@pytest.fixture
def strict(api: SqlApi, tenant: uuid.UUID) -> uuid.UUID:
    """The tenant, with a policy that requires consent evidence."""
    assert api.set_policy(tenant, {"require_consent": True})["require_consent"] is True
    return tenant


def consents(conn: Conn, batch: uuid.UUID) -> list[tuple[str, datetime | None, str | None]]:
    rows = conn.execute(
        """select to_phone, consent_at, consent_source from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch,),
    ).fetchall()
    return [(r["to_phone"], r["consent_at"], r["consent_source"]) for r in rows]


def count(conn: Conn, table: str) -> int:
    row = conn.execute(f"select count(*) as n from batchctl.{table}").fetchone()
    assert row is not None
    return int(row["n"])


def with_consent(entries: list[dict[str, Any]], **consent: Any) -> list[dict[str, Any]]:
    return [{**entry, **consent} for entry in entries]


AT = datetime(2026, 11, 23, 9, tzinfo=UTC)


# --- stored ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "rows"])
def test_consent_is_stored_on_the_entries(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, form: str
) -> None:
    entries = [
        {**phones(1)[0], "consent_at": GIVEN, "consent_source": "web form"},
        {**phones(1, 1)[0], "consent_at": "2026-11-23 10:00:00+01:00"},
        phones(1, 2)[0],
    ]
    create = api.create_batch if form == "json" else api.create_batch_from_rows
    batch = create(tenant, entries)
    assert consents(conn, batch) == [
        (entries[0]["to_phone"], AT, "web form"),
        (entries[1]["to_phone"], AT, None),
        (entries[2]["to_phone"], None, None),
    ]


def test_add_entries_stores_consent(conn: Conn, api: SqlApi, strict: uuid.UUID) -> None:
    batch = api.create_batch(strict, with_consent(phones(1), consent_at=GIVEN))
    added = api.add_entries(
        strict, batch, with_consent(phones(2, 10), consent_at=GIVEN, consent_source="call")
    )
    assert added == 2
    assert [(at, source) for _, at, source in consents(conn, batch)] == [
        (AT, None),
        (AT, "call"),
        (AT, "call"),
    ]


def test_without_the_policy_entries_need_no_consent(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    assert api.get_policy(tenant)["require_consent"] is False
    batch = api.create_batch(tenant, phones(2))
    assert api.add_entries(tenant, batch, phones(1, 10)) == 1
    assert [at for _, at, _ in consents(conn, batch)] == [None, None, None]


# --- require_consent ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "rows"])
def test_require_consent_refuses_an_entry_without_it_and_creates_nothing(
    conn: Conn, api: SqlApi, strict: uuid.UUID, form: str
) -> None:
    entries = [*with_consent(phones(2), consent_at=GIVEN), *phones(1, 10)]
    entries[0] = {**entries[0], "consent_at": None}
    create = api.create_batch if form == "json" else api.create_batch_from_rows
    message = rejected(
        conn,
        "BC001",
        lambda: create(strict, entries),
        "2 of 3 entries are invalid, nothing was created",
        f"entries[0]: {MISSING}",
        f"entries[2]: {MISSING}",
    )
    assert "entries[1]" not in message
    assert count(conn, "batch_entries") == 0


def test_require_consent_applies_to_add_entries(conn: Conn, api: SqlApi, strict: uuid.UUID) -> None:
    batch = api.create_batch(strict, with_consent(phones(1), consent_at=GIVEN))
    entries = [*with_consent(phones(1, 10), consent_at=GIVEN), *phones(1, 11)]
    rejected(
        conn,
        "BC001",
        lambda: api.add_entries(strict, batch, entries),
        f"entries[1]: {MISSING}",
    )
    assert count(conn, "batch_entries") == 1


def test_require_consent_is_the_tenant_s_own(conn: Conn, api: SqlApi, strict: uuid.UUID) -> None:
    other = api.create_tenant("other")
    api.create_batch(other, phones(2))
    rejected(conn, "BC001", lambda: api.create_batch(strict, phones(1)), MISSING)


# --- refused values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("yesterday", 'consent_at "yesterday" is not an ISO 8601 date-time with a UTC offset'),
        ("2026-11-23T09:00:00", 'consent_at "2026-11-23T09:00:00" has no UTC offset'),
        (
            "2026-02-30T09:00:00Z",
            'consent_at "2026-02-30T09:00:00Z" is not a date-time (no such day)',
        ),
        (
            "1999-12-31T23:00:00Z",
            'consent_at "1999-12-31T23:00:00Z" is not in the years 2000 to 2100',
        ),
        (20261123, 'consent_at must be a string such as "2026-11-23T09:00:00Z"'),
    ],
)
def test_a_malformed_consent_at_is_refused_naming_the_entry(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, value: Any, needle: str
) -> None:
    entries = [*phones(1), {**phones(1, 1)[0], "consent_at": value}]
    rejected(conn, "BC001", lambda: api.create_batch(tenant, entries), f"entries[1]: {needle}")
    assert count(conn, "batches") == 0


@pytest.mark.parametrize("form", ["json", "rows"])
def test_a_consent_in_the_future_is_refused(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, form: str
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=1)  # clocks differ a little: taken
    future = datetime.now(UTC) + timedelta(hours=1)
    entries = [
        {**phones(1)[0], "consent_at": soon.isoformat()},
        {**phones(1, 1)[0], "consent_at": future.isoformat()},
    ]
    create = api.create_batch if form == "json" else api.create_batch_from_rows
    message = rejected(conn, "BC001", lambda: create(tenant, entries), "entries[1]: consent_at ")
    assert "is in the future" in message and "entries[0]" not in message
    assert create(tenant, entries[:1])


def test_an_over_long_consent_source_is_refused(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    entries = [{**phones(1)[0], "consent_at": GIVEN, "consent_source": "x" * 1001}]
    rejected(
        conn,
        "BC001",
        lambda: api.create_batch(tenant, entries),
        "entries[0]: consent_source is 1001 characters, more than the 1000 allowed",
    )


def test_consent_source_must_be_a_string(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    entries = [{**phones(1)[0], "consent_source": {"form": 1}}]
    rejected(
        conn,
        "BC001",
        lambda: api.create_batch(tenant, entries),
        "entries[0]: consent_source must be a string",
    )


# --- record_intake_refusals -----------------------------------------------------------------


def refusals(conn: Conn) -> list[tuple[int | None, str | None, str]]:
    rows = conn.execute(
        "select line, to_phone, problem from batchctl.intake_refusals order by id"
    ).fetchall()
    return [(r["line"], r["to_phone"], r["problem"]) for r in rows]


def test_record_intake_refusals_stores_the_rows(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    batch = api.create_batch(tenant, phones(1))
    rows: list[dict[str, Any]] = [
        {"line": 3, "to_phone": "(415) 555", "problem": "column phone: is too short"},
        {"line": None, "to_phone": None, "problem": "no line"},
        {"problem": "only a problem"},
        {"line": 9, "to_phone": "+1" + "5" * 100, "problem": "long number"},
    ]
    assert api.record_intake_refusals(tenant, batch, rows) == 4
    assert refusals(conn) == [
        (3, "(415) 555", "column phone: is too short"),
        (None, None, "no line"),
        (None, None, "only a problem"),
        (9, "+1" + "5" * 55 + "...", "long number"),  # shortened like an excerpt
    ]
    owners = conn.execute("select tenant_id, batch_id from batchctl.intake_refusals").fetchall()
    assert {(r["tenant_id"], r["batch_id"]) for r in owners} == {(tenant, batch)}
    assert api.record_intake_refusals(tenant, batch, []) == 0


@pytest.mark.parametrize(
    ("refusals_doc", "needle"),
    [
        (None, "p_refusals: expected a JSON array of {line, to_phone, problem}, got null"),
        ({"line": 1}, "p_refusals: expected a JSON array of {line, to_phone, problem}, got object"),
        ([1], "p_refusals[0]: expected an object {line, to_phone, problem}"),
        (
            [{"problem": "x"}, {"problem": "y", "column": "phone"}],
            "p_refusals[1]: expected an object {line, to_phone, problem}",
        ),
        ([{"line": "3", "problem": "x"}], "p_refusals[0]: line must be a line number"),
        ([{"line": -1, "problem": "x"}], "p_refusals[0]: line must be a line number"),
        ([{"line": 1.5, "problem": "x"}], "p_refusals[0]: line must be a line number"),
        ([{"to_phone": 14155550100, "problem": "x"}], "p_refusals[0]: to_phone must be a string"),
        ([{"line": 1}], "p_refusals[0]: problem must be a non-empty string"),
        ([{"problem": "  "}], "p_refusals[0]: problem must be a non-empty string"),
        (
            [{"problem": "x" * 1001}],
            "p_refusals[0]: problem is 1001 characters, more than the 1000 allowed",
        ),
    ],
)
def test_record_intake_refusals_refuses_a_malformed_row_and_records_nothing(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, refusals_doc: Any, needle: str
) -> None:
    batch = api.create_batch(tenant, phones(1))
    # A good row first: a bad one refuses the whole call.
    doc = (
        [{"line": 2, "problem": "fine"}, *refusals_doc]
        if isinstance(refusals_doc, list)
        else (refusals_doc)
    )
    query = "select batchctl.record_intake_refusals(%s, %s, %s::jsonb)"
    param = None if doc is None else psycopg.types.json.Jsonb(doc)
    if isinstance(refusals_doc, list):
        needle = needle.replace("p_refusals[1]", "p_refusals[2]").replace(
            "p_refusals[0]", "p_refusals[1]"
        )
    rejected(conn, "BC001", lambda: conn.execute(query, (tenant, batch, param)), needle)
    assert count(conn, "intake_refusals") == 0


def test_record_intake_refusals_takes_at_most_100000_rows(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    batch = api.create_batch(tenant, phones(1))
    rows = [{"problem": "x"}] * 100_001
    rejected(
        conn,
        "BC001",
        lambda: api.record_intake_refusals(tenant, batch, rows),
        "p_refusals: 100001 rows, more than the 100000 allowed",
    )
    assert count(conn, "intake_refusals") == 0


def test_record_intake_refusals_answers_not_found_for_another_tenant_s_batch(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    other = api.create_tenant("other")
    theirs = api.create_batch(other, phones(1))
    mine = api.create_batch(tenant, phones(1))
    row = [{"line": 2, "problem": "x"}]
    rejected(conn, "BC002", lambda: api.record_intake_refusals(tenant, theirs, row))
    rejected(conn, "BC002", lambda: api.record_intake_refusals(other, mine, row))
    rejected(conn, "BC002", lambda: api.record_intake_refusals(tenant, uuid.uuid4(), row))
    assert count(conn, "intake_refusals") == 0
    assert api.record_intake_refusals(other, theirs, row) == 1
