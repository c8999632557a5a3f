"""Scheduling: call windows (DST-correct, days, time zones), start_at/end_at, retries, wave vs
window dispatch, fairness, and dispatch-failure backoff.

Claims run at the server's now(), so time is moved by rewriting next_attempt_at (a column no
trigger guards for queued entries) or by sweeping "as of" a later p_now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import Conn
from invariants import assert_invariants
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NINE_TO_FIVE = {"start": "09:00", "end": "17:00", "days": ALL_DAYS}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def next_open(
    conn: psycopg.Connection[Any], window: dict[str, Any] | None, tz: str, now: str
) -> datetime:
    row = one_row(
        conn,
        "select batchctl.next_window_open(%s::jsonb, %s, %s::timestamptz) as t",
        (None if window is None else json.dumps(window), tz, now),
    )
    return row["t"]


def make_due(conn: psycopg.Connection[Any], batch_id: UUID) -> None:
    """Every queued entry of the batch becomes due now (as if its delay had passed)."""
    conn.execute(
        """update batchctl.batch_entries set next_attempt_at = now() - interval '1 second'
            where batch_id = %s and status = 'queued'""",
        (batch_id,),
    )


def entry(conn: psycopg.Connection[Any], entry_id: UUID) -> dict[str, Any]:
    row = conn.execute(
        """select status::text as status, attempts, retry_count, dispatch_failures,
                  outcome::text as outcome,
                  last_error, next_attempt_at, updated_at,
                  extract(epoch from next_attempt_at - updated_at) as delay
             from batchctl.batch_entries where id = %s""",
        (entry_id,),
    ).fetchone()
    assert row is not None
    return dict(row)


def batch_row(conn: psycopg.Connection[Any], batch_id: UUID) -> dict[str, Any]:
    row = one_row(
        conn,
        "select status::text as status, finished_at from batchctl.batches where id = %s",
        (batch_id,),
    )
    return dict(row)


# --- next_window_open --------------------------------------------------------------------------

NY_CASES = [
    # (now, expected) in UTC; America/New_York is UTC-5 (EST) and UTC-4 (EDT, from 2026-03-08
    # 02:00 local until 2026-11-01 02:00 local).
    ("sat_evening_before_spring_forward", "2026-03-07T23:00Z", "2026-03-08T13:00Z"),
    ("sun_morning_after_spring_forward", "2026-03-08T12:30Z", "2026-03-08T13:00Z"),
    ("sun_0930_edt_is_inside", "2026-03-08T13:30Z", "2026-03-08T13:30Z"),
    ("fri_1000_est_is_inside", "2026-03-06T15:00Z", "2026-03-06T15:00Z"),
    ("fri_0830_est_is_before", "2026-03-06T13:30Z", "2026-03-06T14:00Z"),
    ("sun_1700_edt_is_closed", "2026-03-08T21:00Z", "2026-03-09T13:00Z"),
    ("sun_1659_edt_is_inside", "2026-03-08T20:59Z", "2026-03-08T20:59Z"),
    ("sat_evening_before_fall_back", "2026-10-31T22:00Z", "2026-11-01T14:00Z"),
    ("sun_0830_est_after_fall_back", "2026-11-01T13:30Z", "2026-11-01T14:00Z"),
    ("sun_1630_est_is_inside", "2026-11-01T21:30Z", "2026-11-01T21:30Z"),
    ("sun_1700_est_is_closed", "2026-11-01T22:00Z", "2026-11-02T14:00Z"),
    ("sat_0100_edt_before_fall_back_night", "2026-10-31T05:00Z", "2026-10-31T13:00Z"),
]


@pytest.mark.parametrize(("case", "now", "expected"), NY_CASES, ids=[c[0] for c in NY_CASES])
def test_next_window_open_new_york_across_dst(
    conn: Conn, case: str, now: str, expected: str
) -> None:
    """next_window_open for 09:00-17:00 New York is right on both sides of the 2026 DST changes."""
    assert next_open(conn, NINE_TO_FIVE, "America/New_York", now) == ts(expected)
    inside = one_row(
        conn,
        "select batchctl.in_call_window(%s::jsonb, 'America/New_York', %s::timestamptz) as b",
        (json.dumps(NINE_TO_FIVE), now),
    )["b"]
    assert inside == (now == expected)


DAY_CASES = [
    (
        "mon_only_from_friday_across_spring_forward",
        ["mon"],
        "2026-03-06T15:00Z",
        "2026-03-09T13:00Z",
    ),
    ("weekend_from_friday_evening_edt", ["sat", "sun"], "2026-10-30T22:00Z", "2026-10-31T13:00Z"),
    ("sun_only_from_saturday_is_est", ["sun"], "2026-10-31T15:00Z", "2026-11-01T14:00Z"),
    ("same_day_inside_but_day_excluded", ["tue"], "2026-11-23T15:00Z", "2026-11-24T14:00Z"),
    ("day_listed_inside", ["mon"], "2026-11-23T15:00Z", "2026-11-23T15:00Z"),
    ("after_close_next_week", ["mon"], "2026-11-23T23:00Z", "2026-11-30T14:00Z"),
]


@pytest.mark.parametrize(
    ("case", "days", "now", "expected"), DAY_CASES, ids=[c[0] for c in DAY_CASES]
)
def test_next_window_open_days_filter(
    conn: Conn, case: str, days: list[str], now: str, expected: str
) -> None:
    """Only the listed week days open; the next opening may be days (and a DST change) away."""
    window = {"start": "09:00", "end": "17:00", "days": days}
    assert next_open(conn, window, "America/New_York", now) == ts(expected)


def test_next_window_open_without_window_is_now(conn: Conn) -> None:
    """No call window: any time is fine."""
    assert next_open(conn, None, "America/New_York", "2026-03-08T07:30Z") == ts("2026-03-08T07:30Z")


def test_next_window_open_uses_the_given_zone(conn: Conn) -> None:
    """The same instant opens at different UTC moments in Tokyo, London and New York."""
    now = "2026-11-28T23:00Z"  # Sat 18:00 New York, Sun 08:00 Tokyo, Sat 23:00 London
    assert next_open(conn, NINE_TO_FIVE, "Asia/Tokyo", now) == ts("2026-11-29T00:00Z")
    assert next_open(conn, NINE_TO_FIVE, "Europe/London", now) == ts("2026-11-29T09:00Z")
    assert next_open(conn, NINE_TO_FIVE, "America/New_York", now) == ts("2026-11-29T14:00Z")


# A window boundary the clock skips (spring forward) is the moment of the change, when the clock
# first reads it or later; one the clock shows twice (fall back) is its first showing.
# America/New_York springs from 02:00 EST to 03:00 EDT on 2026-03-08 (07:00Z) and falls from
# 02:00 EDT to 01:00 EST on 2026-11-01 (06:00Z). Australia/Lord_Howe (+10:30, +11 in summer)
# moves by half an hour: from 02:00 to 02:30 on 2026-10-04 (15:30Z the day before) and from
# 02:00 back to 01:30 on 2026-04-05 (15:00Z the day before).
NY = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"
CHANGE_CASES = [
    ("ny_start_in_gap_opens_at_the_change", NY, "02:30", "04:00",
     "2026-03-08T05:00Z", "2026-03-08T07:00Z"),
    ("ny_start_in_gap_open_from_the_change", NY, "02:30", "04:00",
     "2026-03-08T07:00Z", "2026-03-08T07:00Z"),
    ("ny_start_in_gap_open_after_the_change", NY, "02:30", "04:00",
     "2026-03-08T07:10Z", "2026-03-08T07:10Z"),
    ("ny_end_in_gap_open_until_the_change", NY, "01:00", "02:30",
     "2026-03-08T06:59Z", "2026-03-08T06:59Z"),
    ("ny_end_in_gap_closed_at_the_change", NY, "01:00", "02:30",
     "2026-03-08T07:00Z", "2026-03-09T05:00Z"),
    ("ny_end_in_gap_closed_after_the_change", NY, "01:00", "02:30",
     "2026-03-08T07:20Z", "2026-03-09T05:00Z"),
    ("ny_start_in_overlap_opens_at_first_showing", NY, "01:30", "03:00",
     "2026-11-01T04:00Z", "2026-11-01T05:30Z"),
    ("ny_start_in_overlap_open_from_first_showing", NY, "01:30", "03:00",
     "2026-11-01T05:45Z", "2026-11-01T05:45Z"),
    ("ny_start_in_overlap_open_in_the_repeated_hour", NY, "01:30", "03:00",
     "2026-11-01T06:10Z", "2026-11-01T06:10Z"),
    ("ny_end_in_overlap_open_until_first_showing", NY, "00:00", "01:30",
     "2026-11-01T05:29Z", "2026-11-01T05:29Z"),
    ("ny_end_in_overlap_closed_at_first_showing", NY, "00:00", "01:30",
     "2026-11-01T05:30Z", "2026-11-02T05:00Z"),
    ("ny_end_in_overlap_closed_in_the_repeated_hour", NY, "00:00", "01:30",
     "2026-11-01T06:10Z", "2026-11-02T05:00Z"),
    ("lord_howe_start_in_gap", LORD_HOWE, "02:15", "04:00",
     "2026-10-03T13:00Z", "2026-10-03T15:30Z"),
    ("lord_howe_end_in_gap", LORD_HOWE, "01:00", "02:15",
     "2026-10-03T15:30Z", "2026-10-04T14:00Z"),
    ("lord_howe_start_in_overlap", LORD_HOWE, "01:45", "03:00",
     "2026-04-04T13:00Z", "2026-04-04T14:45Z"),
    ("lord_howe_end_in_overlap", LORD_HOWE, "00:30", "01:45",
     "2026-04-04T15:05Z", "2026-04-05T14:00Z"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "tz", "start", "end", "now", "expected"),
    CHANGE_CASES,
    ids=[c[0] for c in CHANGE_CASES],
)
def test_window_boundary_at_a_clock_change(
    conn: Conn, case: str, tz: str, start: str, end: str, now: str, expected: str
) -> None:
    """A start or end the clock skips is the change itself; one it shows twice, its first
    showing. The claim's in_call_window agrees."""
    window = {"start": start, "end": end, "days": ALL_DAYS}
    assert next_open(conn, window, tz, now) == ts(expected)
    inside = one_row(
        conn,
        "select batchctl.in_call_window(%s::jsonb, %s, %s::timestamptz) as b",
        (json.dumps(window), tz, now),
    )["b"]
    assert inside == (now == expected)


