"""`batchctl batch show` names the batch's webhook deliveries per endpoint (docs/webhooks.md): the
counts by status, why a switched-off endpoint is off, and the latest failed delivery's error."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from checks import Conn
from clitools import invoke
from sqlapi import SqlApi

GOOD = "https://hooks.example.com/good"
GONE = "https://hooks.example.com/gone"
FLAKY = "https://hooks.example.com/flaky"
GONE_REASON = "the receiver answered 410 Gone"
FLAKY_REASON = "delivery 9 failed every attempt for 1 day: connection refused"


# A failed delivery's last status code and error.
Failure = tuple[int | None, str | None]


def settle(conn: Conn, url: str, statuses: list[str], errors: dict[int, Failure]) -> None:
    """Gives the endpoint's deliveries (oldest first) these statuses, and the failed ones (by
    position) a last status code and error, as the daemon's record_webhook_attempt would."""
    ids = [r["id"] for r in conn.execute(
        """select d.id from batchctl.webhook_deliveries d
             join batchctl.webhook_endpoints w on w.tenant_id = d.tenant_id and w.id = d.endpoint_id
            where w.url = %s order by d.id""", (url,)).fetchall()]  # fmt: skip
    assert len(ids) == len(statuses), (url, len(ids))
    for i, (delivery, status) in enumerate(zip(ids, statuses, strict=True)):
        code, error = errors.get(i, (200 if status == "delivered" else None, None))
        conn.execute(
            """update batchctl.webhook_deliveries
                  set status = %s, attempts = 1, last_status_code = %s, last_error = %s
                where id = %s""",
            (status, code, error, delivery),
        )


def switch_off(conn: Conn, url: str, reason: str) -> None:
    conn.execute(
        """update batchctl.webhook_endpoints set disabled_at = now(), disabled_reason = %s
            where url = %s""",
        (reason, url),
    )


def with_deliveries(api: SqlApi, conn: Conn) -> UUID:
    """Three endpoints of one tenant: one that took all but the last event, one that answered
    410 (call.ended only), one whose retries ran out (entry.finished only)."""
    tenant = api.create_tenant("acme", 10)
    api.add_webhook(tenant, GOOD)
    api.add_webhook(tenant, GONE, ["call.ended"])
    api.add_webhook(tenant, FLAKY, ["entry.finished"])
    batch = api.run_batch(tenant)
    # batch.started, call.ended, entry.finished (twice), batch.finished
    settle(conn, GOOD, ["delivered"] * 5 + ["pending"], {})
    settle(conn, GONE, ["delivered", "failed"], {1: (410, None)})
    settle(
        conn, FLAKY, ["failed", "failed"], {0: (503, "timed out"), 1: (None, "connection refused")}
    )
    switch_off(conn, GONE, GONE_REASON)
    switch_off(conn, FLAKY, FLAKY_REASON)
    return batch


def show(db_url: str, batch: UUID, *args: str) -> str:
    result = invoke(db_url, "batch", "show", str(batch), *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_show_counts_each_endpoint_s_deliveries_and_names_the_failures(
    db_url: str, conn: Conn
) -> None:
    api = SqlApi(conn)
    batch = with_deliveries(api, conn)
    # Another batch of the tenant's, and another tenant's: not this batch's deliveries.
    other = api.create_tenant("other", 10)
    api.add_webhook(other, "https://hooks.example.com/other")
    api.run_batch(other)

    doc = json.loads(show(db_url, batch, "--json"))
    hooks: list[dict[str, Any]] = doc["webhooks"]
    assert [(w["url"], w["delivered"], w["pending"], w["failed"]) for w in hooks] == [
        (GOOD, 5, 1, 0),
        (GONE, 1, 0, 1),
        (FLAKY, 0, 0, 2),
    ]
    assert [(w["disabled_reason"], w["last_error"]) for w in hooks] == [
        (None, None),
        (GONE_REASON, "HTTP 410"),  # no error text: the status code
        (FLAKY_REASON, "connection refused"),  # the latest failure's
    ]
    assert hooks[0]["disabled_at"] is None and hooks[1]["disabled_at"] is not None
    assert all("secret" not in w for w in hooks)

    lines = show(db_url, batch).splitlines()
    at = lines.index("webhooks:")
    assert lines[at + 1].split() == ["DELIVERED", "PENDING", "FAILED", "ENDPOINT"]
    assert [line.split() for line in lines[at + 2 : at + 5]] == [
        ["5", "1", "0", GOOD],
        ["1", "0", "1", GONE],
        ["0", "0", "2", FLAKY],
    ]
    rest = "\n".join(lines[at + 5 :])
    assert GOOD not in rest, "an endpoint that is on and failed nothing gets no more lines"
    assert f"{GONE}:\n  switched off since " in rest
    assert f"UTC: {GONE_REASON}\n  latest failed delivery: HTTP 410" in rest
    assert f"UTC: {FLAKY_REASON}\n  latest failed delivery: connection refused" in rest


def test_show_of_a_batch_without_deliveries_says_none(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    quiet = api.create_tenant("quiet", 10)
    batch = api.run_batch(quiet)
    assert json.loads(show(db_url, batch, "--json"))["webhooks"] == []
    text = show(db_url, batch)
    assert text.rstrip().endswith("webhooks: none")
    assert "ENDPOINT" not in text


def test_show_of_deliveries_all_still_pending(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 10)
    api.add_webhook(tenant, GOOD)
    batch = api.run_batch(tenant)
    (hook,) = json.loads(show(db_url, batch, "--json"))["webhooks"]
    assert (hook["delivered"], hook["pending"], hook["failed"]) == (0, 6, 0)
    assert (hook["disabled_reason"], hook["last_error"]) == (None, None)
    text = show(db_url, batch)
    assert "switched off" not in text and "latest failed" not in text
