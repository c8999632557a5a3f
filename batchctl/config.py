"""Settings of the outside services (SPEC §9): LiveKit and SMTP.

The command line reads them from options or their environment variables (LIVEKIT_*, SMTP_*:
batchctl/cli/options.py is the one place that names them) and builds these objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DispatchMode = Literal["agent", "sip"]


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class LiveKitCredentials:
    """What signs requests to LiveKit and verifies its webhooks."""

    api_key: str
    api_secret: str

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ConfigError("LiveKit API key is not set (LIVEKIT_API_KEY)")
        if not self.api_secret:
            raise ConfigError("LiveKit API secret is not set (LIVEKIT_API_SECRET)")


@dataclass(frozen=True)
class LiveKitSettings:
    url: str  # http(s)://host:port of the LiveKit server (ws:// and wss:// are accepted too)
    credentials: LiveKitCredentials
    sip_trunk_id: str | None = None  # outbound trunk: the agent (or, in sip mode, we) dial with it
    agent_name: str | None = None  # the agent to dispatch unless a batch names its own
    mode: DispatchMode = "agent"  # agent: the agent dials; sip: batchctl dials the SIP participant

    def __post_init__(self) -> None:
        if not self.url:
            raise ConfigError("LiveKit URL is not set (LIVEKIT_URL)")
        if self.mode not in ("agent", "sip"):
            raise ConfigError(f'dispatch mode: expected "agent" or "sip", got "{self.mode}"')
        if self.mode == "sip" and not self.sip_trunk_id:
            raise ConfigError("sip mode needs an outbound SIP trunk (LIVEKIT_SIP_TRUNK_ID)")


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    user: str | None = None
    password: str | None = None
    sender: str = "batchctl@localhost"
    starttls: bool = False