def _first_reading(local: datetime, zone: ZoneInfo) -> datetime:
    """The first whole minute at which the zone's clock reads ``local`` or later, found by
    stepping through the minutes from a few hours before."""
    at = (local - timedelta(hours=4)).replace(tzinfo=zone).astimezone(UTC) - timedelta(hours=4)
    assert at.astimezone(zone).replace(tzinfo=None) < local
    while at.astimezone(zone).replace(tzinfo=None) < local:
        at += timedelta(minutes=1)
    return at


def _reference_next_open(window: dict[str, Any], zone: ZoneInfo, now: datetime) -> datetime:
    start, end = (time.fromisoformat(window[k]) for k in ("start", "end"))
    today = now.astimezone(zone).date()
    for day in (today + timedelta(days=i) for i in range(8)):
        if ALL_DAYS[day.weekday()] not in window["days"]:
            continue
        opens = _first_reading(datetime.combine(day, start), zone)
        closes = _first_reading(datetime.combine(day, end), zone)
        if opens >= closes:
            continue  # the clock skips the whole window that day (Havana's midnight change)
        if now < opens:
            return opens
        if now < closes:
            return now
    raise AssertionError("no opening within a week")


# Zones with changes of an hour at night, at midnight (Havana, Santiago), by half an hour
# (Lord Howe) and at an offset of 45 minutes (Chatham).
CHANGE_ZONES = [
    NY, "Europe/Berlin", LORD_HOWE, "America/Havana", "America/Santiago", "Pacific/Chatham",
]  # fmt: skip


