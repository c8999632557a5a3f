"""What the simulator saw, for tests and benchmarks: thread-safe (a test reads it from another
thread than the simulator's event loop) and served as JSON at ``GET /sim/stats``.

A call is live from its CreateDispatch (or a CreateSIPParticipant outside any dispatch) until the
phone call is over, its agent gives up, or its room is deleted — always *before* the agent sends
the final report, so a slot freed in the database is never still counted live here.

Every call that reaches the carrier (batchctl.sim.carrier) is a CarrierStart, accepted or refused,
with its trunk and caller ID: what a test of batchctl's pacing and caller-ID choice measures.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DispatchRecord:
    room: str
    dispatch_id: str
    agent_name: str
    tenant_id: str
    phone: str
    attempt: int
    at: float  # wall-clock time.time() of arrival, before any injected latency


@dataclass(frozen=True)
class RoomDeletion:
    room: str
    existed: bool
    at: float


@dataclass(frozen=True)
class SipParticipantRecord:
    room: str
    phone: str
    trunk_id: str
    identity: str
    outcome: str
    dialed_by: str  # "agent" (agent mode) or "api" (a CreateSIPParticipant request)
    at: float
    caller_id: str | None = None  # the number presented to the callee, when batchctl chose one


@dataclass(frozen=True)
class CarrierStart:
    """A call starting at the carrier: a CreateSIPParticipant arriving, or an agent dialling."""

    room: str
    phone: str
    trunk_id: str  # the LiveKit trunk id; "" when none is known
    caller_id: str | None
    accepted: bool  # False: refused with SIP 503 over the trunk's limits
    at: float  # wall-clock time.time()


@dataclass(frozen=True)
class ReportRecord:
    room: str
    call_log_id: str
    status: str
    at: float  # when report_call_status returned


@dataclass(frozen=True)
class StatsSnapshot:
    dispatches: tuple[DispatchRecord, ...]
    dispatches_per_room: Mapping[str, int]
    live_per_tenant: Mapping[str, int]
    peak_per_tenant: Mapping[str, int]
    peak_per_phone: Mapping[str, int]
    room_deletions: tuple[RoomDeletion, ...]
    sip_participants: tuple[SipParticipantRecord, ...]
    reports: tuple[ReportRecord, ...]
    requests: Mapping[str, int]  # per Twirp method, e.g. "CreateDispatch"
    errors: Mapping[str, Mapping[str, int]]  # per method (or "report_call_status"), per code
    webhooks_sent: int
    webhooks_failed: int
    carrier_starts: tuple[CarrierStart, ...] = ()

    @property
    def live_calls(self) -> int:
        return sum(self.live_per_tenant.values())

    def reports_for(self, room: str) -> list[str]:
        """The statuses the agents of ``room`` reported, in order."""
        return [r.status for r in self.reports if r.room == room]

    def starts_per_window(self, trunk_id: str) -> int:
        """The most accepted starts on ``trunk_id`` within one second: over every window
        [t, t + 1) that opens at an accepted start's time t."""
        times = sorted(s.at for s in self.carrier_starts if s.accepted and s.trunk_id == trunk_id)
        most, end = 0, 0
        for first, opened in enumerate(times):
            # The same comparison as the carrier's (later < earlier + 1): they never disagree.
            while end < len(times) and times[end] < opened + 1.0:
                end += 1
            most = max(most, end - first)
        return most

    def calls_per_caller_id(self) -> dict[str, int]:
        """Accepted starts per caller ID (starts without one are left out)."""
        return dict(Counter(s.caller_id for s in self.carrier_starts if s.accepted and s.caller_id))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Live:
    tenant_id: str
    phone: str


@dataclass
class SimStats:
    clock: Callable[[], float] = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _dispatches: list[DispatchRecord] = field(default_factory=list)
    _per_room: Counter[str] = field(default_factory=Counter)
    _live: dict[str, _Live] = field(default_factory=dict)  # by call key
    _live_tenant: Counter[str] = field(default_factory=Counter)
    _live_phone: Counter[str] = field(default_factory=Counter)
    _peak_tenant: dict[str, int] = field(default_factory=dict)
    _peak_phone: dict[str, int] = field(default_factory=dict)
    _deletions: list[RoomDeletion] = field(default_factory=list)
    _sip: list[SipParticipantRecord] = field(default_factory=list)
    _reports: list[ReportRecord] = field(default_factory=list)
    _requests: Counter[str] = field(default_factory=Counter)
    _errors: dict[str, Counter[str]] = field(default_factory=dict)
    _webhooks: Counter[bool] = field(default_factory=Counter)
    _carrier: list[CarrierStart] = field(default_factory=list)

    def request(self, method: str) -> None:
        with self._lock:
            self._requests[method] += 1

    def error(self, method: str, code: str) -> None:
        with self._lock:
            self._errors.setdefault(method, Counter())[code] += 1

    def dispatch(self, record: DispatchRecord) -> None:
        with self._lock:
            self._dispatches.append(record)
            self._per_room[record.room] += 1

    def call_started(self, key: str, tenant_id: str, phone: str) -> None:
        with self._lock:
            self._live[key] = _Live(tenant_id, phone)
            self._live_tenant[tenant_id] += 1
            self._live_phone[phone] += 1
            self._peak_tenant[tenant_id] = max(
                self._peak_tenant.get(tenant_id, 0), self._live_tenant[tenant_id]
            )
            self._peak_phone[phone] = max(self._peak_phone.get(phone, 0), self._live_phone[phone])

    def call_ended(self, key: str) -> None:
        """Idempotent: a call ends once, whichever of its ends comes first."""
        with self._lock:
            live = self._live.pop(key, None)
            if live is not None:
                self._live_tenant[live.tenant_id] -= 1
                self._live_phone[live.phone] -= 1

    def room_deleted(self, room: str, existed: bool) -> None:
        with self._lock:
            self._deletions.append(RoomDeletion(room, existed, self.clock()))

    def sip_participant(self, record: SipParticipantRecord) -> None:
        with self._lock:
            self._sip.append(record)

    def carrier_start(self, record: CarrierStart) -> None:
        with self._lock:
            self._carrier.append(record)

    def report(self, room: str, call_log_id: str, status: str) -> None:
        with self._lock:
            self._reports.append(ReportRecord(room, call_log_id, status, self.clock()))

    def webhook(self, delivered: bool) -> None:
        with self._lock:
            self._webhooks[delivered] += 1

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return StatsSnapshot(
                dispatches=tuple(self._dispatches),
                dispatches_per_room=dict(self._per_room),
                live_per_tenant={t: n for t, n in self._live_tenant.items() if n},
                peak_per_tenant=dict(self._peak_tenant),
                peak_per_phone=dict(self._peak_phone),
                room_deletions=tuple(self._deletions),
                sip_participants=tuple(self._sip),
                reports=tuple(self._reports),
                requests=dict(self._requests),
                errors={m: dict(codes) for m, codes in self._errors.items()},
                webhooks_sent=self._webhooks[True],
                webhooks_failed=self._webhooks[False],
                carrier_starts=tuple(self._carrier),
            )
