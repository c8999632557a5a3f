"""Who may use the dashboard: its tokens, the signed session cookie a token buys, and the CSRF
token of each session.

A token is a shared secret given to the dashboard at start. The operator's token acts as the
dashboard's own database role; a tenant token names a tenant login (bound with `batchctl tenant
grant-login`), and every query of its sessions runs as that login, so row-level security and the
tenant functions decide what it sees and may do. Sessions are HMAC-signed cookies under a key
made at start: restarting the dashboard signs everybody out, and nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from batchctl.dashboard.models import Viewer

COOKIE = "batchctl_session"
SESSION_SECONDS = 12 * 3600
OPERATOR = "operator"  # the name of the token that acts as the dashboard's own role


@dataclass(frozen=True)
class Token:
    name: str  # shown in the page and recorded in the audit with every action
    secret: str
    role: str | None = None  # the tenant login its sessions act as; None: the dashboard's role


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def tenant_token(spec: str) -> Token:
    """``LOGIN=TOKEN``, or ``LOGIN`` alone for a token made up now."""
    role, _, secret = spec.partition("=")
    if not role.strip():
        raise ValueError(f"{spec!r}: expected LOGIN or LOGIN=TOKEN (a tenant login's role name)")
    return Token(name=role, secret=secret or new_secret(), role=role)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class Sessions:
    """Checks offered tokens, issues session cookies and reads them back as a Viewer."""

    def __init__(self, tokens: Sequence[Token], key: bytes | None = None) -> None:
        names = [t.name for t in tokens]
        if len(set(names)) != len(names):
            raise ValueError("two dashboard tokens share a name")
        if len({t.secret for t in tokens}) != len(tokens):
            raise ValueError("two dashboard tokens are the same secret")
        self._tokens = {t.name: t for t in tokens}
        self._key = key or secrets.token_bytes(32)

    def match(self, offered: str) -> Token | None:
        """The token whose secret is ``offered``: every token is compared, in constant time
        each, so the answer's timing says nothing about which came close."""
        found = None
        offered_digest = _digest(offered)
        for token in self._tokens.values():
            if hmac.compare_digest(_digest(token.secret), offered_digest):
                found = token
        return found

    def issue(self, token: Token, now: float | None = None) -> str:
        """A cookie value: the token's name, a session id and an expiry, signed."""
        expires = int((now or time.time()) + SESSION_SECONDS)
        name = base64.urlsafe_b64encode(token.name.encode()).decode().rstrip("=")
        body = f"{name}.{secrets.token_urlsafe(16)}.{expires}"
        return f"{body}.{self._sign('session', body)}"

    def viewer(self, cookie: str | None, now: float | None = None) -> Viewer | None:
        """The signed-in viewer of a cookie; None when it is missing, forged, expired or names a
        token this dashboard no longer has."""
        if not cookie or cookie.count(".") != 3:
            return None
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(self._sign("session", body), mac):
            return None
        name_part, session_id, expires = body.split(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return None
        try:
            name = base64.urlsafe_b64decode(name_part + "=" * (-len(name_part) % 4)).decode()
        except ValueError:
            return None
        token = self._tokens.get(name)
        if token is None:
            return None
        return Viewer(name=token.name, role=token.role, csrf=self._sign("csrf", session_id))

    def _sign(self, purpose: str, text: str) -> str:
        mac = hmac.new(self._key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
