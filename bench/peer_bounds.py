"""What batchctl's guarantees cost on the path bench/peer.py measures, and so how far from
PgQueuer giving each of them up would take it.

    python bench/peer_bounds.py [--rounds 4] [--seconds 4]

The batched loop of bench/peer.py (claim_entries(10) -> mark_dispatched_many ->
report_call_statuses(ended)) runs with the trigger functions as shipped, then with parts of
them taken out, and PgQueuer's loop runs beside them: short runs, alternating round by round,
on one server, so that a noisy neighbour hits every variant alike; the medians are printed.

  without event rows      the audit trail (an events row per status change) is not written
  without notifications   no batchctl_dispatch / batchctl_progress NOTIFY
  without batch counters  no counter update on the batch row (so no completion either)

Each is an upper bound of what dropping that guarantee would buy: the variants are not
correct systems. The functions are replaced in the benchmark's scratch database only, and the
script stops if the SQL no longer has the statements it takes out.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchlib import machine, scratch_database, section, server
from peer import (
    PEER_DB,
    PGQUEUER_DB,
    Client,
    batchctl_client,
    install_pgqueuer,
    load_campaign,
    pgqueuer_client,
    run_clients,
)

SQL = Path(__file__).resolve().parents[1] / "sql"
TRIGGER_FILES = ("030_batch_triggers.sql", "032_entry_triggers.sql", "034_call_triggers.sql")
Definitions = dict[str, str]  # file name -> its text


def cut(text: str, pattern: str) -> str:
    """``text`` without the statements matching ``pattern``; stops when none matches."""
    out, found = re.subn(pattern, "", text, flags=re.S)
    if not found:
        raise SystemExit(f"the SQL no longer matches {pattern!r}: update bench/peer_bounds.py")
    return out


def without_events(sql: Definitions) -> Definitions:
    return {
        name: text if name == TRIGGER_FILES[0] else cut(text, r"    INSERT INTO events \(.*?;\n")
        for name, text in sql.items()
    }


def without_notifications(sql: Definitions) -> Definitions:
    return {
        name: cut(text, r"\n *PERFORM pg_notify\('batchctl_(dispatch|progress)'.*?;")
        if name != TRIGGER_FILES[2]
        else text
        for name, text in sql.items()
    }


def without_counters(sql: Definitions) -> Definitions:
    # Only the update path's: the insert's counters are what make a new batch claimable.
    entries = TRIGGER_FILES[1]
    text = sql[entries]
    start = text.index("    UPDATE batches b\n       SET queued_count")
    return {**sql, entries: text[:start] + text[text.index(";\n", start) + 2 :]}


VARIANTS: dict[str, Callable[[Definitions], Definitions]] = {
    "as shipped": lambda sql: sql,
    "without event rows": without_events,
    "without notifications": without_notifications,
    "without batch counters": without_counters,
    "without all three": lambda sql: without_counters(without_notifications(without_events(sql))),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    shipped = {name: (SQL / name).read_text() for name in TRIGGER_FILES}
    variants = {label: change(shipped) for label, change in VARIANTS.items()}
    with (
        server() as admin_url,
        scratch_database(admin_url, PEER_DB) as url,
        scratch_database(admin_url, PGQUEUER_DB, migrated=False) as pgq_url,
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(pgq_url, autocommit=True) as pgq_conn,
    ):
        print(machine(conn))
        asyncio.run(install_pgqueuer(pgq_url))
        # Every batchctl run of every round takes entries from the same queue.
        per_run = 4_000 * args.seconds
        load_campaign(url, entries=int(per_run * args.rounds * len(variants) * 1.2))
        asyncio.run(run_clients(url, 4, 1.0, batchctl_client))
        asyncio.run(run_clients(pgq_url, 4, 1.0, pgqueuer_client))
        for database in (conn, pgq_conn):
            database.execute("ANALYZE")

        def measure(target: str, client: Client) -> float:
            return asyncio.run(run_clients(target, 4, args.seconds, client))

        section(f"4 clients, {args.rounds} rounds of {args.seconds:.0f} s per variant")
        pgqueuer: list[float] = []
        rates: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.rounds):
            pgqueuer.append(measure(pgq_url, pgqueuer_client))
            for label, definitions in variants.items():
                for text in definitions.values():
                    conn.execute(text)
                rates[label].append(measure(url, batchctl_client))
        for text in shipped.values():
            conn.execute(text)
    jobs = statistics.median(pgqueuer)
    shipped_rate = statistics.median(rates["as shipped"])
    print(f"  {'PgQueuer enqueue -> dequeue -> ack':<36}{jobs:8,.0f} jobs/s")
    for label, values in rates.items():
        rate = statistics.median(values)
        print(
            f"  batchctl {label:<27}{rate:8,.0f} entries/s  x{rate / shipped_rate:.2f}"
            f"  ratio to PgQueuer {rate / jobs:.2f}"
        )


if __name__ == "__main__":
    main()
