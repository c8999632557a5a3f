"""The dashboard for a test: served on a thread on a free port of 127.0.0.1, with an operator
token and, for each tenant login given, a token limited to it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.auth import OPERATOR, Token
from batchctl.dashboard.threaded import RunningDashboard, run_dashboard

OPERATOR_TOKEN = "operator-token-for-tests"


@dataclass(frozen=True)
class Board:
    running: RunningDashboard
    tokens: dict[str, str]  # token name (operator, or the tenant login) -> secret

    @property
    def url(self) -> str:
        return self.running.url


@contextmanager
def dashboard(
    db_url: str, tenant_logins: Sequence[str] = (), *, refresh_s: float = 5.0
) -> Iterator[Board]:
    tokens = [Token(OPERATOR, OPERATOR_TOKEN)]
    tokens += [Token(role, f"tenant-token-{role}", role) for role in tenant_logins]
    settings = DashboardSettings(url=db_url, tokens=tokens, refresh_s=refresh_s)
    with run_dashboard(settings) as running:
        yield Board(running, {t.name: t.secret for t in tokens})
