"""The compliance API as a caller sees it (sql/046, docs/sql-api.md): set_policy and get_policy
(defaults, round trip, every ill-typed value refused naming its key and changing nothing, one
tenant's policy out of another's reach), and explain_entry's basic answers. How the claim and
the sweep enforce a policy is tests/sql/test_policies.py's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from checks import Conn, rejected
from clockwork import pin, ts
from sqlapi import SqlApi, phones
from tenant_logins import act_as, login_role

DEFAULTS = {
    "jurisdiction_rules": True,
    "frequency": {},
    "cooloff_s": {},
    "holidays": [],
    "require_consent": False,
}
POLICY = {
    "jurisdiction_rules": False,
    "frequency": {"per_24h": 2, "per_7d": 5, "per_30d": 10},
    "cooloff_s": {"declined": 5184000, "no_answer": 3600},
    "holidays": ["2026-12-25", "2026-01-01"],
    "require_consent": True,
}


@pytest.fixture
def tenant(api: SqlApi) -> UUID:
    return api.create_tenant("acme", 3, "UTC")


# --- set_policy / get_policy ------------------------------------------------------------------


def test_a_new_tenant_has_the_default_policy(api: SqlApi, tenant: UUID) -> None:
    assert api.get_policy(tenant) == DEFAULTS


def test_set_returns_the_effective_policy_and_get_reads_it_back(api: SqlApi, tenant: UUID) -> None:
    effective = api.set_policy(tenant, POLICY)
    assert effective == {**POLICY, "holidays": ["2026-01-01", "2026-12-25"]}
    assert api.get_policy(tenant) == effective
    # The whole policy each time: a key left out is its default again.
    assert api.set_policy(tenant, {"frequency": {"per_7d": 3}}) == {
        **DEFAULTS,
        "frequency": {"per_7d": 3},
    }
    assert api.get_policy(tenant) == {**DEFAULTS, "frequency": {"per_7d": 3}}
    assert api.set_policy(tenant, {}) == DEFAULTS
    assert api.get_policy(tenant) == DEFAULTS


def test_holidays_are_kept_sorted_and_once_each(api: SqlApi, tenant: UUID) -> None:
    holidays = ["2026-12-26", "2026-12-25", "2026-12-26", "2026-01-01", "2026-12-25"]
    effective = api.set_policy(tenant, {"holidays": holidays})
    assert effective["holidays"] == ["2026-01-01", "2026-12-25", "2026-12-26"]
    assert api.get_policy(tenant)["holidays"] == effective["holidays"]


def test_a_top_level_null_is_the_default(api: SqlApi, tenant: UUID) -> None:
    assert api.set_policy(tenant, {"jurisdiction_rules": None, "holidays": None}) == DEFAULTS
    assert api.set_policy(tenant, {"jurisdiction_rules": False})["jurisdiction_rules"] is False
    assert api.set_policy(tenant, {"jurisdiction_rules": None})["jurisdiction_rules"] is True


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"frequncy": {"per_24h": 1}}, 'policy: unknown key "frequncy"'),
    ("unknown window", {"frequency": {"per_12h": 1}}, 'unknown window "per_12h"'),
    ("frequency 0", {"frequency": {"per_24h": 0}}, "policy.frequency.per_24h"),
    ("frequency 1.5", {"frequency": {"per_24h": 1.5}}, "policy.frequency.per_24h"),
    ("frequency string", {"frequency": {"per_7d": "3"}}, "policy.frequency.per_7d"),
    ("frequency too many", {"frequency": {"per_30d": 10001}}, "policy.frequency.per_30d"),
    ("frequency not an object", {"frequency": [1]}, "policy.frequency"),
    ("cool-off outcome", {"cooloff_s": {"hung_up": 60}}, 'unknown call outcome "hung_up"'),
    ("cool-off negative", {"cooloff_s": {"declined": -1}}, "policy.cooloff_s.declined"),
    ("cool-off too long", {"cooloff_s": {"busy": 31622401}}, "policy.cooloff_s.busy"),
    ("impossible date", {"holidays": ["2026-12-25", "2026-02-30"]}, "policy.holidays[1]"),
    ("date not a string", {"holidays": [20261225]}, "policy.holidays[0]"),
    ("holidays not an array", {"holidays": "2026-12-25"}, "policy.holidays"),
    ("consent a string", {"require_consent": "yes"}, "policy.require_consent"),
    ("rules a number", {"jurisdiction_rules": 1}, "policy.jurisdiction_rules"),
]


@pytest.mark.parametrize(
    ("policy", "needle"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_every_ill_typed_value_is_refused_naming_its_key_and_changes_nothing(
    api: SqlApi, conn: Conn, tenant: UUID, policy: dict[str, Any], needle: str
) -> None:
    before = api.set_policy(tenant, POLICY)
    rejected(conn, "BC001", lambda: api.set_policy(tenant, policy), needle)
    assert api.get_policy(tenant) == before


def test_a_policy_that_is_not_an_object_is_refused(api: SqlApi, conn: Conn, tenant: UUID) -> None:
    rejected(
        conn,
        "BC001",
        lambda: conn.execute("select batchctl.set_policy(%s, '[]')", (tenant,)),
        "policy: expected a JSON object",
    )
    assert api.get_policy(tenant) == DEFAULTS


def test_an_unknown_tenant_is_not_found(api: SqlApi, conn: Conn) -> None:
    nobody = uuid4()
    rejected(conn, "BC002", lambda: api.get_policy(nobody), "not found")
    rejected(conn, "BC002", lambda: api.set_policy(nobody, {}), "not found")


def test_a_tenant_login_reads_and_sets_only_its_own_policy(
    api: SqlApi, conn: Conn, tenant: UUID
) -> None:
    other = api.create_tenant("other", 3, "UTC")
    api.set_policy(other, {"require_consent": True})
    with login_role(conn, tenant) as alice:
        act_as(conn, alice)
        for call in (
            lambda: api.get_policy(other),
            lambda: api.set_policy(other, {}),
            lambda: api.set_policy(other, {"frequency": {"per_24h": "x"}}),  # not found first
        ):
            with pytest.raises(psycopg.Error) as exc:
                call()
            assert exc.value.sqlstate == "BC002" and "not found" in str(exc.value)
        assert api.set_policy(tenant, {"holidays": ["2026-12-25"]})["holidays"] == ["2026-12-25"]
        assert api.get_policy(tenant)["holidays"] == ["2026-12-25"]
    assert api.get_policy(other) == {**DEFAULTS, "require_consent": True}


# --- explain_entry ----------------------------------------------------------------------------


def entry_ids(conn: Conn, batch_id: UUID) -> list[UUID]:
    rows = conn.execute(
        "select id from batchctl.batch_entries where batch_id = %s order by entry_index",
        (batch_id,),
    ).fetchall()
    return [r["id"] for r in rows]


def test_a_fresh_entry_of_a_running_batch_is_dialable_now(
    api: SqlApi, conn: Conn, tenant: UUID
) -> None:
    (entry,) = entry_ids(conn, api.create_batch(tenant, phones(1)))
    answer = api.explain_entry(tenant, entry)
    assert (answer["dialable_now"], answer["reasons"]) == (True, [])
    assert abs(ts(answer["next_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


def test_an_entry_of_a_paused_batch_waits_for_no_moment(
    api: SqlApi, conn: Conn, tenant: UUID
) -> None:
    batch = api.create_batch(tenant, phones(1))
    api.pause_batch(tenant, batch)
    (entry,) = entry_ids(conn, batch)
    assert api.explain_entry(tenant, entry) == {
        "dialable_now": False,
        "next_at": None,
        "reasons": [{"rule": "batch:paused", "until": None}],
    }


def test_a_completed_entry_says_so(api: SqlApi, conn: Conn, tenant: UUID) -> None:
    batch = api.create_batch(tenant, phones(2), {"wave_size": 1})
    (call,) = api.dispatch_all(limit=1)
    api.finish_call(call)
    rows = conn.execute(
        "select id, status::text as status from batchctl.batch_entries where batch_id = %s",
        (batch,),
    ).fetchall()
    status = {r["status"]: r["id"] for r in rows}
    done, queued = status["completed"], status["queued"]
    assert api.explain_entry(tenant, done) == {
        "dialable_now": False,
        "next_at": None,
        "reasons": [{"rule": "status:completed", "until": None}],
    }
    assert api.explain_entry(tenant, queued)["dialable_now"] is True


def test_a_number_on_the_do_not_call_list(api: SqlApi, conn: Conn, tenant: UUID) -> None:
    lead, listed = phones(2)
    (entry, other) = entry_ids(conn, api.create_batch(tenant, [lead, listed]))
    # Listed behind the entry's back (as in a race with the claim): it is still queued.
    conn.execute(
        "insert into batchctl.dnc_numbers (tenant_id, phone) values (%s, %s)",
        (tenant, lead["to_phone"]),
    )
    assert api.explain_entry(tenant, entry) == {
        "dialable_now": False,
        "next_at": None,
        "reasons": [{"rule": "do_not_call", "until": None}],
    }
    api.add_dnc(tenant, listed["to_phone"])  # cancels the queued entry as well
    rules = [r["rule"] for r in api.explain_entry(tenant, other)["reasons"]]
    assert rules == ["status:cancelled", "do_not_call"]


def test_a_holiday_of_the_policy_lifts_at_midnight(api: SqlApi, conn: Conn, tenant: UUID) -> None:
    (entry,) = entry_ids(conn, api.create_batch(tenant, phones(1)))
    api.set_policy(tenant, {"holidays": ["2026-12-25"]})
    pin(conn, "2026-12-25 10:00Z")
    answer = api.explain_entry(tenant, entry)
    assert answer["dialable_now"] is False
    assert [(r["rule"], ts(r["until"])) for r in answer["reasons"]] == [
        ("holiday", ts("2026-12-26 00:00Z"))
    ]
    assert ts(answer["next_at"]) == ts("2026-12-26 00:00Z")


def test_another_tenants_entry_is_not_found(api: SqlApi, conn: Conn, tenant: UUID) -> None:
    other = api.create_tenant("other", 3, "UTC")
    (theirs,) = entry_ids(conn, api.create_batch(other, phones(1)))
    rejected(conn, "BC002", lambda: api.explain_entry(tenant, theirs), "not found")
    rejected(conn, "BC002", lambda: api.explain_entry(tenant, uuid4()), "not found")
    with login_role(conn, tenant) as alice:
        act_as(conn, alice)
        for tenant_id in (tenant, other):
            with pytest.raises(psycopg.Error) as exc:
                api.explain_entry(tenant_id, theirs)
            assert exc.value.sqlstate == "BC002" and "not found" in str(exc.value)
