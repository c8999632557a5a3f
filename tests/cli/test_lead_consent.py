"""The lead file's ``consent_at`` and ``consent_source`` columns (docs/compliance.md, Consent):
stored on the lead's entry; a malformed or future consent_at, and, under the tenant's
``require_consent`` policy, a row without one, is a problem of its line and column, judged by
the database's own checks; --skip-invalid leaves such rows out and records them as the
batch's intake refusals, in the transaction that creates it."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import openpyxl

from batchctl.client.sync import Client
from batchctl.leads.csvfile import Problem
from batchctl.leads.rows import Lead, read_leads
from checks import Conn
from clitools import count, create_tenant, invoke, one_line_error

CSV = """phone,name,consent_at,consent_source
+14155550100,Ann,2026-11-23T09:00:00Z,web form
+14155550101,Bob,2026-11-23 10:30:00+01:00,
+14155550102,Cy,,
"""

MISSING = "missing: the tenant's policy requires consent evidence for every entry (require_consent)"


def write(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def create(db_url: str, path: Path, *args: str) -> dict[str, Any]:
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def require_consent(conn: Conn, tenant: str) -> None:
    Client(conn).set_policy(UUID(tenant), {"require_consent": True})


def consents(conn: Conn, batch: str) -> list[tuple[str, dt.datetime | None, str | None]]:
    rows = conn.execute(
        """select to_phone, consent_at, consent_source from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch,),
    ).fetchall()
    return [(r["to_phone"], r["consent_at"], r["consent_source"]) for r in rows]


def refusals(conn: Conn) -> list[tuple[str, int | None, str | None, str]]:
    rows = conn.execute(
        "select batch_id, line, to_phone, problem from batchctl.intake_refusals order by id"
    ).fetchall()
    return [(str(r["batch_id"]), r["line"], r["to_phone"], r["problem"]) for r in rows]


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_the_consent_columns_are_the_lead_s_and_not_context() -> None:
    leads = list(read_leads(io.StringIO(CSV, newline=""), None))
    assert all(isinstance(lead, Lead) for lead in leads)
    assert [
        (lead.consent_at, lead.consent_source, lead.context)
        for lead in leads
        if isinstance(lead, Lead)
    ] == [
        ("2026-11-23T09:00:00Z", "web form", {}),
        ("2026-11-23 10:30:00+01:00", None, {}),
        (None, None, {}),
    ]


def test_a_csv_s_consent_reaches_its_entries(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    doc = create(db_url, write(tmp_path, CSV))
    assert consents(conn, doc["batch_id"]) == [
        ("+14155550100", at("2026-11-23T09:00:00+00:00"), "web form"),
        ("+14155550101", at("2026-11-23T09:30:00+00:00"), None),
        ("+14155550102", None, None),
    ]
    assert count(conn, "intake_refusals") == 0


def test_a_workbook_s_consent_text_is_read_and_a_date_cell_without_offset_is_refused(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Leads"
    sheet.append(["phone", "consent_at", "consent_source"])
    sheet.append(["+14155550100", "2026-11-23T09:00:00Z", "call centre"])
    sheet.append(["+14155550101", dt.datetime(2026, 11, 23, 9, 0), "paper"])  # no UTC offset
    path = tmp_path / "leads.xlsx"
    book.save(path)
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path))
    one_line_error(result, "1 of 2 rows in leads.xlsx are invalid", "nothing was created")
    assert result.stderr.splitlines()[0].startswith(
        'leads.xlsx: sheet "Leads", row 3, column B (consent_at): "2026-11-23T09:00:00"'
        " has no UTC offset (add Z or +HH:MM"
    )
    doc = create(db_url, path, "--skip-invalid")
    assert consents(conn, doc["batch_id"]) == [
        ("+14155550100", at("2026-11-23T09:00:00+00:00"), "call centre")
    ]


def test_a_malformed_or_future_consent_is_refused_by_line_and_column(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    text = (
        "phone,consent_at\n"
        "+14155550100,yesterday\n"
        "+14155550101,2026-11-23T09:00:00\n"
        "+14155550102,2026-11-23T09:00:00Z\n"
        "+14155550103,2099-06-01T12:00:00Z\n"
        "+14155550104,2026-02-30T09:00:00Z\n"
    )
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(write(tmp_path, text)))
    one_line_error(result, "4 of 5 rows in leads.csv are invalid", "nothing was created")
    lines = result.stderr.splitlines()
    assert lines[0] == (
        'leads.csv: line 2, column consent_at: "yesterday" is not an ISO 8601 date-time with'
        " a UTC offset (e.g. 2026-11-23T09:00:00Z or 2026-11-23 09:00:00+01:00)"
    )
    assert lines[1].startswith(
        'leads.csv: line 3, column consent_at: "2026-11-23T09:00:00" has no UTC offset'
    )
    assert lines[2].startswith("leads.csv: line 5, column consent_at: 2099-06-01 ")
    assert lines[2].endswith(" is in the future")
    assert lines[3] == (
        'leads.csv: line 6, column consent_at: "2026-02-30T09:00:00Z" is not a date-time'
        " (no such day)"
    )
    assert count(conn, "batches") == 0 and count(conn, "intake_refusals") == 0


