"""Each SQL-API call the package makes, written once for both clients (sync.py, aio.py): its
statement, its parameters and how its rows are read. Grouped as sql/ is; each function is named
after its SQL function and keeps its defaults."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import sql
from psycopg.abc import AdaptContext
from psycopg.rows import BaseRowFactory, class_row, scalar_row

R = TypeVar("R")
T = TypeVar("T")
Query = str | sql.Composed  # what execute() takes with parameters (no template string)


@dataclass(frozen=True)
class Call(Generic[R]):
    """One statement, run on a cursor whose rows ``row`` makes (and whose loaders ``adapt``
    sets, if given); ``read`` turns all its rows into the answer."""

    query: Query
    params: Sequence[Any] | None
    row: BaseRowFactory[Any]
    read: Callable[[list[Any]], R]
    adapt: Callable[[AdaptContext], None] | None = None


def first(rows: list[T]) -> T:
    return rows[0]


def first_or_none(rows: list[T]) -> T | None:
    return rows[0] if rows else None


def every(rows: list[T]) -> list[T]:
    return rows


def nothing(rows: list[Any]) -> None:
    return None


def scalar(query: Query, *params: Any) -> Call[Any]:
    """The value of a function that RETURNS one."""
    return Call(query, params, scalar_row, first)


def void(query: Query, *params: Any) -> Call[None]:
    """A function that RETURNS void."""
    return Call(query, params, scalar_row, nothing)


def table(row: type[T], query: Query, *params: Any) -> Call[list[T]]:
    """The rows of a function that RETURNS TABLE, as ``row`` (whose fields name its columns)."""
    return Call(query, params, class_row(row), every)


def jsonb(doc: Any) -> str:
    """A JSON parameter, cast to jsonb in the statement."""
    return json.dumps(doc)
