"""Stateful property test of the state machine (SPEC §2-5).

Hypothesis drives random sequences of API calls against a real database (the test's migrated
database, emptied between examples) and checks every result against a small Python model of
the rules: which status each batch, entry and call is in, what each function returns, which
calls must raise which SQLSTATE (and then change nothing). After every step the database must
equal the model, the invariants of tests/helpers/invariants.py must hold, and nothing that reached a
terminal status may have changed since.

Time: sweeps run "as of" p_now = wall clock + an offset. The model brackets every database now()
between the wall-clock readings taken around the call that wrote it, so a timeout or lease is
predicted as certainly passed, certainly not passed or (right at the boundary) either; in the last
case the sweep's observed choice is accepted and adopted. Claims likewise: an entry whose retry is
due at a moment too close to call is "possibly claimable", and the number of entries claimed must
lie between the fewest and the most that the caps, the one-call-per-number rule and every order
of the entries the model cannot tell apart allow.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import psycopg
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
from psycopg.rows import dict_row

from batchctl.statuses import ENTRY_STATUSES
from invariants import assert_invariants
from sqlapi import ENTRY_FOR_CALL, SqlApi

T = TypeVar("T")

CALL_STATUSES = (
    "in_queue", "ringing", "ongoing",
    "ended", "completed",
    "failed", "error", "not_reachable",
    "declined", "rejected", "no_answer", "busy", "voicemail",
    "cancelled",
)  # fmt: skip
LIVE_CALL = ("in_queue", "ringing", "ongoing")
RETRYABLE = (
    "failed",
    "error",
    "not_reachable",
    "declined",
    "rejected",
    "no_answer",
    "busy",
    "voicemail",
)
PENDING_ENTRY = ("queued", "running", "dispatched")
TERMINAL_ENTRY = ("completed", "failed", "declined", "cancelled")
TERMINAL_BATCH = ("completed", "cancelled", "failed")
# SPEC §2, entry status: the only transitions there are.
ENTRY_MOVES = {
    "queued": {"running", "cancelled"},
    "running": {"dispatched", "queued", "failed", "cancelled"},
    "dispatched": {"completed", "failed", "declined", "cancelled", "queued"},
}
PHONES = tuple(f"+1415555{i:04d}" for i in range(8))
EPS = 0.005  # seconds of slack between the wall clock and the server's clock (same host)


def rank(status: str) -> int:
    return LIVE_CALL.index(status) if status in LIVE_CALL else 3


# --------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Stamp:
    """A server timestamp (now() + delay) known to lie between lo and hi (wall clock, seconds).

    seq numbers the transaction whose now() it is (-1: not a server time) and off is the delay
    added to it: two transactions of the one connection are sequential, so their now()s are
    ordered even when their brackets are too close to tell apart."""

    lo: float
    hi: float
    seq: int = -1
    off: float = 0

    def plus(self, seconds: float) -> Stamp:
        return Stamp(self.lo + seconds, self.hi + seconds, self.seq, self.off + seconds)

    def cmp(self, other: Stamp) -> int | None:
        """-1, 0 or 1 as this stamp is <, = or > other; None when either may be."""
        if self.seq >= 0 and other.seq >= 0:
            if self.seq == other.seq:
                return (self.off > other.off) - (self.off < other.off)
            if self.off == other.off:
                return -1 if self.seq < other.seq else 1
        if self.before(other):
            return -1
        if other.before(self):
            return 1
        return None

    def before(self, moment: Stamp) -> bool | None:
        """Is this stamp < moment? None when the brackets overlap (either may happen)."""
        if self.hi + EPS < moment.lo:
            return True
        if self.lo - EPS >= moment.hi:
            return False
        return None


@dataclass(frozen=True)
class Opts:
    wave_size: int
    dispatch_mode: str
    retry_on: tuple[str, ...]
    max_attempts: int
    retry_delay_s: int
    max_retries: int
    autostart: bool
    pickup_timeout_s: int
    ringing_timeout_s: int
    ongoing_timeout_s: int

    def as_json(self) -> dict[str, Any]:
        return {
            "wave_size": self.wave_size,
            "dispatch_mode": self.dispatch_mode,
            "retry_on": list(self.retry_on),
            "max_attempts": self.max_attempts,
            "retry_delay_s": self.retry_delay_s,
            "max_retries": self.max_retries,
            "autostart": self.autostart,
            "pickup_timeout_s": self.pickup_timeout_s,
            "ringing_timeout_s": self.ringing_timeout_s,
            "ongoing_timeout_s": self.ongoing_timeout_s,
        }


@dataclass(eq=False)
class MTenant:
    id: UUID
    cap: int
    dnc: set[str] = field(default_factory=set)
    batches: list[MBatch] = field(default_factory=list)

    def in_flight(self) -> int:
        return sum(b.in_flight() for b in self.batches)

    def __repr__(self) -> str:
        return f"tenant({str(self.id)[:8]} cap={self.cap} dnc={sorted(self.dnc)})"


@dataclass(eq=False)
class MBatch:
    id: UUID
    tenant: MTenant
    opts: Opts
    status: str
    duplicates: int
    dnc_skipped: int
    entries: list[MEntry] = field(default_factory=list)
    finished: bool = False

    def count(self, *statuses: str) -> int:
        return sum(e.status in statuses for e in self.entries)

    def pending(self) -> int:
        return self.count(*PENDING_ENTRY)

    def in_flight(self) -> int:
        """Running and dispatched entries, and queued ones keeping an unconfirmed dispatch's
        slot."""
        return self.count("running", "dispatched") + sum(e.holds_slot() for e in self.entries)

    def dialling(self) -> int:
        return self.count("running", "dispatched")

    def __repr__(self) -> str:
        return f"batch({str(self.id)[:8]} {self.status} of {self.tenant!r}, {self.opts})"


@dataclass(eq=False)
class MEntry:
    id: UUID
    batch: MBatch
    index: int
    phone: str
    status: str = "queued"
    attempts: int = 0
    retry_count: int = 0
    dispatch_failures: int = 0
    due: Stamp | None = None  # next_attempt_at; None: -infinity (never re-queued)
    cancel_requested: bool = False  # cancel_entry while its call was live: never retried
    unconfirmed: bool = False  # back from a claim that may have dialled: its number stays busy
    # slot_held_until: set when it first came back unconfirmed, cleared when a claim settles it.
    # (Examples last seconds, the pickup timeouts 30 s or more: a hold never runs out here.)
    held_until: Stamp | None = None
    last_error: str | None = None
    lease: Stamp | None = None  # lease_expires_at while running
    call: MCall | None = None  # the current attempt's call
    rooms: list[str] = field(default_factory=list)  # every room a claim handed out

    def holds_slot(self) -> bool:
        return self.status == "queued" and self.unconfirmed and self.held_until is not None

    def claim_room(self) -> str:
        return f"batchctl-{self.id}-{self.attempts + 1}"

    def __repr__(self) -> str:
        return (
            f"entry({str(self.id)[:8]} #{self.index} {self.phone} {self.status}"
            f" attempts={self.attempts}"
            f" retries={self.retry_count} in {self.batch!r})"
        )


@dataclass(eq=False)
class MCall:
    id: UUID
    entry: MEntry
    attempt: int
    room: str
    changed: Stamp  # status_changed_at
    status: str = "in_queue"

    def __repr__(self) -> str:
        return f"call({str(self.id)[:8]} attempt {self.attempt} {self.status} of {self.entry!r})"


class Model:
    def __init__(self) -> None:
        self.tenants: list[MTenant] = []
        self.batches: list[MBatch] = []
        self.entries: dict[UUID, MEntry] = {}
        self.calls: dict[UUID, MCall] = {}
        self.hangups: dict[str, bool] = {}  # the hang-up outbox: room -> done

    def request_hangup(self, c: MCall) -> None:
        """A room is queued for hang-up once; a later request for it changes nothing."""
        self.hangups.setdefault(c.room, False)

    def move(self, e: MEntry, to: str) -> None:
        """An entry transition; the model itself must only ever make legal ones. A claim that
        may have dialled and ends without a call has its room hung up (032)."""
        assert to in ENTRY_MOVES.get(e.status, set()), f"model bug: entry {e.status} -> {to}"
        if to in TERMINAL_ENTRY and (
            (e.status == "running" and to == "cancelled") or e.unconfirmed
        ):
            self.hangups.setdefault(e.claim_room(), False)
        e.status = to
        if to != "running":
            e.lease = None
        self.settle(e.batch)

    def set_batch(self, b: MBatch, to: str) -> None:
        b.status = to
        self.settle(b)

    @staticmethod
    def settle(b: MBatch) -> None:
        """What the batch row's BEFORE UPDATE trigger decides on every change of the batch."""
        assert not b.finished, "model bug: a finished batch changed"
        if b.status in ("running", "paused") and b.pending() == 0:
            b.status = "completed"
        if b.status in TERMINAL_BATCH and b.pending() == 0:
            b.finished = True

    def call_ended(self, c: MCall, status: str, error: str | None = None) -> None:
        """A call reached a terminal status: its entry follows, with the retry policy (034)."""
        c.status = status
        e = c.entry
        assert e.call is c and e.status == "dispatched", (
            "model bug: a live call whose entry moved on"
        )
        b = e.batch
        if (
            status in b.opts.retry_on
            and e.attempts - e.retry_count < b.opts.max_attempts
            and not e.cancel_requested
            and b.status in ("running", "paused")
        ):
            e.due = c.changed.plus(b.opts.retry_delay_s)
            self.requeue(e, f"retry after {status}", c.changed)
        else:
            if ENTRY_FOR_CALL[status] == "failed":
                e.last_error = error or status
            elif not e.cancel_requested:  # a cancelled one keeps why it was cancelled
                e.last_error = None
            self.move(e, ENTRY_FOR_CALL[status])

    def requeue(self, e: MEntry, error: str, at: Stamp, unconfirmed: bool | None = None) -> None:
        """Back to the queue, unless the re-queue guard (032) cancels it: a stopped batch, a cancel
        asked for while its call was live, a number now on the do-not-call list, in that order.
        `unconfirmed`: what the caller says of the dispatch (None: unchanged); an unconfirmed
        entry keeps its slot from its first such return until a claim settles it."""
        b = e.batch
        guard = (
            f"batch_{b.status}"
            if b.status in TERMINAL_BATCH
            else "cancelled"
            if e.cancel_requested
            else "dnc"
            if e.phone in b.tenant.dnc
            else None
        )
        e.last_error = guard or error
        if unconfirmed is not None:
            e.unconfirmed = unconfirmed
        e.held_until = (
            (e.held_until or at.plus(e.batch.opts.pickup_timeout_s))
            if e.unconfirmed and not guard
            else None
        )
        self.move(e, "cancelled" if guard else "queued")

    def claim_free(self, b: MBatch) -> int:
        if b.opts.dispatch_mode == "wave" and b.in_flight() > 0:
            return 0
        return b.opts.wave_size - b.in_flight()

    def claim_bounds(self, limit: int, at: Stamp) -> tuple[int, int]:
        """The fewest and the most entries claim_entries(limit) may hand out at `at` (§4).

        The tenants with a running batch holding queued entries and a free slot are served one
        after another (in random order) until the claim is full. Each running batch offers its
        first due entries by (next_attempt_at, entry_index) whose number is not in flight for
        the tenant, up to its free slots; a number offered by several batches is handed out
        once; a tenant gets at most its free slots. A tenant served with fewer than `limit` left
        to fill offers the same entries cut to what is left, so the order does not change the
        total. Where the model cannot tell whether an entry is due, or which of two comes first,
        every possibility counts."""
        spans = [
            self.tenant_claims(t, t.cap - t.in_flight(), limit, at)
            for t in self.tenants
            if sum(b.dialling() for b in t.batches) < t.cap
            and any(b.status == "running" and b.count("queued") for b in t.batches)
        ]
        return min(limit, sum(lo for lo, _ in spans)), min(limit, sum(hi for _, hi in spans))

    def tenant_claims(self, t: MTenant, tfree: int, limit: int, at: Stamp) -> tuple[int, int]:
        """Its entries holding a slot, claimed without a free one, and up to tfree others."""
        held = [
            due_at(e, at)
            for b in t.batches
            if b.status == "running"
            for e in b.entries
            if e.holds_slot()
        ]
        held_lo, held_hi = held.count(True), len(held) - held.count(False)
        if tfree <= 0:
            return held_lo, held_hi
        lo, hi = self.free_claims(t, tfree, limit, at)
        return held_lo + lo, held_hi + hi

    def free_claims(self, t: MTenant, tfree: int, limit: int, at: Stamp) -> tuple[int, int]:
        busy = {
            e.phone for b in t.batches for e in b.entries if e.status in ("running", "dispatched")
        }
        # A queued entry whose last claim may have dialled keeps its number busy for the others.
        unconfirmed = {
            e.phone for b in t.batches for e in b.entries if e.status == "queued" and e.unconfirmed
        }
        offers = [
            self.batch_offers(b, k, busy, unconfirmed, at)
            for b in t.batches
            if b.status == "running" and (k := min(self.claim_free(b), tfree, limit)) > 0
        ]
        if math.prod(len(o) for o in offers) > 2000:  # too many to list: looser bounds
            low = max((min(len(x) for x in o) for o in offers), default=0)
            high = sum(max(len(x) for x in o) for o in offers)
            return min(tfree, low), min(tfree, high)
        counts = {
            min(tfree, len(frozenset[str]().union(*offer))) for offer in itertools.product(*offers)
        }
        return min(counts), max(counts)

    @staticmethod
    def batch_offers(
        b: MBatch, k: int, busy: set[str], unconfirmed: set[str], at: Stamp
    ) -> set[frozenset[str]]:
        """The sets of numbers batch b may offer to a claim: its first k due entries."""
        free = [
            e
            for e in b.entries
            if e.status == "queued"
            and not e.holds_slot()
            and e.phone not in busy
            and (e.unconfirmed or e.phone not in unconfirmed)
        ]
        sure = [e for e in free if due_at(e, at) is True]
        maybe = [e for e in free if due_at(e, at) is None]
        offers = set()
        for r in range(len(maybe) + 1):
            for extra in itertools.combinations(maybe, r):
                due = sure + list(extra)
                for offer in itertools.combinations(due, min(k, len(due))):
                    rest = [y for y in due if y not in offer]
                    if not any(entry_cmp(y, x) == -1 for x in offer for y in rest):
                        offers.add(frozenset(e.phone for e in offer))
        return offers


