"""Dashboard reads: the batch page's entries table (keyset pages) and live part on a 100k-entry
batch, and the whole batch page over HTTP.

    python bench/dashboard_reads.py [--quick]

Setup (one scratch database): finished history first, bench/lifecycle_flat.py's (300,000
entries in batches of 1,000 of another tenant, with their call logs and five events each), so
that the indexes matter. Then one tenant's running batch of 100,000 entries made by
create_batch and moved as claims and calls would, in bulk statements that go through the
triggers (counters, events): the first 85% claimed, dispatched with one call each and
finished by the call's outcome (mostly completed, about a fifth declined, 2.5% failed with a
handful of distinct errors, 0.5% cancelled; a fifth of the no-answer and busy ones queued
again for a retry), the last 20 of them still on a live call; the other 15% still queued. The
calls started over the last hour, in lead order, so that the per-minute chart has data; then
the batch is paused and resumed (its history) and every table vacuumed and analyzed.

Measured, each as the page runs it (batchctl.dashboard.access.acting_as on a pool from
batchctl.database.async_pool, viewer None: one connection, a READ ONLY transaction per read),
in interleaved rounds, median and p95 over --quick 20 / full 50 samples:
 - queries.entries: the first page, a page in the middle, the last page, completed from the
   middle, failed (2%) from the start and from the middle, failed after the last failed
   entry (nothing left: the keyset reads every later entry of the batch), queued from the
   start. The 100 ms target of the issue is printed next to these rows.
 - queries.batch_live: the read done once per update per watched batch (five statements).
 - rendering the batch page (Pages.batch, no I/O), and the whole request GET
   /batches/<id>?after=<middle> through a running dashboard (threaded.run_dashboard, signed in
   with an operator token; one kept-alive connection from this process): wall time per request.
The SQL of each read is recorded as it is sent (a cursor factory on the pooled connection) and
run again under EXPLAIN (ANALYZE, BUFFERS, TIMING OFF): its execution and planning time on the
server (without the per-node clocks, which add to a statement that reads many rows), the buffers
it touched, and what each of its scans returned and threw away.

Prints figures; asserts nothing about speed. Its scratch database is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import http.client
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from typing import Any, Self
from urllib.parse import urlencode, urlsplit
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query
from psycopg_pool import AsyncConnectionPool

from batchctl.dashboard import queries
from batchctl.dashboard.access import acting_as
from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.auth import COOKIE, OPERATOR, Token
from batchctl.dashboard.models import EntriesPage, Viewer
from batchctl.dashboard.pages import Pages
from batchctl.dashboard.threaded import run_dashboard
from batchctl.database import async_pool
from benchlib import (
    Conn,
    Part,
    one,
    percentile,
    phone_entries,
    run_parts,
    scratch_database,
    section,
)
from lifecycle_flat import load_history

DASHBOARD_DB = "batchctl_bench_dashboard"
TARGET_MS = 100.0  # the issue's: a page of the entries table in < 100 ms of server time
REACHED = 0.85  # the share of the batch claimed so far, in lead order
LIVE = 20  # of those, the last ones still on a call
WARMUP = 3
TOKEN = "bench-dashboard-operator-token"


@dataclass(frozen=True)
class Plan:
    entries: int  # the batch the page shows
    history: int  # finished entries of other batches
    samples: int  # per read, median and p95


FULL = Plan(entries=100_000, history=300_000, samples=50)
QUICK = Plan(entries=20_000, history=60_000, samples=20)

# The calls' outcomes, by cumulative share (bench/claim_compliance.py's form): three quarters
# completed, about a fifth declined, 2.5% failed, 0.5% cancelled (an opt-out during the call).
OUTCOMES = [
    ("completed", 0.45),
    ("ended", 0.75),
    ("no_answer", 0.85),
    ("busy", 0.89),
    ("voicemail", 0.95),
    ("declined", 0.965),
    ("rejected", 0.97),
    ("failed", 0.982),
    ("error", 0.987),
    ("not_reachable", 0.995),
    ("cancelled", 1.0),
]
# A failed call's error as LiveKit reports it (call_logs.detail.error): the entry's last_error.
SIP_ERRORS = [
    ("SIP 503: Service Unavailable", 0.5),
    ("SIP 480: Temporarily Unavailable", 0.8),
    ("SIP 404: Not Found", 1.0),
]


# ---------------------------------------------------------------------------------------------
# The data.


def ladder(draw: str, shares: list[tuple[str, float]]) -> sql.Composable:
    """A CASE picking each value while ``draw`` (a column in [0, 1)) is below its share."""
    return sql.SQL("CASE {} END").format(
        sql.SQL(" ").join(
            sql.SQL("WHEN {} < {} THEN {}").format(
                sql.Identifier(draw), sql.Literal(share), sql.Literal(value)
            )
            for value, share in shares
        )
    )


def move_batch(conn: Conn, batch: UUID, n: int) -> None:
    """The batch as an hour of claims and calls leaves it, in four set-based statements through
    the triggers (each keeps the counters and writes its events): the first REACHED share of
    the entries claimed, a call each, dispatched, and finished by the call's outcome but the
    last LIVE, whose calls are still ringing or talking."""
    reached = round(n * REACHED)
    p = {"batch": batch, "reached": reached, "live_from": reached - LIVE}
    conn.execute("SELECT batchctl.set_reason('bench dashboard')")
    # Started an hour ago, when its first call did: the chart shows its full span.
    conn.execute(
        """
        UPDATE batchctl.batches
           SET created_at = now() - interval '65 minutes',
               started_at = now() - interval '1 hour' - interval '10 seconds'
         WHERE id = %(batch)s""",
        p,
    )
    conn.execute(
        """
        UPDATE batchctl.batch_entries
           SET status = 'running', claimed_by = 'bench-dashboard', attempts = 1,
               lease_expires_at = now() + interval '10 minutes', updated_at = now()
         WHERE batch_id = %(batch)s AND entry_index < %(reached)s""",
        p,
    )
    # Started in lead order over the last hour (the last one a few seconds ago), 10 s to 4 min
    # long; the live ones started in the last three minutes.
    conn.execute(
        sql.SQL("""
        INSERT INTO batchctl.call_logs
               (tenant_id, batch_id, entry_id, to_phone, attempt, room_name, dispatch_id, status,
                status_changed_at, started_at, answered_at, ended_at, duration_seconds, detail)
        SELECT x.tenant_id, x.batch_id, x.id, x.to_phone, 1, batchctl.room_name(x.id, 1),
               'd-' || x.id, o.status, x.started + o.took, x.started,
               CASE WHEN o.status IN ('completed', 'ended', 'declined', 'voicemail', 'ongoing')
                    THEN x.started + least(interval '6 seconds', o.took) END,
               CASE WHEN NOT o.live THEN x.started + o.took END,
               CASE WHEN NOT o.live THEN round(extract(epoch FROM o.took), 1) END,
               CASE WHEN o.status = 'failed'
                    THEN jsonb_build_object('error', {errors}) ELSE '{{}}' END
          FROM (SELECT e.tenant_id, e.batch_id, e.id, e.to_phone, e.entry_index,
                       CASE WHEN e.entry_index >= %(live_from)s
                            THEN now() - random() * interval '3 minutes'
                            ELSE now() - interval '1 hour'
                                         * (%(reached)s - e.entry_index)::float8 / %(reached)s
                                 - interval '5 seconds'
                       END AS started,
                       random() AS r, random() AS d
                  FROM batchctl.batch_entries e
                 WHERE e.batch_id = %(batch)s AND e.status = 'running') x
         CROSS JOIN LATERAL (
             SELECT x.entry_index >= %(live_from)s AS live,
                    (CASE WHEN x.entry_index >= %(live_from)s
                          THEN CASE WHEN x.r < 0.3 THEN 'ringing' ELSE 'ongoing' END
                          ELSE {outcome} END)::batchctl.call_status AS status,
                    CASE WHEN x.entry_index >= %(live_from)s THEN interval '0'
                         ELSE least(interval '10 seconds' + x.d * interval '230 seconds',
                                    (now() - x.started) * 0.9) END AS took) o""").format(
            outcome=ladder("r", OUTCOMES), errors=ladder("d", SIP_ERRORS)
        ),
        p,
    )
    # The statistics of the history alone would have 'running' rare and the batch's calls few:
    # a nested loop over the whole batch (minutes) for the joins below.
    conn.execute("ANALYZE batchctl.batch_entries, batchctl.call_logs")
    conn.execute(
        """
        UPDATE batchctl.batch_entries e
           SET status = 'dispatched', call_log_id = c.id, lease_expires_at = NULL,
               updated_at = c.started_at
          FROM batchctl.call_logs c
         WHERE e.batch_id = %(batch)s AND e.status = 'running'
           AND c.entry_id = e.id AND c.tenant_id = e.tenant_id AND c.batch_id = %(batch)s""",
        p,
    )
    # As the call-end trigger (sql/034) sets them: a retry's "retry after <outcome>", a failed
    # call's error, an opted-out entry's reason.
    conn.execute(
        """
        UPDATE batchctl.batch_entries e
           SET status = CASE WHEN r.retry THEN 'queued'
                             ELSE batchctl.entry_status_for_call(c.status) END,
               outcome = c.status,
               next_attempt_at = CASE WHEN r.retry THEN now() + interval '2 hours'
                                      ELSE e.next_attempt_at END,
               last_error = CASE
                   WHEN r.retry THEN 'retry after ' || c.status
                   WHEN batchctl.entry_status_for_call(c.status) = 'failed'
                       THEN coalesce(c.detail ->> 'error', c.status::text)
                   WHEN c.status = 'cancelled' THEN 'opted_out' END,
               cancel_requested = c.status = 'cancelled',
               claimed_by = NULL, updated_at = c.ended_at
          FROM batchctl.call_logs c
         CROSS JOIN LATERAL (
             SELECT c.status IN ('no_answer', 'busy') AND abs(hashtext(c.id::text)) %% 5 = 0
                    AS retry) r
         WHERE e.batch_id = %(batch)s AND e.status = 'dispatched'
           AND c.id = e.call_log_id AND c.tenant_id = e.tenant_id
           AND batchctl.is_terminal(c.status)""",
        p,
    )


@dataclass(frozen=True)
class Loaded:
    tenant: UUID
    batch: UUID
    last_failed: int  # entry_index of the batch's last failed entry


def load(url: str, plan: Plan) -> Loaded:
    load_history(url, plan.history)
    with psycopg.connect(url, autocommit=True) as conn:
        tenant: UUID = one(conn, "SELECT batchctl.create_tenant('dashboard', 50)")
        t0 = time.perf_counter()
        batch: UUID = one(
            conn,
            "SELECT batchctl.create_batch(%s, %s::jsonb)",
            tenant,
            phone_entries(plan.entries, "5"),
        )
        created_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        with conn.transaction():
            move_batch(conn, batch, plan.entries)
        moved_s = time.perf_counter() - t0
        conn.execute("SELECT batchctl.pause_batch(%s, %s)", (tenant, batch))
        conn.execute("SELECT batchctl.resume_batch(%s, %s)", (tenant, batch))
        t0 = time.perf_counter()
        for table in ("batches", "batch_entries", "call_logs", "events", "reports"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) batchctl.{}").format(sql.Identifier(table)))
        vacuum_s = time.perf_counter() - t0
        counted: dict[str, int] = dict(
            conn.execute(
                """
                SELECT status::text, count(*) FROM batchctl.batch_entries
                 WHERE batch_id = %s GROUP BY status""",
                (batch,),
            ).fetchall()
        )
        counters = conn.execute(
            """
            SELECT b.status::text, b.total, b.queued_count, b.running_count, b.dispatched_count,
                   b.completed_count, b.failed_count, b.declined_count, b.cancelled_count
              FROM batchctl.batches b WHERE b.id = %s""",
            (batch,),
        ).fetchone()
        assert counters is not None
        names = ("queued", "running", "dispatched", "completed", "failed", "declined", "cancelled")
        kept = dict(zip(names, counters[2:], strict=True))
        assert counters[0] == "running", counters
        assert {k: v for k, v in kept.items() if v} == counted, (kept, counted)
        calls = conn.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE ended_at IS NULL),
                   count(*) FILTER (WHERE started_at >= now() - interval '30 minutes')
              FROM batchctl.call_logs WHERE batch_id = %s""",
            (batch,),
        ).fetchone()
        assert calls is not None
        errors = conn.execute(
            """
            SELECT last_error, count(*) FROM batchctl.batch_entries
             WHERE batch_id = %s AND last_error IS NOT NULL
             GROUP BY 1 ORDER BY 2 DESC""",
            (batch,),
        ).fetchall()
        last_failed: int = one(
            conn,
            "SELECT max(entry_index) FROM batchctl.batch_entries"
            " WHERE batch_id = %s AND status = 'failed'",
            batch,
        )
        totals = conn.execute("""
            SELECT (SELECT count(*) FROM batchctl.batch_entries),
                   (SELECT count(*) FROM batchctl.call_logs),
                   (SELECT count(*) FROM batchctl.events),
                   pg_size_pretty(pg_total_relation_size('batchctl.batch_entries')),
                   pg_size_pretty(pg_database_size(current_database()))""").fetchone()
        assert totals is not None
    print(
        f"batch: {plan.entries:,} entries by create_batch in {created_s:.1f} s, moved by claims "
        f"and calls (four bulk statements through the triggers) in {moved_s:.1f} s, paused and "
        f"resumed; vacuum analyze {vacuum_s:.1f} s"
        f"\n  entries: "
        + ", ".join(f"{s} {counted[s]:,}" for s in names if s in counted)
        + f" (counters match); last failed entry #{last_failed:,}"
        f"\n  {calls[0]:,} call logs over the last hour ({calls[1]} live, {calls[2]:,} started "
        f"in the chart's last 30 minutes); {len(errors)} distinct errors: "
        + ", ".join(f"{e} {k:,}" for e, k in errors)
        + f"\n  tables now hold {totals[0]:,} entries ({totals[3]} with their indexes), "
        f"{totals[1]:,} call logs, {totals[2]:,} events; database {totals[4]}"
    )
    return Loaded(tenant, batch, last_failed)


