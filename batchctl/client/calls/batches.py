"""Batches: their options, intake and lifecycle (sql/025, sql/042, sql/044)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.rows import scalar_row, tuple_row

from batchctl.client.calls import Call, first, jsonb, scalar, void


def normalize_options(options: Mapping[str, Any]) -> Call[dict[str, Any]]:
    """The options merged over the defaults; raises BC001 naming the option at fault."""
    return scalar("SELECT batchctl.normalize_options(%s::jsonb)", jsonb(options))


def timezone_verdicts(zones: Sequence[str]) -> Call[dict[str, str | None]]:
    """Zone name -> what is wrong with it, or None when the database takes it."""
    q = "SELECT tz, problem FROM batchctl.timezone_verdicts(%s::text[])"
    return Call(q, (list(zones),), tuple_row, dict)


def create_batch(
    tenant_id: UUID,
    entries: Any,
    options: Mapping[str, Any] | None = None,
    created_by: UUID | None = None,
) -> Call[UUID]:
    """``entries``: the JSON array of leads (anything, for the database to judge)."""
    q = "SELECT batchctl.create_batch(%s, %s::jsonb, %s::jsonb, %s)"
    return scalar(q, tenant_id, jsonb(entries), jsonb(options or {}), created_by)


# The rows forms take ``entries`` as an SQL expression of type batchctl.new_entry[] (to_phone,
# lead_name, lead_id, context, timezone, region: six fields since migration 0017, region the
# lead's ISO 3166-2 code or null), assembled on the server (the lead import's, from its staging
# table). It may hold literals with a "%" in them, which parameters would take for placeholders:
# these two are composed whole.


def create_batch_from_rows(
    tenant_id: UUID, entries: sql.Composable, options: Mapping[str, Any] | None = None
) -> Call[UUID]:
    q = sql.SQL("SELECT batchctl.create_batch_from_rows({}, {}, {}::jsonb)")
    args = (sql.Literal(tenant_id), entries, sql.Literal(jsonb(options or {})))
    return Call(q.format(*args), None, scalar_row, first)


def add_entries(tenant_id: UUID, batch_id: UUID, entries: sql.Composable) -> Call[int]:
    """The entries kept (not duplicates, not on the do-not-call list)."""
    q = sql.SQL("SELECT batchctl.add_entries({}, {}, {})")
    args = (sql.Literal(tenant_id), sql.Literal(batch_id), entries)
    return Call(q.format(*args), None, scalar_row, first)


def start_batch(tenant_id: UUID, batch_id: UUID) -> Call[None]:
    return void("SELECT batchctl.start_batch(%s, %s)", tenant_id, batch_id)


def pause_batch(tenant_id: UUID, batch_id: UUID) -> Call[None]:
    return void("SELECT batchctl.pause_batch(%s, %s)", tenant_id, batch_id)


def resume_batch(tenant_id: UUID, batch_id: UUID) -> Call[None]:
    return void("SELECT batchctl.resume_batch(%s, %s)", tenant_id, batch_id)


def cancel_batch(tenant_id: UUID, batch_id: UUID, reason: str | None = None) -> Call[int]:
    """The entries cancelled now (live calls are hung up, and end later)."""
    return scalar("SELECT batchctl.cancel_batch(%s, %s, %s)", tenant_id, batch_id, reason)


def fail_batch(tenant_id: UUID, batch_id: UUID, reason: str) -> Call[int]:
    return scalar("SELECT batchctl.fail_batch(%s, %s, %s)", tenant_id, batch_id, reason)


def cancel_entry(tenant_id: UUID, entry_id: UUID) -> Call[bool]:
    return scalar("SELECT batchctl.cancel_entry(%s, %s)", tenant_id, entry_id)


def batch_status(tenant_id: UUID, batch_id: UUID) -> Call[dict[str, Any]]:
    """The batch's status and counts; its timestamps are ISO 8601 strings (it is JSON)."""
    return scalar("SELECT batchctl.batch_status(%s, %s)", tenant_id, batch_id)
