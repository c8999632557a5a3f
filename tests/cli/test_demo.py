"""`batchctl demo` end to end, as a newcomer runs it (a smaller campaign): it creates and follows
a real batch through the daemon and the LiveKit simulator, the e-mailed report opens, the local
webhook receiver gets the campaign's events with verified signatures, and nothing it started is
left running."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import ProxyHandler, Request, build_opener

import openpyxl
import psutil
from standardwebhooks import Webhook

from batchctl.demo.receiver import Receiver, new_secret
from webclient import WebClient


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
    steps = ("$ batchctl tenant create", "$ batchctl endpoint add", "$ batchctl batch create",
             "$ batchctl batch watch")  # fmt: skip
    for step in steps:
        assert step in out
    assert "completed" in out and "the e-mail the mail server received: to ops@demo.example" in out
    assert "LiveKit SIMULATOR (not a real LiveKit server)" in done.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/login\?token=\S+ ", out, re.MULTILINE)

    webhooks = re.search(
        r"^webhooks: (\d+) events received at http://127\.0\.0\.1:\d+/hooks, "
        r"all signatures verified: (.+)$",
        out,
        re.MULTILINE,
    )
    assert webhooks, out
    assert "still pending" not in out, "the demo printed its counts before the last deliveries"
    counts = {t: int(n) for t, n in (part.rsplit(" ", 1) for part in webhooks[2].split(", "))}
    assert sum(counts.values()) == int(webhooks[1])
    # One lead, one entry.finished after its call.ended (two when a busy line is retried).
    assert counts["entry.finished"] == 12 and counts["call.ended"] >= 12, counts
    assert counts["batch.started"] == counts["batch.finished"] == counts["report.sent"] == 1

    calls = openpyxl.load_workbook(report, read_only=True)["Calls"]
    assert len(list(calls.iter_rows())) == 1 + 12, "a header and one row per lead"

    left = [
        p.info["cmdline"]
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and "batchctl-demo-" in " ".join(p.info["cmdline"] or [])
    ]
    assert left == [], "the demo left processes running"


def test_the_demo_receiver_counts_signed_events_once_and_rejects_forged_ones() -> None:
    secret = new_secret()
    direct = build_opener(ProxyHandler({}))
    with Receiver(secret) as receiver:

        def post(signer: str, message_id: str) -> int:
            body = json.dumps({"type": "call.ended", "timestamp": "now", "data": {}}).encode()
            now = datetime.now(UTC)
            sent = Webhook(signer).sign(message_id, now, body.decode())
            head = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": sent, "content-type": "application/json"}  # fmt: skip
            try:
                # No proxy from the environment: the receiver is on this machine.
                with direct.open(Request(receiver.url, body, head, method="POST"), timeout=5) as r:
                    return int(r.status)
            except HTTPError as exc:
                return exc.code

        assert post(secret, "msg_1") == 204
        assert post(secret, "msg_1") == 204, "a resent event is acknowledged, counted once"
        assert post(new_secret(), "msg_2") == 401
    assert receiver.counts == {"call.ended": 1} and receiver.rejected == 1


def test_demo_dashboard_shows_the_campaign_and_stays_up_until_stopped(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "batchctl", "demo", "--leads", "3", "--dashboard",
         "--report", str(tmp_path / "report.xlsx")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert demo.stdout is not None
    try:
        lines: list[str] = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("the dashboard stays up at"):
                break
        link = lines[-1].split()[-1]
        assert link.startswith("http://127.0.0.1:") and "/login?token=" in link, lines
        # The link signs in; the campaigns page then lists the demo's finished batch.
        client = WebClient(link.split("/login")[0])
        assert client.get(link[len(client.base) :]).status == 303
        page = client.get("/")
        assert page.status == 200 and "Demo Dental" in page.text and "s-completed" in page.text
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