def _changes_in_2026(name: str) -> list[datetime]:
    zone = ZoneInfo(name)
    hours = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=h) for h in range(365 * 24)]
    return [
        b
        for a, b in pairwise(hours)
        if a.astimezone(zone).utcoffset() != b.astimezone(zone).utcoffset()
    ]


def test_next_window_open_matches_a_minute_by_minute_reference(conn: Conn) -> None:
    """Random windows and moments within a day and a half of a 2026 clock change, in zones that
    change at different times and by different amounts: next_window_open equals the first
    minute the clock reaches the opening, found by stepping minute by minute."""
    changes = {name: _changes_in_2026(name) for name in CHANGE_ZONES}
    assert all(len(found) == 2 for found in changes.values()), changes

    @settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(CHANGE_ZONES))
        zone = ZoneInfo(name)
        change = data.draw(st.sampled_from(changes[name]))
        now = change + timedelta(minutes=data.draw(st.integers(-36 * 60, 36 * 60)))
        # Boundaries near the change's local time of day, or anywhere.
        around = change.astimezone(zone).hour * 60 + change.astimezone(zone).minute
        minute = st.one_of(
            st.integers(0, 1439), st.integers(-90, 90).map(lambda d: min(1439, max(0, around + d)))
        )
        start, end = sorted(data.draw(st.lists(minute, min_size=2, max_size=2, unique=True)))
        days = data.draw(
            st.one_of(
                st.just(ALL_DAYS), st.lists(st.sampled_from(ALL_DAYS), min_size=1, unique=True)
            )
        )
        window = {
            "start": f"{start // 60:02d}:{start % 60:02d}",
            "end": f"{end // 60:02d}:{end % 60:02d}",
            "days": days,
        }
        got = next_open(conn, window, name, now.isoformat())
        assert got == _reference_next_open(window, zone, now), (name, window, now)

    check()


