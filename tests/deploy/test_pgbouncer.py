"""batchctl behind a real PgBouncer in transaction pooling mode (Debian's 1.18 in CI): a whole
campaign with the daemon's pool (and the voice agent's) going through it, tenant identity that
does not leak between clients sharing one server connection, and prepared statements, which
PgBouncer before 1.21 does not track (batchctl's connections therefore never prepare).

Skips, naming the package, where `pgbouncer` is not installed (tests/helpers/pgbouncer.py)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from batchctl.conninfo import conninfo_params
from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.auth import Token
from batchctl.dashboard.threaded import run_dashboard
from batchctl.database import async_pool, connect
from batchctl.sim import Scenario
from campaigns import QUICK_CALLS, Plan, assert_calls_as_planned, calls_by_phone
from pgbouncer import PgBouncer, pgbouncer_version, require_pgbouncer, running_pgbouncer
from services import Service, daemon_command, running, wait_finished
from simulator import assert_one_dispatch_per_attempt, run_simulator
from smtp_sink import SmtpSink
from sqlapi import SqlApi, phones
from tenancy import RELATIONS, populate_tenant, tenant_ids_in
from tenant_logins import login_role
from webclient import WebClient


def dbname(url: str) -> str:
    return conninfo_params(url)["dbname"]


def backend_pid(conn: psycopg.Connection[Any]) -> int:
    """The server process behind ``conn``'s statement: through PgBouncer, whichever server
    connection it lent the client for it."""
    row = conn.execute("select pg_backend_pid() as pid").fetchone()
    assert row is not None
    return int(row["pid"] if isinstance(row, dict) else row[0])


@contextmanager
def clients(url: str, n: int) -> Iterator[list[psycopg.Connection[Any]]]:
    """``n`` connections as batchctl makes them (batchctl.database.connect), rows as dicts."""
    with ExitStack() as stack:
        conns = [stack.enter_context(connect(url)) for _ in range(n)]
        for conn in conns:
            conn.row_factory = dict_row
        yield conns


# --- a campaign


@pytest.mark.parametrize("listen", ["direct", "poll-only"])
def test_a_campaign_runs_with_the_pools_through_pgbouncer(
    db_url: str, pg_server_url: str, api: SqlApi, sink: SmtpSink, tmp_path: Path, listen: str
) -> None:
    """The daemon's pool and the voice agent's (the simulator's) go through PgBouncer, two
    server connections for their up to 18 clients; the daemon's LISTEN connection is direct
    (--listen-url), or there is none (--no-listen: it polls). Every entry ends as its calls
    did, one dispatch per attempt, caps held, the report built and mailed through the pooler."""
    scenario = Scenario.from_dict({**QUICK_CALLS, "seed": 17})
    caps = {"small": 2, "large": 4}
    tenants = {name: api.create_tenant(name, cap) for name, cap in caps.items()}
    retry = {"retry_on": ["busy", "no_answer"], "max_attempts": 2, "retry_delay_s": 0}
    plan: Plan = [
        ("small", phones(30, 0), {}),
        ("large", phones(30, 100), {"wave_size": 3}),
        ("large", phones(30, 200), {**retry, "report_to": ["ops@example.com"]}),
    ]
    batches = {
        api.create_batch(tenants[t], rows, {**o, "report_delay_s": 0}): (rows, o)
        for t, rows, o in plan
    }
    listening = ("--listen-url", db_url) if listen == "direct" else ("--no-listen",)
    smtp = ("--smtp-host", "127.0.0.1", "--smtp-port", str(sink.port))
    database = dbname(db_url)
    with running_pgbouncer(pg_server_url, pool_size=2, log=tmp_path / "pgbouncer.log") as bouncer:
        pooled = bouncer.url(database)
        with run_simulator(pooled, scenario) as sim:
            daemon = Service(
                daemon_command(pooled, sim.url, *listening, *smtp), tmp_path / "daemon.log"
            )
            with running(daemon):
                wait_finished(api.conn, list(batches), timeout=90, services=[daemon])
                # The report loop polls every 10 s when nothing wakes it (--no-listen).
                (mail,) = sink.wait_for(1, timeout=30)
            stats = sim.stats()
            assert_calls_as_planned(api.conn, scenario, batches)
            assert_one_dispatch_per_attempt(sim, api.conn)
        through = bouncer.stats(database)
        servers = bouncer.servers(database)
    for name, tenant in tenants.items():
        assert stats.peak_per_tenant[str(tenant)] <= caps[name], stats.peak_per_tenant
    assert max(stats.peak_per_phone.values()) == 1
    assert stats.live_calls == 0
    assert mail.recipients == ["ops@example.com"]
    # It all went through PgBouncer: at least a claim and a mark_dispatched per call, on no
    # more than the two server connections it may open.
    attempts = sum(map(len, calls_by_phone(api.conn).values()))
    assert through["total_xact_count"] > 2 * attempts, through
    assert 1 <= len(servers) <= 2, servers
    assert "prepared statement" not in daemon.log.read_text()


# --- tenant identity on shared server connections


def test_bound_logins_sharing_server_connections_each_see_only_their_own_tenant(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """Three clients of each of two tenants' bound logins, their statements interleaved, with a
    pool of one server connection per login: each client sees its own tenant's rows in every
    table and view, and another tenant's batch is "not found", also after it (or a client
    before it on the same server connection) set the other tenant for the session.

    PgBouncer pools by (database, login): a server connection logged in as one login is never
    lent to a client of another, which is why a binding cannot leak."""
    a, b = populate_tenant(api, "tenant-a", 0), populate_tenant(api, "tenant-b", 100)
    with login_role(api.conn, a["tenant"]) as alice, login_role(api.conn, b["tenant"]) as bob:
        own = {alice: a, bob: b}
        other = {alice: b, bob: a}
        log = tmp_path / "pgbouncer.log"
        with (
            running_pgbouncer(pg_server_url, {alice: "", bob: ""}, pool_size=1, log=log) as bouncer,
            clients(bouncer.url(dbname(db_url), alice), 3) as alices,
            clients(bouncer.url(dbname(db_url), bob), 3) as bobs,
        ):
            turns = [(alice, c) for c in alices] + [(bob, c) for c in bobs]
            turns *= 4
            random.Random(5).shuffle(turns)
            pids: dict[str, set[int]] = {alice: set(), bob: set()}
            for role, client in turns:
                pids[role].add(backend_pid(client))
                for relation in RELATIONS:
                    assert tenant_ids_in(client, relation) == {own[role]["tenant"]}, relation
                tenant_api = SqlApi(client)
                status = tenant_api.batch_status(own[role]["tenant"], own[role]["running"])
                assert status["status"] == "running"
                with pytest.raises(psycopg.Error) as exc:
                    tenant_api.batch_status(other[role]["tenant"], other[role]["running"])
                assert exc.value.sqlstate == "BC002"
                # A bound login's setting changes nothing, for it or the next client.
                client.execute(
                    sql.SQL("set batchctl.tenant_id = {}").format(
                        sql.Literal(str(other[role]["tenant"]))
                    )
                )
            servers = {s["user"]: s for s in bouncer.servers(dbname(db_url))}
    # Each login's clients shared one server connection, never the other login's.
    assert len(pids[alice]) == len(pids[bob]) == 1, pids
    assert pids[alice] != pids[bob]
    assert set(servers) == {alice, bob}


def name_tenant(conn: psycopg.Connection[Any], how: str, tenant: UUID) -> None:
    """What a gateway does first in each transaction."""
    if how == "set local":
        conn.execute(sql.SQL("set local batchctl.tenant_id = {}").format(sql.Literal(str(tenant))))
    else:
        conn.execute("select set_config('batchctl.tenant_id', %s, true)", (str(tenant),))


@pytest.mark.parametrize("how", ["set local", "set_config"])
def test_a_gateways_tenant_named_per_transaction_does_not_reach_the_next_client(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path, how: str
) -> None:
    """Two clients of one gateway login on one server connection (default_pool_size = 1): the
    first names a tenant in its transaction (SET LOCAL, or set_config(..., true)) and acts for
    it; the next client on the same server connection acts for no tenant."""
    tenants = [populate_tenant(api, "tenant-a", 0), populate_tenant(api, "tenant-b", 100)]
    with login_role(api.conn, member_of=("batchctl_gateway",)) as gateway:
        log = tmp_path / "pgbouncer.log"
        with (
            running_pgbouncer(pg_server_url, {gateway: ""}, pool_size=1, log=log) as bouncer,
            clients(bouncer.url(dbname(db_url), gateway), 2) as (first, second),
        ):
            shared = backend_pid(first)
            for tenant in tenants:
                with first.transaction():
                    name_tenant(first, how, tenant["tenant"])
                    assert backend_pid(first) == shared
                    assert tenant_ids_in(first, "batches") == {tenant["tenant"]}
                    status = SqlApi(first).batch_status(tenant["tenant"], tenant["running"])
                    assert status["status"] == "running"
                # The next client, on the same server connection, acts for none.
                assert backend_pid(second) == shared
                for relation in RELATIONS:
                    assert tenant_ids_in(second, relation) == set(), relation
                assert second.execute("select batchctl.session_tenant() as t").fetchone() == {
                    "t": None
                }
                with pytest.raises(psycopg.Error) as exc:
                    SqlApi(second).batch_status(tenant["tenant"], tenant["running"])
                assert exc.value.sqlstate == "42501"
                # Nor does the first client itself, its transaction over.
                assert tenant_ids_in(first, "batches") == set()


def test_a_session_level_set_through_the_transaction_pooler_reaches_the_next_client(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """Why docs/security.md says a gateway names its tenant with SET LOCAL, never SET. This
    asserts the leak HAPPENS: it demonstrates the danger, it is no behaviour batchctl wants. A
    gateway's session-level SET stays on the server connection PgBouncer lends the next client
    (PgBouncer resets nothing between clients in transaction mode), so a client that named no
    tenant acts for the one another client named."""
    a, b = populate_tenant(api, "tenant-a", 0), populate_tenant(api, "tenant-b", 100)
    with login_role(api.conn, member_of=("batchctl_gateway",)) as gateway:
        log = tmp_path / "pgbouncer.log"
        with (
            running_pgbouncer(pg_server_url, {gateway: ""}, pool_size=1, log=log) as bouncer,
            clients(bouncer.url(dbname(db_url), gateway), 2) as (first, second),
        ):
            assert tenant_ids_in(second, "batches") == set()
            # WRONG for a gateway: a session-level SET, outside any transaction.
            first.execute(
                sql.SQL("set batchctl.tenant_id = {}").format(sql.Literal(str(a["tenant"])))
            )
            assert backend_pid(second) == backend_pid(first)
            # The danger: `second` set nothing and yet acts for tenant A.
            assert tenant_ids_in(second, "batches") == {a["tenant"]}
            assert SqlApi(second).batch_status(a["tenant"], a["running"])["status"] == "running"
            assert b["tenant"] not in tenant_ids_in(second, "batch_entries")
            second.execute("reset batchctl.tenant_id")
            assert tenant_ids_in(first, "batches") == set()


# --- prepared statements

PGBOUNCER_TRACKS_PREPARES = (1, 21)  # max_prepared_statements: protocol-level prepares tracked
REPEATED = "select count(*) as n from batchctl.batches where tenant_id = %s"
ANOTHER = "select -count(*) as n from batchctl.batch_entries where tenant_id = %s"


def test_psycopg_default_prepares_fail_through_pgbouncer_before_1_21(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """What psycopg's default (prepare_threshold=5: the 6th run of a statement on a connection
    prepares it server-side, as "_pg3_0", "_pg3_1", ..., and later runs only bind it) meets in
    PgBouncer < 1.21, which passes Parse and Bind through to whichever server connection it
    lends: another client's statement of the same name ("already exists"), no such statement
    ("does not exist"), or, worst, another client's statement of that name, which then runs
    with this client's parameters. Hence batchctl's connections never prepare."""
    version = pgbouncer_version(require_pgbouncer())
    if version >= PGBOUNCER_TRACKS_PREPARES:
        pytest.skip(f"PgBouncer {version} tracks prepared statements (max_prepared_statements)")
    tenant = api.create_tenant()
    api.create_batch(tenant, phones(3))
    database = dbname(db_url)
    log = tmp_path / "pgbouncer.log"
    with (
        running_pgbouncer(pg_server_url, pool_size=2, log=log) as bouncer,
        ExitStack() as stack,
    ):
        one, two, three, holder = (
            stack.enter_context(psycopg.connect(bouncer.url(database), autocommit=True))
            for _ in range(4)
        )
        assert one.prepare_threshold == 5  # psycopg's default
        for _ in range(6):  # the 6th prepares "_pg3_0" on the only server connection, S1
            assert one.execute(REPEATED, (tenant,)).fetchone() == (1,)
        assert len(bouncer.servers(database)) == 1
        for _ in range(5):
            two.execute(REPEATED, (tenant,))
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement, match="already exists"):
            two.execute(REPEATED, (tenant,))  # its own "_pg3_0", on S1 again
        with holder.transaction():  # holds S1: the others get S2
            holder.execute("select 1")
            with pytest.raises(psycopg.errors.InvalidSqlStatementName, match="does not exist"):
                one.execute(REPEATED, (tenant,))
            for _ in range(6):  # prepares its "_pg3_0", another statement, on S2
                assert three.execute(ANOTHER, (tenant,)).fetchone() == (-3,)
            # `one` runs its statement and gets the answer of `three`'s.
            assert one.execute(REPEATED, (tenant,)).fetchone() == (-3,)
        assert len(bouncer.servers(database)) == 2


def test_batchctl_connections_do_not_prepare_and_work_through_pgbouncer(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """batchctl's own connections and pools (batchctl.database.connect, async_pool) have
    prepare_threshold=None: the same statements run hundreds of times each on connections
    whose statements PgBouncer spreads over its server connections, without an error, and no
    server connection holds a prepared statement afterwards."""
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2))
    name = dbname(db_url)
    with running_pgbouncer(pg_server_url, pool_size=2, log=tmp_path / "pgbouncer.log") as bouncer:
        url = bouncer.url(name)
        # The sequence that fails with psycopg's default (the test above), now harmless.
        with clients(url, 3) as (one, two, holder):
            assert one.prepare_threshold is None
            for client in (one, two):
                for _ in range(10):
                    assert client.execute(REPEATED, (tenant,)).fetchone() == {"n": 1}
            with holder.transaction():
                holder.execute("select 1")
                assert one.execute(REPEATED, (tenant,)).fetchone() == {"n": 1}

        # Threads: several connections at once, so their statements land on both servers.
        failures: list[BaseException] = []

        def calls(rounds: int) -> None:
            try:
                with clients(url, 1) as (conn,):
                    for _ in range(rounds):
                        conn.execute(REPEATED, (tenant,))
                        SqlApi(conn).batch_status(tenant, batch)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=calls, args=(60,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []

        # The daemon's kind of pool: asyncio tasks sharing an AsyncConnectionPool.
        async def pooled() -> None:
            async with async_pool(url, "test", max_size=6) as pool:

                async def task() -> None:
                    for _ in range(40):
                        async with pool.connection() as conn:
                            assert conn.prepare_threshold is None
                            await conn.execute(REPEATED, (tenant,))
                            cur = await conn.execute(
                                "select * from batchctl.batch_status(%s, %s)", (tenant, batch)
                            )
                            assert (await cur.fetchone()) is not None

                await asyncio.gather(*(task() for _ in range(6)))

        asyncio.run(pooled())
        assert len(bouncer.servers(name)) == 2
        with clients(url, 2) as (first, second), first.transaction(), second.transaction():
            # Both server connections, each held by one client: neither has a statement.
            assert backend_pid(first) != backend_pid(second)
            for conn in (first, second):
                found = conn.execute("select count(*) as n from pg_prepared_statements")
                assert found.fetchone() == {"n": 0}


def test_pgbouncer_is_stopped_when_the_test_fails(pg_server_url: str, tmp_path: Path) -> None:
    """The helper's promise: PgBouncer is stopped on the way out of a failing test too."""
    started: list[PgBouncer] = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        running_pgbouncer(pg_server_url, pool_size=1, log=tmp_path / "pgbouncer.log") as bouncer,
    ):
        started.append(bouncer)
        raise RuntimeError("boom")
    (stopped,) = started
    assert stopped.process is not None and stopped.process.poll() is not None


