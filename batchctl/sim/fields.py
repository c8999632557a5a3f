"""Checks for the values of a scenario file: each raises ScenarioError naming the key, the
expected value and what it got."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ScenarioError(ValueError):
    """A scenario key is unknown or its value is bad; the message names the key."""


def check_keys(doc: Any, allowed: Iterable[str], where: str) -> None:
    allowed = list(allowed)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{where}: expected a JSON object, got {doc!r}")
    unknown = [k for k in doc if not k.startswith("_") and k not in allowed]
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)}; "
            "keys starting with _ are comments)"
        )


def number(value: Any, key: str, *, minimum: float | None = None, integer: bool = False) -> float:
    # bool is an int in Python, but true/false is never a sensible count or duration.
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or (minimum is not None and value < minimum):
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum:g}" if minimum is not None else ""
        raise ScenarioError(f"{key}: expected {kind}{bound}, got {value!r}")
    return value


def rate(value: Any, key: str) -> float:
    share = number(value, key, minimum=0.0)
    if share > 1:
        raise ScenarioError(f"{key}: expected a number from 0 to 1, got {value!r}")
    return float(share)


def seconds_range(value: Any, key: str) -> tuple[float, float]:
    """Seconds as one number or a [low, high] pair."""
    pair = value if isinstance(value, list) else [value, value]
    if len(pair) != 2:
        raise ScenarioError(f"{key}: expected seconds or [low, high], got {value!r}")
    low, high = (float(number(v, key, minimum=0.0)) for v in pair)
    if low > high:
        raise ScenarioError(f"{key}: low {low:g} is above high {high:g}")
    return low, high


def weights(value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, float]:
    check_keys(value, allowed, key)
    parsed = {k: float(number(v, f"{key}.{k}", minimum=0.0)) for k, v in value.items()}
    if sum(parsed.values()) <= 0:
        raise ScenarioError(f"{key}: at least one weight must be above 0")
    return parsed


def outcome_list(value: Any, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """One outcome, or a non-empty list of them (one per attempt; the last repeats)."""
    planned = value if isinstance(value, list) else [value]
    bad = [v for v in planned if v not in allowed]
    if not planned or bad:
        raise ScenarioError(
            f"{key}: expected an outcome or a non-empty list of them "
            f"(allowed: {', '.join(allowed)}), got {value!r}"
        )
    return tuple(planned)