# --- call windows in claims and sweep ----------------------------------------------------------


def _kiritimati_day(conn: Conn) -> str:
    """Today's week day in UTC+14 (it differs from the UTC-11 day at every moment)."""
    row = one_row(
        conn,
        """select lower(to_char(now() at time zone 'Pacific/Kiritimati', 'Dy')) as k,
                  to_char(now() at time zone 'Pacific/Kiritimati', 'HH24:MI') as kt""",
    )
    if row["kt"] >= "23:57":
        pytest.skip("too close to midnight in Kiritimati for a stable window")
    return row["k"]


def test_entry_outside_window_not_claimed_and_deferred_to_its_opening(conn: Conn) -> None:
    """Entries whose local day is outside the window are not claimed; the claim that meets them
    defers them to the next opening (the sweep would, had it met them first), so neither reads
    them again before; an entry's own zone overrides the tenant's."""
    api = SqlApi(conn)
    day = _kiritimati_day(conn)
    window = {"start": "00:00", "end": "23:59", "days": [day]}
    tenant = api.create_tenant("t", 10, "Pacific/Pago_Pago")
    entries = [
        {"to_phone": "+14155550001"},  # tenant zone: outside
        {"to_phone": "+14155550002", "timezone": "Pacific/Kiritimati"},  # inside
        {"to_phone": "+14155550003", "timezone": "Pacific/Pago_Pago"},  # outside
    ]
    batch = api.create_batch(tenant, entries, {"call_window": window})
    claims = api.claim(limit=10)
    assert [c.to_phone for c in claims] == ["+14155550002"]
    assert api.claim(limit=10) == []

    rows = conn.execute(
        """select to_phone, next_attempt_at > now() as later,
                  lower(to_char(next_attempt_at at time zone 'Pacific/Pago_Pago', 'Dy HH24:MI'))
                    as local
             from batchctl.batch_entries
            where batch_id = %s and status = 'queued' order by to_phone""",
        (batch,),
    ).fetchall()
    assert [(r["to_phone"], r["later"], r["local"]) for r in rows] == [
        ("+14155550001", True, f"{day} 00:00"),
        ("+14155550003", True, f"{day} 00:00"),
    ]
    assert api.sweep()["deferred_to_window"] == 0  # already deferred: not rewritten each time
    assert api.claim(limit=10) == []
    assert_invariants(conn)


