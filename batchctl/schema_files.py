"""Where the SQL that defines the schema lives.

A wheel carries it inside the package (batchctl/migrations, batchctl/sql, see pyproject.toml);
a checkout or editable install keeps it at the top level of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPO = _PACKAGE.parent


def _locate(name: str) -> Path:
    packaged = _PACKAGE / name
    return packaged if packaged.is_dir() else _REPO / name


def migrations_dir() -> Path:
    """yoyo migrations: tables, types, indexes, roles, policies (append-only history)."""
    return _locate("migrations")


def sql_dir() -> Path:
    """CREATE OR REPLACE definitions (functions, triggers, views), re-applied on every upgrade."""
    return _locate("sql")
