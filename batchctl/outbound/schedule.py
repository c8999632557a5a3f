"""When a failed delivery is tried again: a fixed, documented table with jitter.

The table grows roughly exponentially and, even with every delay jittered to its shortest,
retries for more than 24 hours (an endpoint down for a day still gets its events); after the
last entry the delivery is given up. This is the single Python copy of the schedule; docs and
the database show ``SCHEDULE``.
"""

from __future__ import annotations

import random
from datetime import timedelta

# Delay before attempt n + 2 after attempt n + 1 failed. Nominal total 31 h 42 min 35 s; at -20%
# on every step still 25 h 22 min (the last 8 h entry is what keeps that above 24 h).
SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=8),
    timedelta(hours=8),
)
# Each delay is scaled by a uniform factor in [1 - JITTER, 1 + JITTER], so deliveries that
# failed together (an endpoint's outage) do not all come back in the same second.
JITTER = 0.2
# The first attempt and one per entry.
MAX_ATTEMPTS = len(SCHEDULE) + 1


def next_delay(attempt: int, rng: random.Random | None = None) -> timedelta | None:
    """The delay before attempt ``attempt + 1`` once ``attempt`` attempts (1, 2, ...) have
    failed: ``SCHEDULE[attempt - 1]`` with jitter; None once ``MAX_ATTEMPTS`` have failed (give
    up). ``rng`` makes the jitter reproducible (tests); by default it comes from the OS."""
    if attempt < 1:
        raise ValueError(f"attempt counts failed attempts, from 1: got {attempt}")
    if attempt > len(SCHEDULE):
        return None
    factor = (rng or random.SystemRandom()).uniform(1 - JITTER, 1 + JITTER)
    return SCHEDULE[attempt - 1] * factor