def test_sweep_defers_to_next_opening_in_each_entrys_zone(conn: Conn) -> None:
    """Sweep as of a Saturday evening sets each entry's next attempt to its own zone's 09:00."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 10, "America/New_York")
    entries = [
        {"to_phone": "+14155550001"},
        {"to_phone": "+14155550002", "timezone": "Asia/Tokyo"},
        {"to_phone": "+14155550003", "timezone": "Europe/London"},
    ]
    batch = api.create_batch(tenant, entries, {"call_window": {"start": "09:00", "end": "17:00"}})
    result = api.sweep(ts("2026-11-28T23:00Z"))
    assert result["deferred_to_window"] == 3
    rows = conn.execute(
        "select to_phone, next_attempt_at from batchctl.batch_entries"
        " where batch_id = %s order by to_phone",
        (batch,),
    ).fetchall()
    assert [r["next_attempt_at"] for r in rows] == [
        ts("2026-11-29T14:00Z"),
        ts("2026-11-29T00:00Z"),
        ts("2026-11-29T09:00Z"),
    ]
    assert_invariants(conn)


def test_start_at_in_future_blocks_claims(conn: Conn) -> None:
    """No claim before start_at; once it has passed, the entries are claimable."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    future = one_row(conn, "select now() + interval '1 hour' as t")["t"]
    batch = api.create_batch(tenant, phones(3), {"start_at": future.isoformat()})
    assert batch_row(conn, batch)["status"] == "running"
    assert api.claim(limit=10) == []
    conn.execute(
        """update batchctl.batches
              set options = jsonb_set(options, '{start_at}', to_jsonb(now() - interval '1 second'))
            where id = %s""",
        (batch,),
    )
    assert len(api.claim(limit=10)) == 3
    assert_invariants(conn)


def test_end_at_passed_sweep_expires_queued_and_batch_completes(conn: Conn) -> None:
    """After end_at the sweep cancels queued entries ('expired'); live calls end normally; the
    batch completes once, with its report."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    end = one_row(conn, "select now() + interval '1 hour' as t")["t"]
    batch = api.create_batch(
        tenant, phones(5), {"end_at": end.isoformat(), "wave_size": 1, "pickup_timeout_s": 604800}
    )
    (call,) = api.dispatch_all()
    result = api.sweep(end + timedelta(minutes=1))
    assert result["expired"] == 4
    rows = conn.execute(
        "select status::text as s, last_error from batchctl.batch_entries"
        " where batch_id = %s and status <> 'dispatched'",
        (batch,),
    ).fetchall()
    assert [(r["s"], r["last_error"]) for r in rows] == [("cancelled", "expired")] * 4
    assert batch_row(conn, batch)["status"] == "running"
    assert api.sweep(end + timedelta(minutes=2))["expired"] == 0
    assert api.finish_call(call) == "completed"
    b = batch_row(conn, batch)
    assert b["status"] == "completed" and b["finished_at"] is not None
    st = api.batch_status(tenant, batch)
    assert (st["completed"], st["cancelled"], st["pending"]) == (1, 4, 0)
    assert_invariants(conn)


def test_end_at_in_past_expires_everything_and_completes(conn: Conn) -> None:
    """A batch whose end_at has passed with nothing dialled completes by sweep alone."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    past = one_row(conn, "select now() - interval '1 minute' as t")["t"]
    batch = api.create_batch(
        tenant, phones(3), {"end_at": past.isoformat(), "report_to": ["a@example.com"]}
    )
    assert api.sweep()["expired"] == 3
    b = batch_row(conn, batch)
    assert b["status"] == "completed" and b["finished_at"] is not None
    assert (
        one_value(conn, "select count(*) as n from batchctl.reports where batch_id = %s", (batch,))
        == 1
    )
    assert_invariants(conn)


