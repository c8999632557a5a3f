"""Generates the number-to-jurisdiction data migration (migrations/0018_jurisdiction_data.sql)
from the ``phonenumbers`` library's metadata and geocoder.

The data is batchctl.phone_prefixes (migrations/0017_jurisdictions.sql): a number's digits after
the ``+`` start with one prefix of it, the longest of which gives the number's country and, for
the North American Numbering Plan, its subdivision (ISO 3166-2):

- every country calling code -> the country phonenumbers names first for it (its "main"
  country: 1 -> US, 44 -> GB, 7 -> RU);
- every NANP area code (1 + NPA) that phonenumbers assigns to a country -> that country, and
  for the US and Canada the state or province, read from the geocoder's English descriptions:
  a state or province name ("Florida", "Ontario"), "City, ST" ("Miami, FL"), or, when the area
  code itself has none, the one state all its longer prefixes name. A description that names no
  single subdivision (or several) gives none: the country's rules still apply.

Regenerate (e.g. after upgrading phonenumbers) and commit the result as a NEW migration: the
output is an upsert, so a later file replaces what an earlier one inserted, and migrations are
append-only history::

    .venv/bin/python scripts/jurisdiction_data.py > migrations/00NN_jurisdiction_data.sql

The output depends only on the phonenumbers version (named in its header), not on the machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA

US_STATES: dict[str, str | None] = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington State": "WA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
    "Washington D.C.": "DC", "Washington, D.C.": "DC", "District of Columbia": "DC",
}  # fmt: skip
CA_PROVINCES: dict[str, str | None] = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Newfoundland": "NL", "Nova Scotia": "NS",
    "Northwest Territories": "NT", "Nunavut": "NU", "Ontario": "ON",
    "Prince Edward Island": "PE", "Quebec": "QC", "Québec": "QC", "Saskatchewan": "SK",
    "Yukon": "YT", "Nova Scotia/Prince Edward Island": None,
}  # fmt: skip
SUBDIVISIONS: dict[str, dict[str, str | None]] = {"US": US_STATES, "CA": CA_PROVINCES}
SAMPLE_SUBSCRIBERS = ("2345678", "5550123", "7654321", "3456789", "2001234")


def subdivision_of(country: str, description: str) -> str | None:
    """The ISO 3166-2 code a geocoder description names, or None when it names none or
    several ("Nova Scotia/Prince Edward Island")."""
    names = SUBDIVISIONS.get(country)
    if names is None:
        return None
    if description in names:
        code = names[description]
        return None if code is None else f"{country}-{code}"
    _, comma, tail = description.rpartition(", ")
    codes = {c for c in names.values() if c}
    if comma and tail in codes:
        return f"{country}-{tail}"
    return None


def nanp_country(npa: str) -> str | None:
    for subscriber in SAMPLE_SUBSCRIBERS:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(f"+1{npa}{subscriber}"))
        if region:
            return str(region)
    return None


def nanp_subdivision(country: str, npa: str) -> str | None:
    prefix = f"1{npa}"
    own = GEOCODE_DATA.get(prefix, {}).get("en")
    if own:
        return subdivision_of(country, own)
    # No description for the area code itself: the one subdivision its longer prefixes name.
    found = {
        subdivision_of(country, names["en"])
        for key, names in GEOCODE_DATA.items()
        if key.startswith(prefix) and "en" in names
    }
    return found.pop() if len(found) == 1 else None


def rows() -> Iterator[tuple[str, str, str | None]]:
    for code, regions in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()):
        main = regions[0]
        if len(main) == 2 and main.isalpha() and main.isupper():  # not "001" (non-geographic)
            yield str(code), main, None
    for n in range(200, 1000):
        npa = f"{n:03d}"
        country = nanp_country(npa)
        if country:
            yield f"1{npa}", country, nanp_subdivision(country, npa)


BACKFILL = """
-- Entries already waiting to be dialled get their jurisdiction too: the rules apply to every
-- live entry from this upgrade on.
UPDATE batchctl.batch_entries e
   SET country = m.country, subdivisions = m.subdivisions
  FROM (SELECT q.id, x.country,
               CASE WHEN x.subdivision IS NULL THEN '{}'
                    ELSE ARRAY[x.subdivision] END AS subdivisions
          FROM batchctl.batch_entries q
         CROSS JOIN LATERAL (
             SELECT p.country, p.subdivision FROM batchctl.phone_prefixes p
              WHERE p.prefix IN (substr(q.to_phone, 2, 1), substr(q.to_phone, 2, 2),
                                 substr(q.to_phone, 2, 3), substr(q.to_phone, 2, 4))
              ORDER BY length(p.prefix) DESC LIMIT 1) x
         WHERE q.status IN ('queued', 'running', 'dispatched') AND q.country IS NULL) m
 WHERE e.id = m.id;
"""


def literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def main() -> None:
    out = sys.stdout
    out.write(
        "-- Generated by scripts/jurisdiction_data.py from phonenumbers "
        f"{phonenumbers.__version__}; do not edit.\n"
        "-- A number's country (calling code) and, in the North American plan, its state or\n"
        "-- province (area code): see the script's docstring and docs/compliance.md.\n"
        "INSERT INTO batchctl.phone_prefixes (prefix, country, subdivision) VALUES\n"
    )
    values = [f"    ('{p}', '{c}', {literal(s)})" for p, c, s in rows()]
    out.write(",\n".join(values))
    out.write(
        "\nON CONFLICT (prefix) DO UPDATE\n"
        "    SET country = EXCLUDED.country, subdivision = EXCLUDED.subdivision;\n"
    )
    out.write(BACKFILL)


if __name__ == "__main__":
    main()
