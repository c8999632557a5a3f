"""Phone numbers as people write them -> E.164, with the callee's time zone when the number
pins it down (so call windows apply in the callee's local time)."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType
from phonenumbers import timezone as number_timezones

_E164 = phonenumbers.PhoneNumberFormat.E164

_PARSE_PROBLEMS = {
    NumberParseException.NOT_A_NUMBER: "is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "is too short",
    NumberParseException.TOO_SHORT_NSN: "is too short",
    NumberParseException.TOO_LONG: "is too long",
}


class PhoneError(ValueError):
    """The number cannot be dialled; the message says why (it quotes the input)."""


@dataclass(frozen=True)
class Phone:
    e164: str
    timezone: str | None  # the number's zone when it maps to exactly one


def check_region(region: str | None) -> str | None:
    """``region`` upper-cased, or PhoneError if phonenumbers does not know it."""
    if region is None:
        return None
    upper = region.upper()
    if upper not in phonenumbers.SUPPORTED_REGIONS:
        raise PhoneError(
            f'unknown region "{region}" (a two-letter country code such as US, GB or DE)'
        )
    return upper


def parse_phone(raw: str, default_region: str | None) -> Phone:
    """``raw`` in E.164 or, with ``default_region``, national format -> a valid number."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            hint = (
                "has an unknown country code"
                if default_region or raw.startswith("+")
                else (
                    "has no country code: write it as +<country code><number> "
                    "or pass --default-region"
                )
            )
            raise PhoneError(f'"{raw}" {hint}') from None
        raise PhoneError(f'"{raw}" {_PARSE_PROBLEMS.get(exc.error_type, "is not valid")}') from None
    if number.extension:
        raise PhoneError(f'"{raw}" has an extension, which cannot be dialled')
    # number_type() is UNKNOWN exactly when is_valid_number() is false; calling it once (not
    # is_valid_number() and then time_zones_for_number(), which both compute it) saves a third
    # of the per-row cost on large files.
    kind = phonenumbers.number_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        raise PhoneError(
            f'"{raw}" is not a valid phone number (country code +{number.country_code})'
        )
    # A parsed number always has a country code; the stubs allow None.
    if phonenumbers.is_number_type_geographical(kind, number.country_code or 0):
        zones = number_timezones.time_zones_for_geographical_number(number)
    else:
        zones = number_timezones.time_zones_for_number(number)
    zone = zones[0] if len(zones) == 1 and zones[0] != number_timezones.UNKNOWN_TIMEZONE else None
    return Phone(phonenumbers.format_number(number, _E164), zone)
