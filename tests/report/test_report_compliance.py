"""The report's Compliance sheet (batchctl/report/compliance_sheet.py) and the consent columns of
the Calls sheet, on a real batch: rules held entries back (the claim's clock pinned, and the
sweep's), a frequency cap held a retry, a number opted out, numbers were on the do-not-call list,
lead rows were refused at intake, and the tenant has a policy. Built as the daemon builds it
(batchctl_worker), and on demand by a tenant login, which may not read the rules table."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from openpyxl.workbook import Workbook
from psycopg import sql

from batchctl.report.build import build_report
from report_helpers import drive, open_workbook, table
from sqlapi import SqlApi
from tenant_logins import login_role

T0 = "2026-06-16 20:30-04"  # a Tuesday, 20:30 in New York and Miami: Florida's rule forbids
T1 = "2026-06-17 20:30-04"  # the next evening, the same again
FL = ["+13055550100", "+13055550101"]  # Miami: US-FL by the area code
CALLED, OPTS_OUT, LISTED_LATER, RETRIED, OPTED_ELSEWHERE = (
    "+14155550000", "+14155550001", "+14155550002", "+14155550003", "+14155550004"
)  # fmt: skip
ON_THE_LIST = "+14155559999"
US_SOURCE = "47 CFR 64.1200(c)(1) (TCPA): 8 a.m. to 9 p.m. local time"
FL_SOURCE = "Fla. Stat. 501.616(6): 8 a.m. to 8 p.m.; at most 3 calls per 24 hours"
CONSENT_AT = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
HOSTILE = '=HYPERLINK("http://evil.example","x")'
SECTIONS = ("Policy in force", "Jurisdiction rules applied", "Deferrals by rule", "Opt-outs",
            "Entries that opted out", "Do-not-call", "Refused at intake")  # fmt: skip


def pin(conn: psycopg.Connection[Any], at: str) -> None:
    """The claim's clock (batchctl.clock(): a superuser session's batchctl.now)."""
    conn.execute("select set_config('batchctl.now', %s::timestamptz::text, false)", (at,))


@pytest.fixture
def batch(api: SqlApi) -> tuple[UUID, UUID]:
    conn = api.conn
    tenant = api.create_tenant("Acme", 10, "America/New_York")
    conn.execute(
        """insert into batchctl.jurisdiction_rules
               (jurisdiction, days, hours, max_calls, cap_window, source, note)
           values ('US', '{1,2,3,4,5,6,7}', '{[08:00,21:00)}', null, null, %s, null),
                  ('US-FL', '{1,2,3,4,5,6,7}', '{[08:00,20:00)}', 3, '24 hours', %s, 'reviewed'),
                  ('FR', '{1,2,3,4,5}', '{[10:00,13:00),[14:00,20:00)}', null, null, 'décret', null)
        """,
        (US_SOURCE, FL_SOURCE),
    )
    api.set_policy(tenant, {"frequency": {"per_24h": 1}, "cooloff_s": {"declined": 5184000},
                            "holidays": ["2026-12-25"]})  # fmt: skip
    api.add_dnc(tenant, ON_THE_LIST)
    pin(conn, T0)
    # Another batch's call to a number of this batch is on when this batch is created: its
    # opt-out cancels this batch's entry of the number.
    api.create_batch(tenant, [{"to_phone": OPTED_ELSEWHERE}])
    (elsewhere,) = api.dispatch_all()
    leads: list[dict[str, Any]] = [
        {"to_phone": FL[0], "lead_name": "Miami 1", "consent_at": CONSENT_AT.isoformat(),
         "consent_source": "web form #42"},
        {"to_phone": FL[1], "lead_name": "Miami 2"},
        *({"to_phone": p} for p in (CALLED, OPTS_OUT, LISTED_LATER, RETRIED, OPTED_ELSEWHERE,
                                    ON_THE_LIST)),
    ]  # fmt: skip
    options = {"retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 0}
    batch = api.create_batch(tenant, leads, options)
    api.finish_call(elsewhere, "ended", {"opt_out": True})
    api.add_dnc(tenant, LISTED_LATER)  # while queued: cancelled
    # Florida is held back (quiet_hours:US-FL).
    drive(api, {OPTS_OUT: [("ended", {"opt_out": True})], RETRIED: [("busy", {})]})
    # The busy number's retry is due by the real clock (now() + retry_delay_s): due by the
    # pinned one, it is held by the policy's cap of one call per 24 hours (frequency:per_24h).
    conn.execute(
        "update batchctl.batch_entries set next_attempt_at = %s where batch_id = %s"
        " and to_phone = %s and status = 'queued'",
        (datetime.fromisoformat(T0), batch, RETRIED),
    )
    assert api.claim() == []
    api.sweep(datetime.fromisoformat(T1))  # Florida held back again the next evening
    conn.execute(
        """insert into batchctl.intake_refusals (tenant_id, batch_id, line, to_phone, problem)
           values (%(t)s, %(b)s, 7, %(h)s, 'to_phone: not a phone number'),
                  (%(t)s, %(b)s, 3, '12', 'to_phone "12": too short'),
                  (%(t)s, %(b)s, null, null, 'a row without a line')""",
        {"t": tenant, "b": batch, "h": HOSTILE},
    )
    return tenant, batch


def build_as(db_url: str, batch_id: UUID, role: str) -> Workbook:
    """The report built on a connection acting as ``role``."""

    async def build() -> bytes:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            return (await build_report(conn, batch_id)).xlsx

    return open_workbook(asyncio.run(build()))


def sections(book: Workbook) -> dict[str, list[tuple[Any, ...]]]:
    """Each section of the Compliance sheet: its heading row, then its rows (up to a blank)."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    current: list[tuple[Any, ...]] | None = None
    for row in book["Compliance"].iter_rows(values_only=True):
        values = tuple(row)
        while values and values[-1] is None:
            values = values[:-1]
        if values and values[0] in SECTIONS and len(values) == 1:
            current = found[values[0]] = []
        elif not values:
            current = None
        elif current is not None:
            current.append(values)
    return found


