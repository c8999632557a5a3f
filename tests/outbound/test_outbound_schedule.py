"""The retry schedule (batchctl/outbound/schedule.py): > 24 h in total even at the shortest
jitter, then give up."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from batchctl.outbound.schedule import JITTER, MAX_ATTEMPTS, SCHEDULE, next_delay


def test_the_table_covers_a_day_even_at_the_shortest_jitter() -> None:
    assert list(SCHEDULE) == sorted(SCHEDULE), "delays never shrink"
    assert sum(SCHEDULE, timedelta()) * (1 - JITTER) >= timedelta(hours=24)
    assert len(SCHEDULE) + 1 == MAX_ATTEMPTS


def test_delays_follow_the_table_within_the_jitter_then_stop() -> None:
    rng = random.Random(7)
    for _ in range(200):
        total = timedelta()
        for attempt in range(1, MAX_ATTEMPTS):
            delay = next_delay(attempt, rng)
            assert delay is not None
            nominal = SCHEDULE[attempt - 1]
            assert nominal * (1 - JITTER) <= delay <= nominal * (1 + JITTER)
            total += delay
        assert total >= timedelta(hours=24)
        assert next_delay(MAX_ATTEMPTS, rng) is None
        assert next_delay(MAX_ATTEMPTS + 5, rng) is None


def test_jitter_spreads_and_is_reproducible() -> None:
    delays = {next_delay(3, random.Random(seed)) for seed in range(50)}
    assert len(delays) > 40, "failures at the same time do not all retry at the same time"
    assert next_delay(3, random.Random(1)) == next_delay(3, random.Random(1))
    default = next_delay(1)
    assert default is not None and timedelta(seconds=4) <= default <= timedelta(seconds=6)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        next_delay(0)
