"""How each scripted call outcome looks on the wire: the SIP status LiveKit reports for it, the
Twirp code `CreateSIPParticipant` fails with, and the participant's disconnect reason; and how a
carrier's refusal looks (batchctl.sim.carrier)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SipFailure:
    status_code: int
    status: str
    twirp_code: str
    disconnect_reason: str  # a livekit.DisconnectReason name
    carrier_refused: bool = False  # the carrier's limits, not the callee: batchctl retries

    def detail(self) -> dict[str, object]:
        """What the agent reports with the outcome; ``error`` becomes the entry's last_error."""
        detail: dict[str, object] = {
            "sip_status_code": self.status_code,
            "sip_status": self.status,
            "error": f"SIP {self.status_code} {self.status}",
        }
        if self.carrier_refused:
            detail["carrier_refused"] = True
        return detail


# Outcomes of a call that was answered: the agent talks, then reports the outcome.
ANSWERED: tuple[str, ...] = ("ended", "voicemail")

# Outcomes of a call that was never answered. The SIP codes and their Twirp codes are the ones
# LiveKit's SIP service uses (see /work/shared/NOTES.md).
SIP_FAILURES: dict[str, SipFailure] = {
    "busy": SipFailure(486, "Busy Here", "resource_exhausted", "USER_REJECTED"),
    "no_answer": SipFailure(408, "Request Timeout", "deadline_exceeded", "USER_UNAVAILABLE"),
    "declined": SipFailure(603, "Decline", "permission_denied", "USER_REJECTED"),
    "not_reachable": SipFailure(404, "Not Found", "not_found", "USER_UNAVAILABLE"),
    "failed": SipFailure(503, "Service Unavailable", "unavailable", "SIP_TRUNK_FAILURE"),
}

# The carrier refused the call over its trunk's limits, before it rang: reported as "failed".
CARRIER_REFUSED = SipFailure(
    503, "Service Unavailable", "unavailable", "SIP_TRUNK_FAILURE", carrier_refused=True
)

# The room was deleted while the number was still ringing.
HUNG_UP = SipFailure(487, "Request Terminated", "aborted", "ROOM_DELETED")

OUTCOMES: tuple[str, ...] = (*ANSWERED, *SIP_FAILURES)
