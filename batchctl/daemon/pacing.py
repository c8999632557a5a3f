"""The daemon's side of a trunk's pacing (docs/trunks.md): the claim gives each call a start
slot at most a second ahead (sql/051); a call waits for its slot, and the dispatcher claims
again before the slots it was given run out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

# Claim again when the last slot given is this close: its calls keep their pace with no
# wake-up of their own (long calls free no slot to notify).
REFILL_S = 0.5


async def until(slot: float | None) -> None:
    """Waits for the event loop's time ``slot`` (none: no wait)."""
    if slot is not None and (delay := slot - asyncio.get_running_loop().time()) > 0:
        await asyncio.sleep(delay)


class Refill:
    """When the dispatcher should claim again for paced trunks. Remembered across claims, so
    that an early wake-up (an acknowledgement's notification, say) finding no slot yet does not
    put the refill off until the next poll."""

    def __init__(self) -> None:
        self._at: float | None = None

    def after_claim(self, now: float, dial_ins: Iterable[float | None]) -> float | None:
        """Seconds until the next claim for paced trunks, given the claim just made at ``now``
        (the event loop's time) and its calls' delays to their slots; None: none due."""
        paced = [d for d in dial_ins if d is not None]
        if paced:
            self._at = now + max(paced) - REFILL_S
        if self._at is None or (wait := self._at - now) <= 0:
            self._at = None
            return None
        return wait
