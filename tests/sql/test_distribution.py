"""The schema is distributable by tenant (SPEC §2, docs/scale-out.md): the rules Citus enforces
when a table is distributed by tenant_id, checked on the migrated schema from pg_catalog and on
the ON CONFLICT clauses of sql/. No Citus here: this shows the schema would be accepted and its
upserts stay on one shard, not that a cluster runs it.

The rules (Citus' "Creating and Modifying Distributed Objects (DDL)", and its error messages):

- every table but the reference tables has a NOT NULL tenant_id of one type (co-location needs
  distribution columns of the same type);
- a primary key, unique constraint, unique index or exclusion constraint (with =) includes the
  distribution column, so it can be checked inside one shard;
- a foreign key between distributed tables includes tenant_id on both sides, in the same
  position, so it joins co-located shards; a reference table references no distributed table;
  a foreign key through tenant_id neither sets it null or default on delete nor cascades updates;
- an upsert names (or, without a target, only has) unique keys that include tenant_id.

Each check returns one message per broken rule, naming the constraint, so a failure says what to
change. The control test runs them on the schema before migration 0005, which broke them.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from batchctl import resources
from batchctl.migrate import upgrade

SCHEMA = "batchctl"
DISTRIBUTION_COLUMN = "tenant_id"
# Small, read by every claim, replicated to every node: create_reference_table().
# Global reference data (docs/compliance.md): jurisdiction_rules, phone_prefixes.
REFERENCE_TABLES = frozenset({"tenants", "tenant_logins", "jurisdiction_rules", "phone_prefixes"})

Conn = psycopg.Connection[Any]


def _rows(conn: Conn, query: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query.encode()).fetchall()


def tables(conn: Conn) -> list[str]:
    return [
        r["name"]
        for r in _rows(
            conn,
            f"""select c.relname as name from pg_class c
                 where c.relnamespace = '{SCHEMA}'::regnamespace and c.relkind in ('r', 'p')
                 order by 1""",
        )
    ]


def column_violations(conn: Conn) -> list[str]:
    """Every distributed table has a NOT NULL tenant_id, all of one type."""
    found = []
    columns = {
        r["table"]: r
        for r in _rows(
            conn,
            f"""select c.relname as table, a.attnotnull as not_null,
                       format_type(a.atttypid, a.atttypmod) as type
                  from pg_class c
                  join pg_attribute a on a.attrelid = c.oid
                 where c.relnamespace = '{SCHEMA}'::regnamespace and c.relkind in ('r', 'p')
                   and a.attname = '{DISTRIBUTION_COLUMN}' and not a.attisdropped""",
        )
    }
    types = {r["type"] for t, r in columns.items() if t not in REFERENCE_TABLES}
    for table in tables(conn):
        if table in REFERENCE_TABLES:
            continue
        column = columns.get(table)
        if column is None:
            found.append(f"{table}: no {DISTRIBUTION_COLUMN} column (cannot be distributed)")
        elif not column["not_null"]:
            found.append(f"{table}.{DISTRIBUTION_COLUMN} may be NULL (Citus refuses NULL keys)")
        elif len(types) > 1:
            found.append(
                f"{table}.{DISTRIBUTION_COLUMN} is {column['type']}, but the distribution columns "
                f"have several types {sorted(types)}: tables cannot be co-located"
            )
    return found


@dataclass(frozen=True)
class UniqueKey:
    table: str
    name: str  # the constraint's name, else the index's
    kind: str  # PRIMARY KEY, UNIQUE, EXCLUDE, unique index
    columns: tuple[str, ...]  # key columns (not INCLUDE); an expression's text
    operators: tuple[str, ...]  # EXCLUDE: the operator of each column
    partial: bool

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({', '.join(self.columns)})"


def unique_keys(conn: Conn) -> list[UniqueKey]:
    """Every unique index (primary keys and unique constraints included) and exclusion
    constraint of the schema's tables."""
    rows = _rows(
        conn,
        f"""select c.relname as table, coalesce(k.conname, ic.relname) as name,
                   case k.contype when 'p' then 'PRIMARY KEY' when 'u' then 'UNIQUE'
                                  when 'x' then 'EXCLUDE' else 'unique index' end as kind,
                   array(select pg_get_indexdef(i.indexrelid, n, true)
                           from generate_series(1, i.indnkeyatts) n order by n) as columns,
                   array(select o.oprname::text
                           from unnest(k.conexclop) with ordinality x (op, n)
                           join pg_operator o on o.oid = x.op order by x.n) as operators,
                   i.indpred is not null as partial
              from pg_index i
              join pg_class c on c.oid = i.indrelid
              join pg_class ic on ic.oid = i.indexrelid
              left join pg_constraint k
                     on k.conindid = i.indexrelid and k.contype in ('p', 'u', 'x')
             where c.relnamespace = '{SCHEMA}'::regnamespace
               and (i.indisunique or k.contype = 'x')
             order by 1, 2""",
    )
    return [
        UniqueKey(
            r["table"],
            r["name"],
            r["kind"],
            tuple(r["columns"]),
            tuple(r["operators"]),
            r["partial"],
        )
        for r in rows
    ]


