"""Claims pause while LiveKit is unreachable.

Every dispatch that fails retryably uses up one of its entry's few dispatch retries (SPEC:
the fifth failure fails the entry). Claiming on through an outage would fail whole campaigns
in a minute, so the first retryable failure opens the circuit: no claims until a cheap probe
of LiveKit answers, probed at growing intervals.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Circuit:
    def __init__(self, first_wait: float = 1.0, max_wait: float = 30.0) -> None:
        self.first_wait = first_wait
        self.max_wait = max_wait
        self._wait: float | None = None  # None: closed (claims go ahead)

    @property
    def is_open(self) -> bool:
        return self._wait is not None

    def trip(self, reason: str) -> None:
        if self._wait is None:
            log.warning("LiveKit unavailable (%s): claims pause until it answers", reason)
            self._wait = self.first_wait

    def still_down(self) -> float:
        """A probe failed: the seconds to wait before the next one."""
        wait = self._wait or self.first_wait
        self._wait = min(wait * 2, self.max_wait)
        return wait

    def close(self) -> None:
        if self._wait is not None:
            log.info("LiveKit answers again: claiming")
        self._wait = None
