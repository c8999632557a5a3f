"""A tenant's compliance policy, why an entry waits, and intake refusals (sql/029, sql/042,
sql/046)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from batchctl.client.calls import Call, jsonb, scalar


def set_policy(tenant_id: UUID, policy: Mapping[str, Any]) -> Call[dict[str, Any]]:
    """The effective policy, every default filled in."""
    return scalar("SELECT batchctl.set_policy(%s, %s::jsonb)", tenant_id, jsonb(policy))


def get_policy(tenant_id: UUID) -> Call[dict[str, Any]]:
    return scalar("SELECT batchctl.get_policy(%s)", tenant_id)


def explain_entry(tenant_id: UUID, entry_id: UUID) -> Call[dict[str, Any]]:
    """{"dialable_now", "next_at", "reasons": [{"rule", "until"}]}; times as JSON strings."""
    return scalar("SELECT batchctl.explain_entry(%s, %s)", tenant_id, entry_id)


def record_intake_refusals(
    tenant_id: UUID, batch_id: UUID, refusals: Sequence[Mapping[str, Any]]
) -> Call[int]:
    """Rows {line, to_phone, problem} left out of the batch at intake."""
    q = "SELECT batchctl.record_intake_refusals(%s, %s, %s::jsonb)"
    return scalar(q, tenant_id, batch_id, jsonb(list(refusals)))
