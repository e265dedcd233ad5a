"""One writer per run folder: an exclusive lock that the kernel releases when its process ends, however it ends."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from breakout_sb3.errors import BreakoutSB3Error

# In the run folder; it stays there when released (the kernel lock is what counts, not the file's existence), and
# holds a description of its last holder.
LOCK_FILE = "run.lock"
# How long a writer waits for the lock: a reader's look (current_writer) holds it for a few microseconds.
WAIT_S = 1.0


class RunLockedError(BreakoutSB3Error):
    """Another process is writing the run folder."""


class RunLock:
    """
    An exclusive ``flock`` on ``<run>/run.lock`` (through ``filelock``), taken by every command that writes a run
    folder before it touches anything there, and released when the command ends; ``kill -9`` or a power cut
    releases it too, so a crashed run never stays locked. Readers (evaluate, record, plot, rl-zoo3's scripts) take
    no lock. The file describes its holder (pid, host, command, since when) for the message a second writer gets.
    """

    def __init__(self) -> None:
        self._lock: FileLock | None = None
        self.folder: Path | None = None
        # the command as the user typed it (rl-zoo3's run swaps sys.argv for its own flags later)
        self.command = " ".join(["breakout-sb3", *sys.argv[1:]])

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self, folder: str | Path) -> None:
        """
        :param folder: the run folder, which must exist
        :raise RunLockedError: if another process holds the lock (nothing is changed then)
        """
        folder = Path(folder)
        if self._lock is not None:
            if self.folder is not None and folder.resolve() == self.folder.resolve():
                return
            raise RuntimeError(f"already holding the lock of {self.folder}")
        path = folder / LOCK_FILE
        lock = FileLock(path, timeout=WAIT_S)
        try:
            lock.acquire()
        except Timeout:
            raise RunLockedError(f"{folder} is being written by {describe_holder(path)}; one writer per run") from None
        self._lock, self.folder = lock, folder
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        path.write_text(json.dumps(holder) + "\n")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        self._lock = self.folder = None


@contextmanager
def run_lock(folder: str | Path) -> Iterator[RunLock]:
    """Hold the lock of the run ``folder`` for the ``with`` block (see :class:`RunLock`)."""
    lock = RunLock()
    lock.acquire(folder)
    try:
        yield lock
    finally:
        lock.release()


def describe_holder(path: Path) -> str:
    """:return: who holds the lock file ``path``, as its holder described itself"""
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} on {holder['host']} ('{holder['command']}', since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):  # being written at this instant
        return "another process"


def current_writer(folder: str | Path) -> str | None:
    """
    :return: who is writing the run ``folder`` now (its lock's holder, as it described itself), None if nobody.
        Read-only: it takes the lock shared for an instant, which a writer starting then waits out (``WAIT_S``).
    """
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_holder(path)
    finally:
        os.close(fd)  # releases the shared lock, if taken
    return None
