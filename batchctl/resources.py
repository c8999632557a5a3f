"""Where the files batchctl ships live: the SQL that defines the schema, and the examples.

A wheel carries them inside the package (batchctl/migrations, batchctl/sql, batchctl/examples,
see pyproject.toml); a checkout or editable install keeps them at the top level of the
repository.
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


def examples_dir() -> Path:
    """Sample files: leads.csv (the demo's campaign), scenario.json (the LiveKit simulator's)."""
    return _locate("examples")