def due_at(e: MEntry, at: Stamp) -> bool | None:
    """Is the queued entry due (next_attempt_at <= now()) at `at`? None: either may be."""
    if e.due is None:
        return True
    c = e.due.cmp(at)
    return None if c is None else c <= 0


def entry_cmp(x: MEntry, y: MEntry) -> int | None:
    """The claim order of two entries of one batch: next_attempt_at, then entry_index."""
    if x.due is None or y.due is None:
        c: int | None = (x.due is not None) - (y.due is not None)
    else:
        c = x.due.cmp(y.due)
    if c == 0:
        return -1 if x.index < y.index else 1
    return c


# ------------------------------------------------------------------------------ database plumbing


def reset(conn: psycopg.Connection[dict[str, Any]]) -> None:
    """Empties every batchctl table between examples (~ms; a fresh clone costs ~0.3 s here).

    events is append-only by trigger and entries leave only with their batch, so the triggers
    (and the foreign keys, triggers too) are switched off for this session while it deletes."""
    tables = [
        r["name"]
        for r in conn.execute(
            """select quote_ident(n.nspname) || '.' || quote_ident(c.relname) as name
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = 'batchctl' and c.relkind in ('r', 'p')"""
        )
    ]
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for table in tables:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(table)))


SNAPSHOT_SQL = """
select (select coalesce(jsonb_agg(to_jsonb(b) order by b.id), '[]')
          from batchctl.batches b) as batches,
       (select coalesce(jsonb_agg(to_jsonb(e) order by e.id), '[]')
          from batchctl.batch_entries e) as entries,
       (select coalesce(jsonb_agg(to_jsonb(c) order by c.id), '[]')
          from batchctl.call_logs c) as calls,
       (select coalesce(jsonb_agg(to_jsonb(r) order by r.batch_id), '[]')
          from batchctl.reports r) as reports,
       (select coalesce(jsonb_agg(to_jsonb(d) order by d.tenant_id, d.phone), '[]')
          from batchctl.dnc_numbers d) as dnc,
       (select coalesce(jsonb_agg(to_jsonb(h) order by h.room_name), '[]')
          from batchctl.hangups h) as hangups,
       (select count(*) from batchctl.tenants) as tenants,
       (select count(*) filter (where not ignored) from batchctl.events) as events,
       (select count(*) filter (where ignored) from batchctl.events) as ignored_events
"""


