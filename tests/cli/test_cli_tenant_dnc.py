"""`batchctl tenant` and `batchctl dnc`, through click's runner and as a subprocess: happy paths,
one-line errors with exit status 1, usage errors with 2, JSON that parses."""

from __future__ import annotations

import json
from pathlib import Path

from checks import Conn
from clitools import UNREACHABLE, count, create_tenant, invoke, one_line_error, run_batchctl
from pgtools import one_row
from tenant_logins import login_role

# --- tenant ----------------------------------------------------------------------------------


def test_tenant_create_prints_the_id_and_list_shows_it(db_url: str, conn: Conn) -> None:
    tenant_id = create_tenant(db_url, "Acme Dental", "--max-concurrent", "7", "--timezone",
                              "Europe/Berlin")  # fmt: skip
    row = one_row(conn, "select * from batchctl.tenants where id = %s", (tenant_id,))
    assert (row["name"], row["max_concurrent_calls"], row["timezone"]) == (
        "Acme Dental",
        7,
        "Europe/Berlin",
    )
    table = invoke(db_url, "tenant", "list")
    assert table.exit_code == 0
    header, line = table.stdout.splitlines()
    assert header.split()[:3] == ["TENANT", "NAME", "MAX"]
    assert tenant_id in line and "Acme Dental" in line and "Europe/Berlin" in line

    doc = json.loads(invoke(db_url, "tenant", "list", "--json").stdout)
    assert doc[0]["tenant_id"] == tenant_id
    assert doc[0]["max_concurrent_calls"] == 7
    assert doc[0]["unfinished_batches"] == 0
    created = json.loads(invoke(db_url, "tenant", "create", "b", "--json").stdout)
    assert set(created) == {"tenant_id"}


def test_tenant_create_errors_come_from_the_database_and_change_nothing(
    db_url: str, conn: Conn
) -> None:
    one_line_error(
        invoke(db_url, "tenant", "create", "x", "--timezone", "Mars/Base"),
        'unknown time zone "Mars/Base"',
    )
    one_line_error(invoke(db_url, "tenant", "create", "x", "--max-concurrent", "0"), "at least 1")
    one_line_error(invoke(db_url, "tenant", "create", " "), "non-empty name")
    assert count(conn, "tenants") == 0
    usage = invoke(db_url, "tenant", "create", "x", "--max-concurrent", "many")
    assert usage.exit_code == 2


def test_tenant_grant_login_binds_a_role_that_logins_and_revoke_login_shows(
    db_url: str, conn: Conn
) -> None:
    tenant_id = create_tenant(db_url, "acme")
    other = create_tenant(db_url, "other")
    with login_role(conn) as role:
        granted = invoke(db_url, "tenant", "grant-login", role, "acme")
        assert granted.exit_code == 0, granted.output
        assert granted.stdout.strip() == f"{role} acts for tenant {tenant_id}"
        listed = json.loads(invoke(db_url, "tenant", "logins", "--json").stdout)
        assert [(r["role"], r["tenant_id"], r["tenant"]) for r in listed] == [
            (role, tenant_id, "acme")
        ]
        assert role in invoke(db_url, "tenant", "logins", "acme").stdout
        assert "no logins" in invoke(db_url, "tenant", "logins", "other").stdout
        one_line_error(invoke(db_url, "tenant", "grant-login", role, other), "is bound to tenant")
        one_line_error(invoke(db_url, "tenant", "grant-login", "nobody_here", "acme"), "not found")
        one_line_error(invoke(db_url, "tenant", "grant-login", role, "nope"), '"nope" not found')
        revoked = invoke(db_url, "tenant", "revoke-login", role)
        assert (revoked.exit_code, revoked.stdout.strip()) == (0, f"{role} acts for no tenant")
        one_line_error(invoke(db_url, "tenant", "revoke-login", role), "bound to no tenant")
        assert count(conn, "tenant_logins") == 0


# --- dnc -------------------------------------------------------------------------------------


def test_dnc_add_normalises_the_number_and_accepts_a_tenant_name(db_url: str, conn: Conn) -> None:
    tenant_id = create_tenant(db_url, "acme")
    result = invoke(db_url, "dnc", "add", "acme", "(415) 555-0100", "--default-region", "us")
    assert result.exit_code == 0, result.output
    assert "+14155550100" in result.stdout
    doc = json.loads(invoke(db_url, "dnc", "add", tenant_id, "+1 415 555 0101", "--json").stdout)
    assert doc == {"tenant_id": tenant_id, "phone": "+14155550101"}
    rows = conn.execute("select phone from batchctl.dnc_numbers order by phone").fetchall()
    assert [r["phone"] for r in rows] == ["+14155550100", "+14155550101"]


def test_dnc_add_errors(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    one_line_error(invoke(db_url, "dnc", "add", "acme", "(415) 555-0100"), "no country code")
    one_line_error(
        invoke(db_url, "dnc", "add", "nobody", "+14155550100"), 'tenant "nobody" not found'
    )
    unknown_id = "7d6c2d1e-0000-4000-8000-000000000000"
    one_line_error(invoke(db_url, "dnc", "add", unknown_id, "+14155550100"), unknown_id)
    bad_region = invoke(db_url, "dnc", "add", "acme", "4155550100", "--default-region", "XX")
    assert bad_region.exit_code == 2
    assert 'unknown region "XX"' in bad_region.stderr
    assert count(conn, "dnc_numbers") == 0


def test_two_tenants_of_one_name_must_be_named_by_id(db_url: str) -> None:
    first, second = create_tenant(db_url, "twin"), create_tenant(db_url, "twin")
    one_line_error(invoke(db_url, "dnc", "add", "twin", "+14155550100"), first, second)


def test_dnc_import_adds_every_number_or_none(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    good = tmp_path / "dnc.csv"
    good.write_text("phone,reason\n+14155550100,asked\n(415) 555-0101,\n+14155550100,again\n")
    result = invoke(db_url, "dnc", "import", "acme", str(good), "--default-region", "US")
    assert result.exit_code == 0, result.output
    assert count(conn, "dnc_numbers") == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n+14155550102\nnope\n+14155550103\n12\n")
    result = invoke(db_url, "dnc", "import", "acme", str(bad), "--json")
    one_line_error(result, "2 of 4 rows in bad.csv are invalid", "no number was added")
    assert "bad.csv: line 3, column phone:" in result.stderr
    assert "bad.csv: line 5, column phone:" in result.stderr
    assert count(conn, "dnc_numbers") == 2

    no_phone = tmp_path / "no_phone.csv"
    no_phone.write_text("number\n+14155550102\n")
    one_line_error(invoke(db_url, "dnc", "import", "acme", str(no_phone)), 'no "phone" column')
    missing = invoke(db_url, "dnc", "import", "acme", str(tmp_path / "absent.csv"))
    assert missing.exit_code == 2


# --- as a subprocess -------------------------------------------------------------------------


def test_subprocess_tenant_create_and_list_json(db_url: str) -> None:
    created = run_batchctl(db_url, "tenant", "create", "shell", "--timezone", "America/Chicago")
    assert created.returncode == 0, created.stderr
    listed = run_batchctl(db_url, "tenant", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["tenant_id"] == created.stdout.strip()


def test_an_unreachable_database_is_one_clear_line_and_exit_1() -> None:
    result = run_batchctl(UNREACHABLE, "tenant", "list")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nonexistent-batchctl-socket-dir" in line
