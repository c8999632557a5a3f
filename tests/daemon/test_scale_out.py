"""Scale-out (issue 6): daemons on several hosts need nothing but the database. Four daemon
processes share one PostgreSQL and one LiveKit (the simulator) and keep every promise one daemon
keeps; cron firing `batchctl sweep` on every host runs one sweep at a time; a daemon with no cron
runs the sweep on its own timer."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any
from uuid import UUID

import psycopg

from batchctl.sim import Scenario
from campaigns import Plan
from clitools import batchctl_command
from concurrent_calls import connect
from pgtools import one_row
from polling import wait_until
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from sqlapi import SqlApi, phones

# Calls over in 0.1-0.3 s: each slot of a tenant makes ~20 calls, the run takes seconds.
SHORT_CALLS = {
    "mode": "agent",
    "seed": 17,
    "join_delay_s": [0.005, 0.02],
    "ring_time_s": [0.02, 0.06],
    "call_length_s": [0.08, 0.25],
}


@dataclass(frozen=True)
class Sample:
    """Per tenant, at one moment (one statement, so one snapshot): entries in flight (running
    or dispatched, what the caps count) and entries queued."""

    in_flight: dict[UUID, int]
    queued: dict[UUID, int]


class Sampler:
    """Samples the entries of every tenant from a connection of its own, every 10 ms or so,
    until stopped: the test's view of the caps from outside the daemons."""

    QUERY = """
        select tenant_id,
               count(*) filter (where status in ('running', 'dispatched'))::int as in_flight,
               count(*) filter (where status = 'queued')::int as queued
          from batchctl.batch_entries group by tenant_id"""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler")

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with connect(self.db_url) as conn:
            while not self._stop.is_set():
                rows = conn.execute(self.QUERY).fetchall()
                self.samples.append(
                    Sample(
                        {r["tenant_id"]: r["in_flight"] for r in rows},
                        {r["tenant_id"]: r["queued"] for r in rows},
                    )
                )
                self._stop.wait(0.01)


