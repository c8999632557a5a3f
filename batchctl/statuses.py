"""The statuses of a batch and of an entry, as the SQL enums batchctl.batch_status and
batchctl.entry_status have them (migrations/0001), in the enums' order: for filters, choices and
counters in Python (tests/sql/test_statuses.py compares them with the database)."""

from __future__ import annotations

BATCH_STATUSES = ("pending", "running", "paused", "completed", "cancelled", "failed")
ENTRY_STATUSES = ("queued", "running", "dispatched", "completed", "failed", "declined", "cancelled")
