"""The command line's user error: one ``error: ...`` line on stderr and exit status 1."""

from __future__ import annotations

from typing import IO, Any

import click


class UserError(click.ClickException):
    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)
