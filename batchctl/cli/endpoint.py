"""``batchctl endpoint``: a tenant's outbound webhook endpoints (sql/059, docs/webhooks.md).

(``batchctl webhook`` is the LiveKit webhook receiver.) URLs, event types, secrets and limits
are judged by the database (add_webhook, webhook_deliveries), whose message names what is
wrong. ``endpoint test`` sends a signed ``ping`` from here, with the daemon's sender and its
checks of where a URL may point, and not through the outbox."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import click

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.cli.output import json_option, print_fields, print_json, print_table
from batchctl.cli.tenant import resolve_tenant
from batchctl.client.sync import Client
from batchctl.database import connect
from batchctl.outbound.sender import Response, post
from batchctl.outbound.signing import headers

LIST_HINT = "batchctl endpoint list TENANT shows them"
# How much of a receiver's answer `endpoint test` reads, and shows.
ANSWER_BYTES = 4096
ANSWER_SHOWN = 200
# A delivery's last error, in the deliveries table (--json has all of it).
ERROR_SHOWN = 60


class IsoTime(click.ParamType):
    """An ISO 8601 time (2026-05-01T09:00:00+02:00, 2026-05-01 09:00, 2026-05-01); UTC when
    it gives no offset."""

    name = "ISO_TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-05-01T09:00:00Z)", param, ctx)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


ISO_TIME = IsoTime()


def parse_endpoint_id(ref: str) -> UUID:
    """ENDPOINT_ID as a UUID; anything else names no endpoint."""
    try:
        return UUID(ref)
    except ValueError:
        raise UserError(f'endpoint "{ref}" not found ({LIST_HINT})') from None


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _events(events: list[str] | None) -> str:
    return "all" if events is None else ", ".join(events)


def _state(endpoint: dict[str, Any]) -> str:
    """Enabled, or since when and why not (a 410, a failed delivery: replay turns it on)."""
    if endpoint["enabled"]:
        return "enabled"
    since = datetime.fromisoformat(endpoint["disabled_at"]).astimezone(UTC)
    return f"disabled since {since:%Y-%m-%d %H:%M:%S} UTC: {endpoint['disabled_reason']}"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@click.group()
def endpoint() -> None:
    """Outbound webhook endpoints: URLs a tenant's events are POSTed to, signed
    (Standard Webhooks; docs/webhooks.md)."""


@endpoint.command()
@click.argument("tenant")
@click.argument("url")
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="TYPE",
    help="An event type to send (repeat for more) [all]: call.ended, entry.finished, "
    "batch.started, batch.paused, batch.resumed, batch.finished, report.sent.",
)
@click.option(
    "--secret",
    metavar="whsec_…",
    help="The signing secret (whsec_ and the base64 of 24 to 64 random bytes) [generated].",
)
@json_option
@click.pass_obj
def add(
    app: AppContext,
    tenant: str,
    url: str,
    events: tuple[str, ...],
    secret: str | None,
    as_json: bool,
) -> None:
    """Add an endpoint of TENANT (id or exact name) at URL, and print its id and its signing
    secret, shown this once."""
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        made = Client(conn).add_webhook(tenant_id, url, list(events) or None, secret)
    if as_json:
        print_json({"tenant_id": tenant_id, **made})
        return
    print_fields(
        [
            ("endpoint", made["endpoint_id"]),
            ("url", made["url"]),
            ("events", _events(made["events"])),
            ("secret", made["secret"]),
        ]
    )
    click.echo()
    click.echo("The secret is shown this once: keep it to verify the deliveries' signatures.")


@endpoint.command("list")
@click.argument("tenant")
@json_option
@click.pass_obj
def list_endpoints(app: AppContext, tenant: str, as_json: bool) -> None:
    """List TENANT's endpoints (oldest first), with their deliveries pending, delivered and
    failed."""
    with connect(app.read_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        endpoints = Client(conn).list_webhooks(tenant_id)
    if as_json:
        print_json(endpoints)
        return
    rows = [
        {
            **e,
            "events": _events(e["events"]),
            "state": _state(e),
        }
        for e in endpoints
    ]
    print_table(
        rows,
        [
            ("endpoint_id", "ENDPOINT"),
            ("url", "URL"),
            ("events", "EVENTS"),
            ("pending", "PENDING"),
            ("delivered", "DELIVERED"),
            ("failed", "FAILED"),
            ("state", "STATE"),
        ],
        empty="no endpoints yet (batchctl endpoint add TENANT URL)",
    )


@endpoint.command()
@click.argument("tenant")
@click.argument("endpoint_ref", metavar="ENDPOINT_ID")
@click.pass_obj
def remove(app: AppContext, tenant: str, endpoint_ref: str) -> None:
    """Remove ENDPOINT_ID of TENANT, with its deliveries (pending ones are not sent)."""
    endpoint_id = parse_endpoint_id(endpoint_ref)
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        Client(conn).remove_webhook(tenant_id, endpoint_id)
    click.echo(f"endpoint {endpoint_id} removed")


@endpoint.command()
@click.argument("tenant")
@click.argument("endpoint_ref", metavar="ENDPOINT_ID")
@click.option(
    "--limit",
    type=int,
    default=50,
    show_default=True,
    metavar="N",
    help="How many of the latest to show (1 to 1000).",
)
@json_option
@click.pass_obj
def deliveries(app: AppContext, tenant: str, endpoint_ref: str, limit: int, as_json: bool) -> None:
    """List ENDPOINT_ID's latest deliveries, newest first (--json: each with its attempts)."""
    endpoint_id = parse_endpoint_id(endpoint_ref)
    with connect(app.read_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        rows = Client(conn).webhook_deliveries(tenant_id, endpoint_id, limit)
    if as_json:
        print_json(rows)
        return
    print_table(
        [
            {
                **d,
                "created_at": _time(d["created_at"]),
                "last_error": None
                if d["last_error"] is None
                else _one_line(d["last_error"], ERROR_SHOWN),
            }
            for d in rows
        ],
        [
            ("delivery_id", "DELIVERY"),
            ("type", "TYPE"),
            ("status", "STATUS"),
            ("attempts", "ATTEMPTS"),
            ("last_status_code", "LAST CODE"),
            ("created_at", "CREATED (UTC)"),
            ("last_error", "LAST ERROR"),
        ],
        empty="no deliveries yet",
    )


@endpoint.command()
@click.argument("tenant")
@click.argument("endpoint_ref", metavar="ENDPOINT_ID")
@click.option(
    "--since",
    type=ISO_TIME,
    required=True,
    help="Send again every delivery queued since this time (ISO 8601; UTC without an offset).",
)
@click.pass_obj
def replay(app: AppContext, tenant: str, endpoint_ref: str, since: datetime) -> None:
    """Send ENDPOINT_ID's deliveries since --since again (delivered and failed ones too, with
    their webhook-id, which receivers deduplicate by), and turn the endpoint back on if a 410
    or a failed delivery turned it off."""
    endpoint_id = parse_endpoint_id(endpoint_ref)
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        queued = Client(conn).replay_webhooks(tenant_id, endpoint_id, since)
    click.echo(f"{queued} deliveries queued again; endpoint {endpoint_id} is enabled")


@endpoint.command("test")
@click.argument("tenant")
@click.argument("endpoint_ref", metavar="ENDPOINT_ID")
@click.option(
    "--allow-private-webhooks",
    is_flag=True,
    envvar="BATCHCTL_ALLOW_PRIVATE_WEBHOOKS",
    show_envvar=True,
    help="Let the URL be a loopback, private or link-local address, and http (refused "
    "otherwise, as the daemon refuses them).",
)
@click.pass_obj
def send_test(
    app: AppContext, tenant: str, endpoint_ref: str, allow_private_webhooks: bool
) -> None:
    """Send a signed "ping" event to ENDPOINT_ID now, from here (not through the queue), and
    print the receiver's answer. Exit status 0 when it answers 2xx, else 1."""
    endpoint_id = parse_endpoint_id(endpoint_ref)
    # The primary, not --read-url: a standby may not have an endpoint just added.
    with connect(app.database_url()) as conn:
        tenant_id = resolve_tenant(conn, tenant)
        row = conn.execute(
            """SELECT url, secret, disabled_at, disabled_reason FROM batchctl.webhook_endpoints
                WHERE tenant_id = %s AND id = %s""",
            (tenant_id, endpoint_id),
        ).fetchone()
    if row is None:
        raise UserError(f"endpoint {endpoint_id} not found ({LIST_HINT})")
    url, secret, disabled_at, disabled_reason = row
    now = datetime.now(UTC)
    message_id = f"msg_ping_{uuid4().hex}"
    body = json.dumps(
        {
            "type": "ping",
            "timestamp": now.isoformat(),
            "data": {"endpoint_id": str(endpoint_id), "tenant_id": str(tenant_id)},
        }
    ).encode()
    try:
        signed = headers(secret, message_id, now, body)
    except ValueError as exc:
        raise UserError(f"endpoint {endpoint_id}'s secret: {exc}") from None
    if disabled_at is not None:
        click.echo(
            f"note: the endpoint is disabled ({disabled_reason}); "
            "batchctl endpoint replay turns it back on",
            err=True,
        )
    response = asyncio.run(_send(url, signed, body, allow_private_webhooks))
    if response.status is None:
        hint = ""
        if not allow_private_webhooks and (response.error or "").startswith("refused:"):
            hint = " (--allow-private-webhooks allows http and private or loopback addresses)"
        raise UserError(f"{url}: {response.error}{hint}")
    click.echo(f"{url} answered HTTP {response.status} in {response.elapsed_ms:.0f} ms")
    if response.body.strip():
        click.echo(f"answer: {_one_line(response.body, ANSWER_SHOWN)}")
    if not 200 <= response.status < 300:
        raise UserError(f"the receiver answered HTTP {response.status}, not 2xx")


async def _send(url: str, signed: dict[str, str], body: bytes, allow_private: bool) -> Response:
    # No proxy (trust_env off): the sender connects to the checked address itself.
    async with aiohttp.ClientSession(trust_env=False) as session:
        return await post(
            session, url, signed, body,
            allow_private=allow_private, max_response_bytes=ANSWER_BYTES,
        )  # fmt: skip
