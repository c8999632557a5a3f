"""A comparable picture of a database's schema, read from pg_catalog.

Two databases with equal snapshots have the same schemas, types, tables, columns, constraints,
indexes, views, functions (full definitions), triggers, policies, extensions and grants.
Names of objects are the keys, so a failed comparison shows which object differs; nothing
depends on OIDs, so a dropped and re-created object compares equal to the original.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import tuple_row

# System schemas, and the temporary and TOAST schemas of sessions.
_USER_NAMESPACE = """
    n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""

# aclitem[] as sorted text: the order of grants in the array carries no meaning.
_ACL = "array(SELECT a::text FROM unnest({}) a ORDER BY 1)"

_QUERIES: dict[str, str] = {
    "schemas": f"""
        SELECT n.nspname, pg_get_userbyid(n.nspowner), {_ACL.format("n.nspacl")}
          FROM pg_namespace n WHERE {_USER_NAMESPACE}""",
    "extensions": """
        SELECT e.extname, e.extversion, n.nspname
          FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace""",
    "types": f"""
        SELECT n.nspname || '.' || t.typname, t.typtype,
               array(SELECT e.enumlabel::text FROM pg_enum e
                      WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
               format_type(t.typbasetype, t.typtypmod), t.typnotnull,
               array(SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
                      WHERE c.contypid = t.oid ORDER BY c.conname)
          FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE t.typtype IN ('e', 'd') AND {_USER_NAMESPACE}""",
    "relations": f"""
        SELECT n.nspname || '.' || c.relname, c.relkind, c.relpersistence,
               c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner),
               {_ACL.format("c.relacl")}, c.reloptions::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND {_USER_NAMESPACE}""",
    "columns": f"""
        SELECT n.nspname || '.' || c.relname || '.' || a.attname, a.attnum,
               format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               co.collname, {_ACL.format("a.attacl")}
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
         WHERE a.attnum > 0 AND NOT a.attisdropped
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c') AND {_USER_NAMESPACE}""",
    "constraints": f"""
        SELECT n.nspname || '.' || c.relname || '.' || k.conname, k.contype,
               pg_get_constraintdef(k.oid), k.condeferrable, k.condeferred
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {_USER_NAMESPACE}""",
    "indexes": """
        SELECT schemaname || '.' || indexname, tablename, indexdef
          FROM pg_indexes
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')""",
    "views": f"""
        SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND {_USER_NAMESPACE}""",
    # Aggregates are left out: pg_get_functiondef() refuses them.
    "functions": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
               || ')',
               pg_get_functiondef(p.oid), pg_get_userbyid(p.proowner), {_ACL.format("p.proacl")}
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE p.prokind IN ('f', 'p', 'w') AND {_USER_NAMESPACE}""",
    "triggers": f"""
        SELECT n.nspname || '.' || c.relname || '.' || t.tgname,
               pg_get_triggerdef(t.oid), t.tgenabled
          FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND {_USER_NAMESPACE}""",
    "policies": """
        SELECT schemaname || '.' || tablename || '.' || policyname,
               permissive, roles::text, cmd, qual, with_check
          FROM pg_policies""",
}


def schema_snapshot(conn: psycopg.Connection[Any]) -> dict[str, dict[str, tuple[Any, ...]]]:
    """{kind: {object name: its properties}} for the database ``conn`` is connected to."""
    snapshot: dict[str, dict[str, tuple[Any, ...]]] = {}
    # tuple rows whatever the connection's row factory is.
    with conn.cursor(row_factory=tuple_row) as cur:
        for kind, query in _QUERIES.items():
            cur.execute(query.encode())
            snapshot[kind] = {row[0]: tuple(row[1:]) for row in cur.fetchall()}
    return snapshot
