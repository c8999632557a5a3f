"""Reading lead CSV files and normalising numbers (batchctl.leads), without a database: every
problem is found, with its line and column, and nothing stops at the first one."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from batchctl.leads.csvfile import CsvFileError, Problem, Record, column_letter, read_records
from batchctl.leads.files import detect_delimiter, open_lead_file
from batchctl.leads.phones import PhoneError, check_region, parse_phone
from batchctl.leads.rows import LEAD_COLUMNS, PHONE, Lead, Number, read_leads, read_numbers
from batchctl.leads.workbook import cell_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "leads.csv"


def lines(text: str) -> io.StringIO:
    return io.StringIO(text, newline="")


def split(items: Iterable[Lead | Number | Problem]) -> tuple[list[Lead | Number], list[Problem]]:
    good: list[Lead | Number] = []
    bad: list[Problem] = []
    for item in items:
        (bad if isinstance(item, Problem) else good).append(item)  # type: ignore[arg-type]
    return good, bad


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+14155550123", None, "+14155550123"),
        ("+1 (415) 555-0123", None, "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("020 7946 0123", "GB", "+442079460123"),
        ("+44 20 7946 0123", "US", "+442079460123"),  # an explicit + wins over the region
        ("030 123456", "DE", "+4930123456"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, region: str | None, e164: str) -> None:
    assert parse_phone(raw, region).e164 == e164


@pytest.mark.parametrize(
    ("raw", "region", "message"),
    [
        ("(415) 555-0123", None, "has no country code: write it as +<country code><number> or"),
        ("+999 1234567", None, "has an unknown country code"),
        ("hello", "US", "is not a phone number"),
        ("+1 555 555 0100", None, "is not a valid phone number (country code +1)"),
        ("+1 415 555 0123 ext. 7", None, "has an extension"),
        ("1", "US", "is not a"),
    ],
)
def test_bad_numbers_say_why(raw: str, region: str | None, message: str) -> None:
    with pytest.raises(PhoneError) as exc:
        parse_phone(raw, region)
    assert message in str(exc.value)
    assert f'"{raw}"' in str(exc.value)


@pytest.mark.parametrize(
    ("raw", "zone"),
    [
        ("+14155550123", "America/Los_Angeles"),
        ("+12125550123", "America/New_York"),
        ("+442079460123", "Europe/London"),
        ("+33612345678", "Europe/Paris"),  # a mobile: the country's single zone
        ("+16055550100", None),  # South Dakota spans two zones
        ("+18005550199", None),  # toll-free: the whole North American plan
    ],
)
def test_the_zone_of_a_number_is_used_only_when_there_is_exactly_one(
    raw: str, zone: str | None
) -> None:
    assert parse_phone(raw, None).timezone == zone


def test_regions_are_checked_and_upper_cased() -> None:
    assert check_region("us") == "US"
    assert check_region(None) is None
    with pytest.raises(PhoneError, match='unknown region "XY"'):
        check_region("XY")


# --- CSV records -----------------------------------------------------------------------------


def test_records_carry_the_line_they_start_on() -> None:
    text = 'phone,notes\n+14155550100,one\n\n+14155550101,"two\nlines"\n+14155550102,three\n'
    records = list(read_records(lines(text), ("phone",), "phone"))
    assert records == [
        Record(2, {"phone": "+14155550100", "notes": "one"}),
        Record(4, {"phone": "+14155550101", "notes": "two\nlines"}),
        Record(6, {"phone": "+14155550102", "notes": "three"}),
    ]


def test_known_columns_match_in_any_case_and_others_keep_theirs() -> None:
    text = " Phone ,Company Name\n+14155550100, Acme \n"
    (record,) = read_records(lines(text), ("phone",), "phone")
    assert record == Record(2, {"phone": "+14155550100", "Company Name": "Acme"})


def test_rows_with_the_wrong_number_of_fields_are_problems_and_reading_goes_on() -> None:
    text = "phone,name\n+14155550100\n+14155550101,b,extra\n,,\n+14155550102,c\n"
    records = list(read_records(lines(text), ("phone", "name"), "phone"))
    assert records == [
        Problem(2, None, "1 fields, but the header has 2"),
        Problem(3, None, "3 fields, but the header has 2"),
        Record(5, {"phone": "+14155550102", "name": "c"}),  # line 4 is blank (only commas)
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("name,company\nAda,Acme\n", 'line 1: no "phone" column (the header has: name, company)'),
        ("phone,name,Phone\n", 'line 1: column "phone" appears twice'),
        ("phone,,name\n", "line 1: column 2 has no name"),
        ('phone,name\n+14155550100,"unterminated\n', "line 2:"),
    ],
)
def test_file_level_problems_name_the_line(text: str, message: str) -> None:
    with pytest.raises(CsvFileError) as exc:
        list(read_records(lines(text), ("phone", "name"), "phone"))
    assert message in str(exc.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("phone,name\n+14155550100,Jos\xe9\n".encode("latin-1"))
    with path.open(newline="", encoding="utf-8-sig") as stream, pytest.raises(CsvFileError) as exc:
        list(read_records(stream, ("phone",), "phone"))
    assert "not UTF-8" in str(exc.value)


def test_trailing_columns_without_a_name_are_left_out_unless_something_is_under_them() -> None:
    text = "phone,name,,\n+14155550100,Ada,,\n+14155550101,Bob,,late\n"
    assert list(read_records(lines(text), ("phone", "name"), "phone")) == [
        Record(2, {"phone": "+14155550100", "name": "Ada"}),
        Problem(3, None, "a value in column 4, which has no name in the header"),
    ]


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("phone,name,notes", ","),
        ("phone;name;notes", ";"),
        ("phone\tname", "\t"),
        ("phone|name", "|"),
        ("phone", ","),  # one column: any will do
        ("name;phone;price, incl. VAT", ";"),  # only ";" gives a phone column
        ('phone,"notes; misc",x|y', ","),
        ("Phone ; Name", ";"),
    ],
)
def test_the_delimiter_is_the_one_that_gives_the_header_its_phone_column(
    header: str, delimiter: str
) -> None:
    assert detect_delimiter(header + "\r\n", "phone", "line 1") == delimiter


def test_a_header_no_delimiter_makes_sense_of_is_refused() -> None:
    with pytest.raises(CsvFileError) as exc:
        detect_delimiter("tel;name,title\n", "phone", "line 1")
    assert str(exc.value) == (
        'line 1: cannot tell whether "," or ";" separates the columns (neither gives a "phone"'
        " column): say which with --delimiter"
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_line_that_is_not_utf8_is_found_whatever_ends_the_lines(
    tmp_path: Path, newline: str
) -> None:
    path = tmp_path / "old.csv"
    path.write_bytes(
        newline.join(["phone,name", "+14155550100,Ada", "+1415555,Gü", ""]).encode("cp1252")
    )
    with open_lead_file(path) as source, pytest.raises(CsvFileError) as exc:
        list(source.records(LEAD_COLUMNS, PHONE))
    assert str(exc.value) == (
        'line 3 is not UTF-8 text: byte 0xFC after "+1415555,G" ("ü" in Windows-1252, which older'
        ' Excel saves CSV files in): pass --encoding cp1252, or save the file as "CSV UTF-8"'
    )


def test_a_utf16_file_is_known_by_its_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt"
    path.write_bytes("phone\tname\r\n+14155550100\tZoë\r\n".encode("utf-16"))
    with open_lead_file(path) as source:
        records = list(source.records(LEAD_COLUMNS, PHONE))
    assert records == [Record(2, {"phone": "+14155550100", "name": "Zoë"})]


# --- workbook cells --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number_format", "text"),
    [
        (4155550123, "General", "4155550123"),
        (4155550123.0, "General", "4155550123"),
        (14155550123.0, "0.00E+00", "14155550123"),
        (123, "00000", "00123"),
        (-5, "000", "-005"),
        ("00123", "@", "00123"),
        (0.1 + 0.2, "General", "0.3"),
        (12.5, "0.00", "12.5"),
        (1e-7, "General", "0.0000001"),
        (True, "General", "TRUE"),
        (None, "General", ""),
        (dt.datetime(2024, 3, 1), "yyyy-mm-dd", "2024-03-01"),
        (dt.datetime(2024, 3, 1), "General", "2024-03-01"),
        (dt.datetime(2024, 3, 1, 9, 30), "m/d/yy h:mm", "2024-03-01T09:30:00"),
        (dt.datetime(2024, 3, 1, 9, 30), "General", "2024-03-01T09:30:00"),
        (dt.datetime(1899, 12, 30, 9, 30), "h:mm", "09:30:00"),
        (dt.time(9, 30), "h:mm", "09:30:00"),
    ],
)
def test_workbook_cells_read_as_a_person_sees_them(
    value: Any, number_format: str, text: str
) -> None:
    assert cell_text(SimpleNamespace(value=value, number_format=number_format)) == text


def test_column_letters() -> None:
    assert [column_letter(n) for n in (1, 2, 26, 27, 52, 703)] == ["A", "B", "Z", "AA", "AZ", "AAA"]


# --- leads -----------------------------------------------------------------------------------


def test_leads_take_the_known_columns_and_put_the_rest_in_their_context() -> None:
    text = (
        "phone,name,lead_id,timezone,company,plan,notes\n"
        "(212) 555-0142,Bob Jones,L-7,America/Chicago,Bobco,pro,\n"
        "+14155550100,,,,Acme,,\n"
    )
    leads, problems = split(read_leads(lines(text), "US"))
    assert problems == []
    assert leads == [
        Lead(
            2,
            "+12125550142",
            "Bob Jones",
            "L-7",
            {"company": "Bobco", "plan": "pro"},
            "America/Chicago",
            "America/New_York",
        ),
        Lead(3, "+14155550100", None, None, {"company": "Acme"}, None, "America/Los_Angeles"),
    ]


def test_every_bad_row_is_reported_with_its_line_and_column() -> None:
    text = (
        "phone,name\n"
        "+14155550100,ok\n"
        ",no number\n"
        "12,too short\n"
        "+14155550101,ok\n"
        "(415) 555-0102,national without a region\n"
    )
    leads, problems = split(read_leads(lines(text), None))
    assert [lead.line for lead in leads] == [2, 5]
    assert [(p.line, p.column) for p in problems] == [(3, "phone"), (4, "phone"), (6, "phone")]
    assert "missing" in problems[0].message
    assert str(problems[2]).startswith('line 6, column phone: "(415) 555-0102" has no country')


def test_a_big_file_read_by_several_processes_gives_the_same_rows_in_the_same_order() -> None:
    """Past the first chunk (5,000 rows) the numbers are normalised in worker processes: every
    lead and every bad row comes back as one process would give it, in line order."""
    rows = ["phone,name,region"]
    for i in range(12_001):
        if i % 997 == 0:
            rows.append(f"not a number {i},Lead {i},x")
        elif i % 1_499 == 0:
            rows.append(f'"+1415555{i % 10_000:04d},too many",Lead {i}')
        else:
            rows.append(f"({415 + i % 3}) {200 + i // 10_000}-{i % 10_000:04d},Lead {i},")
    text = "\n".join(rows) + "\n"
    serial = list(read_leads(lines(text), "US"))
    parallel = list(read_leads(lines(text), "US", workers=2))
    assert parallel == serial
    leads, problems = split(parallel)
    assert len(leads) + len(problems) == 12_001
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert {p.line for p in problems} >= {2 + i for i in range(0, 12_001, 997)}
    numbers = list(read_numbers(lines(text), "US", workers=2))
    assert numbers == list(read_numbers(lines(text), "US"))


def test_do_not_call_files_need_only_a_phone_column() -> None:
    text = "Phone,reason\n+14155550100,asked\n(415) 555-0101,\nnope,\n"
    numbers, problems = split(read_numbers(lines(text), "US"))
    assert numbers == [Number(2, "+14155550100"), Number(3, "+14155550101")]
    assert [(p.line, p.column) for p in problems] == [(4, "phone")]


def test_the_example_campaign_is_200_valid_leads_in_several_zones() -> None:
    with EXAMPLE.open(newline="", encoding="utf-8-sig") as stream:
        leads, problems = split(read_leads(stream, "US"))
    assert problems == []
    assert len(leads) == 200
    assert len({lead.to_phone for lead in leads}) == 200  # type: ignore[union-attr]
    zones = {lead.timezone or lead.number_timezone for lead in leads}  # type: ignore[union-attr]
    assert {"America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"} <= zones
    assert all(lead.context.get("company") for lead in leads)  # type: ignore[union-attr]
