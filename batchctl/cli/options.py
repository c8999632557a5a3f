"""Option groups shared by several commands: each takes the setting from its flag or its
environment variable (SPEC §9) and hands the command one settings object."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from batchctl.config import ConfigError, LiveKitCredentials, LiveKitSettings, SmtpSettings

F = TypeVar("F", bound=Callable[..., Any])


def _group(
    options: dict[str, Callable[[Any], Any]], build: Callable[..., Any], name: str
) -> Callable[[F], F]:
    """Adds ``options`` (keyword -> click option) to a command and passes it
    ``build(**their values)`` as keyword ``name`` instead."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {key: kwargs.pop(key) for key in options}
            try:
                kwargs[name] = build(**values)
            except ConfigError as exc:
                raise click.UsageError(str(exc)) from exc
            return command(*args, **kwargs)

        for option in reversed(options.values()):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


# Keywords are the settings classes' field names, so the values build them as they are.
CREDENTIAL_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "api_key": click.option(
        "--livekit-api-key", "api_key", envvar="LIVEKIT_API_KEY", default="", show_envvar=True
    ),
    "api_secret": click.option(
        "--livekit-api-secret", "api_secret", envvar="LIVEKIT_API_SECRET", default="",
        show_envvar=True,
    ),
}  # fmt: skip

LIVEKIT_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "url": click.option(
        "--livekit-url", "url", envvar="LIVEKIT_URL", default="", show_envvar=True,
        help="LiveKit server, e.g. https://my-project.livekit.cloud",
    ),
    "sip_trunk_id": click.option(
        "--sip-trunk-id", "sip_trunk_id", envvar="LIVEKIT_SIP_TRUNK_ID", show_envvar=True,
        help="outbound SIP trunk",
    ),
    "agent_name": click.option(
        "--agent-name", "agent_name", envvar="LIVEKIT_AGENT_NAME", show_envvar=True,
        help="agent to dispatch unless a batch names one",
    ),
    "mode": click.option(
        "--dispatch-mode", "mode", envvar="BATCHCTL_DISPATCH_MODE", show_envvar=True,
        type=click.Choice(["agent", "sip"]), default="agent", show_default=True,
        help="agent: the voice agent dials; sip: batchctl dials and reports the answer",
    ),
}  # fmt: skip

SMTP_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "host": click.option(
        "--smtp-host", "host", envvar="SMTP_HOST", default="localhost", show_default=True,
        show_envvar=True,
    ),
    "port": click.option(
        "--smtp-port", "port", envvar="SMTP_PORT", type=int, default=25, show_default=True,
        show_envvar=True,
    ),
    "user": click.option("--smtp-user", "user", envvar="SMTP_USER", show_envvar=True),
    "password": click.option(
        "--smtp-password", "password", envvar="SMTP_PASSWORD", show_envvar=True
    ),
    "sender": click.option(
        "--smtp-from", "sender", envvar="SMTP_FROM", default="batchctl@localhost",
        show_default=True, show_envvar=True,
    ),
    "starttls": click.option(
        "--smtp-starttls/--no-smtp-starttls", "starttls", envvar="SMTP_STARTTLS", default=False,
        show_envvar=True,
    ),
}  # fmt: skip


def livekit_credentials(command: F) -> F:
    """LIVEKIT_API_KEY / LIVEKIT_API_SECRET, passed as ``credentials: LiveKitCredentials``."""
    return _group(CREDENTIAL_OPTIONS, LiveKitCredentials, "credentials")(command)


def livekit_options(command: F) -> F:
    """LIVEKIT_* settings, passed to the command as ``livekit: LiveKitSettings``."""
    return _group({**CREDENTIAL_OPTIONS, **LIVEKIT_OPTIONS}, _livekit_settings, "livekit")(command)


def _livekit_settings(api_key: str, api_secret: str, **settings: Any) -> LiveKitSettings:
    return LiveKitSettings(credentials=LiveKitCredentials(api_key, api_secret), **settings)


def smtp_options(command: F) -> F:
    """SMTP_* settings, passed to the command as ``smtp: SmtpSettings``."""
    return _group(SMTP_OPTIONS, SmtpSettings, "smtp")(command)
