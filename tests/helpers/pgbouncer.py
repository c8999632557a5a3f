"""A real PgBouncer in transaction pooling mode in front of the tests' PostgreSQL, started and
stopped by the test that needs it.

It listens on 127.0.0.1 at a free port (no socket of its own) and sends every database name to
the server of ``server_url`` (its socket directory or host), logging in as the client did
(trust: the logins it accepts are listed in its auth file, with the password the server wants,
if any). As root it runs as an unprivileged user: the owner of the server's socket directory
(which can reach the socket), else ``postgres`` (else ``nobody``).

    with running_pgbouncer(pg_server_url, ["postgres"], pool_size=1, log=path) as bouncer:
        psycopg.connect(bouncer.url(dbname))
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from batchctl.conninfo import conninfo_params
from packages import missing_package
from ports import free_port

PACKAGE = "pgbouncer"
CONSOLE = "pgbouncer"  # the admin console's database name


def pgbouncer_binary() -> str | None:
    """Debian's package installs it in /usr/sbin, which a user's PATH may lack."""
    found = shutil.which("pgbouncer")
    if found is None and os.access("/usr/sbin/pgbouncer", os.X_OK):
        found = "/usr/sbin/pgbouncer"
    return found


def require_pgbouncer() -> str:
    """The binary, else the test skips naming the package (CI installs it: there it fails)."""
    binary = pgbouncer_binary()
    if binary is None:
        missing_package("PgBouncer", PACKAGE)
    return binary


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


def _run_as(server_host: str) -> str | None:
    """The user to run as: None unless we are root (PgBouncer refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    if server_host.startswith("/"):
        owner = pwd.getpwuid(os.stat(server_host).st_uid).pw_name
        if owner != "root":
            return owner
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    def __init__(
        self,
        binary: str,
        server_url: str,
        logins: Mapping[str, str],
        *,
        pool_size: int,
        log: Path,
    ) -> None:
        self.binary = binary
        self.server = conninfo_params(server_url)
        # Each login and the password the server asks for (the server URL's own, if any).
        self.logins = dict(logins)
        self.admin = self.server.get("user", "postgres")
        self.logins.setdefault(self.admin, self.server.get("password", ""))
        self.pool_size = pool_size
        self.log = log
        self.port = free_port()
        self.user = _run_as(self.server.get("host", ""))
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    def url(self, dbname: str, user: str | None = None, **params: Any) -> str:
        """A conninfo of ``dbname`` through PgBouncer, as ``user`` (default: the server URL's)."""
        return make_conninfo(
            "", host="127.0.0.1", port=self.port, dbname=dbname, user=user or self.admin,
            **params,
        )  # fmt: skip

    def console(self) -> psycopg.Connection[dict[str, Any]]:
        """A session on PgBouncer's admin console (SHOW POOLS, SHOW SERVERS, SHOW STATS)."""
        return psycopg.connect(
            self.url(CONSOLE), autocommit=True, row_factory=dict_row, prepare_threshold=None
        )

    def servers(self, dbname: str) -> list[dict[str, Any]]:
        """PgBouncer's connections to the server for ``dbname``, one row each (SHOW SERVERS)."""
        with self.console() as console:
            return [r for r in console.execute("SHOW SERVERS") if r["database"] == dbname]

    def stats(self, dbname: str) -> dict[str, Any]:
        """SHOW STATS' row of ``dbname``: total_xact_count, total_query_count, ..."""
        with self.console() as console:
            (row,) = [r for r in console.execute("SHOW STATS") if r["database"] == dbname]
            return row

    def start(self, timeout: float = 15.0) -> PgBouncer:
        # Not under the test's tmp_path: an unprivileged user must reach its files.
        self._dir = Path(tempfile.mkdtemp(prefix="batchctl-pgbouncer-"))
        config = self._dir / "pgbouncer.ini"
        users = self._dir / "users.txt"
        users.write_text(
            "".join(
                f"{_quote(name)} {_quote(password)}\n" for name, password in self.logins.items()
            )
        )
        target = " ".join(
            f"{key}={self.server[key]}" for key in ("host", "port") if self.server.get(key)
        )
        config.write_text(
            "[databases]\n"
            f"* = {target}\n"  # any database, logged in as the client logged in to PgBouncer
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"admin_users = {self.admin}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "reserve_pool_size = 0\n"
            "max_client_conn = 500\n"
        )
        command = [self.binary, str(config)]
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self._dir, config, users):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            command = [self.binary, "-u", self.user, str(config)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (PgBouncer's immediate shutdown), SIGKILL if it does not go."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        """Until its console answers; fails with its log if it exits or never answers."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"pgbouncer exited {self.process.returncode}:\n{self.tail()}")
            try:
                with self.console() as console:
                    console.execute("SHOW VERSION")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"pgbouncer not answering after {timeout} s:\n{self.tail()}"
                    ) from None
            time.sleep(0.02)


@contextmanager
def running_pgbouncer(
    server_url: str,
    logins: Mapping[str, str] | None = None,
    *,
    pool_size: int,
    log: Path,
) -> Iterator[PgBouncer]:
    """A started PgBouncer (the test skips if there is none), stopped on leaving, also when the
    test fails. ``logins``: the roles it lets in besides the server URL's, each with the password
    the server wants ("" for none)."""
    bouncer = PgBouncer(require_pgbouncer(), server_url, logins or {}, pool_size=pool_size, log=log)
    try:
        yield bouncer.start()
    finally:
        bouncer.stop()
