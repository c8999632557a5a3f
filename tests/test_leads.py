"""Reading lead CSV files and normalising numbers (batchctl.leads), without a database: every
problem is found, with its line and column, and nothing stops at the first one."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pytest

from batchctl.leads.csvfile import CsvFileError, Problem, Record, read_records
from batchctl.leads.phones import PhoneError, check_region, parse_phone
from batchctl.leads.rows import Lead, Number, read_leads, read_numbers

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "leads.csv"


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
