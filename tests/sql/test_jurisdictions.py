"""Calling hours by the recipient's jurisdiction (docs/compliance.md): the shipped rules, the
jurisdiction worked out at intake, and the claim and the sweep holding entries back until every
rule and the batch's call window allow them, with pinned time.

The template database has the shipped rules taken out of force (tests/helpers/pgtools.py,
set_calling_hours_aside); the ``rules`` fixture puts back what a fresh upgrade ships. The
claim's time is pinned with the batchctl.now setting (batchctl.clock(), honoured for a
superuser's session: these tests'), the sweep's with its p_now."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from batchctl import resources
from batchctl.migrate import upgrade
from checks import Conn
from clockwork import claimed, entry, pin, reasons, ts
from pgtools import one_value
from sqlapi import SqlApi
from tenant_logins import login_role

FL = "+13055550100"  # Miami: US-FL by its area code
NY = "+12125550100"  # New York: US-NY
PARIS = "+33612345678"  # a French mobile
BERLIN = "+4915112345678"
TORONTO = "+14165550100"  # CA-ON


def batch_of(
    api: SqlApi,
    leads: list[dict[str, Any]],
    zone: str = "America/New_York",
    options: dict[str, Any] | None = None,
) -> UUID:
    tenant = api.create_tenant("acme", 10, zone)
    return api.create_batch(tenant, leads, options or {})


# --- the rules shipped ------------------------------------------------------------------------


def test_the_shipped_rules_are_us_florida_and_france_with_their_sources(rules: Conn) -> None:
    rows = rules.execute(
        """select jurisdiction, days, hours::text as hours, max_calls, cap_window::text as cap,
                  refusal_cooloff::text as cooloff, source
             from batchctl.jurisdiction_rules order by jurisdiction"""
    ).fetchall()
    assert [
        (r["jurisdiction"], r["days"], r["hours"], r["max_calls"], r["cap"], r["cooloff"])
        for r in rows
    ] == [
        ("FR", [1, 2, 3, 4, 5], "{[10:00:00,13:00:00),[14:00:00,20:00:00)}", 4, "30 days",
         "60 days"),
        ("US", [1, 2, 3, 4, 5, 6, 7], "{[08:00:00,21:00:00)}", None, None, None),
        ("US-FL", [1, 2, 3, 4, 5, 6, 7], "{[08:00:00,20:00:00)}", 3, "24:00:00", None),
    ]  # fmt: skip
    sources = {r["jurisdiction"]: r["source"] for r in rows}
    assert "47 CFR 64.1200(c)(1)" in sources["US"]
    assert "501.616" in sources["US-FL"]
    assert "2022-1313" in sources["FR"]


def test_the_rules_are_the_owner_s_to_write_and_the_workers_to_read(conn: Conn) -> None:
    for table in ("jurisdiction_rules", "phone_prefixes"):
        rights = conn.execute(
            """select has_table_privilege('batchctl_worker', %(t)s, 'SELECT') as worker_reads,
                      has_table_privilege('batchctl_worker', %(t)s, 'INSERT,UPDATE,DELETE')
                          as worker_writes,
                      has_table_privilege('batchctl_tenant', %(t)s, 'SELECT,INSERT,UPDATE,DELETE')
                          as tenant_any""",
            {"t": f"batchctl.{table}"},
        ).fetchone()
        assert rights == {"worker_reads": True, "worker_writes": False, "tenant_any": False}


def test_a_malformed_rule_is_refused(conn: Conn) -> None:
    bad = [
        ("us", "{1}", "{[08:00,21:00)}"),  # not an ISO code
        ("DE", "{0}", "{[08:00,21:00)}"),  # no weekday 0
        ("DE", "{}", "{[08:00,21:00)}"),  # no day at all
        ("DE", "{1}", "{}"),  # no hours
    ]
    for key, days, hours in bad:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                """insert into batchctl.jurisdiction_rules (jurisdiction, days, hours, source)
                   values (%s, %s, %s, 'test')""",
                (key, days, hours),
            )


# --- the jurisdiction of an entry -------------------------------------------------------------


def test_the_country_and_subdivision_come_from_the_number_and_the_region(
    api: SqlApi, conn: Conn
) -> None:
    batch_of(
        api,
        [
            {"to_phone": FL},
            {"to_phone": NY, "region": "us-fl"},
            {"to_phone": PARIS},
            {"to_phone": BERLIN, "region": "DE-BE"},
            {"to_phone": TORONTO},
            {"to_phone": "+12425550100"},  # the Bahamas share +1
            {"to_phone": "+18005550199", "region": "US-CA"},  # toll-free: no state of its own
        ],
    )
    got = {
        r["to_phone"]: (r["region"], r["country"], r["subdivisions"])
        for r in conn.execute(
            "select to_phone, region, country, subdivisions from batchctl.batch_entries"
        ).fetchall()
    }
    assert got == {
        FL: (None, "US", ["US-FL"]),
        NY: ("US-FL", "US", ["US-FL", "US-NY"]),  # they disagree: both apply
        PARIS: (None, "FR", []),
        BERLIN: ("DE-BE", "DE", ["DE-BE"]),
        TORONTO: (None, "CA", ["CA-ON"]),
        "+12425550100": (None, "BS", []),
        "+18005550199": ("US-CA", "US", ["US-CA"]),
    }


def test_the_rows_forms_take_the_region_too(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch_from_rows(tenant, [{"to_phone": NY, "region": "US-FL"}])
    api.add_entries(tenant, batch, [{"to_phone": PARIS, "region": "fr-75"}])
    assert entry(conn, NY)["subdivisions"] == ["US-FL", "US-NY"]
    assert (entry(conn, PARIS)["region"], entry(conn, PARIS)["subdivisions"]) == (
        "FR-75",
        ["FR-75"],
    )


@pytest.mark.parametrize("region", ["Florida", "US", "USFL", "US-FLOR", "U1-FL", " US-FL", ""])
def test_a_malformed_region_is_bc001_naming_the_entry(api: SqlApi, region: str) -> None:
    tenant = api.create_tenant()
    leads = [{"to_phone": FL}, {"to_phone": NY, "region": region}]
    expected = f"entries\\[1\\]: region {json.dumps(region)} is not an ISO 3166-2"
    with pytest.raises(psycopg.Error, match=expected) as raised:
        api.create_batch(tenant, leads)
    assert raised.value.sqlstate == "BC001"
    with pytest.raises(psycopg.Error, match=expected):
        api.create_batch_from_rows(tenant, leads)
    batch = api.create_batch(tenant, [{"to_phone": PARIS}])
    with pytest.raises(psycopg.Error, match=expected):
        api.add_entries(tenant, batch, leads)


def test_a_region_that_is_not_a_string_is_bc001(api: SqlApi) -> None:
    tenant = api.create_tenant()
    with pytest.raises(psycopg.Error, match=r"entries\[0\]: region must be a"):
        api.create_batch(tenant, [{"to_phone": FL, "region": 12}])


# --- the claim holds entries back -------------------------------------------------------------


def test_florida_at_half_past_eight_waits_until_eight_next_morning(
    api: SqlApi, rules: Conn
) -> None:
    batch_of(api, [{"to_phone": FL}])
    pin(rules, "2026-06-16 20:30-04")  # a Tuesday, 20:30 in Miami (EDT)
    assert claimed(api) == []
    held = entry(rules, FL)
    assert held["status"] == "queued"
    assert held["next_attempt_at"] == ts("2026-06-17 08:00-04")
    assert reasons(rules, held["id"]) == ["quiet_hours:US-FL"]
    # Not looked at again before then: another claim writes nothing.
    assert claimed(api) == []
    assert reasons(rules, held["id"]) == ["quiet_hours:US-FL"]
    pin(rules, "2026-06-17 07:59:59-04")
    assert claimed(api) == []
    pin(rules, "2026-06-17 08:00-04")
    assert claimed(api) == [FL]


def test_a_window_to_nine_pm_does_not_stretch_florida_past_eight(api: SqlApi, rules: Conn) -> None:
    window = {"start": "09:00", "end": "21:00"}
    batch_of(api, [{"to_phone": FL}, {"to_phone": NY}], options={"call_window": window})
    pin(rules, "2026-06-16 20:00-04")
    assert claimed(api) == [NY]  # New York: the US rule and the window allow until 21:00
    held = entry(rules, FL)
    assert held["next_attempt_at"] == ts("2026-06-17 09:00-04")  # the window opens later
    assert reasons(rules, held["id"]) == ["quiet_hours:US-FL"]
    options = json.dumps({"call_window": {**window, "days": ["tue"]}})
    may_dial = """select batchctl.may_dial(%s::jsonb, 'America/New_York',
                                          batchctl.entry_jurisdictions('US', '{US-FL}'), '{}',
                                          %s)"""
    assert one_value(rules, may_dial, (options, "2026-06-16 19:59:59-04"))
    assert not one_value(rules, may_dial, (options, "2026-06-16 20:00-04"))


def test_a_new_york_number_with_region_us_fl_gets_both(api: SqlApi, rules: Conn) -> None:
    batch_of(api, [{"to_phone": NY, "region": "US-FL"}])
    pin(rules, "2026-06-16 20:30-04")
    assert claimed(api) == []
    held = entry(rules, NY)
    assert held["next_attempt_at"] == ts("2026-06-17 08:00-04")
    assert reasons(rules, held["id"]) == ["quiet_hours:US-FL"]
    # Both: the US rule's end binds at 21:00, Florida's at 20:00.
    assert one_value(
        rules,
        """select batchctl.rules_allow(batchctl.entry_jurisdictions('US', '{US-FL,US-NY}'),
                                       'America/New_York', '2026-06-16 19:30-04')""",
    )


def test_a_french_number_at_half_past_one_on_tuesday_waits_until_two(
    api: SqlApi, rules: Conn
) -> None:
    batch_of(api, [{"to_phone": PARIS}], zone="Europe/Paris")
    pin(rules, "2026-06-16 13:30+02")  # a Tuesday
    assert claimed(api) == []
    held = entry(rules, PARIS)
    assert held["next_attempt_at"] == ts("2026-06-16 14:00+02")
    assert reasons(rules, held["id"]) == ["quiet_hours:FR"]
    pin(rules, "2026-06-16 14:00+02")
    assert claimed(api) == [PARIS]


def test_a_french_number_on_saturday_waits_until_monday_ten(api: SqlApi, rules: Conn) -> None:
    batch_of(api, [{"to_phone": PARIS}], zone="Europe/Paris")
    pin(rules, "2026-06-20 11:00+02")  # a Saturday, inside the weekday hours
    assert claimed(api) == []
    assert entry(rules, PARIS)["next_attempt_at"] == ts("2026-06-22 10:00+02")


@pytest.mark.parametrize(
    ("zone", "country", "subdivisions", "at", "opens"),
    [
        # New York springs forward on Sunday 2026-03-08: 08:00 that morning is EDT, not EST.
        ("America/New_York", "US", ["US-FL"], "2026-03-07 20:30-05", "2026-03-08 08:00-04"),
        # ... and falls back on 2026-11-01: 08:00 is EST again.
        ("America/New_York", "US", ["US-FL"], "2026-10-31 20:30-04", "2026-11-01 08:00-05"),
        # Paris springs forward on Sunday 2026-03-29, between Friday evening and Monday.
        ("Europe/Paris", "FR", [], "2026-03-27 20:30+01", "2026-03-30 10:00+02"),
        ("Europe/Paris", "FR", [], "2026-03-28 13:30+01", "2026-03-30 10:00+02"),
        # ... and falls back on 2026-10-25.
        ("Europe/Paris", "FR", [], "2026-10-23 13:15+02", "2026-10-23 14:00+02"),
        ("Europe/Paris", "FR", [], "2026-10-24 09:00+02", "2026-10-26 10:00+01"),
    ],
)
def test_clock_changes_resolve_exactly(
    rules: Conn, zone: str, country: str, subdivisions: list[str], at: str, opens: str
) -> None:
    got = rules.execute(
        """select * from batchctl.next_allowed(null, %s, batchctl.entry_jurisdictions(%s, %s),
                                                 '{}', %s)""",
        (zone, country, subdivisions, at),
    ).fetchone()
    assert got is not None
    assert got["opens"] == ts(opens)
    assert got["rule"] == "quiet_hours:" + (subdivisions or [country])[0]


def test_the_claim_on_a_clock_change_day(api: SqlApi, rules: Conn) -> None:
    batch_of(api, [{"to_phone": FL}])
    pin(rules, "2026-03-08 01:30-05")  # half an hour before New York's clocks go forward
    assert claimed(api) == []
    assert entry(rules, FL)["next_attempt_at"] == ts("2026-03-08 12:00+00")  # 08:00 EDT
    pin(rules, "2026-03-08 12:00+00")
    assert claimed(api) == [FL]


@pytest.mark.parametrize(
    ("zone", "country", "at", "opens"),
    [
        ("America/New_York", "US", "2026-03-08 01:00-05", "2026-03-08 03:00-04"),
        ("Europe/Paris", "FR", "2026-03-29 01:00+01", "2026-03-29 03:00+02"),
        # Falling back, 02:30 shows twice: its first showing.
        ("Europe/Paris", "FR", "2026-10-25 01:00+02", "2026-10-25 02:30+02"),
    ],
)
def test_an_hour_the_clock_skips_opens_at_the_change(
    conn: Conn, zone: str, country: str, at: str, opens: str
) -> None:
    """An owner's rule whose hours start at 02:30, every day, on the nights the clocks change:
    where the clock skips 02:00-03:00 it opens at the change itself (03:00 summer time), the
    moment the clock first shows 02:30 or later."""
    conn.execute(
        """insert into batchctl.jurisdiction_rules (jurisdiction, days, hours, source)
           values (%s, '{1,2,3,4,5,6,7}', '{[02:30,05:00)}', 'test')""",
        (country,),
    )
    got = conn.execute(
        """select * from batchctl.next_allowed(null, %s, batchctl.entry_jurisdictions(%s, '{}'),
                                                 '{}', %s)""",
        (zone, country, at),
    ).fetchone()
    assert got == {"opens": ts(opens), "rule": "quiet_hours:" + country}


def test_a_rule_the_owner_adds_applies(api: SqlApi, rules: Conn) -> None:
    rules.execute(
        """insert into batchctl.jurisdiction_rules (jurisdiction, days, hours, source)
           values ('DE', '{1,2,3,4,5,6}', '{[09:00,20:00)}', 'an operator''s policy')"""
    )
    batch_of(api, [{"to_phone": BERLIN}, {"to_phone": PARIS}], zone="Europe/Berlin")
    pin(rules, "2026-06-16 20:15+02")  # a Tuesday: past both the DE and the FR hours
    assert claimed(api) == []
    held = entry(rules, BERLIN)
    assert held["next_attempt_at"] == ts("2026-06-17 09:00+02")
    assert reasons(rules, held["id"]) == ["quiet_hours:DE"]
    pin(rules, "2026-06-17 09:00+02")
    assert claimed(api) == [BERLIN]  # France opens at 10:00


def test_no_batch_option_loosens_a_rule(api: SqlApi, rules: Conn) -> None:
    tenant = api.create_tenant("acme", 10, "America/New_York")
    wide = {"start": "00:00", "end": "23:59", "days": ["mon", "tue", "wed", "thu", "fri",
                                                      "sat", "sun"]}  # fmt: skip
    api.create_batch(
        tenant,
        [{"to_phone": FL, "timezone": "America/New_York"}],
        {"call_window": wide, "dispatch_mode": "window", "wave_size": 1000},
    )
    pin(rules, "2026-06-16 20:30-04")
    assert claimed(api) == []
    assert entry(rules, FL)["next_attempt_at"] == ts("2026-06-17 08:00-04")
    loosenings: list[dict[str, Any]] = [
        {"ignore_rules": True},
        {"jurisdiction_rules": []},
        {"compliance": False},
    ]
    for loosening in loosenings:
        with pytest.raises(psycopg.Error, match="unknown key"):
            api.create_batch(tenant, [{"to_phone": NY}], loosening)


def test_the_sweep_holds_back_what_a_rule_forbids_and_names_the_rule(
    api: SqlApi, rules: Conn
) -> None:
    batch_of(api, [{"to_phone": FL}, {"to_phone": NY}, {"to_phone": BERLIN}])
    result = api.sweep(ts("2026-06-16 20:30-04"))
    assert (result["held_by_rules"], result["deferred_to_window"]) == (1, 0)
    held = entry(rules, FL)
    assert held["next_attempt_at"] == ts("2026-06-17 08:00-04")
    assert reasons(rules, held["id"]) == ["quiet_hours:US-FL"]
    assert entry(rules, NY)["next_attempt_at"] is None  # allowed: untouched
    assert api.sweep(ts("2026-06-16 20:31-04"))["held_by_rules"] == 0  # not again
    # Past nine, New York waits too.
    assert api.sweep(ts("2026-06-16 21:00-04"))["held_by_rules"] == 1
    assert reasons(rules, entry(rules, NY)["id"]) == ["quiet_hours:US"]


def test_the_test_clock_is_ignored_outside_a_superuser_session(api: SqlApi, conn: Conn) -> None:
    """batchctl.now moves only a superuser's clock (the tests'): a worker's setting cannot move
    the calling hours. (Seen in the lease a claim gives: clock() plus the lease.)"""
    batch_of(api, [{"to_phone": BERLIN}, {"to_phone": PARIS}])
    lease = "select lease_expires_at from batchctl.batch_entries where status = 'running'"
    info = conn.info
    with login_role(conn, member_of=("batchctl_worker",)) as role:
        url = f"host={info.host} port={info.port} dbname={info.dbname} user={role}"
        with psycopg.connect(url, autocommit=True) as worker:
            worker.execute("select set_config('batchctl.now', '2001-01-01 00:00+00', false)")
            worker.execute("select * from batchctl.claim_entries('w', 1, 60)")
    assert one_value(conn, lease + " and lease_expires_at > now()")
    pin(conn, "2001-01-01 00:00+00")
    api.claim(limit=1)
    assert one_value(conn, lease + " and lease_expires_at < '2002-01-01'") == ts(
        "2001-01-01 00:01+00"
    )


@pytest.mark.parametrize(
    ("at", "opens"),
    [
        ("2026-06-16 09:30+02", "2026-06-16 10:00+02"),
        ("2026-06-16 12:59+02", "2026-06-16 12:59+02"),
        ("2026-06-16 13:00+02", "2026-06-16 14:00+02"),
        ("2026-06-16 17:59+02", "2026-06-16 17:59+02"),
        ("2026-06-16 18:00+02", "2026-06-17 10:00+02"),  # the window ends before France does
        ("2026-06-19 18:30+02", "2026-06-22 10:00+02"),  # Friday evening: Monday
    ],
)
def test_a_split_rule_and_a_window_leave_their_intersection(
    rules: Conn, at: str, opens: str
) -> None:
    """France's 10:00-13:00 and 14:00-20:00 with a window 09:00-18:00: 10-13 and 14-18."""
    window = json.dumps({"start": "09:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu",
                                                                    "fri", "sat"]})  # fmt: skip
    got = one_value(
        rules,
        """select (batchctl.next_allowed(%s::jsonb, 'Europe/Paris', '{FR}', '{}', %s)).opens""",
        (window, at),
    )
    assert got == ts(opens)


