"""Campaigns run by real daemons against the simulator: what each call must have ended with,
as the scenario plans it and the batch options retry it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import psycopg

from batchctl.sim import Scenario
from sqlapi import ENTRY_FOR_CALL

# A campaign's batches: (tenant name, entries, options) each.
Plan = list[tuple[str, list[dict[str, Any]], dict[str, Any]]]

QUICK_CALLS = {
    "mode": "agent",
    "join_delay_s": [0.005, 0.02],
    "ring_time_s": [0.01, 0.05],
    "call_length_s": [0.03, 0.15],
}


def expected_outcomes(
    scenario: Scenario, phone: str, retry_on: tuple[str, ...] = (), max_attempts: int = 1
) -> list[str]:
    """The call statuses the attempts to ``phone`` end with, as the batch options retry them."""
    outcomes = [scenario.outcome_for(phone, 1)]
    while outcomes[-1] in retry_on and len(outcomes) < max_attempts:
        outcomes.append(scenario.outcome_for(phone, len(outcomes) + 1))
    return outcomes


def calls_by_phone(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    rows = conn.execute(
        """select e.to_phone, e.status::text as entry_status, c.attempt, c.status::text,
                  c.room_name
             from batchctl.call_logs c join batchctl.batch_entries e on e.id = c.entry_id
            order by e.to_phone, c.attempt"""
    ).fetchall()
    by_phone: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_phone.setdefault(row["to_phone"], []).append(row)
    return by_phone


def assert_calls_as_planned(
    conn: psycopg.Connection[Any],
    scenario: Scenario,
    batches: Mapping[UUID, tuple[list[dict[str, Any]], dict[str, Any]]],
) -> None:
    """Every lead of every batch (its rows and options) was called as often as the scenario's
    outcomes and the options' retries say, each attempt ending as planned, and its entry
    ending with its last call."""
    calls = calls_by_phone(conn)
    for rows, options in batches.values():
        for row in rows:
            phone = row["to_phone"]
            expected = expected_outcomes(
                scenario, phone, tuple(options.get("retry_on", ())), options.get("max_attempts", 1)
            )
            assert [c["status"] for c in calls[phone]] == expected, phone
            assert calls[phone][-1]["entry_status"] == ENTRY_FOR_CALL[expected[-1]]
