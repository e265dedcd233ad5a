"""
A study's database outlived: a storage whose every call waits out an outage of the database server (a restart, a
failover, a network blip), and trial heartbeats that resume as soon as the server is back.

Optuna's RDBStorage raises on the first failed call, and its heartbeat thread ends at the first failed heartbeat: the
running trial then looks dead to the other workers. Here each call is tried again with backoff, for up to
``--db-wait`` seconds from the start of the outage; past that the worker stops with :class:`StorageUnreachable`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy.exc
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.tune.optuna_insides import RDB_DATABASE_METHODS

# sysexits.h's EX_TEMPFAIL: a temporary failure, which running the worker again later may not meet.
STORAGE_UNREACHABLE_EXIT = 75
# The backoff between tries: from FIRST_DELAY_S, doubled up to MAX_DELAY_S, so that heartbeats resume within a few
# seconds of the server's return.
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 2.0


class StorageUnreachable(BreakoutSB3Error):
    """The storage stayed unreachable for longer than ``--db-wait``: the worker stops, exit status 75."""

    exit_status = STORAGE_UNREACHABLE_EXIT


def outage_error(error: BaseException) -> sqlalchemy.exc.SQLAlchemyError | None:
    """
    :return: the database error behind ``error`` if it means that the server is unreachable or the connection was
        lost (SQLAlchemy's OperationalError: refused, reset, terminated by the administrator, the server starting up
        or shutting down; a connection SQLAlchemy invalidated), else None. Optuna raises most of them as
        StorageInternalError, caused by the database error.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return seen
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.connection_invalidated:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Outage:
    """
    The state of a worker's connection to its storage, shared by its threads: one line when the connection is lost,
    one when it is back; past ``limit`` seconds of one outage, the worker gives up.

    :param url: the storage's URL, as shown to the user
    :param limit: the seconds an outage is waited out (``--db-wait``)
    """

    def __init__(self, url: str, limit: float):
        self.url = url
        self.limit = limit
        self.gave_up = threading.Event()
        self.error: StorageUnreachable | None = None
        self._since: float | None = None
        self._lock = threading.Lock()

    def failed(self, error: sqlalchemy.exc.SQLAlchemyError) -> float:
        """
        A call failed because of an outage.

        :return: the seconds left to wait it out
        :raise StorageUnreachable: the outage has lasted ``limit`` seconds
        """
        with self._lock:
            now = time.monotonic()
            if self._since is None:
                self._since = now
                print(
                    f"{_clock()} Lost the storage {self.url} ({database_error(error)}): waiting for it, up to "
                    f"{self.limit:g} s (--db-wait)",
                    flush=True,
                )
            left = self._since + self.limit - now
            if left <= 0:
                if self.error is None:
                    self.error = StorageUnreachable(
                        f"the storage {self.url} has been unreachable for {self.limit:g} s (--db-wait): "
                        f"{database_error(error)}"
                    )
                    self.gave_up.set()
                raise self.error
            return left

    def recovered(self) -> None:
        """A call succeeded."""
        if self._since is None:
            return
        with self._lock:
            if self._since is not None and not self.gave_up.is_set():
                back = f"{_clock()} The storage {self.url} is back, after {time.monotonic() - self._since:.0f} s"
                print(back, flush=True)
                self._since = None


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def database_error(error: sqlalchemy.exc.SQLAlchemyError) -> str:
    """:return: the driver's message, on one line (without SQLAlchemy's statement and link)"""
    original = getattr(error, "orig", None)
    return one_line(str(original) if original is not None else str(error).split("\n(Background")[0])


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


class PatientRDBStorage(RDBStorage):
    """
    Optuna's RDBStorage whose database calls wait out an outage of the server: a call that fails because the server
    is unreachable, or because the connection was lost, is tried again with backoff (on a new connection), until it
    succeeds or the outage has lasted :attr:`Outage.limit` seconds (then :class:`StorageUnreachable`). Everything else
    is Optuna's: the tables, the heartbeats, the detection of stale trials and their callback.

    :param url: the database URL
    :param outage: the connection's state, shared by the worker's threads
    :param kwargs: RDBStorage's other arguments
    """

    def __init__(self, url: str, *, outage: Outage, **kwargs: Any):
        self.outage = outage
        self._calls = threading.local()
        super().__init__(url, **kwargs)

    def patiently(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """:return: ``call(*args, **kwargs)``, tried again while the database is unreachable"""
        if getattr(self._calls, "active", False):  # a call within a call: the outer one tries again
            return call(*args, **kwargs)
        self._calls.active = True
        try:
            delay = FIRST_DELAY_S
            while True:
                try:
                    result = call(*args, **kwargs)
                except Exception as e:
                    error = outage_error(e)
                    if error is None:
                        raise
                    self._drop_session()
                    time.sleep(min(delay, self.outage.failed(error)))
                    delay = min(2 * delay, MAX_DELAY_S)
                    continue
                self.outage.recovered()
                return result
        finally:
            self._calls.active = False

    def _drop_session(self) -> None:
        # The thread's session may hold the dead connection: the next try starts a new one.
        with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
            self.remove_session()

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        tries = 0

        def once() -> bool:
            nonlocal tries
            tries += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                # A try whose commit reached the server, but whose answer was lost with the connection.
                if tries > 1 and RDBStorage.get_trial(self, trial_id).state == state:
                    return True
                raise

        return self.patiently(once)


def _patient(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    @functools.wraps(method)
    def patient(self: PatientRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self.patiently(method, self, *args, **kwargs)

    return patient


for _name in RDB_DATABASE_METHODS:
    setattr(PatientRDBStorage, _name, _patient(_name))


class TrialHeartbeat:
    """
    Records a running trial's heartbeat every ``interval`` seconds, in a thread that a failed heartbeat does not end
    (Optuna's does): through a :class:`PatientRDBStorage`, a heartbeat waits out an outage, and the next one follows
    as soon as the server is back. The thread ends when the trial does, or when the worker gives up the storage.

    :param storage: the study's storage
    :param trial_id: the trial's id in the storage
    :param interval: seconds between heartbeats
    """

    def __init__(self, storage: BaseStorage, trial_id: int, interval: int):
        self.storage = storage
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> TrialHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        # A heartbeat waiting out an outage is not waited for: once told, the trial takes no heartbeat into account.
        self._thread.join(timeout=1.0)

    def _beat(self) -> None:
        said = False
        while True:
            try:
                self.storage.record_heartbeat(self.trial_id)
            except StorageUnreachable:
                return  # the worker stops its trial (Outage.gave_up)
            except Exception as e:  # not an outage: said once, and tried again at the next heartbeat
                if not said:
                    print(f"{_clock()} A heartbeat of trial id {self.trial_id} failed: {e!r}", flush=True)
                    said = True
            if self._stop.wait(self.interval):
                return
