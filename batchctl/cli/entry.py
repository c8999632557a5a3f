"""``batchctl entry``: one lead of a batch, and why it is (not) being dialled."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import click

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.cli.output import format_value, json_option, print_json, print_table
from batchctl.client.sync import Client
from batchctl.database import connect

# What each reason of explain_entry (sql/046) means, by the part of its rule before the colon;
# "{}" is the part after it.
REASONS = {
    "status": "the entry is {}, not queued",
    "batch": "the batch is {}, not running",
    "start_at": "the batch's start_at has not come",
    "end_at": "the batch's end_at has passed",
    "do_not_call": "the number is on the tenant's do-not-call list",
    "call_window": "outside the batch's call window (in the lead's time)",
    "quiet_hours": "outside the calling hours of jurisdiction rule {}",
    "holiday": "one of the tenant's holidays (the lead's local date)",
    "scheduled": "a retry or a hold waits until then",
    "number_busy": "another entry of the number is on a call",
    "tenant_cap": "the tenant's calls in flight are at its max_concurrent_calls",
    "wave_size": "the batch's calls in flight are at its wave_size",
}


def reason_text(rule: str) -> str:
    kind, _, detail = rule.partition(":")
    if kind == "frequency":
        if detail.startswith("per_"):
            return f"the policy's frequency cap {detail} is reached"
        return f"the frequency cap of jurisdiction rule {detail} is reached"
    if kind == "cooloff":
        if detail.islower():
            return f"the policy's cool-off after a {detail} call"
        return f"the cool-off after a refusal of jurisdiction rule {detail}"
    return REASONS.get(kind, "").format(detail)


def _time(value: Any) -> Any:
    """explain_entry's times are JSON strings (ISO 8601): as datetimes, for format_value."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


@click.group()
def entry() -> None:
    """Entries: the leads of batches, one each."""


@entry.command()
@click.argument("entry_id", metavar="ENTRY", type=click.UUID)
@json_option
@click.pass_obj
def explain(app: AppContext, entry_id: UUID, as_json: bool) -> None:
    """Say whether ENTRY (an entry id) can be dialled now and, if not, why and when.

    Each reason comes with the moment it lifts ("-": not by time alone); "next at" is the
    earliest moment every rule allows (calls made meanwhile may move it)."""
    with connect(app.read_url()) as conn:
        row = conn.execute(
            "SELECT tenant_id FROM batchctl.batch_entries WHERE id = %s", (entry_id,)
        ).fetchone()
        if row is None:
            raise UserError(f"entry {entry_id} not found")
        answer = Client(conn).explain_entry(row[0], entry_id)
    if as_json:
        print_json(answer)
    else:
        print_explanation(entry_id, answer)


def print_explanation(entry_id: UUID, answer: Mapping[str, Any]) -> None:
    if answer["dialable_now"]:
        click.echo(f"entry {entry_id}: dialable now")
        return
    next_at = _time(answer["next_at"])
    when = (
        f"next at {format_value(next_at)} UTC"
        if next_at is not None
        else "no next time (it waits for more than time)"
    )
    click.echo(f"entry {entry_id}: not dialable now; {when}")
    rows = [
        {"rule": r["rule"], "until": _time(r["until"]), "why": reason_text(r["rule"])}
        for r in answer["reasons"]
    ]
    print_table(rows, [("rule", "RULE"), ("until", "UNTIL (UTC)"), ("why", "WHY")])
