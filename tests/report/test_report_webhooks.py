"""The Summary sheet's "Webhook deliveries" section: per endpoint, the batch's deliveries by
status as of the report (some may still be pending), and why an endpoint is switched off."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import psycopg
from openpyxl.workbook import Workbook
from psycopg import sql

from batchctl.report.build import build_report
from batchctl.report.summary_sheet import WEBHOOK_COLUMNS, WEBHOOKS_HEADING
from checks import Conn
from report_helpers import built_workbook, open_workbook, summary_section
from sqlapi import SqlApi
from tenant_logins import login_role

GOOD = "https://hooks.example.com/good"
GONE = "https://hooks.example.com/gone"
GONE_REASON = "the receiver answered 410 Gone"


def set_status(conn: Conn, url: str, status: str, event_type: str | None = None) -> None:
    conn.execute(
        """update batchctl.webhook_deliveries d
              set status = %(status)s, attempts = 1,
                  last_status_code = case %(status)s when 'delivered' then 200 else 410 end
             from batchctl.webhook_endpoints w
            where w.tenant_id = d.tenant_id and w.id = d.endpoint_id and w.url = %(url)s
              and (%(type)s::text is null or d.event_type = %(type)s)""",
        {"status": status, "url": url, "type": event_type},
    )


def build_as(db_url: str, batch_id: UUID, role: str) -> Workbook:
    """The report built on a connection acting as ``role``."""

    async def build() -> bytes:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
            return (await build_report(conn, batch_id)).xlsx

    return open_workbook(asyncio.run(build()))


def summary_labels(book: Workbook) -> list[Any]:
    return [row[0] for row in book["Summary"].iter_rows(values_only=True)]


def test_each_endpoint_s_deliveries_and_a_switched_off_one_s_reason(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant("acme", 10)
    api.add_webhook(tenant, GOOD)
    api.add_webhook(tenant, GONE, ["call.ended"])
    batch = api.run_batch(tenant)
    # batch.started, call.ended and entry.finished twice, batch.finished: the last still pending
    set_status(conn, GOOD, "delivered")
    set_status(conn, GOOD, "pending", "batch.finished")
    set_status(conn, GONE, "failed")
    conn.execute(
        """update batchctl.webhook_endpoints set disabled_at = now(), disabled_reason = %s
            where url = %s""",
        (GONE_REASON, GONE),
    )
    other = api.create_tenant("other", 10)  # its deliveries are its batch's only
    api.add_webhook(other, "https://hooks.example.com/other")
    api.run_batch(other)

    book = built_workbook(db_url, batch)
    assert WEBHOOKS_HEADING == "Webhook deliveries (as of the report)"
    heading = next(
        r for r in book["Summary"].iter_rows(values_only=True) if r[0] == WEBHOOKS_HEADING
    )
    assert heading[1:5] == WEBHOOK_COLUMNS == ("Delivered", "Pending", "Failed",
                                               "Endpoint switched off")  # fmt: skip
    section = summary_section(book, WEBHOOKS_HEADING)
    assert {url: values[:4] for url, values in section.items()} == {
        GOOD: (5, 1, 0, None),
        GONE: (0, 0, 2, GONE_REASON),
    }
    # Its place: after the call durations, before the options.
    labels = summary_labels(book)
    at = labels.index(WEBHOOKS_HEADING)
    assert labels.index("Call duration (calls with a duration)") < at < labels.index("Options")


def test_a_batch_without_deliveries_has_no_webhook_section(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    quiet = api.create_tenant("quiet", 10)
    batch = api.run_batch(quiet)
    # Another tenant's endpoint gets nothing of this batch.
    busy = api.create_tenant("busy", 10)
    api.add_webhook(busy, GOOD)
    api.run_batch(busy)

    labels = summary_labels(built_workbook(db_url, batch))
    assert WEBHOOKS_HEADING not in labels and GOOD not in labels
    assert "Options" in labels


def test_a_tenant_login_and_the_daemon_s_role_see_the_section(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant("acme", 10)
    api.add_webhook(tenant, GOOD, ["batch.finished"])
    batch = api.run_batch(tenant)
    with login_role(conn, tenant) as role:
        section = summary_section(build_as(db_url, batch, role), WEBHOOKS_HEADING)
    assert section == {GOOD: (0, 1, 0, None)}
    book = build_as(db_url, batch, "batchctl_worker")  # the report daemon's
    assert summary_section(book, WEBHOOKS_HEADING) == section
