"""A thin typed driver for the SQL API, used by the tests the way the daemon and the voice
worker use it: one call per SQL function, nothing more."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from batchctl.procedures import Claim

# SPEC §2: the entry status each terminal call status maps to.
ENTRY_FOR_CALL = {
    "ended": "completed", "completed": "completed",
    "failed": "failed", "error": "failed", "not_reachable": "failed",
    "declined": "declined", "rejected": "declined", "no_answer": "declined", "busy": "declined",
    "voicemail": "declined",
    "cancelled": "cancelled",
}  # fmt: skip


# A JSON array of entries (a parameter) as batchctl.new_entry[], in order.
NEW_ENTRIES = """(select array_agg(row(r.to_phone, r.lead_name, r.lead_id, r.context,
                                      r.timezone)::batchctl.new_entry order by r.ord)
                    from jsonb_populate_recordset(null::batchctl.new_entry, %s::jsonb)
                         with ordinality
                         as r (to_phone, lead_name, lead_id, context, timezone, ord))"""


class SqlApi:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, *params: Any) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return next(iter(row.values())) if isinstance(row, dict) else row[0]

    def create_tenant(
        self, name: str = "acme", max_concurrent_calls: int = 3, timezone: str = "UTC"
    ) -> UUID:
        return self._one(
            "select batchctl.create_tenant(%s, %s, %s)", name, max_concurrent_calls, timezone
        )

    def add_dnc(self, tenant_id: UUID, phone: str) -> None:
        self.conn.execute("select batchctl.add_dnc(%s, %s)", (tenant_id, phone))

    def create_batch(
        self,
        tenant_id: UUID,
        entries: list[dict[str, Any]] | Any,
        options: dict[str, Any] | None = None,
        created_by: UUID | None = None,
    ) -> UUID:
        return self._one(
            "select batchctl.create_batch(%s, %s::jsonb, %s::jsonb, %s)",
            tenant_id,
            json.dumps(entries),
            json.dumps(options or {}),
            created_by,
        )

    def create_batch_from_rows(
        self,
        tenant_id: UUID,
        entries: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> UUID:
        """The rows form: the same entries as batchctl.new_entry values, in order."""
        return self._one(
            f"select batchctl.create_batch_from_rows(%s, {NEW_ENTRIES}, %s::jsonb)",
            tenant_id,
            json.dumps(entries),
            json.dumps(options or {}),
        )

    def add_entries(self, tenant_id: UUID, batch_id: UUID, entries: list[dict[str, Any]]) -> int:
        return self._one(
            f"select batchctl.add_entries(%s, %s, {NEW_ENTRIES})",
            tenant_id,
            batch_id,
            json.dumps(entries),
        )

    def start_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.conn.execute("select batchctl.start_batch(%s, %s)", (tenant_id, batch_id))

    def pause_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.conn.execute("select batchctl.pause_batch(%s, %s)", (tenant_id, batch_id))

    def resume_batch(self, tenant_id: UUID, batch_id: UUID) -> None:
        self.conn.execute("select batchctl.resume_batch(%s, %s)", (tenant_id, batch_id))

    def cancel_batch(self, tenant_id: UUID, batch_id: UUID, reason: str | None = None) -> int:
        return self._one("select batchctl.cancel_batch(%s, %s, %s)", tenant_id, batch_id, reason)

    def fail_batch(self, tenant_id: UUID, batch_id: UUID, reason: str) -> int:
        return self._one("select batchctl.fail_batch(%s, %s, %s)", tenant_id, batch_id, reason)

    def cancel_entry(self, tenant_id: UUID, entry_id: UUID) -> bool:
        return self._one("select batchctl.cancel_entry(%s, %s)", tenant_id, entry_id)

    def batch_status(self, tenant_id: UUID, batch_id: UUID) -> dict[str, Any]:
        return self._one("select batchctl.batch_status(%s, %s)", tenant_id, batch_id)

    def claim(
        self, worker: str = "test-worker", limit: int = 50, lease_seconds: int = 60
    ) -> list[Claim]:
        rows = self.conn.execute(
            "select * from batchctl.claim_entries(%s, %s, %s)", (worker, limit, lease_seconds)
        ).fetchall()
        return [Claim(**row) if isinstance(row, dict) else Claim(*row) for row in rows]

    def mark_dispatched(
        self, entry_id: UUID, room_name: str, dispatch_id: str | None = None
    ) -> UUID:
        return self._one(
            "select batchctl.mark_dispatched(%s, %s, %s)", entry_id, room_name, dispatch_id
        )

    def mark_dispatched_many(
        self, acks: list[tuple[UUID, str]]
    ) -> list[tuple[UUID | None, str | None]]:
        """The daemon's completer: (entry, room) acknowledgements -> (call log id, entry status)."""
        rows = self.conn.execute(
            "select * from batchctl.mark_dispatched_many(%s, %s, %s)",
            ([e for e, _ in acks], [r for _, r in acks], [f"dispatch-{r}" for _, r in acks]),
        ).fetchall()
        return [(row["call_log_id"], row["status"]) for row in rows]

    def report_many(self, reports: list[tuple[UUID, str]]) -> list[str | None]:
        """(call log, status) reports in one call -> each call's entry status after."""
        rows = self.conn.execute(
            "select * from batchctl.report_call_statuses(%s, %s)",
            ([c for c, _ in reports], [s for _, s in reports]),
        ).fetchall()
        return [row["status"] for row in rows]

    def mark_dispatch_failed(self, entry_id: UUID, error: str, retryable: bool = True) -> str:
        return self._one(
            "select batchctl.mark_dispatch_failed(%s, %s, %s)", entry_id, error, retryable
        )

    def mark_dispatch_unknown(self, entry_id: UUID, error: str) -> str:
        return self._one("select batchctl.mark_dispatch_unknown(%s, %s)", entry_id, error)

    def report(self, call_log_id: UUID, status: str, detail: dict[str, Any] | None = None) -> str:
        return self._one(
            "select batchctl.report_call_status(%s, %s, %s::jsonb)",
            call_log_id,
            status,
            json.dumps(detail or {}),
        )

    def sweep(self, now: datetime | None = None) -> dict[str, int]:
        if now is None:
            return self._one("select batchctl.sweep()")
        return self._one("select batchctl.sweep(%s)", now)

    def claim_report(self, worker: str = "test-worker") -> dict[str, Any] | None:
        row = self.conn.execute("select * from batchctl.claim_report(%s)", (worker,)).fetchone()
        return dict(row) if row else None

    def report_sent(self, batch_id: UUID) -> None:
        self.conn.execute("select batchctl.report_sent(%s)", (batch_id,))

    def report_failed(self, batch_id: UUID, error: str) -> None:
        self.conn.execute("select batchctl.report_failed(%s, %s)", (batch_id, error))

    def claim_hangups(self, worker: str = "test-worker", limit: int = 20) -> list[dict[str, Any]]:
        return self.conn.execute(
            "select * from batchctl.claim_hangups(%s, %s)", (worker, limit)
        ).fetchall()

    def hangup_done(self, room_name: str) -> None:
        self.conn.execute("select batchctl.hangup_done(%s)", (room_name,))

    # Shortcuts for scenarios: the daemon's and the voice worker's usual sequences.

    def dispatch_all(self, worker: str = "test-worker", limit: int = 50) -> list[UUID]:
        """Claim what is claimable and acknowledge every dispatch; returns the call log ids."""
        return [
            self.mark_dispatched(c.entry_id, c.room_name, f"dispatch-{c.room_name}")
            for c in self.claim(worker, limit)
        ]

    def finish_call(
        self, call_log_id: UUID, outcome: str = "ended", detail: dict[str, Any] | None = None
    ) -> str:
        """ringing -> ongoing -> outcome, as a voice worker reports an answered call."""
        self.report(call_log_id, "ringing")
        if outcome in ("ended", "completed", "failed", "error", "cancelled"):
            self.report(call_log_id, "ongoing")
        return self.report(call_log_id, outcome, detail)


def phones(n: int, start: int = 0) -> list[dict[str, Any]]:
    """n distinct valid entries: +1415555xxxx numbers."""
    return [
        {"to_phone": f"+1415555{i:04d}", "lead_name": f"Lead {i}"} for i in range(start, start + n)
    ]


def live_calls(conn: psycopg.Connection[Any], batch_id: UUID | None = None) -> list[UUID]:
    rows = conn.execute(
        """select id from batchctl.call_logs
            where status in ('in_queue', 'ringing', 'ongoing')
              and (%(b)s::uuid is null or batch_id = %(b)s::uuid) order by id""",
        {"b": batch_id},
    ).fetchall()
    return [r["id"] for r in rows]