def test_no_claim_after_end_at(conn: Conn) -> None:
    """Entries are not dialled after end_at, even before a sweep has expired them."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    past = one_row(conn, "select now() - interval '1 minute' as t")["t"]
    api.create_batch(tenant, phones(3), {"end_at": past.isoformat()})
    assert api.claim(limit=10) == []


# --- retries -----------------------------------------------------------------------------------


def test_busy_retried_after_delay_until_attempts_exhausted(conn: Conn) -> None:
    """retry_on busy: re-queued after retry_delay_s, next attempt number; the last one declines."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    batch = api.create_batch(
        tenant, phones(1), {"retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 600}
    )
    (c1,) = api.claim()
    assert c1.attempt == 1 and c1.room_name.endswith("-1")
    call1 = api.mark_dispatched(c1.entry_id, c1.room_name)
    assert api.finish_call(call1, "busy") == "queued"
    e = entry(conn, c1.entry_id)
    assert (e["status"], e["outcome"], e["attempts"], e["delay"]) == ("queued", "busy", 1, 600)
    assert api.claim() == []  # not before the delay
    make_due(conn, batch)
    (c2,) = api.claim()
    assert c2.entry_id == c1.entry_id and c2.attempt == 2 and c2.room_name.endswith("-2")
    call2 = api.mark_dispatched(c2.entry_id, c2.room_name)
    assert call2 != call1
    assert api.finish_call(call2, "busy") == "declined"
    e = entry(conn, c1.entry_id)
    assert (e["status"], e["attempts"]) == ("declined", 2)
    assert batch_row(conn, batch)["status"] == "completed"
    assert_invariants(conn)


def test_outcome_not_in_retry_on_is_final(conn: Conn) -> None:
    """With retry_on busy, a no_answer or failed outcome is final at once."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    api.create_batch(tenant, phones(2), {"retry_on": ["busy"], "max_attempts": 3})
    a, b = api.dispatch_all()
    assert api.finish_call(a, "no_answer") == "declined"
    assert api.finish_call(b, "failed") == "failed"
    assert_invariants(conn)


def test_retry_policy_overrides_per_outcome(conn: Conn) -> None:
    """retry_policy no_answer {max_attempts 3, delay_s 5}: two retries 5 s apart, then declined;
    busy (not listed) is final."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    batch = api.create_batch(
        tenant,
        phones(2),
        {"retry_policy": {"no_answer": {"max_attempts": 3, "delay_s": 5}}, "retry_delay_s": 900},
    )
    first, second = api.claim(limit=2)
    busy_call = api.mark_dispatched(second.entry_id, second.room_name)
    assert api.finish_call(busy_call, "busy") == "declined"
    claim = first
    for attempt in (1, 2, 3):
        assert claim.attempt == attempt
        call = api.mark_dispatched(claim.entry_id, claim.room_name)
        status = api.finish_call(call, "no_answer")
        if attempt < 3:
            assert status == "queued"
            assert entry(conn, claim.entry_id)["delay"] == 5
            assert api.claim() == []
            make_due(conn, batch)
            (claim,) = api.claim()
        else:
            assert status == "declined"
    assert batch_row(conn, batch)["status"] == "completed"
    assert_invariants(conn)


