"""Lead files as people have them, through the command line (`batch create` and `dnc import`):
Excel's "CSV UTF-8" (with a byte-order mark), semicolon-separated CSV, older Excel's
Windows-1252 CSV, and the .xlsx workbook itself. Each is read correctly, or refused with one
`error: ...` line that names the problem and the fix, and then nothing is created."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from checks import Conn
from clitools import count, create_tenant, invoke, one_line_error, run_batchctl

NAMES = ["José Álvarez", "Jürgen Weiß", "Zoë Brontë"]


def create(db_url: str, path: Path, *args: str) -> dict[str, Any]:
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path), "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def entries(conn: Conn, batch_id: str) -> list[dict[str, Any]]:
    return conn.execute(
        """select to_phone, lead_name, lead_id, context from batchctl.batch_entries
            where batch_id = %s order by entry_index""",
        (batch_id,),
    ).fetchall()


def nothing_created(conn: Conn) -> bool:
    return count(conn, "batches") == 0 and count(conn, "batch_entries") == 0


# --- UTF-8 with a byte-order mark ------------------------------------------------------------


def test_a_utf8_file_with_a_byte_order_mark_is_read(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Excel's "CSV UTF-8": a byte-order mark, then CRLF lines. The first column is "phone",
    not "\\ufeffphone"."""
    create_tenant(db_url, "acme")
    rows = [f"+1415555010{i},{name},€{i}0" for i, name in enumerate(NAMES)]
    path = tmp_path / "excel-utf8.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(["phone,name,price", *rows, ""]).encode())
    doc = create(db_url, path)
    assert doc["batch_status"]["total"] == 3
    leads = entries(conn, doc["batch_id"])
    assert [lead["lead_name"] for lead in leads] == NAMES
    assert leads[0]["context"] == {"price": "€00"}

    result = invoke(db_url, "dnc", "import", "acme", str(path))
    assert result.exit_code == 0, result.output
    assert count(conn, "dnc_numbers") == 3


# --- the delimiter ---------------------------------------------------------------------------


def test_a_semicolon_file_is_detected_from_its_header_line(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Excel writes ";" where the decimal separator is a comma; the commas inside the values
    stay in them."""
    create_tenant(db_url, "acme")
    path = tmp_path / "europe.csv"
    path.write_text(
        "lead_id;name;phone;amount\nL-1;Ada;+4930123456;12,50\nL-2;Bob;+4930123457;3,00\n"
    )
    leads = entries(conn, create(db_url, path)["batch_id"])
    assert [(lead["lead_id"], lead["to_phone"]) for lead in leads] == [
        ("L-1", "+4930123456"),
        ("L-2", "+4930123457"),
    ]
    assert leads[0]["context"] == {"amount": "12,50"}

    # Excel's own hint, a first line "sep=;": the header is line 2, and lines count from it.
    hinted = tmp_path / "hinted.csv"
    hinted.write_text("sep=;\nphone;name\n+4930123458;Cy\nnope;Dee\n")
    result = invoke(db_url, "batch", "create", "acme", "--file", str(hinted))
    one_line_error(result, "1 of 2 rows in hinted.csv are invalid")
    assert result.stderr.startswith("hinted.csv: line 4, column phone:")

    dnc = invoke(db_url, "dnc", "import", "acme", str(path))
    assert dnc.exit_code == 0, dnc.output
    assert count(conn, "dnc_numbers") == 2


def test_the_delimiter_can_be_named(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    tabs = tmp_path / "tabs.txt"
    tabs.write_text("phone\tname\tnote\n+14155550100\tAda\ta, b; c | d\n")
    for name in ("tab", "\t", "\\t"):
        (lead,) = entries(conn, create(db_url, tabs, "--delimiter", name)["batch_id"])
        assert lead["context"] == {"note": "a, b; c | d"}
    pipes = tmp_path / "pipes.csv"
    pipes.write_text("phone|name\n+14155550100|Ada, Countess\n")
    (lead,) = entries(conn, create(db_url, pipes, "--delimiter", "|")["batch_id"])
    assert lead["lead_name"] == "Ada, Countess"

    result = invoke(db_url, "batch", "create", "acme", "--file", str(pipes), "--delimiter", ":")
    assert result.exit_code == 2
    assert "expected one of , ; tab |" in result.output


def test_an_ambiguous_header_is_refused_naming_delimiter(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Neither split of this header has a phone column; the file's writer must say which."""
    create_tenant(db_url, "acme")
    path = tmp_path / "which.csv"
    path.write_text("number;name,title\n+14155550100;Ada,Dr\n")
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path))
    one_line_error(result, "which.csv: line 1: cannot tell whether", '"," or ";"', "--delimiter")
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path), "--delimiter", ";")
    one_line_error(result, 'no "phone" column (the header has: number, name,title)')
    assert nothing_created(conn)


# --- Windows-1252 ----------------------------------------------------------------------------


