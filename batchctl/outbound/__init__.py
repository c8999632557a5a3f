"""batchctl.outbound: the HTTP side of tenants' outbound webhooks (https://www.standardwebhooks.com/).

The database writes one delivery row per event per endpoint (an outbox); the daemon claims due
deliveries and, for each, calls this library: sign the body (``signing``), POST it to an address
checked to be public (``destinations``, ``sender``), classify the reply (``sender.outcome``) and,
on a failure, pick the next attempt's time (``schedule``). No database code here, no global state.
"""

from batchctl.outbound.destinations import Destination, UnsafeDestination, resolve
from batchctl.outbound.schedule import JITTER, MAX_ATTEMPTS, SCHEDULE, next_delay
from batchctl.outbound.sender import Outcome, Response, outcome, post
from batchctl.outbound.signing import headers, new_secret

__all__ = [
    "JITTER",
    "MAX_ATTEMPTS",
    "SCHEDULE",
    "Destination",
    "Outcome",
    "Response",
    "UnsafeDestination",
    "headers",
    "new_secret",
    "next_delay",
    "outcome",
    "post",
    "resolve",
]
