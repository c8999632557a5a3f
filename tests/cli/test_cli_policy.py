"""`batchctl policy` and `batchctl entry explain`, through click's runner: a tenant's policy shown
and replaced (the database's refusal as one error line naming the key), and an entry's reasons
for waiting, for people and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

from click.testing import CliRunner
from psycopg.conninfo import make_conninfo

from batchctl.cli import cli
from checks import Conn
from clitools import create_tenant, invoke, one_line_error
from tenant_logins import login_role

DEFAULTS = {
    "jurisdiction_rules": True,
    "frequency": {},
    "cooloff_s": {},
    "holidays": [],
    "require_consent": False,
}
LEADS = "phone,name\n+14155550100,Ada\n+14155550101,Bob\n"


def show(db_url: str, tenant: str) -> dict[str, Any]:
    result = invoke(db_url, "policy", "show", tenant)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def create_batch(db_url: str, tmp_path: Path, tenant: str, *args: str) -> str:
    leads = tmp_path / "leads.csv"
    leads.write_text(LEADS)
    result = invoke(db_url, "batch", "create", tenant, "--file", str(leads), "--json", *args)
    assert result.exit_code == 0, result.output
    batch_id: str = json.loads(result.stdout)["batch_id"]
    return batch_id


def entry_of(conn: Conn, batch_id: str) -> str:
    """The batch's first entry (Ada's)."""
    row = conn.execute(
        "select id from batchctl.batch_entries where batch_id = %s order by entry_index limit 1",
        (batch_id,),
    ).fetchone()
    assert row is not None
    return str(row["id"])


# --- policy ----------------------------------------------------------------------------------


def test_policy_show_prints_the_defaults_as_pretty_json(db_url: str) -> None:
    tenant_id = create_tenant(db_url, "acme")
    result = invoke(db_url, "policy", "show", "acme")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == DEFAULTS
    assert '\n  "frequency": {}' in result.stdout  # indented, a key a line
    assert show(db_url, tenant_id) == DEFAULTS


def test_policy_set_replaces_the_policy_and_prints_it(db_url: str, tmp_path: Path) -> None:
    tenant_id = create_tenant(db_url, "acme")
    policy = {"frequency": {"per_24h": 1}, "holidays": ["2026-12-26", "2026-12-25"]}
    result = invoke(db_url, "policy", "set", "acme", json.dumps(policy))
    assert result.exit_code == 0, result.output
    expected = {**DEFAULTS, **policy, "holidays": ["2026-12-25", "2026-12-26"]}
    assert json.loads(result.stdout) == expected
    assert show(db_url, "acme") == expected

    file = tmp_path / "policy.json"
    file.write_text('{"require_consent": true}\n')
    result = invoke(db_url, "policy", "set", tenant_id, "--file", str(file))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**DEFAULTS, "require_consent": True}  # all replaced
    assert show(db_url, tenant_id) == {**DEFAULTS, "require_consent": True}

    piped = CliRunner().invoke(
        cli, ["--database-url", db_url, "policy", "set", "acme", "--file", "-"], input="{}"
    )
    assert (piped.exit_code, json.loads(piped.stdout)) == (0, DEFAULTS)


def test_policy_set_errors_name_the_key_and_change_nothing(db_url: str, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    invoke(db_url, "policy", "set", "acme", '{"holidays": ["2026-12-25"]}')
    before = show(db_url, "acme")
    for policy, needles in (
        ('{"frequency": {"per_12h": 1}}', ("policy.frequency", '"per_12h"')),
        ('{"frequency": {"per_24h": 0}}', ("policy.frequency.per_24h",)),
        ('{"cooloff_s": {"declined": -5}}', ("policy.cooloff_s.declined",)),
        ('{"holidays": ["2026-02-30"]}', ("policy.holidays[0]",)),
        ('{"require_consent": "yes"}', ("policy.require_consent",)),
        ('{"consent": true}', ('unknown key "consent"',)),
    ):
        one_line_error(invoke(db_url, "policy", "set", "acme", policy), *needles)
    one_line_error(invoke(db_url, "policy", "set", "nobody", "{}"), 'tenant "nobody" not found')
    assert show(db_url, "acme") == before

    # Usage errors (exit 2): not JSON, not an object, both or neither of POLICY_JSON and --file.
    file = tmp_path / "policy.json"
    file.write_text("{}")
    for args in (
        ("acme", "{frequency: 1}"),
        ("acme", "[]"),
        ("acme", "NaN"),
        ("acme",),
        ("acme", "{}", "--file", str(file)),
        ("acme", "--file", str(tmp_path / "absent.json")),
    ):
        result = invoke(db_url, "policy", "set", *args)
        assert result.exit_code == 2, (args, result.output)
    file.write_bytes(b'{"holidays": ["\xff"]}')
    result = invoke(db_url, "policy", "set", "acme", "--file", str(file))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr
    assert show(db_url, "acme") == before


# --- entry explain ---------------------------------------------------------------------------


def test_entry_explain_for_people_and_as_json(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    batch_id = create_batch(db_url, tmp_path, "acme", "--no-autostart")
    entry = entry_of(conn, batch_id)

    pending = invoke(db_url, "entry", "explain", entry)
    assert pending.exit_code == 0, pending.output
    first, header, line = pending.stdout.splitlines()
    assert first == f"entry {entry}: not dialable now; no next time (it waits for more than time)"
    assert header.split() == ["RULE", "UNTIL", "(UTC)", "WHY"]
    assert line.split()[:2] == ["batch:pending", "-"]
    assert "the batch is pending, not running" in line

    assert invoke(db_url, "batch", "start", batch_id).exit_code == 0
    ready = invoke(db_url, "entry", "explain", entry)
    assert ready.stdout == f"entry {entry}: dialable now\n"
    doc = json.loads(invoke(db_url, "entry", "explain", entry, "--json").stdout)
    assert (doc["dialable_now"], doc["reasons"]) == (True, [])

    assert invoke(db_url, "dnc", "add", "acme", "+14155550100").exit_code == 0
    listed = invoke(db_url, "entry", "explain", entry).stdout.splitlines()
    assert [line.split()[0] for line in listed[2:]] == ["status:cancelled", "do_not_call"]
    assert "do-not-call list" in listed[3]
    doc = json.loads(invoke(db_url, "entry", "explain", entry, "--json").stdout)
    assert doc == {
        "dialable_now": False,
        "next_at": None,
        "reasons": [
            {"rule": "status:cancelled", "until": None},
            {"rule": "do_not_call", "until": None},
        ],
    }


def test_entry_explain_says_when_a_waiting_entry_may_be_dialled(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    batch_id = create_batch(db_url, tmp_path, "acme", "--start-at", "2030-01-01T09:00:00+01:00")
    entry = entry_of(conn, batch_id)
    result = invoke(db_url, "entry", "explain", entry)
    assert result.exit_code == 0, result.output
    first, _, line = result.stdout.splitlines()
    assert first == f"entry {entry}: not dialable now; next at 2030-01-01 08:00:00 UTC"
    assert line.split()[:3] == ["start_at", "2030-01-01", "08:00:00"]
    doc = json.loads(invoke(db_url, "entry", "explain", entry, "--json").stdout)
    assert doc["dialable_now"] is False
    assert doc["reasons"] == [{"rule": "start_at", "until": doc["next_at"]}]


def test_entry_explain_errors(db_url: str, conn: Conn, tmp_path: Path) -> None:
    unknown = "0e0e0e0e-0000-4000-8000-000000000000"
    one_line_error(invoke(db_url, "entry", "explain", unknown), f"entry {unknown} not found")
    assert invoke(db_url, "entry", "explain", "not-an-id").exit_code == 2

    # A login bound to a tenant sees its own entries only: another's is not found.
    tenant_id = create_tenant(db_url, "acme")
    create_tenant(db_url, "other")
    theirs = entry_of(conn, create_batch(db_url, tmp_path, "other"))
    ours = entry_of(conn, create_batch(db_url, tmp_path, "acme"))
    with login_role(conn, UUID(tenant_id)) as alice:
        url = make_conninfo(db_url, user=alice)
        one_line_error(invoke(url, "entry", "explain", theirs), f"entry {theirs} not found")
        mine = invoke(url, "entry", "explain", ours, "--json")
        assert mine.exit_code == 0, mine.output
        assert json.loads(mine.stdout)["dialable_now"] is True
        assert invoke(url, "policy", "show", "acme").exit_code == 0
        one_line_error(invoke(url, "policy", "show", "other"), 'tenant "other" not found')
