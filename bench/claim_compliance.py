"""Compliance benchmark: what every compliance rule costs the claim, over a long call history,
and the flat-cost table of bench/lifecycle_flat.py in the same run.

    python bench/claim_compliance.py [--quick] [--explain]

Part 1 (every rule): one tenant with a history of 1,000,000 call logs over the last 60 days for
100,000 distinct numbers (US numbers in Florida, New York, Illinois, Texas and California, and
French ones; 10% of them called about three times as often as the rest; a mix of outcomes), and
four running batches, 10,000 queued entries in all, whose numbers are among the 100,000. Then
claim_entries(50) in two configurations of the same data, alternating rounds in one process:
"no policy" (set_policy {"jurisdiction_rules": false}: no rule, no cap, no cool-off, no
holiday) and "every rule" (the shipped jurisdiction rules: calling hours, US-FL 3 calls per
24 h, FR 4 per 30 days and 60 days after a refusal; plus frequency caps per 24 h / 7 d / 30 d,
cool-offs after declined and completed calls, and holidays). The claim's clock is pinned
(batchctl.now, a superuser session) to a weekday at 17:30 UTC, when US and French hours allow
calls. Each claim runs in its own transaction, rolled back, so that every claim of a
configuration sees the same state. Measured twice: A, "first look", the held entries due at the
front of their batches (each claim holds them back, as the first claim after they became due
does); B, "steady state", after a committed sweep held them back (what a claim meets once the
sweep or an earlier claim has run). The target: the per-call cost with every rule within 1.5x
of the same claim with no policy. The server time per function of each configuration's claims
is printed (track_functions); with --explain, the plans of the statements of one claim with
every rule (auto_explain, nested statements) too.
Part 2 (flat costs, bench/lifecycle_flat.py): the per-call costs on an empty history, with 1M
finished entries and 5M events, and on a 100k-entry batch; the ratios should stay <= 1.5.

It prints figures and asserts nothing about speed. Part 1 runs on a scratch database of its
own, migrated with the shipped jurisdiction rules kept (benchlib.scratch_database deletes them
for the other benchmarks); it needs a superuser to pin the claim's clock (the embedded server's
role is one; with BATCHCTL_DATABASE_URL, use a superuser's).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

import lifecycle_flat
from batchctl.migrate import upgrade
from benchlib import Conn, Part, one, run_parts, scratch_database, section
from lifecycle_flat import in_parallel

COMPLIANCE_DB = "batchctl_bench_compliance"
WORKER = "bench-compliance"


@dataclass(frozen=True)
class Plan:
    numbers: int  # distinct numbers in the history; 10 calls each on average
    running: int  # running batches
    queued: int  # queued entries per running batch
    claim: int  # entries per claim_entries call
    rounds: int  # alternating rounds (each configuration once per round)
    claims: int  # claims per configuration per round


FULL = Plan(numbers=100_000, running=4, queued=2_500, claim=50, rounds=8, claims=5)
QUICK = Plan(numbers=20_000, running=4, queued=1_000, claim=50, rounds=4, claims=4)

DAYS = 60  # the history's span
PER_BATCH = 1_000  # numbers per finished history batch (one completed entry each)
# Calls per number: 8 (cold), or 28 for the 10% whose (k // 10) % 10 is 0 (hot); 10 on average.
COLD_CALLS, HOT_CALLS = 8, 28

# The claim's clock: a Wednesday at 17:30 UTC (New York 12:30, Los Angeles 09:30, Paris 18:30),
# when every shipped rule allows calls. The history is laid out before it.
NOW = datetime(2026, 12, 2, 17, 30, tzinfo=UTC)
HOLIDAYS = [str(NOW.date() + timedelta(days=d)) for d in (5, 22, 29)] + [str(date(NOW.year, 7, 14))]

# Per k % 10 (k: the number's index): the area (US) or mobile (FR) prefix and the zone.
REGIONS = [
    ("+1305", "America/New_York"),  # US-FL
    ("+1305", "America/New_York"),
    ("+1212", "America/New_York"),  # US-NY
    ("+1212", "America/New_York"),
    ("+1312", "America/Chicago"),  # US-IL
    ("+1512", "America/Chicago"),  # US-TX
    ("+1415", "America/Los_Angeles"),  # US-CA
    ("+1415", "America/Los_Angeles"),
    ("+336", "Europe/Paris"),  # FR
    ("+337", "Europe/Paris"),
]

# Call outcomes, by cumulative share: mostly not reached, some completed, few refused.
OUTCOMES = [
    ("declined", 0.01),
    ("completed", 0.11),
    ("no_answer", 0.51),
    ("busy", 0.61),
    ("voicemail", 0.81),
    ("failed", 0.88),
    ("ended", 1.0),
]

CONFIGS: dict[str, dict[str, Any]] = {
    "no policy": {"jurisdiction_rules": False},
    "every rule": {
        "frequency": {"per_24h": 3, "per_7d": 7, "per_30d": 10},
        "cooloff_s": {"declined": 5_184_000, "completed": 604_800},
        "holidays": HOLIDAYS,
        "jurisdiction_rules": True,
    },
}


def phone(k: int) -> str:
    prefix, _ = REGIONS[k % 10]
    # 11 digits: +1 area 2xxxxxx (US), +33 6/7 xxxxxxxx (FR).
    return prefix + (f"2{k:06d}" if prefix.startswith("+1") else f"{k:08d}")


def phone_sql(k: sql.Composable) -> sql.Composable:
    """phone(k) as a SQL expression of the integer expression k (in a statement with
    parameters: hence %% for the modulo)."""
    cases = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(i), sql.Literal(prefix))
        for i, (prefix, _) in enumerate(REGIONS)
    )
    return sql.SQL(
        "(CASE ({k}) %% 10 {cases} END || CASE WHEN ({k}) %% 10 < 8"
        " THEN '2' || lpad(({k})::text, 6, '0') ELSE lpad(({k})::text, 8, '0') END)"
    ).format(k=k, cases=cases)


def load_history_chunk(tenant: UUID, first: int, count: int, seed: float, conn: Conn) -> None:
    """Numbers first .. first + count - 1: one finished batch per PER_BATCH numbers, a completed
    entry per number, and its calls (attempts 1 .. calls_of(k)) spread over the DAYS before NOW,
    each with an outcome drawn from OUTCOMES. The insert triggers keep the counters, finish the
    batches and write each call's event, as in bench/lifecycle_flat.py."""
    conn.execute("SELECT setseed(%s)", (seed,))
    conn.execute("SELECT batchctl.set_reason('bench compliance history')")
    n_batches = -(-count // PER_BATCH)
    ids = [
        r[0]
        for r in conn.execute(
            """
            INSERT INTO batchctl.batches (tenant_id, status, options, created_at, started_at)
            SELECT %s, 'running', batchctl.normalize_options('{}'), ts, ts
              FROM (SELECT %s::timestamptz - interval '1 day' * g AS ts
                      FROM generate_series(1, %s) g) t
            RETURNING id""",
            (tenant, NOW - timedelta(days=DAYS), n_batches),
        ).fetchall()
    ]
    k = sql.SQL("(%(first)s::integer + (b.ord - 1) * {per} + i)").format(per=sql.Literal(PER_BATCH))
    conn.execute(
        sql.SQL("""
        INSERT INTO batchctl.batch_entries
               (batch_id, tenant_id, entry_index, to_phone, lead_name, status, outcome,
                attempts, updated_at)
        SELECT b.id, %(tenant)s, i, {phone}, 'Lead ' || {k}, 'completed', 'ended',
               CASE WHEN ({k} / 10) %% 10 = 0 THEN {hot} ELSE {cold} END, %(now)s
          FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY b (id, ord),
               generate_series(0, {per} - 1) i
         WHERE {k} < %(first)s::integer + %(count)s::integer""").format(
            phone=phone_sql(k),
            k=k,
            hot=sql.Literal(HOT_CALLS),
            cold=sql.Literal(COLD_CALLS),
            per=sql.Literal(PER_BATCH),
        ),
        {"tenant": tenant, "ids": ids, "first": first, "count": count, "now": NOW},
    )
    outcome = sql.SQL(" ").join(
        sql.SQL("WHEN x.r < {} THEN {}").format(sql.Literal(share), sql.Literal(status))
        for status, share in OUTCOMES
    )
    conn.execute(
        sql.SQL("""
        INSERT INTO batchctl.call_logs
               (tenant_id, batch_id, entry_id, to_phone, attempt, room_name, status,
                status_changed_at, started_at, answered_at, ended_at, duration_seconds, detail)
        SELECT x.tenant_id, x.batch_id, x.id, x.to_phone, x.a, batchctl.room_name(x.id, x.a),
               o.status, x.started + x.d, x.started,
               CASE WHEN o.status IN ('completed', 'ended', 'declined') THEN x.started END,
               x.started + x.d,
               CASE WHEN o.status IN ('completed', 'ended', 'declined')
                    THEN extract(epoch FROM x.d) END, '{{}}'
          FROM (SELECT e.tenant_id, e.batch_id, e.id, e.to_phone, a,
                       %(now)s::timestamptz - random() * interval '{days} days' AS started,
                       random() * interval '5 minutes' AS d, random() AS r
                  FROM batchctl.batch_entries e, generate_series(1, e.attempts) a
                 WHERE e.batch_id = ANY (%(ids)s)) x
         CROSS JOIN LATERAL (
             SELECT (CASE {outcome} END)::batchctl.call_status AS status) o""").format(
            days=sql.Literal(DAYS), outcome=outcome
        ),
        {"now": NOW, "ids": ids},
    )


def load_history(url: str, tenant: UUID, plan: Plan) -> None:
    chunk = 10 * PER_BATCH  # numbers per transaction
    t0 = time.perf_counter()
    in_parallel(
        url,
        [
            partial(
                load_history_chunk,
                tenant,
                first,
                min(chunk, plan.numbers - first),
                first / plan.numbers,
            )
            for first in range(0, plan.numbers, chunk)
        ],
    )
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("batches", "batch_entries", "call_logs", "events", "reports"):
            conn.execute(sql.SQL("VACUUM (ANALYZE) batchctl.{}").format(sql.Identifier(table)))
        row = conn.execute(
            """
            SELECT count(*), count(DISTINCT to_phone), min(started_at), max(started_at),
                   pg_size_pretty(pg_total_relation_size('batchctl.call_logs'))
              FROM batchctl.call_logs WHERE tenant_id = %s""",
            (tenant,),
        ).fetchone()
        assert row is not None
        mix = conn.execute(
            """
            SELECT status::text, count(*) FROM batchctl.call_logs WHERE tenant_id = %s
             GROUP BY status ORDER BY count(*) DESC""",
            (tenant,),
        ).fetchall()
    total = row[0]
    print(
        f"history: {total:,} call logs for {row[1]:,} numbers, {row[2]:%Y-%m-%d} to "
        f"{row[3]:%Y-%m-%d %H:%M} UTC ({row[4]} with its indexes), loaded in {load_s:.1f} s, "
        f"vacuum analyze {time.perf_counter() - t0:.1f} s"
    )
    print("  outcomes: " + ", ".join(f"{s} {100 * n / total:.0f}%" for s, n in mix))


def create_running(conn: Conn, tenant: UUID, plan: Plan) -> None:
    """plan.running batches of plan.queued entries each, their numbers spread over the history's
    (a stride coprime to its size: every region, cold and hot numbers), through create_batch so
    that intake derives each entry's country and subdivisions."""
    stride = 7919  # prime, so k = i * stride mod numbers is a permutation
    assert plan.numbers % stride != 0 and plan.running * plan.queued <= plan.numbers
    i = 0
    for b in range(plan.running):
        entries = []
        for _ in range(plan.queued):
            k = i * stride % plan.numbers
            entries.append(
                {"to_phone": phone(k), "lead_name": f"Lead {k}", "timezone": REGIONS[k % 10][1]}
            )
            i += 1
        conn.execute(
            "SELECT batchctl.create_batch(%s, %s::jsonb, %s::jsonb)",
            (tenant, json.dumps(entries), json.dumps({"wave_size": 1000, "metadata": {"run": b}})),
        )
    places = conn.execute(
        """
        SELECT e.country || coalesce('/' || array_to_string(e.subdivisions, ','), ''),
               count(*)
          FROM batchctl.batch_entries e
         WHERE e.tenant_id = %s AND e.status = 'queued'
         GROUP BY 1 ORDER BY 2 DESC""",
        (tenant,),
    ).fetchall()
    print(
        f"running: {plan.running} batches x {plan.queued:,} queued entries, numbers from the "
        "history: " + ", ".join(f"{p} {n:,}" for p, n in places)
    )


@dataclass
class Claims:
    ms: list[float] = field(default_factory=list)
    handed_out: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # entries the claim held back

    def per_claim(self) -> float:
        return statistics.median(self.ms)

    def per_entry(self) -> float:
        return statistics.median(ms / n for ms, n in zip(self.ms, self.handed_out, strict=True))


def set_config(conn: Conn, tenant: UUID, name: str) -> None:
    conn.execute("SELECT batchctl.set_policy(%s, %s::jsonb)", (tenant, json.dumps(CONFIGS[name])))
    conn.commit()


# Queued entries not due by the pinned clock: those held back.
HELD = """
    SELECT count(*) FROM batchctl.batch_entries e
     WHERE e.tenant_id = %s AND e.status = 'queued' AND e.next_attempt_at > %s"""


def claim_once(conn: Conn, tenant: UUID, plan: Plan, into: Claims | None) -> list[Any]:
    """One claim in its own transaction, rolled back: the next claim sees the same state."""
    try:
        t0 = time.perf_counter()
        rows = conn.execute(
            "SELECT entry_id, to_phone FROM batchctl.claim_entries(%s, %s, 60)",
            (WORKER, plan.claim),
        ).fetchall()
        ms = (time.perf_counter() - t0) * 1000
        if into is not None:
            assert rows, "the claim handed out nothing: the pinned clock should allow calls"
            held = one(conn, HELD, tenant, NOW)
            into.ms.append(ms)
            into.handed_out.append(len(rows))
            into.held.append(held)
        return rows
    finally:
        conn.rollback()


def function_stats(conn: Conn) -> dict[str, tuple[int, float, float]]:
    """calls, total ms, self ms per batchctl function (track_functions = all), this session's
    pending counts flushed first."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute("""
        SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions
         WHERE schemaname = 'batchctl'""").fetchall()
    conn.rollback()
    return {name: (calls, total, self_) for name, calls, total, self_ in rows}


def breakdown(
    before: dict[str, tuple[int, float, float]],
    after: dict[str, tuple[int, float, float]],
    claims: int,
) -> list[str]:
    diff = []
    for name, (calls, total, self_) in after.items():
        c0, t0, s0 = before.get(name, (0, 0.0, 0.0))
        if calls > c0:
            diff.append((total - t0, self_ - s0, calls - c0, name))
    diff.sort(reverse=True)
    return [
        f"    {name:<24}{calls / claims:>11.1f}{self_ms / claims:>13.3f}{total_ms / claims:>14.3f}"
        for total_ms, self_ms, calls, name in diff[:8]
    ]


def pinned(conn: Conn) -> None:
    """The claim's clock at NOW for this session (sql/027: batchctl.clock(), a superuser's)."""
    conn.execute("SELECT set_config('batchctl.now', %s, false)", (NOW.isoformat(),))
    conn.commit()


def measure(url: str, tenant: UUID, plan: Plan) -> dict[str, Claims]:
    """Alternating rounds of both configurations on one connection, then the server time per
    function of each configuration's claims (track_functions)."""
    results = {name: Claims() for name in CONFIGS}
    stats: dict[str, list[str]] = {}
    with psycopg.connect(url) as conn:
        # The timed claims without the per-function timing (its overhead grows with the calls).
        conn.execute("SET track_functions = 'none'")
        pinned(conn)
        waiting = one(conn, HELD, tenant, NOW)  # held back before (the sweep's, in B)
        conn.rollback()
        # Warm-up: each configuration's plans and pages, twice.
        for _ in range(2):
            for name in CONFIGS:
                set_config(conn, tenant, name)
                for _ in range(2):
                    claim_once(conn, tenant, plan, None)
        names = list(CONFIGS)
        for r in range(plan.rounds):
            # Alternating order, so that neither configuration always follows the other.
            for name in names if r % 2 == 0 else names[::-1]:
                set_config(conn, tenant, name)
                for _ in range(plan.claims):
                    claim_once(conn, tenant, plan, results[name])
    for c in results.values():
        c.held = [n - waiting for n in c.held]
    # Per configuration, on a connection of its own (track_functions = all there): warmed up
    # (its plans made), its counts flushed to the cumulative statistics before and after.
    for name in CONFIGS:
        with psycopg.connect(url) as probe:
            pinned(probe)
            set_config(probe, tenant, name)
            for _ in range(2):
                claim_once(probe, tenant, plan, None)
            before = function_stats(probe)
            for _ in range(plan.claims):
                claim_once(probe, tenant, plan, None)
            stats[name] = breakdown(before, function_stats(probe), plan.claims)
    for name in CONFIGS:
        print(f"  server time per claim, {name} (pg_stat_user_functions, top 8 by total):")
        print(f"    {'function':<24}{'calls':>11}{'self ms':>13}{'total ms':>14}")
        for line in stats[name]:
            print(line)
    return results


