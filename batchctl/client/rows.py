"""The rows the SQL API's functions return and the arguments some take, typed: field names are
the functions' columns (or arguments), so psycopg's class_row builds them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class Claim:
    """One row of batchctl.claim_entries."""

    entry_id: UUID
    batch_id: UUID
    tenant_id: UUID
    to_phone: str
    lead_name: str | None
    context: dict[str, Any]
    attempt: int
    room_name: str
    options: dict[str, Any]
    # A claim of this attempt came back unacknowledged before: LiveKit may have its room.
    dispatch_unconfirmed: bool
    # The trunk's part (docs/trunks.md): the LiveKit trunk and caller ID to dial with, and the
    # call's pacing slot, not to dial before (dial_in: seconds from the claim's answer to it, by
    # the database's clock, so that daemons on hosts whose clocks differ share one pace); all
    # None when the tenant has no trunk.
    livekit_trunk_id: str | None
    caller_id: str | None
    dial_at: datetime | None
    dial_in: float | None


@dataclass(frozen=True)
class ClaimRow:
    """One row of batchctl.claim_entries with the lead's JSON still undecoded: a lead the
    daemon cannot read must fail that entry alone (decode() in its own task), never the claim
    that carried it, nor the other tenants' entries in it."""

    entry_id: UUID
    batch_id: UUID
    tenant_id: UUID
    to_phone: str
    lead_name: str | None
    context: str
    attempt: int
    room_name: str
    options: str
    dispatch_unconfirmed: bool
    livekit_trunk_id: str | None
    caller_id: str | None
    dial_at: datetime | None
    dial_in: float | None

    def decode(self) -> Claim:
        return Claim(
            **{
                **vars(self),
                "context": json.loads(self.context),
                "options": json.loads(self.options),
            }
        )


@dataclass(frozen=True)
class Ack:
    """LiveKit accepted the dispatch of a claimed entry's room."""

    entry_id: UUID
    room_name: str
    dispatch_id: str


@dataclass(frozen=True)
class AckResult:
    """One row of batchctl.mark_dispatched_many."""

    call_log_id: UUID | None  # None: the claim is gone, hang the room up
    status: str | None  # the entry's status after; None: no such entry
    error: str | None  # why it was not acknowledged (a room not the claimed attempt's)


@dataclass(frozen=True)
class StatusReport:
    """One report of a call's status, as report_call_status takes it."""

    call_log_id: UUID
    status: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    """One row of batchctl.report_call_statuses."""

    status: str | None  # the entry's status after; None: no such call log
    error: str | None  # why the report was not applied ("call log not found", a bad field)


@dataclass(frozen=True)
class HangupRequest:
    """One row of batchctl.claim_hangups."""

    room_name: str
    call_log_id: UUID
    reason: str
    attempt: int


@dataclass(frozen=True)
class ReportClaim:
    """One row of batchctl.claim_report / claim_report_now."""

    batch_id: UUID
    tenant_id: UUID
    recipients: list[str]
    attempt: int


@dataclass(frozen=True)
class WebhookDelivery:
    """One row of batchctl.claim_webhook_deliveries: the body exactly as it is signed and sent
    (the payload's JSON text, the same on every attempt)."""

    delivery_id: int
    tenant_id: UUID
    endpoint_id: UUID
    url: str
    secret: str
    message_id: str
    event_type: str
    body: str
    attempt: int
    created_at: datetime
