"""`batchctl dashboard` as a person starts it: it prints where to sign in, each printed link
signs in with its token's rights, and it stops cleanly on SIGTERM; a tenant token for a login
that is not bound to a tenant is refused before anything is served."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from clitools import batchctl_command, invoke, one_line_error
from sqlapi import SqlApi, phones
from tenant_logins import login_role
from webclient import WebClient

Conn = psycopg.Connection[dict[str, Any]]


@contextmanager
def serving(db_url: str, *args: str, env: dict[str, str] | None = None) -> Iterator[list[str]]:
    """The command on a free port; yields the lines it printed up to its sign-in links."""
    command = batchctl_command(db_url, "dashboard", "--port", "0", *args)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    try:
        lines = [process.stdout.readline()]
        assert lines[0].startswith("dashboard: http://127.0.0.1:"), lines
        expected = 1 + sum(a == "--tenant-token" for a in args)
        lines += [process.stdout.readline() for _ in range(expected)]
        yield lines
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def link_of(lines: list[str], name: str) -> str:
    found = [line.split(": ", 1)[1].strip() for line in lines if f"sign in as {name}:" in line]
    assert found, lines
    return found[0]


def test_each_printed_link_signs_in_with_its_tokens_rights(
    db_url: str, api: SqlApi, conn: Conn
) -> None:
    ours, theirs = api.create_tenant("ours"), api.create_tenant("theirs")
    our_batch = api.create_batch(ours, phones(1))
    their_batch = api.create_batch(theirs, phones(1))
    with login_role(conn, ours) as role, serving(db_url, "--tenant-token", role) as lines:
        base = lines[0].split()[-1].rstrip("/")
        for name, sees_theirs in (("operator", True), (role, False)):
            client = WebClient(base)
            link = link_of(lines, name)
            assert link.startswith(f"{base}/login?token=")
            assert client.get(link[len(base) :]).status == 303
            page = client.get("/").text
            assert str(our_batch)[:8] in page
            assert (str(their_batch)[:8] in page) is sees_theirs


def test_a_token_from_the_environment_is_not_printed(db_url: str, api: SqlApi) -> None:
    import os

    env = dict(os.environ, BATCHCTL_DASHBOARD_TOKEN="chosen-by-the-operator")
    with serving(db_url, env=env) as lines:
        assert link_of(lines, "operator") == "(the token given)"
        assert "chosen-by-the-operator" not in "".join(lines)
        client = WebClient(lines[0].split()[-1].rstrip("/"))
        assert client.sign_in("chosen-by-the-operator").status == 303


def test_a_tenant_token_needs_a_bound_tenant_login(db_url: str, conn: Conn) -> None:
    one_line_error(invoke(db_url, "dashboard", "--tenant-token", "nobody_at_all"),
                   "not a tenant login", "grant-login")  # fmt: skip
    with login_role(conn) as unbound:
        one_line_error(invoke(db_url, "dashboard", "--tenant-token", unbound), "grant-login")
    twice = invoke(db_url, "dashboard", "--tenant-token", "a=same", "--tenant-token", "a=other")
    assert twice.exit_code == 2 and "share a name" in twice.output
