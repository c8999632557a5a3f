"""Stateful property test of the tenant compliance policy (docs/compliance.md, sql/029, sql/027,
sql/050): random policies, a few numbers shared across batches and tenants, a pinned clock that
jumps by minutes to days; after every step, every dial ever made must have kept every rule.

Hypothesis drives random sequences of set_policy (frequency caps, cool-offs after outcomes,
holidays among the coming days, the jurisdiction rules on or off), create_batch with random
subsets of five numbers (Florida, New York, Los Angeles, Paris, Berlin; each lead with its
number's zone, now and then none: the tenant's, or a region that adds Florida's rules), claims
whose calls are dialled and ended (or left live) at the pinned time, sweeps at the pinned time,
pauses and resumes, and explain_entry. The shipped jurisdiction rules are in force (the ``rules``
fixture).

The check is independent of the SQL under test: for every call log, in Python, at its
started_at and under the policy its tenant had when it was claimed (the model keeps each
tenant's policy history; a change applies to the claims after it): no holiday in the lead's
local date; inside every applicable rule's days and hours in the lead's zone (the rules as read
from batchctl.jurisdiction_rules, applied as the docs say: the entry's country, subdivisions and
their countries); every frequency cap (calls to the number by the tenant started in
(t - window, t], itself included); no cool-off running (an earlier call of the tenant to the
number ended with such an outcome within it); never two live calls to one number. Plus the
usual invariants (tests/helpers/invariants.py).

Time: everything goes by the pinned clock (batchctl.now for the claim and the call logs, p_now
for the sweep). Nothing writes a wall-clock time the claim then reads: batches never retry
(retry_on is empty by default, max_retries 0: a pickup timeout fails the entry), since a retry's
next_attempt_at is now() + delay.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, settings
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

from checks import Conn
from clockwork import pin
from invariants import assert_invariants
from pgtools import one_value
from sqlapi import SqlApi

T = TypeVar("T")


@dataclass(frozen=True)
class Number:
    phone: str
    zone: str
    country: str
    subdivisions: frozenset[str]


NUMBERS = (
    Number("+13055550100", "America/New_York", "US", frozenset({"US-FL"})),  # Miami
    Number("+12125550100", "America/New_York", "US", frozenset({"US-NY"})),
    Number("+12135550100", "America/Los_Angeles", "US", frozenset({"US-CA"})),
    Number("+33612345678", "Europe/Paris", "FR", frozenset()),
    Number("+4915112345678", "Europe/Berlin", "DE", frozenset()),
)
BY_PHONE = {n.phone: n for n in NUMBERS}
TENANT_ZONES = ("America/New_York", "Europe/Paris", "UTC")

LIVE = ("in_queue", "ringing", "ongoing")
OUTCOMES = (
    "ended", "completed", "declined", "rejected", "no_answer", "busy", "voicemail", "failed",
    "not_reachable",
)  # fmt: skip
REFUSALS = frozenset({"declined", "rejected"})  # what a rule's refusal_cooloff follows
WINDOWS = {
    "per_24h": timedelta(hours=24),
    "per_7d": timedelta(days=7),
    "per_30d": timedelta(days=30),
}
TIME_BOUND = ("quiet_hours:", "holiday", "frequency:", "cooloff:", "scheduled")
# A live call older than this is ended before the clock moves past it (as the sweep's timeouts
# would have): the claim reads calls up to 21 days long (contact_wait), and a clock that jumps
# for weeks with nobody sweeping would make longer ones.
MAX_CALL_AGE = timedelta(days=10)
MAX_BATCHES = 16

# Dates the examples start from (UTC): around both DST changes of 2026, and ordinary days.
STARTS = (
    datetime(2026, 3, 6, 12, 0, tzinfo=UTC),  # Friday; US clocks change on Sunday 8 March
    datetime(2026, 3, 27, 12, 0, tzinfo=UTC),  # Friday; EU clocks change on Sunday 29 March
    datetime(2026, 6, 15, 12, 0, tzinfo=UTC),  # Monday
    datetime(2026, 10, 23, 12, 0, tzinfo=UTC),  # Friday; EU on 25 October, US on 1 November
    datetime(2026, 12, 24, 12, 0, tzinfo=UTC),  # Thursday
)

PICK = st.integers(0, 255)


def choose(items: list[T], pick: int) -> T:
    return items[pick % len(items)]


# ------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class JRule:
    """A row of batchctl.jurisdiction_rules, its hours as (from, to, from incl., to incl.) in
    seconds of the day."""

    jurisdiction: str
    days: frozenset[int]
    hours: tuple[tuple[float, float, bool, bool], ...]
    max_calls: int | None
    cap_window: timedelta | None
    refusal_cooloff: timedelta | None

    def allows(self, local: datetime) -> bool:
        if local.isoweekday() not in self.days:
            return False
        s = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return any(
            (lo < s or (lo_inc and s == lo)) and (s < hi or (hi_inc and s == hi))
            for lo, hi, lo_inc, hi_inc in self.hours
        )


def seconds_of(text: str) -> float:
    h, m, s = text.strip().strip('"').split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse_hours(text: str) -> tuple[tuple[float, float, bool, bool], ...]:
    """'{[08:00:00,21:00:00)}' (a multirange's text) -> ((28800, 75600, True, False),)."""
    return tuple(
        (seconds_of(lo), seconds_of(hi), a == "[", b == "]")
        for a, lo, hi, b in re.findall(r"([\[(])([^,\[\]()]+),([^,\[\]()]+)([\])])", text)
    )


def read_rules(conn: Conn) -> list[JRule]:
    rows = conn.execute(
        """select jurisdiction, days, hours::text as hours, max_calls, cap_window,
                  refusal_cooloff
             from batchctl.jurisdiction_rules order by jurisdiction"""
    ).fetchall()
    return [
        JRule(
            r["jurisdiction"],
            frozenset(r["days"]),
            parse_hours(r["hours"]),
            r["max_calls"],
            r["cap_window"],
            r["refusal_cooloff"],
        )
        for r in rows
    ]


# ------------------------------------------------------------------------------------- model


@dataclass(eq=False)
class MTenant:
    id: UUID
    zone: str
    # (seq, effective policy): the policy in force for the claims after seq.
    policies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def policy_at(self, seq: int) -> dict[str, Any]:
        return [p for s, p in self.policies if s <= seq][-1]


@dataclass(eq=False)
class MEntry:
    id: UUID
    tenant: MTenant
    batch_id: UUID
    phone: str
    zone: str  # the lead's zone: its own, else its tenant's
    region: str | None

    def keys(self) -> frozenset[str]:
        """The jurisdictions whose rules apply (docs/compliance.md): the country, each
        subdivision (the number's and the lead's region) and each subdivision's country."""
        n = BY_PHONE[self.phone]
        subs = set(n.subdivisions) | ({self.region} if self.region else set())
        return frozenset(subs | {s[:2] for s in subs} | {n.country})

    def subdivisions(self) -> set[str]:
        return set(BY_PHONE[self.phone].subdivisions) | ({self.region} if self.region else set())


@dataclass
class Dial:
    """A call log as read back, with the model's order of dials."""

    id: UUID
    seq: int
    entry: MEntry
    status: str
    started_at: datetime
    ended_at: datetime | None  # None while live


def expected_policy(p: dict[str, Any]) -> dict[str, Any]:
    """What set_policy stores: every default, holidays sorted and once each."""
    return {
        "jurisdiction_rules": True,
        "frequency": {},
        "cooloff_s": {},
        "require_consent": False,
        **p,
        "holidays": sorted(set(p.get("holidays", []))),
    }


def violations(d: Dial, dials: list[Dial], rules: list[JRule]) -> list[str]:
    """What the dial d broke, judged at its started_at under the policy of its claim."""
    e = d.entry
    policy = e.tenant.policy_at(d.seq)
    t = d.started_at
    local = t.astimezone(ZoneInfo(e.zone))
    found: list[str] = []
    if local.date().isoformat() in policy["holidays"]:
        found.append(f"holiday {local.date()} in {e.zone}")
    keys = e.keys()
    applied = [r for r in rules if r.jurisdiction in keys] if policy["jurisdiction_rules"] else []
    for r in applied:
        if not r.allows(local):
            found.append(f"quiet hours of {r.jurisdiction} at {local:%a %Y-%m-%d %H:%M} {e.zone}")

    same = [x for x in dials if x.entry.tenant is e.tenant and x.entry.phone == e.phone]
    caps = [(f"frequency:{k}", int(n), WINDOWS[k]) for k, n in policy["frequency"].items()]
    caps += [
        (f"frequency:{r.jurisdiction}", r.max_calls, r.cap_window)
        for r in applied
        if r.max_calls is not None and r.cap_window is not None
    ]
    for name, n, window in caps:
        # The calls dialled so far (a later claim at the same pinned time, under a looser
        # policy, may dial the number again at t: it is judged by its own policy).
        inside = [x for x in same if x.seq <= d.seq and t - window < x.started_at <= t]
        if len(inside) > n:
            found.append(f"{name}: {len(inside)} calls in the {window} up to {t}, cap {n}")

    cooloffs = [
        (f"cooloff:{k}", frozenset({k}), timedelta(seconds=int(s)))
        for k, s in policy["cooloff_s"].items()
    ]
    cooloffs += [
        (f"cooloff:{r.jurisdiction}", REFUSALS, r.refusal_cooloff)
        for r in applied
        if r.refusal_cooloff is not None
    ]
    for name, after, span in cooloffs:
        for x in same:
            if (
                x.seq < d.seq
                and x.status in after
                and x.ended_at is not None
                and t - span < x.ended_at <= t
            ):
                found.append(f"{name}: call {x.id} ended {x.status} at {x.ended_at}, {span} before")
    return found


# ------------------------------------------------------------------------------------ plumbing


def reset(conn: Conn) -> None:
    """Empties every batchctl table but the reference data (the jurisdiction rules in force and
    the phone prefixes) between examples; as test_state_machine.reset, triggers off."""
    tables = [
        r["name"]
        for r in conn.execute(
            """select quote_ident(n.nspname) || '.' || quote_ident(c.relname) as name
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'batchctl' and c.relkind in ('r', 'p')
                  and c.relname not in ('jurisdiction_rules', 'phone_prefixes')"""
        )
    ]
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(table)))


