"""A webhook receiver on 127.0.0.1 for the tests: every request's Standard Webhooks signature is
verified with the `standardwebhooks` library, as a tenant's server would; it can answer 503 for
a while (an outage) and keeps what it received."""

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


@dataclass
class Received:
    message_id: str
    type: str
    data: dict[str, Any]


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

    def accept(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            if self.down:
                self.refused += 1
                return 503
            try:
                event = Webhook(self.secret).verify(body, headers)
            except Exception:
                self.unverified += 1
                return 400
            self.received.append(Received(headers["webhook-id"], event["type"], event["data"]))
            return 200

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def run_receiver(secret: str) -> Iterator[Receiver]:
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            time.sleep(receiver.delay_s)
            status = receiver.accept(body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(status)
            self.end_headers()
            self.wfile.write(json.dumps({"status": status}).encode())

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
