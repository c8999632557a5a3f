"""`batchctl report`: the workbook on demand, and (re)sending it through the outbox."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import pytest
from click.testing import CliRunner, Result

from batchctl.cli import cli
from report_helpers import drive, open_workbook, report_row, run_outbox, summary_value, table
from smtp_sink import SmtpSink
from sqlapi import SqlApi, phones

NOW = {"report_delay_s": 0}


def command(db_url: str, *args: str, smtp: SmtpSink | None = None) -> list[str]:
    """The command line of `batchctl report ARGS`, sending through ``smtp``."""
    smtp_args = ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port)] if smtp else []
    return ["--database-url", db_url, "report", *args, *smtp_args]


def batchctl(db_url: str, *args: str, smtp: SmtpSink | None = None) -> Result:
    """Runs it in this process (click's runner sees what a terminal would): much faster than a
    new interpreter per call."""
    return CliRunner().invoke(cli, command(db_url, *args, smtp=smtp))


def test_out_writes_a_workbook_of_a_running_batch(db_url: str, api: SqlApi, tmp_path: Path) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(3))
    api.dispatch_all(limit=1)
    out = tmp_path / "report.xlsx"
    result = batchctl(db_url, str(batch), "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"wrote {out} (interim: the batch is running)\n"
    book = open_workbook(out.read_bytes())
    assert summary_value(book, "Batch report") == "interim: the batch is not finished"
    assert [r["Final status"] for r in table(book, "Calls")] == ["dispatched", "queued", "queued"]
    assert len(table(book, "Attempts")) == 1
    assert list(tmp_path.iterdir()) == [out], "no partial file left behind"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.xlsx"], "error: batch {unknown} not found"),
        (["--send"], "error: batch {unknown} not found"),
        (["--send"], "error: batch {running} is running, not finished: its report is queued when"),
        (["--send", "--to", "not-an-address"], 'error: p_recipients: "not-an-address" not an'),
    ],
)
def test_errors_are_one_line_and_exit_1(
    db_url: str,
    api: SqlApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    running = api.create_batch(api.create_tenant(), phones(1))
    unknown = uuid4()
    target = unknown if "{unknown}" in message else running
    monkeypatch.chdir(tmp_path)
    result = batchctl(db_url, str(target), *args)
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(unknown=unknown, running=running))
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_send_delivers_once_and_the_daemon_does_not_send_it_again(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    sink.hold_s = 1.0  # keeps the command mid-send while the outbox runs
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(2), {**NOW, "report_to": ["ops@example.com"]})
    drive(api, {})
    sending = subprocess.Popen(
        [sys.executable, "-m", "batchctl", *command(db_url, str(batch), "--send", smtp=sink)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while report_row(api, batch)["status"] != "sending":
            assert time.monotonic() < deadline, "the command never claimed the report"
            time.sleep(0.02)
        assert run_outbox(db_url, sink.settings()) is None, "the due report is the command's"
        out, err = sending.communicate(timeout=30)
    finally:
        sending.kill()
    assert sending.returncode == 0, err
    assert out == f"sent the report of batch {batch}\n"
    (mail,) = sink.wait_for(1)
    assert mail.recipients == ["ops@example.com"]
    assert report_row(api, batch)["status"] == "sent"
    run_outbox(db_url, sink.settings())
    assert len(sink.received) == 1


def test_send_resends_a_sent_or_skipped_report(db_url: str, api: SqlApi, sink: SmtpSink) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), NOW)  # no report_to: skipped
    drive(api, {})
    assert report_row(api, batch)["status"] == "skipped"
    result = batchctl(db_url, str(batch), "--send", smtp=sink)
    assert result.exit_code == 1 and "has no report_to: name the recipients" in result.stderr
    for n in (1, 2):
        result = batchctl(db_url, str(batch), "--send", "--to", "boss@example.com", smtp=sink)
        assert result.exit_code == 0, result.stderr
        assert sink.wait_for(n)[-1].recipients == ["boss@example.com"]
    report = report_row(api, batch)
    assert (report["status"], report["attempts"], report["recipients"]) == (
        "sent", 2, ["boss@example.com"]
    )  # fmt: skip


def test_send_refuses_a_report_the_daemon_is_sending(
    db_url: str, api: SqlApi, sink: SmtpSink
) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {**NOW, "report_to": ["ops@example.com"]})
    drive(api, {})
    assert api.claim_report("daemon-7") is not None
    result = batchctl(db_url, str(batch), "--send", smtp=sink)
    assert result.exit_code == 1
    assert f"the report of batch {batch} is being sent by daemon-7 right now" in result.stderr
    assert sink.received == []


def test_a_failed_send_is_one_line_and_recorded(db_url: str, api: SqlApi, sink: SmtpSink) -> None:
    tenant = api.create_tenant()
    batch = api.create_batch(tenant, phones(1), {**NOW, "report_to": ["ops@example.com"]})
    drive(api, {})
    sink.down()
    result = batchctl(db_url, str(batch), "--send", smtp=sink)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: sending the report of batch {batch} failed: ")
    assert result.stderr.count("\n") == 1
    report = report_row(api, batch)
    assert (report["status"], report["attempts"]) == ("pending", 1)
    assert report["last_error"].startswith("ConnectionRefusedError")
