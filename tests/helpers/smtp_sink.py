"""A real SMTP server on 127.0.0.1 (aiosmtpd, in its own thread) that records what it receives.

Tests can take it down (connections refused) and bring it back on the same port, make it answer
the next messages with a temporary failure, refuse recipients, require a login, or hold each
message for a while before accepting it (to catch a sender mid-send).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from batchctl.config import SmtpSettings
from ports import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None  # the user that authenticated, if any


@dataclass
class SmtpSink:
    """The server and, as aiosmtpd's handler, what it answers (handle_RCPT / handle_DATA)."""

    login: tuple[str, str] | None = None  # (user, password) required before MAIL when set
    temporary_failures: int = 0  # the next N messages get "451 try again later"
    refuse: set[str] = field(default_factory=set)  # recipients answered "550 no such mailbox"
    hold_s: float = 0.0  # wait this long before accepting a message
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _controller: Controller | None = None

    def settings(self, **overrides: Any) -> SmtpSettings:
        values: dict[str, Any] = {"host": HOST, "port": self.port, "sender": "reports@test"}
        if self.login:
            values["user"], values["password"] = self.login
        return SmtpSettings(**(values | overrides))

    def up(self) -> None:
        # A stopped controller's loop is closed: every start needs a new controller.
        self._controller = Controller(
            self,
            hostname=HOST,
            port=self.port,
            auth_required=self.login is not None,
            auth_require_tls=False,
            authenticator=self._authenticate,
        )
        self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Waits until at least ``count`` messages arrived; returns all of them."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            assert arrived, f"{len(self.received)} messages arrived, expected {count}"
            return list(self.received)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.temporary_failures > 0:
            self.temporary_failures -= 1
            return "451 4.3.0 try again later"
        await asyncio.sleep(self.hold_s)
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        with self._changed:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), message, login)
            )
            self._changed.notify_all()
        return "250 OK"

    def _authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.login == (
            data.login.decode(),
            data.password.decode(),
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)
