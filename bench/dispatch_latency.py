"""NOTIFY-to-dial latency: from a call slot freeing (a call's final report committing) to the
next entry's CreateDispatch arriving at LiveKit, with batchctl's daemon woken by NOTIFY, and
with the reference design's 5-second polling loop measured in the same run; then a trunk's
pacing: the calls started per second against its max_cps.

    python bench/dispatch_latency.py [--calls 2000] [--tenants 10] [--light-tenants 2]
                                     [--baseline-calls 12] [--cps 10] [--seconds 60]

Each tenant may have one call in flight, so its calls follow one another and every gap between
one call's final report (the simulator's agent: report_call_status returned) and the next
CreateDispatch (the simulator: request arrived) is one latency sample. The LiveKit simulator's
calls take no time, so the gaps are batchctl's own. Measured twice: with few tenants, where the
machine has room to spare, and with many, as fast as the machine goes (then the gaps include
waiting for a CPU: the benchmark, PostgreSQL, the daemon and the simulator share the cores).
The few-tenant campaign is four runs of --calls/4, alternating without and with trunks: every
tenant on a SIP trunk (docs/trunks.md) whose CPS limit it never reaches (max_cps 1000), with a
pool of caller IDs. The claim then gives each call a pacing slot and a caller ID; the ratio of
the two sides' percentiles shows what that costs.

The pacing row: one tenant with room for 200 calls in flight, one trunk at --cps, and instant
calls enough for longer than --seconds. Counted at the simulator: the CreateDispatch requests
that arrived from the first one's arrival to --seconds later, and the most in any one-second
window (sliding) among them; the batch is cancelled once the window is over. The claim spaces
a trunk's calls 1.04/max_cps apart (a 4% guard for jitter), so 10 CPS gives ~577 calls in 60 s.
Prints percentiles and counts; asserts nothing.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
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


CALLER_IDS = ["+13055550100", "+13055550101", "+13055550102", "+13055550103"]


def campaign(
    url: str,
    tenants: int,
    calls: int,
    name: str = "t",
    *,
    trunk_cps: float | None = None,
    slots: int = 1,
) -> list[str]:
    """``tenants`` tenants of ``slots`` call slots each, ``calls`` entries spread over them.
    With ``trunk_cps``, each tenant's calls go out on its own trunk of that max_cps (its first,
    so its default) with a pool of CALLER_IDS."""
    per_tenant = calls // tenants
    with psycopg.connect(url, autocommit=True) as conn:
        batch_ids = []
        for t in range(tenants):
            tenant = conn.execute(
                "SELECT batchctl.create_tenant(%s, %s)", (f"{name}{t}", slots)
            ).fetchone()
            if trunk_cps is not None:
                trunk = conn.execute(
                    "SELECT batchctl.create_trunk(%s, 'bench', 'ST_bench', %s)",
                    (tenant[0], trunk_cps),  # type: ignore[index]
                ).fetchone()
                conn.execute(
                    "SELECT batchctl.add_caller_ids(%s, %s, %s)",
                    (tenant[0], trunk[0], CALLER_IDS),  # type: ignore[index]
                )
            entries = [{"to_phone": f"+1{200 + t}555{i:04d}"} for i in range(per_tenant)]
            row = conn.execute(
                "SELECT batchctl.create_batch(%s, %s::jsonb)",
                (tenant[0], psycopg.types.json.Jsonb(entries)),  # type: ignore[index]
            ).fetchone()
            batch_ids.append(str(row[0]))  # type: ignore[index]
    return batch_ids


def run_daemon_until_done(
    url: str,
    sim: RunningSimulator,
    log: Path,
    *options: str,
    tick: Callable[[], object] | None = None,
) -> None:
    """Runs a daemon until every batch has finished; ``tick`` is called every 50 ms meanwhile
    (the pacing row cancels its batch from it)."""
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
                if tick is not None:
                    tick()
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
    url: str,
    tenants: int,
    calls: int,
    log: Path,
    *options: str,
    name: str = "t",
    trunk_cps: float | None = None,
) -> list[float]:
    campaign(url, tenants, calls, name, trunk_cps=trunk_cps)
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


def pacing(url: str, cps: float, seconds: float, log: Path) -> None:
    """The pacing row: the calls started at the simulator in ``seconds`` on one trunk of
    ``cps``, and the most in any one-second window."""
    calls = int(cps * seconds * 1.2) + 50
    (batch,) = campaign(url, 1, calls, "paced-", trunk_cps=cps, slots=200)
    window_end: list[float] = []

    def cancel_when_over(sim: RunningSimulator) -> None:
        dispatches = sim.stats().dispatches
        if not dispatches or len(window_end) > 1:
            return
        if not window_end:
            window_end.append(min(d.at for d in dispatches) + seconds)
        elif time.time() > window_end[0] + 1:  # late arrivals of the window's last slots
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "SELECT batchctl.cancel_batch(tenant_id, id, 'bench window over')"
                    "  FROM batchctl.batches WHERE id = %s",
                    (batch,),
                )
            window_end.append(time.time())

    with run_simulator(url, INSTANT_CALLS, CREDENTIALS) as sim:
        run_daemon_until_done(url, sim, log, tick=lambda: cancel_when_over(sim))
        starts = sorted(d.at for d in sim.stats().dispatches)
    first = starts[0]
    inside = [at for at in starts if at < first + seconds]
    most, j = 0, 0
    for i, at in enumerate(inside):  # windows [at, at + 1 s) starting at each start
        while j < len(inside) and inside[j] < at + 1:
            j += 1
        most = max(most, j - i)
    expected = cps * seconds
    print(f"  configured {cps:g} CPS for {seconds:g} s: {len(inside)} calls started (expected "
          f"{expected:.0f} x 1/1.04 guard = {expected / 1.04:.0f}), max in any 1-s window "
          f"{most}; {len(starts)} started in all before the batch was cancelled")  # fmt: skip
    spaced = [(b - a) * 1000 for a, b in pairwise(inside)]
    if len(spaced) > 1:
        print(f"  time between starts: first {spaced[0]:.0f} ms, then min {min(spaced[1:]):.0f}"
              f" / median {percentile(sorted(spaced), 50):.0f} / max {max(spaced):.0f} ms"
              f" (slots {1040 / cps:.0f} ms apart)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--light-tenants", type=int, default=2)
    parser.add_argument("--baseline-calls", type=int, default=12)
    parser.add_argument("--cps", type=float, default=10, help="the pacing row's max_cps")
    parser.add_argument("--seconds", type=float, default=60, help="the pacing row's window")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="batchctl-bench-latency-"))
    with server() as server_url:
        with psycopg.connect(server_url) as conn:
            print(machine(conn))
        with scratch_database(server_url, "batchctl_bench_notify") as url:
            warm_up(url, args.tenants, args.calls // 4, logs / "warm-up.log")
            section(f"NOTIFY, {args.light_tenants} tenants: batchctl's daemon (woken by LISTEN, "
                    "poll every 2 s as a fallback), the machine not saturated; without trunks "
                    "and with (max_cps 1000, 4 caller IDs), two alternating runs each")  # fmt: skip
            light: dict[bool, list[float]] = {False: [], True: []}
            for run in range(4):
                trunks = run % 2 == 1
                light[trunks] += measure(
                    url, args.light_tenants, args.calls // 4, logs / f"light-{run}.log",
                    name=f"light-{run}-", trunk_cps=1000 if trunks else None,
                )  # fmt: skip
            notify = show("slot freed -> CreateDispatch, no trunks", light[False])
            trunked = show("slot freed -> CreateDispatch, trunks   ", light[True])
            print(f"  trunks / no trunks: p50 {trunked[0] / notify[0]:.2f}, "
                  f"p99 {trunked[1] / notify[1]:.2f}")  # fmt: skip
            section(f"NOTIFY, {args.tenants} tenants: as fast as the machine goes")
            show("slot freed -> CreateDispatch",
                 measure(url, args.tenants, args.calls, logs / "notify.log"))  # fmt: skip
        section("baseline: the reference design's 5-second polling loop (no LISTEN)")
        with scratch_database(server_url, "batchctl_bench_poll") as url:
            samples = measure(url, 2, args.baseline_calls, logs / "poll.log",
                              "--no-listen", "--poll-interval", "5")  # fmt: skip
            poll = show("slot freed -> CreateDispatch", samples)
        section(f"pacing: one trunk at max_cps {args.cps:g}, 200 call slots, instant calls")
        with scratch_database(server_url, "batchctl_bench_pacing") as url:
            pacing(url, args.cps, args.seconds, logs / "pacing.log")
    print(f"\n  polling / NOTIFY ({args.light_tenants} tenants): p50 {poll[0] / notify[0]:.0f}x, "
          f"p99 {poll[1] / notify[1]:.0f}x;"
          f" daemon logs in {logs}")  # fmt: skip


if __name__ == "__main__":
    main()
