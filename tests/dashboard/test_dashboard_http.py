"""The dashboard over HTTP against a real database: sign-in, CSRF, tenant-limited tokens acting
as their tenant login (the database deciding what they see), actions recorded in the audit with
who made them, keyset paging of entries, the report download and the live streams' cost."""

from __future__ import annotations

import html
import re
import threading
from typing import Any
from uuid import UUID

import psycopg

from batchctl.dashboard.app import DashboardSettings
from batchctl.dashboard.live import LISTEN_APPLICATION_NAME
from batchctl.dashboard.queries import ENTRIES_PAGE
from dashboard import Board, dashboard
from polling import wait_until
from sqlapi import SqlApi, phones
from tenant_logins import login_role
from webclient import WebClient

Conn = psycopg.Connection[dict[str, Any]]


def signed_in(board: Board, name: str = "operator") -> WebClient:
    client = WebClient(board.url)
    answer = client.sign_in(board.tokens[name])
    assert answer.status == 303 and answer.location == "/"
    return client


def batch_status(conn: Conn, batch: UUID) -> str:
    row = conn.execute("select status::text as s from batchctl.batches where id = %s", (batch,))
    return str(row.fetchone()["s"])  # type: ignore[index]


def test_every_page_needs_a_sign_in_and_a_wrong_token_is_refused(db_url: str, api: SqlApi) -> None:
    batch = api.create_batch(api.create_tenant(), phones(2))
    with dashboard(db_url) as board:
        anonymous = WebClient(board.url)
        for path in ("/", f"/batches/{batch}", f"/batches/{batch}/report.xlsx"):
            answer = anonymous.get(path)
            assert (answer.status, answer.location) == (303, "/login"), path
        assert anonymous.get(f"/batches/{batch}/live").status == 401
        assert anonymous.post(f"/batches/{batch}/pause", {"csrf": "x"}).status == 401
        refused = anonymous.sign_in("not-the-token")
        assert refused.status == 401 and "not accepted" in refused.text
        assert "batchctl_session" not in anonymous.cookies
        # A session cookie is signed: one made up, or altered, is no session.
        anonymous.cookies["batchctl_session"] = "b3BlcmF0b3I.abc.9999999999.forged"
        assert anonymous.get("/").status == 303
        client = signed_in(board)
        client.cookies["batchctl_session"] = client.cookies["batchctl_session"][:-2] + "xx"
        assert client.get("/").status == 303
        # The link `batchctl dashboard` prints signs in too.
        linked = WebClient(board.url)
        assert linked.get(f"/login?token={board.tokens['operator']}").status == 303
        page = linked.get("/")
        assert page.status == 200 and str(batch)[:8] in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_a_post_without_the_csrf_token_changes_nothing(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    batch = api.create_batch(api.create_tenant(), phones(2))
    with dashboard(db_url) as board:
        client = signed_in(board)
        assert client.post(f"/batches/{batch}/pause", {}).status == 403
        assert client.post(f"/batches/{batch}/pause", {"csrf": "guessed"}).status == 403
        token = client.csrf(f"/batches/{batch}")
        # The right token from another site's page: the browser names that origin.
        foreign = client.post(f"/batches/{batch}/pause", {"csrf": token},
                              headers={"Origin": "https://evil.example"})  # fmt: skip
        assert foreign.status == 403
        # A browser that hides where a request came from says "null": refused as well.
        hidden = client.post(f"/batches/{batch}/pause", {"csrf": token}, headers={"Origin": "null"})
        assert hidden.status == 403 and "another site" in hidden.text
        assert batch_status(conn, batch) == "running"
        done = client.post(f"/batches/{batch}/pause", {"csrf": token})
        assert done.status == 303 and done.location.startswith(f"/batches/{batch}?notice=")
        assert batch_status(conn, batch) == "paused"


def test_actions_are_recorded_in_the_audit_with_who_made_them(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    batch = api.create_batch(api.create_tenant(), phones(3))
    with dashboard(db_url) as board:
        client = signed_in(board)
        token = client.csrf(f"/batches/{batch}")
        assert client.post(f"/batches/{batch}/pause", {"csrf": token}).status == 303
        assert client.post(f"/batches/{batch}/resume", {"csrf": token}).status == 303
        # A cancel needs a reason: without one nothing happens.
        assert client.post(f"/batches/{batch}/cancel", {"csrf": token, "reason": " "}).status == 400
        assert batch_status(conn, batch) == "running"
        cancel = {"csrf": token, "reason": "wrong list <uploaded>"}
        assert client.post(f"/batches/{batch}/cancel", cancel).status == 303
        # Pausing a cancelled batch is refused by the database, and said on the page.
        refused = client.post(f"/batches/{batch}/pause", {"csrf": token})
        assert "error=" in refused.location
        page = client.get(refused.location)
        assert "only a running batch can be paused" in page.text
        assert "wrong list &lt;uploaded&gt;" in page.text
    audit = conn.execute(
        """select to_status, reason, actor from batchctl.events
            where object = 'batch' and object_id = %s and actor like '%%dashboard%%' order by id""",
        (batch,),
    ).fetchall()
    role = conn.execute("select current_user as u").fetchone()["u"]  # type: ignore[index]
    assert [(a["to_status"], a["actor"]) for a in audit] == [
        ("paused", f"{role} via dashboard: operator"),
        ("running", f"{role} via dashboard: operator"),
        ("cancelled", f"{role} via dashboard: operator"),
    ]
    assert audit[2]["reason"] == "cancel_batch: wrong list <uploaded>"
    status = batch_status(conn, batch)
    assert status == "cancelled"


def test_a_tenant_token_sees_and_touches_only_its_tenant(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    ours, theirs = api.create_tenant("ours"), api.create_tenant("theirs")
    our_batch = api.create_batch(ours, phones(2))
    their_batch = api.create_batch(theirs, phones(2))
    with login_role(conn, ours) as role, dashboard(db_url, [role]) as board:
        client = signed_in(board, role)
        listing = client.get("/").text
        assert str(our_batch)[:8] in listing and str(their_batch)[:8] not in listing
        assert "theirs" not in listing
        # Filtering by the other tenant's id shows nothing either: the database decides.
        assert str(their_batch)[:8] not in client.get(f"/?tenant={theirs}").text
        token = client.csrf("/")
        for path in (f"/batches/{their_batch}", f"/batches/{their_batch}/report.xlsx",
                     f"/batches/{their_batch}/live", f"/live?batch={their_batch}"):  # fmt: skip
            assert client.get(path).status == 404, path
        for action in ("pause", "cancel"):
            answer = client.post(f"/batches/{their_batch}/{action}", {"csrf": token, "reason": "x"})
            assert answer.status == 404
        assert batch_status(conn, their_batch) == "running"
        assert client.post(f"/batches/{our_batch}/pause", {"csrf": token}).status == 303
        report = client.get(f"/batches/{our_batch}/report.xlsx")
        assert report.status == 200 and report.body[:2] == b"PK"
        actor = conn.execute(
            """select actor from batchctl.events
                where object_id = %s and to_status = 'paused'""",
            (our_batch,),
        ).fetchone()
        assert actor == {"actor": f"{role} via dashboard: {role}"}
    assert batch_status(conn, their_batch) == "running"


def test_entries_are_paged_by_keyset_and_filtered(db_url: str, api: SqlApi) -> None:
    tenant = api.create_tenant(max_concurrent_calls=10)
    total = 2 * ENTRIES_PAGE + 7
    batch = api.create_batch(tenant, phones(total))
    calls = api.dispatch_all(limit=10)
    for call in calls[:4]:
        api.finish_call(call, "completed")
    with dashboard(db_url) as board:
        client = signed_in(board)
        seen: list[int] = []
        path = f"/batches/{batch}"
        pages = 0
        while path:
            text = client.get(path).text
            seen += entry_indexes(text)
            found = NEXT_PAGE.search(text)
            path = html.unescape(found.group(1)) if found else ""
            pages += 1
        assert pages == 3
        assert seen == list(range(total)), "every entry once, in lead order"
        completed = client.get(f"/batches/{batch}?status=completed").text
        assert completed.count("badge s-completed") == 4
        assert len(entry_indexes(completed)) == 4
        assert client.get(f"/batches/{batch}?status=nonsense").status == 400
        assert client.get(f"/batches/{batch}?after=x").status == 400


NEXT_PAGE = re.compile(r'<a href="([^"]*after=[^"]*)">Next')
ENTRY_INDEX = re.compile(r'<td class="r num muted">(\d+)</td>')


def entry_indexes(page: str) -> list[int]:
    return [int(i) for i in ENTRY_INDEX.findall(page)]


def test_a_lead_name_is_shown_as_text(db_url: str, api: SqlApi) -> None:
    batch = api.create_batch(
        api.create_tenant("<b>Bold</b> & co"),
        [{"to_phone": "+14155550100", "lead_name": '<script>alert("x")</script>'}],
    )
    with dashboard(db_url) as board:
        client = signed_in(board)
        page = client.get(f"/batches/{batch}").text
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page
        assert "<b>Bold</b>" not in client.get("/").text
        assert "+14155550100" not in page  # numbers are masked but for the last four digits


def test_fifty_open_pages_cost_one_read_per_batch_per_update(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    tenant = api.create_tenant(max_concurrent_calls=5)
    batch = api.create_batch(tenant, phones(10))
    calls = api.dispatch_all(limit=5)
    with dashboard(db_url, refresh_s=60) as board:
        client = signed_in(board)
        hub = board.running.hub
        changed: list[bool] = []

        def page() -> None:
            stream = WebClient(board.url, dict(client.cookies))
            # The first update comes at once; later ones carry only the regions that changed.
            events = stream.events(f"/batches/{batch}/live", 50, timeout=30, until=counters_moved)
            changed.append(counters_moved(events))

        threads = [threading.Thread(target=page) for _ in range(50)]
        for t in threads:
            t.start()
        wait_until(lambda: hub.watching(batch) == 50, timeout=30)
        wait_until(lambda: hub.idle(), timeout=30)
        reads = hub.reads
        connections = conn.execute(
            """select count(*) filter (where application_name = %s) as listen,
                      count(*) filter (where application_name = 'batchctl-dashboard') as pool
                 from pg_stat_activity where datname = current_database()""",
            (LISTEN_APPLICATION_NAME,),
        ).fetchone()
        assert connections is not None and connections["listen"] == 1
        assert connections["pool"] <= DashboardSettings.pool_size
        api.finish_call(calls[0], "completed")  # three transactions, three notifications at most
        for t in threads:
            t.join(30)
        assert changed == [True] * 50
        assert hub.reads - reads <= 4, "the batch is read once per update, not once per page"


def counters_moved(events: list[tuple[str, Any]]) -> bool:
    """Whether a later update than the first carries the counters region again."""
    return any(name == "update" and "batch-counters" in data for name, data in events[1:])