def labelled(rows: list[tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    return {r[0]: r[1:] for r in rows[1:]}


def test_the_compliance_sheet_as_the_daemon_builds_it(
    db_url: str, api: SqlApi, batch: tuple[UUID, UUID]
) -> None:
    _, batch_id = batch
    book = build_as(db_url, batch_id, "batchctl_worker")
    assert book.sheetnames == ["Summary", "Calls", "Attempts", "Compliance"]
    s = sections(book)
    assert list(s) == list(SECTIONS)

    assert labelled(s["Policy in force"]) == {
        "Jurisdiction rules": ("applied",),
        "Frequency caps (calls to one number)": ("1 per 24 hours",),
        "Cool-offs after an outcome": ("declined: 60 days",),
        "Holidays": ("2026-12-25",),
        "Consent required at intake": ("no",),
    }
    rules = s["Jurisdiction rules applied"]
    assert rules[0] == ("Jurisdiction", "Entries", "Days", "Hours (local time)", "Frequency cap",
                        "Cool-off after a refusal", "Source", "Note")  # fmt: skip
    # The rules of the entries' jurisdictions (US-CA has none; FR is no entry's), most entries
    # first, with their source text.
    assert rules[1:] == [
        ("US", 7, "every day", "08:00-21:00", None, None, US_SOURCE),
        ("US-FL", 2, "every day", "08:00-20:00", "3 calls per 24 hours", None, FL_SOURCE,
         "reviewed"),
    ]  # fmt: skip

    events = api.conn.execute(
        """select reason, count(*) as n, count(distinct object_id) as entries
             from batchctl.events where batch_id = %s and object = 'entry'
              and from_status = 'queued' and to_status = 'queued' group by reason""",
        (batch_id,),
    ).fetchall()
    expected = {e["reason"]: (e["n"], e["entries"]) for e in events}
    assert expected == {"quiet_hours:US-FL": (4, 2), "frequency:per_24h": (1, 1)}
    assert labelled(s["Deferrals by rule"]) == expected
    assert s["Deferrals by rule"][0] == ("Rule", "Deferrals", "Entries deferred")

    assert labelled(s["Opt-outs"]) == {
        "Entries that opted out on their call": (1,),
        "Entries cancelled: their number opted out": (1,),
        "Numbers put on the do-not-call list by this batch's calls": (1,),
    }
    header, opted = s["Entries that opted out"]
    assert header == ("Entry index", "Phone", "Lead name", "Opted out (UTC)")
    assert opted[:2] == (3, OPTS_OUT) and isinstance(opted[3], datetime)
    assert labelled(s["Do-not-call"]) == {
        "Numbers left out at intake (on the list)": (1,),
        "Entries cancelled: number put on the list while queued": (1,),
    }

    refused = s["Refused at intake"]
    assert refused[0] == ("Line", "Phone (as given)", "Problem", "Recorded (UTC)")
    assert [r[:3] for r in refused[1:]] == [
        (3, "12", 'to_phone "12": too short'),
        (7, HOSTILE, "to_phone: not a phone number"),
        (None, None, "a row without a line"),
    ]
    for row in book["Compliance"].iter_rows():
        for cell in row:
            assert cell.data_type not in ("f", "e"), cell.coordinate
    first_heading = book["Compliance"]["A1"]
    assert (first_heading.value, first_heading.font.b) == ("Policy in force", True)

    # Consent evidence, in the Calls sheet.
    calls = {r["Phone"]: r for r in table(book, "Calls")}
    assert calls[FL[0]]["Consent source"] == "web form #42"
    assert calls[FL[0]]["Consent (UTC)"] == CONSENT_AT.replace(tzinfo=None)
    assert (calls[FL[1]]["Consent (UTC)"], calls[FL[1]]["Consent source"]) == (None, None)
    assert calls[OPTED_ELSEWHERE]["Last error"] == "opted_out"


def test_a_tenant_login_gets_the_sheet_without_the_rules_text(
    db_url: str, api: SqlApi, batch: tuple[UUID, UUID]
) -> None:
    tenant, batch_id = batch
    with login_role(api.conn, tenant) as role:
        book = build_as(db_url, batch_id, role)
    s = sections(book)
    rules = s["Jurisdiction rules applied"]
    assert "not readable by this login" in rules[1][0]
    # The entries' jurisdictions still, without their rules.
    assert rules[2:] == [("US", 7), ("US-CA", 5), ("US-FL", 2)]
    assert labelled(s["Deferrals by rule"])["quiet_hours:US-FL"] == (4, 2)
    assert labelled(s["Policy in force"])["Holidays"] == ("2026-12-25",)
    assert len(s["Refused at intake"]) == 4


def test_a_batch_with_nothing_to_report_says_so(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant("Plain")
    api.set_policy(tenant, {"jurisdiction_rules": False, "require_consent": True})
    batch_id = api.create_batch(
        tenant, [{"to_phone": CALLED, "consent_at": "2026-01-01T00:00:00Z", "consent_source": "x"}]
    )
    s = sections(build_as(db_url, batch_id, "batchctl_worker"))
    assert labelled(s["Policy in force"])["Jurisdiction rules"] == ("off (the policy)",)
    assert labelled(s["Policy in force"])["Consent required at intake"] == ("yes",)
    assert s["Jurisdiction rules applied"][1:] == [
        ("None: the tenant's policy switches the jurisdiction rules off",)
    ]
    assert s["Deferrals by rule"][1:] == [("(none)",)]
    assert s["Refused at intake"][1:] == [("(none)",)]
    assert "Entries that opted out" not in s