def unique_key_violations(conn: Conn) -> list[str]:
    """Every unique key of a distributed table includes tenant_id (EXCLUDE: with =)."""
    found = []
    for key in unique_keys(conn):
        if key.table in REFERENCE_TABLES:
            continue
        if DISTRIBUTION_COLUMN not in key.columns:
            found.append(
                f"{key.table}: {key.describe()} does not include {DISTRIBUTION_COLUMN} "
                "(Citus checks a unique key inside one shard only)"
            )
        elif key.kind == "EXCLUDE":
            operator = key.operators[key.columns.index(DISTRIBUTION_COLUMN)]
            if operator != "=":
                found.append(
                    f"{key.table}: {key.describe()} excludes on {DISTRIBUTION_COLUMN} "
                    f"WITH {operator}, not WITH ="
                )
    return found


# pg_constraint.confupdtype / confdeltype
_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def foreign_key_violations(conn: Conn) -> list[str]:
    """Foreign keys join co-located shards or point at a reference table, never back from one."""
    rows = _rows(
        conn,
        f"""select k.conname as name, c.relname as table, fc.relname as target,
                   fn.nspname as target_schema, pg_get_constraintdef(k.oid) as definition,
                   array(select a.attname::text from unnest(k.conkey) with ordinality x (att, n)
                           join pg_attribute a on a.attrelid = k.conrelid and a.attnum = x.att
                          order by x.n) as columns,
                   array(select a.attname::text from unnest(k.confkey) with ordinality x (att, n)
                           join pg_attribute a on a.attrelid = k.confrelid and a.attnum = x.att
                          order by x.n) as target_columns,
                   k.confupdtype as on_update, k.confdeltype as on_delete
              from pg_constraint k
              join pg_class c on c.oid = k.conrelid
              join pg_class fc on fc.oid = k.confrelid
              join pg_namespace fn on fn.oid = fc.relnamespace
             where k.contype = 'f' and c.relnamespace = '{SCHEMA}'::regnamespace
             order by 2, 1""",
    )
    found = []
    for fk in rows:
        where = f"{fk['table']}: {fk['name']} {fk['definition']}"
        source_reference = fk["table"] in REFERENCE_TABLES
        target_reference = fk["target"] in REFERENCE_TABLES
        if fk["target_schema"] != SCHEMA:
            found.append(
                f"{where}: references a table outside {SCHEMA}, neither distributed "
                "nor a reference table"
            )
            continue
        if source_reference:
            if not target_reference:
                found.append(f"{where}: a reference table may not reference a distributed table")
            continue
        columns, target_columns = fk["columns"], fk["target_columns"]
        if not target_reference:
            if DISTRIBUTION_COLUMN not in columns:
                found.append(
                    f"{where}: does not include {DISTRIBUTION_COLUMN}, so it would "
                    "join rows on different shards"
                )
                continue
            position = columns.index(DISTRIBUTION_COLUMN)
            if target_columns[position] != DISTRIBUTION_COLUMN:
                found.append(
                    f"{where}: {DISTRIBUTION_COLUMN} (position {position + 1}) references "
                    f"{fk['target']}.{target_columns[position]}, not "
                    f"{fk['target']}.{DISTRIBUTION_COLUMN}"
                )
                continue
        if DISTRIBUTION_COLUMN in columns:
            if fk["on_delete"] in ("n", "d"):
                found.append(
                    f"{where}: ON DELETE {_ACTIONS[fk['on_delete']]} would change "
                    f"{DISTRIBUTION_COLUMN}"
                )
            if fk["on_update"] not in ("a", "r"):
                found.append(
                    f"{where}: ON UPDATE {_ACTIONS[fk['on_update']]} would change "
                    f"{DISTRIBUTION_COLUMN}"
                )
    return found


