"""Tests that need a Debian package beyond python3 (PgBouncer, pg_cron, Chromium): .ci/run
installs them in CI and sets CI there."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")  # as .ci/run reads it


def missing_package(what: str, packages: str) -> NoReturn:
    """Skips the test, naming what to install; in CI, where it is installed, fails instead: a
    skip there would hide work not done."""
    message = f"needs {what}: apt-get install {packages}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