# ---------------------------------------------------------------------------------- strategies

DURATIONS = (600, 3600, 4 * 3600, 86400, 3 * 86400, 10 * 86400)
policy_st = st.fixed_dictionaries(
    {},
    optional={
        "jurisdiction_rules": st.booleans(),
        "frequency": st.fixed_dictionaries(
            {},
            optional={
                "per_24h": st.integers(1, 3),
                "per_7d": st.integers(1, 5),
                "per_30d": st.integers(1, 8),
            },
        ),
        "cooloff_s": st.dictionaries(
            st.sampled_from(("declined", "no_answer", "busy", "ended", "failed", "rejected")),
            st.sampled_from(DURATIONS),
            max_size=3,
        ),
        # Days from the pinned (UTC) date: yesterday to a week ahead.
        "holidays": st.lists(st.integers(-1, 7), max_size=3),
    },
)
# Minutes to days: hours of the day, holidays and the caps' windows all come into play.
advance_st = st.one_of(
    st.integers(1, 180).map(lambda m: timedelta(minutes=m)),
    st.integers(3, 30).map(lambda h: timedelta(hours=h)),
    st.integers(1, 10).map(lambda d: timedelta(days=d, minutes=7 * d)),
)
# Mostly an end at once; now and then a call left live (its number stays busy, its slot taken).
outcome_st = st.sampled_from(OUTCOMES + OUTCOMES + LIVE)
lead_st = st.tuples(
    st.sampled_from(NUMBERS),
    st.integers(0, 7).map(lambda i: i == 7),  # no timezone: the tenant's (rarely)
    st.integers(0, 7).map(lambda i: i == 7),  # region US-FL: Florida's rules too (rarely)
)


