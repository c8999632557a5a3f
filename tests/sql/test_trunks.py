"""SIP trunks and caller-ID pools through the tenant API (sql/058, docs/trunks.md): creating and
changing a trunk, every refusal naming what is wrong and changing nothing, trunk_status' counts
(the claim does not fill call_logs.trunk_id yet: these tests do, as a superuser), the pool's
numbers checked, deduplicated and placed, and another tenant's trunk not found.

Time is pinned by batchctl.now (tests/helpers/clockwork.py), the clock trunk_status reads."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from checks import Conn, rejected
from clockwork import pin, ts
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones


def pool(conn: Conn, trunk_id: UUID) -> list[dict[str, Any]]:
    return conn.execute(
        """select phone, daily_cap, country, local_prefix from batchctl.caller_ids
            where trunk_id = %s order by phone""",
        (trunk_id,),
    ).fetchall()


# --- create_trunk ---------------------------------------------------------------------------


def test_create_trunk_keeps_its_settings_and_the_tenants_first_is_its_default(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant("acme")
    main = api.create_trunk(tenant, "main", "ST_abc123", 5)
    status = api.trunk_status(tenant, main)
    assert status == {
        "trunk_id": str(main),
        "name": "main",
        "livekit_trunk_id": "ST_abc123",
        "max_cps": 5,
        "max_concurrent": None,
        "default": True,
        "in_flight": 0,
        "started_last_second": 0,
        "started_last_minute": 0,
        "caller_ids": [],
        "backoff": {"refusals": 0, "until": None, "active": False},
        "next_start_at": None,
        "created_at": status["created_at"],
        "updated_at": status["updated_at"],
    }
    backup = api.create_trunk(tenant, "Backup carrier 2", "ST-def_456", Decimal("0.5"), 3)
    second = api.trunk_status(tenant, backup)
    assert (second["default"], second["max_cps"], second["max_concurrent"]) == (False, 0.5, 3)
    assert api.trunk_status(tenant, main)["default"] is True  # still the first
    # Each tenant has its own first trunk, and its own names.
    other = api.create_tenant("other")
    theirs = api.create_trunk(other, "main", "ST_abc123", 1)
    assert api.trunk_status(other, theirs)["default"] is True


def test_the_first_of_two_trunks_made_in_one_transaction_is_the_default(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant()
    for _ in range(10):  # ids are random: a tie of creation times would pick either
        conn.execute("delete from batchctl.trunks")
        with conn.transaction():
            first = api.create_trunk(tenant, "first", "ST_a", 1)
            second = api.create_trunk(tenant, "second", "ST_b", 1)
        assert api.trunk_status(tenant, first)["default"] is True
        assert api.trunk_status(tenant, second)["default"] is False


def test_a_fractional_rate_is_kept_exactly(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    half = api.create_trunk(tenant, "half", "ST_a", Decimal("0.5"))
    slowest = api.create_trunk(tenant, "slowest", "ST_b", Decimal("0.001"))
    fastest = api.create_trunk(tenant, "fastest", "ST_c", 1000)
    stored = {
        r["id"]: r["max_cps"]
        for r in conn.execute("select id, max_cps from batchctl.trunks").fetchall()
    }
    assert stored == {half: Decimal("0.5"), slowest: Decimal("0.001"), fastest: Decimal("1000")}
    assert one_value(conn, "select max_cps = 0.5 from batchctl.trunks where id = %s", (half,))


BAD_TRUNKS = [
    # (name, livekit_trunk_id, max_cps, max_concurrent), what the message names
    (("", "ST_a", 5, None), 'name "": expected 1 to 63 letters'),
    ((" main", "ST_a", 5, None), 'name " main"'),
    (("a/b", "ST_a", 5, None), 'name "a/b"'),
    (("x" * 64, "ST_a", 5, None), "name "),
    ((None, "ST_a", 5, None), "name null"),
    (("main", "", 5, None), 'livekit_trunk_id "": expected a LiveKit SIP trunk id'),
    (("main", "ST a", 5, None), 'livekit_trunk_id "ST a"'),
    (("main", None, 5, None), "livekit_trunk_id null"),
    (("main", "ST_a", 0, None), "max_cps: expected calls per second from 0.001 to 1000, got 0"),
    (("main", "ST_a", -1, None), "max_cps: expected calls per second from 0.001 to 1000, got -1"),
    (("main", "ST_a", Decimal("0.0009"), None), "got 0.0009"),
    (("main", "ST_a", Decimal("1000.5"), None), "got 1000.5"),
    (("main", "ST_a", 5, 0), "max_concurrent: expected null (no cap of its own) or at least 1"),
    (("main", "ST_a", 5, -3), "max_concurrent: expected null"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_TRUNKS, ids=[n for _, n in BAD_TRUNKS])
def test_create_trunk_refuses_a_bad_setting_naming_it(
    api: SqlApi, conn: Conn, args: tuple[Any, ...], needle: str
) -> None:
    tenant = api.create_tenant()
    name, livekit_trunk_id, max_cps, max_concurrent = args
    rejected(
        conn,
        "BC001",
        lambda: api.create_trunk(tenant, name, livekit_trunk_id, max_cps, max_concurrent),
        needle,
    )
    assert one_value(conn, "select count(*) from batchctl.trunks") == 0


def test_create_trunk_refuses_a_name_the_tenant_uses(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    api.create_trunk(tenant, "main", "ST_a", 5)
    rejected(
        conn,
        "BC001",
        lambda: api.create_trunk(tenant, "main", "ST_b", 2),
        'trunk name "main": the tenant has a trunk of that name',
    )
    assert one_value(conn, "select count(*) from batchctl.trunks") == 1


# --- update_trunk ---------------------------------------------------------------------------


def test_update_trunk_changes_each_key_and_keeps_the_others(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5, 10)
    before = api.trunk_status(tenant, trunk)
    renamed = api.update_trunk(tenant, trunk, {"name": "primary"})
    assert (renamed["name"], renamed["livekit_trunk_id"], renamed["max_cps"]) == (
        "primary",
        "ST_a",
        5,
    )
    assert renamed["updated_at"] >= before["updated_at"]
    assert api.update_trunk(tenant, trunk, {"livekit_trunk_id": "ST_b"})["livekit_trunk_id"] == (
        "ST_b"
    )
    assert api.update_trunk(tenant, trunk, {"max_cps": 0.25})["max_cps"] == 0.25
    assert api.update_trunk(tenant, trunk, {"max_concurrent": 4})["max_concurrent"] == 4
    cleared = api.update_trunk(tenant, trunk, {"max_concurrent": None})
    assert cleared["max_concurrent"] is None
    assert cleared["name"] == "primary" and cleared["max_cps"] == 0.25
    row = one_row(conn, "select * from batchctl.trunks where id = %s", (trunk,))
    assert (row["name"], row["livekit_trunk_id"], row["max_cps"], row["max_concurrent"]) == (
        "primary",
        "ST_b",
        Decimal("0.25"),
        None,
    )
    # Everything at once; nothing at all changes nothing.
    both = api.update_trunk(
        tenant, trunk, {"name": "main", "max_cps": 2, "max_concurrent": 1, "livekit_trunk_id": "X"}
    )
    assert (both["name"], both["max_cps"], both["max_concurrent"], both["livekit_trunk_id"]) == (
        "main",
        2,
        1,
        "X",
    )
    assert api.update_trunk(tenant, trunk, {})["name"] == "main"


BAD_CHANGES = [
    ({"colour": "red"}, 'p_changes: unknown key "colour"'),
    ({"name": "x", "max_rate": 1}, 'unknown key "max_rate"'),
    ({"name": 5}, "name and livekit_trunk_id are strings"),
    ({"name": None}, "name and livekit_trunk_id are strings"),
    ({"livekit_trunk_id": ["ST_a"]}, "name and livekit_trunk_id are strings"),
    ({"max_cps": "5"}, "max_cps a number"),
    ({"max_cps": None}, "max_cps a number"),
    ({"max_concurrent": 1.5}, "max_concurrent an integer or null"),
    ({"max_concurrent": "3"}, "max_concurrent an integer or null"),
    ({"max_concurrent": -1}, "max_concurrent: expected null (no cap of its own) or at least 1"),
    ({"name": "bad/name"}, 'name "bad/name": expected'),
    ({"livekit_trunk_id": "ST a"}, 'livekit_trunk_id "ST a"'),
    ({"max_cps": 0}, "max_cps: expected calls per second from 0.001 to 1000, got 0"),
    ({"max_cps": 1001}, "got 1001"),
    ({"max_concurrent": 0}, "max_concurrent: expected null (no cap of its own) or at least 1"),
    ({"name": "backup"}, 'trunk name "backup": the tenant has a trunk of that name'),
    # A good key does not slip through beside a bad one.
    ({"max_cps": 2, "max_concurrent": 0}, "max_concurrent: expected null"),
]


@pytest.mark.parametrize(("changes", "needle"), BAD_CHANGES, ids=[n for _, n in BAD_CHANGES])
def test_update_trunk_refuses_naming_the_key_and_changes_nothing(
    api: SqlApi, conn: Conn, changes: dict[str, Any], needle: str
) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5, 10)
    api.create_trunk(tenant, "backup", "ST_b", 1)
    rejected(conn, "BC001", lambda: api.update_trunk(tenant, trunk, changes), needle)


@pytest.mark.parametrize("changes", ["[]", '"name"', "null"])
def test_update_trunk_wants_an_object(api: SqlApi, conn: Conn, changes: str) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5)
    rejected(
        conn,
        "BC001",
        lambda: conn.execute(
            "select batchctl.update_trunk(%s, %s, %s::jsonb)", (tenant, trunk, changes)
        ),
        "p_changes: expected an object",
    )


# --- trunk_status ---------------------------------------------------------------------------


def test_trunk_status_counts_calls_in_flight_started_lately_and_today_per_caller_id(
    api: SqlApi, conn: Conn
) -> None:
    """Calls on the trunk, by the claim's clock: in flight (claimed or live, as its cap counts
    them), started in the last second and minute, and per caller ID since midnight in the
    tenant's zone (New York: 04:00 UTC in June), counted per number across the tenant's trunks
    as its daily cap is."""
    tenant = api.create_tenant("acme", 5, "America/New_York")
    trunk = api.create_trunk(tenant, "main", "ST_a", 5)
    other = api.create_trunk(tenant, "backup", "ST_b", 5)
    x, y = "+13055550100", "+13055550101"
    assert api.add_caller_ids(tenant, trunk, [x, y], 50) == 2
    assert api.add_caller_ids(tenant, other, [x]) == 1
    now = ts("2026-06-10T12:00:00+00:00")

    def place(at: datetime, n: int, options: dict[str, object] | None = None) -> list[UUID]:
        pin(conn, at)
        api.create_batch(tenant, phones(n, int(at.timestamp()) % 1000), options)
        return api.dispatch_all()

    # Yesterday in New York (23:00), ended; then today: x, then y and x (the least used first).
    api.finish_call(place(ts("2026-06-10T03:00:00+00:00"), 1)[0])
    place(now - timedelta(seconds=30), 1)
    api.finish_call(place(now - timedelta(seconds=0.5), 2)[0])
    place(now - timedelta(seconds=0.2), 1, {"trunk": "backup"})  # x again, on the other trunk
    pin(conn, now)
    status = api.trunk_status(tenant, trunk)
    started = ("in_flight", "started_last_second", "started_last_minute")
    assert [status[k] for k in started] == [2, 2, 3]
    assert status["caller_ids"] == [
        {"number": x, "daily_cap": 50, "country": "US", "today": 3},
        {"number": y, "daily_cap": 50, "country": "US", "today": 1},
    ]
    theirs = api.trunk_status(tenant, other)
    assert [theirs[k] for k in started] == [1, 1, 1]
    assert theirs["caller_ids"] == [{"number": x, "daily_cap": None, "country": "US", "today": 3}]
    # A minute on, nothing was started lately; the day's counts stay.
    pin(conn, now + timedelta(minutes=1))
    later = api.trunk_status(tenant, trunk)
    assert (later["started_last_second"], later["started_last_minute"]) == (0, 0)
    assert [n["today"] for n in later["caller_ids"]] == [3, 1]
    # Past midnight in New York (04:00 UTC), a new day.
    pin(conn, ts("2026-06-11T04:00:01+00:00"))
    assert [n["today"] for n in api.trunk_status(tenant, trunk)["caller_ids"]] == [0, 0]


# --- add_caller_ids / remove_caller_ids -----------------------------------------------------


def test_add_caller_ids_checks_each_number_naming_it_and_adds_none(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5)
    message = rejected(
        conn,
        "BC001",
        lambda: api.add_caller_ids(tenant, trunk, ["+13055550100", "03055550100", "+44 20 7946"]),
        'p_numbers[2] "03055550100"; p_numbers[3] "+44 20 7946" not an E.164 number',
    )
    assert "p_numbers[1]" not in message
    rejected(conn, "BC001", lambda: api.add_caller_ids(tenant, trunk, []), "expected 1 to 10000")
    too_many = [f"+1305555{i:04d}" for i in range(10_001)]
    rejected(conn, "BC001", lambda: api.add_caller_ids(tenant, trunk, too_many), "got 10001")
    rejected(
        conn,
        "BC001",
        lambda: api.add_caller_ids(tenant, trunk, ["+13055550100"], 0),
        "p_daily_cap: expected null (no cap) or at least 1, got 0",
    )
    assert pool(conn, trunk) == []


def test_add_caller_ids_ignores_duplicates_and_places_each_number(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5)
    us, gb = "+13055550100", "+442079460000"
    assert api.add_caller_ids(tenant, trunk, [us, us, gb], 100) == 2  # a duplicate in the call
    # One the pool has already is left as it is, its cap too.
    assert api.add_caller_ids(tenant, trunk, [gb, "+4915112345678"], 7) == 1
    assert api.add_caller_ids(tenant, trunk, [us]) == 0
    assert pool(conn, trunk) == [
        {"phone": us, "daily_cap": 100, "country": "US", "local_prefix": "1305"},
        {"phone": gb, "daily_cap": 100, "country": "GB", "local_prefix": "44"},
        {"phone": "+4915112345678", "daily_cap": 7, "country": "DE", "local_prefix": "49"},
    ]
    # Another trunk of the tenant may present the same number (its own count and cap).
    other = api.create_trunk(tenant, "backup", "ST_b", 1)
    assert api.add_caller_ids(tenant, other, [us]) == 1
    assert api.trunk_status(tenant, other)["caller_ids"][0]["number"] == us


def test_remove_caller_ids_removes_what_the_pool_has(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_a", 5)
    other = api.create_trunk(tenant, "backup", "ST_b", 5)
    a, b = "+13055550100", "+13055550101"
    api.add_caller_ids(tenant, trunk, [a, b])
    api.add_caller_ids(tenant, other, [a])
    assert api.remove_caller_ids(tenant, trunk, [a, "+13055550199", "junk"]) == 1
    assert [r["phone"] for r in pool(conn, trunk)] == [b]
    assert [r["phone"] for r in pool(conn, other)] == [a]  # another trunk's pool is its own
    assert api.remove_caller_ids(tenant, trunk, []) == 0
    assert api.remove_caller_ids(tenant, trunk, [b]) == 1
    assert pool(conn, trunk) == []


# --- another tenant's trunk -----------------------------------------------------------------


def test_another_tenants_trunk_is_not_found_by_every_function(api: SqlApi, conn: Conn) -> None:
    mine, theirs = api.create_tenant("mine"), api.create_tenant("theirs")
    trunk = api.create_trunk(theirs, "main", "ST_a", 5)
    api.add_caller_ids(theirs, trunk, ["+13055550100"])

    def calls(on: UUID) -> dict[str, Callable[[], Any]]:
        """Each function taking a trunk, called with ``mine`` on the trunk ``on``."""
        return {
            "update_trunk": lambda: api.update_trunk(mine, on, {"name": "stolen"}),
            "trunk_status": lambda: api.trunk_status(mine, on),
            "add_caller_ids": lambda: api.add_caller_ids(mine, on, ["+13055550101"]),
            "remove_caller_ids": lambda: api.remove_caller_ids(mine, on, ["+13055550100"]),
        }

    for call in calls(trunk).values():
        rejected(conn, "BC002", call, f"trunk {trunk} not found")
    unknown = UUID(int=7)  # and a trunk nobody has
    for call in calls(unknown).values():
        rejected(conn, "BC002", call, f"trunk {unknown} not found")
    rejected(conn, "BC002", lambda: api.create_trunk(unknown, "main", "ST_a", 5), "not found")
    assert api.trunk_status(theirs, trunk)["name"] == "main"
    assert [r["phone"] for r in pool(conn, trunk)] == ["+13055550100"]