def test_the_upgrade_gives_entries_waiting_to_be_dialled_their_jurisdiction(
    tmp_path: Path, empty_db_url: str
) -> None:
    """Migration 0018: entries queued before the rules came get their country and subdivision;
    finished ones are history and keep none."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for path in sorted(resources.migrations_dir().glob("*.sql")):
        if path.name < "0017":
            shutil.copy(path, migrations)
    (tmp_path / "sql").mkdir()
    upgrade(empty_db_url, migrations, tmp_path / "sql")
    with psycopg.connect(empty_db_url, autocommit=True) as old:
        old.execute(
            """with t as (insert into batchctl.tenants (name) values ('acme') returning id),
                    b as (insert into batchctl.batches (tenant_id, options, status, total,
                                                        queued_count, completed_count)
                          select id, '{}', 'running', 2, 1, 1 from t returning id, tenant_id)
               insert into batchctl.batch_entries (batch_id, tenant_id, entry_index, to_phone,
                                                   status)
               select b.id, b.tenant_id, x.i, x.phone, x.status::batchctl.entry_status
                 from b, (values (0, %s, 'queued'), (1, %s, 'completed')) x (i, phone, status)""",
            (FL, NY),
        )
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url, autocommit=True) as new:
        rows = new.execute(
            """select to_phone, country, subdivisions from batchctl.batch_entries
                order by entry_index"""
        ).fetchall()
    assert rows == [(FL, "US", ["US-FL"]), (NY, None, [])]
