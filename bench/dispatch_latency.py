"""NOTIFY-to-dial latency: from a call slot freeing (a call's final report committing) to the
next entry's CreateDispatch arriving at LiveKit, with batchctl's daemon woken by NOTIFY, and
with the reference design's 5-second polling loop measured in the same run.

    python bench/dispatch_latency.py [--calls 2000] [--tenants 10] [--light-tenants 2]
                                     [--baseline-calls 12]

Each tenant may have one call in flight, so its calls follow one another and every gap between
one call's final report (the simulator's agent: report_call_status returned) and the next
CreateDispatch (the simulator: request arrived) is one latency sample. The LiveKit simulator's
calls take no time, so the gaps are batchctl's own. Measured twice: with few tenants, where the
machine has room to spare, and with many, as fast as the machine goes (then the gaps include
waiting for a CPU: the benchmark, PostgreSQL, the daemon and the simulator share the cores).
Prints percentiles; asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psycopg

from batchctl.config import LiveKitCredentials
from batchctl.sim import Scenario, StatsSnapshot
from batchctl.sim.threaded import RunningSimulator, run_simulator
from benchlib import machine, percentile, scratch_database, section, server

CREDENTIALS = LiveKitCredentials("bench-key", "bench-secret-of-at-least-32-bytes!!")
INSTANT_CALLS = Scenario.from_dict(
    {"mode": "agent", "outcomes": {"ended": 1}, "join_delay_s": 0, "ring_time_s": 0,
     "call_length_s": 0}
)  # fmt: skip
TERMINAL = {"ended", "completed", "failed", "cancelled"}


def campaign(url: str, tenants: int, calls: int, name: str = "t") -> list[str]:
    """``tenants`` tenants of one call slot each, ``calls`` entries spread over them."""
    per_tenant = calls // tenants
    with psycopg.connect(url, autocommit=True) as conn:
        batch_ids = []
        for t in range(tenants):
            tenant = conn.execute(
                "SELECT batchctl.create_tenant(%s, 1)", (f"{name}{t}",)
            ).fetchone()
            entries = [{"to_phone": f"+1{200 + t}555{i:04d}"} for i in range(per_tenant)]
            row = conn.execute(
                "SELECT batchctl.create_batch(%s, %s::jsonb)",
                (tenant[0], psycopg.types.json.Jsonb(entries)),  # type: ignore[index]
            ).fetchone()
            batch_ids.append(str(row[0]))  # type: ignore[index]
    return batch_ids


def run_daemon_until_done(url: str, sim: RunningSimulator, log: Path, *options: str) -> None:
    command = [
        sys.executable, "-m", "batchctl", "--database-url", url, "daemon",
        "--livekit-url", sim.url, "--livekit-api-key", CREDENTIALS.api_key,
        "--livekit-api-secret", CREDENTIALS.api_secret, "--agent-name", "bench-agent",
        "--log-level", "WARNING", *options,
    ]  # fmt: skip
    with log.open("wb") as out:
        daemon = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            while conn.execute(
                "SELECT count(*) FROM batchctl.batches WHERE finished_at IS NULL"
            ).fetchone() != (0,):
                if daemon.poll() is not None:
                    raise SystemExit(f"the daemon exited: see {log}")
                time.sleep(0.05)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)


def gaps(stats: StatsSnapshot) -> list[float]:
    """Per tenant: each dispatch's arrival minus the previous call's final report (ms)."""
    tenant_of = {d.room: d.tenant_id for d in stats.dispatches}
    freed: dict[str, list[float]] = defaultdict(list)
    for report in stats.reports:
        if report.status in TERMINAL:
            freed[tenant_of[report.room]].append(report.at)
    samples = []
    for tenant, ends in freed.items():
        starts = sorted(d.at for d in stats.dispatches if d.tenant_id == tenant)
        samples += [
            (start - end) * 1000 for end, start in zip(sorted(ends), starts[1:], strict=False)
        ]
    return samples


def warm_up(url: str, tenants: int, calls: int, log: Path) -> None:
    """A first campaign, then ANALYZE: the tables hold calls and events, with statistics, as a
    running system's do (plans made for the empty tables would scan call_logs)."""
    campaign(url, tenants, calls, "warm-up-")
    with run_simulator(url, INSTANT_CALLS, CREDENTIALS) as sim:
        run_daemon_until_done(url, sim, log)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def measure(
    url: str, tenants: int, calls: int, log: Path, *options: str, name: str = "t"
) -> list[float]:
    campaign(url, tenants, calls, name)
    with run_simulator(url, INSTANT_CALLS, CREDENTIALS) as sim:
        started = time.perf_counter()
        run_daemon_until_done(url, sim, log, *options)
        elapsed = time.perf_counter() - started
        samples = gaps(sim.stats())
    print(f"  {calls} calls in {elapsed:.1f} s ({calls / elapsed:.0f} calls/s)")
    return samples


def show(name: str, samples: list[float]) -> tuple[float, float]:
    p50, p90, p99 = (percentile(sorted(samples), p) for p in (50, 90, 99))
    print(f"  {name}: n={len(samples)}  p50 {p50:.1f} ms  p90 {p90:.1f} ms  p99 {p99:.1f} ms"
          f"  max {max(samples):.1f} ms")  # fmt: skip
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--light-tenants", type=int, default=2)
    parser.add_argument("--baseline-calls", type=int, default=12)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="batchctl-bench-latency-"))
    with server() as server_url:
        with psycopg.connect(server_url) as conn:
            print(machine(conn))
        with scratch_database(server_url, "batchctl_bench_notify") as url:
            warm_up(url, args.tenants, args.calls // 4, logs / "warm-up.log")
            section(f"NOTIFY, {args.light_tenants} tenants: batchctl's daemon (woken by LISTEN, "
                    "poll every 2 s as a fallback), the machine not saturated")  # fmt: skip
            notify = show("slot freed -> CreateDispatch",
                          measure(url, args.light_tenants, args.calls // 2, logs / "light.log",
                                  name="light-"))  # fmt: skip
            section(f"NOTIFY, {args.tenants} tenants: as fast as the machine goes")
            show("slot freed -> CreateDispatch",
                 measure(url, args.tenants, args.calls, logs / "notify.log"))  # fmt: skip
        section("baseline: the reference design's 5-second polling loop (no LISTEN)")
        with scratch_database(server_url, "batchctl_bench_poll") as url:
            samples = measure(url, 2, args.baseline_calls, logs / "poll.log",
                              "--no-listen", "--poll-interval", "5")  # fmt: skip
            poll = show("slot freed -> CreateDispatch", samples)
    print(f"\n  polling / NOTIFY ({args.light_tenants} tenants): p50 {poll[0] / notify[0]:.0f}x, "
          f"p99 {poll[1] / notify[1]:.0f}x;"
          f" daemon logs in {logs}")  # fmt: skip


if __name__ == "__main__":
    main()
