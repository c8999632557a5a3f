"""Notifications carry opaque ids only.

PostgreSQL cannot restrict LISTEN: any login, a tenant's too, hears every batchctl notification
of every tenant. So a payload may name a tenant, a batch or a room (batchctl's ids), never a
phone number, a name, a context or anything else a tenant gave (docs/sql-api.md#notifications).
The first test listens while a whole campaign runs; the second reads every pg_notify call in
sql/ and migrations/, so that a new one with a payload built from anything but ids fails here
before it ships.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from pgtools import one_row
from sqlapi import SqlApi

ROOT = Path(__file__).resolve().parents[2]

UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _is_tenant_batch_json(payload: str) -> bool:
    try:
        value = json.loads(payload)
    except ValueError:
        return False
    return (
        isinstance(value, dict)
        and set(value) == {"tenant_id", "batch_id"}
        and all(isinstance(v, str) and re.fullmatch(UUID_RE, v) for v in value.values())
    )


# The id-only payload shapes; each channel may use only those listed for it below.
SHAPES = {
    "tenant and batch ids": _is_tenant_batch_json,
    "room name": lambda p: re.fullmatch(rf"batchctl-{UUID_RE}-[1-9][0-9]*", p) is not None,
    "uuid": lambda p: re.fullmatch(UUID_RE, p) is not None,
    "empty": lambda p: p == "",  # a wake-up: the daemon claims what is due
}
ALLOWED_SHAPES = {
    "batchctl_dispatch": {"tenant and batch ids"},
    "batchctl_hangup": {"room name"},
    "batchctl_report": {"uuid"},
    "batchctl_progress": {"uuid"},
    "batchctl_webhook": {"empty"},
}
CHANNELS = sorted(ALLOWED_SHAPES)
# Notified last by the test itself: every notification committed before it has arrived when it
# does (PostgreSQL delivers them in commit order), so draining needs no guessed time-out.
DONE = "test_notifications_done"

# The lead data, each distinctive enough that finding it in a payload cannot be a coincidence.
# "qzx" is in every text value; the numbers are checked without their "+" as well.
TENANT_NAME = "Qzx Hollowbrook Tenant"
NUMBERS = ["+4915117350011", "+4915117350022", "+4915117350033", "+4915117350044"]
ADDED_NUMBER = "+4915117350055"
DNC_NUMBER = "+4915117350066"
B_NUMBERS = ["+4915117350077", "+4915117350088", "+4915117350099"]
NAMES = ["Zephyrine Qzxley", "Barnaby Qzxworth", "Ottilie Qzxmere", "Ignatius Qzxford"]
LEAD_IDS = ["crm-qzx-7781", "crm-qzx-7782", "crm-qzx-7783", "crm-qzx-7784"]
CONTEXT = {"qzx_plan": "qzx-platinum", "qzx_note": "owes qzx 1412.77", "qzx_visits": 31337}
METADATA = {"qzx_campaign": "qzx-spring-promo", "qzx_owner": "qzx-marketing"}
REPORT_TO = ["qzx.reports@example.org"]
CANCEL_REASON = "qzx campaign withdrawn by legal"
CREATED_BY = UUID("5eed0000-0000-4000-8000-00000000beef")
DISPATCH_ERROR = "qzx sip trunk said no"
SUMMARY = "qzx booked a demo for tuesday"
TIMEZONE = "Pacific/Chatham"


def lead(i: int, number: str) -> dict[str, Any]:
    return {
        "to_phone": number,
        "lead_name": f"{NAMES[i % 4]} {i}",
        "lead_id": f"{LEAD_IDS[i % 4]}-{i}",
        "context": {**CONTEXT, "qzx_index": f"qzx-row-{i}"},
        "timezone": TIMEZONE,
    }


def lead_strings() -> list[str]:
    """Every string a tenant gave, as it could appear in a payload."""
    numbers = [*NUMBERS, ADDED_NUMBER, DNC_NUMBER, *B_NUMBERS]
    return [
        "qzx",
        TENANT_NAME,
        *numbers,
        *(n.removeprefix("+") for n in numbers),
        *NAMES,
        *LEAD_IDS,
        *(str(v) for v in [*CONTEXT.values(), *METADATA.values()]),
        *REPORT_TO,
        CANCEL_REASON,
        str(CREATED_BY),
        DISPATCH_ERROR,
        SUMMARY,
        TIMEZONE,
    ]


def run_campaign(api: SqlApi) -> dict[str, set[Any]]:
    """A tenant's campaign through the SQL API, as the tenant, the daemon and the voice agent
    call it: claims, a failed dispatch, calls and their reports, a retry, a cancelled entry, a
    pause, added entries, a cancel with live calls and their hang-ups, a sweep time-out, a
    completion and two reports, with a webhook endpoint receiving all of it (the payloads go
    to the outbox, never into a notification). Returns the ids a payload may name."""
    tenant = api.create_tenant(TENANT_NAME, 3, "Europe/Berlin")
    api.add_dnc(tenant, DNC_NUMBER)
    api.add_webhook(tenant, "https://hooks.example.com/qzx")
    options = {
        "metadata": METADATA,
        "report_to": REPORT_TO,
        "report_delay_s": 0,
        "retry_on": ["busy"],
        "max_attempts": 2,
        "retry_delay_s": 0,
    }
    entries = [lead(i, n) for i, n in enumerate(NUMBERS)] + [lead(9, DNC_NUMBER)]
    cancelled = api.create_batch(tenant, entries, options, created_by=CREATED_BY)

    # Batch 1: three claimed (the tenant's cap); one dispatch fails and is queued again.
    first, second, third = api.claim()
    assert api.mark_dispatch_failed(first.entry_id, DISPATCH_ERROR) == "queued"
    busy = api.mark_dispatched(second.entry_id, second.room_name)
    live = api.mark_dispatched(third.entry_id, third.room_name)
    api.report(busy, "ringing")
    assert api.report(busy, "busy", {"summary": SUMMARY}) == "queued", "retried at once"
    api.report(live, "ringing")
    api.report(live, "ongoing", {"summary": SUMMARY})
    assert api.cancel_entry(tenant, third.entry_id) is False, "a live call: hung up instead"
    api.pause_batch(tenant, cancelled)
    api.resume_batch(tenant, cancelled)
    api.add_entries(tenant, cancelled, [lead(5, ADDED_NUMBER)])
    # The cancelled entry's call is still live: two more claimed.
    calls = api.dispatch_all()
    for call in calls:
        api.report(call, "ringing")
    api.cancel_batch(tenant, cancelled, CANCEL_REASON)
    for hangup in api.claim_hangups():
        api.hangup_done(hangup["room_name"])
    status = api.batch_status(tenant, cancelled)
    assert (status["status"], status["pending"]) == ("cancelled", 0), status
    assert status["finished_at"] is not None

    # Batch 2: two calls end, a third rings until the sweep times it out (and hangs it up).
    completed = api.create_batch(
        tenant, [lead(i, n) for i, n in enumerate(B_NUMBERS)], options, created_by=CREATED_BY
    )
    ended, declined, stuck = api.dispatch_all()
    api.finish_call(ended, "ended", {"summary": SUMMARY, "analysis": CONTEXT})
    api.finish_call(declined, "declined", {"summary": SUMMARY})
    api.report(stuck, "ringing")
    api.sweep(one_row(api.conn, "select now() + interval '1 day' as t")["t"])
    (hangup,) = api.claim_hangups()
    api.hangup_done(hangup["room_name"])
    status = api.batch_status(tenant, completed)
    assert (status["status"], status["pending"]) == ("completed", 0), status

    for _ in range(2):
        report = api.claim_report()
        assert report is not None
        api.report_sent(report["batch_id"])

    rows = api.conn.execute("select id::text from batchctl.batch_entries").fetchall()
    return {
        "tenants": {str(tenant)},
        "batches": {str(cancelled), str(completed)},
        "entries": {r["id"] for r in rows},
    }


def test_a_whole_campaign_notifies_ids_only(db_url: str, api: SqlApi) -> None:
    with psycopg.connect(db_url, autocommit=True) as listener:
        for channel in [*CHANNELS, DONE]:
            listener.execute(f"listen {channel}")
        ids = run_campaign(api)
        api.conn.execute(f"notify {DONE}")
        heard = []
        for n in listener.notifies(timeout=30):
            if n.channel == DONE:
                break
            heard.append((n.channel, n.payload))
        else:
            raise AssertionError(f"{DONE} not heard within 30 s; heard {heard}")

    assert sorted({channel for channel, _ in heard}) == CHANNELS, heard

    for channel, payload in heard:
        shapes = [name for name, matches in SHAPES.items() if matches(payload)]
        assert len(shapes) == 1, (channel, payload, shapes)
        assert shapes[0] in ALLOWED_SHAPES[channel], (channel, payload, shapes)
        # And the ids are the campaign's own: no other uuid (created_by, say) passes for one.
        if shapes[0] == "tenant and batch ids":
            value = json.loads(payload)
            assert value["tenant_id"] in ids["tenants"], (channel, payload)
            assert value["batch_id"] in ids["batches"], (channel, payload)
        elif shapes[0] == "room name":
            entry = re.fullmatch(rf"batchctl-({UUID_RE})-[0-9]+", payload)
            assert entry is not None and entry[1] in ids["entries"], (channel, payload)
        elif shapes[0] == "uuid":
            assert payload in ids["batches"], (channel, payload)

    leaks = [
        (channel, payload, text)
        for channel, payload in heard
        for text in lead_strings()
        if text.lower() in payload.lower()
    ]
    assert leaks == [], leaks


# What a payload may be built from, per channel, as written in the SQL (whitespace collapsed).
# A new pg_notify call must use one of these, or add an expression that yields ids only here.
ALLOWED_PAYLOADS = {
    "batchctl_dispatch": {
        "json_build_object('tenant_id', NEW.tenant_id, 'batch_id', NEW.id)::text",
        "json_build_object('tenant_id', x.tenant_id, 'batch_id', x.batch_id)::text",
        "json_build_object('tenant_id', p_tenant_id, 'batch_id', p_batch_id)::text",
    },
    "batchctl_hangup": {"room_name"},  # call_logs.room_name: mark_dispatched checks it
    "batchctl_report": {"NEW.id::text"},  # batches.id
    "batchctl_progress": {"NEW.id::text"},
    "batchctl_webhook": {"''"},
}


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _arguments(sql: str, start: int) -> list[str]:
    """The top-level, comma-separated arguments of the call whose "(" is at ``start``."""
    args: list[str] = []
    depth, current = 0, ""
    for char in sql[start:]:
        if char == "(":
            depth += 1
            if depth == 1:
                continue
        elif char == ")":
            depth -= 1
            if depth == 0:
                return [*args, current]
        elif char == "," and depth == 1:
            args.append(current)
            current = ""
            continue
        current += char
    raise AssertionError(f"unbalanced parentheses after {sql[start : start + 80]!r}")


def notify_calls() -> list[tuple[str, str, str]]:
    """(file, channel, payload expression) of every pg_notify call in sql/ and migrations/."""
    calls = []
    for path in sorted([*ROOT.glob("sql/*.sql"), *ROOT.glob("migrations/*.sql")]):
        sql = _without_comments(path.read_text())
        for match in re.finditer(r"pg_notify\s*\(", sql, re.IGNORECASE):
            channel, payload = (" ".join(a.split()) for a in _arguments(sql, match.end() - 1))
            calls.append((path.name, channel.strip("'"), payload))
    return calls


def test_every_pg_notify_payload_in_sql_is_built_from_ids_only() -> None:
    calls = notify_calls()
    assert len(calls) >= len(ALLOWED_PAYLOADS), f"the parser found only {calls}"
    for file, channel, payload in calls:
        assert payload in ALLOWED_PAYLOADS.get(channel, set()), (
            f"{file}: pg_notify({channel!r}, {payload}) is not an id-only payload: build it from"
            " ids, or, if it is one, allow it in ALLOWED_PAYLOADS"
        )
    # The campaign test listens on exactly the channels in use.
    assert {channel for _, channel, _ in calls} == set(CHANNELS), calls
    # The NOTIFY statement would get past the pg_notify check: batchctl does not use it.
    for path in [*ROOT.glob("sql/*.sql"), *ROOT.glob("migrations/*.sql")]:
        assert not re.search(r"\bnotify\s", _without_comments(path.read_text()), re.I), path
