"""Outbound webhooks (sql/059, docs/webhooks.md): a tenant's endpoints, and the daemon's claim
and record of deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from batchctl.client.calls import Call, scalar, table
from batchctl.client.rows import WebhookDelivery


def add_webhook(
    tenant_id: UUID, url: str, events: Sequence[str] | None = None, secret: str | None = None
) -> Call[dict[str, Any]]:
    """{endpoint_id, url, events, secret}: the only answer that shows the secret."""
    q = "SELECT batchctl.add_webhook(%s, %s, %s::text[], %s)"
    return scalar(q, tenant_id, url, None if events is None else list(events), secret)


def remove_webhook(tenant_id: UUID, endpoint_id: UUID) -> Call[bool]:
    return scalar("SELECT batchctl.remove_webhook(%s, %s)", tenant_id, endpoint_id)


def list_webhooks(tenant_id: UUID) -> Call[list[dict[str, Any]]]:
    return scalar("SELECT batchctl.list_webhooks(%s)", tenant_id)


def webhook_deliveries(
    tenant_id: UUID, endpoint_id: UUID, limit: int = 50
) -> Call[list[dict[str, Any]]]:
    return scalar("SELECT batchctl.webhook_deliveries(%s, %s, %s)", tenant_id, endpoint_id, limit)


def replay_webhooks(tenant_id: UUID, endpoint_id: UUID, since: datetime) -> Call[int]:
    q = "SELECT batchctl.replay_webhooks(%s, %s, %s)"
    return scalar(q, tenant_id, endpoint_id, since)


def claim_webhook_deliveries(
    worker: str, limit: int, lease_seconds: int
) -> Call[list[WebhookDelivery]]:
    q = """SELECT delivery_id, tenant_id, endpoint_id, url, secret, message_id, event_type,
                  payload::text AS body, attempt, created_at
             FROM batchctl.claim_webhook_deliveries(%s, %s, %s)"""
    return table(WebhookDelivery, q, worker, limit, lease_seconds)


def record_webhook_attempt(
    delivery: WebhookDelivery,
    status_code: int | None,
    error: str | None,
    reply: str,
    elapsed_ms: float,
) -> Call[str]:
    """The delivery's status after (pending, delivered or failed): the database decides it from
    the answer."""
    q = """SELECT batchctl.record_webhook_attempt(%s, %s::bigint, %s::integer, %s::integer, %s,
                                                   %s, %s::numeric)"""
    return scalar(
        q, delivery.tenant_id, delivery.delivery_id, delivery.attempt, status_code, error, reply,
        elapsed_ms,
    )  # fmt: skip