# ------------------------------------------------------------------------------------- machine


class PolicyMachine(RuleBasedStateMachine):
    shared: ClassVar[Conn | None] = None  # the test's database, the shipped rules in force

    def __init__(self) -> None:
        super().__init__()
        assert PolicyMachine.shared is not None, "run through test_policy_machine"
        self.conn = PolicyMachine.shared
        reset(self.conn)
        self.api = SqlApi(self.conn)
        self.jurisdiction_rules = read_rules(self.conn)
        self.tenants: list[MTenant] = []
        self.batches: list[tuple[UUID, MTenant]] = []
        self.entries: dict[UUID, MEntry] = {}
        self.calls: dict[UUID, int] = {}  # call log -> its dial's seq
        self.seq = 0  # policy changes and dials, in order
        self.now = STARTS[0]
        self.dials = 0

    # ---------------------------------------------------------------- helpers

    def set_clock(self, at: datetime) -> None:
        self.now = at
        pin(self.conn, at)

    def live_calls(self) -> list[tuple[int, UUID, str]]:
        rows = self.conn.execute(
            "select id, status::text as status from batchctl.call_logs where status = any(%s)",
            (list(LIVE),),
        ).fetchall()
        return sorted((self.calls[r["id"]], r["id"], r["status"]) for r in rows)

    def report_to(self, call_id: UUID, status: str, outcome: str) -> None:
        """A voice worker's reports from status on: forward to outcome (a live one or an end)."""
        path = ["ringing", *(["ongoing"] if outcome in ("ended", "completed", "failed") else [])]
        if outcome in LIVE:
            path = list(LIVE[LIVE.index(status) + 1 : LIVE.index(outcome) + 1])
        else:
            path = [s for s in path if LIVE.index(s) > LIVE.index(status)] + [outcome]
        for s in path:
            self.api.report(call_id, s)

    # ---------------------------------------------------------------- setup

    @initialize(
        start=st.sampled_from(STARTS),
        minutes=st.integers(0, 24 * 60 - 1),
        tenants=st.lists(
            st.tuples(st.sampled_from(TENANT_ZONES), st.integers(1, 4)), min_size=1, max_size=2
        ),
        policies=st.lists(policy_st, min_size=2, max_size=2),
        batches=st.lists(
            st.tuples(PICK, st.lists(lead_st, min_size=1, max_size=5), st.integers(1, 3)),
            min_size=1,
            max_size=3,
        ),
    )
    def setup(
        self,
        start: datetime,
        minutes: int,
        tenants: list[tuple[str, int]],
        policies: list[dict[str, Any]],
        batches: list[tuple[int, list[tuple[Number, bool, bool]], int]],
    ) -> None:
        """One or two tenants with their zones and policies, and the first batches: every
        example starts with numbers to call."""
        self.set_clock(start + timedelta(minutes=minutes))
        for i, (zone, cap) in enumerate(tenants):
            t = MTenant(self.api.create_tenant(f"tenant {i}", cap, zone), zone)
            t.policies.append((0, expected_policy({})))
            assert self.api.get_policy(t.id) == t.policies[0][1]
            self.tenants.append(t)
            self.set_policy(i, policies[i])
        for pick, leads, wave in batches:
            self.create_batch(pick, leads, wave)

    # ---------------------------------------------------------------- rules

    @rule(pick=PICK, policy=policy_st)
    def set_policy(self, pick: int, policy: dict[str, Any]) -> None:
        t = choose(self.tenants, pick)
        today = self.now.date()
        given = dict(policy)
        if "holidays" in given:
            given["holidays"] = [(today + timedelta(days=d)).isoformat() for d in given["holidays"]]
        stored = self.api.set_policy(t.id, given)
        assert stored == expected_policy(given), f"set_policy({given}) stored {stored}"
        self.seq += 1
        t.policies.append((self.seq, stored))

    @precondition(lambda self: len(self.batches) < MAX_BATCHES)
    @rule(pick=PICK, leads=st.lists(lead_st, min_size=1, max_size=5), wave=st.integers(1, 3))
    def create_batch(self, pick: int, leads: list[tuple[Number, bool, bool]], wave: int) -> None:
        t = choose(self.tenants, pick)
        rows: list[dict[str, Any]] = []
        for n, no_zone, florida in leads:
            if n.phone in [r["to_phone"] for r in rows]:
                continue  # a duplicate within the batch is skipped anyway
            row: dict[str, Any] = {"to_phone": n.phone, "lead_name": f"lead {len(rows)}"}
            if not no_zone:
                row["timezone"] = n.zone
            if florida and n.country == "US":
                row["region"] = "US-FL"
            rows.append(row)
        bid = self.api.create_batch(t.id, rows, {"wave_size": wave, "max_retries": 0})
        self.batches.append((bid, t))
        db = self.conn.execute(
            """select id, to_phone, timezone, region, country, subdivisions
                 from batchctl.batch_entries where batch_id = %s order by entry_index""",
            (bid,),
        ).fetchall()
        assert [r["to_phone"] for r in db] == [r["to_phone"] for r in rows]
        for r, given in zip(db, rows, strict=True):
            zone = given.get("timezone", t.zone)
            e = MEntry(r["id"], t, bid, r["to_phone"], zone, given.get("region"))
            # The jurisdictions intake derived (sql/042) are the ones this test expects.
            assert (r["country"], set(r["subdivisions"] or [])) == (
                BY_PHONE[e.phone].country,
                e.subdivisions(),
            ), f"entry {e.phone} region {e.region}: {r['country']} {r['subdivisions']}"
            self.entries[e.id] = e

    @rule(step=advance_st)
    def advance(self, step: timedelta) -> None:
        """The clock moves on; a live call that would grow older than MAX_CALL_AGE is ended
        first, as the sweep's timeouts would have ended it."""
        later = self.now + step
        for _, call_id, status in self.live_calls():
            started = self.conn.execute(
                "select started_at from batchctl.call_logs where id = %s", (call_id,)
            ).fetchone()
            assert started is not None
            if started["started_at"] < later - MAX_CALL_AGE:
                self.report_to(call_id, status, "failed")
        self.set_clock(later)

    @rule(
        outcomes=st.lists(outcome_st, min_size=1, max_size=6),
    )
    def claim(self, outcomes: list[str]) -> None:
        """Claims at the pinned time, dials every claim then, and ends each call with an
        outcome (or leaves it live)."""
        order = {t.id: i for i, t in enumerate(self.tenants)}
        claims = sorted(self.api.claim(), key=lambda c: (order[c.tenant_id], c.to_phone))
        event(f"claim dialled {min(len(claims), 3)}{'+' if len(claims) > 3 else ''}")
        for i, c in enumerate(claims):
            call_id = self.api.mark_dispatched(c.entry_id, c.room_name, f"dispatch-{c.room_name}")
            self.seq += 1
            self.calls[call_id] = self.seq
            self.dials += 1
            outcome = outcomes[i % len(outcomes)]
            if outcome != "in_queue":
                self.report_to(call_id, "in_queue", outcome)

    @rule(
        pick=PICK,
        leads=st.lists(lead_st, max_size=4),
        step=advance_st,
        sweep=st.booleans(),
        outcomes=st.lists(outcome_st, min_size=1, max_size=6),
    )
    def tick(
        self,
        pick: int,
        leads: list[tuple[Number, bool, bool]],
        step: timedelta,
        sweep: bool,
        outcomes: list[str],
    ) -> None:
        """The daemon's loop: maybe new work comes in, time passes, maybe a sweep, then a
        claim."""
        if leads and len(self.batches) < MAX_BATCHES:
            self.create_batch(pick, leads, 1 + pick % 3)
        self.advance(step)
        if sweep:
            self.sweep()
        self.claim(outcomes)

    @rule(pick=PICK, outcome=st.sampled_from(OUTCOMES))
    def end_live_call(self, pick: int, outcome: str) -> None:
        live = self.live_calls()
        if live:
            _, call_id, status = choose(live, pick)
            self.report_to(call_id, status, outcome)

    @rule()
    def sweep(self) -> None:
        result = self.api.sweep(self.now)
        assert result.get("skipped") is not True
        if result.get("deferred_to_window"):
            event("sweep held entries back")

    @precondition(lambda self: self.batches)
    @rule(pick=PICK)
    def pause_or_resume(self, pick: int) -> None:
        bid, t = choose(self.batches, pick)
        status = self.api.batch_status(t.id, bid)["status"]
        if status == "running":
            self.api.pause_batch(t.id, bid)
        elif status == "paused":
            self.api.resume_batch(t.id, bid)

    @precondition(lambda self: self.entries)
    @rule(pick=PICK)
    def explain(self, pick: int) -> None:
        """explain_entry answers for any entry; when only time-bound compliance reasons hold it,
        at its next_at none of them does (and it is dialable then, the database unchanged)."""
        e = choose(list(self.entries.values()), pick)
        got = self.api.explain_entry(e.tenant.id, e.id)
        assert set(got) == {"dialable_now", "next_at", "reasons"}, got
        rules = [r["rule"] for r in got["reasons"]]
        assert got["dialable_now"] == (not rules), got
        if got["next_at"] is None or not rules or not all(r.startswith(TIME_BOUND) for r in rules):
            return
        event("explain: waits for time-bound rules only")
        at = datetime.fromisoformat(got["next_at"])
        assert at > self.now, f"{got}: held now, but next_at is not later than {self.now}"
        try:
            pin(self.conn, at)
            then = self.api.explain_entry(e.tenant.id, e.id)
        finally:
            pin(self.conn, self.now)
        assert then["dialable_now"], f"at now {self.now}: {got}; at its next_at {at}: {then}"

    # ---------------------------------------------------------------- after every step

    @invariant()
    def every_dial_kept_every_rule(self) -> None:
        rows = self.conn.execute(
            """select c.id, c.entry_id, c.tenant_id, c.to_phone, c.status::text as status,
                      c.started_at,
                      case when c.status in ('in_queue', 'ringing', 'ongoing') then null
                           else coalesce(c.ended_at, c.status_changed_at) end as ended_at
                 from batchctl.call_logs c"""
        ).fetchall()
        assert {r["id"] for r in rows} == set(self.calls), "a call log the model did not dial"
        dials = []
        for r in rows:
            e = self.entries[r["entry_id"]]
            assert (r["tenant_id"], r["to_phone"]) == (e.tenant.id, e.phone)
            seq = self.calls[r["id"]]
            dials.append(Dial(r["id"], seq, e, r["status"], r["started_at"], r["ended_at"]))
        dials.sort(key=lambda d: d.seq)
        problems = []
        for d in dials:
            for v in violations(d, dials, self.jurisdiction_rules):
                e = d.entry
                problems.append(
                    f"dial {d.seq} of {e.phone} (tenant {self.tenants.index(e.tenant)}, zone"
                    f" {e.zone}, region {e.region}) at {d.started_at}: {v}"
                    f" [policy {e.tenant.policy_at(d.seq)}]"
                )
        # Never two live calls to one number of a tenant: each dial after the previous ended.
        by_number: dict[tuple[UUID, str], list[Dial]] = {}
        for d in dials:
            by_number.setdefault((d.entry.tenant.id, d.entry.phone), []).append(d)
        for (_, phone), ds in by_number.items():
            for a, b in itertools.pairwise(ds):
                if a.ended_at is None or a.ended_at > b.started_at:
                    problems.append(
                        f"{phone}: dial {b.seq} at {b.started_at} while dial {a.seq}"
                        f" (from {a.started_at}) was live until {a.ended_at}"
                    )
        assert not problems, "dials that broke a rule:\n" + "\n".join(problems)
        assert_invariants(self.conn)

    def teardown(self) -> None:
        event(f"dials in the example: {min(self.dials // 5 * 5, 20)}+")


def test_policy_machine(rules: Conn) -> None:
    if not one_value(rules, "select rolsuper from pg_roles where rolname = current_user"):
        pytest.skip("pinning the claim's clock and resetting between examples need a superuser")
    PolicyMachine.shared = rules
    try:
        run_state_machine_as_test(
            PolicyMachine,
            settings=settings(
                stateful_step_count=100,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            ),
        )
    finally:
        PolicyMachine.shared = None
