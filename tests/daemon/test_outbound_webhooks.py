"""Outbound webhooks end to end (docs/webhooks.md): the daemon, the simulator and a real
receiver on 127.0.0.1 that verifies every signature with `standardwebhooks`. What the receiver
gets is exactly what the audit says happened, in order per entry, through an outage."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchctl.sim import Scenario
from campaigns import QUICK_CALLS
from invariants import assert_invariants
from polling import wait_until
from receiver import (
    SECRET,
    all_delivered,
    assert_in_order_per_entry,
    audited,
    first_occurrences,
    run_receiver,
)
from services import Service, daemon_command, running, wait_finished
from simulator import run_simulator
from sqlapi import SqlApi, phones

ENDED = {**QUICK_CALLS, "outcomes": {"ended": 1}}
PRIVATE = ("--allow-private-webhooks",)


@contextmanager
def daemons(
    db_url: str, tmp_path: Path, scenario: dict[str, Any], *options: str, count: int = 1
) -> Iterator[tuple[Service, ...]]:
    """``count`` daemons with ``options`` and the simulator playing ``scenario``."""
    with run_simulator(db_url, Scenario.from_dict(scenario)) as sim:
        services = tuple(
            Service(daemon_command(db_url, sim.url, *options), tmp_path / f"daemon{i}.log")
            for i in range(1, count + 1)
        )
        with running(*services):
            yield services


def test_a_campaigns_events_reach_the_receiver_signed_once_each_in_order(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme", 4)
    with run_receiver(SECRET) as receiver:
        api.add_webhook(tenant, receiver.url, secret=SECRET)
        rows = [{"to_phone": p["to_phone"], "lead_id": f"L-{i}"} for i, p in enumerate(phones(12))]
        retry = {"retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 0}
        batch = api.create_batch(tenant, rows, {**retry, "metadata": {"campaign": "spring"}})
        with daemons(db_url, tmp_path, {**QUICK_CALLS, "seed": 3}, *PRIVATE, count=2) as both:
            wait_finished(api.conn, [batch], timeout=60, services=both)
            wait_until(lambda: all_delivered(api.conn), 30, what="every delivery")
        received = receiver.snapshot()
    assert receiver.unverified == 0
    assert Counter(e.type for e in received) == audited(api.conn)
    assert len({e.message_id for e in received}) == len(received), "each event once"
    assert_in_order_per_entry(received)
    ended = [e for e in received if e.type == "call.ended"]
    assert {e.data["metadata"]["campaign"] for e in ended} == {"spring"}
    assert {e.data["lead_id"] for e in ended} == {f"L-{i}" for i in range(12)}
    assert_invariants(api.conn)


def test_an_outage_of_the_receiver_delays_its_events_and_loses_none(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme", 3)
    with run_receiver(SECRET) as receiver:
        api.add_webhook(tenant, receiver.url, secret=SECRET)
        receiver.down = True
        batch = api.create_batch(tenant, phones(6))
        with daemons(db_url, tmp_path, ENDED, *PRIVATE) as (daemon,):
            wait_finished(api.conn, [batch], timeout=60, services=[daemon])
            wait_until(lambda: receiver.refused >= 3, 30, what="refused deliveries")
            receiver.down = False  # back: the retries (5 s on) get through
            wait_until(
                lambda: all_delivered(api.conn), 40, what="every delivery", details=daemon.tail
            )
        received = receiver.snapshot()
    assert Counter(e.type for e in received) == audited(api.conn)
    assert len({e.message_id for e in received}) == len(received)
    assert_in_order_per_entry(received)
    tries = api.conn.execute(
        "select count(*) as n from batchctl.webhook_attempts where status_code = 503"
    ).fetchone()
    assert tries is not None and tries["n"] >= 3


def test_two_daemons_one_killed_mid_delivery_lose_nothing_and_resend_with_the_same_id(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    """The receiver answers slowly; one of two daemons is killed (-9) while it has deliveries
    in hand. The other sends them once their leases run out (2 x 1 s + 5 s), with the same
    webhook-id: the receiver may see an event twice, never miss one, and sees no event twice
    that was not in the killed daemon's hands."""
    tenant = api.create_tenant("acme", 4)
    with run_receiver(SECRET) as receiver:
        api.add_webhook(tenant, receiver.url, secret=SECRET)
        receiver.delay_s = 0.3
        batch = api.create_batch(tenant, phones(10))
        options = (*PRIVATE, "--webhook-timeout", "1")
        with daemons(db_url, tmp_path, ENDED, *options, count=2) as (doomed, survivor):
            wait_until(lambda: len(receiver.snapshot()) >= 4, 30, what="some deliveries")
            in_hand = api.conn.execute(
                """select count(*) as n from batchctl.webhook_deliveries
                    where status = 'pending' and claimed_by like %s""",
                (f"%:{doomed.process.pid}" if doomed.process else "",),
            ).fetchone()
            doomed.kill()
            wait_finished(api.conn, [batch], timeout=60, services=[survivor])
            wait_until(
                lambda: all_delivered(api.conn), 40, what="every delivery", details=survivor.tail
            )
        received = receiver.snapshot()
    assert receiver.unverified == 0
    firsts = first_occurrences(received)
    assert Counter(e.type for e in firsts) == audited(api.conn)
    assert_in_order_per_entry(firsts)
    resent = len(received) - len(firsts)
    assert in_hand is not None and resent <= in_hand["n"], (resent, in_hand)


def test_a_slow_endpoint_holds_only_its_own_deliveries(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme", 4)
    with run_receiver(SECRET) as slow, run_receiver(SECRET) as fast:
        slow.delay_s = 3.0
        api.add_webhook(tenant, slow.url, secret=SECRET)
        api.add_webhook(tenant, fast.url, secret=SECRET)
        batch = api.create_batch(tenant, phones(4))
        with daemons(db_url, tmp_path, ENDED, *PRIVATE) as (daemon,):
            wait_finished(api.conn, [batch], timeout=60, services=[daemon])
            expected = sum(audited(api.conn).values())
            wait_until(lambda: len(fast.snapshot()) == expected, 20, what="the fast endpoint")
            # Each entry's events go one after another: the slow endpoint is far behind.
            assert len(slow.snapshot()) < expected
            wait_until(lambda: all_delivered(api.conn), 60, what="the slow endpoint too")


def test_a_private_address_is_refused_unless_the_owner_allows_it(
    db_url: str, api: SqlApi, tmp_path: Path
) -> None:
    tenant = api.create_tenant("acme", 2)
    with run_receiver(SECRET) as receiver:
        # https, so that the address is what is refused (http alone is, without the flag).
        api.add_webhook(tenant, receiver.url.replace("http:", "https:"), secret=SECRET)
        api.create_batch(tenant, phones(1))
        refused = "select error from batchctl.webhook_attempts limit 1"
        with daemons(db_url, tmp_path, QUICK_CALLS):
            wait_until(lambda: api.conn.execute(refused).fetchone(), 30, what="an attempt")
        row = api.conn.execute(refused).fetchone()
    assert row is not None and row["error"].startswith("refused: ")
    assert "127.0.0.1" in row["error"] and "loopback" in row["error"]
    assert receiver.snapshot() == []
