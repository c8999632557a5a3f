"""Claims, dispatch outcomes, call reports, room events and hang-ups (sql/050 to sql/057)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from batchctl.client.calls import Call, jsonb, scalar, table, void
from batchctl.client.rows import Ack, AckResult, ClaimRow, HangupRequest, ReportResult, StatusReport


def claim_entries(worker: str, limit: int, lease_seconds: int) -> Call[list[ClaimRow]]:
    q = """SELECT entry_id, batch_id, tenant_id, to_phone, lead_name, context::text AS context,
                  attempt, room_name, options::text AS options, dispatch_unconfirmed,
                  livekit_trunk_id, caller_id, dial_at,
                  extract(epoch FROM dial_at - clock_timestamp())::float8 AS dial_in
             FROM batchctl.claim_entries(%s, %s, %s)"""
    return table(ClaimRow, q, worker, limit, lease_seconds)


def mark_dispatched(entry_id: UUID, room_name: str, dispatch_id: str | None = None) -> Call[UUID]:
    q = "SELECT batchctl.mark_dispatched(%s, %s, %s)"
    return scalar(q, entry_id, room_name, dispatch_id)


def mark_dispatched_many(acks: Sequence[Ack]) -> Call[list[AckResult]]:
    q = "SELECT call_log_id, status, error FROM batchctl.mark_dispatched_many(%s, %s, %s)"
    entries, rooms = [a.entry_id for a in acks], [a.room_name for a in acks]
    return table(AckResult, q, entries, rooms, [a.dispatch_id for a in acks])


def mark_dispatch_failed(entry_id: UUID, error: str, retryable: bool = True) -> Call[str]:
    q = "SELECT batchctl.mark_dispatch_failed(%s, %s, %s)"
    return scalar(q, entry_id, error, retryable)


def mark_dispatch_unknown(entry_id: UUID, error: str) -> Call[str]:
    return scalar("SELECT batchctl.mark_dispatch_unknown(%s, %s)", entry_id, error)


def report_call_status(
    call_log_id: UUID, status: str, detail: Mapping[str, Any] | None = None
) -> Call[str]:
    q = "SELECT batchctl.report_call_status(%s, %s, %s::jsonb)"
    return scalar(q, call_log_id, status, jsonb(detail or {}))


def report_call_statuses(reports: Sequence[StatusReport]) -> Call[list[ReportResult]]:
    """Each report's entry status after, and why it was not applied if it was not."""
    q = "SELECT status, error FROM batchctl.report_call_statuses(%s, %s, %s::jsonb[])"
    calls, statuses = [r.call_log_id for r in reports], [r.status for r in reports]
    return table(ReportResult, q, calls, statuses, [jsonb(r.detail) for r in reports])


def room_call_over(room_name: str, reason: str) -> Call[str | None]:
    return scalar("SELECT batchctl.room_call_over(%s, %s)", room_name, reason)


def claim_hangups(worker: str, limit: int = 20) -> Call[list[HangupRequest]]:
    q = "SELECT * FROM batchctl.claim_hangups(%s, %s)"
    return table(HangupRequest, q, worker, limit)


def hangup_done(room_name: str) -> Call[None]:
    return void("SELECT batchctl.hangup_done(%s)", room_name)


def hangup_failed(room_name: str, error: str) -> Call[None]:
    return void("SELECT batchctl.hangup_failed(%s, %s)", room_name, error)
