"""Per-row work of a big file spread over processes, results in input order.

Normalising a number with ``phonenumbers`` (pure Python) costs about 40 µs, so one core reads
about 17,000 leads a second (bench/ingest.py); the rest of an import is the database's. Rows
are handed out in chunks. The first chunk is done in this process, so a small file never
starts a pool, and at most two chunks per worker are in flight, so memory stays bounded
whatever the size of the file."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

CHUNK_ROWS = 5_000


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def chunked(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """``items`` in tuples of ``size`` (the last one shorter), read as they are needed."""
    rows = iter(items)
    return iter(lambda: tuple(islice(rows, size)), ())


def map_in_chunks(
    work: Callable[[tuple[T, ...]], list[R]],
    items: Iterable[T],
    workers: int,
) -> Iterator[R]:
    """``work`` over ``items`` a chunk at a time; every chunk after the first goes to one of
    ``workers`` processes when there are at least two. ``work`` must be picklable (a module
    function, or a functools.partial of one)."""
    chunks = chunked(items, CHUNK_ROWS)
    first = next(chunks, None)
    if first is None:
        return
    yield from work(first)
    if workers < 2:
        for chunk in chunks:
            yield from work(chunk)
        return
    # spawn: a forked child would share this process's database connection.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: deque[Future[list[R]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(work, chunk))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
