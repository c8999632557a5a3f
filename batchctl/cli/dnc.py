"""``batchctl dnc``: a tenant's do-not-call list."""

from __future__ import annotations

from pathlib import Path

import click

from batchctl.cli.context import AppContext
from batchctl.cli.csv_input import (
    LEAD_FILE,
    default_region_option,
    lead_file_options,
    open_lead_file,
    reject,
)
from batchctl.cli.errors import UserError
from batchctl.cli.output import json_option, print_json
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect
from batchctl.leads.csvfile import Problem
from batchctl.leads.parallel import available_cpus
from batchctl.leads.phones import PhoneError, parse_phone
from batchctl.leads.rows import read_numbers


@click.group()
def dnc() -> None:
    """The do-not-call list: numbers a tenant's batches never dial."""


@dnc.command()
@click.argument("tenant")
@click.argument("phone")
@default_region_option
@json_option
@click.pass_obj
def add(
    app: AppContext, tenant: str, phone: str, default_region: str | None, as_json: bool
) -> None:
    """Add PHONE to TENANT's list (TENANT: id or exact name). Its queued calls are cancelled."""
    try:
        number = parse_phone(phone, default_region).e164
    except PhoneError as exc:
        raise UserError(f"PHONE: {exc}") from None
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        Client(conn).add_dnc(tenant_id, number)
    if as_json:
        print_json({"tenant_id": tenant_id, "phone": number})
    else:
        click.echo(f"{number} is on the do-not-call list")


@dnc.command("import")
@click.argument("tenant")
@click.argument("file", type=LEAD_FILE)
@default_region_option
@lead_file_options
@json_option
@click.pass_obj
def import_numbers(
    app: AppContext,
    tenant: str,
    file: Path,
    default_region: str | None,
    encoding: str | None,
    delimiter: str | None,
    sheet: str | None,
    as_json: bool,
) -> None:
    """Add the numbers in FILE's "phone" column to TENANT's list (TENANT: id or exact name).

    FILE is CSV or an .xlsx workbook, read as batch create reads a lead file. All or nothing:
    one bad row (reported by line) and no number is added."""
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        numbers: list[str] = []
        problems: list[Problem] = []
        reading = {"encoding": encoding, "delimiter": delimiter, "sheet": sheet}
        with open_lead_file(file, **reading) as source:
            for item in read_numbers(source, default_region, workers=available_cpus()):
                if isinstance(item, Problem):
                    problems.append(item)
                else:
                    numbers.append(item.phone)
        if problems:
            reject(source, problems, len(numbers) + len(problems), "no number was added")
        Client(conn).add_dnc(tenant_id, *numbers)  # one statement: all or none
    if as_json:
        print_json({"tenant_id": tenant_id, "imported": len(numbers)})
    else:
        click.echo(f"{len(numbers)} numbers are on the do-not-call list")
