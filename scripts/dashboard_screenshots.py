"""Takes the dashboard's screenshots for the docs (docs/dashboard-campaigns.png and
docs/dashboard-batch.png) from a real campaign on this machine, nothing outside it:

- an embedded PostgreSQL in a temporary directory, upgraded (as `batchctl demo` does), whose
  tenants have the calling-hours rules switched off by their policy (the simulator's calls reach
  no one, and the screenshots are taken at any hour);
- the LiveKit SIMULATOR on a thread and a real ``batchctl daemon`` process dialling it;
- two tenants: "Northwind Clinics" with a finished batch and a paused one, "Demo Dental" with a
  batch of a few hundred leads, running (with retries, so some entries wait and some fail);
- the dashboard on a thread, opened in headless Chromium (Debian's chromium and
  chromium-driver: apt-get install chromium chromium-driver) with a 1400x1000 page.

The screenshots are taken mid-campaign: calls live, some errors, the calls-per-minute chart
with bars. Everything is stopped and deleted at the end. Run from the repository's root:

    .venv/bin/python scripts/dashboard_screenshots.py            # about two minutes
    .venv/bin/python scripts/dashboard_screenshots.py --at 0.2   # sooner, fewer minutes drawn
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from batchctl.client.sync import Client
from batchctl.config import LiveKitCredentials
from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.auth import OPERATOR, Token, new_secret
from batchctl.dashboard.threaded import run_dashboard
from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade
from batchctl.sim import Scenario
from batchctl.sim.threaded import run_simulator

ROOT = Path(__file__).resolve().parent.parent
LEADS_CSV = ROOT / "examples" / "leads.csv"
CREDENTIALS = LiveKitCredentials("docs-key", "docs-secret-of-at-least-thirty-two-bytes")
VIEWPORT = (1400, 1000)
# Calls of a few seconds, with the simulator's usual mix of outcomes (some busy, unanswered,
# failed): the running batch takes a few minutes at its tenant's cap.
SCENARIO = {
    "seed": 2026,
    "mode": "agent",
    "join_delay_s": [0.1, 0.4],
    "ring_time_s": [0.5, 3.0],
    "call_length_s": [2.0, 7.0],
}
RETRIES = {"retry_on": ["no_answer", "busy"], "max_attempts": 2, "retry_delay_s": 20}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lead_names() -> list[str]:
    with LEADS_CSV.open(encoding="utf-8", newline="") as f:
        return [row["name"] for row in csv.DictReader(f)]


def leads(count: int, first: int) -> list[dict[str, str]]:
    """``count`` leads with distinct numbers (+1415555xxxx, from ``first``) and the example
    leads' names."""
    names = lead_names()
    return [
        {"to_phone": f"+1415555{i:04d}", "lead_name": names[i % len(names)]}
        for i in range(first, first + count)
    ]


def one(conn: psycopg.Connection[dict[str, Any]], query: str, *args: object) -> dict[str, Any]:
    row = conn.execute(query, args).fetchone()
    assert row is not None, query
    return row


def progress(conn: psycopg.Connection[dict[str, Any]], batch: UUID) -> dict[str, Any]:
    """The batch's share done, its status, its live calls and its entries with an error."""
    return one(
        conn,
        """SELECT b.status::text AS status, b.finished_at IS NOT NULL AS finished,
                  (b.completed_count + b.failed_count + b.declined_count + b.cancelled_count)::float
                      / greatest(b.total, 1) AS done,
                  (SELECT count(*) FROM batchctl.call_logs c
                    WHERE c.batch_id = b.id AND c.status IN ('in_queue', 'ringing', 'ongoing'))
                      AS live,
                  (SELECT count(*) FROM batchctl.batch_entries e
                    WHERE e.batch_id = b.id AND e.last_error IS NOT NULL) AS errors
             FROM batchctl.batches b WHERE b.id = %s""",
        batch,
    )


def wait(what: str, ready: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.25)


