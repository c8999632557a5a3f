"""`batchctl endpoint`, through click's runner: a tenant's webhook endpoints added, listed and
removed (text and JSON), the database's words for a bad URL, event or secret, another tenant's
endpoint not found, deliveries queued by a batch's start, replay, and `endpoint test` POSTing a
signed ping to a real receiver on 127.0.0.1 (refused there without --allow-private-webhooks)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from checks import Conn
from clitools import count, create_tenant, invoke, one_line_error
from ports import free_port
from receiver import Receiver, run_receiver
from sqlapi import SqlApi, phones

URL = "https://hooks.example.com/batchctl"
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def add_endpoint(db_url: str, tenant: str, *args: str) -> dict[str, Any]:
    result = invoke(db_url, "endpoint", "add", tenant, *args, "--json")
    assert result.exit_code == 0, result.output
    made: dict[str, Any] = json.loads(result.stdout)
    return made


# --- add, list, remove -------------------------------------------------------------------------


def test_endpoint_add_list_remove_round_trip(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    added = invoke(db_url, "endpoint", "add", "acme", URL)
    assert added.exit_code == 0, added.output
    lines = added.stdout.splitlines()
    fields = dict(line.split(None, 1) for line in lines if line and not line.startswith("The"))
    endpoint = fields["endpoint"]
    assert UUID(endpoint) and fields["url"] == URL and fields["events"] == "all"
    assert fields["secret"].startswith("whsec_")
    assert len(base64.b64decode(fields["secret"].removeprefix("whsec_"))) == 32
    assert lines[-1] == (
        "The secret is shown this once: keep it to verify the deliveries' signatures."
    )
    stored = conn.execute("select secret from batchctl.webhook_endpoints").fetchone()
    assert stored is not None and stored["secret"] == fields["secret"]

    other = add_endpoint(
        db_url, "acme", "https://b.example/h", "--event", "call.ended", "--event", "batch.started"
    )
    table = invoke(db_url, "endpoint", "list", "acme")
    assert table.exit_code == 0, table.output
    header, first, second = table.stdout.splitlines()
    assert header.split() == ["ENDPOINT", "URL", "EVENTS", "PENDING", "DELIVERED", "FAILED",
                              "STATE"]  # fmt: skip
    assert first.split() == [endpoint, URL, "all", "0", "0", "0", "enabled"]
    assert second.split() == [other["endpoint_id"], "https://b.example/h", "batch.started,",
                              "call.ended", "0", "0", "0", "enabled"]  # fmt: skip
    assert "whsec_" not in table.stdout

    removed = invoke(db_url, "endpoint", "remove", "acme", endpoint)
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == f"endpoint {endpoint} removed"
    assert count(conn, "webhook_endpoints") == 1
    one_line_error(
        invoke(db_url, "endpoint", "remove", "acme", endpoint), f"endpoint {endpoint} not found"
    )
    invoke(db_url, "endpoint", "remove", "acme", other["endpoint_id"])
    create_tenant(db_url, "empty")
    for tenant in ("acme", "empty"):
        assert "no endpoints yet" in invoke(db_url, "endpoint", "list", tenant).stdout


def test_endpoint_json_output(db_url: str, conn: Conn) -> None:
    tenant_id = create_tenant(db_url, "acme")
    made = add_endpoint(db_url, tenant_id, URL, "--event", "batch.finished", "--secret", SECRET)
    assert made == {
        "tenant_id": tenant_id,
        "endpoint_id": made["endpoint_id"],
        "url": URL,
        "events": ["batch.finished"],
        "secret": SECRET,
    }
    listed = invoke(db_url, "endpoint", "list", "acme", "--json")
    assert listed.exit_code == 0, listed.output
    (shown,) = json.loads(listed.stdout)
    assert shown["endpoint_id"] == made["endpoint_id"] and shown["events"] == ["batch.finished"]
    assert (shown["enabled"], shown["pending"], shown["delivered"], shown["failed"]) == (
        True, 0, 0, 0,
    )  # fmt: skip
    assert "secret" not in shown
    empty = invoke(db_url, "endpoint", "deliveries", "acme", made["endpoint_id"], "--json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ftp://x.example/h",), '"ftp://x.example/h": expected http(s)://host'),
        (("https://user:pw@x.example/",), "user:password@"),
        (("not a url",), '"not a url"'),
        ((URL, "--event", "call.ended", "--event", "call.started"),
         '"call.started" not an event type'),
        ((URL, "--secret", "whsec_short"), "p_secret: expected whsec_"),
    ],
    ids=["scheme", "credentials", "spaces", "event", "secret"],
)  # fmt: skip
def test_endpoint_add_refuses_bad_input_naming_it_and_adds_nothing(
    db_url: str, conn: Conn, args: tuple[str, ...], needle: str
) -> None:
    create_tenant(db_url, "acme")
    one_line_error(invoke(db_url, "endpoint", "add", "acme", *args), needle)
    assert count(conn, "webhook_endpoints") == 0


def test_another_tenants_endpoint_is_not_found(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "mine")
    create_tenant(db_url, "theirs")
    theirs = add_endpoint(db_url, "theirs", URL)["endpoint_id"]
    for command in (
        ("remove", "mine", theirs),
        ("deliveries", "mine", theirs),
        ("replay", "mine", theirs, "--since", "2020-01-01"),
        ("test", "mine", theirs, "--allow-private-webhooks"),
    ):
        one_line_error(invoke(db_url, "endpoint", *command), f"endpoint {theirs} not found")
    one_line_error(
        invoke(db_url, "endpoint", "remove", "mine", "nope"), 'endpoint "nope" not found'
    )
    one_line_error(invoke(db_url, "endpoint", "list", "nobody"), 'tenant "nobody" not found')
    assert count(conn, "webhook_endpoints") == 1


# --- deliveries, replay -------------------------------------------------------------------------


def test_deliveries_after_a_batch_starts_and_replay(db_url: str, api: SqlApi, conn: Conn) -> None:
    tenant_id = UUID(create_tenant(db_url, "acme"))
    endpoint = add_endpoint(db_url, "acme", URL, "--event", "batch.started")["endpoint_id"]
    batch = api.create_batch(tenant_id, phones(1))

    table = invoke(db_url, "endpoint", "deliveries", "acme", endpoint)
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["DELIVERY", "TYPE", "STATUS", "ATTEMPTS", "LAST", "CODE",
                              "CREATED", "(UTC)", "LAST", "ERROR"]  # fmt: skip
    cells = row.split()
    assert cells[1:5] == ["batch.started", "pending", "0", "-"] and cells[-1] == "-"
    (listed,) = json.loads(
        invoke(db_url, "endpoint", "deliveries", "acme", endpoint, "--json").stdout
    )
    assert (listed["type"], listed["batch_id"], listed["tries"]) == (
        "batch.started",
        str(batch),
        [],
    )
    assert str(listed["delivery_id"]) == cells[0]
    one_line_error(
        invoke(db_url, "endpoint", "deliveries", "acme", endpoint, "--limit", "0"),
        "p_limit: expected 1 to 1000",
    )
    listing = invoke(db_url, "endpoint", "list", "acme").stdout.splitlines()[1].split()
    assert listing[-4:] == ["1", "0", "0", "enabled"]

    # A failed delivery switched it off: list says why; replay sends again and turns it on.
    conn.execute(
        """update batchctl.webhook_deliveries set status = 'failed', attempts = 8,
                  last_status_code = 500, last_error = 'HTTP 500: oops'"""
    )
    conn.execute(
        """update batchctl.webhook_endpoints
              set disabled_at = now(), disabled_reason = 'delivery 1 failed every attempt'"""
    )
    state = invoke(db_url, "endpoint", "list", "acme").stdout.splitlines()[1]
    assert "disabled since" in state and "UTC: delivery 1 failed every attempt" in state
    failed = invoke(db_url, "endpoint", "deliveries", "acme", endpoint).stdout.splitlines()[1]
    assert "failed" in failed and "500" in failed and failed.endswith("HTTP 500: oops")

    none = invoke(db_url, "endpoint", "replay", "acme", endpoint, "--since", "2999-01-01T00:00Z")
    assert none.exit_code == 0, none.output
    assert none.stdout.startswith("0 deliveries queued again")
    replayed = invoke(db_url, "endpoint", "replay", "acme", endpoint, "--since", "2020-01-01")
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.strip() == f"1 deliveries queued again; endpoint {endpoint} is enabled"
    (again,) = json.loads(invoke(db_url, "endpoint", "list", "acme", "--json").stdout)
    assert (again["enabled"], again["pending"], again["failed"]) == (True, 1, 0)
    bad = invoke(db_url, "endpoint", "replay", "acme", endpoint, "--since", "yesterday")
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output
    assert invoke(db_url, "endpoint", "replay", "acme", endpoint).exit_code == 2  # no --since


# --- test ---------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver(SECRET) as receiver:
        yield receiver


def test_endpoint_test_sends_a_signed_ping(db_url: str, receiver: Receiver) -> None:
    tenant_id = create_tenant(db_url, "acme")
    endpoint = add_endpoint(db_url, "acme", receiver.url, "--secret", SECRET)
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    endpoint_id = endpoint["endpoint_id"]

    # 127.0.0.1 is loopback (and http is not https): refused, as the daemon refuses them,
    # unless allowed.
    refused = invoke(db_url, "endpoint", "test", "acme", endpoint_id)
    one_line_error(refused, "refused: scheme 'http' is not https", "--allow-private-webhooks")
    loopback = add_endpoint(db_url, "acme", f"https://127.0.0.1:{port}/hooks")["endpoint_id"]
    refused = invoke(db_url, "endpoint", "test", "acme", loopback)
    one_line_error(refused, "refused: ", "127.0.0.1", "loopback", "--allow-private-webhooks")
    assert receiver.snapshot() == []

    sent = invoke(db_url, "endpoint", "test", "acme", endpoint_id, "--allow-private-webhooks")
    assert sent.exit_code == 0, sent.output
    first, answer = sent.stdout.splitlines()
    assert first.startswith(f"{receiver.url} answered HTTP 200 in ")
    assert answer == 'answer: {"status": 200}'
    (ping,) = receiver.snapshot()  # (verified: a bad signature is not kept)
    assert ping.path == "/hooks" and ping.type == "ping"
    assert ping.data == {"endpoint_id": endpoint_id, "tenant_id": tenant_id}
    assert ping.message_id.startswith("msg_ping_")
    assert len(ping.message_id) == len("msg_ping_") + 32

    # Another ping: a new message id. A receiver answering 500: its answer shown, exit 1.
    failing = add_endpoint(db_url, "acme", receiver.url + "/fail", "--secret", SECRET)
    failed = invoke(db_url, "endpoint", "test", "acme", failing["endpoint_id"],
                    "--allow-private-webhooks")  # fmt: skip
    one_line_error(failed, "HTTP 500")
    assert "answer: no such luck" in failed.stdout
    assert len({r.message_id for r in receiver.snapshot()}) == 2 and receiver.unverified == 0


def test_endpoint_test_reports_an_unreachable_receiver(db_url: str) -> None:
    create_tenant(db_url, "acme")
    url = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    endpoint = add_endpoint(db_url, "acme", url)["endpoint_id"]
    failed = invoke(db_url, "endpoint", "test", "acme", endpoint, "--allow-private-webhooks")
    one_line_error(failed, f"error: {url}: ")
    assert failed.stdout == ""