def report(title: str, results: dict[str, Claims], plan: Plan) -> float:
    """The table of both configurations and their ratio; returns the ratio per claim."""
    n = plan.rounds * plan.claims
    print(
        f"\n{title}: claim_entries({plan.claim}), {n} claims per configuration in "
        f"{plan.rounds} alternating rounds, each claim rolled back (medians):"
    )
    print(
        f"  {'configuration':<16}{'ms per claim':>14}{'handed out':>12}{'ms per entry':>14}"
        f"{'held back':>11}"
    )
    for name, c in results.items():
        print(
            f"  {name:<16}{c.per_claim():>14.2f}{statistics.median(c.handed_out):>12.0f}"
            f"{c.per_entry():>14.3f}{statistics.median(c.held):>11.0f}"
        )
    base, full = results["no policy"], results["every rule"]
    ratio = full.per_claim() / base.per_claim()
    per_entry = full.per_entry() / base.per_entry()
    rounds = sorted(
        statistics.median(full.ms[r * plan.claims : (r + 1) * plan.claims])
        / statistics.median(base.ms[r * plan.claims : (r + 1) * plan.claims])
        for r in range(plan.rounds)
    )
    verdict = "met" if ratio <= 1.5 else "NOT met"
    print(
        f"  ratio every rule / no policy: {ratio:.2f} per claim, {per_entry:.2f} per entry "
        f"handed out (target <= 1.5: {verdict}); per round {rounds[0]:.2f}-{rounds[-1]:.2f}"
    )
    return ratio