# ---------------------------------------------------------------------------------------------
# Reads through the dashboard's code, and their SQL under EXPLAIN.

AConn = psycopg.AsyncConnection[Any]
Statement = tuple[sql.SQL | sql.Composed, Params | None]
RECORDED: list[Statement] = []


class Recording(psycopg.AsyncCursor[Any]):
    """A cursor that notes every statement it sends, with its parameters, in RECORDED."""

    async def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        assert isinstance(query, sql.SQL | sql.Composed), query  # what queries.py sends
        RECORDED.append((query, params))
        return await super().execute(query, params, prepare=prepare, binary=binary)


@dataclass
class Read:
    """One read the page makes, its timings and the EXPLAIN figures of its statements."""

    label: str
    run: Callable[[AConn], Awaitable[Any]]
    rows: int = 0
    statements: list[Statement] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    # Per statement: execution ms, planning ms per sample; buffers and the scan of one.
    exec_ms: list[list[float]] = field(default_factory=list)
    plan_ms: list[list[float]] = field(default_factory=list)
    buffers: list[int] = field(default_factory=list)  # shared blocks, hit or read
    scans: list[str] = field(default_factory=list)

    def total_exec(self) -> list[float]:
        return [sum(s) for s in zip(*self.exec_ms, strict=True)]

    def total_plan(self) -> list[float]:
        return [sum(s) for s in zip(*self.plan_ms, strict=True)]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def scan_of(plan: dict[str, Any]) -> str:
    """What the plan's scans of tables did: the node (and index), the rows it returned and the
    rows its filter threw away, over all its loops."""
    found = []
    for node in plan_nodes(plan):
        if "Relation Name" not in node:
            continue
        loops = node.get("Actual Loops", 1)
        how = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "")
        if how in ("Seq Scan", "Bitmap Heap Scan"):
            how += f" {node['Relation Name']}"
        removed = node.get("Rows Removed by Filter", 0) * loops
        found.append(
            f"{how}: {round(node['Actual Rows'] * loops):,} rows"
            + (f", {round(removed):,} filtered out" if removed else "")
        )
    return "; ".join(found) or plan["Node Type"]


