"""The simulator's scenario: what happens to each call and how LiveKit misbehaves.

Everything random is derived from ``seed`` and the call's (phone, attempt), never from a global
random state, so a test can predict every call: ``Scenario.outcome_for(phone, attempt)``.
A scenario is built from a JSON object (``Scenario.from_dict`` / ``Scenario.load``); an unknown
key or a bad value raises ScenarioError naming the key. Keys starting with ``_`` are comments.

``carrier`` (optional) makes the simulator a carrier with limits per LiveKit SIP trunk id, each
optional: ``max_cps`` (a number > 0; 0.5 is one call every 2 s) and ``max_concurrent`` (an
integer >= 1). A call over a limit is refused with SIP 503 before it rings
(batchctl.sim.carrier); a trunk not listed has no limits::

    {"carrier": {"trunks": {"ST_fast": {"max_cps": 2, "max_concurrent": 10}}}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from batchctl.sim.carrier import CarrierLimits
from batchctl.sim.fields import (
    ScenarioError,
    check_keys,
    number,
    outcome_list,
    rate,
    seconds_range,
    weights,
)
from batchctl.sim.outcomes import ANSWERED, OUTCOMES

# Who dials the phone after a dispatch: "agent" (batchctl's agent mode: the voice agent calls
# CreateSIPParticipant itself), "sip" (batchctl calls CreateSIPParticipant; the agent waits for
# the callee), "auto" (the agent dials unless a CreateSIPParticipant for its room arrived before
# the agent joined; set "sip" explicitly when batchctl dials, to rule out a late arrival).
Mode = Literal["auto", "agent", "sip"]
MODES: tuple[str, ...] = ("auto", "agent", "sip")
CRASH = "crash"  # an override: answered, and the agent dies after reporting "ongoing"
Fault = Literal["error", "stall", "garble"]
# ListDispatch for a room that does not exist: "unavailable" (503) as a self-hosted LiveKit
# answers, or "empty" as LiveKit Cloud does.
MissingRoom = Literal["unavailable", "empty"]
MISSING_ROOM_ANSWERS: tuple[str, ...] = ("unavailable", "empty")

DEFAULT_WEIGHTS: dict[str, float] = {
    "ended": 0.6,
    "voicemail": 0.05,
    "busy": 0.1,
    "no_answer": 0.15,
    "declined": 0.05,
    "not_reachable": 0.025,
    "failed": 0.025,
}


@dataclass(frozen=True)
class Range:
    low: float
    high: float

    def pick(self, unit: float) -> float:
        return self.low + (self.high - self.low) * unit


@dataclass(frozen=True)
class DispatchFaults:
    """LiveKit misbehaving on CreateDispatch, counted over the simulator's CreateDispatch calls."""

    error_rate: float = 0.0  # share answered 503 unavailable (nothing is created)
    fail_first: int = 0  # the first N are answered 503 unavailable
    latency_s: float = 0.0  # added before every CreateDispatch is handled
    stall_rate: float = 0.0  # share whose reply is held back stall_s *after* the dispatch exists
    stall_s: float = 0.0  # long enough, it trips the client's timeout: an ambiguous dispatch
    garble_rate: float = 0.0  # share answered 200 with a body that is no protobuf, *after* the
    # dispatch exists: an error no client plans for


@dataclass(frozen=True)
class CallPlan:
    outcome: str
    agent_crashes: bool
    join_delay_s: float
    ring_time_s: float
    call_length_s: float


