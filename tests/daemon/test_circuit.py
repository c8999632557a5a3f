"""The dispatch circuit (batchctl/daemon/circuit.py): while LiveKit is unreachable, probes go at
growing intervals, 1 s doubling to 30 s, whatever wakes the dispatch loop meanwhile."""

from __future__ import annotations

import pytest

from batchctl.daemon.circuit import Circuit


def test_probes_back_off_from_one_to_thirty_seconds_and_wake_ups_do_not_probe() -> None:
    now = [100.0]
    circuit = Circuit(clock=lambda: now[0])
    assert not circuit.is_open and circuit.probe_due_in() == 0
    circuit.trip("livekit request timed out")
    circuit.trip("again")  # a second failure while open changes nothing
    assert circuit.is_open and circuit.probe_due_in() == 1.0
    now[0] += 0.4  # a wake-up before the probe is due: still waiting
    assert circuit.probe_due_in() == pytest.approx(0.6)
    waits = []
    for _ in range(7):
        now[0] += circuit.probe_due_in()
        assert circuit.probe_due_in() == 0
        waits.append(circuit.still_down())  # the probe failed
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    circuit.close()
    assert not circuit.is_open
    circuit.trip("down again")
    assert circuit.probe_due_in() == 1.0, "a new outage starts from the first wait"
