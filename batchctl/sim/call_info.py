"""What a simulated voice agent works from: its dispatch's metadata, as batchctl's daemon
writes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from batchctl.identifiers import call_log_id


@dataclass(frozen=True)
class CallInfo:
    """The dispatch metadata the agent works from (batchctl's daemon writes it)."""

    call_log_id: UUID
    tenant_id: str
    phone: str
    attempt: int
    lead_name: str
    sip_trunk_id: str  # "" when the daemon sent none
    caller_id: str | None  # the number to present (E.164), None when the daemon chose none

    @classmethod
    def from_metadata(cls, room: str, metadata: str) -> CallInfo | None:
        """None when the metadata names no phone number or a bad call log id: the agent has
        nothing to do."""
        try:
            doc: Any = json.loads(metadata)
        except ValueError:
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("to_phone"), str):
            return None
        try:
            # The daemon sends it; it is a function of the room anyway.
            call_id = UUID(str(doc.get("call_log_id") or call_log_id(room)))
        except ValueError:
            return None
        attempt = doc.get("attempt")
        caller_id = doc.get("caller_id")
        return cls(
            call_log_id=call_id,
            tenant_id=str(doc.get("tenant_id") or ""),
            phone=doc["to_phone"],
            attempt=attempt if isinstance(attempt, int) and attempt > 0 else 1,
            lead_name=str(doc.get("lead_name") or ""),
            sip_trunk_id=str(doc.get("sip_trunk_id") or ""),
            caller_id=caller_id if isinstance(caller_id, str) and caller_id else None,
        )