def test_no_retry_in_a_cancelled_batch(conn: Conn) -> None:
    """A retryable outcome arriving after cancel_batch is final; the batch finishes cancelled."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    batch = api.create_batch(
        tenant, phones(3), {"retry_on": ["busy"], "max_attempts": 3, "wave_size": 1}
    )
    (call,) = api.dispatch_all()
    assert api.cancel_batch(tenant, batch) == 2
    b = batch_row(conn, batch)
    assert b["status"] == "cancelled" and b["finished_at"] is None
    assert api.finish_call(call, "busy") == "declined"
    b = batch_row(conn, batch)
    assert b["status"] == "cancelled" and b["finished_at"] is not None
    assert api.claim() == []
    assert_invariants(conn)


# --- wave vs window ----------------------------------------------------------------------------


def test_wave_mode_waits_for_whole_wave(conn: Conn) -> None:
    """wave mode: the next wave starts only when every call of the current one is terminal."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 10)
    batch = api.create_batch(tenant, phones(7), {"dispatch_mode": "wave", "wave_size": 3})
    wave1 = api.dispatch_all()
    assert len(wave1) == 3
    api.finish_call(wave1[0])
    api.finish_call(wave1[1], "busy")
    assert api.claim() == []
    api.finish_call(wave1[2], "failed")
    wave2 = api.claim()
    assert len(wave2) == 3
    idx = conn.execute(
        "select entry_index from batchctl.batch_entries where id = any(%s) order by entry_index",
        ([c.entry_id for c in wave2],),
    ).fetchall()
    assert [r["entry_index"] for r in idx] == [3, 4, 5]
    for c in wave2:
        api.finish_call(api.mark_dispatched(c.entry_id, c.room_name))
    (last,) = api.dispatch_all()
    api.finish_call(last)
    assert batch_row(conn, batch)["status"] == "completed"
    assert_invariants(conn)


def test_wave_mode_counts_unacknowledged_claims(conn: Conn) -> None:
    """wave mode: a claimed but not yet dispatched entry also holds the wave open."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 10)
    api.create_batch(tenant, phones(4), {"dispatch_mode": "wave", "wave_size": 2})
    a, b = api.claim()
    api.finish_call(api.mark_dispatched(a.entry_id, a.room_name))
    assert api.claim() == []
    assert api.mark_dispatch_failed(b.entry_id, "no trunk", False) == "failed"
    assert len(api.claim()) == 2
    assert_invariants(conn)


def test_window_mode_refills_a_freed_slot_at_once(conn: Conn) -> None:
    """window mode: each finished call frees one slot that the next claim fills."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 10)
    api.create_batch(tenant, phones(7), {"dispatch_mode": "window", "wave_size": 3})
    calls = api.dispatch_all()
    assert len(calls) == 3
    assert api.claim() == []
    api.finish_call(calls[0])
    refill = api.claim()
    assert len(refill) == 1
    api.finish_call(calls[1], "busy")
    api.finish_call(calls[2], "failed")
    assert len(api.claim()) == 2
    assert_invariants(conn)


def test_tenant_cap_applies_across_batches(conn: Conn) -> None:
    """max_concurrent_calls bounds the tenant's calls over all its batches together."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 3)
    for j in range(3):
        api.create_batch(tenant, phones(5, 100 * j))
    assert len(api.dispatch_all()) == 3
    assert api.claim() == []
    assert_invariants(conn)


# --- fairness ----------------------------------------------------------------------------------


def test_claim_round_robins_batches_of_a_tenant(conn: Conn) -> None:
    """A big batch created first does not take every slot: a later small batch gets its share."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 4)
    big = api.create_batch(tenant, phones(100))
    small = api.create_batch(tenant, phones(3, 500))
    claims = api.claim(limit=50)
    per_batch = {b: sum(c.batch_id == b for c in claims) for b in (big, small)}
    assert per_batch == {big: 2, small: 2}


