"""batchctl.migrate and ``batchctl db``: upgrades are idempotent, serialised, atomic for sql/,
and leave no session behind. Runs against the repo's own migrations/ and sql/ (plus a tiny
throwaway pair where a test needs a broken file)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from yoyo import read_migrations

from batchctl import resources
from batchctl.cli import cli
from batchctl.conninfo import conninfo_params
from batchctl.migrate import ADVISORY_LOCK_KEY, UpgradeError, status, upgrade
from pgtools import wait_until_unused
from polling import wait_until
from schema_snapshot import schema_snapshot

REPO = Path(__file__).resolve().parents[2]


def migration_ids() -> list[str]:
    return [m.id for m in read_migrations(str(resources.migrations_dir()))]


def sql_file_names() -> list[str]:
    return sorted(p.name for p in resources.sql_dir().glob("*.sql"))


def snapshot(url: str) -> dict[str, dict[str, tuple[Any, ...]]]:
    with psycopg.connect(url) as c:
        return schema_snapshot(c)


def dbname(url: str) -> str:
    return conninfo_params(url)["dbname"]


def test_second_upgrade_applies_nothing_and_changes_nothing(
    empty_db_url: str, db_url: str, admin_conn: psycopg.Connection[Any]
) -> None:
    first = upgrade(empty_db_url)
    assert first.migrations_applied == migration_ids()
    assert first.sql_applied == sql_file_names()
    before = snapshot(empty_db_url)
    assert before["relations"], "the migrations created no table"

    second = upgrade(empty_db_url)
    assert second.migrations_applied == []
    assert second.sql_applied == sql_file_names()  # re-applied every time
    assert snapshot(empty_db_url) == before
    # The template the other tests clone is this very schema.
    assert snapshot(db_url) == before
    # yoyo's sessions are closed too (a lingering one would break cloning a template).
    wait_until_unused(admin_conn, dbname(empty_db_url))


UPGRADE_SCRIPT = (
    "import json, sys; from batchctl.migrate import upgrade; "
    "print(json.dumps(upgrade(sys.argv[1]).migrations_applied))"
)


def test_concurrent_upgrades_run_one_after_the_other(empty_db_url: str, db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as holder:
        # Hold the upgrade lock so that both processes are surely waiting at the same time.
        holder.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", UPGRADE_SCRIPT, empty_db_url],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]

        def both_waiting() -> bool:
            for p in procs:
                if p.poll() is not None:
                    raise AssertionError(f"upgrade exited early: {p.communicate()}")
            waiting = holder.execute(
                """SELECT count(*) FROM pg_locks
                    WHERE locktype = 'advisory' AND NOT granted
                      AND database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())"""
            ).fetchone()
            return waiting is not None and waiting[0] == 2

        wait_until(both_waiting, timeout=30, what="both upgrades to wait for the lock")
    # Closing the holder's session released the lock.
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    applied = sorted((json.loads(out) for out, _ in outputs), key=len)
    assert applied == [[], migration_ids()]
    assert [s.id for s in status(empty_db_url)] == migration_ids()
    assert snapshot(empty_db_url) == snapshot(db_url)


def test_db_status_lists_migrations_as_applied(db_url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--database-url", db_url, "db", "status"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert list(rows) == migration_ids()
    assert not [line for line in rows.values() if "pending" in line]

    result = runner.invoke(cli, ["--database-url", db_url, "db", "status", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [m["id"] for m in doc] == migration_ids()
    assert all(m["applied_at"] for m in doc)


def test_db_upgrade_of_a_migrated_database_is_up_to_date(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", db_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("already up to date")


def test_db_status_of_an_empty_database_shows_pending(empty_db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", empty_db_url, "db", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"id": m, "applied_at": None} for m in migration_ids()]


def test_unreachable_database_is_one_line_error_exit_1(tmp_path: Path) -> None:
    url = f"postgresql://nobody@/nodb?host={tmp_path}"  # no server listens there
    proc = subprocess.run(
        [sys.executable, "-m", "batchctl", "--database-url", url, "db", "status"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sql_files_apply_all_or_nothing(tmp_path: Path, empty_db_url: str) -> None:
    migrations, sql_dir = tmp_path / "migrations", tmp_path / "sql"
    write(migrations / "0001_t.sql", "CREATE TABLE t (x int);")
    write(
        sql_dir / "010_f.sql",
        "CREATE OR REPLACE FUNCTION f() RETURNS int\n"
        "LANGUAGE sql AS $$ SELECT 1 $$;\nCREATE OR REPLACE VIEW v AS SELECT '100%' AS p;\n",
    )
    bad = write(sql_dir / "020_g.sql", "-- comment\n\nCREATE FUNCTION g( RETURNS;\n")

    with pytest.raises(UpgradeError, match=r"sql/020_g\.sql line 3: syntax error"):
        upgrade(empty_db_url, migrations, sql_dir)
    with psycopg.connect(empty_db_url) as c:
        assert c.execute("SELECT to_regclass('t') IS NOT NULL").fetchone() == (True,)
        # 010_f.sql ran before the broken file, in the same transaction: rolled back.
        assert c.execute("SELECT to_regprocedure('f()') IS NULL").fetchone() == (True,)

    bad.write_text("CREATE OR REPLACE FUNCTION g() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;")
    result = upgrade(empty_db_url, migrations, sql_dir)
    assert result.migrations_applied == []
    assert result.sql_applied == ["010_f.sql", "020_g.sql"]
    with psycopg.connect(empty_db_url) as c:
        assert c.execute("SELECT f() + g(), p FROM v").fetchone() == (3, "100%")


def test_missing_directories_are_errors(tmp_path: Path, empty_db_url: str) -> None:
    with pytest.raises(UpgradeError, match="no migrations directory"):
        upgrade(empty_db_url, tmp_path / "nope", tmp_path)
    with pytest.raises(UpgradeError, match="no sql directory"):
        upgrade(empty_db_url, tmp_path, tmp_path / "nope")


def test_upgrade_refuses_a_database_from_a_newer_version(tmp_path: Path, empty_db_url: str) -> None:
    migrations, sql_dir = tmp_path / "migrations", tmp_path / "sql"
    write(migrations / "0001_a.sql", "CREATE TABLE a (x int);")
    newer = write(migrations / "0002_b.sql", "CREATE TABLE b (x int);")
    sql_dir.mkdir()
    assert upgrade(empty_db_url, migrations, sql_dir).migrations_applied == ["0001_a", "0002_b"]
    newer.unlink()  # this "older version" does not know 0002_b
    with pytest.raises(UpgradeError, match="upgraded by a newer version"):
        upgrade(empty_db_url, migrations, sql_dir)
