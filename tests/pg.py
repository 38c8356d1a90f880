"""A real PostgreSQL server for the store's tests, started from Debian's binaries.

One server per test session (``initdb`` into a temporary directory, ``pg_ctl start`` on a free
loopback port, fsync off: a test database is thrown away anyway), and one empty database per
test (made once, emptied after each test and handed to the next). PostgreSQL refuses to run as root,
so under root the server runs as the ``postgres`` user that Debian's package creates.

A test folder or module runs its tests on both backends by importing the parametrized
:func:`db_url` fixture (``from tests.pg import db_url``), which overrides the SQLite-only one
of ``tests/conftest.py`` there; the ``store`` fixture, built on ``db_url``, follows. Ids are
``sqlite`` and ``postgresql``: ``-k sqlite`` runs the SQLite half alone (and starts no server).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

__all__ = [
    "BACKENDS",
    "CHECK_FAILED",
    "FOREIGN_KEY_FAILED",
    "PostgresServer",
    "db_url",
    "find_bindir",
    "postgres_server",
]

BACKENDS = ("sqlite", "postgresql")
# How each backend words a refused row, for pytest.raises(match=...).
CHECK_FAILED = "CHECK constraint failed|violates check constraint"
FOREIGN_KEY_FAILED = "FOREIGN KEY constraint failed|violates foreign key constraint"
_SETUP_HINT = "PostgreSQL's server binaries (initdb, pg_ctl) are missing: run scripts/setup"


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` live: ``pg_config --bindir`` (Debian's libpq-dev
    answers with the server's folder), else the newest /usr/lib/postgresql/*/bin, else PATH
    (on this image /usr/local/bin/initdb links into /usr/lib/postgresql/15/bin)."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        )
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: int(Path(p).parent.name))][::-1]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path  # owned by the server's user: data directory, socket and log
    port: int
    user: list[str]  # the command prefix that runs a binary as the server's user
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _free: list[str] = field(default_factory=list)  # emptied databases, ready to hand out

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def acquire(self) -> str:
        """An empty database of the caller's own until :meth:`release`.

        CREATE DATABASE copies a template's 7 MB of catalogs (0.3 s here, whichever
        strategy), so a released database is emptied and handed out again instead.
        """
        if self._free:
            return self._free.pop()
        name = f"neurons_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def release(self, name: str) -> None:
        """Empty ``name`` (its one schema, with every table and sequence the test made) for
        the next test; drop it where that fails."""
        with self._admin() as conn:
            # A test may leave an engine undisposed: its connections would hold locks.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
        try:
            with psycopg.connect(
                host="127.0.0.1", port=self.port, user="postgres", dbname=name, autocommit=True
            ) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
        except psycopg.Error:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        self._free.append(name)

    def stop(self) -> None:
        subprocess.run(
            [*self.user, str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir),
             "-m", "immediate", "-s"],
            check=False, capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> PostgresServer:
    """initdb and start a server on a free loopback port; the caller stops it."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(_SETUP_HINT, pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="neurons-pg-"))
    user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.fail("running as root needs runuser to start PostgreSQL as postgres")
        shutil.chown(root, user="postgres", group="postgres")
        user = [runuser, "-u", "postgres", "--"]
    server = PostgresServer(bindir=bindir, root=root, port=_free_port(), user=user)
    try:
        subprocess.run(
            [*user, str(bindir / "initdb"), "-D", str(server.datadir), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        options = (
            f"-k {root} -p {server.port} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [*user, str(bindir / "pg_ctl"), "start", "-D", str(server.datadir), "-w",
             "-t", "60", "-l", str(root / "server.log"), "-o", options],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        log = root / "server.log"
        tail = log.read_text()[-2000:] if log.is_file() else ""
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}\n{tail}")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The test's own empty database: a SQLite file (nested, so opening it also creates the
    parent), or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'neurons.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.acquire()
    try:
        yield server.url(name)
    finally:
        server.release(name)
