"""Standard Webhooks signatures: the headers that let a receiver check a delivery came from us.

The HMAC itself is the ``standardwebhooks`` package's, so it is byte-for-byte what receivers
using the official libraries verify.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def headers(secret: str, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The headers of one delivery of ``body``: ``webhook-id``, ``webhook-timestamp`` (integer
    seconds since the epoch), ``webhook-signature`` (``v1,<base64>``) and ``content-type``.

    ``message_id`` must stay the same across retries of one event (receivers deduplicate on it);
    ``timestamp`` is the attempt's time and must be timezone-aware. ``body`` must be UTF-8 (it
    is JSON). Raises ValueError for a malformed secret, an empty id, a naive timestamp or a
    body that is not UTF-8.
    """
    if not message_id:
        raise ValueError("message_id is empty")
    if timestamp.tzinfo is None or timestamp.utcoffset() is None:
        # A naive time would be read as local time by some code and UTC by other code.
        raise ValueError("timestamp must be timezone-aware")
    # standardwebhooks replaces (not converts) the zone with UTC: give it UTC already, or a
    # non-UTC timestamp would be signed hours off the header's value.
    utc = timestamp.astimezone(UTC)
    signature = _webhook(secret).sign(message_id, utc, body.decode("utf-8"))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(utc.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def _webhook(secret: str) -> Webhook:
    # Webhook() decodes base64 leniently (stray characters are dropped): a mistyped secret
    # would sign with another key and every delivery would fail verification, unexplained.
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX}<base64>: {exc}") from None
    if not key:
        raise ValueError("the webhook secret is empty")
    return Webhook(key)