# ------------------------------------------------------------------------------------ strategies

options_st = st.builds(
    Opts,
    wave_size=st.integers(1, 4),
    dispatch_mode=st.sampled_from(["window", "wave"]),
    retry_on=st.lists(st.sampled_from(RETRYABLE), unique=True, max_size=4).map(tuple),
    max_attempts=st.integers(1, 3),
    retry_delay_s=st.sampled_from([0, 0, 3600]),  # 3600: queued but not due during the test
    max_retries=st.integers(0, 2),
    autostart=st.booleans(),
    pickup_timeout_s=st.sampled_from([60, 30]),
    ringing_timeout_s=st.just(60),
    ongoing_timeout_s=st.sampled_from([60, 90]),
)
# Offsets that land on both sides of the leases (1-30 s) and the timeouts (30, 60, 90 s).
SWEEP_OFFSETS = (0, 1, 5, 15, 29, 31, 45, 59, 61, 89, 91, 120, 3600)
BAD_BATCHES: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
    ([{"to_phone": "+14155550000"}, {"to_phone": "12345"}], {}),
    ([], {}),
    ([{"to_phone": "+14155550000"}], {"wave_size": 0}),
    ([{"to_phone": "+14155550000"}], {"dispatch_mode": "burst"}),
    ([{"to_phone": "+14155550000"}], {"retry_on": ["ended"]}),
    ([{"to_phone": "+14155550000"}], {"no_such_option": 1}),
    ([{"to_phone": "+14155550000", "colour": "red"}], {}),
)


