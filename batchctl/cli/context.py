"""What every command gets from the top-level options (click passes it as ``ctx.obj``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from batchctl import migrate
from batchctl.cli.errors import UserError
from batchctl.conninfo import database_target
from batchctl.database import connect, resolve_database_url
from batchctl.embedded import EmbeddedUrl


@dataclass
class AppContext:
    database_url_option: str | None
    read_url_option: str | None = None
    _database_url: str | None = field(default=None, init=False, repr=False)
    _ready: bool = field(default=False, init=False, repr=False)
    _read_ready: bool = field(default=False, init=False, repr=False)

    def database_url(self, *, ready: bool = True) -> str:
        """Resolved on first use: commands that need no database never start the embedded
        server, and one invocation starts it at most once (the URL keeps its handle alive).

        ``ready``: the schema must be this version's. The embedded database is batchctl's own
        and is set up or upgraded on first use; any other database that is not gets an error
        saying to run `batchctl db upgrade` (which, like the other `db` commands, passes
        ``ready=False``)."""
        if self._database_url is None:
            self._database_url = resolve_database_url(self.database_url_option)
        if ready and not self._ready:
            make_ready(self._database_url)
            self._ready = True
        return self._database_url

    def read_url(self) -> str:
        """Where a command that only reads reads from: the --read-url database (a standby, so
        that a big report never loads the primary) when given, else the database."""
        if self.read_url_option is None:
            return self.database_url()
        if not self._read_ready:
            make_ready(self.read_url_option)
            self._read_ready = True
        return self.read_url_option

    def database_target(self) -> str | None:
        """The database in words for error messages, once it is known."""
        return database_target(self._database_url) if self._database_url else None


def make_ready(url: str) -> None:
    with connect(url) as conn:
        lag = migrate.schema_lag(conn)
    if lag is None:
        return
    if not isinstance(url, EmbeddedUrl):
        raise UserError(f"the {database_target(url)} {lag}: {migrate.UPGRADE_HINT}")
    print(f"batchctl: the embedded database {lag}: upgrading it", file=sys.stderr)
    migrate.upgrade(url)