async def explain(conn: AConn, statement: Statement) -> dict[str, Any]:
    query, params = statement
    cur = await conn.execute(
        sql.SQL("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, FORMAT JSON) {}").format(query), params
    )
    row = await cur.fetchone()
    assert row is not None
    result: dict[str, Any] = row[0][0]
    return result


async def measure_reads(url: str, reads: list[Read], samples: int) -> None:
    pool: AsyncConnectionPool = async_pool(url, "bench-dashboard", max_size=1)
    async with pool:
        for read in reads:
            async with acting_as(pool, None) as conn:
                conn.cursor_factory = Recording
                RECORDED.clear()
                try:
                    result = await read.run(conn)
                finally:
                    conn.cursor_factory = psycopg.AsyncCursor
                read.statements = list(RECORDED)
                read.rows = len(result.rows) if isinstance(result, EntriesPage) else 0
                read.exec_ms = [[] for _ in read.statements]
                read.plan_ms = [[] for _ in read.statements]
        # Interleaved rounds: a busy moment of the machine hits every read alike.
        for i in range(WARMUP + samples):
            for read in reads:
                async with acting_as(pool, None) as conn:
                    t0 = time.perf_counter()
                    await read.run(conn)
                    ms = (time.perf_counter() - t0) * 1000
                if i >= WARMUP:
                    read.ms.append(ms)
        for i in range(WARMUP + samples):
            for read in reads:
                async with acting_as(pool, None) as conn:
                    for k, statement in enumerate(read.statements):
                        found = await explain(conn, statement)
                        if i < WARMUP:
                            continue
                        read.exec_ms[k].append(found["Execution Time"])
                        read.plan_ms[k].append(found["Planning Time"])
                        if i == WARMUP + samples - 1:
                            top = found["Plan"]
                            read.buffers.append(
                                top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
                            )
                            read.scans.append(scan_of(top))


