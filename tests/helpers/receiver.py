"""A webhook receiver on 127.0.0.1 for the tests: every request's Standard Webhooks signature is
verified with the `standardwebhooks` library, as a tenant's server would (401 when it does not
verify); it can answer 503 for a while (an outage) or slowly, answers 500 on a path ending in
/fail, and keeps what it received. And what to compare it with: the events the audit says
happened, and the order of an entry's."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET = "whsec_" + "c2VjcmV0LW9mLXRoZS10ZXN0cy1yZWNlaXZlci0zMmI="


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


def audited(conn: psycopg.Connection[Any]) -> Counter[str]:
    """The webhook events the audit says happened: calls and entries ended, batches started,
    paused or resumed, and finished (their report rows)."""
    rows = conn.execute(
        """select batchctl.webhook_event_type(object, from_status, to_status) as type,
                  count(*) as n
             from batchctl.events where not ignored group by 1"""
    ).fetchall()
    found = Counter({r["type"]: r["n"] for r in rows if r["type"]})
    finished = conn.execute("select count(*) as n from batchctl.reports").fetchone()
    assert finished is not None
    found["batch.finished"] = finished["n"]
    return found


def all_delivered(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        """select count(*) filter (where status <> 'delivered') as left, count(*) as n
             from batchctl.webhook_deliveries"""
    ).fetchone()
    return row is not None and row["n"] > 0 and row["left"] == 0


def first_occurrences(received: list[Received]) -> list[Received]:
    """Each event once, where it first arrived (a crash may send one again, with its id)."""
    seen: set[str] = set()
    firsts = []
    for event in received:
        if event.message_id not in seen:
            seen.add(event.message_id)
            firsts.append(event)
    return firsts


def assert_in_order_per_entry(received: list[Received]) -> None:
    """Each entry's call.ended events, then its entry.finished."""
    seen: dict[str, list[str]] = {}
    for event in received:
        if event.type in ("call.ended", "entry.finished"):
            seen.setdefault(event.data["entry_id"], []).append(event.type)
    for entry, types in seen.items():
        assert types[-1] == "entry.finished" and "entry.finished" not in types[:-1], (entry, types)
        assert types.count("call.ended") == len(types) - 1, (entry, types)
