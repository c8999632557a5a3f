"""What the Compliance sheet reads: the tenant's policy, the jurisdiction rules of the batch's
entries, the entries held back by a rule (their events), opt-outs, do-not-call skips and the lead
rows refused at intake. Plain queries on the tables, in the report's snapshot (build.py), with
the caller's rights: row-level security keeps a tenant login to its own rows.

The rules table is reference data a tenant login may not read (docs/compliance.md): for one, the
sheet lists the jurisdictions of the entries without their rules (``rules_readable`` false).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from batchctl.client.summary import BatchSummary
from batchctl.report.data import CHUNK_ROWS

# The opted-out entries listed by name; the counts cover them all.
MAX_LISTED_OPT_OUTS = 1000

# The keys of the rules of the batch's entries (batch_entries.jurisdictions, worked out at
# intake), with how many entries each applies to.
_JURISDICTIONS = """
    SELECT k.key, count(*)::integer AS entries
      FROM batchctl.batch_entries e
     CROSS JOIN LATERAL (SELECT DISTINCT key FROM unnest(e.jurisdictions) key
                          WHERE key IS NOT NULL) k
     WHERE e.batch_id = %(batch)s AND e.tenant_id = %(tenant)s
     GROUP BY k.key"""
_RULES = """
    SELECT r.jurisdiction, r.days, r.max_calls, r.cap_window, r.refusal_cooloff, r.source, r.note,
           array_to_string(ARRAY(SELECT left(lower(h)::text, 5) || '-' || left(upper(h)::text, 5)
                                   FROM unnest(r.hours) h ORDER BY lower(h)), ', ') AS hours
      FROM batchctl.jurisdiction_rules r WHERE r.jurisdiction = ANY (%s)"""
_DEFERRALS = """
    SELECT ev.reason AS rule, count(*)::integer AS deferrals,
           count(DISTINCT ev.object_id)::integer AS entries
      FROM batchctl.events ev
     WHERE ev.batch_id = %(batch)s AND ev.tenant_id = %(tenant)s AND ev.object = 'entry'
       AND ev.from_status = 'queued' AND ev.to_status = 'queued'
       AND ev.reason ~ '^(quiet_hours:|frequency:|cooloff:|holiday$)'
     GROUP BY ev.reason ORDER BY count(*) DESC, ev.reason"""
_COUNTS = """
    SELECT count(*) FILTER (WHERE e.opted_out_at IS NOT NULL)::integer AS opted_out,
           count(*) FILTER (WHERE e.status = 'cancelled' AND e.last_error = 'opted_out')::integer
               AS opted_out_cancelled,
           count(*) FILTER (WHERE e.status = 'cancelled' AND e.last_error = 'dnc')::integer
               AS dnc_cancelled,
           (SELECT count(*)::integer FROM batchctl.dnc_numbers d
             WHERE d.tenant_id = %(tenant)s AND d.source = 'opt_out'
               AND d.call_log_id IN (SELECT c.id FROM batchctl.call_logs c
                                      WHERE c.batch_id = %(batch)s AND c.tenant_id = %(tenant)s))
               AS opt_out_listed,
           (SELECT count(*)::integer FROM batchctl.intake_refusals r
             WHERE r.batch_id = %(batch)s AND r.tenant_id = %(tenant)s) AS refused,
           has_table_privilege('batchctl.jurisdiction_rules', 'SELECT') AS rules_readable,
           batchctl.get_policy(%(tenant)s) AS policy
      FROM batchctl.batch_entries e
     WHERE e.batch_id = %(batch)s AND e.tenant_id = %(tenant)s"""
_OPT_OUTS = """
    SELECT e.entry_index, e.to_phone, e.lead_name, e.opted_out_at FROM batchctl.batch_entries e
     WHERE e.batch_id = %(batch)s AND e.tenant_id = %(tenant)s AND e.opted_out_at IS NOT NULL
     ORDER BY e.opted_out_at, e.entry_index LIMIT %(limit)s"""
_REFUSALS = """
    SELECT r.line, r.to_phone, r.problem, r.created_at FROM batchctl.intake_refusals r
     WHERE r.batch_id = %s AND r.tenant_id = %s ORDER BY r.line NULLS LAST, r.id"""


@dataclass(frozen=True)
class AppliedRule:
    """A jurisdiction of the batch's entries, and its rule (None: no rule, or not readable)."""

    jurisdiction: str
    entries: int
    rule: dict[str, Any] | None


