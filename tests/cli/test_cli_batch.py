"""`batchctl batch ...` and `batchctl sweep`, through click's runner and as a subprocess: a CSV file
becomes a running batch (or, with bad rows, nothing at all), options reach the database's
validation, operators steer batches of any tenant, and `watch` follows a batch to its end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from batchctl.cli.batch_watch import Progress
from batchctl.statuses import ENTRY_STATUSES
from checks import Conn
from clitools import UNREACHABLE, count, create_tenant, invoke, one_line_error, run_batchctl
from invariants import assert_invariants
from pgtools import one_row
from sqlapi import SqlApi, phones

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "leads.csv"
NO_SUCH_BATCH = "0b5e7a52-0000-4000-8000-000000000000"

BAD_CSV = """phone,name,timezone,plan
+14155550100,Ada,,pro
,Nobody,,
(415) 555-0101,National,,
+14155550102,Zed,Mars/Base,
+14155550103,Too,many,fields,here
+14155550104,Fine,Europe/Berlin,
"""


def write(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def create_batch(db_url: str, tenant: str, csv: Path, *args: str) -> dict[str, Any]:
    result = invoke(db_url, "batch", "create", tenant, "--csv", str(csv), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def entries(conn: Conn, batch_id: str) -> list[dict[str, Any]]:
    return conn.execute(
        """select to_phone, lead_name, lead_id, context, timezone from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch_id,),
    ).fetchall()


def drive_to_the_end(api: SqlApi, outcomes: tuple[str, ...] = ("ended",)) -> None:
    """Dials and ends every call, as the daemon and the voice worker would."""
    n = 0
    while calls := api.dispatch_all():
        for call in calls:
            outcome = outcomes[n % len(outcomes)]
            api.finish_call(call, outcome, {"error": "trunk down"} if outcome == "failed" else {})
            n += 1


# --- batch create ----------------------------------------------------------------------------


def test_the_example_campaign_becomes_a_running_batch(db_url: str, conn: Conn) -> None:
    create_tenant(db_url, "acme", "--timezone", "Europe/Berlin")
    doc = create_batch(db_url, "acme", EXAMPLE, "--default-region", "US")
    status = doc["batch_status"]
    assert (status["status"], status["total"], status["queued"]) == ("running", 200, 200)
    assert doc["skipped_rows"] == []
    rows = entries(conn, doc["batch_id"])
    first, explicit = rows[0], rows[5]  # CSV lines 2 and 7
    assert (first["to_phone"], first["lead_name"], first["lead_id"]) == (
        "+16045550120",
        "Layla Bailey",
        "CRM-10417",
    )
    assert first["context"] == {
        "company": "Pinecrest Realty",
        "plan": "enterprise",
        "notes": "considering the enterprise plan",
    }
    assert first["timezone"] == "America/Vancouver"  # from the number: the row names none
    assert explicit["timezone"] == "America/Los_Angeles"  # the row's own zone wins
    assert all(row["timezone"] for row in rows)  # every sample number has exactly one zone


def test_people_get_the_id_status_and_counts(db_url: str, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    csv = write(tmp_path, "phone\n+14155550100\n+14155550101\n")
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv))
    assert result.exit_code == 0, result.output
    first, header, counts = result.stdout.splitlines()
    assert first.startswith("batch ") and first.endswith(" running")
    UUID(first.split()[1])
    assert dict(zip(header.split()[:3], counts.split()[:3], strict=True)) == {
        "TOTAL": "2",
        "QUEUED": "2",
        "RUNNING": "0",
    }


def test_bad_rows_are_all_reported_by_line_and_column_and_nothing_is_created(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(write(tmp_path, BAD_CSV)))
    one_line_error(result, "4 of 6 rows in leads.csv are invalid", "nothing was created")
    problems = result.stderr.splitlines()[:-1]
    assert problems == [
        "leads.csv: line 3, column phone: missing (every row needs a number)",
        'leads.csv: line 4, column phone: "(415) 555-0101" has no country code: write it as '
        "+<country code><number> or pass --default-region",
        'leads.csv: line 5, column timezone: unknown time zone "Mars/Base" '
        "(an IANA name such as Europe/Berlin)",
        "leads.csv: line 6: 5 fields, but the header has 4",
    ]
    assert count(conn, "batches") == 0 and count(conn, "batch_entries") == 0