# Objects are picked by index modulo the list's length, never with sampled_from(list): the lists
# depend on the database (which entries a claim picks among equals is decided by uuids), and a
# draw whose shape changes between runs of the same example makes Hypothesis report it as flaky.
PICK = st.integers(0, 255)


def choose(items: Sequence[T], pick: int) -> T:
    return items[pick % len(items)]


def rare(n: int = 6) -> st.SearchStrategy[bool]:
    """True about once in n draws (shrinks to False)."""
    return st.integers(0, n - 1).map(lambda i: i == n - 1)


# ------------------------------------------------------------------------------------- machine


class BatchMachine(RuleBasedStateMachine):
    shared: ClassVar[psycopg.Connection[dict[str, Any]] | None] = None  # one database per run

    def __init__(self) -> None:
        super().__init__()
        assert BatchMachine.shared is not None, "run through test_state_machine"
        self.conn = BatchMachine.shared
        reset(self.conn)
        self.api = SqlApi(self.conn)
        self.m = Model()
        self.frozen: dict[tuple[str, str], Any] = {}  # terminal rows as first seen
        self.seq = 0  # transactions timed so far

    # ---------------------------------------------------------------- helpers

    def timed(self, fn: Callable[[], T]) -> tuple[T, Stamp]:
        """fn's result, and when its (one) transaction's now() was."""
        self.seq += 1
        lo = time.time()
        result = fn()
        return result, Stamp(lo, time.time(), self.seq)

    def snapshot(self) -> dict[str, Any]:
        row = self.conn.execute(SNAPSHOT_SQL).fetchone()
        assert row is not None
        return dict(row)

    @contextmanager
    def rejected(self, sqlstate: str) -> Iterator[None]:
        """The call inside must raise sqlstate and change nothing at all."""
        before = self.snapshot()
        with pytest.raises(psycopg.Error) as info:
            yield
        assert info.value.sqlstate == sqlstate, (
            f"expected {sqlstate}, got {info.value.sqlstate}: {info.value}"
        )
        assert self.snapshot() == before, f"a rejected call ({sqlstate}) changed something"

    @contextmanager
    def unchanged(self, ignored_events: int = 0) -> Iterator[None]:
        """The call inside must change nothing (but may record ignored events)."""
        before = self.snapshot()
        yield
        after = self.snapshot()
        assert after["ignored_events"] == before["ignored_events"] + ignored_events
        after["ignored_events"] = before["ignored_events"]
        assert after == before, "a call that should change nothing changed something"

    def other_tenant(self, own: MTenant, n: int) -> UUID:
        others = [t.id for t in self.m.tenants if t is not own]
        return others[n % len(others)] if others and n % 2 == 0 else uuid.uuid4()

    # ---------------------------------------------------------------- tenants and batches

    @initialize(
        cap=st.integers(1, 3),
        numbers=st.lists(st.sampled_from(PHONES), min_size=1, max_size=6),
        opts=options_st,
    )
    def first_batch(self, cap: int, numbers: list[str], opts: Opts) -> None:
        """Every example starts with work to do, so that its steps reach calls and their ends."""
        self.create_tenant(cap)
        self.create_batch(0, numbers, replace(opts, autostart=True), bad=False)

    @precondition(lambda self: len(self.m.tenants) < 3)
    @rule(cap=st.integers(1, 3))
    def create_tenant(self, cap: int) -> None:
        tid = self.api.create_tenant(f"tenant {len(self.m.tenants)}", cap)
        self.m.tenants.append(MTenant(tid, cap))

    @precondition(lambda self: len(self.m.batches) < 6)
    @rule(
        pick=PICK,
        numbers=st.lists(st.sampled_from(PHONES), min_size=1, max_size=6),
        opts=options_st,
        bad=rare(10),
    )
    def create_batch(self, pick: int, numbers: list[str], opts: Opts, bad: bool) -> None:
        t = choose(self.m.tenants, pick)
        if bad:  # invalid input: BC001 and nothing created
            bad_rows, bad_opts = choose(BAD_BATCHES, pick)
            with self.rejected("BC001"):
                self.api.create_batch(t.id, bad_rows, bad_opts)
            return
        rows = [{"to_phone": p, "lead_name": f"lead {i}"} for i, p in enumerate(numbers)]
        bid = self.api.create_batch(t.id, rows, opts.as_json())

        firsts = [(i, p) for i, p in enumerate(numbers) if p not in numbers[:i]]
        kept = [(i, p) for i, p in firsts if p not in t.dnc]
        b = MBatch(
            bid,
            t,
            opts,
            "pending",
            duplicates=len(numbers) - len(firsts),
            dnc_skipped=len(firsts) - len(kept),
        )
        db_rows = self.conn.execute(
            """select id, entry_index, to_phone from batchctl.batch_entries
                where batch_id = %s order by entry_index""",
            (bid,),
        ).fetchall()
        assert [(r["entry_index"], r["to_phone"]) for r in db_rows] == kept, (
            "duplicates / DNC not skipped as specified"
        )
        for r in db_rows:
            e = MEntry(r["id"], b, r["entry_index"], r["to_phone"])
            b.entries.append(e)
            self.m.entries[e.id] = e
        t.batches.append(b)
        self.m.batches.append(b)
        if opts.autostart:
            self.m.set_batch(b, "running")  # completed at once when nothing was kept
        status = self.api.batch_status(t.id, bid)
        assert (status["status"], status["total"], status["pending"]) == (
            b.status,
            len(kept),
            len(kept),
        )
        assert (status["duplicates"], status["dnc_skipped"]) == (b.duplicates, b.dnc_skipped)

    @precondition(lambda self: self.m.batches)
    @rule(pick=PICK, numbers=st.lists(st.sampled_from(PHONES), min_size=1, max_size=4))
    def add_entries(self, pick: int, numbers: list[str]) -> None:
        b = choose(self.m.batches, pick)
        rows = [{"to_phone": p, "lead_name": f"added {i}"} for i, p in enumerate(numbers)]
        if b.status in TERMINAL_BATCH:
            with self.rejected("BC003"):
                self.api.add_entries(b.tenant.id, b.id, rows)
            return
        given = len(b.entries) + b.duplicates + b.dnc_skipped
        in_batch = {e.phone for e in b.entries}
        fresh = [(i, p) for i, p in enumerate(numbers) if p not in [*in_batch, *numbers[:i]]]
        kept = [(given + i, p) for i, p in fresh if p not in b.tenant.dnc]
        assert self.api.add_entries(b.tenant.id, b.id, rows) == len(kept)
        b.duplicates += len(numbers) - len(fresh)
        b.dnc_skipped += len(fresh) - len(kept)
        db_rows = self.conn.execute(
            """select id, entry_index, to_phone from batchctl.batch_entries
                where batch_id = %s and entry_index >= %s order by entry_index""",
            (b.id, given),
        ).fetchall()
        assert [(r["entry_index"], r["to_phone"]) for r in db_rows] == kept
        for r in db_rows:
            e = MEntry(r["id"], b, r["entry_index"], r["to_phone"])
            b.entries.append(e)
            self.m.entries[e.id] = e

    @precondition(lambda self: self.m.batches)
    @rule(
        pick=PICK,
        op=st.sampled_from(["start", "pause", "resume", "cancel"]),
        hang_up=st.booleans(),
        foreign=rare(8),
        n=st.integers(0, 3),
    )
    def batch_op(self, pick: int, op: str, hang_up: bool, foreign: bool, n: int) -> None:
        b = choose(self.m.batches, pick)
        api = self.api
        calls: dict[str, Callable[[UUID], Any]] = {
            "start": lambda tid: api.start_batch(tid, b.id),
            "pause": lambda tid: api.pause_batch(tid, b.id),
            "resume": lambda tid: api.resume_batch(tid, b.id),
            "cancel": lambda tid: api.cancel_batch(tid, b.id, "changed my mind"),
        }
        if foreign:  # another tenant's batch is "not found"
            with self.rejected("BC002"):
                calls[op](self.other_tenant(b.tenant, n))
            return
        if op == "cancel":
            if b.status == "cancelled":
                with self.unchanged():
                    assert calls[op](b.tenant.id) == 0
                return
            if b.status in TERMINAL_BATCH:
                with self.rejected("BC003"):
                    calls[op](b.tenant.id)
                return
            count = calls[op](b.tenant.id)
            self.m.set_batch(b, "cancelled")
            live = [e for e in b.entries if e.status in ("queued", "running")]
            for e in live:
                e.last_error = "batch_cancelled"
                self.m.move(e, "cancelled")
            calls_up = [e.call for e in b.entries if e.status == "dispatched" and e.call]
            for c in calls_up:
                self.m.request_hangup(c)
            assert count == len(live), f"cancel_batch returned {count}, cancelled {len(live)}"
            for c in calls_up if hang_up else []:  # a daemon that hangs up at once
                if not self.m.hangups[c.room]:
                    self.do_hang_up(c.room)
            return
        src, dst = {
            "start": ("pending", "running"),
            "pause": ("running", "paused"),
            "resume": ("paused", "running"),
        }[op]
        if b.status == dst:
            with self.unchanged():
                calls[op](b.tenant.id)
        elif b.status != src:
            with self.rejected("BC003"):
                calls[op](b.tenant.id)
        else:
            calls[op](b.tenant.id)
            self.m.set_batch(b, dst)

    # ---------------------------------------------------------------- entries

    @precondition(lambda self: self.m.entries)
    @rule(pick=PICK, dnc=rare(3), foreign=rare(8), n=st.integers(0, 3), hang_up=st.booleans())
    def cancel_entry(self, pick: int, dnc: bool, foreign: bool, n: int, hang_up: bool) -> None:
        """cancel_entry, or add_dnc for the entry's number (which may be in other batches too)."""
        e = choose(list(self.m.entries.values()), pick)
        if dnc:
            self.add_dnc(e.batch.tenant, e.phone)
            return
        if foreign:
            with self.rejected("BC002"):
                self.api.cancel_entry(self.other_tenant(e.batch.tenant, n), e.id)
            return
        if e.status in ("queued", "running"):
            assert self.api.cancel_entry(e.batch.tenant.id, e.id) is True
            e.last_error = "cancelled"
            self.m.move(e, "cancelled")
        elif e.status == "dispatched":  # hung up: ends with its call's outcome, never retried
            assert self.api.cancel_entry(e.batch.tenant.id, e.id) is False
            e.cancel_requested = True
            e.last_error = "entry_cancelled"  # why its call will end
            assert e.call is not None
            self.m.request_hangup(e.call)
            if hang_up and not self.m.hangups[e.call.room]:  # a daemon that hangs up at once
                self.do_hang_up(e.call.room)
        else:  # a terminal entry stays as it is
            with self.unchanged():
                assert self.api.cancel_entry(e.batch.tenant.id, e.id) is False

    def add_dnc(self, t: MTenant, phone: str) -> None:
        self.api.add_dnc(t.id, phone)
        t.dnc.add(phone)
        for b in t.batches:
            for e in b.entries:
                if e.phone == phone and e.status in ("queued", "running"):
                    e.last_error = "dnc"
                    self.m.move(e, "cancelled")

    # ---------------------------------------------------------------- dispatch

    def pick_entry(self, pick: int, stale: bool = False) -> MEntry | None:
        """An entry some claim handed out; mostly one still claimed (running), as a daemon would."""
        claimed = [e for e in self.m.entries.values() if e.rooms]
        running = [e for e in claimed if e.status == "running"]
        return choose(claimed if stale or not running else running, pick) if claimed else None

    @rule(
        worker=st.sampled_from(["w1", "w2"]),
        limit=st.integers(1, 5),
        lease=st.integers(1, 30),
        invalid=rare(12),
    )
    def claim(self, worker: str, limit: int, lease: int, invalid: bool) -> None:
        if invalid:
            with self.rejected("BC001"):
                self.api.claim(worker, (0, -1, 10001)[lease % 3], lease)
            return
        self.do_claim(worker, limit, lease)

    @rule(worker=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 5), lease=st.integers(1, 30))
    def daemon_dispatch(self, worker: str, limit: int, lease: int) -> None:
        """The daemon's usual round: claim, then acknowledge every dispatch."""
        for e in self.do_claim(worker, limit, lease):
            self.do_mark_dispatched(e, e.rooms[-1], twice=False)

    def do_claim(self, worker: str, limit: int, lease: int) -> list[MEntry]:
        claims, at = self.timed(lambda: self.api.claim(worker, limit, lease))
        low, high = self.m.claim_bounds(limit, at)
        assert low <= len(claims) <= high, f"claimed {len(claims)}, the caps allow {low}..{high}"
        assert len({c.entry_id for c in claims}) == len(claims), (
            "an entry claimed twice in one call"
        )
        assert len({(c.tenant_id, c.to_phone) for c in claims}) == len(claims), (
            "one number claimed twice in one call"
        )
        in_flight = {
            (e.batch.tenant.id, e.phone)
            for e in self.m.entries.values()
            if e.status in ("running", "dispatched")
        }
        wave_busy = {
            b.id for b in self.m.batches if b.opts.dispatch_mode == "wave" and b.in_flight() > 0
        }
        maybe_dialling = {
            (e.batch.tenant.id, e.phone)
            for e in self.m.entries.values()
            if e.status == "queued" and e.unconfirmed
        }
        for c in claims:
            e = self.m.entries.get(c.entry_id)
            assert e is not None, f"claimed an unknown entry {c.entry_id}"
            b = e.batch
            assert e.status == "queued" and due_at(e, at) is not False, (
                f"claimed an entry that is {e.status}, due {e.due}"
            )
            assert (b.tenant.id, e.phone) not in in_flight, (
                f"claimed {e.phone}, which already has a call in flight"
            )
            assert e.unconfirmed or (b.tenant.id, e.phone) not in maybe_dialling, (
                f"claimed {e.phone}, whose earlier claim elsewhere may still be dialling"
            )
            assert b.status == "running", f"claimed from a {b.status} batch"
            assert b.id not in wave_busy or e.holds_slot(), (
                "wave mode: claimed before the current wave ended"
            )
            assert e.phone not in b.tenant.dnc, (
                f"claimed {e.phone}, which is on the do-not-call list"
            )
            assert (c.batch_id, c.tenant_id, c.to_phone) == (b.id, b.tenant.id, e.phone)
            assert c.attempt == e.attempts + 1, f"attempt {c.attempt} after {e.attempts} calls"
            assert c.room_name == f"batchctl-{e.id}-{c.attempt}"
            self.m.move(e, "running")
            e.lease = at.plus(lease)
            e.rooms.append(c.room_name)
        for b in self.m.batches:
            assert b.in_flight() <= b.opts.wave_size, "over the wave size"
        for t in self.m.tenants:
            assert t.in_flight() <= t.cap, "over the tenant's max_concurrent_calls"
        return [self.m.entries[c.entry_id] for c in claims]

    @rule(pick=PICK, stale=rare(5), twice=st.booleans())
    def mark_dispatched(self, pick: int, stale: bool, twice: bool) -> None:
        e = self.pick_entry(pick, stale)
        if e is None:
            return
        room = choose(e.rooms, pick // 7) if stale else e.rooms[-1]
        self.do_mark_dispatched(e, room, twice)

    def do_mark_dispatched(self, e: MEntry, room: str, twice: bool) -> None:
        if e.status == "dispatched" and e.call is not None and e.call.room == room:
            with self.unchanged():
                assert self.api.mark_dispatched(e.id, room) == e.call.id
            return
        if e.status != "running":
            with self.rejected("BC004"):
                self.api.mark_dispatched(e.id, room)
            return
        if room != f"batchctl-{e.id}-{e.attempts + 1}":
            with self.rejected("BC001"):
                self.api.mark_dispatched(e.id, room)
            return
        call_id, at = self.timed(lambda: self.api.mark_dispatched(e.id, room, f"dispatch-{room}"))
        self.dispatched(e, room, call_id, at)
        if twice:  # the daemon's acknowledgement repeated: the same call, nothing new
            with self.unchanged():
                assert self.api.mark_dispatched(e.id, room, f"dispatch-{room}") == call_id

    def dispatched(self, e: MEntry, room: str, call_id: UUID, at: Stamp) -> None:
        c = MCall(call_id, e, e.attempts + 1, room, at)
        e.attempts += 1
        e.call = c
        e.unconfirmed = False
        e.held_until = None
        e.last_error = None
        self.m.calls[call_id] = c
        self.m.move(e, "dispatched")

    @rule(picks=st.lists(PICK, min_size=1, max_size=4), stale=rare(3))
    def mark_dispatched_many(self, picks: list[int], stale: bool) -> None:
        """The daemon's completer: several acknowledgements in one call, with repeated and
        gone claims among them; each answered as mark_dispatched would, in input order."""
        acks = [(e, e.rooms[-1]) for p in picks if (e := self.pick_entry(p, stale)) is not None]
        if not acks:
            return
        answers, at = self.timed(
            lambda: self.api.mark_dispatched_many([(e.id, r) for e, r in acks])
        )
        for (e, room), (call_id, _) in zip(acks, answers, strict=True):
            if e.status == "running":
                assert call_id is not None, f"a running entry's acknowledgement was refused: {e}"
                self.dispatched(e, room, call_id, at)
            elif e.status == "dispatched" and e.call is not None and e.call.room == room:
                assert call_id == e.call.id, "a repeated acknowledgement gave another call"
            else:
                assert call_id is None, f"a gone claim was acknowledged: {e}"
        assert [status for _, status in answers] == [e.status for e, _ in acks]

    @rule(pick=PICK, retryable=st.booleans(), late=rare(4), unknown=st.booleans())
    def mark_dispatch_failed(self, pick: int, retryable: bool, late: bool, unknown: bool) -> None:
        """LiveKit refused the dispatch (no dispatch exists: the slot is given back), or its
        answer was lost (mark_dispatch_unknown: the entry keeps its slot while it is held)."""
        e = self.pick_entry(pick, late)
        if e is None:
            return
        error = "livekit timed out" if unknown else "sip 503"

        def call() -> str:
            if unknown:
                return self.api.mark_dispatch_unknown(e.id, error)
            return self.api.mark_dispatch_failed(e.id, error, retryable)

        if e.status != "running":  # late: changes nothing, answers the entry's status
            with self.unchanged():
                assert call() == e.status
            return
        status, at = self.timed(call)
        # (A hold never runs out within an example: see MEntry.held_until.)
        if (unknown or retryable) and (e.dispatch_failures < 4 or (unknown and e.held_until)):
            e.due = at.plus(5 * 2**e.dispatch_failures)
            self.m.requeue(e, error, at, unconfirmed=unknown)
        else:
            e.last_error = error
            e.unconfirmed = unknown
            self.m.move(e, "failed")
        e.dispatch_failures += 1
        assert status == e.status

    # ---------------------------------------------------------------- the voice worker

    @rule(
        pick=PICK, status=st.sampled_from(["ringing", "ongoing"]) | st.sampled_from(CALL_STATUSES)
    )
    def report_live(self, pick: int, status: str) -> None:
        live = [c for c in self.m.calls.values() if c.status in LIVE_CALL]
        if live:
            self.do_report(choose(live, pick), status)

    @rule(pick=PICK, status=st.sampled_from(CALL_STATUSES), bogus=rare(8), unknown=rare(8))
    def report_any(self, pick: int, status: str, bogus: bool, unknown: bool) -> None:
        """Any report on any call, live or ended: late, duplicate, backward, unknown."""
        if not self.m.calls:
            return
        c = choose(list(self.m.calls.values()), pick)
        if bogus:
            with self.rejected("BC001"):
                self.api.report(c.id, "hung_up")
        elif unknown:
            with self.rejected("BC002"):
                self.api.report(uuid.uuid4(), status)
        else:
            self.do_report(c, status)

    @rule(
        pick=PICK,
        path=st.sampled_from([(), ("ringing",), ("ongoing",), ("ringing", "ongoing")]),
        outcome=st.sampled_from(CALL_STATUSES[3:]) | st.none(),
    )
    def voice_worker(self, pick: int, path: tuple[str, ...], outcome: str | None) -> None:
        """A voice worker's usual reports for one live call: forward steps, then (maybe) its end."""
        live = [c for c in self.m.calls.values() if c.status in LIVE_CALL]
        if live:
            c = choose(live, pick)
            for status in (*path, *([outcome] if outcome else [])):
                self.do_report(c, status)

    @rule(reports=st.lists(st.tuples(PICK, st.sampled_from(CALL_STATUSES)), min_size=1, max_size=5))
    def report_many(self, reports: list[tuple[int, str]]) -> None:
        """A completer's flush: reports of several calls in one call, a call's own in order;
        late, duplicate and backward ones among them are ignored and recorded."""
        live = [c for c in self.m.calls.values() if c.status in LIVE_CALL]
        calls = live or list(self.m.calls.values())
        if not calls:
            return
        batch = [(choose(calls, pick), status) for pick, status in reports]
        ignored_before = self.snapshot()["ignored_events"]
        result, at = self.timed(lambda: self.api.report_many([(c.id, s) for c, s in batch]))
        ignored = 0
        for c, status in batch:
            if not (rank(c.status) < 3 and rank(status) > rank(c.status)):
                ignored += 1
            elif status in LIVE_CALL:
                c.status, c.changed = status, at
            else:
                c.changed = at
                self.m.call_ended(c, status)
        assert result == [c.entry.status for c, _ in batch]
        assert self.snapshot()["ignored_events"] == ignored_before + ignored

    def do_report(self, c: MCall, status: str) -> None:
        if not (rank(c.status) < 3 and rank(status) > rank(c.status)):
            # duplicate, backward or after the end: ignored, recorded as such
            with self.unchanged(ignored_events=1):
                assert self.api.report(c.id, status) == c.entry.status
            return
        result, at = self.timed(lambda: self.api.report(c.id, status, {"duration_seconds": 1.5}))
        c.changed = at
        if status in LIVE_CALL:
            c.status = status
        else:
            self.m.call_ended(c, status)
        assert result == c.entry.status, (
            f"report {status}: entry is {result}, expected {c.entry.status}"
        )

    # ---------------------------------------------------------------- hang-ups

    @rule(pick=PICK, twice=st.booleans())
    def hang_up(self, pick: int, twice: bool) -> None:
        """The daemon deleted a queued room: a call still live there ends cancelled."""
        pending = sorted(room for room, done in self.m.hangups.items() if not done)
        if pending:
            self.do_hang_up(choose(pending, pick), twice)

    def do_hang_up(self, room: str, twice: bool = False) -> None:
        self.api.hangup_done(room)
        self.m.hangups[room] = True
        # (A claim's room has no call log: nothing more to end.)
        for c in [c for c in self.m.calls.values() if c.room == room]:
            if c.status in LIVE_CALL:
                self.m.call_ended(c, "cancelled")
        if twice:  # a repeated acknowledgement changes nothing
            with self.unchanged():
                self.api.hangup_done(room)

    # ---------------------------------------------------------------- sweep

    @rule(offset=st.sampled_from(SWEEP_OFFSETS))
    def sweep(self, offset: int) -> None:
        m = self.m
        now = time.time() + offset
        p_now = Stamp(now, now)
        leases = {
            e.id: e.lease.before(p_now)
            for e in m.entries.values()
            if e.status == "running" and e.lease
        }
        timeouts: dict[UUID, bool | None] = {}
        for c in m.calls.values():
            if c.status in LIVE_CALL:
                o = c.entry.batch.opts
                limit = {
                    "in_queue": o.pickup_timeout_s,
                    "ringing": o.ringing_timeout_s,
                    "ongoing": o.ongoing_timeout_s,
                }
                timeouts[c.id] = c.changed.plus(limit[c.status]).before(p_now)
        result, at = self.timed(lambda: self.api.sweep(datetime.fromtimestamp(now, UTC)))
        assert result.get("skipped") is not True

        # Observe what fired; where the model is certain it must match.
        entries = {
            r["id"]: r["status"]
            for r in self.conn.execute("select id, status from batchctl.batch_entries")
        }
        calls = {
            r["id"]: r["status"]
            for r in self.conn.execute("select id, status from batchctl.call_logs")
        }
        counts = dict.fromkeys(
            ("leases_expired", "pickup_requeued", "pickup_failed", "pickup_timeouts",
             "ringing_timeouts",
             "ongoing_timeouts"),
            0,
        )  # fmt: skip
        for eid, predicted in leases.items():
            fired = entries[eid] != "running"
            assert predicted is None or fired == predicted, (
                f"lease of {eid}: expired {fired}, expected {predicted}"
            )
            if fired:  # next_attempt_at unchanged; LiveKit may have its dispatch
                m.requeue(m.entries[eid], "lease_expired", at, unconfirmed=True)
                counts["leases_expired"] += 1
        for cid, predicted in timeouts.items():
            c = m.calls[cid]
            fired = calls[cid] != c.status
            assert predicted is None or fired == predicted, (
                f"{c.status} call {cid}: timed out {fired}, expected {predicted}"
            )
            if not fired:
                continue
            e, b = c.entry, c.entry.batch
            m.request_hangup(c)  # it may still be live at LiveKit
            if c.status == "in_queue":  # never picked up: re-dispatch, or give up
                counts["pickup_timeouts"] += 1
                c.status, c.changed = "failed", at
                if e.retry_count < b.opts.max_retries:
                    e.retry_count += 1
                    e.due = at  # the sweep's now(), not p_now
                    m.requeue(e, "pickup_timeout", at)  # the guard may cancel it
                else:
                    e.last_error = "max_retries_exceeded"
                    m.move(e, "failed")
                counts["pickup_requeued" if e.status == "queued" else "pickup_failed"] += 1
            else:
                counts[f"{c.status}_timeouts"] += 1
                c.changed = at
                m.call_ended(c, "failed", f"{c.status}_timeout")
        for key, n in counts.items():
            assert result[key] == n, f"sweep {key}: {result[key]}, expected {n} ({result})"
        assert (result["expired"], result["deferred_to_window"], result["reports_released"]) == (
            0,
            0,
            0,
        )

    # ---------------------------------------------------------------- after every step

    @invariant()
    def database_matches_model(self) -> None:
        assert_invariants(self.conn)
        m = self.m
        hangups = {
            r["room_name"]: r["done"]
            for r in self.conn.execute(
                "select room_name, done_at is not null as done from batchctl.hangups"
            )
        }
        assert hangups == m.hangups, f"hang-up outbox: database {hangups}, model {m.hangups}"
        batches = {
            r["id"]: r
            for r in self.conn.execute(
                """select id, tenant_id, status::text, total, queued_count, running_count,
                          dispatched_count, completed_count, failed_count, declined_count,
                          cancelled_count, duplicates,
                          dnc_skipped, finished_at is not null as finished,
                          exists (select 1 from batchctl.reports r
                                   where r.batch_id = b.id) as reported
                     from batchctl.batches b"""
            )
        }
        assert set(batches) == {b.id for b in m.batches}
        for b in m.batches:
            r = batches[b.id]
            expected = {
                "status": b.status,
                "total": len(b.entries),
                **{f"{s}_count": b.count(s) for s in ENTRY_STATUSES},
                "finished": b.finished,
                "reported": b.finished,
                "duplicates": b.duplicates,
                "dnc_skipped": b.dnc_skipped,
            }
            actual = {k: r[k] for k in expected}
            assert actual == expected, f"batch {b.id}: database {actual}, model {expected}"

        entries = {
            r["id"]: r
            for r in self.conn.execute(
                """select id, batch_id, status::text, attempts, retry_count, dispatch_failures,
                          call_log_id, cancel_requested, last_error, dispatch_unconfirmed,
                          claimed_by is not null as claimed,
                          coalesce(status = 'queued' and dispatch_unconfirmed
                                   and slot_held_until > now(), false) as holds_slot
                     from batchctl.batch_entries"""
            )
        }
        assert set(entries) == set(m.entries)
        for e in m.entries.values():
            r = entries[e.id]
            expected = {
                "batch_id": e.batch.id,
                "status": e.status,
                "attempts": e.attempts,
                "retry_count": e.retry_count,
                "dispatch_failures": e.dispatch_failures,
                "call_log_id": e.call.id if e.call else None,
                "cancel_requested": e.cancel_requested,
                "last_error": e.last_error,
                "dispatch_unconfirmed": e.unconfirmed,
                "holds_slot": e.holds_slot(),
            }
            actual = {k: r[k] for k in expected}
            assert actual == expected, f"entry {e.id}: database {actual}, model {expected}"
            if e.status == "running":
                assert r["claimed"], f"running entry {e.id} has no claimed_by"

        calls = {
            r["id"]: r
            for r in self.conn.execute(
                "select id, entry_id, attempt, status::text from batchctl.call_logs"
            )
        }
        assert set(calls) == set(m.calls)
        for c in m.calls.values():
            r = calls[c.id]
            assert (r["entry_id"], r["attempt"], r["status"]) == (
                c.entry.id,
                c.attempt,
                c.status,
            ), f"call {c.id}: database {r}, model {c.status} attempt {c.attempt}"

    @invariant()
    def terminal_rows_never_change(self) -> None:
        rows = self.conn.execute(
            """select 'entry' as kind, id::text, to_jsonb(e) as row from batchctl.batch_entries e
                where status in ('completed', 'failed', 'declined', 'cancelled')
               union all
               select 'call', id::text, to_jsonb(c) from batchctl.call_logs c
                where status not in ('in_queue', 'ringing', 'ongoing')
               union all
               select 'batch', id::text, to_jsonb(b) from batchctl.batches b
                where finished_at is not null
               union all
               select 'report-of', batch_id::text,
                      jsonb_build_object('tenant', r.tenant_id, 'to', r.recipients,
                                         'created', r.created_at)
                 from batchctl.reports r"""
        ).fetchall()
        seen = {(r["kind"], r["id"]): r["row"] for r in rows}
        for key, row in self.frozen.items():
            assert key in seen, f"{key[0]} {key[1]} left its terminal status"
            assert seen[key] == row, f"terminal {key[0]} {key[1]} changed:\n{row}\n->\n{seen[key]}"
        self.frozen.update(seen)


def test_state_machine(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        try:
            reset(conn)
        except psycopg.errors.InsufficientPrivilege:
            pytest.skip("resetting the database between examples needs a superuser")
        BatchMachine.shared = conn
        try:
            run_state_machine_as_test(
                BatchMachine,
                settings=settings(
                    stateful_step_count=40,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                ),
            )
        finally:
            BatchMachine.shared = None
