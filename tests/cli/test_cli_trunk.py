"""`batchctl trunk`, through click's runner (and once as a subprocess): each command's happy
path, TENANT and TRUNK by id or name, one-line errors with exit status 1 (the database's words
for a bad setting), usage errors with 2, JSON that parses, and caller-ID files whose bad lines
are named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from checks import Conn
from clitools import count, create_tenant, invoke, one_line_error, run_batchctl
from pgtools import one_row

ST = ("--livekit-trunk-id", "ST_abc123")


def create_trunk(db_url: str, tenant: str, name: str, *args: str) -> str:
    result = invoke(db_url, "trunk", "create", tenant, name, *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def pool(conn: Conn) -> list[dict[str, Any]]:
    return conn.execute(
        "select phone, daily_cap, country from batchctl.caller_ids order by phone"
    ).fetchall()


# --- create, list, show -----------------------------------------------------------------------


def test_trunk_create_prints_the_id_and_list_shows_the_default(db_url: str, conn: Conn) -> None:
    tenant_id = create_tenant(db_url, "acme")
    main = create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    row = one_row(conn, "select * from batchctl.trunks where id = %s", (main,))
    assert (str(row["tenant_id"]), row["name"], row["livekit_trunk_id"], str(row["max_cps"])) == (
        tenant_id,
        "main",
        "ST_abc123",
        "5",
    )
    assert row["max_concurrent"] is None
    made = invoke(db_url, "trunk", "create", tenant_id, "slow", "--livekit-trunk-id", "ST_b",
                  "--max-cps", "0.5", "--max-concurrent", "4", "--json")  # fmt: skip
    assert made.exit_code == 0, made.output
    slow = json.loads(made.stdout)
    assert set(slow) == {"tenant_id", "trunk_id"} and slow["tenant_id"] == str(tenant_id)

    table = invoke(db_url, "trunk", "list", "acme")
    assert table.exit_code == 0, table.output
    header, first, second = table.stdout.splitlines()
    assert header.split() == ["NAME", "TRUNK", "LIVEKIT", "TRUNK", "MAX", "CPS", "MAX",
                              "CONCURRENT", "DEFAULT", "CALLER", "IDS"]  # fmt: skip
    assert first.split() == ["main", main, "ST_abc123", "5", "-", "yes", "0"]
    assert second.split() == ["slow", slow["trunk_id"], "ST_b", "0.5", "4", "no", "0"]
    listed = json.loads(invoke(db_url, "trunk", "list", "acme", "--json").stdout)
    assert [(t["name"], t["max_cps"], t["max_concurrent"], t["default"]) for t in listed] == [
        ("main", 5, None, True),
        ("slow", 0.5, 4, False),
    ]
    create_tenant(db_url, "empty")
    assert "no trunks yet" in invoke(db_url, "trunk", "list", "empty").stdout


def test_trunk_create_errors_name_what_is_wrong_and_create_nothing(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    create = ("trunk", "create", "acme")
    one_line_error(invoke(db_url, *create, "main", *ST, "--max-cps", "0"),
                   "max_cps: expected calls per second from 0.001 to 1000, got 0")  # fmt: skip
    one_line_error(invoke(db_url, *create, "main", *ST, "--max-cps", "1001"), "got 1001")
    one_line_error(
        invoke(db_url, *create, "main", *ST, "--max-cps", "5", "--max-concurrent", "0"),
        "max_concurrent: expected null (no cap of its own) or at least 1, got 0",
    )
    one_line_error(invoke(db_url, *create, "a/b", *ST, "--max-cps", "5"), 'name "a/b"')
    one_line_error(
        invoke(db_url, *create, "main", "--livekit-trunk-id", "ST a", "--max-cps", "5"),
        'livekit_trunk_id "ST a"',
    )
    one_line_error(
        invoke(db_url, "trunk", "create", "nobody", "main", *ST, "--max-cps", "5"),
        'tenant "nobody" not found',
    )
    assert count(conn, "trunks") == 0
    create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    one_line_error(
        invoke(db_url, *create, "main", *ST, "--max-cps", "2"),
        'trunk name "main": the tenant has a trunk of that name',
    )
    assert count(conn, "trunks") == 1
    for usage in (
        ("main2", *ST, "--max-cps", "fast"),
        ("main2", *ST, "--max-cps", "nan"),
        ("main2", "--max-cps", "5"),  # no --livekit-trunk-id
        ("main2", *ST),  # no --max-cps
    ):
        result = invoke(db_url, *create, *usage)
        assert result.exit_code == 2, (usage, result.output)
    assert count(conn, "trunks") == 1


def test_trunk_show_by_name_or_id_for_people_and_as_json(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    main = create_trunk(db_url, "acme", "main", *ST, "--max-cps", "2.5")
    added = invoke(db_url, "trunk", "add-numbers", "acme", "main", "+13055550100",
                   "+442079460000", "--daily-cap", "80")  # fmt: skip
    assert added.exit_code == 0, added.output
    shown = invoke(db_url, "trunk", "show", "acme", "main")
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    for expected in (
        f"trunk                 {main}",
        "livekit trunk         ST_abc123",
        "max cps               2.5",
        "max concurrent        - (no cap of its own)",
        "default               yes",
        "in flight             0",
        "started, last second  0",
        "started, last minute  0",
        "back-off              none",
    ):
        assert expected in text, (expected, text)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CALLER ID"))
    assert lines[header].split() == ["CALLER", "ID", "COUNTRY", "DAILY", "CAP", "TODAY"]
    caller_ids = lines[header + 1 :]
    assert [line.split() for line in caller_ids] == [
        ["+13055550100", "US", "80", "0"],
        ["+442079460000", "GB", "80", "0"],
    ]
    doc = json.loads(invoke(db_url, "trunk", "show", "acme", main, "--json").stdout)
    assert doc["trunk_id"] == main and doc["max_cps"] == 2.5 and doc["default"] is True
    assert [n["number"] for n in doc["caller_ids"]] == ["+13055550100", "+442079460000"]
    # The carrier refused calls (sql/034 writes this; here by hand).
    conn.execute(
        """update batchctl.trunks set refusals = 2,
                  backoff_until = '2099-01-02T03:04:05+00:00' where id = %s""",
        (main,),
    )
    backing_off = invoke(db_url, "trunk", "show", "acme", "main").stdout
    assert (
        "back-off              until 2099-01-02 03:04:05 UTC (2 capacity refusals in a row)"
        in backing_off
    )
    one_line_error(invoke(db_url, "trunk", "show", "acme", "backup"), 'trunk "backup" not found')
    # Another tenant's trunk is not found by its id either.
    create_tenant(db_url, "other")
    one_line_error(invoke(db_url, "trunk", "show", "other", main), f'trunk "{main}" not found')
    created = invoke(db_url, "trunk", "create", "other", "x", *ST, "--max-cps", "1")
    assert created.exit_code == 0
    empty = invoke(db_url, "trunk", "show", "other", "x")
    assert "no caller IDs" in empty.stdout


# --- update -----------------------------------------------------------------------------------


def test_trunk_update_changes_what_is_given(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    main = create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5", "--max-concurrent", "9")
    create_trunk(db_url, "acme", "backup", *ST, "--max-cps", "1")

    def trunk() -> dict[str, Any]:
        return one_row(conn, "select * from batchctl.trunks where id = %s", (main,))

    renamed = invoke(db_url, "trunk", "update", "acme", "main", "--name", "primary",
                     "--max-cps", "0.25")  # fmt: skip
    assert renamed.exit_code == 0, renamed.output
    assert "name                  primary" in renamed.stdout
    row = trunk()
    assert (row["name"], str(row["max_cps"]), row["max_concurrent"]) == ("primary", "0.25", 9)
    doc = json.loads(invoke(db_url, "trunk", "update", "acme", "primary", "--livekit-trunk-id",
                            "ST_new", "--max-concurrent", "3", "--json").stdout)  # fmt: skip
    assert (doc["livekit_trunk_id"], doc["max_concurrent"], doc["max_cps"]) == ("ST_new", 3, 0.25)
    cleared = invoke(db_url, "trunk", "update", "acme", main, "--no-max-concurrent")
    assert cleared.exit_code == 0, cleared.output
    assert trunk()["max_concurrent"] is None

    before = trunk()
    one_line_error(invoke(db_url, "trunk", "update", "acme", main, "--name", "backup"),
                   'trunk name "backup": the tenant has a trunk of that name')  # fmt: skip
    one_line_error(invoke(db_url, "trunk", "update", "acme", main, "--max-cps", "0"),
                   "max_cps: expected calls per second")  # fmt: skip
    one_line_error(invoke(db_url, "trunk", "update", "acme", main, "--max-concurrent", "0"),
                   "max_concurrent: expected null")  # fmt: skip
    one_line_error(invoke(db_url, "trunk", "update", "acme", "nope", "--name", "x"),
                   'trunk "nope" not found')  # fmt: skip
    for usage in (
        (),  # nothing to change
        ("--max-concurrent", "3", "--no-max-concurrent"),
        ("--max-cps", "lots"),
    ):
        result = invoke(db_url, "trunk", "update", "acme", main, *usage)
        assert result.exit_code == 2, (usage, result.output)
    assert trunk() == before


# --- add-numbers, remove-numbers --------------------------------------------------------------


def test_trunk_add_numbers_from_the_command_line(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    add = ("trunk", "add-numbers", "acme", "main")
    result = invoke(db_url, *add, "+13055550100", "+13055550100", "+442079460000")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2 caller IDs added (0 were in the pool already)"
    doc = json.loads(
        invoke(db_url, *add, "+13055550100", "+13055550101", "--daily-cap", "30", "--json").stdout
    )
    assert (doc["added"], doc["already_in_pool"]) == (1, 1)
    assert pool(conn) == [
        {"phone": "+13055550100", "daily_cap": None, "country": "US"},
        {"phone": "+13055550101", "daily_cap": 30, "country": "US"},
        {"phone": "+442079460000", "daily_cap": None, "country": "GB"},
    ]
    # National formats are refused, named by their argument; nothing is added.
    one_line_error(invoke(db_url, *add, "+13055550102", "(305) 555-0103"),
                   'NUMBER 2 ("(305) 555-0103") is not an E.164 number')  # fmt: skip
    one_line_error(invoke(db_url, *add, "+13055550102", "--daily-cap", "0"),
                   "p_daily_cap: expected null (no cap) or at least 1, got 0")  # fmt: skip
    assert count(conn, "caller_ids") == 3
    for usage in ((), ("+13055550102", "--csv", __file__)):
        assert invoke(db_url, *add, *usage).exit_code == 2, usage


def test_trunk_add_numbers_from_a_csv_file(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    add = ("trunk", "add-numbers", "acme", "main", "--csv")
    named = tmp_path / "named.csv"
    named.write_text("label,Phone\nsales,+13055550100\n\n,+13055550101\nagain,+13055550100\n")
    result = invoke(db_url, *add, str(named), "--daily-cap", "50")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2 caller IDs added (0 were in the pool already)"
    # No header: the first column is read from the first line.
    bare = tmp_path / "bare.csv"
    bare.write_text("+442079460000,London\r\n+4915112345678,Berlin\r\n", encoding="utf-8-sig")
    assert invoke(db_url, *add, str(bare)).exit_code == 0
    # A header naming no "number" column: its first column.
    other = tmp_path / "other.csv"
    other.write_text("caller\n+13055550102\n")
    assert invoke(db_url, *add, str(other)).exit_code == 0
    assert [(r["phone"], r["daily_cap"]) for r in pool(conn)] == [
        ("+13055550100", 50),
        ("+13055550101", 50),
        ("+13055550102", None),
        ("+442079460000", None),
        ("+4915112345678", None),
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text("number\n+13055550103\n0305 555 0104\n\n+13055550105\n+1 305 555 0106\n,x\n")
    result = invoke(db_url, *add, str(bad))
    error = one_line_error(result, "3 of 5 rows in bad.csv are invalid",
                           'line 3: "0305 555 0104" is not an E.164 number',
                           "no number was added")  # fmt: skip
    listed = result.stderr.strip().splitlines()[:-1]
    assert listed == [
        'bad.csv: line 3: "0305 555 0104" is not an E.164 number (+ country code and number, '
        "e.g. +14155550123)",
        'bad.csv: line 6: "+1 305 555 0106" is not an E.164 number (+ country code and number, '
        "e.g. +14155550123)",
        "bad.csv: line 7: no number",
    ], error
    assert count(conn, "caller_ids") == 5
    latin = tmp_path / "latin.csv"
    latin.write_bytes("número\n+13055550107\n".encode("latin-1"))
    one_line_error(invoke(db_url, *add, str(latin)), "not UTF-8 text")
    empty = tmp_path / "empty.csv"
    empty.write_text("number\n")
    one_line_error(invoke(db_url, *add, str(empty)), "no numbers in it")
    assert count(conn, "caller_ids") == 5


def test_trunk_remove_numbers(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme")
    create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    added = invoke(db_url, "trunk", "add-numbers", "acme", "main", "+13055550100", "+13055550101")
    assert added.exit_code == 0, added.output
    removed = invoke(db_url, "trunk", "remove-numbers", "acme", "main", "+13055550100",
                     "+13055550199")  # fmt: skip
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.strip() == "1 caller IDs removed (1 were not in the pool)"
    assert [r["phone"] for r in pool(conn)] == ["+13055550101"]
    doc = json.loads(
        invoke(db_url, "trunk", "remove-numbers", "acme", "main", "+13055550101", "--json").stdout
    )
    assert doc["removed"] == 1 and count(conn, "caller_ids") == 0
    assert invoke(db_url, "trunk", "remove-numbers", "acme", "main").exit_code == 2


def test_trunk_as_a_person_runs_it(db_url: str) -> None:
    """The command is registered and loads on its own (batchctl.cli's COMMANDS)."""
    create_tenant(db_url, "acme")
    done = run_batchctl(db_url, "trunk", "create", "acme", "main", *ST, "--max-cps", "5")
    assert done.returncode == 0, done.stderr
    listed = run_batchctl(db_url, "trunk", "list", "acme")
    assert listed.returncode == 0 and "main" in listed.stdout, listed.stderr
    failed = run_batchctl(db_url, "trunk", "show", "acme", "nope")
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        'error: trunk "nope" not found (batchctl trunk list TENANT shows them)'
    )


def test_batch_create_takes_the_trunk_by_name_and_names_the_tenants_trunks_when_wrong(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    create_trunk(db_url, "acme", "main", *ST, "--max-cps", "5")
    slow = create_trunk(db_url, "acme", "slow", "--livekit-trunk-id", "ST_b", "--max-cps", "1")
    leads = tmp_path / "leads.csv"
    leads.write_text("phone\n+14155550100\n")
    create = ("batch", "create", "acme", "--csv", str(leads), "--json")
    made = json.loads(invoke(db_url, *create, "--trunk", "slow").stdout)
    options = one_row(
        conn, "select options from batchctl.batches where id = %s", (made["batch_id"],)
    )
    assert options["options"]["trunk"] == slow  # kept as the id: a rename moves nothing
    one_line_error(
        invoke(db_url, *create, "--trunk", "fast"),
        'option trunk: the tenant has no trunk "fast"; its trunks: main, slow',
    )
    assert count(conn, "batches") == 1
