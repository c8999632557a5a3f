"""pg_cron runs batchctl's sweep and prune, scheduled with the README's own statements, on a
PostgreSQL 15 cluster of this test's own (Debian's binaries and its postgresql-15-cron package,
through tests/helpers/pgcluster.py), and no daemon runs at all:

- the sweep job, scheduled by a login of batchctl_worker (what the README tells cron to use),
  fails a call stuck ringing past its batch's ringing_timeout_s and queues its room for hang-up;
- the prune job, scheduled by the owner (who ran the upgrade; prune is granted to nobody else),
  deletes a batch that finished more than 90 days ago with a settled report, and nothing newer.

pg_cron 1.4 runs jobs at minute granularity: both jobs share the first tick after they are
scheduled, so the test waits up to two ticks for their effects, then checks cron.job_run_details
for the runs that caused them. Without the package the test skips, naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row

from batchctl.migrate import upgrade
from invariants import assert_invariants
from packages import missing_package
from pgcluster import Cluster, cluster, debian_bin
from pgtools import set_calling_hours_aside
from polling import wait_until
from sqlapi import SqlApi, phones

Conn = psycopg.Connection[dict[str, Any]]

PACKAGE = "postgresql-15-cron"
DB = "batchctl_app"
SWEEPER = "batchctl_cron"  # a login of batchctl_worker, as a deployment would make for cron

# The README's statements, word for word (Scheduling the sweep, Retention).
SCHEDULE_SWEEP = "SELECT cron.schedule('batchctl-sweep', '* * * * *', 'SELECT batchctl.sweep()')"
SCHEDULE_PRUNE = (
    "SELECT cron.schedule('batchctl-prune', '* * * * *', $$SELECT batchctl.prune('90 days')$$)"
)

# The first minute tick after scheduling runs both; a second tick and some slack cover a tick
# that came while the launcher was still reading the new jobs.
TICKS_TIMEOUT_S = 150


def pg15_with_pg_cron() -> Path:
    """Debian's PostgreSQL 15 binaries, with its pg_cron package; else the test skips."""
    bin_dir = debian_bin(15)
    if bin_dir is None:
        missing_package("Debian's PostgreSQL 15 with pg_cron", PACKAGE)
    if not (bin_dir.parent / "lib" / "pg_cron.so").exists():
        missing_package("pg_cron for PostgreSQL 15", PACKAGE)
    return bin_dir


