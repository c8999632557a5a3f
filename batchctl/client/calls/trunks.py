"""A tenant's SIP trunks and their caller-ID pools (sql/058, docs/trunks.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID

from batchctl.client.calls import Call, jsonb, scalar


def create_trunk(
    tenant_id: UUID,
    name: str,
    livekit_trunk_id: str,
    max_cps: Decimal | int | float,
    max_concurrent: int | None = None,
) -> Call[UUID]:
    """The new trunk's id; the tenant's first trunk is its default."""
    # The cast keeps a fractional rate exact: a float parameter would be sent as float8.
    q = "SELECT batchctl.create_trunk(%s, %s, %s, %s::numeric, %s::integer)"
    return scalar(q, tenant_id, name, livekit_trunk_id, str(max_cps), max_concurrent)


def update_trunk(
    tenant_id: UUID, trunk_id: UUID, changes: Mapping[str, Any]
) -> Call[dict[str, Any]]:
    """``changes``: some of name, livekit_trunk_id, max_cps, max_concurrent (None: no cap of
    its own); returns trunk_status."""
    q = "SELECT batchctl.update_trunk(%s, %s, %s::jsonb)"
    return scalar(q, tenant_id, trunk_id, jsonb(dict(changes)))


def trunk_status(tenant_id: UUID, trunk_id: UUID) -> Call[dict[str, Any]]:
    """Settings, default, in_flight, started_last_second/minute, caller_ids with today's
    calls; times as JSON strings."""
    return scalar("SELECT batchctl.trunk_status(%s, %s)", tenant_id, trunk_id)


def add_caller_ids(
    tenant_id: UUID, trunk_id: UUID, numbers: Sequence[str], daily_cap: int | None = None
) -> Call[int]:
    """How many were added (numbers the pool has already are left as they are)."""
    q = "SELECT batchctl.add_caller_ids(%s, %s, %s::text[], %s::integer)"
    return scalar(q, tenant_id, trunk_id, list(numbers), daily_cap)


def remove_caller_ids(tenant_id: UUID, trunk_id: UUID, numbers: Sequence[str]) -> Call[int]:
    """How many were in the pool and are gone."""
    q = "SELECT batchctl.remove_caller_ids(%s, %s, %s::text[])"
    return scalar(q, tenant_id, trunk_id, list(numbers))
