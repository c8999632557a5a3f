"""The demo's mail server: a local SMTP server (aiosmtpd) that keeps what it receives, so the
report batchctl e-mails can be shown (and opened) without sending anything anywhere."""

from __future__ import annotations

import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

HOST = "127.0.0.1"


class Mailbox:
    def __init__(self) -> None:
        with socket.socket() as probe:  # aiosmtpd wants a port number before it starts
            probe.bind((HOST, 0))
            self.port: int = probe.getsockname()[1]
        self.messages: list[EmailMessage] = []
        self._arrived = threading.Condition()
        self._controller = Controller(self, hostname=HOST, port=self.port)

    def __enter__(self) -> Mailbox:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()

    def wait_for_message(self, timeout: float) -> EmailMessage | None:
        with self._arrived:
            self._arrived.wait_for(lambda: self.messages, timeout)
            return self.messages[0] if self.messages else None

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        return "250 OK"
