"""The report e-mail: a short plain-text body of the key figures with the workbook attached,
sent with smtplib (STARTTLS and login only when configured). Blocking: run it in a thread."""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage

from batchctl.client.summary import BatchSummary
from batchctl.config import SmtpSettings
from batchctl.report.build import BuiltReport
from batchctl.report.cells import naive_utc

SMTP_TIMEOUT_S = 60.0
XLSX_MIME_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

log = logging.getLogger(__name__)


def compose(report: BuiltReport, recipients: Sequence[str], sender: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject(report.summary)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(body(report.summary, report.filename))
    maintype, subtype = XLSX_MIME_TYPE.split("/")
    message.add_attachment(
        report.xlsx, maintype=maintype, subtype=subtype, filename=report.filename
    )
    return message


def send(smtp: SmtpSettings, message: EmailMessage) -> None:
    """Raises on any failure, including every recipient refused. A message some recipients
    accepted counts as sent (retrying would send it to them twice); the refused are logged."""
    with smtplib.SMTP(smtp.host, smtp.port, timeout=SMTP_TIMEOUT_S) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.user:
            client.login(smtp.user, smtp.password or "")
        refused = client.send_message(message)
    if refused:
        log.warning("report %s: recipients refused: %s", message["Subject"], refused)


def subject(s: BatchSummary) -> str:
    state = s.status if s.finished else f"{s.status}, interim"
    return (
        f"Batch report: {_one_line(s.tenant_name)}, batch {s.batch_id} {state} "
        f"({s.completed} of {s.total} entries completed)"
    )


def body(s: BatchSummary, filename: str) -> str:
    def share(n: int) -> str:
        return f"{n} ({n / s.total:.1%})" if s.total else str(n)

    lines = [
        f"Batch {s.batch_id} of {_one_line(s.tenant_name)} is {s.status}"
        + ("." if s.finished else "; it is not finished, these figures are interim."),
        f"Created {_when(s.created_at)}, started {_when(s.started_at)}, "
        f"finished {_when(s.finished_at)} (UTC); duration {_duration(s.duration)}.",
        "",
        f"Entries: {s.total}",
        *(f"  {status}: {share(n)}" for status, n in s.counts.items() if n or status in _SHOWN),
        f"  duplicates (not dialled): {s.duplicates}, do-not-call (skipped): {s.dnc_skipped}",
        "",
        f"Calls: {s.calls}"
        + "".join(f", attempt {a}: {n}" for a, n in s.attempts)
        + f"; median duration {_seconds(s.median_duration_s)}, "
        f"90th percentile {_seconds(s.p90_duration_s)}.",
    ]
    if s.cancel_reason:
        lines.append(f"Cancel reason: {s.cancel_reason}")
    lines += ["", f"Every entry and call is in the attached workbook, {filename}."]
    return "\n".join(lines) + "\n"


_SHOWN = ("completed", "declined", "failed", "cancelled")  # listed even when zero


def _one_line(text: str) -> str:
    """Tenant names are data: no line breaks in a header (nor in the body's first line)."""
    return " ".join(text.split())


def _when(value: datetime | None) -> str:
    return naive_utc(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _duration(value: timedelta | None) -> str:
    return str(value).split(".")[0] if value is not None else "-"


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "-"
