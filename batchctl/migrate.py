"""Schema upgrades: the yoyo migrations, then every sql/ file, all under one lock.

migrations/ holds the append-only history (tables, types, indexes, roles, policies), applied once
each by yoyo. sql/ holds CREATE OR REPLACE definitions (functions, triggers, views), re-applied in
file-name order on every upgrade, in one transaction: after an upgrade the database has exactly
the functions of this version, and a broken file changes nothing.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import psycopg
from psycopg import errors, sql
from yoyo import get_backend, read_migrations
from yoyo.exceptions import LockTimeout
from yoyo.migrations import MigrationList, default_migration_table

from batchctl import resources
from batchctl.conninfo import conninfo_params
from batchctl.database import connect, error_message

# pg_advisory_lock key serialising upgrades of one database: "batchctl" in ASCII.
ADVISORY_LOCK_KEY = 0x626174636863746C

# What `batchctl db upgrade` leaves on the schema: the digest of the migrations and sql/ it applied,
# so any command can tell in one query whether the database is this version's.
SCHEMA_COMMENT = "batchctl schema {digest}"
UPGRADE_HINT = "run `batchctl db upgrade`"

# Under our advisory lock a row in yoyo's lock table is a plain `yoyo apply` or a leftover of a
# killed upgrade: not worth a long wait either way (yoyo's error says how to break it).
YOYO_LOCK_TIMEOUT = 10.0


class UpgradeError(Exception):
    """An upgrade that could not run or failed; the message names the file or migration."""


@dataclass(frozen=True)
class UpgradeResult:
    migrations_applied: list[str]  # migration ids applied by this call, in order
    sql_applied: list[str]  # sql/ file names, all of them on every upgrade


class MigrationStatus(NamedTuple):
    id: str
    applied_at: datetime | None  # UTC; None when pending


def upgrade(
    url: str,
    migrations_dir: Path | None = None,
    sql_dir: Path | None = None,
    *,
    lock_timeout: float = 300.0,
) -> UpgradeResult:
    """Bring the database at ``url`` up to this version. Idempotent; concurrent calls (any
    process, any host) run one after another, and the later ones find nothing to migrate.

    ``lock_timeout``: seconds to wait for a concurrent upgrade (or a busy object) before failing.
    """
    migrations = _read_migrations(migrations_dir or resources.migrations_dir())
    sql_files = _sql_files(sql_dir or resources.sql_dir())

    # A dedicated session holds the lock for the whole upgrade; closing it releases the lock,
    # also when this process dies (unlike yoyo's lock row).
    with connect(url) as conn:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{lock_timeout}s",))
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        except errors.LockNotAvailable as exc:
            waited = f"{lock_timeout:g} s"
            raise UpgradeError(f"another upgrade held the lock for over {waited}") from exc
        applied = _apply_migrations(url, migrations)
        _apply_sql(conn, sql_files, schema_digest(migrations_dir, sql_dir))
    return UpgradeResult(applied, [f.name for f in sql_files])


def schema_digest(migrations_dir: Path | None = None, sql_dir: Path | None = None) -> str:
    """A digest of every migration and sql/ file of this version: names and contents."""
    digest = hashlib.sha256()
    for directory in (migrations_dir or resources.migrations_dir(), sql_dir or resources.sql_dir()):
        for path in sorted(directory.glob("*.sql")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def schema_lag(conn: psycopg.Connection[Any]) -> str | None:
    """Why the database is not ready for this batchctl, as a phrase ("is not set up for
    batchctl"), or None when its schema is this version's. One query, readable by any login."""
    row = conn.execute(
        "SELECT to_regnamespace('batchctl') IS NOT NULL,"
        " obj_description(to_regnamespace('batchctl'), 'pg_namespace')"
    ).fetchone()
    exists, comment = row if row else (False, None)
    if not exists:
        return "is not set up for batchctl"
    if comment != SCHEMA_COMMENT.format(digest=schema_digest()):
        return "was set up by another version of batchctl"
    return None


def status(url: str, migrations_dir: Path | None = None) -> list[MigrationStatus]:
    """Every migration of this version with when it was applied (None: pending), then any
    applied migration this version does not know (a newer batchctl upgraded the database).

    Read-only: unlike yoyo's backend it creates nothing in the database.
    """
    known = [m.id for m in _read_migrations(migrations_dir or resources.migrations_dir())]
    applied: dict[str, datetime] = {}
    with connect(url) as conn:
        table = conn.execute("SELECT to_regclass(%s)", (default_migration_table,)).fetchone()
        if table and table[0]:
            rows = conn.execute(
                sql.SQL("SELECT migration_id, applied_at_utc FROM {} ORDER BY 2").format(
                    sql.Identifier(default_migration_table)
                )
            )
            # yoyo stores naive UTC timestamps.
            applied = {mid: at.replace(tzinfo=UTC) for mid, at in rows}
    result = [MigrationStatus(mid, applied.get(mid)) for mid in known]
    result += [MigrationStatus(mid, at) for mid, at in applied.items() if mid not in known]
    return result


def yoyo_uri(url: str) -> str:
    """The yoyo URI for a libpq URL (URI or key=value).

    yoyo needs the ``postgresql+psycopg`` scheme for psycopg 3, and passes query arguments to
    psycopg.connect as they are; putting every parameter there (dbname included: yoyo does not
    unquote the path) keeps socket directories, ports and odd characters intact.
    """
    params: dict[str, Any] = {"application_name": "batchctl-migrate", **conninfo_params(url)}
    return "postgresql+psycopg:///?" + urlencode(params, quote_via=quote, safe="/")


def _read_migrations(directory: Path) -> MigrationList:
    if not directory.is_dir():
        raise UpgradeError(f"no migrations directory at {directory}")
    migrations = read_migrations(glob.escape(str(directory)))  # yoyo globs its argument
    if migrations.post_apply:
        # yoyo skips these hooks when nothing is pending; repeatable SQL belongs in sql/.
        names = ", ".join(m.id for m in migrations.post_apply)
        raise UpgradeError(f"post-apply migrations are not supported ({names}): use sql/")
    return migrations


def _sql_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UpgradeError(f"no sql directory at {directory}")
    return sorted(directory.glob("*.sql"), key=lambda p: p.name)


def _apply_migrations(url: str, migrations: MigrationList) -> list[str]:
    backend = get_backend(yoyo_uri(url))
    try:
        # yoyo's Python API does not lock by itself. Its lock keeps out a concurrent plain
        # `yoyo apply`; to_apply is computed inside it so it sees what the previous holder did.
        with backend.lock(timeout=YOYO_LOCK_TIMEOUT):
            known = {m.hash for m in migrations}
            if unknown := [h for h in backend.get_applied_migration_hashes() if h not in known]:
                # A newer batchctl upgraded this database: our older sql/ would replace its
                # functions with ones written for an older schema.
                raise UpgradeError(
                    f"the database has {len(unknown)} migration(s) this batchctl does not know: "
                    "it was upgraded by a newer version"
                )
            todo = backend.to_apply(migrations)
            for migration in todo:
                # apply_one, not apply_migrations_only: that one skips a broken migration silently.
                try:
                    backend.apply_one(migration)
                except psycopg.Error as exc:
                    raise UpgradeError(f"migration {migration.id}: {error_message(exc)}") from exc
            return [m.id for m in todo]
    except LockTimeout as exc:
        raise UpgradeError(str(exc)) from exc
    finally:
        # yoyo leaves its connection open; a lingering session would, among other things, make
        # CREATE DATABASE ... TEMPLATE of this database fail.
        backend.connection.close()


def _apply_sql(conn: psycopg.Connection[Any], files: Sequence[Path], digest: str) -> None:
    with conn.transaction():
        for path in files:
            text = path.read_text(encoding="utf-8")
            try:
                # No parameters: psycopg sends the text as one simple query, so a file may hold
                # many statements, and a "%" in a function body is just a character.
                conn.execute(text.encode())
            except psycopg.Error as exc:
                raise UpgradeError(f"{_where(path, text, exc)}: {error_message(exc)}") from exc
        marked = conn.execute("SELECT to_regnamespace('batchctl') IS NOT NULL").fetchone()
        if marked and marked[0]:  # (a test's own migrations may make no batchctl schema)
            conn.execute(
                sql.SQL("COMMENT ON SCHEMA batchctl IS {}").format(
                    sql.Literal(SCHEMA_COMMENT.format(digest=digest))
                )
            )


def _where(path: Path, text: str, exc: psycopg.Error) -> str:
    """``sql/030_x.sql line 12`` when the server gave a position (characters into the text)."""
    where = f"{path.parent.name}/{path.name}"
    position = exc.diag.statement_position
    if position and position.isdigit():
        line = text[: int(position)].count("\n") + 1
        where += f" line {line}"
    return where
