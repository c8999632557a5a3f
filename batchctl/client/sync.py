"""The SQL API over one psycopg Connection: the command line, the lead import and the tests.

Each call is one statement in whatever transaction the connection is in (autocommit: its own).
Its cursor makes its own rows, so the connection's row factory (tuples, dicts) does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql

from batchctl.client.calls import (
    Call,
    batches,
    compliance,
    dispatch,
    report,
    tenants,
    trunks,
    upkeep,
    webhooks,
)
from batchctl.client.rows import (
    Ack,
    AckResult,
    ClaimRow,
    HangupRequest,
    ReportClaim,
    ReportResult,
    StatusReport,
)

R = TypeVar("R")


class Client:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def run(self, call: Call[R]) -> R:
        with self.conn.cursor(row_factory=call.row) as cur:
            if call.adapt is not None:
                call.adapt(cur)
            cur.execute(call.query, call.params)
            return call.read(cur.fetchall())

    # Tenants (sql/015, sql/040).

    def create_tenant(
        self, name: str, max_concurrent_calls: int = 3, timezone: str = "UTC"
    ) -> UUID:
        return self.run(tenants.create_tenant(name, max_concurrent_calls, timezone))

    def add_dnc(self, tenant_id: UUID, *phones: str) -> None:
        self.run(tenants.add_dnc(tenant_id, *phones))

    def grant_tenant_login(self, role: str, tenant_id: UUID) -> None:
        self.run(tenants.grant_tenant_login(role, tenant_id))

    def revoke_tenant_login(self, role: str) -> bool:
        return self.run(tenants.revoke_tenant_login(role))

    # Batches (sql/025, sql/042, sql/044).

    def normalize_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return self.run(batches.normalize_options(options))

    def timezone_verdicts(self, zones: Sequence[str]) -> dict[str, str | None]:
        return self.run(batches.timezone_verdicts(zones))

    def create_batch(
        self,
        tenant_id: UUID,
        entries: Any,
        options: Mapping[str, Any] | None = None,
        created_by: UUID | None = None,
    ) -> UUID:
        return self.run(batches.create_batch(tenant_id, entries, options, created_by))

    def create_batch_from_rows(
        self, tenant_id: UUID, entries: sql.Composable, options: Mapping[str, Any] | None = None
    ) -> UUID:
        return self.run(batches.create_batch_from_rows(tenant_id, entries, options))

    def add_entries(self, tenant_id: UUID, batch_id: UUID, entries: sql.Composable) -> int:
        return self.run(batches.add_entries(tenant_id, batch_id, entries))

    def start_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.run(batches.start_batch(tenant_id, batch_id))

    def pause_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.run(batches.pause_batch(tenant_id, batch_id))

    def resume_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.run(batches.resume_batch(tenant_id, batch_id))

    def cancel_batch(self, tenant_id: UUID, batch_id: UUID, reason: str | None = None) -> int:
        return self.run(batches.cancel_batch(tenant_id, batch_id, reason))

    def fail_batch(self, tenant_id: UUID, batch_id: UUID, reason: str) -> int:
        return self.run(batches.fail_batch(tenant_id, batch_id, reason))

    def cancel_entry(self, tenant_id: UUID, entry_id: UUID) -> bool:
        return self.run(batches.cancel_entry(tenant_id, entry_id))

    def batch_status(self, tenant_id: UUID, batch_id: UUID) -> dict[str, Any]:
        return self.run(batches.batch_status(tenant_id, batch_id))

    # Compliance (sql/029, sql/042, sql/046).

    def set_policy(self, tenant_id: UUID, policy: Mapping[str, Any]) -> dict[str, Any]:
        return self.run(compliance.set_policy(tenant_id, policy))

    def get_policy(self, tenant_id: UUID) -> dict[str, Any]:
        return self.run(compliance.get_policy(tenant_id))

    def explain_entry(self, tenant_id: UUID, entry_id: UUID) -> dict[str, Any]:
        return self.run(compliance.explain_entry(tenant_id, entry_id))

    def record_intake_refusals(
        self, tenant_id: UUID, batch_id: UUID, refusals: Sequence[Mapping[str, Any]]
    ) -> int:
        return self.run(compliance.record_intake_refusals(tenant_id, batch_id, refusals))

    # Trunks (sql/058).

    def create_trunk(
        self,
        tenant_id: UUID,
        name: str,
        livekit_trunk_id: str,
        max_cps: Decimal | int | float,
        max_concurrent: int | None = None,
    ) -> UUID:
        return self.run(
            trunks.create_trunk(tenant_id, name, livekit_trunk_id, max_cps, max_concurrent)
        )

    def update_trunk(
        self, tenant_id: UUID, trunk_id: UUID, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.run(trunks.update_trunk(tenant_id, trunk_id, changes))

    def trunk_status(self, tenant_id: UUID, trunk_id: UUID) -> dict[str, Any]:
        return self.run(trunks.trunk_status(tenant_id, trunk_id))

    def add_caller_ids(
        self, tenant_id: UUID, trunk_id: UUID, numbers: Sequence[str], daily_cap: int | None = None
    ) -> int:
        return self.run(trunks.add_caller_ids(tenant_id, trunk_id, numbers, daily_cap))

    def remove_caller_ids(self, tenant_id: UUID, trunk_id: UUID, numbers: Sequence[str]) -> int:
        return self.run(trunks.remove_caller_ids(tenant_id, trunk_id, numbers))

    # Outbound webhooks (sql/059, docs/webhooks.md).

    def add_webhook(
        self,
        tenant_id: UUID,
        url: str,
        events: Sequence[str] | None = None,
        secret: str | None = None,
    ) -> dict[str, Any]:
        return self.run(webhooks.add_webhook(tenant_id, url, events, secret))

    def remove_webhook(self, tenant_id: UUID, endpoint_id: UUID) -> bool:
        return self.run(webhooks.remove_webhook(tenant_id, endpoint_id))

    def list_webhooks(self, tenant_id: UUID) -> list[dict[str, Any]]:
        return self.run(webhooks.list_webhooks(tenant_id))

    def webhook_deliveries(
        self, tenant_id: UUID, endpoint_id: UUID, limit: int = 50
    ) -> list[dict[str, Any]]:
        return self.run(webhooks.webhook_deliveries(tenant_id, endpoint_id, limit))

    def replay_webhooks(self, tenant_id: UUID, endpoint_id: UUID, since: datetime) -> int:
        return self.run(webhooks.replay_webhooks(tenant_id, endpoint_id, since))

    # Dispatch and calls (sql/050 to sql/057).

    def claim_entries(self, worker: str, limit: int, lease_seconds: int) -> list[ClaimRow]:
        return self.run(dispatch.claim_entries(worker, limit, lease_seconds))

    def mark_dispatched(
        self, entry_id: UUID, room_name: str, dispatch_id: str | None = None
    ) -> UUID:
        return self.run(dispatch.mark_dispatched(entry_id, room_name, dispatch_id))

    def mark_dispatched_many(self, acks: Sequence[Ack]) -> list[AckResult]:
        return self.run(dispatch.mark_dispatched_many(acks))

    def mark_dispatch_failed(self, entry_id: UUID, error: str, retryable: bool = True) -> str:
        return self.run(dispatch.mark_dispatch_failed(entry_id, error, retryable))

    def mark_dispatch_unknown(self, entry_id: UUID, error: str) -> str:
        return self.run(dispatch.mark_dispatch_unknown(entry_id, error))

    def report_call_status(
        self, call_log_id: UUID, status: str, detail: Mapping[str, Any] | None = None
    ) -> str:
        return self.run(dispatch.report_call_status(call_log_id, status, detail))

    def report_call_statuses(self, reports: Sequence[StatusReport]) -> list[ReportResult]:
        return self.run(dispatch.report_call_statuses(reports))

    def claim_hangups(self, worker: str, limit: int = 20) -> list[HangupRequest]:
        return self.run(dispatch.claim_hangups(worker, limit))

    def hangup_done(self, room_name: str) -> None:
        self.run(dispatch.hangup_done(room_name))

    # Timeouts and retention (sql/060, sql/065).

    def sweep(self, now: datetime | None = None) -> dict[str, Any]:
        return self.run(upkeep.sweep(now))

    def prune(self, older_than: timedelta, limit: int = 10_000) -> dict[str, Any]:
        return self.run(upkeep.prune(older_than, limit))

    # The report outbox (sql/070).

    def claim_report(self, worker: str) -> ReportClaim | None:
        return self.run(report.claim_report(worker))

    def report_sent(self, batch_id: UUID) -> None:
        self.run(report.report_sent(batch_id))

    def report_failed(self, batch_id: UUID, error: str) -> None:
        self.run(report.report_failed(batch_id, error))