def windows_1252(tmp_path: Path) -> Path:
    """Older Excel's "CSV (Comma delimited)": é, ü, ß and € are single bytes."""
    path = tmp_path / "old-excel.csv"
    text = "phone,name,note\r\n+14155550100,Ada,plain\r\n+14155550101,José Müller,Straße 5 €\r\n"
    path.write_bytes(text.encode("cp1252"))
    return path


def test_a_windows_1252_file_is_refused_naming_its_line_and_the_encoding(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Not guessed: the same bytes are other letters in other encodings."""
    create_tenant(db_url, "acme")
    path = windows_1252(tmp_path)
    for command in (("batch", "create", "acme", "--file"), ("dnc", "import", "acme")):
        result = invoke(db_url, *command, str(path))
        one_line_error(result, "old-excel.csv: line 3 is not UTF-8", '"é"', "--encoding cp1252")
    assert result.stderr.count("\n") == 1
    assert nothing_created(conn) and count(conn, "dnc_numbers") == 0


def test_a_bad_byte_past_the_first_stored_chunk_leaves_nothing_behind(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """The first 5,000 rows are stored before line 7,002 is decoded: the batch they made is
    rolled back."""
    create_tenant(db_url, "acme")
    rows = [f"+1415{200 + i // 10_000}{i % 10_000:04d},Lead {i}" for i in range(8_000)]
    rows[7_000] = "+14155550100,Fran\xe7ois"
    path = tmp_path / "big.csv"
    path.write_bytes(("phone,name\n" + "\n".join(rows) + "\n").encode("cp1252"))
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path))
    one_line_error(result, "big.csv: line 7002 is not UTF-8", '"ç"', "--encoding cp1252")
    assert nothing_created(conn)


def test_a_windows_1252_file_is_read_with_encoding_cp1252(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    path = windows_1252(tmp_path)
    leads = entries(conn, create(db_url, path, "--encoding", "cp1252")["batch_id"])
    assert [lead["lead_name"] for lead in leads] == ["Ada", "José Müller"]
    assert leads[1]["context"] == {"note": "Straße 5 €"}

    unknown = invoke(db_url, "batch", "create", "acme", "--file", str(path), "--encoding", "x")
    assert unknown.exit_code == 2 and 'unknown encoding "x"' in unknown.output
    # A byte-order mark says what the file is: a contradicting --encoding is a mistake.
    marked = tmp_path / "marked.csv"
    marked.write_bytes(b"\xef\xbb\xbfphone\n+14155550100\n")
    result = invoke(db_url, "dnc", "import", "acme", str(marked), "--encoding", "cp1252")
    one_line_error(result, "UTF-8 byte-order mark", "leave out --encoding")
    assert count(conn, "dnc_numbers") == 0


# --- .xlsx workbooks -------------------------------------------------------------------------


def workbook(path: Path, rows: list[list[Any]], *, title: str = "Leads") -> openpyxl.Workbook:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    book.save(path)
    return book


def test_an_xlsx_workbook_becomes_a_batch_with_cells_as_people_see_them(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Numbers typed as numbers come out as their digits, an id stored as text keeps its
    zeros (so does a number shown zero-padded), dates are ISO, empty rows are skipped."""
    create_tenant(db_url, "acme")
    path = tmp_path / "leads.xlsx"
    book = workbook(
        path,
        [
            ["Phone", "Name", "lead_id", "signed up", "called at", "score", "vip", None],
            [4155550100, "José", "00123", dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 9, 30)],
            [],
            [14155550101.0, "Jürgen", 124, None, None, 0.1 + 0.2, True],
            [" +1 (415) 555-0102 ", None, None, None, None, 1e-7, False],
        ],
    )
    book.active["C4"].number_format = "00000"  # shows 00124
    book.active["A7"] = None  # a touched but empty cell: row 7 exists and is blank
    book.save(path)
    doc = create(db_url, path, "--default-region", "US")
    assert doc["batch_status"]["total"] == 3 and doc["skipped_rows"] == []
    leads = entries(conn, doc["batch_id"])
    assert [(lead["to_phone"], lead["lead_name"], lead["lead_id"]) for lead in leads] == [
        ("+14155550100", "José", "00123"),
        ("+14155550101", "Jürgen", "00124"),
        ("+14155550102", None, None),
    ]
    assert [lead["context"] for lead in leads] == [
        {"signed up": "2024-03-01", "called at": "2024-03-01T09:30:00"},
        {"score": "0.3", "vip": "TRUE"},
        {"score": "0.0000001", "vip": "FALSE"},
    ]
    # --csv takes a workbook as well
    result = invoke(db_url, "batch", "create", "acme", "--csv", str(path), "--default-region", "US")
    assert result.exit_code == 0, result.output


