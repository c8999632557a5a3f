"""Helpers for tests that drive the database from several connections and threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row


def connect(db_url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(db_url, autocommit=True, row_factory=dict_row)


def run_threads(n: int, target: Callable[[int], Any], timeout: float = 60.0) -> list[Any]:
    """Runs target(i) in n threads started together; returns results, re-raising any error."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a thread hung (lock wait?)"
    if errors:
        raise errors[0]
    return results
