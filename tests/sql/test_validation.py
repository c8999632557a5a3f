"""Validation: bad input raises BC001 (or BC002 for unknown ids) with a message a person can act
on, and changes nothing; hostile strings are stored verbatim, never executed."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from checks import Conn, all_rows, rejected
from clitools import invoke
from invariants import assert_invariants
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones


@pytest.fixture
def tenant(api: SqlApi) -> uuid.UUID:
    t = api.create_tenant("acme", 3, "Europe/Berlin")
    # Some history, so "nothing changed" is checked against non-empty tables.
    api.add_dnc(t, "+14155559999")
    api.create_batch(t, phones(2))
    for call in api.dispatch_all():
        api.finish_call(call)
    return t


# --- entries -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "4155550123",
        "+0155550123",
        "+1 415 555 0123",
        "+1415",
        "+1234567890123456",
        "",
        "+1415555012a",
        "tel:+14155550123",
        "+14155550123\n",
    ],
)
def test_invalid_phone_names_the_entry(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, bad: str
) -> None:
    """An invalid phone is BC001 naming entries[i] and the number; nothing is created."""
    entries = [*phones(2), {"to_phone": bad}, *phones(1, start=50)]
    msg = rejected(conn, "BC001", lambda: api.create_batch(tenant, entries), "entries[2]", "E.164")
    assert "entries[0]" not in msg and "entries[3]" not in msg


def test_several_bad_rows_reported_together(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """Every bad row is named in one error, with its own reason."""
    entries: list[Any] = [
        {"to_phone": "+14155550100"},
        {"to_phone": "12345"},
        {"phone": "+14155550101"},
        "not an object",
        {"to_phone": "+14155550102", "context": "ctx"},
        {"to_phone": "+14155550103", "timezone": "Mars/Olympus"},
        {"to_phone": 14155550104},
        {"to_phone": "+14155550105", "lead_name": 7},
    ]
    msg = rejected(conn, "BC001", lambda: api.create_batch(tenant, entries), "7 of 8")
    for i in range(1, 8):
        assert f"entries[{i}]" in msg, (i, msg)
    assert "entries[0]" not in msg
    assert "Mars/Olympus" in msg and "context" in msg and '"phone"' in msg


def test_many_bad_rows_are_summarised(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """With 25 bad rows the message names the first ten and counts the rest; DETAIL has all."""
    entries = [{"to_phone": f"bad{i}"} for i in range(25)]
    before = all_rows(conn)
    with pytest.raises(psycopg.Error) as exc:
        api.create_batch(tenant, entries)
    assert exc.value.sqlstate == "BC001"
    msg = exc.value.diag.message_primary or ""
    assert "entries[9]" in msg and "entries[10]" not in msg and "15 more" in msg
    detail = exc.value.diag.message_detail or ""
    assert "entries[24]" in detail
    assert all_rows(conn) == before


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([], "empty"),
        ({"to_phone": "+14155550123"}, "array"),
        ("+14155550123", "array"),
        (None, "array"),
    ],
    ids=["empty", "object", "string", "null"],
)
def test_entries_must_be_a_non_empty_array(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, entries: Any, needle: str
) -> None:
    """An empty list or a non-array is BC001 and creates nothing."""
    rejected(conn, "BC001", lambda: api.create_batch(tenant, entries), "p_entries", needle)


def test_unknown_entry_key(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """'phone' instead of 'to_phone' names the key and lists the allowed ones."""
    rejected(
        conn,
        "BC001",
        lambda: api.create_batch(tenant, [{"phone": "+14155550123"}]),
        "entries[0]",
        '"phone"',
        "to_phone, lead_name, lead_id, context, timezone",
    )


def test_bad_entry_timezone(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """An unknown IANA zone on an entry is BC001 naming the entry and the zone."""
    entries = [{"to_phone": "+14155550123", "timezone": "Europe/Nowhere"}]
    rejected(
        conn, "BC001", lambda: api.create_batch(tenant, entries), "entries[0]", "Europe/Nowhere"
    )


def test_rows_form_makes_the_batch_create_batch_makes(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """create_batch_from_rows: the same entries, duplicates and do-not-call skips as the JSON
    form (create_batch itself ends in it)."""
    entries: list[dict[str, Any]] = [
        {"to_phone": "+14155550100", "lead_name": "Ann", "lead_id": "7", "context": {"a": "1"}},
        {"to_phone": "+14155559999"},  # on the do-not-call list
        {"to_phone": "+14155550101", "timezone": "America/Chicago"},
        {"to_phone": "+14155550100", "lead_name": "Ann again"},  # a duplicate: the first stays
    ]
    columns = "entry_index, to_phone, lead_name, lead_id, context, timezone, status::text"

    def made(batch: uuid.UUID) -> tuple[Any, ...]:
        status = api.batch_status(tenant, batch)
        rows = conn.execute(
            f"select {columns} from batchctl.batch_entries where batch_id = %s order by 1",
            (batch,),
        ).fetchall()
        counts = {k: status[k] for k in ("status", "total", "queued", "duplicates", "dnc_skipped")}
        return counts, rows

    by_rows = made(api.create_batch_from_rows(tenant, entries, {"wave_size": 2}))
    assert by_rows == made(api.create_batch(tenant, entries, {"wave_size": 2}))
    counts, rows = by_rows
    assert counts == {"status": "running", "total": 2, "queued": 2, "duplicates": 1,
                      "dnc_skipped": 1}  # fmt: skip
    assert [r["lead_name"] for r in rows] == ["Ann", None]
    assert_invariants(conn)


def test_rows_form_names_every_bad_row_and_creates_nothing(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    entries: list[Any] = [
        {"to_phone": "+14155550100"},
        {"to_phone": "12345"},
        {"lead_name": "no number"},
        {"to_phone": "+14155550102", "context": ["not", "an", "object"]},
        {"to_phone": "+14155550103", "timezone": "Mars/Olympus"},
    ]
    msg = rejected(conn, "BC001", lambda: api.create_batch_from_rows(tenant, entries), "4 of 5")
    for i, needle in ((1, '"12345"'), (2, "null"), (3, "context"), (4, "Mars/Olympus")):
        assert f"entries[{i}]: " in msg and needle in msg, (i, msg)
    assert "entries[0]" not in msg
    rejected(conn, "BC001", lambda: api.create_batch_from_rows(tenant, []), "empty")
    rejected(conn, "BC001", lambda: api.create_batch_from_rows(tenant, entries[:1], {"x": 1}), "x")


def test_add_entries_extends_an_unfinished_batch_with_the_same_rules(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """add_entries: indices go on from the rows given before; a number already in the batch or
    earlier in the call is a duplicate; a do-not-call number is skipped; a running batch's new
    entries are claimable at once."""
    api.add_dnc(tenant, "+14155559999")
    batch = api.create_batch_from_rows(tenant, phones(2), {"wave_size": 50})
    added = api.add_entries(
        tenant,
        batch,
        [
            {"to_phone": "+14155550001"},  # already in the batch (phones(2) has it)
            {"to_phone": "+14155550100", "lead_name": "new"},
            {"to_phone": "+14155559999"},  # do-not-call
            {"to_phone": "+14155550100", "lead_name": "again"},  # earlier in this call
        ],
    )
    assert added == 1
    status = api.batch_status(tenant, batch)
    counts = {k: status[k] for k in ("status", "total", "queued", "duplicates", "dnc_skipped")}
    assert counts == {"status": "running", "total": 3, "queued": 3, "duplicates": 2,
                      "dnc_skipped": 1}  # fmt: skip
    rows = conn.execute(
        """select entry_index, to_phone, lead_name from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch,),
    ).fetchall()
    assert [(r["entry_index"], r["lead_name"]) for r in rows][-1] == (3, "new")
    assert "+14155550100" in {c.to_phone for c in api.claim(limit=10)}
    assert_invariants(conn)