def test_workbook_problems_name_the_sheet_row_and_column(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    path = tmp_path / "leads.xlsx"
    workbook(
        path,
        [
            ["name", "phone", "timezone"],
            ["Ada", "+14155550100", None],
            ["Nobody", None, "Europe/Berlin"],
            [],
            ["Zed", 4155550101, "Mars/Base"],
            ["Extra", "+14155550102", None, "stray"],
        ],
    )
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path))
    one_line_error(result, "3 of 4 rows in leads.xlsx are invalid", "nothing was created")
    assert result.stderr.splitlines()[:-1] == [
        'leads.xlsx: sheet "Leads", row 3, column B (phone): missing (every row needs a number)',
        'leads.xlsx: sheet "Leads", row 5, column B (phone): "4155550101" has no country code: '
        "write it as +<country code><number> or pass --default-region",
        'leads.xlsx: sheet "Leads", row 6: a value in column D, which has no name in the header',
    ]
    result = invoke(
        db_url, "batch", "create", "acme", "--file", str(path), "--default-region", "US"
    )
    assert 'sheet "Leads", row 5, column C (timezone): unknown time zone "Mars/Base"' in (
        result.stderr
    )
    assert nothing_created(conn)

    no_phone = tmp_path / "contacts.xlsx"
    workbook(no_phone, [["name", None, "mobile"], ["Ada", None, 4155550100]], title="Contacts")
    one_line_error(
        invoke(db_url, "batch", "create", "acme", "--file", str(no_phone)),
        'contacts.xlsx: sheet "Contacts", row 1: column B has no name',
    )
    assert nothing_created(conn)


def test_a_sheet_is_chosen_by_name_and_the_options_must_fit_the_file(
    db_url: str, conn: Conn, tmp_path: Path
) -> None:
    create_tenant(db_url, "acme")
    path = tmp_path / "book.xlsx"
    book = workbook(path, [["notes"], ["not the leads"]], title="Read me")
    sheet = book.create_sheet("Do not call")
    for row in (["Phone"], ["+14155550100"], ["+14155550101"]):
        sheet.append(row)
    book.save(path)

    result = invoke(db_url, "dnc", "import", "acme", str(path), "--sheet", "do not call")
    assert result.exit_code == 0, result.output
    assert count(conn, "dnc_numbers") == 2
    one_line_error(
        invoke(db_url, "dnc", "import", "acme", str(path)), 'sheet "Read me", row 1: no "phone"'
    )
    one_line_error(
        invoke(db_url, "batch", "create", "acme", "--file", str(path), "--sheet", "Leads"),
        'no sheet "Leads" in the workbook (it has "Read me", "Do not call")',
    )
    one_line_error(
        invoke(db_url, "dnc", "import", "acme", str(path), "--encoding", "cp1252"),
        "a workbook has no encoding: leave out --encoding",
    )
    csv = tmp_path / "plain.csv"
    csv.write_text("phone\n+14155550100\n")
    one_line_error(
        invoke(db_url, "batch", "create", "acme", "--file", str(csv), "--sheet", "Leads"),
        "a CSV file has no sheets: leave out --sheet",
    )
    old = tmp_path / "old.xls"  # what Excel 97-2003 and a password-protected workbook start with
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504))
    one_line_error(
        invoke(db_url, "batch", "create", "acme", "--file", str(old)),
        "old.xls: an Excel 97-2003 workbook (.xls)",
        'save it from Excel as .xlsx without a password, or as "CSV UTF-8"',
    )
    assert nothing_created(conn)


def test_subprocess_batch_create_of_a_workbook(db_url: str, conn: Conn, tmp_path: Path) -> None:
    create_tenant(db_url, "acme")
    path = tmp_path / "leads.xlsx"
    workbook(path, [["phone", "name"], *[[4155550100 + i, f"Lead {i}"] for i in range(50)]])
    created = run_batchctl(
        db_url, "batch", "create", "acme", "--file", str(path), "--default-region", "US", "--json"
    )
    assert created.returncode == 0, created.stderr
    doc = json.loads(created.stdout)
    assert doc["batch_status"]["total"] == 50
    assert entries(conn, doc["batch_id"])[49]["to_phone"] == "+14155550149"


@pytest.mark.parametrize("name", ["leads.csv", "leads.xlsx"])
def test_skipped_rows_of_either_kind_are_listed_where_the_file_has_them(
    db_url: str, tmp_path: Path, name: str
) -> None:
    create_tenant(db_url, "acme")
    path = tmp_path / name
    rows = [["phone", "name"], ["+14155550100", "Ada"], ["nope", "Bob"]]
    if name.endswith(".xlsx"):
        workbook(path, rows)
        where = 'leads.xlsx: sheet "Leads", row 3, column A (phone)'
    else:
        path.write_text("".join(";".join(row) + "\n" for row in rows))
        where = "leads.csv: line 3, column phone"
    result = invoke(db_url, "batch", "create", "acme", "--file", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert result.stderr == f'skipped {where}: "nope" is not a phone number\n'
