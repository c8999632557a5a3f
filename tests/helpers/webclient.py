"""A small HTTP client for the dashboard's tests: keeps the session cookie, never follows
redirects (a test asserts where they point), and reads Server-Sent Events."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


@dataclass
class WebClient:
    base: str  # http://127.0.0.1:PORT
    cookies: dict[str, str] = field(default_factory=dict)

    def _connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        parts = urlsplit(self.base)
        return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:  # fmt: skip
        conn = self._connection()
        try:
            all_headers = self._headers(headers)
            body = None
            if form is not None:
                body = urlencode(form)
                all_headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=all_headers)
            response = conn.getresponse()
            answer = Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
            for value in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    if morsel["max-age"] == "0" or morsel.value == "":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return answer
        finally:
            conn.close()

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(
        self, path: str, form: dict[str, str], headers: dict[str, str] | None = None
    ) -> Answer:
        return self.request("POST", path, form, headers)

    def sign_in(self, token: str) -> Answer:
        return self.post("/login", {"token": token})

    def csrf(self, page: str = "/") -> str:
        found = CSRF_FIELD.search(self.get(page).text)
        assert found, f"no CSRF field on {page}"
        return found.group(1)

    def events(
        self, path: str, count: int, timeout: float = 15.0,
        until: Callable[[list[tuple[str, Any]]], bool] | None = None,
    ) -> list[tuple[str, Any]]:  # fmt: skip
        """The events of the stream at ``path`` (event name, decoded data): ``count`` of them,
        or fewer once ``until`` holds for those read."""
        conn = self._connection(timeout)
        try:
            conn.request("GET", path, headers=self._headers({"Accept": "text/event-stream"}))
            response = conn.getresponse()
            assert response.status == 200, (response.status, response.read()[:300])
            return read_events(response, count, until)
        finally:
            conn.close()


def read_events(
    response: http.client.HTTPResponse, count: int,
    until: Callable[[list[tuple[str, Any]]], bool] | None = None,
) -> list[tuple[str, Any]]:  # fmt: skip
    found: list[tuple[str, Any]] = []
    name, data = "message", ""
    while len(found) < count and not (until and until(found)):
        line = response.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            found.append((name, json.loads(data)))
            name, data = "message", ""
    return found