def test_claim_fills_from_as_few_tenants_as_it_can_and_each_up_to_its_cap(conn: Conn) -> None:
    """A claim takes one tenant at a time until it is full (so concurrent claimers serve
    different tenants); claiming on until nothing comes gives every tenant its free slots."""
    api = SqlApi(conn)
    x = api.create_tenant("x", 3)
    y = api.create_tenant("y", 3)
    api.create_batch(x, phones(50))
    api.create_batch(y, phones(2, 500))
    first = api.claim(limit=2)
    assert len(first) == 2 and len({c.tenant_id for c in first}) == 1
    rest = api.claim(limit=50)
    assert sorted(str(c.tenant_id) for c in first + rest) == sorted([str(x)] * 3 + [str(y)] * 2)


def test_claims_take_tenants_in_random_order(conn: Conn) -> None:
    """Fair across tenants: which tenant a claim serves first is random, so over claims each
    tenant with work comes first about as often as any other."""
    api = SqlApi(conn)
    tenants = [api.create_tenant(name, 100) for name in ("x", "y")]
    for i, tenant in enumerate(tenants):
        api.create_batch(tenant, phones(80, 1000 * i), {"wave_size": 100})
    served = [api.claim(limit=1)[0].tenant_id for _ in range(80)]
    assert min(served.count(t) for t in tenants) >= 20, "one tenant was served far more often"


def test_big_batch_does_not_starve_small_one_when_one_slot_frees(conn: Conn) -> None:
    """With one slot at a time, a small later batch is served before the big one is drained."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 1)
    big = api.create_batch(tenant, phones(6))
    small = api.create_batch(tenant, phones(1, 500))
    order: list[UUID] = []
    for _ in range(7):
        (c,) = api.claim(limit=50)
        order.append(c.batch_id)
        api.finish_call(api.mark_dispatched(c.entry_id, c.room_name))
    assert order.count(big) == 6 and order.count(small) == 1
    assert order.index(small) <= 1, (
        f"small batch served only at claim {order.index(small) + 1} of 7"
    )
    assert_invariants(conn)


# --- dispatch failures -------------------------------------------------------------------------


def test_mark_dispatch_failed_backs_off_and_fails_on_fifth(conn: Conn) -> None:
    """Retryable dispatch failures re-queue after 5, 10, 20, 40 s, same attempt; the 5th fails."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    batch = api.create_batch(tenant, phones(1))
    delays = []
    for n in range(1, 6):
        (c,) = api.claim()
        assert c.attempt == 1 and c.room_name.endswith("-1")
        status = api.mark_dispatch_failed(c.entry_id, f"sip 503 #{n}")
        e = entry(conn, c.entry_id)
        assert e["dispatch_failures"] == n and e["attempts"] == 0
        assert e["last_error"] == f"sip 503 #{n}"
        if n < 5:
            assert status == "queued"
            delays.append(e["delay"])
            assert api.claim() == []
            make_due(conn, batch)
        else:
            assert status == "failed"
    assert delays == [5, 10, 20, 40]
    b = batch_row(conn, batch)
    assert b["status"] == "completed" and b["finished_at"] is not None
    assert one_row(conn, "select count(*) as n from batchctl.call_logs")["n"] == 0
    assert_invariants(conn)


def test_mark_dispatch_failed_not_retryable_fails_at_once(conn: Conn) -> None:
    """A non-retryable dispatch failure fails the entry at once; a late repeat changes nothing."""
    api = SqlApi(conn)
    tenant = api.create_tenant("t", 5)
    api.create_batch(tenant, phones(2))
    a, _b = api.claim()
    assert api.mark_dispatch_failed(a.entry_id, "invalid number", False) == "failed"
    before = entry(conn, a.entry_id)
    assert api.mark_dispatch_failed(a.entry_id, "again", True) == "failed"
    assert entry(conn, a.entry_id) == before
    assert_invariants(conn)