# What the claims that meet the held entries do, once for all of them (committed): the steady
# state, where every entry waiting for a rule or a limit has been moved to its moment.
HOLD_ALL = """
    SELECT batchctl.hold_back(coalesce(array_agg(h.entry_id), '{}'),
                              coalesce(array_agg(h.opens), '{}'),
                              coalesce(array_agg(h.rule), '{}'), %s)
      FROM batchctl.dial_holds(ARRAY(SELECT e.id FROM batchctl.batch_entries e
                                      WHERE e.tenant_id = %s AND e.status = 'queued'),
                               %s, true) h"""


def held_by_rule(conn: Conn, tenant: UUID) -> Counter[str]:
    """What holds each queued entry with every rule, by the claim's clock (dial_holds over all
    of them, the sweep's view): the share of numbers the caps and cool-offs really hold."""
    rows = conn.execute(
        """
        SELECT coalesce(h.rule, 'call window')
          FROM batchctl.dial_holds(
                 ARRAY(SELECT e.id FROM batchctl.batch_entries e
                        WHERE e.tenant_id = %s AND e.status = 'queued'), %s, true) h""",
        (tenant, NOW),
    ).fetchall()
    conn.rollback()
    return Counter(r[0] for r in rows)


def explain(url: str, tenant: UUID, plan: Plan) -> None:
    """The plans of the statements a claim with every rule runs (auto_explain of nested
    statements, sent to this client as notices), each with its time and buffers; a statement
    run many times (contact_wait's, once per entry looked at) is printed once, with its count."""
    notices: list[str] = []
    with psycopg.connect(url) as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        set_config(conn, tenant, "every rule")
        conn.execute("LOAD 'auto_explain'")
        for setting, value in (
            ("batchctl.now", NOW.isoformat()),
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_buffers", "on"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_level", "notice"),
        ):
            conn.execute("SELECT set_config(%s, %s, false)", (setting, value))
        conn.commit()
        notices.clear()
        claim_once(conn, tenant, plan, None)
    by_text: dict[str, list[str]] = {}
    for message in notices:
        lines = message.splitlines()
        text = next((ln for ln in lines if ln.startswith("Query Text:")), "")
        # SQL-standard bodies have no text: their plan's first node tells them apart.
        node = next((ln for ln in lines[1:] if not ln.startswith("Query ")), "")
        by_text.setdefault(text + node.split("(cost")[0], []).append(message)
    print(
        "\n  plans of one claim with every rule (auto_explain, nested statements; long lines cut):"
    )
    for messages in by_text.values():
        print(f"  -- run {len(messages)} time(s) in the claim; the first:")
        for line in messages[0].splitlines():
            print("    " + (line if len(line) <= 200 else line[:200] + " …"))


