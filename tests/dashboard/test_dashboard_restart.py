"""The dashboard rides out a PostgreSQL restart: its LISTEN connection comes back (and catches
up with what changed meanwhile), its pool reconnects, and a page left open keeps its stream and
gets the next change without a reload. A server of its own: the session's shared one must not go
away under other tests."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

from batchctl.embedded import start_embedded
from batchctl.migrate import upgrade
from dashboard import dashboard
from invariants import assert_invariants
from pgtools import set_calling_hours_aside
from polling import wait_until
from sqlapi import SqlApi, phones
from webclient import WebClient


def test_an_open_page_keeps_its_live_updates_through_a_postgresql_restart(tmp_path: Path) -> None:
    url = start_embedded(tmp_path / "pgdata", dbname="batchctl", cleanup_mode="delete")
    try:
        upgrade(url)
        set_calling_hours_aside(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            api = SqlApi(conn)
            batch = api.create_batch(api.create_tenant("acme", 4), phones(4))
            calls = api.dispatch_all(limit=4)
        # No periodic re-read: only the notifications (and the catch-up after a reconnect)
        # bring updates, so the LISTEN connection is what is tested.
        with dashboard(url, refresh_s=3600) as board:
            client = WebClient(board.url)
            assert client.sign_in(board.tokens["operator"]).status == 303
            events: list[tuple[str, Any]] = []

            def completed_twice(seen: list[tuple[str, Any]]) -> bool:
                return any("2 / 4" in data.get("batch-progress", "") for _, data in seen)

            def page() -> None:
                events.extend(
                    client.events(f"/batches/{batch}/live", 100, 60, until=completed_twice)
                )

            reader = threading.Thread(target=page)
            reader.start()
            hub = board.running.hub
            wait_until(lambda: hub.watching(batch) == 1 and hub.listening.is_set(), 10)
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                SqlApi(conn).finish_call(calls[0], "completed")
            postmaster: psutil.Process = url.server.get_postmaster_info().process
            postmaster.send_signal(signal.SIGINT)  # fast shutdown: every connection is cut
            postmaster.wait(10)
            wait_until(lambda: not hub.listening.is_set(), 10, what="the LISTEN noticed")
            time.sleep(0.5)
            url.server.ensure_postgres_running()
            wait_until(lambda: hub.listening.is_set(), 30, what="LISTEN reconnected")
            with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
                SqlApi(conn).finish_call(calls[1], "completed")
                reader.join(60)
                assert completed_twice(events), events[-3:]
                assert client.get(f"/batches/{batch}").status == 200, "the pool reconnected"
                assert_invariants(conn)
    finally:
        url.cleanup()
