"""A tenant's compliance policy enforced in the claim and the sweep (docs/compliance.md):
frequency caps across batches (the policy's and the jurisdiction rules'), cool-offs after an
outcome (the policy's, and France's after a refusal), holidays in the recipient's local date,
each alone and combined with the calling hours; the do-not-call list under a race; explain_entry.

Time is pinned (tests/helpers/clockwork.py): the claim by batchctl.now, the sweep by p_now, and
each call is dialled at the pinned time (call_now)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from checks import Conn
from clockwork import call_now, claimed, entry, pin, reasons, ts
from pgtools import one_value
from sqlapi import SqlApi

FL = "+13055550100"  # Miami: US-FL
NY = "+12125550100"
LA = "+12135550100"  # Los Angeles
PARIS = "+33612345678"
BERLIN = "+4915112345678"


def tenant_with(api: SqlApi, policy: dict[str, Any], zone: str = "America/New_York") -> UUID:
    tenant = api.create_tenant("acme", 10, zone)
    api.set_policy(tenant, policy)
    return tenant


def batches_of(
    api: SqlApi, tenant: UUID, phone: str, n: int, zone: str | None = None
) -> list[UUID]:
    lead = {"to_phone": phone, **({"timezone": zone} if zone else {})}
    return [api.create_batch(tenant, [lead]) for _ in range(n)]


# --- frequency caps ---------------------------------------------------------------------------


def test_one_number_in_four_batches_is_called_three_times_a_day(api: SqlApi, conn: Conn) -> None:
    tenant = tenant_with(api, {"frequency": {"per_24h": 3}})
    batches = batches_of(api, tenant, NY, 4)
    for hour in range(3):  # one call at a time: the number is busy while on a call
        pin(conn, ts("2026-06-16 10:00-04") + timedelta(hours=hour))
        assert call_now(api) == [NY]
    pin(conn, "2026-06-16 13:00-04")
    assert claimed(api) == []
    fourth = next(entry(conn, NY, b) for b in batches if entry(conn, NY, b)["status"] == "queued")
    # The first call leaves the 24 hours at 10:00 tomorrow.
    assert fourth["next_attempt_at"] == ts("2026-06-17 10:00-04")
    assert reasons(conn, fourth["id"]) == ["frequency:per_24h"]
    pin(conn, "2026-06-17 09:59-04")
    assert claimed(api) == []
    pin(conn, "2026-06-17 10:00-04")
    assert call_now(api) == [NY]


def test_caps_over_seven_and_thirty_days_each_hold(api: SqlApi, conn: Conn) -> None:
    tenant = tenant_with(api, {"frequency": {"per_24h": 5, "per_7d": 2, "per_30d": 3}})
    batches_of(api, tenant, NY, 5)
    for at in ("2026-06-01 10:00-04", "2026-06-02 10:00-04"):
        pin(conn, at)
        assert call_now(api) == [NY]
    pin(conn, "2026-06-03 10:00-04")
    assert claimed(api) == []  # two in 7 days: next when the first is 7 days old
    pin(conn, "2026-06-08 10:00-04")
    assert call_now(api) == [NY]
    pin(conn, "2026-06-10 10:00-04")  # 7 days allow one more, 30 days do not
    assert claimed(api) == []
    held = conn.execute(
        """select next_attempt_at from batchctl.batch_entries
            where status = 'queued' order by next_attempt_at desc limit 1"""
    ).fetchone()
    assert held is not None and held["next_attempt_at"] == ts("2026-07-01 10:00-04")


def test_the_cap_counts_calls_across_every_batch_but_not_other_tenants(
    api: SqlApi, conn: Conn
) -> None:
    tenant = tenant_with(api, {"frequency": {"per_24h": 1}})
    other = tenant_with(api, {"frequency": {"per_24h": 1}})
    batches_of(api, tenant, NY, 2)
    batches_of(api, other, NY, 1)
    pin(conn, "2026-06-16 10:00-04")
    assert call_now(api) == [NY, NY]  # one per tenant: each tenant calls it once
    pin(conn, "2026-06-16 11:00-04")
    assert claimed(api) == []


def test_concurrent_claims_never_let_a_call_past_the_cap(
    api: SqlApi, conn: Conn, db_url: str
) -> None:
    """Eight workers claim, dial and end calls at once, over one number in six batches and a
    cap of two a day: exactly two calls, whoever claims."""
    tenant = tenant_with(api, {"frequency": {"per_24h": 2}})
    batches_of(api, tenant, NY, 6)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
                pin(c, "2026-06-16 10:00-04")
                own = SqlApi(c)
                start.wait()
                for _ in range(20):
                    call_now(own)
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert (
        one_value(conn, "select count(*) from batchctl.call_logs where to_phone = %s", (NY,)) == 2
    )


def test_a_jurisdiction_rule_caps_florida_at_three_a_day(api: SqlApi, rules: Conn) -> None:
    tenant = api.create_tenant("acme", 10, "America/New_York")
    batches_of(api, tenant, FL, 4)
    for hour in (9, 10, 11):
        pin(rules, ts("2026-06-16 00:00-04") + timedelta(hours=hour))
        assert call_now(api) == [FL]
    pin(rules, "2026-06-16 12:00-04")
    assert claimed(api) == []
    held = rules.execute(
        "select id, next_attempt_at from batchctl.batch_entries where status = 'queued'"
    ).fetchone()
    assert held is not None and held["next_attempt_at"] == ts("2026-06-17 09:00-04")
    assert reasons(rules, held["id"]) == ["frequency:US-FL"]


def test_a_policy_without_jurisdiction_rules_drops_their_hours_and_caps(
    api: SqlApi, rules: Conn
) -> None:
    tenant = tenant_with(api, {"jurisdiction_rules": False})
    batches_of(api, tenant, FL, 4)
    for hour in (1, 2, 3, 4):  # at night, four times
        pin(rules, ts("2026-06-16 00:00-04") + timedelta(hours=hour))
        assert call_now(api) == [FL]


# --- cool-offs --------------------------------------------------------------------------------


def test_a_cooloff_after_an_outcome_holds_the_number_in_other_batches(
    api: SqlApi, conn: Conn
) -> None:
    tenant = tenant_with(api, {"cooloff_s": {"declined": 3600, "completed": 86400}})
    batches = batches_of(api, tenant, NY, 2)
    pin(conn, "2026-06-16 10:00-04")
    assert call_now(api, "declined") == [NY]
    pin(conn, "2026-06-16 10:30-04")
    assert claimed(api) == []
    waiting = next(entry(conn, NY, b) for b in batches if entry(conn, NY, b)["status"] == "queued")
    assert waiting["next_attempt_at"] == ts("2026-06-16 11:00-04")  # an hour after its end
    assert reasons(conn, waiting["id"]) == ["cooloff:declined"]
    pin(conn, "2026-06-16 11:00-04")
    assert call_now(api) == [NY]


def test_france_waits_sixty_days_after_a_refusal_then_for_its_hours(
    api: SqlApi, rules: Conn
) -> None:
    tenant = api.create_tenant("acme", 10, "Europe/Paris")
    batches_of(api, tenant, PARIS, 2)
    pin(rules, "2026-06-16 11:00+02")  # a Tuesday
    assert call_now(api, "declined") == [PARIS]
    pin(rules, "2026-06-17 11:00+02")
    assert claimed(api) == []
    held = rules.execute(
        "select id, next_attempt_at from batchctl.batch_entries where status = 'queued'"
    ).fetchone()
    assert held is not None
    # 60 days after 11:00 on 16 June is Saturday 15 August (a weekend): Monday 10:00.
    assert held["next_attempt_at"] == ts("2026-08-17 10:00+02")
    assert reasons(rules, held["id"]) == ["cooloff:FR"]


def test_france_allows_four_calls_in_thirty_days(api: SqlApi, rules: Conn) -> None:
    tenant = api.create_tenant("acme", 10, "Europe/Paris")
    batches_of(api, tenant, PARIS, 5)
    for day in (1, 2, 3, 4):  # Monday to Thursday
        pin(rules, ts("2026-06-01 11:00+02") + timedelta(days=day - 1))
        assert call_now(api, "no_answer") == [PARIS]
    pin(rules, "2026-06-05 11:00+02")
    assert claimed(api) == []
    held = rules.execute(
        "select id, next_attempt_at from batchctl.batch_entries where status = 'queued'"
    ).fetchone()
    assert held is not None and held["next_attempt_at"] == ts("2026-07-01 11:00+02")
    assert reasons(rules, held["id"]) == ["frequency:FR"]


# --- holidays ---------------------------------------------------------------------------------


def test_nobody_is_called_on_a_holiday_in_their_own_local_date(api: SqlApi, conn: Conn) -> None:
    tenant = tenant_with(api, {"holidays": ["2026-07-04"]}, zone="UTC")
    api.create_batch(
        tenant,
        [
            {"to_phone": LA, "timezone": "America/Los_Angeles"},
            {"to_phone": BERLIN, "timezone": "Europe/Berlin"},
        ],
    )
    pin(conn, "2026-07-04 02:00+00")  # 19:00 on 3 July in Los Angeles, 04:00 on 4 July in Berlin
    assert claimed(api) == [LA]
    held = entry(conn, BERLIN)
    assert held["next_attempt_at"] == ts("2026-07-05 00:00+02")
    assert reasons(conn, held["id"]) == ["holiday"]


def test_a_holiday_on_the_day_the_clocks_change_ends_at_local_midnight(
    api: SqlApi, conn: Conn
) -> None:
    tenant = tenant_with(api, {"holidays": ["2026-03-08", "2026-03-09"]})
    api.create_batch(tenant, [{"to_phone": NY}])
    pin(conn, "2026-03-08 00:30-05")
    assert claimed(api) == []
    assert entry(conn, NY)["next_attempt_at"] == ts("2026-03-10 00:00-04")  # two days, EDT


def test_a_holiday_and_the_calling_hours_together(api: SqlApi, rules: Conn) -> None:
    tenant = tenant_with(api, {"holidays": ["2026-07-04"]})
    api.create_batch(tenant, [{"to_phone": FL}])
    pin(rules, "2026-07-04 12:00-04")
    assert claimed(api) == []
    held = entry(rules, FL)
    assert held["next_attempt_at"] == ts("2026-07-05 08:00-04")
    assert reasons(rules, held["id"]) == ["holiday"]


# --- combinations -----------------------------------------------------------------------------


def test_a_florida_number_in_a_window_to_nine_with_a_cap(api: SqlApi, rules: Conn) -> None:
    """The window says 21:00, Florida 20:00, the policy one call a day: the strictest of each."""
    tenant = tenant_with(api, {"frequency": {"per_24h": 1}})
    window = {"start": "09:00", "end": "21:00"}
    for _ in range(2):
        api.create_batch(tenant, [{"to_phone": FL}], {"call_window": window})
    pin(rules, "2026-06-16 19:30-04")
    assert call_now(api) == [FL]
    pin(rules, "2026-06-16 19:45-04")
    assert claimed(api) == []
    held = rules.execute(
        "select id, next_attempt_at from batchctl.batch_entries where status = 'queued'"
    ).fetchone()
    assert held is not None
    # The cap lifts at 19:30 tomorrow, inside both the window and Florida's hours.
    assert held["next_attempt_at"] == ts("2026-06-17 19:30-04")
    assert reasons(rules, held["id"]) == ["frequency:per_24h"]
    pin(rules, "2026-06-17 20:00-04")  # past Florida's hours: not yet
    assert claimed(api) == []


def test_the_sweep_holds_back_what_a_holiday_forbids_and_leaves_limits_to_the_claim(
    api: SqlApi, conn: Conn
) -> None:
    """The sweep reads every due entry, so it reads the call history only for those the window,
    the rules or a holiday forbid anyway (to wait for both); the claim holds back the rest."""
    tenant = tenant_with(api, {"frequency": {"per_24h": 1}, "holidays": ["2026-06-17"]})
    batches_of(api, tenant, NY, 3)
    pin(conn, "2026-06-16 10:00-04")
    assert call_now(api) == [NY]
    assert api.sweep(ts("2026-06-16 11:00-04"))["held_by_rules"] == 0  # the claim's to find
    pin(conn, "2026-06-16 11:00-04")
    assert claimed(api) == []
    held = conn.execute(
        """select id, next_attempt_at from batchctl.batch_entries
            where status = 'queued' and next_attempt_at > '-infinity'"""
    ).fetchall()
    assert [h["next_attempt_at"] for h in held] == [ts("2026-06-18 00:00-04")]  # then a holiday
    assert reasons(conn, held[0]["id"]) == ["frequency:per_24h"]
    # On the holiday the sweep holds back the other one, until the cap and the holiday allow.
    result = api.sweep(ts("2026-06-17 01:00-04"))
    assert (result["held_by_rules"], result["deferred_to_window"]) == (1, 0)
    other = conn.execute(
        """select id, next_attempt_at from batchctl.batch_entries
            where status = 'queued' and id <> %s""",
        (held[0]["id"],),
    ).fetchone()
    assert other is not None and other["next_attempt_at"] == ts("2026-06-18 00:00-04")
    assert reasons(conn, other["id"]) == ["frequency:per_24h"]
    assert api.sweep(ts("2026-06-17 01:05-04"))["held_by_rules"] == 0  # not again


# --- the do-not-call list ---------------------------------------------------------------------


def test_a_number_put_on_the_list_behind_the_intake_is_cancelled_not_dialled(
    api: SqlApi, conn: Conn
) -> None:
    """An entry added while its number was being put on the list (the race add_dnc's own check
    cannot see) is found by the claim, which cancels it."""
    tenant = api.create_tenant("acme", 10)
    api.create_batch(tenant, [{"to_phone": NY}, {"to_phone": LA}])
    conn.execute(
        "insert into batchctl.dnc_numbers (tenant_id, phone) values (%s, %s)", (tenant, NY)
    )
    assert claimed(api) == [LA]
    gone = entry(conn, NY)
    assert (gone["status"], gone["last_error"]) == ("cancelled", "dnc")


# --- explain_entry ----------------------------------------------------------------------------


def test_explain_names_every_reason_and_the_moment_all_allow(api: SqlApi, rules: Conn) -> None:
    tenant = tenant_with(api, {"frequency": {"per_24h": 1}})
    batches = batches_of(api, tenant, FL, 2)
    pin(rules, "2026-06-16 19:00-04")
    assert call_now(api) == [FL]
    pin(rules, "2026-06-16 20:30-04")
    waiting = next(
        entry(rules, FL, b) for b in batches if entry(rules, FL, b)["status"] == "queued"
    )
    answer = api.explain_entry(tenant, waiting["id"])
    assert answer["dialable_now"] is False
    assert [r["rule"] for r in answer["reasons"]] == ["quiet_hours:US-FL", "frequency:per_24h"]
    until = {r["rule"]: ts(r["until"]) for r in answer["reasons"]}
    assert until["quiet_hours:US-FL"] == ts("2026-06-17 08:00-04")
    assert until["frequency:per_24h"] == ts("2026-06-17 19:00-04")
    assert ts(answer["next_at"]) == ts("2026-06-17 19:00-04")
    pin(rules, "2026-06-17 19:00-04")
    assert api.explain_entry(tenant, waiting["id"]) == {
        "dialable_now": True,
        "next_at": one_value(rules, "select to_jsonb(batchctl.clock()) #>> '{}'"),
        "reasons": [],
    }


def test_batch_options_cannot_loosen_the_policy(api: SqlApi) -> None:
    tenant = tenant_with(api, {"frequency": {"per_24h": 1}})
    for key in ("frequency", "jurisdiction_rules", "holidays", "policy"):
        with pytest.raises(psycopg.Error, match="unknown key"):
            api.create_batch(tenant, [{"to_phone": NY}], {key: {}})