# INSERT INTO <table> ... ON CONFLICT [(<columns>) | ON CONSTRAINT <name>] [WHERE ...] DO ...
_INSERT = re.compile(r"\bINSERT\s+INTO\s+([\w.\"]+)", re.IGNORECASE)
_ON_CONFLICT = re.compile(
    r"\bON\s+CONFLICT\s*(?:\((?P<columns>[^)]*)\)|ON\s+CONSTRAINT\s+(?P<constraint>\w+))?"
    r"(?P<where>\s+WHERE\b.*?)?\s*\bDO\s+(?P<action>NOTHING|UPDATE)\b",
    re.IGNORECASE | re.DOTALL,
)


def strip_comments(text: str) -> str:
    """sql/ text without -- comments (no string literal in sql/ holds "--")."""
    return re.sub(r"--[^\n]*", "", text)


def on_conflict_violations(conn: Conn, files: dict[str, str]) -> list[str]:
    """Every upsert's arbiter is a unique key that includes tenant_id, and matches one."""
    keys: dict[str, list[UniqueKey]] = {}
    for key in unique_keys(conn):
        keys.setdefault(key.table, []).append(key)
    found = []
    for file, text in sorted(files.items()):
        text = strip_comments(text)
        for match in _ON_CONFLICT.finditer(text):
            line = text[: match.start()].count("\n") + 1
            inserts = list(_INSERT.finditer(text, 0, match.start()))
            if not inserts:
                found.append(f"{file} line {line}: ON CONFLICT without an INSERT INTO before it")
                continue
            table = inserts[-1].group(1).replace('"', "").removeprefix(f"{SCHEMA}.")
            where = (
                f"{file} line {line}: INSERT INTO {table} ... {' '.join(match.group(0).split())}"
            )
            if table in REFERENCE_TABLES:
                continue
            table_keys = keys.get(table)
            if table_keys is None:
                found.append(f"{where}: no table {SCHEMA}.{table} with a unique key")
                continue
            if match.group("columns") is not None:
                target = {c.strip().strip('"') for c in match.group("columns").split(",")}
                if DISTRIBUTION_COLUMN not in target:
                    found.append(
                        f"{where}: the conflict target does not include {DISTRIBUTION_COLUMN}"
                    )
                arbiters = [
                    k
                    for k in table_keys
                    if set(k.columns) == target
                    and k.kind != "EXCLUDE"
                    and (not k.partial or match.group("where"))
                ]
                if not arbiters:
                    found.append(
                        f"{where}: no unique key of {table} has exactly these columns "
                        f"(it has {', '.join(k.describe() for k in table_keys)})"
                    )
            elif match.group("constraint") is not None:
                named = [k for k in table_keys if k.name == match.group("constraint")]
                if not named:
                    found.append(f"{where}: {table} has no such constraint")
                elif DISTRIBUTION_COLUMN not in named[0].columns:
                    found.append(
                        f"{where}: {named[0].describe()} does not include {DISTRIBUTION_COLUMN}"
                    )
            else:
                without = [k for k in table_keys if DISTRIBUTION_COLUMN not in k.columns]
                if without:
                    found.append(
                        f"{where}: without a target, it conflicts on "
                        f"{', '.join(k.describe() for k in without)}, which lack "
                        f"{DISTRIBUTION_COLUMN}"
                    )
    return found


def sql_files() -> dict[str, str]:
    return {
        f"sql/{p.name}": p.read_text(encoding="utf-8") for p in resources.sql_dir().glob("*.sql")
    }


def schema_violations(conn: Conn) -> dict[str, list[str]]:
    return {
        "tenant_id column": column_violations(conn),
        "unique keys include tenant_id": unique_key_violations(conn),
        "foreign keys are co-located": foreign_key_violations(conn),
    }


def report(violations: list[str]) -> str:
    return "\n  " + "\n  ".join(violations)


def test_every_distributed_table_has_a_not_null_tenant_id(conn: Conn) -> None:
    assert tables(conn), "no table in the schema"
    found = column_violations(conn)
    assert not found, report(found)


def test_every_unique_key_includes_tenant_id(conn: Conn) -> None:
    assert any(k.kind == "PRIMARY KEY" for k in unique_keys(conn))
    found = unique_key_violations(conn)
    assert not found, report(found)


def test_foreign_keys_join_co_located_rows(conn: Conn) -> None:
    found = foreign_key_violations(conn)
    assert not found, report(found)