def test_the_dashboard_through_pgbouncer_keeps_each_sign_in_to_its_rights(
    db_url: str, pg_server_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """The dashboard's pool through PgBouncer with one server connection, its LISTEN direct: the
    operator's and a tenant token's requests take turns on that connection, and each sees what
    its role may (SET LOCAL ROLE ends with each transaction, so nothing leaks to the next);
    an action is the tenant login's in the audit."""
    ours, theirs = api.create_tenant("ours"), api.create_tenant("theirs")
    our_batch = api.create_batch(ours, phones(2))
    their_batch = api.create_batch(theirs, phones(2, 10))
    with (
        login_role(api.conn, ours) as role,
        running_pgbouncer(pg_server_url, pool_size=1, log=tmp_path / "pgbouncer.log") as bouncer,
    ):
        settings = DashboardSettings(
            url=bouncer.url(dbname(db_url)), listen_url=db_url, pool_size=2,
            tokens=[Token("operator", "op-secret"), Token(role, "tenant-secret", role)],
        )  # fmt: skip
        with run_dashboard(settings) as board:
            operator, tenant = WebClient(board.url), WebClient(board.url)
            assert operator.sign_in("op-secret").status == tenant.sign_in("tenant-secret").status
            for _ in range(5):
                assert str(their_batch)[:8] in operator.get("/").text
                assert tenant.get(f"/batches/{their_batch}").status == 404
                assert str(our_batch)[:8] in tenant.get("/").text
                assert operator.get(f"/batches/{our_batch}").status == 200
            events = tenant.events(f"/batches/{our_batch}/live", 1)
            assert events[0][0] == "update"
            token = tenant.csrf(f"/batches/{our_batch}")
            assert tenant.post(f"/batches/{our_batch}/pause", {"csrf": token}).status == 303
            servers = bouncer.servers(dbname(db_url))
    assert len(servers) == 1, "one server connection served both sign-ins"
    actor = api.conn.execute(
        "select actor from batchctl.events where object_id = %s and to_status = 'paused'",
        (our_batch,),
    ).fetchone()
    assert actor == {"actor": f"{role} via dashboard: {role}"}
