"""Outbound webhooks in the database (sql/056, sql/059, docs/webhooks.md): endpoints, the
outbox the transitions write in their own transactions, ordered claims with leases, and what an
attempt's answer does."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from checks import Conn, rejected
from invariants import assert_invariants
from pgtools import one_row, one_value
from sqlapi import SqlApi, phones

URL = "https://hooks.example.com/batchctl"


def add(
    conn: Conn,
    tenant: UUID,
    url: str = URL,
    events: list[str] | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    return one_value(
        conn, "select batchctl.add_webhook(%s, %s, %s, %s)", (tenant, url, events, secret)
    )


def deliveries(conn: Conn) -> list[dict[str, Any]]:
    """The outbox, each payload as its first claim renders it (claim_webhook_deliveries)."""
    return conn.execute(
        """select id, endpoint_id, event_type, ordering_key, status, message_id,
                  payload || jsonb_build_object('data', coalesce(
                      payload -> 'data', batchctl.webhook_data(event_type, object_id, batch_id)))
                      as payload
             from batchctl.webhook_deliveries order by id"""
    ).fetchall()


def claim(conn: Conn, limit: int = 50, worker: str = "w") -> list[dict[str, Any]]:
    return conn.execute(
        "select * from batchctl.claim_webhook_deliveries(%s, %s, 30)", (worker, limit)
    ).fetchall()


def record(
    conn: Conn,
    row: dict[str, Any],
    code: int | None = 200,
    reply: str = "",
    error: str | None = None,
) -> str:
    """What the daemon records of an attempt: the answer (or its own error), nothing more."""
    return one_value(
        conn,
        "select batchctl.record_webhook_attempt(%s, %s, %s, %s, %s, %s, 12.5)",
        (row["tenant_id"], row["delivery_id"], row["attempt"], code, error, reply),
    )  # fmt: skip


def run_one_call(api: SqlApi, outcome: str = "ended") -> UUID:
    (call,) = api.dispatch_all()
    api.finish_call(call, outcome)
    return call


# --- endpoints -----------------------------------------------------------------------------


def test_add_webhook_returns_a_generated_secret_once_and_list_hides_it(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant()
    made = add(conn, tenant, events=["entry.finished", "call.ended", "call.ended"])
    assert made["url"] == URL and made["events"] == ["call.ended", "entry.finished"]
    assert made["secret"].startswith("whsec_")
    assert len(base64.b64decode(made["secret"][6:])) == 32
    assert add(conn, tenant)["secret"] != made["secret"]
    listed = one_value(conn, "select batchctl.list_webhooks(%s)", (tenant,))
    assert [e["endpoint_id"] for e in listed] == [made["endpoint_id"], listed[1]["endpoint_id"]]
    assert all("secret" not in e and e["enabled"] for e in listed)
    own = "whsec_" + base64.b64encode(b"k" * 24).decode()
    assert add(conn, tenant, secret=own)["secret"] == own


@pytest.mark.parametrize(
    ("url", "events", "secret", "needle"),
    [
        ("ftp://x.example", None, None, "expected http(s)://host"),
        ("https://user:pw@x.example/", None, None, "user:password@"),
        ("https://x.example/a b", None, None, "without spaces"),
        (None, None, None, "got null"),
        ("https://x.example/" + "a" * 2048, None, None, "at most 2048 characters"),
        (URL, ["call.ended", "call.started"], None, '"call.started" not an event type'),
        (URL, [], None, "none given is not an event type"),
        (URL, None, "whsec_short", "base64 of 24 to 64 random bytes"),
        (URL, None, "secret-without-prefix-secret-without-prefix", "expected whsec_"),
    ],
    ids=["scheme", "credentials", "space", "null", "long", "event", "no events", "short", "prefix"],
)
def test_add_webhook_refuses_bad_input_naming_it_and_adds_nothing(
    api: SqlApi,
    conn: Conn,
    url: str | None,
    events: list[str] | None,
    secret: str | None,
    needle: str,
) -> None:
    tenant = api.create_tenant()
    rejected(conn, "BC001", lambda: add(conn, tenant, url, events, secret), needle)  # type: ignore[arg-type]


def test_another_tenants_endpoint_is_not_found(api: SqlApi, conn: Conn) -> None:
    mine, theirs = api.create_tenant("mine"), api.create_tenant("theirs")
    endpoint = add(conn, theirs)["endpoint_id"]
    for call in (
        lambda: one_value(conn, "select batchctl.remove_webhook(%s, %s)", (mine, endpoint)),
        lambda: one_value(conn, "select batchctl.webhook_deliveries(%s, %s)", (mine, endpoint)),
        lambda: one_value(conn, "select batchctl.replay_webhooks(%s, %s, now())", (mine, endpoint)),
    ):
        rejected(conn, "BC002", call, "not found")
    assert one_value(conn, "select batchctl.remove_webhook(%s, %s)", (theirs, endpoint)) is True


# --- the outbox ------------------------------------------------------------------------------


def test_a_campaign_queues_each_event_once_per_endpoint_in_order_with_its_data(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant("acme", 1)
    every = UUID(add(conn, tenant)["endpoint_id"])
    finishes = UUID(
        add(conn, tenant, "https://b.example/", ["batch.finished", "entry.finished"])["endpoint_id"]
    )
    rows = [
        {
            "to_phone": "+14155550100",
            "lead_id": "L-1",
            "lead_name": "Ada",
            "context": {"plan": "gold"},
        }
    ]
    batch = api.create_batch(
        tenant, rows, {"metadata": {"campaign": "spring"}, "report_to": ["ops@example.com"]}
    )
    call = run_one_call(api)
    quiet = api.create_tenant("quiet")
    api.create_batch(quiet, phones(1, 50))  # no endpoint: nothing queued
    run_one_call(api)
    queued = deliveries(conn)

    def sent_to(endpoint: UUID) -> list[str]:
        return [d["event_type"] for d in queued if d["endpoint_id"] == endpoint]

    assert sent_to(every) == ["batch.started", "call.ended", "entry.finished", "batch.finished"]
    assert sent_to(finishes) == ["entry.finished", "batch.finished"]
    assert len(queued) == 6
    by_type = {d["event_type"]: d for d in queued if d["endpoint_id"] == every}
    ended = by_type["call.ended"]["payload"]
    assert ended["type"] == "call.ended" and ended["data"]["call_log_id"] == str(call)
    assert ended["data"]["status"] == "ended" and ended["data"]["lead_id"] == "L-1"
    assert ended["data"]["context"] == {"plan": "gold"}
    assert ended["data"]["metadata"] == {"campaign": "spring"}
    entry = ended["data"]["entry_id"]
    assert (
        by_type["entry.finished"]["ordering_key"]
        == by_type["call.ended"]["ordering_key"]
        == UUID(entry)
    )
    assert by_type["entry.finished"]["payload"]["data"]["status"] == "completed"
    finished = by_type["batch.finished"]["payload"]["data"]
    assert (finished["status"], finished["completed"], finished["total"]) == ("completed", 1, 1)
    assert by_type["batch.started"]["ordering_key"] == batch
    assert len({d["message_id"] for d in queued}) == 4  # one id per event, shared by endpoints
    # The report's sending is one more event.
    report = one_row(conn, "select * from batchctl.claim_report_now(%s, 'w', null)", (batch,))
    assert report is not None
    conn.execute("select batchctl.report_sent(%s)", (batch,))
    last = deliveries(conn)[-1]
    assert (last["event_type"], last["payload"]["data"]["recipients"]) == (
        "report.sent",
        ["ops@example.com"],
    )
    assert_invariants(conn)


def test_a_rolled_back_transition_queues_nothing(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    add(conn, tenant)
    api.create_batch(tenant, phones(1))
    (call,) = api.dispatch_all()
    before = len(deliveries(conn))
    with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
        api.report(call, "ongoing")
        api.report(call, "ended")
        conn.execute("do $$ begin raise exception 'boom'; end $$")
    assert len(deliveries(conn)) == before


def test_pause_and_resume_are_events(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    add(conn, tenant, events=["batch.paused", "batch.resumed"])
    batch = api.create_batch(tenant, phones(2))
    api.pause_batch(tenant, batch)
    api.resume_batch(tenant, batch)
    assert [d["event_type"] for d in deliveries(conn)] == ["batch.paused", "batch.resumed"]


# --- claims and attempts ---------------------------------------------------------------------


def test_an_entrys_events_are_claimed_one_after_another_and_daemons_share_the_rest(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant("acme", 2)
    add(conn, tenant, events=["call.ended", "entry.finished"])
    api.create_batch(tenant, phones(2))
    for call in api.dispatch_all():
        api.finish_call(call)
    first = claim(conn)
    assert sorted(r["event_type"] for r in first) == ["call.ended", "call.ended"]
    assert claim(conn, worker="other") == []  # each entry's next waits for its call.ended
    assert record(conn, first[0]) == "delivered"
    (second,) = claim(conn, worker="other")
    assert second["event_type"] == "entry.finished" and second["attempt"] == 1
    assert record(conn, second) == "delivered"
    assert claim(conn) == []  # the other entry's call.ended is leased


def test_a_retry_waits_its_delay_and_a_late_record_changes_nothing(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    add(conn, tenant, events=["batch.started"])
    api.create_batch(tenant, phones(1))
    (row,) = claim(conn)
    assert record(conn, row, 503, reply="try later") == "pending"
    assert claim(conn) == []
    conn.execute("update batchctl.webhook_deliveries set next_attempt_at = now()")
    (again,) = claim(conn)
    assert (again["attempt"], again["message_id"]) == (2, row["message_id"])
    assert record(conn, row) == "pending"  # attempt 1's answer, too late
    assert record(conn, again, 204) == "delivered"
    (listed,) = one_value(
        conn, "select batchctl.webhook_deliveries(%s, %s)", (tenant, row["endpoint_id"])
    )
    # The late answer of attempt 1 is not a second record of it.
    assert [(t["attempt"], t["status_code"], t["error"]) for t in listed["tries"]] == [
        (1, 503, "HTTP 503: try later"), (2, 204, None)
    ]  # fmt: skip


@pytest.mark.parametrize("why", ["gone", "schedule over"])
def test_a_410_or_the_end_of_the_schedule_switches_the_endpoint_off_and_replay_resends(
    api: SqlApi, conn: Conn, why: str
) -> None:
    tenant = api.create_tenant()
    endpoint = add(conn, tenant, events=["batch.started", "batch.paused"])["endpoint_id"]
    batch = api.create_batch(tenant, phones(2))
    api.pause_batch(tenant, batch)
    first, *_ = claim(conn, limit=1)
    if why == "gone":
        assert record(conn, first, 410) == "failed"
    else:
        # The twelfth attempt, the schedule's last, gets no answer either.
        conn.execute(
            "update batchctl.webhook_deliveries set attempts = 12 where id = %s",
            (first["delivery_id"],),
        )
        last = {**first, "attempt": 12}
        assert record(conn, last, None, error="connection refused") == "failed"
    (listed,) = one_value(conn, "select batchctl.list_webhooks(%s)", (tenant,))
    assert listed["enabled"] is False and (listed["failed"], listed["pending"]) == (1, 1)
    assert ("410 Gone" if why == "gone" else "connection refused") in listed["disabled_reason"]
    assert claim(conn) == []  # its other delivery waits while it is off
    api.resume_batch(tenant, batch)  # an event while it is off: not queued for it
    assert len(deliveries(conn)) == 2
    assert (
        one_value(conn, "select batchctl.replay_webhooks(%s, %s, '-infinity')", (tenant, endpoint))
        == 2
    )
    assert [r["event_type"] for r in claim(conn)] == ["batch.started"]


def test_an_expired_lease_lets_another_daemon_send_it_with_the_same_id(
    api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant()
    add(conn, tenant, events=["batch.started"])
    api.create_batch(tenant, phones(1))
    (row,) = claim(conn, worker="a")
    conn.execute("update batchctl.webhook_deliveries set lease_until = now() - interval '1 s'")
    (again,) = claim(conn, worker="b")
    assert again["message_id"] == row["message_id"] and again["attempt"] == 2


def test_worker_functions_check_their_arguments(conn: Conn) -> None:
    def attempt() -> object:
        return one_value(
            conn,
            "select batchctl.record_webhook_attempt(gen_random_uuid(), 1, 1, 200, null, '', 1)",
        )

    rejected(conn, "BC001", lambda: claim(conn, limit=0), "p_limit")
    rejected(conn, "BC002", attempt, "not found")


def test_a_payload_is_rendered_by_its_first_claim_and_sent_the_same_on_every_attempt(
    api: SqlApi, conn: Conn
) -> None:
    """A call's data is rendered off the transition's path, from its final rows; a batch's
    start keeps the counters of its moment."""
    tenant = api.create_tenant("acme", 1)
    add(conn, tenant, events=["call.ended", "batch.started"])
    api.create_batch(tenant, phones(2))
    stored = conn.execute("select event_type, payload from batchctl.webhook_deliveries").fetchall()
    assert [(r["event_type"], "data" in r["payload"]) for r in stored] == [("batch.started", True)]
    assert stored[0]["payload"]["data"]["queued"] == 2
    call = run_one_call(api)
    (pending,) = conn.execute(
        "select payload from batchctl.webhook_deliveries where event_type = 'call.ended'"
    ).fetchall()
    assert "data" not in pending["payload"]
    first = {r["event_type"]: r for r in claim(conn)}
    sent = first["call.ended"]["payload"]
    assert sent["data"]["call_log_id"] == str(call) and sent["data"]["status"] == "ended"
    assert record(conn, first["call.ended"], 500) == "pending"
    conn.execute("update batchctl.webhook_deliveries set next_attempt_at = now()")
    (again,) = [r for r in claim(conn) if r["event_type"] == "call.ended"]
    assert again["payload"] == sent


# --- what an answer makes of a delivery: decided in the database (sql/028) -----------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [(200, "delivered"), (204, "delivered"), (299, "delivered"), (410, "gone"), (302, "retry"),
     (404, "retry"), (500, "retry"), (None, "retry")],
)  # fmt: skip
def test_answers_are_classified(conn: Conn, code: int | None, expected: str) -> None:
    assert one_value(conn, "select batchctl.webhook_reply_outcome(%s)", (code,)) == expected


def test_the_schedule_covers_a_day_even_at_the_shortest_jitter_then_gives_up(conn: Conn) -> None:
    delays = [
        one_value(conn, "select batchctl.webhook_retry_delay(%s)", (attempt,))
        for attempt in range(1, 13)
    ]
    steps = delays[:11]
    assert delays[11] is None, "the twelfth failed attempt is the last"
    assert steps == sorted(steps) and steps[0] == timedelta(seconds=5)
    assert sum(steps, timedelta()) * 0.8 >= timedelta(hours=24)
    waits = [
        one_value(conn, "select batchctl.webhook_retry_wait(3)") for _ in range(50)
    ]  # fmt: skip
    assert all(timedelta(minutes=1.6) <= w <= timedelta(minutes=2.4) for w in waits)
    assert len(set(waits)) > 40, "failures at the same time do not all retry at the same time"


def test_a_retry_is_due_after_the_schedules_wait(api: SqlApi, conn: Conn) -> None:
    tenant = api.create_tenant()
    add(conn, tenant, events=["batch.started"])
    api.create_batch(tenant, phones(1))
    (row,) = claim(conn)
    assert record(conn, row, None, error="timed out after 10 s") == "pending"
    due = one_value(
        conn,
        """select next_attempt_at - now() from batchctl.webhook_deliveries where id = %s""",
        (row["delivery_id"],),
    )
    assert timedelta(seconds=4) <= due <= timedelta(seconds=6)
