"""A webhook receiver on 127.0.0.1 for the tests: every request's Standard Webhooks signature is
verified with the `standardwebhooks` library, as a tenant's server would (401 when it does not
verify); it can answer 503 for a while (an outage) or slowly, answers 500 on a path ending in
/fail, and keeps what it received."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    message_id: str
    type: str
    data: dict[str, Any]
    path: str
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str
    url: str = ""
    down: bool = False  # answer 503 to everything
    delay_s: float = 0.0  # wait this long before answering (a slow receiver)
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # requests answered 503 while down
    unverified: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The answer's status and body."""
        with self.lock:
            if self.down:
                self.refused += 1
                return 503, b"down"
            try:
                event = Webhook(self.secret).verify(body, headers)
            except WebhookVerificationError:
                self.unverified += 1
                return 401, b"bad signature"
            self.received.append(
                Received(headers["webhook-id"], event["type"], event["data"], path, headers)
            )
        if path.endswith("/fail"):
            return 500, b"no  such\nluck"  # an error page's lines and spaces
        return 200, json.dumps({"status": 200}).encode()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def run_receiver(secret: str) -> Iterator[Receiver]:
    """``receiver.url`` is its /hooks path."""
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(receiver.delay_s)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = receiver.accept(self.path, body, headers)
            self.send_response(status)
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