def test_every_upsert_conflicts_on_a_key_with_tenant_id(conn: Conn) -> None:
    files = sql_files()
    assert any(_ON_CONFLICT.search(strip_comments(t)) for t in files.values())
    found = on_conflict_violations(conn, files)
    assert not found, report(found)


def test_reference_tables_exist_and_are_keyed_alone(conn: Conn) -> None:
    """The reference tables the layout names exist; each is keyed by its own id (it is copied
    whole to every node, so any key is checked everywhere)."""
    assert set(tables(conn)) >= REFERENCE_TABLES
    keys = {k.table: k for k in unique_keys(conn) if k.kind == "PRIMARY KEY"}
    assert {t: keys[t].columns for t in REFERENCE_TABLES} == {
        "tenants": ("id",),
        "tenant_logins": ("role_name",),
        "jurisdiction_rules": ("jurisdiction",),
        "phone_prefixes": ("prefix",),
    }


# The statement sql/055_hangups.sql had before migration 0005: its target lacks tenant_id.
OLD_UPSERT = """
    INSERT INTO batchctl.hangups (room_name, tenant_id, batch_id, call_log_id, reason)
    SELECT c.room_name, c.tenant_id, c.batch_id, c.id, p_reason
      FROM batchctl.call_logs c WHERE c.id = ANY (p_call_ids)
    ON CONFLICT (room_name) DO NOTHING  -- one row per room
"""


def test_the_checks_catch_the_schema_before_migration_0005(
    tmp_path: Path, empty_db_url: str, conn: Conn
) -> None:
    """Control: the schema of migrations 0001-0004 breaks the rules, and the checks name every
    key that 0005 changed; so their passing above means something."""
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for path in sorted(resources.migrations_dir().glob("000[1-4]_*.sql")):
        shutil.copy(path, migrations)
    (tmp_path / "sql").mkdir()
    upgrade(empty_db_url, migrations, tmp_path / "sql")
    with psycopg.connect(empty_db_url, autocommit=True) as old:
        found = schema_violations(old)
        upsert = on_conflict_violations(old, {"sql/055_hangups.sql": OLD_UPSERT})
    assert not found["tenant_id column"], report(found["tenant_id column"])
    assert not found["foreign keys are co-located"], report(found["foreign keys are co-located"])
    keys = found["unique keys include tenant_id"]
    changed_by_0005 = [
        "batches_pkey",
        "batch_entries_pkey",
        "batch_entries_batch_id_to_phone_key",
        "call_logs_pkey",
        "call_logs_entry_id_attempt_key",
        "events_pkey",
        "reports_pkey",
        "hangups_pkey",
    ]
    assert len(keys) == len(changed_by_0005), report(keys)
    for name in changed_by_0005:
        assert any(f" {name} (" in m for m in keys), (name, report(keys))
    assert len(upsert) == 1 and "does not include tenant_id" in upsert[0], report(upsert)
    # On today's schema the old target matches no key at all (and still lacks tenant_id).
    today = on_conflict_violations(conn, {"sql/055_hangups.sql": OLD_UPSERT})
    assert len(today) == 2 and "no unique key of hangups" in today[1], report(today)


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        (
            "INSERT INTO batchctl.dnc_numbers (tenant_id, phone) VALUES ($1, $2) "
            "ON CONFLICT ON CONSTRAINT dnc_numbers_pkey DO NOTHING",
            None,
        ),
        (
            "INSERT INTO reports (batch_id, tenant_id, status) VALUES ($1, $2, 'pending') "
            "ON CONFLICT (tenant_id, batch_id) DO UPDATE SET status = excluded.status",
            None,
        ),
        (
            "INSERT INTO batch_entries (batch_id, tenant_id, entry_index, to_phone) "
            "VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING",
            None,
        ),
        (
            "INSERT INTO batch_entries (batch_id, tenant_id, entry_index, to_phone) "
            "VALUES ($1, $2, 0, $3) ON CONFLICT (batch_id, to_phone) DO NOTHING",
            "does not include tenant_id",
        ),
        (
            "INSERT INTO events (tenant_id) VALUES ($1) ON CONFLICT ON CONSTRAINT nope DO NOTHING",
            "has no such constraint",
        ),
    ],
)
def test_the_upsert_check_reads_each_form(conn: Conn, statement: str, problem: str | None) -> None:
    """Column targets (any order), constraint targets and target-less DO NOTHING."""
    found = on_conflict_violations(conn, {"sql/x.sql": statement})
    if problem is None:
        assert not found, report(found)
    else:
        assert found and problem in found[0], report(found)
