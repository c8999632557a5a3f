"""``batchctl dashboard``: the operator dashboard in the browser (docs/dashboard.md)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from urllib.parse import quote

import click

from batchctl.cli.context import AppContext
from batchctl.cli.errors import UserError
from batchctl.dashboard.app import DashboardSettings, serve
from batchctl.dashboard.auth import OPERATOR, Sessions, Token, new_secret, tenant_token
from batchctl.database import connect

TOKEN_ENV = "BATCHCTL_DASHBOARD_TOKEN"


@click.command("dashboard")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; another than 127.0.0.1 opens it to the network",
)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    show_envvar=True,
    help="the operator's sign-in token (sees every tenant); made up and printed when not given",
)
@click.option(
    "--tenant-token",
    "tenant_tokens",
    multiple=True,
    metavar="LOGIN[=TOKEN]",
    help="a token limited to one tenant: its pages act as the tenant login LOGIN "
    "(batchctl tenant grant-login); the token is made up and printed when not given. "
    "Repeatable.",
)
@click.option(
    "--listen-url",
    envvar="BATCHCTL_LISTEN_URL",
    metavar="URL",
    show_envvar=True,
    help="direct database URL for its one LISTEN when the main URL goes through a "
    "transaction-mode pooler (as the daemon's)",
)
@click.pass_obj
def dashboard(
    app: AppContext,
    host: str,
    port: int,
    token: str | None,
    tenant_tokens: Sequence[str],
    listen_url: str | None,
) -> None:
    """Serve the live operator dashboard: campaigns, a batch in detail, pause/resume/cancel."""
    url = app.database_url()
    operator = Token(OPERATOR, token or new_secret())
    try:
        limited = [tenant_token(spec) for spec in tenant_tokens]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tenant-token") from None
    try:
        Sessions([operator, *limited])
    except ValueError as exc:  # the same login twice, or one token for two sign-ins
        raise click.BadParameter(str(exc), param_hint="--token/--tenant-token") from None
    check_tenant_logins(url, [t.role for t in limited if t.role])
    settings = DashboardSettings(url=url, tokens=[operator, *limited], listen_url=listen_url)
    given = [token is not None] + ["=" in spec for spec in tenant_tokens]

    def ready(bound: int) -> None:
        base = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
        click.echo(f"dashboard: {base}/")
        for each, chosen in zip(settings.tokens, given, strict=True):
            # A token the user chose is theirs to keep out of logs; a made-up one is shown once.
            shown = "(the token given)" if chosen else f"{base}/login?token={quote(each.secret)}"
            click.echo(f"  sign in as {each.name}: {shown}")

    try:
        asyncio.run(_until_signalled(settings, host, port, ready))
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def check_tenant_logins(url: str, roles: Sequence[str]) -> None:
    """Each tenant token's login must be bound to a tenant, and the dashboard's own role must
    be able to act as it (SET ROLE): said now, not at the first page."""
    with connect(url) as conn:
        for role in roles:
            found = conn.execute(
                """SELECT (SELECT tenant_id FROM batchctl.tenant_logins WHERE role_name = %(r)s),
                          CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(r)s)
                               THEN pg_has_role(current_user, %(r)s, 'MEMBER') END""",
                {"r": role},
            ).fetchone()
            if found is None or found[0] is None:
                raise UserError(f"--tenant-token {role}: not a tenant login "
                                f"(batchctl tenant grant-login {role} TENANT)")  # fmt: skip
            if not found[1]:
                raise UserError(f"--tenant-token {role}: the dashboard's database role cannot act "
                                f"as {role} (GRANT {role} TO the dashboard's login)")  # fmt: skip


async def _until_signalled(
    settings: DashboardSettings, host: str, port: int, ready: Callable[[int], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, host, port, stop, ready)
