"""Identifiers shared with the database (sql/010_transitions.sql computes the same)."""

from __future__ import annotations

import uuid

# The namespace of batchctl's name-based UUIDs: uuid5(NAMESPACE_DNS, "batchctl.invalid").
NAMESPACE = uuid.UUID("4d356a18-3318-56ba-bbeb-eb86390ccc97")


def call_log_id(room_name: str) -> uuid.UUID:
    """The id of the call log of ``room_name``, known before the call log exists: the daemon
    puts it in the dispatch metadata, and webhooks map a room to its call with it."""
    return uuid.uuid3(NAMESPACE, room_name)
