"""Stateful property test of the trunks' part of the claim (docs/trunks.md, sql/051, sql/050,
sql/058, sql/034): random sequences of trunk and caller-ID changes, batches, claims, dispatches
and call reports, with the claim's clock pinned and moved on by tenths of a second to hours.

Hypothesis drives one or two tenants (caps 2 to 6, zones on both sides of the Atlantic), each
with up to two trunks (max_cps 0.5, 1, 2 or 5; max_concurrent none or 1 to 3) and caller-ID
pools of up to three numbers from a small set of US (two area codes), UK and German numbers,
each number with a daily cap (none or 1 to 3) fixed per tenant for the example, so that a cap is
the number's, across the tenant's trunks, as caller_id_days counts it. Batches go out on their
`trunk` option or the tenant's default trunk (its first); callees are US, UK and German numbers.
The calling-hours rules are out of force (the template database has them set aside).

After every claim, checked in Python against the model (each can fail on its own):

1. a trunk's calls in flight (claimed or dispatched on it) never exceed its max_concurrent;
2. pacing: the slots (dial_at) handed out on a trunk are at least 1.02 / max_cps s apart (the
   max_cps in force at the claim; the pair across a change of max_cps is not compared), none
   earlier than the claim's time nor more than 1 s after it;
3. no call goes out on a trunk whose back-off (trunk_status.backoff.active) held at the claim;
4. each caller ID is from the trunk's pool at the claim, under its daily cap (calls per number
   per day in the tenant's zone, across the tenant's trunks); local presence: a pool number of
   the callee's local prefix (NANP: 1 + area code; else the calling code) under its cap is
   chosen when there is one, else one of the callee's country when there is one; a trunk whose
   pool numbers are all at their cap hands out no call;
5. a capacity refusal (a call `failed` with SIP 503) uses no attempt: the entry is queued again
   (until its 20th refusal) though every batch allows one attempt, at the trunk's back-off end,
   which grows as 1, 2, 4 ... s (+ up to a quarter) with the refusals in a row (one burst, the
   refusals of calls slotted before the back-off's end, counting once); a call on the trunk
   reaching `ongoing` or another end resets it;
6. a call of a tenant without trunks has no trunk, caller ID nor slot; any other goes out on its
   batch's trunk, else its tenant's default.

After every step: the invariants (tests/helpers/invariants.py) and each trunk's status as the
model has it (settings, pool, calls in flight, calls of each caller ID today, refusals).

Nothing writes a wall-clock time the claim reads back: batches never retry on an outcome
(a retry's next_attempt_at is now() + delay); a refusal's is the pinned clock's back-off.

Replays: hypothesis shrinks a failure by replaying its steps, so the database must choose alike
each time. The claim's random tenant order is seeded (seed()) over fixed tenant ids, but one
choice is not the test's to pin: batches claimed together get last_claimed_at =
clock_timestamp() in the order the trigger's UPDATE meets them, which decides their turn in a
later claim. So a failure may come back as hypothesis' FlakyFailure, with the original error
inside; no rule's draws depend on what the database chose, so a passing run is not flaky.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg import sql

from batchctl.client.rows import ClaimRow
from checks import TABLES, Conn
from clockwork import pin
from invariants import assert_invariants
from pgtools import one_row, one_value
from sqlapi import SqlApi

T = TypeVar("T")

# Caller IDs: two Miami numbers, one New York, one London, two Berlin.
CALLER_IDS = (
    "+13055550001",
    "+13055550002",
    "+12125550003",
    "+442071230004",
    "+493012340005",
    "+493012340006",
)
# Callees: Miami, New York, San Francisco (no local caller ID: the country's), London,
# Berlin and a German mobile (the calling code is a German number's local prefix).
CALLEES = (
    "+13055550100",
    "+12125550101",
    "+14155550102",
    "+442079460103",
    "+493098760104",
    "+4915112345605",
)
ZONES = ("America/New_York", "Europe/London", "Europe/Berlin", "UTC")
START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CPS = (0.5, 1, 2, 5)
SIP_503 = {"sip_status_code": 503, "error": "SIP 503 Service Unavailable"}
LIVE = ("in_queue", "ringing", "ongoing")
MAX_BATCHES = 8
US = 1e-6  # the database keeps microseconds

PICK = st.integers(0, 255)


def choose(items: list[T], pick: int) -> T:
    return items[pick % len(items)]


def place(phone: str) -> tuple[str, str]:
    """(local prefix, country) of a number of the sets above, as docs/trunks.md defines them:
    a North American number's 1 + area code, else its calling code."""
    if phone.startswith("+1"):
        return "1" + phone[2:5], "US"
    return {"44": ("44", "GB"), "49": ("49", "DE")}[phone[1:3]]


