"""Ingest benchmark: how fast a lead CSV file becomes a running batch.

    python bench/ingest.py [--rows 100000]

Writes a CSV of distinct North American numbers (half E.164, half national, a few with their
own time zone, three context columns), then measures, each on a fresh batch:

  read      reading the file's records only (batchctl.leads.csvfile), no number parsing
  parse     reading the file and normalising the numbers (batchctl.leads.rows), no database:
            in one process, and spread over the CPUs as `batchctl batch create` does
  import    batchctl.leads.staging.import_batch: the code path of `batchctl batch create`
            (chunks of 5,000 parsed by worker processes, each COPYed into a temporary table,
            zone-checked and stored by create_batch_from_rows / add_entries while the next
            ones are parsed); then the same two steps one after the other for the whole file:
            stage (parse + COPY + zone check) and create (the staged rows handed to
            batchctl.create_batch_from_rows), and beside them the server's floor: the same rows
            inserted into a bare table, with no index and with the two unique keys any design
            needs
  cli       `batchctl batch create` as a subprocess (adds interpreter start-up)
  ceiling   the most any overlap of parsing and storing could give on this machine: its CPUs
            divided by the CPU time one row takes (parsed in one process, then created)

The target (issue 6) is 50,000 rows/s for the whole path. It prints figures and asserts
nothing. It runs on a fresh embedded PostgreSQL (temp data directory, deleted afterwards), or
on the server named by BATCHCTL_DATABASE_URL, where it creates a scratch database and drops it.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from batchctl.leads.csvfile import read_records
from batchctl.leads.parallel import available_cpus
from batchctl.leads.rows import LEAD_COLUMNS, PHONE, read_leads
from batchctl.leads.staging import (
    STAGE,
    create_batch_from_stage,
    import_batch,
    open_stage,
    stage_leads,
)
from benchlib import machine, scratch_database, server

T = TypeVar("T")

BENCH_DB = "batchctl_bench_ingest"
TARGET = 50_000
CPUS = available_cpus()
# Area codes in several zones; exchanges 200-999 and any line number are valid NANP numbers.
AREA_CODES = ("212", "305", "312", "415", "503", "512", "602", "617", "702", "713", "808")
ZONES = ("America/New_York", "America/Chicago", "Europe/London")


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(6)
    numbers = rng.sample(range(len(AREA_CODES) * 800 * 10_000), rows)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["phone", "name", "lead_id", "timezone", "company", "plan", "notes"])
        for i, n in enumerate(numbers):
            area, rest = divmod(n, 800 * 10_000)
            exchange, line = divmod(rest, 10_000)
            digits = f"{AREA_CODES[area]}{exchange + 200}{line:04d}"
            phone = f"+1{digits}" if i % 2 else f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
            zone = ZONES[i % 3] if i % 10 == 0 else ""
            writer.writerow([phone, f"Lead {i}", f"L-{i}", zone, f"Company {i % 997}",
                             ("starter", "pro", "enterprise")[i % 3], "renewal due"])  # fmt: skip


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def report(label: str, seconds: float, rows: int) -> None:
    print(f"  {label:<34} {seconds:7.2f} s  {rows / seconds:>9,.0f} rows/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rows: int = args.rows
    work = Path(tempfile.mkdtemp(prefix="batchctl-bench-csv-"))
    try:
        path = work / "leads.csv"
        write_csv(path, rows)
        print(f"{rows:,} rows, {path.stat().st_size / 1e6:.1f} MB; target {TARGET:,} rows/s")

        def read() -> int:
            with path.open(newline="", encoding="utf-8-sig") as stream:
                return sum(1 for _ in read_records(stream, LEAD_COLUMNS, PHONE))

        def parse(workers: int) -> int:
            with path.open(newline="", encoding="utf-8-sig") as stream:
                return sum(1 for _ in read_leads(stream, "US", workers=workers))

        with (
            server() as admin_url,
            scratch_database(admin_url, BENCH_DB) as url,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            print(machine(conn))
            report("read the records only", timed(read)[0], rows)
            serial_parse_s = timed(lambda: parse(1))[0]
            report("parse, one process (no database)", serial_parse_s, rows)
            report(f"parse, {CPUS} processes (no database)", timed(lambda: parse(CPUS))[0], rows)
            create_s = run(conn, url, path, rows)
            print(
                f"  ceiling on {CPUS} CPUs: {CPUS * rows / (serial_parse_s + create_s):,.0f} rows/s"
                f" (each row's CPU time: parse {1e6 * serial_parse_s / rows:.0f} µs +"
                f" create {1e6 * create_s / rows:.0f} µs, with parsing and storing perfectly"
                " overlapped)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


# What the server alone takes to store the same rows, for scale: a plain INSERT ... SELECT of
# the staged leads into a table with batch_entries' columns and nothing else, then with its two
# unique keys (id; batch and number), which any design needs.
FLOORS = (
    ("bare rows, no index", ""),
    ("bare rows, 2 unique keys", ", PRIMARY KEY (id), UNIQUE (batch_id, to_phone)"),
)


def insert_floor(conn: psycopg.Connection[Any], keys: str) -> None:
    conn.execute(
        "CREATE TABLE bench_floor (LIKE batchctl.batch_entries INCLUDING DEFAULTS"
        f" EXCLUDING CONSTRAINTS{keys})"
    )
    conn.execute(
        "INSERT INTO bench_floor (batch_id, tenant_id, entry_index, to_phone, lead_id, lead_name,"
        " context, timezone) SELECT gen_random_uuid(), gen_random_uuid(), line, to_phone,"
        f" lead_id, lead_name, context, coalesce(timezone, number_timezone) FROM {STAGE}"
    )
    conn.execute("DROP TABLE bench_floor")


def run(conn: psycopg.Connection[Any], url: str, path: Path, rows: int) -> float:
    """Prints the import's figures; returns the seconds create_batch_from_rows took."""
    row = conn.execute("SELECT batchctl.create_tenant('bench', 10)").fetchone()
    assert row is not None
    tenant = row[0]

    def whole() -> Any:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            return import_batch(conn, tenant, read_leads(stream, "US", workers=CPUS), {})

    seconds, (batch, skipped) = timed(whole)
    assert not skipped
    report("import (batch create's path)", seconds, rows)

    with conn.transaction(), path.open(newline="", encoding="utf-8-sig") as stream:
        open_stage(conn)
        stage_s, staged = timed(lambda: stage_leads(conn, read_leads(stream, "US", workers=CPUS)))
        create_s, _ = timed(lambda: create_batch_from_stage(conn, tenant, {}))
        floors = [(label, timed(partial(insert_floor, conn, keys))[0]) for label, keys in FLOORS]
    assert not staged.problems
    report("  stage: parse + COPY + zone check", stage_s, rows)
    report("  create: create_batch_from_rows", create_s, rows)
    for label, seconds in floors:
        report(f"  floor: {label}", seconds, rows)

    command = [sys.executable, "-m", "batchctl", "--database-url", url, "batch", "create",
               str(tenant), "--csv", str(path), "--default-region", "US"]  # fmt: skip
    seconds, done = timed(lambda: subprocess.run(command, capture_output=True, text=True))
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    report("cli (batchctl batch create)", seconds, rows)
    status = conn.execute("SELECT batchctl.batch_status(%s, %s)", (tenant, batch)).fetchone()
    assert status is not None and status[0]["total"] == rows, status
    return create_s


if __name__ == "__main__":
    main()