# ---------------------------------------------------------------------------------------------
# The whole page over HTTP.


@dataclass
class Browser:
    """One kept-alive connection to the dashboard, with the session cookie once signed in."""

    base: str
    cookie: str = ""
    conn: http.client.HTTPConnection = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for value in response.headers.get_all("Set-Cookie") or []:
            morsel = SimpleCookie(value).get(COOKIE)
            if morsel is not None:
                self.cookie = morsel.value
        return response.status, data

    def sign_in(self, token: str) -> None:
        status, _ = self.request("POST", "/login", {"token": token})
        assert status == 303 and self.cookie, f"sign-in refused ({status})"


def measure_http(url: str, batch: UUID, after: int, samples: int) -> tuple[list[float], int]:
    """Wall times of GET /batches/<batch>?after=<after>, and the page's size in bytes."""
    settings = DashboardSettings(url=url, tokens=[Token(OPERATOR, TOKEN)], refresh_s=60)
    times: list[float] = []
    size = 0
    with run_dashboard(settings) as board:
        browser = Browser(board.url)
        browser.sign_in(TOKEN)
        path = f"/batches/{batch}?after={after}"
        for i in range(WARMUP + samples):
            t0 = time.perf_counter()
            status, body = browser.request("GET", path)
            ms = (time.perf_counter() - t0) * 1000
            assert status == 200, (status, body[:300])
            # The page shows the 50 entries after the cursor.
            assert f'<td class="r num muted">{after + 1}</td>'.encode() in body
            if i >= WARMUP:
                times.append(ms)
            size = len(body)
        browser.conn.close()
    return times, size