def spacing(max_cps: float) -> timedelta:
    return timedelta(seconds=1.02 / max_cps)


# ------------------------------------------------------------------------------------- model


@dataclass(eq=False)
class MTenant:
    id: UUID
    zone: str
    cap: int
    caps: dict[str, int | None]  # each caller ID's daily cap, the same on every trunk
    trunks: list[MTrunk] = field(default_factory=list)
    used: Counter[tuple[str, date]] = field(default_factory=Counter)  # calls per number per day

    def day(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.zone)).date()

    def default(self) -> MTrunk | None:
        return self.trunks[0] if self.trunks else None


@dataclass(eq=False)
class MTrunk:
    id: UUID
    tenant: MTenant
    name: str
    livekit_trunk_id: str
    max_cps: float
    max_concurrent: int | None
    pool: set[str] = field(default_factory=set)
    cps_epoch: int = 0  # changes of max_cps so far
    last_slot: tuple[datetime, int] | None = None  # the latest slot handed out, its epoch
    refusals: int = 0  # capacity refusals in a row
    backoff_until: datetime | None = None


@dataclass(eq=False)
class MEntry:
    id: UUID
    seq: int  # the model's order (ids are random: hypothesis replays by order)
    tenant: MTenant
    batch_trunk: MTrunk | None  # the batch's option trunk
    phone: str
    status: str = "queued"
    trunk: MTrunk | None = None  # its current claim's
    dial_at: datetime | None = None  # its current claim's slot
    room: str = ""  # its current claim's room
    calls: int = 0
    refusals: int = 0
    not_before: datetime | None = None  # a refusal's back-off end


@dataclass(eq=False)
class MCall:
    id: UUID
    seq: int
    entry: MEntry
    trunk: MTrunk | None
    status: str = "in_queue"


