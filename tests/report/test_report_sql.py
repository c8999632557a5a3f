"""What the report reads from SQL (sql/085_report_views.sql), as other services see it: the
views and report_summary run with the caller's rights, so a tenant sees its own rows only."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from report_helpers import drive
from sqlapi import SqlApi, phones
from tenant_logins import act_as, login_role


def test_a_tenant_reads_only_its_own_report_rows(conn: psycopg.Connection[Any]) -> None:
    api = SqlApi(conn)
    mine, theirs = api.create_tenant("mine"), api.create_tenant("theirs")
    my_batch = api.create_batch(mine, phones(2))
    their_batch = api.create_batch(theirs, phones(2, 10))
    drive(api, {})
    with login_role(conn, mine) as role:
        act_as(conn, role)
        for view in ("report_entries", "report_calls"):
            query = sql.SQL("select distinct batch_id from batchctl.{}").format(
                sql.Identifier(view)
            )
            assert [r["batch_id"] for r in conn.execute(query).fetchall()] == [my_batch], view
        summary = conn.execute("select * from batchctl.report_summary(%s)", (my_batch,)).fetchone()
        assert summary is not None and (summary["total"], summary["calls"]) == (2, 2)
        with pytest.raises(psycopg.Error) as raised:
            conn.execute("select * from batchctl.report_summary(%s)", (their_batch,))
        assert raised.value.sqlstate == "BC002"
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from batchctl.claim_report_now(%s, 'me')", (my_batch,))


def test_the_summary_counts_calls_per_attempt_and_the_analysis_keys(
    conn: psycopg.Connection[Any],
) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant()
    batch = api.create_batch(
        tenant, phones(3), {"retry_on": ["busy"], "max_attempts": 2, "retry_delay_s": 0}
    )
    drive(
        api,
        {
            "+14155550000": [("busy", {}), ("ended", {"analysis": {"b": 1, "a": 2}})],
            "+14155550001": [("ended", {"analysis": "a bare value"})],
            "+14155550002": [("ended", {"analysis": None})],
        },
    )
    row = conn.execute("select * from batchctl.report_summary(%s)", (batch,)).fetchone()
    assert row is not None
    assert row["calls_per_attempt"] == {"1": 3, "2": 1} and row["calls"] == 4
    assert row["outcomes"] == {"ended": 3}
    assert row["analysis_keys"] == ["a", "analysis", "b"]


def test_a_tenant_sees_its_trunk_s_name_on_its_calls(conn: psycopg.Connection[Any]) -> None:
    """The trunk comes through a LEFT JOIN under the caller's row-level security: a tenant that
    could not read its own trunks would get empty names, not an error."""
    api = SqlApi(conn)
    tenant = api.create_tenant()
    trunk = api.create_trunk(tenant, "main", "ST_main", 100)
    api.add_caller_ids(tenant, trunk, ["+13055559999"])
    batch = api.create_batch(tenant, phones(1))
    drive(api, {})
    with login_role(conn, tenant) as role:
        act_as(conn, role)
        call = conn.execute(
            "select trunk, caller_id from batchctl.report_calls where batch_id = %s", (batch,)
        ).fetchone()
        entry = conn.execute(
            "select caller_id, carrier_refusals from batchctl.report_entries where batch_id = %s",
            (batch,),
        ).fetchone()
    assert call == {"trunk": "main", "caller_id": "+13055559999"}
    assert entry == {"caller_id": "+13055559999", "carrier_refusals": 0}
