"""batchctl.outbound: the HTTP side of tenants' outbound webhooks (https://www.standardwebhooks.com/).

The database writes one delivery row per event per endpoint (an outbox); the daemon claims due
deliveries and, for each, calls this library: sign the body (``signing``), POST it to an address
checked to be public (``destinations``, ``sender``), and hand the answer back. What the answer
makes of the delivery, and when it is tried again, the database decides (record_webhook_attempt).
No database code here, no global state.
"""

from batchctl.outbound.destinations import Destination, UnsafeDestination, resolve
from batchctl.outbound.sender import Response, post
from batchctl.outbound.signing import headers, new_secret

__all__ = [
    "Destination",
    "Response",
    "UnsafeDestination",
    "headers",
    "new_secret",
    "post",
    "resolve",
]