def reset(conn: Conn) -> None:
    """Empties the tables of tests/helpers/checks.TABLES (every one a scenario writes; the
    reference data stays) between examples, triggers and foreign keys off meanwhile."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for table in TABLES:
            conn.execute(sql.SQL("DELETE FROM batchctl.{}").format(sql.Identifier(table)))


# ---------------------------------------------------------------------------------- strategies

trunk_st = st.tuples(
    st.sampled_from(CPS),
    st.one_of(st.none(), st.integers(1, 3)),
    st.lists(st.sampled_from(CALLER_IDS), max_size=3, unique=True),
)
caps_st = st.lists(
    st.one_of(st.none(), st.integers(1, 3)), min_size=len(CALLER_IDS), max_size=len(CALLER_IDS)
)
callees_st = st.lists(st.sampled_from(CALLEES), min_size=1, max_size=4, unique=True)
# Mostly tenths of a second (pacing, back-off), now and then hours (the next day's caps).
advance_st = st.one_of(
    st.integers(1, 30).map(lambda n: timedelta(seconds=n / 10)),
    st.integers(1, 30).map(lambda n: timedelta(seconds=n / 10)),
    st.integers(1, 30).map(lambda n: timedelta(seconds=n)),
    st.integers(1, 30).map(lambda h: timedelta(hours=h)),
)
outcome_st = st.sampled_from(("ringing", "ongoing", "completed", "busy", "refused", "refused"))


# ------------------------------------------------------------------------------------- machine


class TrunkMachine(RuleBasedStateMachine):
    shared: ClassVar[Conn | None] = None  # the test's database

    def __init__(self) -> None:
        super().__init__()
        assert TrunkMachine.shared is not None, "run through test_trunk_machine"
        self.conn = TrunkMachine.shared
        reset(self.conn)
        self.api = SqlApi(self.conn)
        self.now = START
        self.tenants: list[MTenant] = []
        self.trunks: dict[str, MTrunk] = {}  # by livekit_trunk_id
        self.entries: dict[UUID, MEntry] = {}
        self.calls: dict[UUID, MCall] = {}
        self.batches = 0

    # ---------------------------------------------------------------- helpers

    def set_clock(self, at: datetime) -> None:
        self.now = at
        pin(self.conn, at)

    def seed(self) -> None:
        """The session's random() made repeatable: the claim takes tenants in random order and
        a back-off has a random part, and hypothesis replays an example to shrink it."""
        self.conn.execute("select setseed(0.25)")

    def in_flight(self, trunk: MTrunk) -> int:
        return sum(
            1
            for e in self.entries.values()
            if e.trunk is trunk and e.status in ("running", "dispatched")
        )

    def live(self) -> list[MCall]:
        return [c for c in self.calls.values() if c.status in LIVE]

    def add_numbers(self, trunk: MTrunk, numbers: list[str]) -> None:
        """Adds numbers with their tenant's caps (one call per cap: a call takes one)."""
        by_cap: dict[int | None, list[str]] = {}
        for n in numbers:
            by_cap.setdefault(trunk.tenant.caps[n], []).append(n)
        for cap, group in by_cap.items():
            added = self.api.add_caller_ids(trunk.tenant.id, trunk.id, group, cap)
            assert added == len(set(group) - trunk.pool), (group, trunk.pool, added)
            trunk.pool |= set(group)

    def new_trunk(self, tenant: MTenant, spec: tuple[float, int | None, list[str]]) -> None:
        cps, max_concurrent, numbers = spec
        n = len(self.trunks)
        name, livekit = f"trunk {n}", f"ST_{n}"
        trunk_id = self.api.create_trunk(tenant.id, name, livekit, cps, max_concurrent)
        trunk = MTrunk(trunk_id, tenant, name, livekit, cps, max_concurrent)
        tenant.trunks.append(trunk)
        self.trunks[livekit] = trunk
        if numbers:
            self.add_numbers(trunk, numbers)

    # ---------------------------------------------------------------- setup

    @initialize(
        minutes=st.integers(0, 24 * 60 - 1),
        tenants=st.lists(
            st.tuples(
                st.sampled_from(ZONES),
                st.integers(2, 6),
                caps_st,
                st.lists(trunk_st, max_size=2),
                callees_st,
            ),
            min_size=1,
            max_size=2,
        ),
    )
    def setup(
        self,
        minutes: int,
        tenants: list[
            tuple[str, int, list[int | None], list[tuple[float, int | None, list[str]]], list[str]]
        ],
    ) -> None:
        """One or two tenants with their trunks and pools and a batch each: every example
        starts with numbers to call."""
        self.set_clock(START + timedelta(minutes=minutes))
        for i, (zone, cap, caps, trunks, callees) in enumerate(tenants):
            # A fixed id: the claim takes tenants in random order (seeded: seed()), drawn over
            # its rows in the order of their ids' hashes; with random ids a replay of the
            # example would claim other entries, and hypothesis could not shrink it.
            tenant_id = UUID(int=i + 1)
            self.conn.execute(
                "update batchctl.tenants set id = %s where id = %s",
                (tenant_id, self.api.create_tenant(f"tenant {i}", cap, zone)),
            )
            tenant = MTenant(tenant_id, zone, cap, dict(zip(CALLER_IDS, caps, strict=True)))
            self.tenants.append(tenant)
            for spec in trunks:
                self.new_trunk(tenant, spec)
            self.create_batch(i, callees, 2, 0)

    # ---------------------------------------------------------------- rules

    @precondition(lambda self: any(len(t.trunks) < 2 for t in self.tenants))
    @rule(pick=PICK, spec=trunk_st)
    def create_trunk(self, pick: int, spec: tuple[float, int | None, list[str]]) -> None:
        tenant = choose([t for t in self.tenants if len(t.trunks) < 2], pick)
        self.new_trunk(tenant, spec)

    @precondition(lambda self: self.trunks)
    @rule(
        pick=PICK,
        changes=st.fixed_dictionaries(
            {},
            optional={
                "max_cps": st.sampled_from(CPS),
                "max_concurrent": st.one_of(st.none(), st.integers(1, 3)),
            },
        ),
    )
    def update_trunk(self, pick: int, changes: dict[str, Any]) -> None:
        trunk = choose(list(self.trunks.values()), pick)
        if changes.get("max_concurrent") is not None:
            # Never below the calls in flight: the invariants would call that a breach, though
            # it is the operator's doing, not the claim's.
            changes["max_concurrent"] = max(changes["max_concurrent"], self.in_flight(trunk))
        status = self.api.update_trunk(trunk.tenant.id, trunk.id, changes)
        if "max_cps" in changes:
            trunk.max_cps = changes["max_cps"]
            trunk.cps_epoch += 1
        if "max_concurrent" in changes:
            trunk.max_concurrent = changes["max_concurrent"]
        assert (float(status["max_cps"]), status["max_concurrent"]) == (
            trunk.max_cps,
            trunk.max_concurrent,
        ), status

    @precondition(lambda self: self.trunks)
    @rule(pick=PICK, numbers=st.lists(st.sampled_from(CALLER_IDS), min_size=1, max_size=3))
    def add_caller_ids(self, pick: int, numbers: list[str]) -> None:
        trunk = choose(list(self.trunks.values()), pick)
        room = 3 - len(trunk.pool)  # pools of up to three numbers
        new = [n for n in dict.fromkeys(numbers) if n not in trunk.pool][:room]
        self.add_numbers(trunk, new + [n for n in numbers if n in trunk.pool])

    @precondition(lambda self: any(t.pool for t in self.trunks.values()))
    @rule(pick=PICK, numbers=st.lists(st.sampled_from(CALLER_IDS), min_size=1, max_size=3))
    def remove_caller_ids(self, pick: int, numbers: list[str]) -> None:
        trunk = choose([t for t in self.trunks.values() if t.pool], pick)
        removed = self.api.remove_caller_ids(trunk.tenant.id, trunk.id, numbers)
        assert removed == len(trunk.pool & set(numbers))
        trunk.pool -= set(numbers)

    @precondition(lambda self: self.batches < MAX_BATCHES)
    @rule(pick=PICK, callees=callees_st, wave=st.integers(1, 3), option=st.integers(0, 2))
    def create_batch(self, pick: int, callees: list[str], wave: int, option: int) -> None:
        """A batch of the tenant's, on its default trunk, or (option 1, 2) on a trunk named
        in its options when the tenant has that many."""
        tenant = choose(self.tenants, pick)
        options: dict[str, Any] = {"wave_size": wave, "max_attempts": 1}
        trunk = tenant.trunks[option - 1] if 0 < option <= len(tenant.trunks) else None
        if trunk is not None:
            options["trunk"] = trunk.name
        rows = [{"to_phone": p, "lead_name": f"lead {i}"} for i, p in enumerate(callees)]
        batch_id = self.api.create_batch(tenant.id, rows, options)
        self.batches += 1
        for r in self.conn.execute(
            """select id, to_phone from batchctl.batch_entries where batch_id = %s
                order by entry_index""",
            (batch_id,),
        ):
            e = MEntry(r["id"], len(self.entries), tenant, trunk, r["to_phone"])
            self.entries[e.id] = e

    @rule(step=advance_st)
    def advance(self, step: timedelta) -> None:
        self.set_clock(self.now + step)

    @rule(limit=st.integers(1, 5))
    def claim(self, limit: int) -> None:
        now = self.now
        before = {t.id: self.api.trunk_status(t.tenant.id, t.id) for t in self.trunks.values()}
        self.seed()
        claims = self.api.claim_entries("machine", limit, 60)
        assert len(claims) <= limit
        on: dict[MTrunk, list[ClaimRow]] = {}
        for c in claims:
            e = self.entries[c.entry_id]
            assert e.status == "queued", f"claimed entry {e.phone} the model has {e.status}"
            assert e.not_before is None or now >= e.not_before, (
                f"{e.phone} claimed at {now}, before its back-off's end {e.not_before}"
            )
            assert c.attempt == e.calls + 1
            expected = e.batch_trunk or e.tenant.default()
            if expected is None:  # (6)
                assert (c.livekit_trunk_id, c.caller_id, c.dial_at) == (None, None, None), c
            else:
                assert c.livekit_trunk_id == expected.livekit_trunk_id, (
                    f"{e.phone} went out on {c.livekit_trunk_id}, not {expected.livekit_trunk_id}"
                )
                assert c.dial_at is not None
                on.setdefault(expected, []).append(c)
            e.status, e.trunk, e.dial_at, e.room = "running", expected, c.dial_at, c.room_name
        for trunk, calls in on.items():
            calls.sort(key=lambda c: (c.dial_at or now, self.entries[c.entry_id].seq))
            self.check_trunk_claims(trunk, calls, before[trunk.id], now)
        for tenant in self.tenants:
            self.check_caller_ids(tenant, on, now)

    def check_trunk_claims(
        self, trunk: MTrunk, calls: list[ClaimRow], before: dict[str, Any], now: datetime
    ) -> None:
        # (3) No call on a trunk in back-off.
        assert not before["backoff"]["active"], (
            f"{trunk.name} handed out {len(calls)} calls at {now} in back-off: {before['backoff']}"
        )
        # (1) Calls in flight on the trunk within its cap (the model's count, claims included).
        if trunk.max_concurrent is not None:
            assert self.in_flight(trunk) <= trunk.max_concurrent, (
                f"{trunk.name}: {self.in_flight(trunk)} in flight after a claim at {now},"
                f" max_concurrent {trunk.max_concurrent}"
            )
        # (2) Pacing: slots within [now, now + 1 s], spaced by the rate in force.
        gap = spacing(trunk.max_cps)
        for c in calls:
            assert c.dial_at is not None
            assert now <= c.dial_at <= now + timedelta(seconds=1), (
                f"{trunk.name}: slot {c.dial_at} for a claim at {now}"
            )
            if trunk.last_slot is not None and trunk.last_slot[1] == trunk.cps_epoch:
                apart = (c.dial_at - trunk.last_slot[0]).total_seconds()
                assert apart >= gap.total_seconds() - US, (
                    f"{trunk.name} (max_cps {trunk.max_cps}): slots {trunk.last_slot[0]} and"
                    f" {c.dial_at}, {apart} s apart; at least {gap.total_seconds()} expected"
                )
            trunk.last_slot = (c.dial_at, trunk.cps_epoch)

    def check_caller_ids(
        self, tenant: MTenant, on: dict[MTrunk, list[ClaimRow]], now: datetime
    ) -> None:
        """(4) The caller IDs of one claim's calls of the tenant. The claim takes its calls one
        by one, each seeing the counts the previous ones moved: on one trunk in slot order, but
        across trunks (a number may be in two pools) in an order not seen here; so a number is
        surely under its cap for a call when even every other use of it in the claim may have
        come first, and surely at it when the uses known to come first already reach it."""
        day = tenant.day(now)
        used = {n: tenant.used[(n, day)] for n in CALLER_IDS}
        in_claim = Counter(
            c.caller_id for t in tenant.trunks for c in on.get(t, []) if c.caller_id is not None
        )

        def under(number: str, calls: int) -> bool:
            cap = tenant.caps[number]
            return cap is None or calls < cap

        for trunk in tenant.trunks:
            calls = on.get(trunk, [])
            pool = trunk.pool
            if pool and not any(under(n, used[n]) for n in pool):
                assert not calls, (
                    f"{trunk.name} handed out {len(calls)} calls with every caller ID at its cap:"
                    f" {[(n, used[n], tenant.caps[n]) for n in sorted(pool)]}"
                )
            for i, c in enumerate(calls):
                chosen = c.caller_id
                if not pool:
                    assert chosen is None, f"{trunk.name} has no pool, yet caller ID {chosen}"
                    continue
                assert chosen in pool, f"{trunk.name}: caller ID {chosen} not in its pool {pool}"
                first = Counter(x.caller_id for x in calls[:i])
                after = Counter(x.caller_id for x in calls[i + 1 :])

                def low(n: str, first: Counter[str | None] = first) -> int:
                    return used[n] + first[n]

                def high(
                    n: str, after: Counter[str | None] = after, chosen: str | None = chosen
                ) -> int:
                    return used[n] + in_claim[n] - after[n] - (n == chosen)

                assert under(chosen, low(chosen)), (
                    f"{trunk.name}: caller ID {chosen} past its cap {tenant.caps[chosen]} on {day}"
                    f" ({low(chosen)} calls before)"
                )
                prefix, country = place(c.to_phone)
                local = [n for n in pool if place(n)[0] == prefix]
                choice = f"{c.to_phone} got {chosen} from {sorted(pool)} (counts {used})"
                if any(under(n, high(n)) for n in local):
                    assert place(chosen)[0] == prefix, f"not local: {choice}"
                elif not any(under(n, low(n)) for n in local) and any(
                    place(n)[1] == country and under(n, high(n)) for n in pool
                ):
                    assert place(chosen)[1] == country, f"not of the country: {choice}"
        for number, n in in_claim.items():
            assert number is not None
            tenant.used[(number, day)] += n
            assert under(number, tenant.used[(number, day)] - 1), (
                f"caller ID {number}: {tenant.used[(number, day)]} calls on {day},"
                f" cap {tenant.caps[number]}"
            )

    # (No precondition on what the claims handed out: what a rule draws must not hang on the
    # database's choices, which a replay may not repeat exactly: see the module's docstring.)

    @rule(bits=PICK)
    def dispatch(self, bits: int) -> None:
        """The daemon's dispatches of some claimed entries (bit i of bits: the i-th; all when
        none is set)."""
        running = sorted(
            (e for e in self.entries.values() if e.status == "running"), key=lambda e: e.seq
        )
        if not running:
            return
        chosen = [e for i, e in enumerate(running) if bits >> (i % 8) & 1] or running
        for e in chosen:
            call_id = self.api.mark_dispatched(e.id, e.room, f"dispatch-{e.room}")
            e.status = "dispatched"
            e.calls += 1
            self.calls[call_id] = MCall(call_id, len(self.calls), e, e.trunk)

    @rule(pick=PICK, outcome=outcome_st)
    def report(self, pick: int, outcome: str) -> None:
        """A report of a live call: forward to outcome; "refused": failed with SIP 503."""
        if not self.live():
            return
        call = choose(self.live(), pick)
        self.seed()
        e, trunk = call.entry, call.trunk
        if call.status == "ongoing" and outcome in ("ringing", "ongoing", "busy", "refused"):
            outcome = "completed"  # an answered call ends; the carrier took it
        if call.status == "ringing" and outcome == "ringing":
            outcome = "ongoing"
        if outcome == "refused":
            status = self.api.report(call.id, "failed", SIP_503)
            call.status = "failed"
            if trunk is None:  # no trunk: a failed call, as before
                assert status == "failed"
                e.status = "failed"
            else:
                e.refusals += 1
                # (5) No attempt used: queued again until the 20th refusal in all.
                expected = "queued" if e.refusals < 20 else "failed"
                assert status == expected, (
                    f"{e.phone}: refusal {e.refusals} of {e.calls} calls left it {status}"
                )
                e.status = status
                self.check_backoff(trunk, e)
        else:
            status = self.api.report(call.id, outcome)
            call.status = outcome
            if outcome in ("ongoing", "completed", "busy") and trunk is not None:
                trunk.refusals, trunk.backoff_until = 0, None
            e.status = {"completed": "completed", "busy": "declined"}.get(outcome, "dispatched")
            assert status == e.status, f"{outcome} left the entry {status}"

    def check_backoff(self, trunk: MTrunk, e: MEntry) -> None:
        """After a refusal: the trunk backs off 2^(n-1) s (at most 300) plus up to a quarter
        from the pinned time, n its refusals in a row; one burst is one refusal, though: a call
        slotted before the back-off's end (claimed before it began) moves nothing. The entry
        waits for the back-off's end, its refusals counted apart from its attempts."""
        backoff = self.api.trunk_status(trunk.tenant.id, trunk.id)["backoff"]
        until = backoff["until"] and datetime.fromisoformat(backoff["until"])
        before = trunk.backoff_until
        if backoff["refusals"] == trunk.refusals + 1:
            trunk.refusals += 1
            base = timedelta(seconds=min(2 ** (trunk.refusals - 1), 300))
            assert (
                until is not None
                and self.now + base <= until <= self.now + base * 1.25 + timedelta(seconds=US)
            ), f"refusal {trunk.refusals} at {self.now}: back-off until {until}"
            trunk.backoff_until = until
        else:
            assert e.dial_at is not None and before is not None and e.dial_at < before, (
                f"{trunk.name}: the refusal at {self.now} of a call slotted at {e.dial_at}, after"
                f" the back-off until {before}, left {backoff}; {trunk.refusals + 1} refusals"
                " expected"
            )
            assert (backoff["refusals"], until) == (trunk.refusals, before), backoff
        assert until is not None and backoff["active"] == (until > self.now), backoff
        row = one_row(
            self.conn,
            """select status::text as status, attempts, carrier_refusals, next_attempt_at
                 from batchctl.batch_entries where id = %s""",
            (e.id,),
        )
        assert (row["status"], row["attempts"], row["carrier_refusals"]) == (
            e.status,
            e.calls,
            e.refusals,
        ), row
        if e.status == "queued":
            expected = max(t for t in (until, before, self.now) if t is not None)
            assert row["next_attempt_at"] == expected, (row, expected)
            e.not_before = expected

    @rule(
        step=advance_st,
        limit=st.integers(1, 5),
        bits=PICK,
        outcomes=st.lists(st.tuples(PICK, outcome_st), max_size=4),
    )
    def tick(self, step: timedelta, limit: int, bits: int, outcomes: list[tuple[int, str]]) -> None:
        """The daemon's loop: time passes, a claim, dispatches, and the reports that came in."""
        self.advance(step)
        self.claim(limit)
        self.dispatch(bits)
        for pick, outcome in outcomes:
            self.report(pick, outcome)

    # ---------------------------------------------------------------- after every step

    @invariant()
    def trunks_as_modelled(self) -> None:
        """Each trunk's status as the model has it, and the invariants."""
        for trunk in self.trunks.values():
            tenant = trunk.tenant
            status = self.api.trunk_status(tenant.id, trunk.id)
            day = tenant.day(self.now)
            assert status["default"] == (trunk is tenant.default())
            assert status["in_flight"] == self.in_flight(trunk), (trunk.name, status)
            until = status["backoff"]["until"]
            assert (status["backoff"]["refusals"], until and datetime.fromisoformat(until)) == (
                trunk.refusals,
                trunk.backoff_until,
            ), (trunk.name, status)
            numbers = {
                n["number"]: (n["daily_cap"], n["country"], n["today"])
                for n in status["caller_ids"]
            }
            assert numbers == {
                n: (tenant.caps[n], place(n)[1], tenant.used[(n, day)]) for n in trunk.pool
            }, (trunk.name, day, status["caller_ids"])
        assert_invariants(self.conn)


def test_trunk_machine(conn: Conn) -> None:
    if not one_value(conn, "select rolsuper from pg_roles where rolname = current_user"):
        pytest.skip("pinning the claim's clock and resetting between examples need a superuser")
    TrunkMachine.shared = conn
    try:
        run_state_machine_as_test(
            TrunkMachine,
            settings=settings(
                stateful_step_count=80,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            ),
        )
    finally:
        TrunkMachine.shared = None
