"""The SQL API as the tests drive it: batchctl's own sync client, with the shapes and defaults
the tests were written against, and shortcuts for the daemon's and the voice worker's usual
sequences."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from batchctl.client.rows import Ack, Claim, StatusReport
from batchctl.client.sync import Client

# SPEC §2: the entry status each terminal call status maps to.
ENTRY_FOR_CALL = {
    "ended": "completed", "completed": "completed",
    "failed": "failed", "error": "failed", "not_reachable": "failed",
    "declined": "declined", "rejected": "declined", "no_answer": "declined", "busy": "declined",
    "voicemail": "declined",
    "cancelled": "cancelled",
}  # fmt: skip


# A JSON array of entries ({}) as batchctl.new_entry[], in order.
_NEW_ENTRIES = """(select array_agg(row(r.to_phone, r.lead_name, r.lead_id, r.context,
                                      r.timezone, r.region, r.consent_at,
                                      r.consent_source)::batchctl.new_entry order by r.ord)
                    from jsonb_populate_recordset(null::batchctl.new_entry, {}::jsonb)
                         with ordinality
                         as r (to_phone, lead_name, lead_id, context, timezone, region,
                               consent_at, consent_source, ord))"""
NEW_ENTRIES = _NEW_ENTRIES.format("%s")  # the array as a parameter


def new_entries(entries: list[dict[str, Any]]) -> sql.Composable:
    return sql.SQL(_NEW_ENTRIES).format(sql.Literal(json.dumps(entries)))


class SqlApi(Client):
    """Where a test shape differs from the client's (JSON entries, tuples, dicts), the method
    keeps the test's: those overrides are marked."""

    def create_tenant(
        self, name: str = "acme", max_concurrent_calls: int = 3, timezone: str = "UTC"
    ) -> UUID:
        return super().create_tenant(name, max_concurrent_calls, timezone)

    def create_batch_from_rows(  # type: ignore[override]
        self,
        tenant_id: UUID,
        entries: list[dict[str, Any]],
        options: dict[str, Any] | None = None,
    ) -> UUID:
        """The rows form: the same entries as batchctl.new_entry values, in order."""
        return super().create_batch_from_rows(tenant_id, new_entries(entries), options)

    def add_entries(  # type: ignore[override]
        self, tenant_id: UUID, batch_id: UUID, entries: list[dict[str, Any]]
    ) -> int:
        return super().add_entries(tenant_id, batch_id, new_entries(entries))

    def claim(
        self, worker: str = "test-worker", limit: int = 50, lease_seconds: int = 60
    ) -> list[Claim]:
        return [row.decode() for row in self.claim_entries(worker, limit, lease_seconds)]

    def mark_dispatched_many(  # type: ignore[override]
        self, acks: list[tuple[UUID, str]]
    ) -> list[tuple[UUID | None, str | None]]:
        """The daemon's completer: (entry, room) acknowledgements -> (call log id, entry status)."""
        results = super().mark_dispatched_many([Ack(e, r, f"dispatch-{r}") for e, r in acks])
        return [(a.call_log_id, a.status) for a in results]

    def report_many(self, reports: list[tuple[UUID, str]]) -> list[str | None]:
        """(call log, status) reports in one call -> each call's entry status after."""
        results = self.report_call_statuses([StatusReport(c, s) for c, s in reports])
        return [r.status for r in results]

    def report(self, call_log_id: UUID, status: str, detail: dict[str, Any] | None = None) -> str:
        return self.report_call_status(call_log_id, status, detail)

    def claim_report(  # type: ignore[override]
        self, worker: str = "test-worker"
    ) -> dict[str, Any] | None:
        claim = super().claim_report(worker)
        return asdict(claim) if claim else None

    def claim_hangups(  # type: ignore[override]
        self, worker: str = "test-worker", limit: int = 20
    ) -> list[dict[str, Any]]:
        return [asdict(h) for h in super().claim_hangups(worker, limit)]

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

    def run_batch(self, tenant_id: UUID, n: int = 2) -> UUID:
        """An ``n``-lead batch dialled to its end (every call ended): its transitions' triggers
        have written what they write (events, counters, webhook deliveries)."""
        batch = self.create_batch(tenant_id, phones(n))
        for call in self.dispatch_all():
            self.finish_call(call)
        return batch


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
