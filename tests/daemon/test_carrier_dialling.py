"""Carrier-aware dialling end to end (docs/trunks.md): two daemon processes, the simulator
playing the carrier and counting what starts on each trunk, a real PostgreSQL. The pace, the
caps per trunk and per caller ID, local presence and the carrier's back-off hold at the
carrier, whichever daemon dials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchctl.sim import Scenario
from campaigns import QUICK_CALLS
from invariants import assert_invariants
from pgtools import one_row
from polling import wait_until
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from sqlapi import SqlApi, phones

# Agents dial the moment they are dispatched: the start at the carrier is the daemon's slot.
PROMPT_CALLS = {**QUICK_CALLS, "join_delay_s": 0, "outcomes": {"ended": 1}}
US_305, US_212, UK, DE = "+13055550100", "+12125550100", "+442079460100", "+493012345600"


def two_daemons(db_url: str, sim_url: str, tmp_path: Path, *extra: str) -> list[Service]:
    return [
        Service(daemon_command(db_url, sim_url, *extra), tmp_path / f"daemon{i}.log")
        for i in (1, 2)
    ]


def entry_rows(api: SqlApi) -> dict[str, dict[str, Any]]:
    rows = api.conn.execute(
        """select e.to_phone, e.status::text, e.attempts, e.carrier_refusals, c.caller_id
             from batchctl.batch_entries e
             left join batchctl.call_logs c on c.tenant_id = e.tenant_id and c.id = e.call_log_id"""
    ).fetchall()
    return {r["to_phone"]: r for r in rows}


def test_two_daemons_keep_each_trunks_pace_caps_and_local_caller_ids(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    paced = api.create_tenant("paced", 20)
    api.create_trunk(paced, "main", "ST_main", 3)  # the default
    api.create_trunk(paced, "slow", "ST_slow", 2, 2)
    on_main = api.create_batch(paced, phones(18), {"wave_size": 20})
    on_slow = api.create_batch(paced, phones(10, 100), {"trunk": "slow", "wave_size": 20})

    capped = api.create_tenant("capped", 10)
    capped_trunk = api.create_trunk(capped, "main", "ST_capped", 20)
    api.add_caller_ids(capped, capped_trunk, ["+13055559001", "+13055559002"], 3)
    api.create_batch(capped, phones(9, 200))

    local = api.create_tenant("local", 10)
    local_trunk = api.create_trunk(local, "main", "ST_local", 20)
    api.add_caller_ids(local, local_trunk, [US_305, US_212, UK, DE])
    callees = ["+13055551234", "+12125551234", "+442079461234", "+493055551234"]
    local_batch = api.create_batch(local, [{"to_phone": p} for p in callees])

    with run_simulator(db_url, Scenario.from_dict(PROMPT_CALLS)) as sim:
        daemons = two_daemons(db_url, sim.url, tmp_path)
        with running(*daemons):
            wait_finished(api.conn, [on_main, on_slow, local_batch], timeout=90, services=daemons)
            # Six calls on the capped pool (3 per number), then the rest wait for tomorrow.
            held = """select count(*) filter (where e.status = 'completed') as done,
                             count(*) filter (where e.status = 'queued' and exists (
                                 select from batchctl.events v
                                  where v.object = 'entry' and v.object_id = e.id
                                    and v.reason = 'caller_ids_at_cap')) as waiting
                        from batchctl.batch_entries e where e.tenant_id = %s"""
            wait_until(
                lambda: tuple(one_row(api.conn, held, (capped,)).values()) == (6, 3),
                60,
                what="6 calls on the capped pool, 3 waiting",
            )
        stats = sim.stats()
    # Measured at the carrier, over every one-second window of the run.
    assert stats.starts_per_window("ST_main") <= 3
    assert stats.starts_per_window("ST_slow") <= 2
    assert stats.starts_per_window("ST_main") >= 2, "the pace is the trunk's, not slower"
    per_caller = stats.calls_per_caller_id()
    assert (per_caller["+13055559001"], per_caller["+13055559002"]) == (3, 3)
    chosen = {s.phone: s.caller_id for s in stats.carrier_starts if s.accepted}
    assert [chosen[p] for p in callees] == [US_305, US_212, UK, DE]
    entries = entry_rows(api)
    assert [entries[p]["caller_id"] for p in callees] == [US_305, US_212, UK, DE]
    assert {s.trunk_id for s in stats.carrier_starts} == {
        "ST_main", "ST_slow", "ST_capped", "ST_local"
    }  # fmt: skip
    assert_one_dispatch_per_attempt(sim, api.conn)
    assert_invariants(api.conn)


def test_a_carrier_slower_than_its_trunk_says_is_followed_without_failing_an_entry(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """The trunk says 5 CPS, its carrier takes 2 and answers the rest with SIP 503 (sip mode:
    the daemon dials). The trunk backs off at each refusal, every entry completes with one
    attempt used, and the calls the carrier took never passed its rate."""
    tenant = api.create_tenant("acme", 10)
    trunk = api.create_trunk(tenant, "main", "ST_strict", 5)
    api.add_caller_ids(tenant, trunk, ["+13055559001"])
    batch = api.create_batch(tenant, phones(16), {"wave_size": 10})
    scenario = Scenario.from_dict(
        {**PROMPT_CALLS, "mode": "sip", "carrier": {"trunks": {"ST_strict": {"max_cps": 2}}}}
    )
    with run_simulator(db_url, scenario) as sim:
        daemons = two_daemons(
            db_url, sim.url, tmp_path, "--dispatch-mode", "sip", "--sip-trunk-id", "ST_fallback"
        )
        with running(*daemons):
            wait_finished(api.conn, [batch], timeout=120, services=daemons)
        stats = sim.stats()
    refused = [s for s in stats.carrier_starts if not s.accepted]
    accepted = [s for s in stats.carrier_starts if s.accepted]
    assert refused, "the carrier refused some calls"
    assert len(accepted) == 16 and stats.starts_per_window("ST_strict") <= 2
    assert {s.caller_id for s in stats.carrier_starts} == {"+13055559001"}
    entries = entry_rows(api).values()
    assert {e["status"] for e in entries} == {"completed"}
    assert sum(e["carrier_refusals"] for e in entries) == len(refused)
    assert {e["attempts"] - e["carrier_refusals"] for e in entries} == {1}
    assert api.batch_status(tenant, batch)["failed"] == 0
    # Settled near the carrier's rate: well above what the back-off alone would allow.
    span = max(s.at for s in accepted) - min(s.at for s in accepted)
    assert 15 / span >= 1.0, f"16 calls in {span:.1f} s"
    assert_invariants(api.conn)


def test_long_calls_keep_their_trunks_pace_without_a_wake_up(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """No call ends to wake the daemon and it polls every 5 s; a claim takes a second's worth of
    the trunk's slots, so the daemon comes back for the next ones on its own: 12 calls at 4 CPS
    start in about 3 s, not one second's worth per poll."""
    tenant = api.create_tenant("acme", 50)
    api.create_trunk(tenant, "main", "ST_main", 4)
    api.create_batch(tenant, phones(12), {"wave_size": 50})
    scenario = Scenario.from_dict({**PROMPT_CALLS, "call_length_s": 30})
    with run_simulator(db_url, scenario) as sim:
        command = daemon_command(db_url, sim.url, "--poll-interval", "5")
        daemon = Service(command, tmp_path / "daemon.log")
        with running(daemon):
            wait_until(
                lambda: len(sim.stats().carrier_starts) == 12, 30, what="12 calls started",
                details=daemon.tail,
            )  # fmt: skip
        stats = sim.stats()
    starts = sorted(s.at for s in stats.carrier_starts)
    assert starts[-1] - starts[0] < 4.5, "11 gaps of 0.26 s; a poll's worth each would be 10 s"
    assert stats.starts_per_window("ST_main") <= 4