@pytest.fixture
def cron_server() -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster with pg_cron loaded, working in DB (cron.database_name), with
    batchctl upgraded there; stopped and deleted afterwards, also when the test fails."""
    conf = {"shared_preload_libraries": "'pg_cron'", "cron.database_name": f"'{DB}'"}
    with cluster(pg15_with_pg_cron(), conf) as pg:
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DB}")
            # The launcher found no database at start-up; the postmaster restarts it (1 s).
            wait_until(
                lambda: admin.execute(
                    "SELECT 1 FROM pg_stat_activity"
                    " WHERE backend_type = 'pg_cron launcher' AND datname = %s",
                    (DB,),
                ).fetchone(),
                timeout=30,
                what="the pg_cron launcher to run",
                details=pg.log_tail,
            )
        upgrade(pg.url(DB))
        set_calling_hours_aside(pg.url(DB))  # dials at any hour (tests/conftest.py)
        with psycopg.connect(pg.url(DB), autocommit=True) as owner:
            owner.execute("CREATE EXTENSION pg_cron")
            owner.execute(f"CREATE ROLE {SWEEPER} LOGIN IN ROLE batchctl_worker")
            owner.execute(f"GRANT USAGE ON SCHEMA cron TO {SWEEPER}")
        yield pg


def finished_batch(api: SqlApi, tenant: UUID, start: int) -> UUID:
    """A batch of two calls that ended, its report sent (settled)."""
    batch = api.create_batch(
        tenant, phones(2, start), {"report_to": ["ops@example.com"], "report_delay_s": 0}
    )
    while calls := api.dispatch_all():
        for call in calls:
            api.finish_call(call)
    claimed = api.claim_report()
    assert claimed is not None and claimed["batch_id"] == batch
    api.report_sent(batch)
    return batch


def rows_of(conn: Conn, batch: UUID) -> dict[str, int]:
    return {
        table: conn.execute(
            f"SELECT count(*) AS n FROM batchctl.{table} WHERE {key} = %s", (batch,)
        ).fetchone()["n"]  # type: ignore[index]
        for table, key in (("batches", "id"), ("reports", "batch_id"),
                           ("batch_entries", "batch_id"), ("call_logs", "batch_id"),
                           ("events", "batch_id"))
    }  # fmt: skip


def test_pg_cron_times_out_a_stuck_call_and_prunes_an_old_batch_with_no_daemon(
    cron_server: Cluster,
) -> None:
    pg = cron_server
    with psycopg.connect(pg.url(DB), autocommit=True, row_factory=dict_row) as conn:
        api = SqlApi(conn)
        tenant = api.create_tenant("acme", 1)

        # Two finished batches; the older one's finished_at moved back 100 days (the triggers
        # refuse any change to a finished batch, so as the superuser with them off).
        old = finished_batch(api, tenant, 0)
        recent = finished_batch(api, tenant, 10)
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "UPDATE batchctl.batches SET finished_at = finished_at - %s WHERE id = %s",
                (timedelta(days=100), old),
            )
        assert all(rows_of(conn, old).values())

        # A call claimed, acknowledged and ringing, in a batch that gives ringing 1 s.
        stuck_batch = api.create_batch(tenant, phones(1, 20), {"ringing_timeout_s": 1})
        [call] = api.dispatch_all()
        api.report(call, "ringing")
        # Past its timeout by the database's clock before the jobs exist, so that their first
        # tick finds it stuck (the sweep's own test).
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM batchctl.stuck_calls('ringing', 'ringing_timeout_s', now())"
                " WHERE call_id = %s",
                (call,),
            ).fetchone(),
            timeout=10,
            what="the call to be past its ringing timeout",
        )

        scheduled_at = conn.execute("SELECT now() AS t").fetchone()["t"]  # type: ignore[index]
        with psycopg.connect(pg.url(DB, user=SWEEPER), autocommit=True) as sweeper:
            sweeper.execute(SCHEDULE_SWEEP)
        conn.execute(SCHEDULE_PRUNE)
        jobs = {
            row["jobname"]: row
            for row in conn.execute("SELECT jobname, username, database FROM cron.job")
        }
        assert jobs == {
            "batchctl-sweep": {"jobname": "batchctl-sweep", "username": SWEEPER, "database": DB},
            "batchctl-prune": {"jobname": "batchctl-prune", "username": "postgres", "database": DB},
        }

        def call_row() -> dict[str, Any]:
            row = conn.execute(
                "SELECT status::text, detail ->> 'error' AS error FROM batchctl.call_logs"
                " WHERE id = %s",
                (call,),
            ).fetchone()
            assert row is not None
            return row

        def runs() -> list[dict[str, Any]]:
            return conn.execute(
                "SELECT j.jobname, d.status, d.return_message, d.username, d.database,"
                "       d.start_time, d.end_time"
                "  FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
                " WHERE d.status IN ('succeeded', 'failed')"  # ended (a next tick may be on)
                " ORDER BY d.runid"
            ).fetchall()

        # Their effects, and the runs that caused them recorded as ended (pg_cron writes that
        # after the job's commit).
        wait_until(
            lambda: (
                call_row()["status"] != "ringing"
                and rows_of(conn, old)["batches"] == 0
                and {r["jobname"] for r in runs()} == set(jobs)
            ),
            timeout=TICKS_TIMEOUT_S,
            interval=0.5,
            what="pg_cron's sweep to time the call out and its prune to delete the old batch",
            details=lambda: f"call {call_row()}, runs {runs()}\n{pg.log_tail()}",
        )

        # The sweep: failed for ringing too long, in a run of the sweep job, its room queued
        # for hang-up (the daemon, sweeping or not, hangs it up).
        assert call_row() == {"status": "failed", "error": "ringing_timeout"}
        done = runs()
        assert {(r["jobname"], r["status"], r["username"], r["database"]) for r in done} == {
            ("batchctl-sweep", "succeeded", SWEEPER, DB),
            ("batchctl-prune", "succeeded", "postgres", DB),
        }, done
        failed = conn.execute(
            "SELECT reason, at FROM batchctl.events"
            " WHERE object = 'call' AND object_id = %s AND to_status = 'failed'",
            (call,),
        ).fetchone()
        assert failed is not None and failed["reason"] == "sweep: ringing_timeout"
        # After the jobs were scheduled, and by the end of a sweep job's run (its start_time is
        # the launcher's, taken around when the job's transaction starts: no bound).
        assert scheduled_at < failed["at"], (scheduled_at, failed)
        assert any(
            r["jobname"] == "batchctl-sweep" and failed["at"] <= r["end_time"] for r in done
        ), (failed, done)
        hangup = conn.execute(
            "SELECT reason FROM batchctl.hangups WHERE call_log_id = %s", (call,)
        ).fetchone()
        assert hangup == {"reason": "ringing_timeout"}
        assert api.batch_status(tenant, stuck_batch)["finished_at"] is not None

        # The prune: the old batch gone with everything that was its own, the recent one kept.
        assert rows_of(conn, old) == dict.fromkeys(rows_of(conn, old), 0)
        assert all(rows_of(conn, recent).values())

        assert_invariants(conn)
