"""The simulator as a carrier: per LiveKit SIP trunk, limits on new calls per second and on calls
in flight (the scenario's ``carrier`` key). A call over either limit is refused with SIP 503
before it rings (batchctl.sim.outcomes.CARRIER_REFUSED); every start, accepted or refused, is
recorded (SimStats.carrier_start).

A call starts at the carrier when a CreateSIPParticipant arrives (sip mode) or when the agent
dials (agent mode). ``max_cps``: a start is refused if it would make more than ``max_cps``
accepted starts within one second (below 1: if the last accepted start is less than
``1 / max_cps`` s ago). ``max_concurrent``: refused while that many accepted calls on the trunk
are not over. A trunk the scenario does not list has no limits.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchctl.sim.fields import ScenarioError, check_keys, number
from batchctl.sim.stats import CarrierStart, SimStats


@dataclass(frozen=True)
class TrunkLimits:
    max_cps: float | None = None  # new calls per second; fractional: 0.5 is one every 2 s
    max_concurrent: int | None = None  # calls in flight

    def rate_window(self) -> tuple[float, int] | None:
        """(seconds, how many accepted starts they may hold), or None without a rate limit."""
        if self.max_cps is None:
            return None
        if self.max_cps >= 1:
            return 1.0, math.floor(self.max_cps)
        return 1.0 / self.max_cps, 1


@dataclass(frozen=True)
class CarrierLimits:
    trunks: Mapping[str, TrunkLimits] = field(default_factory=dict)  # by LiveKit trunk id

    @classmethod
    def from_dict(cls, doc: Any) -> CarrierLimits:
        """``{"trunks": {"ST_…": {"max_cps": 2, "max_concurrent": 10}}}``."""
        check_keys(doc, ["trunks"], "carrier")
        trunks = doc.get("trunks", {})
        if not isinstance(trunks, dict):
            raise ScenarioError(
                f"carrier.trunks: expected an object of trunk id: limits, got {trunks!r}"
            )
        return cls(
            {
                trunk_id: _trunk_limits(limits, f"carrier.trunks.{trunk_id}")
                for trunk_id, limits in trunks.items()
                if not trunk_id.startswith("_")
            }
        )


def _trunk_limits(doc: Any, where: str) -> TrunkLimits:
    check_keys(doc, ["max_cps", "max_concurrent"], where)
    max_cps = doc.get("max_cps")
    if max_cps is not None:
        max_cps = float(number(max_cps, f"{where}.max_cps", minimum=0.0))
        if max_cps == 0 or not math.isfinite(max_cps):
            raise ScenarioError(f"{where}.max_cps: expected a number > 0, got {doc['max_cps']!r}")
    max_concurrent = doc.get("max_concurrent")
    if max_concurrent is not None:
        max_concurrent = int(
            number(max_concurrent, f"{where}.max_concurrent", minimum=1, integer=True)
        )
    return TrunkLimits(max_cps, max_concurrent)


class Carrier:
    """The carrier's side of every trunk; used on the simulator's event loop only."""

    def __init__(self, limits: CarrierLimits, stats: SimStats) -> None:
        self._limits = limits.trunks
        self._stats = stats
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)  # accepted starts
        self._in_flight: Counter[str] = Counter()

    def start(self, trunk_id: str, *, room: str, phone: str, caller_id: str | None) -> bool:
        """A call starts on ``trunk_id``: True if accepted (then ``finished`` once it is over),
        False if refused."""
        now = self._stats.clock()
        accepted = self._admits(trunk_id, now)
        if accepted:
            self._in_flight[trunk_id] += 1
            limits = self._limits.get(trunk_id)
            if limits is not None and limits.max_cps is not None:  # else nobody reads them
                self._recent[trunk_id].append(now)
        self._stats.carrier_start(CarrierStart(room, phone, trunk_id, caller_id, accepted, now))
        return accepted

    def finished(self, trunk_id: str) -> None:
        """An accepted call is over: its trunk has room for another."""
        self._in_flight[trunk_id] -= 1

    def _admits(self, trunk_id: str, now: float) -> bool:
        limits = self._limits.get(trunk_id)
        if limits is None:
            return True
        if limits.max_concurrent is not None and self._in_flight[trunk_id] >= limits.max_concurrent:
            return False
        window = limits.rate_window()
        if window is None:
            return True
        seconds, most = window
        recent = self._recent[trunk_id]
        # StatsSnapshot.starts_per_window compares the same way (later < earlier + window).
        while recent and not now < recent[0] + seconds:
            recent.popleft()
        return len(recent) < most