def test_skip_invalid_creates_the_rest_and_lists_what_it_skipped(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    csv = write(tmp_path, BAD_CSV)
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("skipped leads.csv: line ") == 4
    assert "skipped leads.csv: line 5, column timezone" in result.stderr

    doc = create_batch(db_url, "acme", csv, "--skip-invalid", "--default-region", "US")
    assert [(row["line"], row["column"]) for row in doc["skipped_rows"]] == [
        (3, "phone"),
        (5, "timezone"),
        (6, None),
    ]
    phones_created = [row["to_phone"] for row in entries(conn, doc["batch_id"])]
    assert phones_created == ["+14155550100", "+14155550101", "+14155550104"]


def test_duplicates_and_do_not_call_numbers_are_counted(db_url: str, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    assert invoke(db_url, "dnc", "add", "acme", "+14155550199").exit_code == 0
    # The same number in two formats is one number once normalised.
    csv = write(tmp_path, "phone\n+14155550100\n(415) 555-0100\n415-555-0199\n+14155550101\n")
    status = create_batch(db_url, "acme", csv, "--default-region", "US")["batch_status"]
    assert (status["total"], status["duplicates"], status["dnc_skipped"]) == (2, 1, 1)


def big_csv(tmp_path: Path, rows: int, changes: dict[int, str]) -> Path:
    """``rows`` distinct valid leads ("Lead i" on data row i, file line i + 2), with the rows
    in ``changes`` replaced by their number."""
    lines = [f"+1415{200 + i // 10_000}{i % 10_000:04d},Lead {i}" for i in range(rows)]
    for row, phone in changes.items():
        lines[row] = f"{phone},Lead {row}"
    return write(tmp_path, "phone,name\n" + "\n".join(lines) + "\n", "big.csv")


def test_a_file_of_several_chunks_becomes_one_batch_with_the_same_rules(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """The file is stored 5,000 rows at a time (create_batch_from_rows, then add_entries): a
    duplicate across chunks is a duplicate, indices run on, the last row is there; a
    do-not-call number counts once per chunk that lists it."""
    create_tenant(db_url, "acme")
    assert invoke(db_url, "dnc", "add", "acme", "+14155550199").exit_code == 0
    dnc = "+14155550199"
    csv = big_csv(tmp_path, 11_000, {100: dnc, 9_000: dnc, 7_000: "+14152000010"})
    status = create_batch(db_url, "acme", csv)["batch_status"]
    assert (status["total"], status["duplicates"], status["dnc_skipped"]) == (10_997, 1, 2)
    last = one_row(
        conn,
        """select entry_index, lead_name from batchctl.batch_entries
            where batch_id = %s order by entry_index desc limit 1""",
        (status["batch_id"],),
    )
    assert (last["entry_index"], last["lead_name"]) == (10_999, "Lead 10999")
    assert_invariants(conn)


def test_bad_rows_in_any_chunk_are_all_listed_and_nothing_is_created(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """A bad row in the second chunk stops the storing but not the reading: a bad row in the
    third is listed too, and the batch the first chunk created is rolled back."""
    create_tenant(db_url, "acme")
    csv = big_csv(tmp_path, 11_000, {6_000: "555-nope", 10_500: "555-nix"})
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv))
    one_line_error(result, "2 of 11000 rows in big.csv are invalid", "nothing was created")
    assert [line.split(",")[0] for line in result.stderr.splitlines()[:-1]] == [
        "big.csv: line 6002",
        "big.csv: line 10502",
    ]
    assert count(conn, "batches") == 0 and count(conn, "batch_entries") == 0


def test_a_number_without_a_single_zone_leaves_the_tenant_s_zone_to_apply(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme", "--timezone", "America/Denver")
    csv = write(tmp_path, "phone\n+16055550100\n+18005550199\n+13125550100\n")
    rows = entries(conn, create_batch(db_url, "acme", csv)["batch_id"])
    assert [row["timezone"] for row in rows] == [None, None, "America/Chicago"]


def test_flags_and_options_json_become_the_batch_options(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    doc = create_batch(
        db_url, "acme", write(tmp_path, "phone\n+14155550100\n"),
        "--wave-size", "4", "--dispatch-mode", "wave", "--max-retries", "1",
        "--pickup-timeout", "60", "--ringing-timeout", "61", "--ongoing-timeout", "62",
        "--retry-on", "no_answer", "--retry-on", "busy,voicemail", "--max-attempts", "3",
        "--retry-delay", "120", "--call-window", "09:00-17:30", "--call-days", "mon,fri",
        "--start-at", "2030-01-01T09:00:00Z", "--report-to", "ops@example.com",
        "--report-delay", "5", "--agent-name", "closer", "--no-autostart",
        "--options-json", '{"wave_size": 99, "metadata": {"campaign": "spring"}}',
    )  # fmt: skip
    assert doc["batch_status"]["status"] == "pending"
    row = one_row(conn, "select options from batchctl.batches where id = %s", (doc["batch_id"],))
    options = row["options"]
    expected = {
        "wave_size": 4,  # the flag wins over --options-json
        "dispatch_mode": "wave",
        "max_retries": 1,
        "pickup_timeout_s": 60,
        "ringing_timeout_s": 61,
        "ongoing_timeout_s": 62,
        "retry_on": ["no_answer", "busy", "voicemail"],
        "max_attempts": 3,
        "retry_delay_s": 120,
        "call_window": {"start": "09:00", "end": "17:30", "days": ["fri", "mon"]},
        "report_to": ["ops@example.com"],
        "report_delay_s": 5,
        "agent_name": "closer",
        "autostart": False,
        "metadata": {"campaign": "spring"},
    }
    assert {key: options[key] for key in expected} == expected
    assert options["start_at"].startswith("2030-01-01T09:00:00")
    started = invoke(db_url, "batch", "start", doc["batch_id"])
    assert started.stdout.strip() == f"batch {doc['batch_id']} running"


BAD_OPTIONS = [
    (("--wave-size", "0"), "option wave_size: expected an integer from 1 to 1000, got 0"),
    (("--dispatch-mode", "fast"), 'option dispatch_mode: expected "wave" or "window"'),
    (("--retry-on", "hung_up"), 'option retry_on: "hung_up" not a retryable outcome'),
    (("--call-window", "9-17"), "option call_window.start"),
    (("--end-at", "someday"), "option end_at"),
    (("--options-json", '{"colour": "red"}'), 'options: unknown key "colour"'),
]


def test_bad_options_fail_with_the_database_s_message_and_create_nothing(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    csv = write(tmp_path, "phone\n+14155550100\n")
    for args, message in BAD_OPTIONS:
        result = invoke(db_url, "batch", "create", "acme", "--csv", str(csv), *args)
        one_line_error(result, message)
    assert count(conn, "batches") == 0


@pytest.mark.parametrize(
    "args", [("--call-window", "9am"), ("--options-json", "{nope"), ("--options-json", "[1]")]
)
def test_malformed_flags_are_usage_errors(tmp_path: Path, args: tuple[str]) -> None:
    csv = write(tmp_path, "phone\n+14155550100\n")
    # Refused while the command line is parsed: the database is never reached.
    assert invoke(UNREACHABLE, "batch", "create", "acme", "--csv", str(csv), *args).exit_code == 2


def test_a_tenant_that_does_not_exist_gets_nothing(db_url: str, conn: Conn, tmp_path: Path) -> None:
    csv = write(tmp_path, "phone\n+14155550100\n")
    stranger = "5f0c9a1e-0000-4000-8000-000000000000"
    one_line_error(
        invoke(db_url, "batch", "create", stranger, "--csv", str(csv)), stranger, "not found"
    )
    assert count(conn, "batches") == 0


def test_an_empty_file_is_refused(db_url: str, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    csv = write(tmp_path, "phone,name\n")
    one_line_error(invoke(db_url, "batch", "create", "acme", "--csv", str(csv)), "empty")


# --- list, show, pause, resume, cancel -------------------------------------------------------


def test_list_filters_by_tenant_and_status(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    acme, other = api.create_tenant("acme"), api.create_tenant("other")
    running = api.create_batch(acme, phones(2))
    paused = api.create_batch(acme, phones(1, 10))
    api.pause_batch(acme, paused)
    theirs = api.create_batch(other, phones(1))

    def listed(*args: str) -> list[UUID]:
        result = invoke(db_url, "batch", "list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [UUID(row["batch_id"]) for row in json.loads(result.stdout)]

    assert set(listed()) == {running, paused, theirs}
    assert set(listed("--tenant", "acme")) == {running, paused}
    assert listed("--tenant", "acme", "--status", "paused") == [paused]
    assert len(listed("--limit", "1")) == 1
    one_line_error(
        invoke(db_url, "batch", "list", "--status", "stopped"),
        'unknown status "stopped"',
        "running, paused",
    )
    table = invoke(db_url, "batch", "list", "--tenant", "other").stdout.splitlines()
    assert table[0].split()[:3] == ["BATCH", "TENANT", "STATUS"]
    assert table[1].split()[:3] == [str(theirs), "other", "running"]


def test_show_gives_counts_timings_report_and_latest_errors(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 10)
    batch = api.create_batch(tenant, phones(4))
    drive_to_the_end(api, ("ended", "failed", "no_answer", "failed"))

    doc = json.loads(invoke(db_url, "batch", "show", str(batch), "--json").stdout)
    b = doc["batch"]
    assert (b["status"], b["completed"], b["failed"], b["declined"]) == ("completed", 1, 2, 1)
    assert b["finished_at"] is not None and b["elapsed"] >= 0
    assert b["report_status"] == "skipped"  # no report_to
    assert doc["error_counts"] == [{"error": "trunk down", "entries": 2}]  # declines are no error
    assert [e["status"] for e in doc["latest_errors"]] == ["failed", "failed"]

    text = invoke(db_url, "batch", "show", str(batch)).stdout
    assert "tenant          acme (" in text and "report          skipped" in text
    assert "      2  trunk down" in text


def test_pause_resume_and_cancel_act_for_the_batch_s_tenant(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 1)
    batch = api.create_batch(tenant, phones(3))
    (call,) = api.dispatch_all()

    assert invoke(db_url, "batch", "pause", str(batch)).stdout.strip().endswith("paused")
    assert api.batch_status(tenant, batch)["status"] == "paused"
    resumed = json.loads(invoke(db_url, "batch", "resume", str(batch), "--json").stdout)
    assert resumed["status"] == "running"

    result = invoke(db_url, "batch", "cancel", str(batch), "--reason", "withdrawn")
    assert result.exit_code == 0, result.output
    assert "2 leads cancelled now, 1 live calls being hung up" in result.stdout
    assert api.batch_status(tenant, batch)["status"] == "cancelled"
    again = json.loads(invoke(db_url, "batch", "cancel", str(batch), "--json").stdout)
    assert again["cancelled_now"] == 0
    one_line_error(invoke(db_url, "batch", "resume", str(batch)), "only a paused batch")
    api.finish_call(call, "cancelled")  # the hung-up call ends; the batch finishes


UNKNOWN_BATCH_COMMANDS = [
    ("show",), ("watch",), ("pause",), ("resume",), ("start",), ("cancel", "--reason", "x"),
]  # fmt: skip


def test_an_unknown_batch_is_named_in_a_one_line_error(db_url: str) -> None:
    for name, *rest in UNKNOWN_BATCH_COMMANDS:
        one_line_error(invoke(db_url, "batch", name, NO_SUCH_BATCH, *rest), NO_SUCH_BATCH)
        assert invoke(db_url, "batch", name, "not-a-uuid", *rest).exit_code == 2


# --- watch -----------------------------------------------------------------------------------


def test_watch_of_a_finished_batch_prints_the_final_counts_at_once(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 5)
    batch = api.create_batch(tenant, phones(2))
    drive_to_the_end(api)
    result = invoke(db_url, "batch", "watch", str(batch))
    assert result.exit_code == 0, result.output
    assert "completed  2/2 done" in result.stdout
    assert f"batch {batch} completed in " in result.stdout
    lines = invoke(db_url, "batch", "watch", str(batch), "--json").stdout.splitlines()
    assert [json.loads(line)["completed"] for line in lines] == [2]


def test_on_a_terminal_watch_redraws_one_bar_in_place(capsys: pytest.CaptureFixture[str]) -> None:
    counts = dict.fromkeys(ENTRY_STATUSES, 0) | {"queued": 2, "completed": 1, "failed": 1}
    status = {"status": "running", "total": 4, "pending": 2, **counts}
    progress = Progress(tty=True, as_json=False)
    progress.update(status)
    progress.update(status)  # unchanged: not redrawn
    progress.update(status | {"queued": 1, "completed": 2, "pending": 1})
    out = capsys.readouterr().out
    assert "\n" not in out
    # (click drops the line-erasing escape code when the output is not a real terminal)
    assert out.replace("\x1b[K", "").split("\r") == [
        "",
        f"[{'#' * 15}{'.' * 15}]  50%  running  2/4 done  queued 2  running 0  dispatched 0  "
        "completed 1  failed 1  declined 0  cancelled 0",
        f"[{'#' * 22}{'.' * 8}]  75%  running  3/4 done  queued 1  running 0  dispatched 0  "
        "completed 2  failed 1  declined 0  cancelled 0",
    ]


def test_watch_follows_a_batch_until_it_finishes(db_url: str, conn: Conn) -> None:
    """A long poll interval: only the notifications can make watch see the end in time."""
    api = SqlApi(conn)
    tenant = api.create_tenant("acme", 3)
    batch = api.create_batch(tenant, phones(7))
    command = [sys.executable, "-m", "batchctl", "--database-url", db_url]
    watch = subprocess.Popen(
        [*command, "batch", "watch", str(batch), "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None and watch.stderr is not None
        first = watch.stdout.readline()  # printed once it listens
        assert "running  0/7 done" in first, first + watch.stderr.read()
        driver = threading.Thread(target=drive_to_the_end, args=(api, ("ended", "busy")))
        driver.start()
        driver.join()
        out, err = watch.communicate(timeout=20)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    progress = [first, *out.splitlines()]
    assert len(progress) >= 4  # intermediate counts, then the summary and its table
    assert f"batch {batch} completed in " in out
    assert out.splitlines()[-1].split()[:7] == ["7", "0", "0", "0", "4", "0", "3"]


# --- sweep -----------------------------------------------------------------------------------


def test_sweep_prints_what_it_did(db_url: str, conn: Conn) -> None:
    api = SqlApi(conn)
    tenant = api.create_tenant("acme")
    api.create_batch(tenant, phones(1))
    api.claim()
    conn.execute("update batchctl.batch_entries set lease_expires_at = now() - interval '1 minute'")
    doc = json.loads(invoke(db_url, "sweep", "--json").stdout)
    assert doc["leases_expired"] == 1
    table = invoke(db_url, "sweep")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["ACTION", "COUNT"]
    assert any(line.split() == ["leases_expired", "0"] for line in table.stdout.splitlines())


def test_a_sweep_while_another_runs_does_nothing_and_succeeds(db_url: str, conn: Conn) -> None:
    with conn.transaction():
        conn.execute("select batchctl.sweep()")  # holds the sweep lock until the commit
        result = invoke(db_url, "sweep")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "skipped: another sweep was running"


# --- as a subprocess -------------------------------------------------------------------------


def test_subprocess_batch_create_and_show_unknown(db_url: str, conn: Conn) -> None:
    tenant = SqlApi(conn).create_tenant("acme")
    created = run_batchctl(
        db_url, "batch", "create", str(tenant), "--csv", str(EXAMPLE), "--default-region", "US",
        "--wave-size", "5", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["batch_status"]["total"] == 200
    unknown = run_batchctl(db_url, "batch", "show", NO_SUCH_BATCH)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        f"error: batch {NO_SUCH_BATCH} not found (batchctl batch list shows them)"
    ]


def test_subprocess_batch_create_of_a_big_file_reads_it_in_several_processes(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Past 5,000 rows the numbers are normalised in worker processes, spawned from the
    command: the batch and the skipped rows are as one process would make them."""
    SqlApi(conn).create_tenant("acme")
    path = tmp_path / "big.csv"
    rows = [f"+1415{200 + i // 10_000}{i % 10_000:04d},Lead {i}" for i in range(6_000)]
    rows[5_500] = "555-nope,Lead 5500"
    path.write_text("phone,name\n" + "\n".join(rows) + "\n")
    created = run_batchctl(
        db_url, "batch", "create", "acme", "--csv", str(path), "--skip-invalid", "--json"
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["batch_status"]["total"] == 5_999
    assert [row["line"] for row in doc["skipped_rows"]] == [5_502]
    last = one_row(
        conn,
        "select lead_name from batchctl.batch_entries where batch_id = %s"
        " order by entry_index desc limit 1",
        (doc["batch_id"],),
    )
    assert last["lead_name"] == "Lead 5999"