def test_add_entries_changes_nothing_for_bad_rows_a_finished_batch_or_another_tenant(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    batch = api.create_batch_from_rows(tenant, phones(1), {"autostart": False})
    msg = rejected(
        conn,
        "BC001",
        lambda: api.add_entries(tenant, batch, [*phones(1, start=5), {"to_phone": "12345"}]),
        "1 of 2",
    )
    assert 'entries[1]: to_phone "12345"' in msg
    rejected(conn, "BC001", lambda: api.add_entries(tenant, batch, []), "empty")
    other = api.create_tenant("other")
    rejected(conn, "BC002", lambda: api.add_entries(other, batch, phones(1, start=5)), "not found")
    api.cancel_batch(tenant, batch)
    rejected(
        conn,
        "BC003",
        lambda: api.add_entries(tenant, batch, phones(1, start=5)),
        "cancelled; entries can only be added to a pending, running or paused batch",
    )


@pytest.mark.parametrize("tz", ["Mars/Base", "", "Europe/Nowhere"])
def test_bad_tenant_timezone(conn: Conn, api: SqlApi, tenant: uuid.UUID, tz: str) -> None:
    """create_tenant with an unknown zone is BC001 and creates no tenant."""
    rejected(conn, "BC001", lambda: api.create_tenant("x", 3, tz), "p_timezone")


@pytest.mark.parametrize(
    ("name", "cap", "needle"),
    [("", 3, "p_name"), ("   ", 3, "p_name"), ("x", 0, "p_max_concurrent_calls")],
)
def test_bad_tenant_arguments(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, name: str, cap: int, needle: str
) -> None:
    """create_tenant rejects an empty name and a cap below one."""
    rejected(conn, "BC001", lambda: api.create_tenant(name, cap), needle)


# --- options -----------------------------------------------------------------------------------


def test_unknown_option_key_names_it_and_lists_allowed(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """An unknown option key is named and the allowed keys are listed."""
    msg = rejected(
        conn, "BC001", lambda: api.create_batch(tenant, phones(1), {"wave_sise": 5}), '"wave_sise"'
    )
    for key in ("wave_size", "dispatch_mode", "retry_on", "call_window", "report_to", "end_at"):
        assert key in msg.split("allowed", 1)[1], (key, msg)


BAD_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("wave_size_string", {"wave_size": "5"}, "wave_size"),
    ("wave_size_zero", {"wave_size": 0}, "wave_size"),
    ("wave_size_float", {"wave_size": 2.5}, "wave_size"),
    ("dispatch_mode_burst", {"dispatch_mode": "burst"}, "dispatch_mode"),
    ("retry_on_ended", {"retry_on": ["ended"]}, "retry_on"),
    ("retry_on_string", {"retry_on": "busy"}, "retry_on"),
    ("retry_policy_outcome", {"retry_policy": {"ended": {"max_attempts": 2}}}, "retry_policy"),
    ("retry_policy_key", {"retry_policy": {"busy": {"tries": 2}}}, "retry_policy"),
    (
        "retry_policy_type",
        {"retry_policy": {"busy": {"max_attempts": "2"}}},
        "retry_policy.busy.max_attempts",
    ),
    ("max_attempts_zero", {"max_attempts": 0}, "max_attempts"),
    ("max_retries_negative", {"max_retries": -1}, "max_retries"),
    ("pickup_timeout_bool", {"pickup_timeout_s": True}, "pickup_timeout_s"),
    ("window_bad_time", {"call_window": {"start": "9am", "end": "20:00"}}, "call_window.start"),
    ("window_hour_24", {"call_window": {"start": "09:00", "end": "24:00"}}, "call_window.end"),
    ("window_missing_end", {"call_window": {"start": "09:00"}}, "call_window.end"),
    ("window_start_after_end", {"call_window": {"start": "18:00", "end": "09:00"}}, "start"),
    ("window_start_eq_end", {"call_window": {"start": "09:00", "end": "09:00"}}, "start"),
    (
        "window_bad_day",
        {"call_window": {"start": "09:00", "end": "17:00", "days": ["mon", "funday"]}},
        "funday",
    ),
    (
        "window_empty_days",
        {"call_window": {"start": "09:00", "end": "17:00", "days": []}},
        "call_window.days",
    ),
    (
        "window_days_string",
        {"call_window": {"start": "09:00", "end": "17:00", "days": "mon"}},
        "call_window.days",
    ),
    (
        "window_unknown_key",
        {"call_window": {"start": "09:00", "end": "17:00", "tz": "UTC"}},
        '"tz"',
    ),
    ("window_not_object", {"call_window": "09:00-17:00"}, "call_window"),
    (
        "end_before_start",
        {"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"},
        "end_at",
    ),
    ("start_at_garbage", {"start_at": "tomorrow-ish"}, "start_at"),
    ("start_at_number", {"start_at": 1700000000}, "start_at"),
    ("report_to_not_email", {"report_to": ["ops.example.com"]}, "report_to"),
    ("report_to_string", {"report_to": "ops@example.com"}, "report_to"),
    ("autostart_string", {"autostart": "yes"}, "autostart"),
    ("metadata_array", {"metadata": [1, 2]}, "metadata"),
    ("agent_name_empty", {"agent_name": ""}, "agent_name"),
]


@pytest.mark.parametrize(
    ("case", "options", "needle"), BAD_OPTIONS, ids=[c[0] for c in BAD_OPTIONS]
)
def test_ill_typed_options_are_named(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, case: str, options: dict[str, Any], needle: str
) -> None:
    """An ill-typed option value is BC001 naming the key; nothing is created."""
    rejected(conn, "BC001", lambda: api.create_batch(tenant, phones(1), options), needle)


def test_options_not_an_object(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """Options that are not a JSON object are BC001."""
    rejected(
        conn,
        "BC001",
        lambda: conn.execute(
            "select batchctl.create_batch(%s, %s::jsonb, '[1]'::jsonb)",
            (tenant, json.dumps(phones(1))),
        ),
        "options",
    )


def test_retry_on_error_lists_retryable_outcomes(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """retry_on ['ended'] names the bad value and lists the allowed outcomes."""
    msg = rejected(
        conn, "BC001", lambda: api.create_batch(tenant, phones(1), {"retry_on": ["ended"]})
    )
    assert '"ended"' in msg and "no_answer" in msg and "busy" in msg


# --- call status and unknown ids ---------------------------------------------------------------


def test_unknown_call_status_lists_allowed(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """report_call_status with an unknown status is BC001 listing the allowed statuses."""
    api.create_batch(tenant, phones(1, 10))
    (call,) = api.dispatch_all()
    msg = rejected(conn, "BC001", lambda: api.report(call, "hung_up"), "hung_up")
    for s in ("in_queue", "ringing", "ongoing", "ended", "no_answer", "voicemail", "cancelled"):
        assert s in msg
    rejected(conn, "BC001", lambda: api.report(call, "ENDED"))
    rejected(
        conn, "BC001", lambda: conn.execute("select batchctl.report_call_status(%s, null)", (call,))
    )
    assert api.finish_call(call) == "completed"
    assert_invariants(conn)


def test_report_detail_must_be_an_object(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """A non-object detail or a non-numeric duration is BC001 and changes nothing."""
    api.create_batch(tenant, phones(1, 10))
    (call,) = api.dispatch_all()
    rejected(
        conn,
        "BC001",
        lambda: conn.execute("select batchctl.report_call_status(%s, 'ringing', '[1]')", (call,)),
        "p_detail",
    )
    rejected(
        conn,
        "BC001",
        lambda: api.report(call, "ended", {"duration_seconds": "12"}),
        "duration_seconds",
    )


UNKNOWN = uuid.UUID("00000000-0000-4000-8000-000000000001")


def _id_calls(api: SqlApi, tenant: uuid.UUID) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("add_dnc(tenant)", lambda: api.add_dnc(UNKNOWN, "+14155550123")),
        ("create_batch(tenant)", lambda: api.create_batch(UNKNOWN, phones(1))),
        ("start_batch(tenant)", lambda: api.start_batch(UNKNOWN, UNKNOWN)),
        ("start_batch", lambda: api.start_batch(tenant, UNKNOWN)),
        ("pause_batch", lambda: api.pause_batch(tenant, UNKNOWN)),
        ("resume_batch", lambda: api.resume_batch(tenant, UNKNOWN)),
        ("cancel_batch", lambda: api.cancel_batch(tenant, UNKNOWN)),
        ("cancel_batch(tenant)", lambda: api.cancel_batch(UNKNOWN, UNKNOWN)),
        ("fail_batch", lambda: api.fail_batch(tenant, UNKNOWN, "x")),
        ("cancel_entry", lambda: api.cancel_entry(tenant, UNKNOWN)),
        ("cancel_entry(tenant)", lambda: api.cancel_entry(UNKNOWN, UNKNOWN)),
        ("batch_status", lambda: api.batch_status(tenant, UNKNOWN)),
        ("batch_status(tenant)", lambda: api.batch_status(UNKNOWN, UNKNOWN)),
        ("mark_dispatched", lambda: api.mark_dispatched(UNKNOWN, "room")),
        ("mark_dispatch_failed", lambda: api.mark_dispatch_failed(UNKNOWN, "err")),
        ("report_call_status", lambda: api.report(UNKNOWN, "ended")),
        ("report_sent", lambda: api.report_sent(UNKNOWN)),
        ("report_failed", lambda: api.report_failed(UNKNOWN, "err")),
    ]


def test_unknown_ids_raise_bc002(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """Every function taking an id answers BC002 'not found' for an unknown one; no change."""
    for name, call in _id_calls(api, tenant):
        message = rejected(conn, "BC002", call)
        assert re.search(r"not found|no report", message), (name, message)


def test_null_tenant_id_is_bc001(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """A null tenant id is an invalid argument, not a crash."""
    rejected(
        conn,
        "BC001",
        lambda: conn.execute(
            "select batchctl.create_batch(null, %s::jsonb)", (json.dumps(phones(1)),)
        ),
        "p_tenant_id",
    )


@pytest.mark.parametrize("phone", ["4155550123", "", "+1"])
def test_add_dnc_rejects_bad_phone(conn: Conn, api: SqlApi, tenant: uuid.UUID, phone: str) -> None:
    """add_dnc with a non-E.164 number is BC001 and adds nothing."""
    rejected(conn, "BC001", lambda: api.add_dnc(tenant, phone), "p_phone")


# --- hostile strings ---------------------------------------------------------------------------

HOSTILE = [
    "Robert'); DROP TABLE batchctl.batches; --",
    "'; update batchctl.batch_entries set status = 'completed'; --",
    "$$; select pg_sleep(10); $$",
    'He said "hi" \\ and left',
    "Zoë 山田 Ω ☎️ \u200b right-to-left \u202e text",
    "%s %(x)s {0} \\x00 ${{lead}}",
    "x" * 1000,  # the longest name or id intake takes
]


def test_hostile_strings_are_stored_verbatim(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """SQL-looking, quoted, unicode and 1000-character strings in lead_name/context round-trip
    untouched."""
    entries = [
        {
            "to_phone": f"+1415555{7000 + i:04d}",
            "lead_name": s,
            "lead_id": s[:100],
            "context": {"note": s, s[:50]: [s], "nested": {"q": "'\"`"}},
        }
        for i, s in enumerate(HOSTILE)
    ]
    batch = api.create_batch(
        tenant, entries, {"metadata": {"tag": HOSTILE[0]}, "agent_name": HOSTILE[1]}
    )
    rows = conn.execute(
        "select entry_index, lead_name, lead_id, context from batchctl.batch_entries"
        " where batch_id = %s "
        "order by entry_index",
        (batch,),
    ).fetchall()
    assert len(rows) == len(HOSTILE)
    for row, entry in zip(rows, entries, strict=True):
        assert row["lead_name"] == entry["lead_name"]
        assert row["lead_id"] == entry["lead_id"]
        assert row["context"] == entry["context"]
    claims = api.claim(limit=len(HOSTILE))
    assert {c.lead_name for c in claims} <= set(HOSTILE) and len(claims) == 3  # tenant cap 3
    assert all(c.context["note"] == c.lead_name for c in claims)
    meta = one_row(conn, "select metadata, options from batchctl.batches where id = %s", (batch,))
    assert meta["metadata"] == {"tag": HOSTILE[0]} and meta["options"]["agent_name"] == HOSTILE[1]
    # Nothing was executed: every table is still there and nothing was marked completed by hand.
    assert api.batch_status(tenant, batch)["completed"] == 0
    assert one_row(conn, "select count(*) as n from batchctl.batches")["n"] == 2
    assert_invariants(conn)


def test_hostile_cancel_reason_and_errors_are_data(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """A hostile cancel reason or dispatch error is recorded as text."""
    batch = api.create_batch(tenant, phones(3, 20))
    (c, *_rest) = api.claim(limit=3)
    assert api.mark_dispatch_failed(c.entry_id, HOSTILE[1], False) == "failed"
    api.cancel_batch(tenant, batch, HOSTILE[0])
    row = one_row(
        conn,
        "select cancel_reason, status::text as s from batchctl.batches where id = %s",
        (batch,),
    )
    assert row["cancel_reason"] == HOSTILE[0] and row["s"] == "cancelled"
    err = one_row(
        conn, "select last_error from batchctl.batch_entries where id = %s", (c.entry_id,)
    )
    assert err["last_error"] == HOSTILE[1]
    assert_invariants(conn)


# --- normalisation -----------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "agent_name": None,
    "wave_size": 15,
    "dispatch_mode": "window",
    "max_retries": 2,
    "pickup_timeout_s": 1200,
    "ringing_timeout_s": 1200,
    "ongoing_timeout_s": 900,
    "retry_on": [],
    "max_attempts": 1,
    "retry_delay_s": 3600,
    "retry_policy": {},
    "call_window": None,
    "start_at": None,
    "end_at": None,
    "report_to": [],
    "report_delay_s": 15,
    "autostart": True,
    "trunk": None,
    "metadata": {},
}
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

NORMALISE: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("empty", {}, {}),
    ("nulls_mean_default", {"wave_size": None, "retry_on": None}, {}),
    ("wave", {"wave_size": 5, "dispatch_mode": "wave"}, {"wave_size": 5, "dispatch_mode": "wave"}),
    (
        "window_days_default",
        {"call_window": {"start": "09:00", "end": "17:00"}},
        {"call_window": {"start": "09:00", "end": "17:00", "days": ALL_DAYS}},
    ),
    (
        "window_days_kept",
        {"call_window": {"start": "09:00", "end": "17:00", "days": ["fri", "mon", "mon"]}},
        {"call_window": {"start": "09:00", "end": "17:00", "days": ["fri", "mon"]}},
    ),
    (
        "retry",
        {"retry_on": ["busy"], "retry_policy": {"no_answer": {"max_attempts": 3, "delay_s": 60}}},
        {"retry_on": ["busy"], "retry_policy": {"no_answer": {"max_attempts": 3, "delay_s": 60}}},
    ),
    (
        "report",
        {"report_to": ["a@example.com"], "metadata": {"k": None}},
        {"report_to": ["a@example.com"], "metadata": {"k": None}},
    ),
]


@pytest.mark.parametrize(("case", "given", "changed"), NORMALISE, ids=[c[0] for c in NORMALISE])
def test_option_normalisation(
    conn: Conn,
    api: SqlApi,
    tenant: uuid.UUID,
    case: str,
    given: dict[str, Any],
    changed: dict[str, Any],
) -> None:
    """Options are stored merged over the defaults, every key present."""
    batch = api.create_batch(tenant, phones(1, 30), given)
    stored = one_value(conn, "select options from batchctl.batches where id = %s", (batch,))
    if isinstance(stored["call_window"], dict) and "days" in stored["call_window"]:
        stored["call_window"]["days"] = sorted(stored["call_window"]["days"], key=ALL_DAYS.index)
    expected = {**DEFAULTS, **changed}
    if isinstance(expected["call_window"], dict):
        expected["call_window"] = {
            **expected["call_window"],
            "days": sorted(expected["call_window"]["days"], key=ALL_DAYS.index),
        }
    assert stored == expected


def test_timestamps_are_normalised(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    """start_at/end_at in any ISO form are stored as timestamps naming the same instant."""
    batch = api.create_batch(
        tenant,
        phones(1, 40),
        {
            "start_at": "2030-01-01T10:00:00+02:00",
            "end_at": "2030-01-01 12:00Z",
            "autostart": False,
        },
    )
    row = conn.execute(
        """select (options->>'start_at')::timestamptz = '2030-01-01 08:00Z' as s,
                  (options->>'end_at')::timestamptz = '2030-01-01 12:00Z' as e,
                  status::text as status
             from batchctl.batches where id = %s""",
        (batch,),
    ).fetchone()
    assert row == {"s": True, "e": True, "status": "pending"}


# --- time zones: the names of the tz database, spelt as it spells them -------------------------

# Abbreviations, POSIX strings and offsets PostgreSQL also reads as zones, and a misspelling.
NOT_ZONES = ["PST", "IST", "Z", "UT", "Etc/GMT-99", "FOO5BAR", "UTC+3", "+02:00", "europe/berlin"]


def _bad_zone_entries(tz: str) -> list[dict[str, Any]]:
    return [*phones(1, start=60), {"to_phone": "+14155550161", "timezone": tz}]


@pytest.mark.parametrize("tz", NOT_ZONES)
def test_zone_not_in_the_tz_database_is_refused_for_a_tenant(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, tz: str
) -> None:
    """create_tenant (and so `batchctl tenant create --timezone`) takes tz database names only."""
    rejected(conn, "BC001", lambda: api.create_tenant("x", 3, tz), "p_timezone", f'"{tz}"')


@pytest.mark.parametrize("tz", NOT_ZONES)
def test_zone_not_in_the_tz_database_is_refused_for_entries(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, tz: str
) -> None:
    """An entry's zone must be a tz database name: create_batch, create_batch_from_rows and
    add_entries name the entry and the zone, and change nothing."""
    entries = _bad_zone_entries(tz)
    for create in (api.create_batch, api.create_batch_from_rows):
        msg = rejected(conn, "BC001", partial(create, tenant, entries), "1 of 2", "entries[1]")
        assert "unknown time zone" in msg and tz in msg, msg
    batch = api.create_batch_from_rows(tenant, phones(1), {"autostart": False})
    msg = rejected(conn, "BC001", lambda: api.add_entries(tenant, batch, entries), "entries[1]")
    assert tz in msg, msg


def test_every_tz_database_name_is_taken_in_one_read(
    conn: Conn, api: SqlApi, tenant: uuid.UUID
) -> None:
    """Every name of pg_timezone_names is a valid zone for entries and tenants (Etc/GMT-14 and
    Etc/GMT+12 are the extremes). A list is judged in one read of pg_timezone_names, which is
    slow (it opens every zone file): a batch naming each of the ~600 zones costs a small
    multiple of one read, not one read per zone."""
    names = [r["name"] for r in conn.execute("select name from pg_timezone_names order by name")]
    assert {"UTC", "Etc/GMT-14", "Etc/GMT+12", "Europe/Berlin"} <= set(names)
    for tz in ("Etc/GMT-14", "Etc/GMT+12", "EST5EDT"):
        api.create_tenant(f"tenant in {tz}", 1, tz)

    def seconds(run: Callable[[], Any]) -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    one_read = min(
        seconds(lambda: conn.execute("select count(*) from pg_timezone_names")) for _ in range(3)
    )
    entries = [{"to_phone": f"+1415556{i:04d}", "timezone": tz} for i, tz in enumerate(names)]
    batch: list[uuid.UUID] = []
    took = seconds(lambda: batch.append(api.create_batch(tenant, entries, {"autostart": False})))
    assert api.batch_status(tenant, batch[0])["total"] == len(names)
    more = [{**e, "to_phone": e["to_phone"].replace("+1415556", "+1415557")} for e in entries]
    took_add = seconds(lambda: api.add_entries(tenant, batch[0], more))
    # One read per zone would be hundreds of reads.
    assert took < 0.5 + 40 * one_read and took_add < 0.5 + 40 * one_read, (took, took_add, one_read)


def test_timezone_verdicts_suggest_the_right_spelling(conn: Conn) -> None:
    """A name that differs from a tz database name only in case (or surrounding blanks) gets the
    right spelling as a suggestion; nulls and duplicates are left out; no names, no read."""
    rows = conn.execute(
        """select tz, valid, suggestion from batchctl.timezone_verdicts(
               array['europe/berlin', 'Europe/Berlin', 'UTC ', 'PST', null, 'PST']) order by tz"""
    ).fetchall()
    assert [tuple(r.values()) for r in rows] == [
        ("Europe/Berlin", True, None),
        ("PST", False, None),
        ("UTC ", False, "UTC"),
        ("europe/berlin", False, "Europe/Berlin"),
    ]
    assert conn.execute(
        "select count(*) as n from batchctl.timezone_verdicts('{}')"
    ).fetchone() == {"n": 0}
    assert conn.execute(
        "select count(*) as n from batchctl.timezone_verdicts(null)"
    ).fetchone() == {"n": 0}
    checks = conn.execute(
        """select batchctl.is_valid_timezone('UTC') as utc,
                  batchctl.is_valid_timezone('utc') as lower,
                  batchctl.is_valid_timezone(null) as null"""
    ).fetchone()
    assert checks == {"utc": True, "lower": False, "null": False}


def test_csv_zones_follow_the_database_rule(
    db_url: str, conn: Conn, api: SqlApi, tmp_path: Path
) -> None:
    """`batchctl batch create`: a row's zone outside the tz database is a bad row (its line and
    column named, a misspelling with the right spelling); a number's own zone still applies
    to the rows that name none; `tenant create --timezone` refuses the same names."""
    api.create_tenant("csv", 5, "Europe/Berlin")
    rows = ["phone,timezone", "+12125550100,", "+14155550101,America/Chicago"]
    rows += [f"+1415555{102 + i:04d},{tz}" for i, tz in enumerate(NOT_ZONES)]
    csv = tmp_path / "leads.csv"
    csv.write_text("\n".join(rows) + "\n")
    result = invoke(db_url, "batch", "create", "csv", "--csv", str(csv))
    assert result.exit_code != 0
    for line, tz in enumerate(NOT_ZONES, start=4):
        assert f'line {line}, column timezone: unknown time zone "{tz}"' in result.output, tz
    assert '"europe/berlin" (did you mean Europe/Berlin?)' in result.output
    assert '"PST" (an IANA name such as Europe/Berlin)' in result.output
    assert conn.execute("select count(*) as n from batchctl.batches").fetchone() == {"n": 0}

    result = invoke(db_url, "batch", "create", "csv", "--csv", str(csv), "--skip-invalid")
    assert result.exit_code == 0, result.output
    zones = conn.execute(
        "select to_phone, timezone from batchctl.batch_entries order by entry_index"
    ).fetchall()
    assert [tuple(r.values()) for r in zones] == [
        ("+12125550100", "America/New_York"),  # the number's own zone
        ("+14155550101", "America/Chicago"),
    ]
    for tz in ("PST", "Etc/GMT-99"):
        result = invoke(db_url, "tenant", "create", f"t-{tz}", "--timezone", tz)
        assert result.exit_code != 0 and "p_timezone" in result.output, result.output


# --- start_at / end_at: ISO 8601 date-times with an offset -------------------------------------

# Words PostgreSQL reads as timestamps.
TIMESTAMP_WORDS = [
    "infinity",
    "-infinity",
    "epoch",
    "tomorrow",
    "now",
    "today",
    "yesterday",
    "allballs",
]

BAD_TIMESTAMPS: list[tuple[str, str, str]] = [
    ("no_offset", "2026-11-23T09:00:00", "no UTC offset"),
    ("no_offset_space", "2026-11-23 09:00", "no UTC offset"),
    ("date_only", "2026-11-23", "ISO 8601"),
    ("year_1999", "1999-12-31T23:00:00Z", "2000 to 2100"),
    ("year_2101", "2101-01-01T00:00:00Z", "2000 to 2100"),
    ("year_5_digits", "20260-01-01T00:00:00Z", "ISO 8601"),
    ("no_such_day", "2026-02-30T09:00:00Z", "no such day"),
    ("hour_24", "2026-11-23T24:00:00Z", "ISO 8601"),
    ("leap_second", "2026-12-31T23:59:60Z", "ISO 8601"),
    ("offset_out_of_range", "2026-11-23T09:00:00+15:00", "ISO 8601"),
    ("zone_name", "2026-11-23T09:00:00 Europe/Berlin", "ISO 8601"),
    ("abbreviation", "2026-11-23T09:00:00 PST", "ISO 8601"),
    ("bc", "2026-11-23T09:00:00Z BC", "ISO 8601"),
    ("basic_format", "20261123T090000Z", "ISO 8601"),
    ("trailing_newline", "2026-11-23T09:00:00Z\n", "ISO 8601"),
]


@pytest.mark.parametrize("key", ["start_at", "end_at"])
@pytest.mark.parametrize("word", TIMESTAMP_WORDS)
def test_timestamp_words_are_refused(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, key: str, word: str
) -> None:
    """now, tomorrow, infinity and the like are not ISO 8601 date-times."""
    msg = rejected(
        conn, "BC001", lambda: api.create_batch(tenant, phones(1), {key: word}), f"option {key}"
    )
    assert f'"{word}"' in msg and "2026-11-23T09:00:00Z" in msg, msg


@pytest.mark.parametrize(
    ("case", "value", "needle"), BAD_TIMESTAMPS, ids=[c[0] for c in BAD_TIMESTAMPS]
)
@pytest.mark.parametrize("key", ["start_at", "end_at"])
def test_malformed_timestamps_are_refused(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, key: str, case: str, value: str, needle: str
) -> None:
    """A time without an offset, outside 2000-2100, or not ISO 8601 is BC001 naming the option."""
    options = {key: value}
    rejected(
        conn, "BC001", lambda: api.create_batch(tenant, phones(1), options), f"option {key}", needle
    )


GOOD_TIMESTAMPS = [
    ("2026-11-23T09:00:00Z", "2026-11-23 09:00Z"),
    ("2026-11-23 09:00:00+01:00", "2026-11-23 08:00Z"),
    ("2026-11-23T09:00+0530", "2026-11-23 03:30Z"),
    ("2026-11-23T09:00:00.250-03", "2026-11-23 12:00:00.25Z"),
    ("2026-11-23t09:00:00z", "2026-11-23 09:00Z"),
    ("2000-01-01T00:00:00+14:00", "1999-12-31 10:00Z"),
    ("2100-12-31T23:59:59.999999-12:00", "2101-01-01 11:59:59.999999Z"),
]


@pytest.mark.parametrize("key", ["start_at", "end_at"])
@pytest.mark.parametrize(("value", "instant"), GOOD_TIMESTAMPS)
def test_iso_timestamps_with_offsets_are_taken(
    conn: Conn, key: str, value: str, instant: str
) -> None:
    """Extended ISO 8601 with Z or an offset (±HH, ±HHMM, ±HH:MM), seconds and fraction
    optional, in any year from 2000 to 2100 as written: stored as the instant it names."""
    row = conn.execute(
        """select (batchctl.normalize_options(jsonb_build_object(%s::text, %s::text))
                   ->> %s::text)::timestamptz = %s::timestamptz as same""",
        (key, value, key, instant),
    ).fetchone()
    assert row == {"same": True}


# --- option bounds (sql/022_limits.sql) ---------------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _address(length: int) -> str:
    return "a" * (length - len("@example.com")) + "@example.com"


BAD_BOUNDS: list[tuple[str, dict[str, Any], str]] = [
    (
        "metadata_too_deep",
        {"metadata": _nested(33)},
        "option metadata: is nested more than 32 levels deep",
    ),
    ("metadata_too_big", {"metadata": {"blob": "x" * 70_000}}, "option metadata: is "),
    (
        "agent_name_too_long",
        {"agent_name": "a" * 1001},
        "option agent_name: is 1001 characters, more than the 1000 allowed",
    ),
    (
        "report_to_too_many",
        {"report_to": [f"ops{i}@example.com" for i in range(101)]},
        "option report_to: 101 addresses, more than the 100 allowed",
    ),
    (
        "report_to_too_long",
        {"report_to": ["ops@example.com", _address(255)]},
        "option report_to[1] is 255 characters, more than the 254 allowed",
    ),
]


@pytest.mark.parametrize(("case", "options", "needle"), BAD_BOUNDS, ids=[c[0] for c in BAD_BOUNDS])
def test_option_bounds(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, case: str, options: dict[str, Any], needle: str
) -> None:
    """metadata passes json_problem (32 levels, 64 KiB), agent_name is short text, report_to
    holds at most 100 addresses of at most 254 characters: BC001 naming the option."""
    rejected(conn, "BC001", lambda: api.create_batch(tenant, phones(1), options), needle)


def test_options_at_their_bounds_are_taken(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    options = {
        "metadata": _nested(32),
        "agent_name": "a" * 1000,
        "report_to": [_address(254)] + [f"ops{i}@example.com" for i in range(99)],
    }
    batch = api.create_batch(tenant, phones(1, start=70), options)
    stored = one_row(conn, "select options from batchctl.batches where id = %s", (batch,))
    assert {k: stored["options"][k] for k in options} == options


# --- intake bounds (sql/022_limits.sql) --------------------------------------------------------


def nested(levels: int) -> Any:
    """A JSON value whose innermost item sits `levels` levels down ([1] is 1 deep)."""
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


DEEP_33 = {"a": nested(32)}  # the object is one more level
DEEP_32 = {"a": nested(31)}
TOO_BIG = {"note": "x" * 70_000}
HUGE = {"a": '{"a":' * 20_000}  # a string: size, not depth, refuses it
BOUND_BREAKERS = [  # one field of an entry -> what the refusal says of it
    ({"lead_name": "n" * 1001}, "entries[0]: lead_name is 1001 characters, more than the 1000"),
    ({"lead_id": "i" * 1001}, "entries[0]: lead_id is 1001 characters, more than the 1000"),
    ({"context": DEEP_33}, "entries[0]: context is nested more than 32 levels deep"),
    ({"context": TOO_BIG}, "entries[0]: context is 700"),
    ({"context": HUGE}, "bytes of JSON, more than the 65536 allowed"),
    ({"to_phone": "+1" + "5" * 100_000}, 'entries[0]: to_phone "+15555555555555'),
    ({"timezone": "Z" * 100_000}, 'entries[0]: timezone: unknown time zone "ZZZZ'),
]  # fmt: skip


@pytest.mark.parametrize(("field", "problem"), BOUND_BREAKERS)
def test_intake_bounds_refuse_an_entry_naming_row_and_field(
    conn: Conn, api: SqlApi, tenant: uuid.UUID, field: dict[str, Any], problem: str
) -> None:
    """create_batch, create_batch_from_rows and add_entries refuse the entry with BC001 naming
    it and the field, change nothing, and never echo more than a line of the value back."""
    entry = {"to_phone": "+14155550100", **field}
    for create in (api.create_batch, api.create_batch_from_rows):
        msg = rejected(conn, "BC001", partial(create, tenant, [entry]), problem)
        assert len(msg.splitlines()[0]) < 300, msg
    batch = api.create_batch_from_rows(tenant, phones(1), {"autostart": False})
    rejected(conn, "BC001", lambda: api.add_entries(tenant, batch, [entry]), problem)


def test_values_at_the_bounds_are_taken(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    context = {**DEEP_32, "note": "x" * 60_000}
    batch = api.create_batch(
        tenant, [{"to_phone": "+14155550100", "lead_name": "n" * 1000, "lead_id": "i" * 1000,
                  "context": context}],
    )  # fmt: skip
    row = one_row(
        conn,
        "select context, length(lead_name) as n from batchctl.batch_entries where batch_id = %s",
        (batch,),
    )
    assert (row["context"], row["n"]) == (context, 1000)


def test_long_names_and_reasons_are_refused(conn: Conn, api: SqlApi, tenant: uuid.UUID) -> None:
    rejected(conn, "BC001", lambda: api.create_tenant("t" * 1001), "p_name is 1001 characters")
    batch = api.create_batch(tenant, phones(1))
    rejected(conn, "BC001", lambda: api.cancel_batch(tenant, batch, "r" * 1001), "p_reason is 1001")
    assert api.cancel_batch(tenant, batch, "r" * 1000) == 1


def test_report_recipients_are_bounded_for_a_resend_too(conn: Conn) -> None:
    """claim_report_now (`batchctl report --send --to`) checks its recipients as report_to is."""
    send = "select * from batchctl.claim_report_now(gen_random_uuid(), 'me', %s)"
    many = [f"ops{i}@example.com" for i in range(101)]
    rejected(conn, "BC001", lambda: conn.execute(send, (many,)), "p_recipients: 101 addresses")
    long = ["ops@example.com", "o" * 250 + "@example.com"]
    rejected(conn, "BC001", lambda: conn.execute(send, (long,)), "p_recipients[1] is 262 char")
    rejected(conn, "BC001", lambda: conn.execute(send, (["nope"],)), '"nope" not an e-mail')