def claims_per_worker(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Entries each worker claimed: claim_entries records its worker in the events' reason."""
    rows = conn.execute(
        """select substr(reason, length('claim_entries: ') + 1) as worker, count(*)::int as n
             from batchctl.events
            where object = 'entry' and to_status = 'running' and reason like 'claim_entries: %'
            group by 1"""
    ).fetchall()
    return {r["worker"]: r["n"] for r in rows}


def test_four_daemons_share_four_tenants_within_caps_fairly_and_never_dial_twice(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    caps = {"a": 2, "b": 3, "c": 5, "d": 8}
    tenants = {name: api.create_tenant(name, cap) for name, cap in caps.items()}
    retry = {"retry_on": ["busy", "no_answer"], "max_attempts": 2, "retry_delay_s": 0}
    # About 20 calls per slot for every tenant, so a fair share keeps all four busy until
    # near the end. Tenant d uploaded its list twice: each number is called twice, never at
    # once, from two batches.
    plan: Plan = [
        ("a", phones(40, 0), {}),
        ("b", phones(30, 1000), {}),
        ("b", phones(30, 1100), {"dispatch_mode": "wave", "wave_size": 3}),
        ("c", phones(100, 2000), retry),
        ("d", phones(80, 3000), {}),
        ("d", phones(80, 3000), {"wave_size": 5}),
    ]
    batches = [
        api.create_batch(tenants[t], rows, {**options, "report_delay_s": 0})
        for t, rows, options in plan
    ]
    workers = [f"host-{i}:scale-out" for i in range(4)]
    with run_simulator(db_url, Scenario.from_dict(SHORT_CALLS)) as sim:
        daemons = [
            Service(daemon_command(db_url, sim.url, "--worker", w), tmp_path / f"{w}.log")
            for w in workers
        ]
        with Sampler(db_url) as sampler, running(*daemons):
            wait_finished(api.conn, batches, timeout=60, services=daemons)
        assert_one_dispatch_per_attempt(sim, api.conn)
        stats = sim.stats()

    statuses = api.conn.execute(
        "select status::text, count(*)::int as n from batchctl.batch_entries group by 1"
    ).fetchall()
    assert {r["status"] for r in statuses} <= {"completed", "failed", "declined"}, statuses
    # Caps: every sample from outside, and every instant at LiveKit.
    for name, tenant in tenants.items():
        seen = max(s.in_flight.get(tenant, 0) for s in sampler.samples)
        assert seen <= caps[name], (name, seen)
        assert stats.peak_per_tenant[str(tenant)] <= caps[name], (name, stats.peak_per_tenant)
    # Phone ranges differ between tenants, so per number is per tenant and number here.
    assert max(stats.peak_per_phone.values()) == 1, "a number was on two calls at once"
    assert stats.live_calls == 0
    claims = claims_per_worker(api.conn)
    assert set(claims) == set(workers), claims
    # Each daemon also sweeps every 0.3 s (services.FAST): four sweep timers race the claims
    # and reports, and a deadlock or a failing sweep would be logged as a failed step.
    for daemon in daemons:
        assert "step failed" not in daemon.log.read_text(), daemon.tail()

    # Fair share. While every tenant still has queued work, each should hold its cap: the
    # share of its cap in flight, averaged over the samples of that stretch. The time a slot
    # spends empty between a call and the next claim (a NOTIFY, a claim, a CreateDispatch) is
    # the same for every tenant and grows on a busy machine, so the absolute level is only
    # required to be a majority, and the tenants are compared with each other: a tenant left
    # behind (starved by the claim order, or its slots taken by another) falls well under the
    # others; scheduling noise moves them all together.
    busy = [
        s
        for s in sampler.samples
        if all(s.queued.get(t, 0) > 0 for t in tenants.values()) and sum(s.in_flight.values()) != 0
    ]
    assert len(busy) >= 20, f"too few samples while all tenants had work: {len(busy)}"
    held = {
        name: mean(s.in_flight.get(tenant, 0) / caps[name] for s in busy)
        for name, tenant in tenants.items()
    }
    assert min(held.values()) >= 0.5, held
    assert min(held.values()) >= 0.6 * max(held.values()), held


def test_cron_on_every_host_runs_one_sweep_the_others_skip_at_once(
    db_url: str, api: SqlApi
) -> None:
    """`batchctl sweep` started at once on six hosts while the leases of a dead daemon's claims
    have run out: one sweep re-queues them, the other five report that one was running and exit
    without waiting. The SQL side of concurrent sweeps (two at once never double count, a sweep
    in an open transaction makes another skip) is in tests/sql/test_concurrency.py; this is cron's
    view, from separate processes, while one sweep is midway."""
    tenant = api.create_tenant("acme", 20)
    batch = api.create_batch(tenant, phones(12))
    assert len(api.claim("dead-host:1", limit=12, lease_seconds=1)) == 12
    wait_until(
        lambda: one_row(
            api.conn, "select now() > max(lease_expires_at) as over from batchctl.batch_entries"
        )["over"],
        timeout=5,
        what="the leases to run out",
    )
    command = batchctl_command(db_url, "sweep", "--json")
    with connect(db_url) as holder:
        with holder.transaction():
            # Whichever sweep takes the sweep lock first stalls on this batch's lock, midway,
            # so the others surely meet a sweep in progress.
            holder.execute("select batchctl.lock_batches(%s)", ([batch],))
            sweeps = [
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(6)
            ]
            # Five exit while the first still stalls under the sweep lock: none of them waited
            # for it.
            wait_until(
                lambda: sum(p.poll() is not None for p in sweeps) == 5,
                timeout=30,
                interval=0.05,
                what="five sweeps to skip",
            )
        outputs = [p.communicate(timeout=10) for p in sweeps]
    assert [p.returncode for p in sweeps] == [0] * 6, outputs
    results = [json.loads(out) for out, _ in outputs]
    done = [r for r in results if not r.get("skipped")]
    assert len(done) == 1 and done[0]["leases_expired"] == 12, results
    assert results.count({"skipped": True}) == 5, results
    requeued = one_row(
        api.conn,
        """select count(*)::int as n, count(distinct object_id)::int as entries
             from batchctl.events
            where object = 'entry' and from_status = 'running' and to_status = 'queued'""",
    )
    assert (requeued["n"], requeued["entries"]) == (12, 12), "each entry re-queued once"
    assert api.sweep()["leases_expired"] == 0


def test_a_daemon_without_cron_times_out_an_unanswered_call_on_its_own_timer(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """No cron: the daemon's --sweep-every timer is what times out a call nobody picks up. A
    daemon with the timer off (--sweep-every 0, as when cron runs the sweep) leaves the call
    stuck past its pickup timeout; one with the timer re-dispatches it, and times the second
    attempt out too, failing the entry; each stuck room is hung up."""
    never_joins = Scenario.from_dict({**SHORT_CALLS, "join_delay_s": 600})
    tenant = api.create_tenant("acme", 1)
    batch = api.create_batch(tenant, phones(1), {"pickup_timeout_s": 1, "max_retries": 1})
    overdue = """select count(*)::int as n
                   from batchctl.stuck_calls('in_queue', 'pickup_timeout_s', now())"""
    with run_simulator(db_url, never_joins) as sim:
        cron_only = Service(
            daemon_command(db_url, sim.url, "--sweep-every", "0"), tmp_path / "cron-only.log"
        )
        with running(cron_only):
            wait_until(lambda: one_row(api.conn, overdue)["n"], timeout=10, what="pickup overdue")
            time.sleep(1.0)  # several of its poll rounds: a sweep, if it ran one, would act now
            waiting = api.conn.execute("select status::text from batchctl.call_logs").fetchall()
            assert waiting == [{"status": "in_queue"}], "nobody swept: the first call still waits"
        timed = Service(
            daemon_command(db_url, sim.url, "--sweep-every", "0.5"), tmp_path / "timed.log"
        )
        with running(timed):
            wait_finished(api.conn, [batch], timeout=20, services=[timed])
        assert_one_dispatch_per_attempt(sim, api.conn)
        stats = sim.stats()
    entry = api.conn.execute(
        "select status::text, last_error, retry_count from batchctl.batch_entries"
    ).fetchone()
    assert entry == {"status": "failed", "last_error": "max_retries_exceeded", "retry_count": 1}
    calls = api.conn.execute(
        "select room_name, status::text, detail ->> 'error' as error from batchctl.call_logs"
    ).fetchall()
    assert [(c["status"], c["error"]) for c in calls] == [("failed", "pickup_timeout")] * 2
    sweeps = one_row(
        api.conn,
        """select count(*)::int as n from batchctl.events
            where object = 'call' and reason like 'sweep%'""",
    )
    assert sweeps["n"] == 2, "both calls were failed by a sweep"
    assert {d.room for d in stats.room_deletions} == {c["room_name"] for c in calls}
    assert stats.live_calls == 0
