"""What every command gets from the top-level options (click passes it as ``ctx.obj``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from batchctl.database import resolve_database_url


@dataclass
class AppContext:
    database_url_option: str | None
    _database_url: str | None = field(default=None, init=False, repr=False)

    def database_url(self) -> str:
        """Resolved on first use: commands that need no database never start the embedded
        server, and one invocation starts it at most once (the URL keeps its handle alive)."""
        if self._database_url is None:
            self._database_url = resolve_database_url(self.database_url_option)
        return self._database_url