@dataclass(frozen=True)
class Scenario:
    seed: int = 0
    mode: Mode = "auto"
    outcomes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    numbers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    join_delay_s: Range = Range(0.05, 0.3)
    ring_time_s: Range = Range(0.5, 3.0)
    call_length_s: Range = Range(2.0, 8.0)
    agent_crash_rate: float = 0.0
    report_give_up_s: float = 120.0
    webhook_url: str | None = None
    dispatch_faults: DispatchFaults = DispatchFaults()
    list_dispatch_missing_room: MissingRoom = "unavailable"
    carrier: CarrierLimits = field(default_factory=CarrierLimits)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ScenarioError(f"{path}: {exc}") from exc
        except RecursionError as exc:  # JSON nested deeper than Python's decoder goes
            raise ScenarioError(f"{path}: nested too deep to read") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Scenario:
        names = [f.name for f in fields(cls)]
        check_keys(doc, names, "scenario")
        parsers = {
            "seed": lambda v: int(number(v, "seed", integer=True)),
            "mode": lambda v: _choice(v, "mode", MODES),
            "outcomes": lambda v: weights(v, "outcomes", OUTCOMES),
            "numbers": lambda v: _numbers(v),
            "join_delay_s": lambda v: Range(*seconds_range(v, "join_delay_s")),
            "ring_time_s": lambda v: Range(*seconds_range(v, "ring_time_s")),
            "call_length_s": lambda v: Range(*seconds_range(v, "call_length_s")),
            "agent_crash_rate": lambda v: rate(v, "agent_crash_rate"),
            "report_give_up_s": lambda v: number(v, "report_give_up_s", minimum=0.0),
            "webhook_url": lambda v: _webhook_url(v),
            "dispatch_faults": lambda v: _faults(v),
            "list_dispatch_missing_room": lambda v: _choice(
                v, "list_dispatch_missing_room", MISSING_ROOM_ANSWERS
            ),
            "carrier": CarrierLimits.from_dict,
        }
        return cls(**{k: parsers[k](v) for k, v in doc.items() if not k.startswith("_")})

    def outcome_for(self, phone: str, attempt: int) -> str:
        """The final status of the call to ``phone`` on ``attempt`` (1-based)."""
        override = self._override(phone, attempt)
        if override is not None:
            return "ended" if override == CRASH else override
        draw = self._unit(phone, attempt, "outcome") * sum(self.outcomes.values())
        for outcome in OUTCOMES:  # a fixed order: the same seed gives the same outcomes
            draw -= self.outcomes.get(outcome, 0.0)
            if draw < 0:
                return outcome
        return max(self.outcomes, key=lambda o: self.outcomes[o])  # float rounding at the top

    def plan_for(self, phone: str, attempt: int) -> CallPlan:
        outcome = self.outcome_for(phone, attempt)
        crash_draw = self._unit(phone, attempt, "crash") < self.agent_crash_rate
        return CallPlan(
            outcome=outcome,
            agent_crashes=outcome in ANSWERED
            and (self._override(phone, attempt) == CRASH or crash_draw),
            join_delay_s=self.join_delay_s.pick(self._unit(phone, attempt, "join")),
            ring_time_s=self.ring_time_s.pick(self._unit(phone, attempt, "ring")),
            call_length_s=self.call_length_s.pick(self._unit(phone, attempt, "length")),
        )

    def dispatch_fault(self, n: int) -> Fault | None:
        """The fault the ``n``-th CreateDispatch (1-based) meets, if any."""
        faults = self.dispatch_faults
        if n <= faults.fail_first or self._unit("fault", n) < faults.error_rate:
            return "error"
        if self._unit("stall", n) < faults.stall_rate:
            return "stall"
        if self._unit("garble", n) < faults.garble_rate:
            return "garble"
        return None

    def _override(self, phone: str, attempt: int) -> str | None:
        planned = self.numbers.get(phone)
        if not planned:
            return None
        return planned[min(max(attempt, 1), len(planned)) - 1]  # the last one repeats

    def _unit(self, *parts: object) -> float:
        """A uniform number in [0, 1) fixed by the seed and ``parts``."""
        digest = hashlib.sha256(":".join(map(str, (self.seed, *parts))).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64


def _choice(value: Any, key: str, allowed: tuple[str, ...]) -> Any:
    if value not in allowed:
        raise ScenarioError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _numbers(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ScenarioError(f"numbers: expected an object of phone: outcome(s), got {value!r}")
    return {
        phone: outcome_list(planned, f"numbers.{phone}", (*OUTCOMES, CRASH))
        for phone, planned in value.items()
    }


def _webhook_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ScenarioError(f"webhook_url: expected an http(s) URL or null, got {value!r}")
    return value


def _faults(value: Any) -> DispatchFaults:
    check_keys(value, [f.name for f in fields(DispatchFaults)], "dispatch_faults")
    parsed: dict[str, Any] = {}
    for key, raw in value.items():
        if key.startswith("_"):
            continue
        name = f"dispatch_faults.{key}"
        if key.endswith("_rate"):
            parsed[key] = rate(raw, name)
        elif key == "fail_first":
            parsed[key] = int(number(raw, name, minimum=0, integer=True))
        else:
            parsed[key] = number(raw, name, minimum=0.0)
    return DispatchFaults(**parsed)