async def render_page(url: str, batch: UUID, after: int, samples: int) -> list[float]:
    """The batch page rendered from one read of its data (Pages.batch alone, no I/O)."""
    pool: AsyncConnectionPool = async_pool(url, "bench-dashboard", max_size=1)
    async with pool, acting_as(pool, None) as conn:
        live = await queries.batch_live(conn, batch)
        entries = await queries.entries(conn, batch, status=None, after=after)
    assert live is not None
    pages, viewer = Pages(), Viewer(OPERATOR, None, "csrf")
    times = []
    for i in range(WARMUP + samples):
        t0 = time.perf_counter()
        pages.batch(live, entries, viewer, datetime.now(UTC))
        if i >= WARMUP:
            times.append((time.perf_counter() - t0) * 1000)
    return times


# ---------------------------------------------------------------------------------------------


def entries_read(label: str, batch: UUID, status: str | None, after: int | None) -> Read:
    async def run(conn: AConn) -> EntriesPage:
        return await queries.entries(conn, batch, status=status, after=after)

    return Read(label, run)


# batch_live's statements by the names queries.py gives them; any other by its text.
NAMED = {"LIVE_CALLS": "live calls", "MINUTES": "per-minute chart", "ERRORS": "errors",
         "HISTORY": "history"}  # fmt: skip


def statement_name(query: sql.SQL | sql.Composed) -> str:
    for attr, name in NAMED.items():
        if getattr(queries, attr, None) is query:
            return name
    text = " ".join(query.as_string(None).split())
    return "batch row and counters" if "FROM batchctl.batches b" in text else text[:24]


def figures(values: list[float]) -> str:
    return f"{statistics.median(values):>8.2f}{percentile(values, 95):>8.2f}"


