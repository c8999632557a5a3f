"""Hostile input: command-line arguments that are not UTF-8, webhook bodies that are not events,
JSON options nested past Python's recursion limit, and stored JSON that Python cannot decode.
Each gets a one-line answer naming what is wrong (or, for stored data, is shown as text), never
a traceback, and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf.json_format import MessageToJson
from livekit import api as lk

from batchctl.client.aio import AsyncClient
from batchctl.config import LiveKitCredentials
from batchctl.database import async_pool
from batchctl.webhook import PATH, Webhooks
from clitools import count, create_tenant, invoke, run_batchctl
from report_helpers import attachment, open_workbook, report_row, run_outbox, summary_section, table
from smtp_sink import SmtpSink
from sqlapi import SqlApi, phones

# '{"a":{"a":...1...}}' 10,000 levels deep: json.loads raises RecursionError on it.
DEEP = '{"a":' * 10000 + "1" + "}" * 10000


def one_line(stderr: str) -> str:
    """The single line of a user error on stderr (no traceback, nothing else)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# --- 1. command-line arguments that are not UTF-8 ---------------------------------------------


def test_an_argument_that_is_not_utf8_is_named_and_changes_nothing(
    db_url: str, conn: Any, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme")
    batch = api.create_batch(tenant, phones(2))
    # Python decodes argv with surrogateescape: "\udcff" is the byte 0xff on the command line.
    bad_name = run_batchctl(db_url, "tenant", "create", "Caf\udce9")
    assert bad_name.returncode == 1
    assert 'argument 5 ("Caf\\xe9", after "create") is not valid UTF-8' in one_line(bad_name.stderr)
    bad_reason = run_batchctl(db_url, "batch", "cancel", str(batch), "--reason=gone\udcff")
    assert bad_reason.returncode == 1
    assert '("--reason=gone\\xff", after "' in one_line(bad_reason.stderr)
    # A file name that is not UTF-8 is refused too (see batchctl.cli.non_utf8_input).
    leads = tmp_path / "le\udcffads.csv"
    leads.write_text("phone\n+14155550100\n")
    bad_file = run_batchctl(db_url, "batch", "create", "acme", "--csv", str(leads))
    assert bad_file.returncode == 1
    line = one_line(bad_file.stderr)
    assert 'after "--csv") is not valid UTF-8' in line and "UTF-8 name or link" in line
    assert count(conn, "tenants") == 1 and count(conn, "batches") == 1
    assert api.batch_status(tenant, batch)["status"] == "running"


def test_a_setting_that_is_not_utf8_is_named_but_not_shown() -> None:
    env = {**os.environ, "BATCHCTL_DATABASE_URL": "postgresql://x@/db", "SMTP_PASSWORD": "s\udcff"}
    result = subprocess.run(
        [sys.executable, "-m", "batchctl", "tenant", "list"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line == "error: environment variable SMTP_PASSWORD is not valid UTF-8"


# --- 2. webhook bodies that are not events ----------------------------------------------------

CREDENTIALS = LiveKitCredentials("webhook-key", "webhook-secret-of-at-least-32-bytes!")


def signed(body: bytes) -> str:
    """An Authorization LiveKit would send for ``body`` (its sha256, signed with our secret)."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return lk.AccessToken(CREDENTIALS.api_key, CREDENTIALS.api_secret).with_sha256(digest).to_jwt()


def post_all(db_url: str, requests: list[tuple[bytes, str]]) -> list[tuple[int, Any]]:
    """POSTs (body, Authorization) pairs to the webhook endpoint; (status, JSON reply) each.
    Deferred reports are applied before it returns (grace 0, then close)."""

    async def run() -> list[tuple[int, Any]]:
        async with async_pool(db_url, "test-webhook", max_size=2) as pool:
            webhooks = Webhooks(AsyncClient(pool), CREDENTIALS, grace=0)
            replies = []
            async with TestClient(TestServer(webhooks.app())) as client:
                for body, auth in requests:
                    reply = await client.post(PATH, data=body, headers={"Authorization": auth})
                    replies.append((reply.status, await reply.json()))
            await webhooks.close()
            return replies

    return asyncio.run(run())


def calls(api: SqlApi) -> list[tuple[str, Any]]:
    rows = api.conn.execute("select status::text, detail from batchctl.call_logs order by id")
    return [(r["status"], r["detail"]) for r in rows.fetchall()]


def live_call(api: SqlApi) -> tuple[UUID, str]:
    """A dispatched call: its id and its room."""
    api.create_batch(api.create_tenant(), phones(1))
    (claim,) = api.claim()
    return api.mark_dispatched(claim.entry_id, claim.room_name, "AD_1"), claim.room_name


def event(name: str, room: str, **participant: Any) -> bytes:
    info = lk.ParticipantInfo(identity="callee", kind=lk.ParticipantInfo.Kind.SIP, **participant)
    message = lk.WebhookEvent(event=name, room=lk.Room(name=room), participant=info)
    return MessageToJson(message).encode()


def test_webhook_bodies_that_are_not_events_get_400_and_one_log_line(
    db_url: str, api: SqlApi, caplog: pytest.LogCaptureFixture
) -> None:
    _, room = live_call(api)
    before = calls(api)
    latin1 = event("participant_left", room).replace(b"callee", b"call\xe9")
    malformed = [
        b"not json",
        DEEP.encode(),
        b"[]",
        b'{"event": 5}',
        b'{"event": "room_finished", "room": {"name": "\\ud800"}}',
        b'{"event": "room_finished", "room": {"name": "a\\u0000b"}}',
    ]
    requests = [
        (b"\xff\xfe not UTF-8", ""),  # unsigned
        (latin1, signed(latin1)),  # signed over its bytes: still not UTF-8
        *((body, signed(body)) for body in malformed),
    ]
    with caplog.at_level(logging.INFO):
        replies = post_all(db_url, requests)
    assert replies == [
        (400, {"error": "body is not UTF-8"}),
        (400, {"error": "body is not UTF-8"}),
        *[(400, {"error": "malformed event"})] * len(malformed),
    ]
    assert calls(api) == before
    refusals = [r for r in caplog.records if r.name == "batchctl.webhook"]
    assert len(refusals) == len(requests)
    for record in refusals:
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert "\n" not in record.getMessage() and "refused a webhook (400 " in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_webhook_with_a_disconnect_reason_unknown_to_us_still_ends_the_call(
    db_url: str, api: SqlApi, caplog: pytest.LogCaptureFixture
) -> None:
    call, room = live_call(api)
    api.report(call, "ringing")
    body = event("participant_left", room, disconnect_reason=99)  # a newer server's reason
    assert post_all(db_url, [(body, signed(body))]) == [(200, {"ok": True})]
    assert calls(api) == [("failed", {"error": "callee left: disconnect reason 99"})]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- 3. JSON options nested past the recursion limit ------------------------------------------


@pytest.mark.parametrize(
    ("options_json", "problem"),
    [
        ("[" * 10000 + "]" * 10000, "nested more than 100 levels deep"),
        (DEEP, "nested more than 100 levels deep"),
        ('{"metadata": ' + "[" * 100 + "]" * 100 + "}", "nested more than 100 levels deep"),
        ('{"wave_size": 5', "not JSON: Expecting ',' delimiter"),
        ('{"metadata": {"x": NaN}}', "not JSON: NaN is not JSON"),
    ],
)
def test_options_json_too_deep_or_not_json_is_a_usage_error_naming_it(
    db_url: str, conn: Any, tmp_path: Path, options_json: str, problem: str
) -> None:
    create_tenant(db_url, "acme")
    csv = tmp_path / "leads.csv"
    csv.write_text("phone\n+14155550100\n")
    result = invoke(
        db_url, "batch", "create", "acme", "--csv", str(csv), "--options-json", options_json
    )
    assert result.exit_code == 2
    assert f"Invalid value for '--options-json': {problem}" in result.stderr
    assert count(conn, "batches") == 0


# --- 4. stored JSON that Python cannot decode -------------------------------------------------

# A number int() refuses (more than 4,300 digits): json.loads raises ValueError on it.
LONG_NUMBER = '{"n": ' + "7" * 5000 + "}"
# Excel's limit of characters in a cell.
MAX_CELL_CHARS = 32767


def plant_undecodable_json(api: SqlApi) -> tuple[UUID, UUID]:
    """A running batch of three leads whose stored JSON Python cannot decode, written as the
    owner could have before the intake bounds: the first lead's call detail, the second lead's
    context (10,000 levels), the third's (a 5,000-digit number), and the batch's metadata.
    Returns (tenant, batch)."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(3), {"report_to": ["ops@example.com"]})
    (call,) = api.dispatch_all(limit=1)
    api.report(call, "ringing")
    api.report(call, "ongoing")
    deep_detail = '{"summary": "booked", "analysis": {"mood": ' + DEEP + "}}"
    api.conn.execute(
        "update batchctl.call_logs set status = 'ended', detail = %s::jsonb where id = %s",
        (deep_detail, call),
    )
    for index, context in ((1, DEEP), (2, LONG_NUMBER)):
        api.conn.execute(
            """update batchctl.batch_entries set context = %s::jsonb
                where batch_id = %s and entry_index = %s and status = 'queued'""",
            (context, batch, index),
        )
    api.conn.execute(
        """update batchctl.batches set options = options || jsonb_build_object(
               'metadata', %s::jsonb, 'report_delay_s', 0) where id = %s""",
        (DEEP, batch),
    )
    return tenant, batch


def check_workbook(data: bytes) -> None:
    """Every row is there; what could not be decoded is its JSON text, cut to what a cell holds."""
    book = open_workbook(data)
    entries = table(book, "Calls")
    assert [r["Phone"] for r in entries] == [p["to_phone"] for p in phones(3)]
    assert entries[0]["Summary"] == "booked" and entries[0]["mood"] is None
    deep, long_number = entries[1]["Context (JSON)"], entries[2]["Context (JSON)"]
    assert deep.startswith('{"a": {"a": ') and deep.endswith("\u2026")
    assert len(deep) == MAX_CELL_CHARS
    assert long_number == LONG_NUMBER
    (attempt,) = table(book, "Attempts")
    assert attempt["Detail (JSON)"].startswith('{"summary": "booked", "analysis": {"mood": {"a":')
    assert len(attempt["Detail (JSON)"]) == MAX_CELL_CHARS
    (options,) = summary_section(book, "Options")["(all)"][:1]
    assert '"metadata": {"a": {"a":' in options


def test_a_report_shows_stored_json_python_cannot_decode_as_text(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    _, batch = plant_undecodable_json(api)
    out = tmp_path / "report.xlsx"
    result = invoke(db_url, "report", str(batch), "--out", str(out))
    assert result.exit_code == 0, result.output
    check_workbook(out.read_bytes())
    # The commands that show a batch read none of it, and keep working.
    for args in (["batch", "show", str(batch)], ["batch", "show", str(batch), "--json"]):
        shown = invoke(db_url, *args)
        assert shown.exit_code == 0, shown.output
    assert json.loads(invoke(db_url, "batch", "list", "--json").stdout)[0]["total"] == 3


def test_the_daemon_mails_a_report_of_stored_json_python_cannot_decode(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    tenant, batch = plant_undecodable_json(api)
    api.cancel_batch(tenant, batch)  # finishes it: its report is due at once
    run_outbox(db_url, sink.settings())
    assert report_row(api, batch)["status"] == "sent"
    (received,) = sink.wait_for(1)
    check_workbook(attachment(received)[1])
