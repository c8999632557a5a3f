"""Standard Webhooks signatures (batchctl/outbound/signing.py), checked with the reference
verifier of the ``standardwebhooks`` package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from batchctl.outbound.signing import headers, new_secret

BODY = b'{"type":"call.completed","data":{"call_id":"c-1","note":"caf\xc3\xa9"}}'


def test_headers_verify_with_the_reference_library() -> None:
    secret = new_secret()
    now = datetime.now(UTC)
    signed = headers(secret, "msg_1", now, BODY)
    assert set(signed) == {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type"}
    assert signed["webhook-id"] == "msg_1"
    assert signed["webhook-timestamp"] == str(int(now.timestamp()))
    assert signed["webhook-signature"].startswith("v1,")
    assert signed["content-type"] == "application/json"
    assert Webhook(secret).verify(BODY, signed)["data"]["note"] == "café"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"c-1", b"c-2"), signed)


def test_a_timestamp_in_another_zone_is_signed_as_the_same_instant() -> None:
    # standardwebhooks' sign() replaces the zone with UTC instead of converting to it.
    secret = new_secret()
    now = datetime.now(UTC)
    elsewhere = now.astimezone(timezone(timedelta(hours=-5)))
    signed = headers(secret, "msg_1", elsewhere, BODY)
    assert signed == headers(secret, "msg_1", now, BODY)
    Webhook(secret).verify(BODY, signed)


def test_new_secrets_are_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32


@pytest.mark.parametrize(
    ("secret", "message_id", "timestamp", "body"),
    [
        ("not-a-secret", "m", datetime.now(UTC), BODY),  # no prefix
        ("whsec_###", "m", datetime.now(UTC), BODY),  # not base64
        ("whsec_", "m", datetime.now(UTC), BODY),  # empty key
        (new_secret(), "", datetime.now(UTC), BODY),
        (new_secret(), "m", datetime.now(), BODY),  # naive
        (new_secret(), "m", datetime.now(UTC), b"\xff\xfe"),  # not UTF-8
    ],
)
def test_bad_inputs_are_refused(
    secret: str, message_id: str, timestamp: datetime, body: bytes
) -> None:
    with pytest.raises(ValueError):
        headers(secret, message_id, timestamp, body)
