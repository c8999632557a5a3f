"""The daemon against a LiveKit that loses its replies and leads it cannot read, end to end: real
daemon processes, the simulator through the real livekit-api client, a real PostgreSQL.

- A tenant's cap holds at LiveKit: the simulator's own count of live calls per tenant never
  passes it, when CreateDispatch's replies stall past the daemon's timeout and when a daemon
  is killed right after CreateDispatch (the entry keeps its slot until a claim of it adopts the
  dispatch LiveKit made).
- One tenant's bad lead stops no other tenant: the entry the daemon cannot read ends failed,
  with the reason, and every other batch runs to its end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from batchctl.sim import Scenario
from invariants import assert_invariants
from polling import wait_until
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from sqlapi import SqlApi, phones

# Calls long enough to outlive a 2 s lease: a slot given back too early shows as two live calls.
LONG_CALLS: dict[str, Any] = {
    "mode": "agent",
    "outcomes": {"ended": 1},
    "join_delay_s": [0.01, 0.02],
    "ring_time_s": [0.05, 0.1],
    "call_length_s": [3.0, 3.5],
}


def entries(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(
        """select to_phone, status::text, dispatch_failures, last_error
             from batchctl.batch_entries order by to_phone"""
    ).fetchall()


def test_stalled_dispatch_replies_never_take_a_tenant_past_its_cap_at_livekit(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """Every CreateDispatch is carried out but its reply comes after the daemon's timeout: each
    entry keeps its slot until its re-claim finds the room and adopts it."""
    scenario = Scenario.from_dict(
        {**LONG_CALLS, "dispatch_faults": {"stall_rate": 1, "stall_s": 1.0}}
    )
    tenant = api.create_tenant("acme", 1)
    batches = [api.create_batch(tenant, phones(1, 10 * i)) for i in range(3)]
    with run_simulator(db_url, scenario) as sim:
        daemon = Service(
            daemon_command(db_url, sim.url, "--livekit-timeout", "0.3"), tmp_path / "daemon.log"
        )
        with running(daemon):
            wait_finished(api.conn, batches, timeout=90, services=[daemon])
        stats = sim.stats()
        assert_one_dispatch_per_attempt(sim, api.conn)
    assert stats.peak_per_tenant[str(tenant)] == 1, stats.peak_per_tenant
    assert [(e["status"], e["dispatch_failures"]) for e in entries(api.conn)] == [
        ("completed", 1)
    ] * 3
    assert_invariants(api.conn)


def test_a_daemon_killed_after_createdispatch_never_takes_a_tenant_past_its_cap(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """Cap 1, two batches (the claim's fairness would serve the other one next). A daemon sends
    CreateDispatch for the first batch's entry and is killed before it hears back; its call is
    live at LiveKit for seconds. When the lease runs out the entry keeps the slot, and the next
    daemon's claim adopts its dispatch before the second batch gets a call."""
    scenario = Scenario.from_dict(
        {**LONG_CALLS, "dispatch_faults": {"stall_rate": 1, "stall_s": 1.0}}
    )
    tenant = api.create_tenant("acme", 1)
    first = api.create_batch(tenant, phones(1))
    second = api.create_batch(tenant, phones(1, 10))
    with run_simulator(db_url, scenario) as sim:
        patient = Service(
            daemon_command(db_url, sim.url, "--livekit-timeout", "30"), tmp_path / "killed.log"
        ).start()
        wait_until(lambda: sim.stats().requests.get("CreateDispatch", 0) >= 1, timeout=30,
                   what="the first CreateDispatch", details=patient.tail)  # fmt: skip
        patient.kill()
        survivor = Service(
            daemon_command(db_url, sim.url, "--livekit-timeout", "0.3"), tmp_path / "survivor.log"
        )
        with running(survivor):
            wait_finished(api.conn, [first, second], timeout=90, services=[survivor])
        stats = sim.stats()
        assert_one_dispatch_per_attempt(sim, api.conn)
    assert stats.peak_per_tenant[str(tenant)] == 1, stats.peak_per_tenant
    assert {e["status"] for e in entries(api.conn)} == {"completed"}
    adopted = api.conn.execute(
        """select count(*) as n from batchctl.events
            where object = 'entry' and reason = 'sweep: lease_expired'"""
    ).fetchone()
    assert adopted == {"n": 1}, "the killed daemon's claim came back through its lease"
    assert_invariants(api.conn)


def test_a_lead_the_daemon_cannot_read_fails_alone(
    db_url: str, api: SqlApi, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """A context nested 10,000 levels deep (stored before intake had bounds, or by the owner
    by hand) cannot be decoded in Python: that entry fails with the reason, at once; the same
    tenant's other entry and another tenant's batch run to their end."""
    poisoned_tenant = api.create_tenant("poisoned", 2)
    healthy_tenant = api.create_tenant("healthy", 2)
    poisoned_batch = api.create_batch(poisoned_tenant, phones(2))
    healthy_batch = api.create_batch(healthy_tenant, phones(4, 100))
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    conn.execute(
        "update batchctl.batch_entries set context = %s::jsonb where to_phone = %s",
        (deep, phones(1)[0]["to_phone"]),
    )
    scenario = Scenario.from_dict({**LONG_CALLS, "call_length_s": [0.02, 0.05]})
    with run_simulator(db_url, scenario) as sim:
        daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
        with running(daemon):
            wait_finished(conn, [poisoned_batch, healthy_batch], timeout=60, services=[daemon])
    by_phone = {e["to_phone"]: e for e in entries(conn)}
    poisoned = by_phone.pop(phones(1)[0]["to_phone"])
    assert (poisoned["status"], poisoned["dispatch_failures"]) == ("failed", 1)
    assert poisoned["last_error"].startswith("lead data cannot be read: RecursionError")
    assert {e["status"] for e in by_phone.values()} == {"completed"}
    assert api.batch_status(healthy_tenant, healthy_batch)["completed"] == 4
    assert "Traceback" not in daemon.log.read_text()
