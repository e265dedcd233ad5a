"""
A real PostgreSQL server for the tests, started in a temporary folder and reachable only on a unix socket there.

It needs PostgreSQL's server programs (``initdb``, ``pg_ctl``): on Debian under ``/usr/lib/postgresql/<version>/bin``
(``apt-get install postgresql``; ``.ci/run`` installs them). Without them the tests that use it fail, they are not
skipped. ``initdb`` refuses to run as root: as root, the server runs as the ``postgres`` user Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

SERVER_USER = "postgres"


@dataclass
class PostgresServer:
    """
    A running server: its unix socket folder, and the database URL of any of its databases; it can be stopped and
    started again (a test that does must start it again, the other tests share it).
    """

    socket_dir: Path
    programs: Path

    def stop(self) -> None:
        """Stop the server as an administrator does (``pg_ctl stop -m fast``): its connections are terminated."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start the stopped server, with the options it had."""
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c max_connections=50"
        self._pg_ctl("-l", str(self.socket_dir / "server.log"), "-o", options, "start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: the server's connections are terminated, and it answers again."""
        # with its log file: otherwise the server writes to pg_ctl's output, which would stay open
        self._pg_ctl("-l", str(self.socket_dir / "server.log"), "-m", "fast", "restart")

    def _pg_ctl(self, *args: str) -> None:
        result = _run(self.programs, "pg_ctl", "-D", str(self.socket_dir / "data"), "-w", *args)
        assert result.returncode == 0, f"pg_ctl {' '.join(args)} failed: {result.stderr}"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def create_database(self) -> str:
        """:return: the URL of a new, empty database"""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.socket_dir), user="postgres", dbname="postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def server_programs() -> Path:
    """:return: the folder of ``initdb`` and ``pg_ctl`` (the newest Debian version, else the PATH's)"""
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL's server programs (initdb, pg_ctl) are missing: install them (Debian: apt-get install "
        "postgresql; .ci/run does it)",
        pytrace=False,
    )


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.fail(f"initdb refuses root and there is no '{SERVER_USER}' user to run it as", pytrace=False)
    return ["runuser", "-u", SERVER_USER, "--", *command]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, on a unix socket in a temporary folder, stopped at the end."""
    programs = server_programs()
    base = Path(tempfile.mkdtemp(prefix="breakout-sb3-pg-"))  # short: a socket path has at most 107 characters
    if os.geteuid() == 0:
        user = pwd.getpwnam(SERVER_USER)
        os.chown(base, user.pw_uid, user.pw_gid)
    data = base / "data"
    try:
        result = _run(programs, "initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        assert result.returncode == 0, f"initdb failed: {result.stderr}"
        server = PostgresServer(base, programs)
        try:
            server.start()
        except AssertionError as e:
            raise AssertionError(f"{e}\n{_read(base / 'server.log')}") from None
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            _run(programs, "pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _run(programs: Path, program: str, *args: str) -> subprocess.CompletedProcess:
    command = _as_server_user([str(programs / program), *args])
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new database of the session's server, for one test."""
    return postgres_server.create_database()


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