@contextmanager
def daemon(database: str, simulator_url: str, log_path: Path) -> Iterator[None]:
    """``batchctl daemon`` dialling the simulator; SIGTERM (a drain) on leaving."""
    command = [
        sys.executable, "-m", "batchctl", "--database-url", database, "daemon",
        "--livekit-url", simulator_url, "--livekit-api-key", CREDENTIALS.api_key,
        "--livekit-api-secret", CREDENTIALS.api_secret, "--agent-name", "docs-agent",
        "--poll-interval", "0.3", "--sweep-every", "1",
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def headless_chromium(width: int, height: int) -> Iterator[WebDriver]:
    """Debian's Chromium through its chromium-driver (never a download), the page sized
    ``width`` x ``height``."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        raise SystemExit("needs Chromium and its driver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        # --window-size counts the browser's own (invisible) top bar: make the page the size.
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        outer = driver.get_window_size()
        driver.set_window_size(
            outer["width"] + width - int(inner[0]), outer["height"] + height - int(inner[1])
        )
        yield driver
    finally:
        driver.quit()


def open_live(driver: WebDriver, url: str) -> None:
    """Opens ``url`` and waits until its live updates are connected."""
    driver.get(url)
    try:
        WebDriverWait(driver, 15, poll_frequency=0.1).until(
            lambda d: d.execute_script(
                "const s = document.getElementById('live-state');"
                "return s !== null && s.dataset.state === 'open';"
            )
        )
    except TimeoutException:
        raise SystemExit(f"the page at {url} never went live") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where to save the PNGs")
    parser.add_argument("--leads", type=int, default=300, help="the running batch's leads")
    parser.add_argument(
        "--at", type=float, default=0.45, help="the running batch's share done at the shots"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="batchctl-shots-") as scratch:
        workdir = Path(scratch)
        database = start_embedded(workdir / "pgdata", dbname="batchctl", cleanup_mode="delete")
        try:
            upgrade(database)
            take_screenshots(database, workdir, args.out, args.leads, args.at)
        finally:
            database.cleanup()


def take_screenshots(database: str, workdir: Path, out: Path, count: int, at: float) -> None:
    with psycopg.connect(database, autocommit=True, row_factory=dict_row) as conn:
        api = Client(conn)
        northwind = api.create_tenant("Northwind Clinics", 6, "America/Chicago")
        dental = api.create_tenant("Demo Dental", 12, "America/New_York")
        for tenant in (northwind, dental):
            # The simulator's calls reach no one, at any hour: no calling-hours rules here
            # (docs/compliance.md). A real tenant keeps them on.
            api.set_policy(tenant, {"jurisdiction_rules": False})
        scenario = Scenario.from_dict(SCENARIO)
        token = Token(OPERATOR, new_secret())
        settings = DashboardSettings(url=database, tokens=[token], refresh_s=2.0)
        with (
            run_simulator(database, scenario, CREDENTIALS) as sim,
            daemon(database, sim.url, workdir / "daemon.log"),
            run_dashboard(settings) as board,
        ):
            log(f"dashboard at {board.url}; daemon log {workdir / 'daemon.log'}")
            finished = api.create_batch(northwind, leads(24, 0), {"report_delay_s": 0})
            wait("the first batch to finish", lambda: progress(conn, finished)["finished"], 120)
            log("Northwind's first batch finished")
            paused = api.create_batch(northwind, leads(80, 100), RETRIES)
            wait("the second batch's first calls", lambda: progress(conn, paused)["done"] >= 0.2,
                 120)  # fmt: skip
            api.pause_batch(northwind, paused)
            log("Northwind's second batch paused")
            running = api.create_batch(dental, leads(count, 1000), RETRIES)

            def mid_campaign() -> bool:
                now = progress(conn, running)
                log(f"  Demo Dental: {now['done']:.0%} done, {now['live']} live, "
                    f"{now['errors']} with an error")  # fmt: skip
                return bool(now["done"] >= at and now["live"] > 0 and now["errors"] > 0)

            deadline = time.monotonic() + 900
            while not mid_campaign():
                if time.monotonic() > deadline:
                    raise SystemExit("the running batch never got to the shots' point")
                time.sleep(5)
            with headless_chromium(*VIEWPORT) as driver:
                driver.get(f"{board.url}/login?token={token.secret}")
                open_live(driver, f"{board.url}/")
                driver.save_screenshot(str(out / "dashboard-campaigns.png"))
                open_live(driver, f"{board.url}/batches/{running}")
                driver.save_screenshot(str(out / "dashboard-batch.png"))
            log(f"saved {out / 'dashboard-campaigns.png'} and {out / 'dashboard-batch.png'}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
