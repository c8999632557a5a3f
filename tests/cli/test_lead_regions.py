"""The lead file's ``region`` column (docs/compliance.md): the lead's ISO 3166-2 subdivision,
upper-cased and stored on its entry, where the database adds the number's own; a malformed one
is reported by its line and column, like every bad cell, and nothing is created."""

from __future__ import annotations

import io
import json
from pathlib import Path

from batchctl.leads.csvfile import Problem
from batchctl.leads.rows import Lead, read_leads
from checks import Conn
from clitools import count, create_tenant, invoke, one_line_error

CSV = """phone,name,region
+13055550100,Fay,
+12125550100,Ned,us-fl
+33612345678,Flo,FR-75
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "leads.csv"
    path.write_text(text)
    return path


def test_the_region_column_is_the_lead_s_upper_cased_and_not_context() -> None:
    items = list(read_leads(io.StringIO(CSV, newline=""), None))
    assert all(isinstance(item, Lead) for item in items)
    leads = [item for item in items if isinstance(item, Lead)]
    assert [(lead.line, lead.region, lead.context) for lead in leads] == [
        (2, None, {}),
        (3, "US-FL", {}),
        (4, "FR-75", {}),
    ]


def test_a_malformed_region_is_a_problem_of_its_line_and_column() -> None:
    text = "phone,region\n+13055550100,Florida\n+13055550101,US-FL\n+13055550102,US-\n"
    problems = [
        p for p in read_leads(io.StringIO(text, newline=""), None) if isinstance(p, Problem)
    ]
    assert [(p.line, p.column) for p in problems] == [(2, "region"), (4, "region")]
    assert str(problems[0]) == (
        'line 2, column region: "Florida" is not an ISO 3166-2 subdivision code'
        " (country, hyphen, 1 to 3 letters or digits, e.g. US-FL)"
    )


def test_a_csv_s_regions_reach_the_entries_with_the_number_s_own(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(write(tmp_path, CSV)), "--json")
    assert result.exit_code == 0, result.output
    batch = json.loads(result.stdout)["batch_id"]
    rows = conn.execute(
        """select to_phone, region, country, subdivisions from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch,),
    ).fetchall()
    assert [(r["to_phone"], r["region"], r["country"], r["subdivisions"]) for r in rows] == [
        ("+13055550100", None, "US", ["US-FL"]),
        ("+12125550100", "US-FL", "US", ["US-FL", "US-NY"]),
        ("+33612345678", "FR-75", "FR", ["FR-75"]),
    ]


def test_a_csv_with_a_bad_region_creates_nothing_and_names_the_cell(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    csv = write(tmp_path, "phone,region\n+13055550100,US-FL\n+12125550100,New York\n")
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv))
    one_line_error(result, "1 of 2 rows in leads.csv are invalid", "nothing was created")
    assert result.stderr.splitlines()[0] == (
        'leads.csv: line 3, column region: "New York" is not an ISO 3166-2 subdivision code'
        " (country, hyphen, 1 to 3 letters or digits, e.g. US-FL)"
    )
    assert count(conn, "batches") == 0