def test_require_consent_refuses_a_row_without_consent_naming_its_line_and_column(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    tenant = create_tenant(db_url, "acme")
    require_consent(conn, tenant)
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(write(tmp_path, CSV)))
    one_line_error(result, "1 of 3 rows in leads.csv are invalid", "nothing was created")
    assert result.stderr.splitlines()[0] == f"leads.csv: line 4, column consent_at: {MISSING}"
    assert count(conn, "batches") == 0 and count(conn, "intake_refusals") == 0


def test_require_consent_counts_a_file_without_the_column_as_rows_without_consent(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    tenant = create_tenant(db_url, "acme")
    require_consent(conn, tenant)
    csv = write(tmp_path, "phone\n+14155550100\n+14155550101\n")
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv))
    one_line_error(result, "2 of 2 rows in leads.csv are invalid")
    assert count(conn, "batches") == 0


def test_skip_invalid_leaves_the_rows_out_and_records_them_as_intake_refusals(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    tenant = create_tenant(db_url, "acme")
    require_consent(conn, tenant)
    text = (
        CSV
        + "(415) 555-0103,Dee,2026-11-23T09:00:00Z,\n"  # a national number: no --default-region
        + "+14155550104,Eve,soon,\n"
        + "+14155550105,Fay,2026-11-23T09:00:00Z,web\n"
    )
    doc = create(db_url, write(tmp_path, text), "--skip-invalid")
    batch = doc["batch_id"]
    assert [(r["line"], r["column"]) for r in doc["skipped_rows"]] == [
        (4, "consent_at"),
        (5, "phone"),
        (6, "consent_at"),
    ]
    assert [phone for phone, _, _ in consents(conn, batch)] == [
        "+14155550100",
        "+14155550101",
        "+14155550105",
    ]
    assert refusals(conn) == [
        (batch, 4, "+14155550102", f"column consent_at: {MISSING}"),
        (
            batch,
            5,
            "(415) 555-0103",
            'column phone: "(415) 555-0103" has no country code: write it as'
            " +<country code><number> or pass --default-region",
        ),
        (
            batch,
            6,
            "+14155550104",
            'column consent_at: "soon" is not an ISO 8601 date-time with a UTC offset'
            " (e.g. 2026-11-23T09:00:00Z or 2026-11-23 09:00:00+01:00)",
        ),
    ]
    # The batch's own tenant owns them (its report reads them under row-level security).
    owners = conn.execute("select distinct tenant_id from batchctl.intake_refusals").fetchall()
    assert [str(r["tenant_id"]) for r in owners] == [tenant]


def test_skip_invalid_records_no_refusal_when_every_row_is_good(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    create(db_url, write(tmp_path, CSV), "--skip-invalid")
    assert count(conn, "intake_refusals") == 0


def test_a_problem_is_named_once_per_row_the_zone_first(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    tenant = create_tenant(db_url, "acme")
    require_consent(conn, tenant)
    text = "phone,timezone,consent_at\n+14155550100,Mars/Base,\n+14155550101,,2026-11-23T09:00Z\n"
    doc = create(db_url, write(tmp_path, text), "--skip-invalid")
    assert [(r["line"], r["column"]) for r in doc["skipped_rows"]] == [(2, "timezone")]
    assert doc["batch_status"]["total"] == 1
    assert [(line, phone) for _, line, phone, _ in refusals(conn)] == [(2, "+14155550100")]


def test_consent_problems_do_not_depend_on_a_chunk(
    db_url: str, conn: Conn, tmp_path: Path, monkeypatch: Any
) -> None:
    """Rows go to the database a chunk at a time: a bad row in a later chunk is still named
    by its line, and the refusals of every chunk are recorded."""
    monkeypatch.setattr("batchctl.leads.staging.CHUNK_ROWS", 2)
    tenant = create_tenant(db_url, "acme")
    require_consent(conn, tenant)
    rows = [f"+1415555{i:04d},2026-11-23T09:00:00Z" for i in range(100, 105)]
    rows[3] = "+14155550103,"
    text = "phone,consent_at\n" + "\n".join(rows) + "\n"
    doc = create(db_url, write(tmp_path, text), "--skip-invalid")
    assert doc["batch_status"]["total"] == 4
    assert [(line, phone) for _, line, phone, _ in refusals(conn)] == [(5, "+14155550103")]


def test_problems_keep_equal_whatever_the_phone_cell() -> None:
    # A problem is what is wrong where; the phone cell only goes to the refusal.
    assert Problem(2, "phone", "x", to_phone="+1") == Problem(2, "phone", "x")