def verdict(values: list[float]) -> str:
    p95 = percentile(values, 95)
    return f"{'met' if p95 < TARGET_MS else 'NOT met'} (p95 {p95:.1f})"


def dashboard_reads(admin_url: str, plan: Plan) -> None:
    section(f"dashboard: a {plan.entries:,}-entry batch and {plan.history:,} entries of history")
    with scratch_database(admin_url, DASHBOARD_DB) as url:
        loaded = load(url, plan)
        batch, n, mid = loaded.batch, plan.entries, plan.entries // 2
        last = n - queries.ENTRIES_PAGE - 1  # the 50 entries after it are the last page
        targeted = [
            entries_read("all statuses, first page", batch, None, None),
            entries_read(f"all statuses, after={mid}", batch, None, mid),
            entries_read(f"all statuses, last page (after={last})", batch, None, last),
            entries_read(f"completed, after={mid}", batch, "completed", mid),
            entries_read("failed, first page", batch, "failed", None),
            entries_read(f"failed, after={mid}", batch, "failed", mid),
            entries_read(
                f"failed, after={loaded.last_failed} (none left)",
                batch,
                "failed",
                loaded.last_failed,
            ),
            entries_read("queued, first page", batch, "queued", None),
        ]

        async def live(conn: AConn) -> Any:
            return await queries.batch_live(conn, batch)

        live_read = Read("batch_live", live)
        reads = [*targeted, live_read]
        asyncio.run(measure_reads(url, reads, plan.samples))
        live_read.label += f" ({len(live_read.statements)} statements)"
        render = asyncio.run(render_page(url, batch, mid, plan.samples))
        http_ms, size = measure_http(url, batch, mid, plan.samples)

    print(
        f"\nmilliseconds, median and p95 of {plan.samples} samples each (interleaved rounds, "
        f"after {WARMUP} warm-up rounds); psycopg: the call through the dashboard's code on a "
        "pooled connection in a READ ONLY transaction, as the page makes it; EXPLAIN: the same "
        "SQL under EXPLAIN (ANALYZE, BUFFERS, TIMING OFF), server time only (per-node clocks "
        "would add to a statement that reads many rows); buffers: shared blocks touched by the "
        "last sample"
    )
    head = f"  {'read':<46}{'rows':>5}{'psycopg':>16}{'EXPLAIN exec':>16}{'plan':>7}{'buffers':>9}"
    print(head + f"   target < {TARGET_MS:.0f} ms")
    print(f"  {'':<46}{'':>5}{'median':>8}{'p95':>8}{'median':>8}{'p95':>8}{'median':>7}")
    for read in reads:
        ex, pl = read.total_exec(), read.total_plan()
        label = ("entries: " if read is not live_read else "") + read.label
        print(
            f"  {label:<46}{read.rows if read is not live_read else '':>5}{figures(read.ms)}"
            f"{figures(ex)}{statistics.median(pl):>7.2f}{sum(read.buffers):>9,}"
            + (f"   {verdict(read.ms)}" if read is not live_read else "")
        )
    print(f"  {'render the batch page (Pages.batch, no I/O)':<51}{figures(render)}")
    print(
        f"  {f'GET /batches/<id>?after={mid} (HTTP, wall)':<51}{figures(http_ms)}"
        f"{'':>39}whole page: {verdict(http_ms)}"
    )
    print(
        f"\n  the page: {size / 1024:.0f} KiB of HTML; HTTP: the dashboard on a thread of this "
        "process (threaded.run_dashboard), one kept-alive connection, signed in as the operator"
    )
    print("\n  scans of batch_entries (EXPLAIN ANALYZE of the last sample):")
    for read in targeted:
        print(f"    {read.label:<44}{read.scans[0]}")
    print("\n  batch_live's statements (EXPLAIN exec ms median and p95, buffers, scans):")
    for k, (query, _) in enumerate(live_read.statements):
        ex = live_read.exec_ms[k]
        print(
            f"    {statement_name(query):<24}{statistics.median(ex):>7.2f}"
            f"{percentile(ex, 95):>7.2f}{live_read.buffers[k]:>8,}  {live_read.scans[k]}"
        )


def run(admin_url: str, plan: Plan) -> None:
    dashboard_reads(admin_url, plan)


PART = Part(FULL, QUICK, run)

if __name__ == "__main__":
    run_parts(__doc__.split("\n\n")[0], [PART])