@dataclass(frozen=True)
class Deferral:
    rule: str  # the event's reason: quiet_hours:US-FL, holiday, frequency:per_24h, cooloff:FR
    deferrals: int
    entries: int


@dataclass(frozen=True)
class OptOut:
    entry_index: int
    to_phone: str
    lead_name: str | None
    opted_out_at: datetime


@dataclass(frozen=True)
class Refusal:
    line: int | None
    to_phone: str | None
    problem: str
    created_at: datetime


@dataclass(frozen=True)
class Compliance:
    policy: dict[str, Any]  # the tenant's policy now, every default filled in
    rules_readable: bool
    jurisdictions: tuple[AppliedRule, ...]  # most entries first
    deferrals: tuple[Deferral, ...]
    opted_out: int  # entries whose own call reported the opt-out
    opted_out_cancelled: int  # entries cancelled because their number opted out
    opt_out_listed: int  # do-not-call rows written by opt-outs on this batch's calls
    opt_outs: tuple[OptOut, ...]  # the first MAX_LISTED_OPT_OUTS
    dnc_skipped: int  # numbers left out at intake: on the list then
    dnc_cancelled: int  # entries cancelled: put on the list while queued
    refused: int  # lead rows refused at intake (streamed: stream_refusals)

    @property
    def rules_applied(self) -> bool:
        return self.policy.get("jurisdiction_rules") is not False


async def read_compliance(conn: psycopg.AsyncConnection[Any], s: BatchSummary) -> Compliance:
    keys = {"batch": s.batch_id, "tenant": s.tenant_id, "limit": MAX_LISTED_OPT_OUTS}
    async with conn.cursor(row_factory=dict_row) as cur:
        counts = await (await cur.execute(_COUNTS, keys)).fetchone()
        assert counts is not None  # an aggregate: always one row
        deferrals = await (await cur.execute(_DEFERRALS, keys)).fetchall()
        found = await (await cur.execute(_JURISDICTIONS, keys)).fetchall()
        rules: dict[str, dict[str, Any]] = {}
        if counts["rules_readable"] and found:
            await cur.execute(_RULES, ([f["key"] for f in found],))
            rules = {r["jurisdiction"]: r for r in await cur.fetchall()}
    async with conn.cursor(row_factory=class_row(OptOut)) as opt_cur:
        opt_outs = await (await opt_cur.execute(_OPT_OUTS, keys)).fetchall()
    jurisdictions = sorted(
        (AppliedRule(f["key"], f["entries"], rules.get(f["key"])) for f in found),
        key=lambda j: (-j.entries, j.jurisdiction),
    )
    return Compliance(
        policy=counts["policy"], rules_readable=counts["rules_readable"],
        jurisdictions=tuple(jurisdictions), deferrals=tuple(Deferral(**d) for d in deferrals),
        opted_out=counts["opted_out"], opted_out_cancelled=counts["opted_out_cancelled"],
        opt_out_listed=counts["opt_out_listed"], opt_outs=tuple(opt_outs),
        dnc_skipped=s.dnc_skipped, dnc_cancelled=counts["dnc_cancelled"],
        refused=counts["refused"],
    )  # fmt: skip


async def stream_refusals(
    conn: psycopg.AsyncConnection[Any], s: BatchSummary
) -> AsyncIterator[list[Refusal]]:
    """The batch's refused lead rows by line, CHUNK_ROWS at a time (a server-side cursor: needs
    the report's transaction)."""
    async with conn.cursor(name="batchctl_intake_refusals", row_factory=class_row(Refusal)) as cur:
        await cur.execute(_REFUSALS, (s.batch_id, s.tenant_id))
        while rows := await cur.fetchmany(CHUNK_ROWS):
            yield rows
