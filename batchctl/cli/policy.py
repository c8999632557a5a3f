"""``batchctl policy``: a tenant's compliance policy (docs/compliance.md).

The policy is judged by ``batchctl.set_policy`` in the database, whose message names the key at
fault; the command line only reads the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from batchctl.cli.context import AppContext
from batchctl.cli.output import print_json
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect

EXAMPLE = '{"frequency": {"per_24h": 1}, "holidays": ["2026-12-25"]}'


@click.group()
def policy() -> None:
    """A tenant's compliance policy: jurisdiction rules, frequency caps, cool-offs, holidays."""


@policy.command()
@click.argument("tenant")
@click.pass_obj
def show(app: AppContext, tenant: str) -> None:
    """Print TENANT's policy (id or exact name) as JSON, every default filled in."""
    with connect(app.read_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        effective = Client(conn).get_policy(tenant_id)
    print_json(effective)


@policy.command("set")
@click.argument("tenant")
@click.argument("policy_json", metavar="[POLICY_JSON]", required=False)
@click.option(
    "--file",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Read the policy from this JSON file (- for standard input) instead of POLICY_JSON.",
)
@click.pass_obj
def set_policy(
    app: AppContext, tenant: str, policy_json: str | None, policy_file: Path | None
) -> None:
    """Replace TENANT's policy (id or exact name) with POLICY_JSON and print it as in force.

    The whole policy is given each time: a key left out is its default. The keys (see
    docs/compliance.md): jurisdiction_rules (true/false), frequency ({"per_24h": n, "per_7d": n,
    "per_30d": n}), cooloff_s ({outcome: seconds}), holidays (["YYYY-MM-DD", ...]),
    require_consent (true/false). For example:

    \b
        batchctl policy set Acme '{"frequency": {"per_24h": 1}, "holidays": ["2026-12-25"]}'

    It applies to the tenant's next claim, in every batch."""
    if (policy_json is None) == (policy_file is None):
        raise click.UsageError("give the policy as POLICY_JSON or --file FILE (one of them)")
    if policy_file is not None:
        text, where = _read(policy_file), "--file"
    else:
        assert policy_json is not None
        text, where = policy_json, "POLICY_JSON"
    doc = _json_object(text, where)
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        effective = Client(conn).set_policy(tenant_id, doc)
    print_json(effective)


def _read(path: Path) -> str:
    if str(path) == "-":
        data, path = sys.stdin.buffer.read(), Path("standard input")
    else:
        try:
            data = path.read_bytes()
        except OSError as exc:
            message = f"cannot read {path}: {exc.strerror}"
            raise click.BadParameter(message, param_hint="--file") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="--file") from None


def _json_object(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text, parse_constant=_not_json)
        json.dumps(doc)  # what the database is sent: a value decoded may not encode again
    except RecursionError:
        raise click.BadParameter("nested too deeply", param_hint=where) from None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=where) from None
    if not isinstance(doc, dict):
        raise click.BadParameter(f"expected a JSON object such as '{EXAMPLE}'", param_hint=where)
    return doc


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")  # Python's decoder takes NaN and Infinity
