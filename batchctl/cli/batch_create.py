"""``batchctl batch create``: a lead file (CSV or .xlsx) -> a running batch.

The flags are create_batch's options (SPEC §3) under their command-line names; they are passed
through as given and judged by ``batchctl.normalize_options`` in the database, whose message
names the option at fault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from batchctl.cli.batch_common import print_counts
from batchctl.cli.context import AppContext
from batchctl.cli.csv_input import (
    LEAD_FILE,
    default_region_option,
    echo_problems,
    lead_file_options,
    open_lead_file,
    reject,
)
from batchctl.cli.output import json_option, print_json
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect
from batchctl.leads.parallel import available_cpus
from batchctl.leads.rows import read_leads
from batchctl.leads.staging import InvalidRows, import_batch

NOT_CREATED = "nothing was created (fix them, or leave them out with --skip-invalid)"


# Far more than any options document needs (the database allows 32 levels in metadata), far less
# than what makes Python's JSON decoder or encoder raise RecursionError.
MAX_JSON_DEPTH = 100


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        doc = json.loads(value, parse_constant=_not_json)
    except RecursionError:
        raise click.BadParameter(f"nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise click.BadParameter("expected a JSON object such as '{\"wave_size\": 5}'")
    if json_depth(doc) > MAX_JSON_DEPTH:  # decoded, but encoding it again might not be
        raise click.BadParameter(f"nested more than {MAX_JSON_DEPTH} levels deep")
    return doc


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's decoder takes NaN and Infinity


def json_depth(doc: Any) -> int:
    """How deeply ``doc`` nests objects and arrays ({"a": 1} is 1), found without recursion."""
    depth, pending = 0, [(doc, 1)]
    while pending:
        value, level = pending.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            depth = max(depth, level)
            pending.extend((child, level + 1) for child in value)
    return depth


def _call_window(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    start, dash, end = value.partition("-")
    if not dash:
        raise click.BadParameter(f'expected START-END such as 09:00-20:00, got "{value}"')
    return {"start": start.strip(), "end": end.strip()}


def _split_commas(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def build_options(flags: dict[str, Any], options_json: dict[str, Any]) -> dict[str, Any]:
    """The options document: --options-json, with the flags that were given on top."""
    options = dict(options_json)
    window = flags.pop("call_window")
    days = _split_commas(flags.pop("call_days"))
    if window is not None or days:
        given = options.get("call_window")
        options["call_window"] = {**(given if isinstance(given, dict) else {}), **(window or {})}
        if days:
            options["call_window"]["days"] = days
    for key in ("retry_on", "report_to"):
        values = _split_commas(flags.pop(key))
        if values:
            options[key] = values
    if not flags.pop("autostart"):
        options["autostart"] = False
    options.update({key: value for key, value in flags.items() if value is not None})
    return options


@click.command()
@click.argument("tenant")
@click.option(
    "--file",
    "--csv",
    "lead_file",
    type=LEAD_FILE,
    required=True,
    help="The leads: a CSV file or an .xlsx workbook (see examples/).",
)
@default_region_option
@lead_file_options
@click.option("--skip-invalid", is_flag=True, help="Leave bad rows out instead of refusing.")
@click.option("--agent-name", help="LiveKit agent to dispatch.")
@click.option("--trunk", help="The tenant's SIP trunk to call on (name or id) [its first].")
@click.option("--wave-size", type=int, help="Calls of this batch in flight at once [15].")
@click.option("--dispatch-mode", help="window: refill freed slots at once; wave: by waves.")
@click.option("--max-retries", type=int, help="Re-dispatches of calls never picked up [2].")
@click.option("--pickup-timeout", "pickup_timeout_s", type=int, help="Seconds [1200].")
@click.option("--ringing-timeout", "ringing_timeout_s", type=int, help="Seconds [1200].")
@click.option("--ongoing-timeout", "ongoing_timeout_s", type=int, help="Seconds [900].")
@click.option("--retry-on", multiple=True, help="Outcome to retry, e.g. no_answer (repeatable).")
@click.option("--max-attempts", type=int, help="Answered attempts per lead when retrying [1].")
@click.option("--retry-delay", "retry_delay_s", type=int, help="Seconds before a retry [3600].")
@click.option(
    "--call-window", callback=_call_window, metavar="HH:MM-HH:MM", help="In the lead's time."
)
@click.option("--call-days", multiple=True, help="Days of the call window, e.g. mon,tue,wed.")
@click.option("--start-at", help="No calls before this ISO 8601 time.")
@click.option("--end-at", help="Leads not called by this time end cancelled (expired).")
@click.option("--report-to", multiple=True, metavar="EMAIL", help="Report recipient (repeatable).")
@click.option("--report-delay", "report_delay_s", type=int, help="Seconds after finishing [15].")
@click.option(
    "--no-autostart",
    "autostart",
    is_flag=True,
    default=True,
    flag_value=False,
    help="Create the batch pending (batchctl batch start BATCH starts it).",
)
@click.option(
    "--options-json",
    callback=_json_object,
    metavar="JSON",
    help="More options (retry_policy, metadata, ...); the flags win.",
)
@json_option
@click.pass_obj
def create(
    app: AppContext,
    tenant: str,
    lead_file: Path,
    default_region: str | None,
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
    skip_invalid: bool,
    options_json: dict[str, Any],
    as_json: bool,
    **flags: Any,
) -> None:
    """Create a batch for TENANT (id or exact name) from a lead file and start it.

    The file is CSV (UTF-8, or --encoding; comma, semicolon, tab or pipe, found from the
    header line, or --delimiter) or an Excel workbook (.xlsx: its first sheet, or --sheet); its
    first line names the columns. Columns: phone (required; E.164, or national with
    --default-region), name, lead_id, timezone (IANA; else the number's own zone when it has
    exactly one, else the tenant's), region (ISO 3166-2, e.g. US-FL), consent_at (ISO 8601
    with a UTC offset; required when the tenant's policy says require_consent) and
    consent_source; any other column goes into the lead's context. Bad rows are all reported
    by line and column, and nothing is created unless --skip-invalid, which leaves them out
    and records them with the batch (its intake refusals)."""
    options = build_options(flags, options_json)
    with connect(app.database_url()) as conn:
        tenant_id, client = resolve_tenant(conn, tenant), Client(conn)
        # Bad options fail before the file is read, with the database's message.
        client.normalize_options(options)
        reading = {"encoding": encoding, "delimiter": delimiter, "sheet": sheet}
        with open_lead_file(lead_file, **reading) as source:
            leads = read_leads(source, default_region, workers=available_cpus())
            try:
                batch_id, skipped = import_batch(
                    conn, tenant_id, leads, options, skip_invalid=skip_invalid
                )
            except InvalidRows as exc:
                reject(source, exc.problems, exc.rows, NOT_CREATED)
        status = client.batch_status(tenant_id, batch_id)
    if as_json:
        skipped_rows = [{"line": p.line, "column": p.column, "message": p.message} for p in skipped]
        print_json({"batch_id": batch_id, "batch_status": status, "skipped_rows": skipped_rows})
        return
    echo_problems(source, skipped, verb="skipped ")
    click.echo(f"batch {batch_id} {status['status']}")
    print_counts(status)