def compliance(url: str, plan: Plan, with_explain: bool) -> None:
    section("1. claim_entries with every rule, over a call history")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET track_functions = 'all'").format(
                sql.Identifier(COMPLIANCE_DB)
            )
        )
        rules = conn.execute("""
            SELECT string_agg(jurisdiction || coalesce(' ' || max_calls || '/' || cap_window, '')
                              || coalesce(' cool-off ' || refusal_cooloff, ''), ', '
                              ORDER BY jurisdiction)
              FROM batchctl.jurisdiction_rules""").fetchone()
        assert rules is not None and rules[0], "the shipped jurisdiction rules are missing"
        print(f"jurisdiction rules as shipped: {rules[0]}")
        if not one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = session_user"):
            sys.exit("claim_compliance: pinning the claim's clock (batchctl.now) needs a superuser")
        tenant: UUID = one(conn, "SELECT batchctl.create_tenant('compliance', 1000, 'UTC')")
    load_history(url, tenant, plan)
    with psycopg.connect(url) as conn:
        create_running(conn, tenant, plan)
        conn.commit()
        conn.execute("ANALYZE batchctl.batch_entries")
        conn.execute("ANALYZE batchctl.batches")
        conn.commit()
        pinned(conn)
        assert one(conn, "SELECT batchctl.clock()") == NOW, "the claim's clock is not pinned"
        conn.rollback()
        set_config(conn, tenant, "every rule")
        held = held_by_rule(conn, tenant)
    queued = plan.running * plan.queued
    print(
        f"clock pinned at {NOW:%a %Y-%m-%d %H:%M} UTC; with every rule, of the {queued:,} queued "
        f"entries {sum(held.values()):,} are held back ("
        + ", ".join(f"{k} {n:,}" for k, n in held.most_common())
        + ")"
    )
    print(
        "\nA. first look: every claim meets the held entries at the front of its batches "
        "(each claim rolled back, so each holds them back again, as the first claim after they "
        "became due does)"
    )
    first = report("A. first look", measure(url, tenant, plan), plan)
    with psycopg.connect(url) as conn:
        set_config(conn, tenant, "every rule")
        t0 = time.perf_counter()
        moved = one(conn, HOLD_ALL, NOW, tenant, NOW)
        conn.commit()
        # As autovacuum would soon: the moved entries' old index entries are not read again.
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE batchctl.batch_entries")
        print(
            f"\nB. steady state: every entry a rule or a limit holds (dial_holds, by the pinned "
            f"clock) held back, committed and vacuumed, as the claims that meet them do, in "
            f"{time.perf_counter() - t0:.1f} s: {moved:,} entries; both configurations now see "
            "only the entries that may be dialled"
        )
    steady = report("B. steady state", measure(url, tenant, plan), plan)
    print(
        f"\nratio every rule / no policy, per claim: first look {first:.2f}, "
        f"steady state {steady:.2f} (target <= 1.5)"
    )
    if with_explain:
        explain(url, tenant, plan)


def run(admin_url: str, plan: Plan, with_explain: bool = False) -> None:
    # Not benchlib's migrated scratch database: that one deletes the shipped rules.
    with scratch_database(admin_url, COMPLIANCE_DB, migrated=False) as url:
        upgrade(url)
        compliance(url, plan, with_explain)


def main() -> None:
    with_explain = "--explain" in sys.argv
    if with_explain:
        sys.argv.remove("--explain")
    part: Callable[[str, Any], None] = partial(run, with_explain=with_explain)
    run_parts(
        __doc__.split("\n\n")[0] + " (--explain: the plans of a claim with every rule)",
        [Part(FULL, QUICK, part), lifecycle_flat.PART],
    )


PART = Part(FULL, QUICK, run)

if __name__ == "__main__":
    main()
