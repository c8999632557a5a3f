"""`batchctl demo` end to end, as a newcomer runs it (a smaller campaign): it creates and follows
a real batch through the daemon and the LiveKit simulator, the e-mailed report opens, and
nothing it started is left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openpyxl
import psutil


def test_demo_runs_a_campaign_and_saves_the_emailed_report(tmp_path: Path) -> None:
    report = tmp_path / "report.xlsx"
    before = {p.pid for p in psutil.process_iter()}
    done = subprocess.run(
        [sys.executable, "-m", "batchctl", "demo", "--leads", "12", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for step in ("$ batchctl tenant create", "$ batchctl batch create", "$ batchctl batch watch"):
        assert step in out
    assert "completed" in out and "the e-mail the mail server received: to ops@demo.example" in out
    assert "LiveKit SIMULATOR (not a real LiveKit server)" in done.stderr

    calls = openpyxl.load_workbook(report, read_only=True)["Calls"]
    assert len(list(calls.iter_rows())) == 1 + 12, "a header and one row per lead"

    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and "batchctl-demo-" in " ".join(p.info["cmdline"] or [])
    ]
    assert left == [], "the demo left processes running"
