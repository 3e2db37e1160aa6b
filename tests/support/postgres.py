"""A real PostgreSQL server for the tests, on loopback, made and removed by the test run.

Debian's ``postgresql`` package provides the server binaries (``.ci/run`` installs it); the
run makes a throw-away cluster with ``initdb`` in a temporary folder, starts it with
``pg_ctl`` on a free port of 127.0.0.1, and gives each test a database of its own. The
cluster runs as the ``postgres`` user when the tests run as root (PostgreSQL refuses root).

Where the binaries are missing the PostgreSQL tests skip, saying how to install them, unless
``ORCHESTRATOR_REQUIRE_POSTGRES=1`` (set by CI) makes that a failure.

The cluster runs with ``fsync=off``: its durability is not what these tests test, and a
crash of the server is not among the faults they inject (they kill schedulers).

``python -m bench`` (workload F, :mod:`bench.scaleout`) starts its server with this class
too, ``durable=True`` (fsync on, as SQLite's ``FULL`` is), so there is one way to make a
throw-away server; pytest is imported only where a test run needs it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL = "apt-get install postgresql"
_names = itertools.count(1)


def find_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (``$ORCHESTRATOR_POSTGRES_BIN`` first); None
    when PostgreSQL is not installed."""
    configured = os.environ.get("ORCHESTRATOR_POSTGRES_BIN")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def require_postgres() -> Path:
    import pytest  # only a test run asks for this; the bench finds the binaries itself

    bindir = find_binaries()
    if bindir is not None and (bindir / "pg_ctl").exists():
        return bindir
    reason = f"no PostgreSQL server binaries here: {INSTALL}"
    if os.environ.get("ORCHESTRATOR_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster for the whole test run; :meth:`new_database` gives each test its own."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        #: fsync on and full page writes (a benchmark against SQLite's fsync per commit).
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.user = "orchestrator"
        self._run_as: str | None = "postgres" if os.geteuid() == 0 else None
        if self._run_as is not None:
            account = pwd.getpwnam(self._run_as)
            os.chown(self.dir, account.pw_uid, account.pw_gid)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=120,
            user=self._run_as,
            cwd=self.dir,
        )

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", self.user, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        unsafe = "" if self.durable else "-c fsync=off -c full_page_writes=off "
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} {unsafe}"
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"test_{os.getpid()}_{next(_names)}"
        subprocess.run(
            [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, name],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return self.url(name)

    def log(self) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""
