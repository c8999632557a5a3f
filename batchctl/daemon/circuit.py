"""Claims pause while LiveKit is unreachable.

Every dispatch that fails retryably uses up one of its entry's few dispatch retries (SPEC:
the fifth failure fails the entry). Claiming on through an outage would fail whole campaigns
in a minute, so the first retryable failure opens the circuit: no claims until a cheap probe
of LiveKit answers, probed at growing intervals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Circuit:
    def __init__(
        self,
        first_wait: float = 1.0,
        max_wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_wait = first_wait
        self.max_wait = max_wait
        self._clock = clock
        self._wait: float | None = None  # None: closed (claims go ahead)
        self._next_probe = 0.0

    @property
    def is_open(self) -> bool:
        return self._wait is not None

    def probe_due_in(self) -> float:
        """Seconds until the next probe may go (0: now). Wake-ups meanwhile probe nothing."""
        return max(0.0, self._next_probe - self._clock())

    def trip(self, reason: str) -> None:
        if self._wait is None:
            log.warning("LiveKit unavailable (%s): claims pause until it answers", reason)
            self._wait = self.first_wait
            self._next_probe = self._clock() + self.first_wait

    def still_down(self) -> float:
        """A probe failed: the seconds to wait before the next one."""
        wait = self._wait or self.first_wait
        self._wait = min(wait * 2, self.max_wait)
        self._next_probe = self._clock() + wait
        return wait

    def close(self) -> None:
        if self._wait is not None:
            log.info("LiveKit answers again: claiming")
        self._wait = None
