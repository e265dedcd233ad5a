"""
Where a ``breakout-sb3 tune`` study lives: any storage URL Optuna accepts, opened with heartbeats, and the study
created once and joined by every worker that runs the same command.
"""

from __future__ import annotations

import difflib
import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import StudyDirection

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.ranges import TUNE_FLAGS, check_flags
from breakout_sb3.settings import TUNE
from breakout_sb3.tune.retry import Outage, PatientRDBStorage, database_error, one_line

# Optuna's study_name column: VARCHAR(512).
MAX_STUDY_NAME = 512
# A server that does not answer (a dropped packet, a firewall) fails the connection after this many seconds.
CONNECT_TIMEOUT_S = 10
# How long a worker waits for the worker that created the study to describe it.
DESCRIBE_TIMEOUT_S = 30
# Opening a storage whose tables another worker is creating at the same moment: tries.
CREATE_TABLES_ATTEMPTS = 5
STUDY_ATTR = "breakout-sb3"
DIALECTS = ("sqlite", "postgresql", "mysql", "oracle", "mssql")


@dataclass(frozen=True)
class Heartbeat:
    """
    A worker killed mid-trial: every ``interval`` seconds a running trial records a heartbeat; once a trial has
    none for ``grace_period`` seconds, the next worker to start a trial marks it failed and runs its parameters
    again, up to ``max_retry`` times (Optuna's RetryHeartbeatStaleTrialCallback).
    """

    interval: int = TUNE["--heartbeat-interval"].default
    grace_period: int = TUNE["--grace-period"].default
    max_retry: int = TUNE["--max-retry"].default

    def check(self) -> None:
        """Checks each value's range, and that a running trial's heartbeats come within the grace period."""
        given = {
            "--heartbeat-interval": self.interval,
            "--grace-period": self.grace_period,
            "--max-retry": self.max_retry,
        }
        check_flags(given, TUNE_FLAGS, "tune")
        if self.grace_period <= self.interval:
            raise BreakoutSB3Error(
                f"tune: --grace-period ({self.grace_period} s) must be longer than --heartbeat-interval "
                f"({self.interval} s), or running trials would be taken for dead ones"
            )


def is_journal_file(url: str) -> bool:
    """:return: whether ``url`` names an Optuna journal file (rl-zoo3's convention: a path ending in ``.log``)"""
    return url.endswith(".log")


def is_local(url: str) -> bool:
    """:return: whether ``url`` is a file on this machine (SQLite or a journal file) rather than a server"""
    return is_journal_file(url) or url.startswith("sqlite:")


def shown_url(url: str) -> str:
    """:return: ``url`` with its password hidden"""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def parse_url(url: str) -> sqlalchemy.engine.URL | None:
    """
    :param url: an SQLAlchemy database URL (``sqlite:///logs/tune.db``, ``postgresql://user@host/db``...), or a
        journal file ending in ``.log``
    :return: the parsed database URL (None for a journal file)
    :raise BreakoutSB3Error: an empty or malformed URL, an unknown database kind
    """
    if not url.strip():
        raise BreakoutSB3Error("tune: --storage is empty")
    if is_journal_file(url):
        return None
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise BreakoutSB3Error(
            f"--storage {url!r} is not a database URL (for example sqlite:///logs/tune.db, "
            "postgresql://user@host/db, or a journal file ending in .log)"
        ) from None
    try:
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError:
        close = difflib.get_close_matches(parsed.get_backend_name(), DIALECTS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}://?)" if close else ""
        kind = parsed.drivername
        raise BreakoutSB3Error(f"--storage {shown_url(url)}: unknown database kind '{kind}'{hint}") from None
    return parsed


def open_storage(url: str, heartbeat: Heartbeat, outage: Outage | None = None) -> BaseStorage:
    """
    :param url: an SQLAlchemy database URL (``sqlite:///logs/tune.db``, ``postgresql://user@host/db``...), or a
        journal file ending in ``.log``
    :param heartbeat: the heartbeats of running trials, and the retries of those whose worker died
    :param outage: for a database, the storage waits out outages of its server (:class:`PatientRDBStorage`), up to
        ``outage.limit`` seconds each; None: a call fails at once, as Optuna's RDBStorage does. Opening the storage
        fails at once in any case (an unreachable server is then more likely a wrong URL).
    :return: the storage, its tables created if needed
    :raise BreakoutSB3Error: a malformed URL, an unknown database kind, a missing driver, a server that cannot be
        reached or refuses the connection, a missing database
    """
    parsed = parse_url(url)
    if parsed is None:
        path = Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise BreakoutSB3Error(f"cannot open the journal file {url}: {e.strerror or e}") from None
    parsed = _with_an_installed_driver(parsed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retry)
    kwargs: dict[str, Any] = dict(
        engine_kwargs=_engine_kwargs(parsed),
        heartbeat_interval=heartbeat.interval,
        grace_period=heartbeat.grace_period,
        heartbeat_stale_trial_callback=retry,
    )
    database = parsed.render_as_string(hide_password=False)
    for attempt in range(CREATE_TABLES_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                if outage is None:
                    return RDBStorage(database, **kwargs)
                return PatientRDBStorage(database, outage=outage, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
            # Workers started at once on an empty database all create Optuna's tables: all but one find them made
            # half-way. Once the tables exist, opening the storage only checks them.
            if attempt + 1 == CREATE_TABLES_ATTEMPTS:
                raise BreakoutSB3Error(f"cannot open the storage {shown_url(url)}: {database_error(e)}") from None
            time.sleep(random.uniform(0.5, 2.0))
        except ImportError as e:
            cause = e.__cause__ or e
            raise BreakoutSB3Error(
                f"--storage {shown_url(url)}: the database driver is not installed ({cause})"
            ) from None
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise BreakoutSB3Error(f"cannot open the storage {shown_url(url)}: {database_error(e)}") from None
        except RuntimeError as e:  # Optuna: tables of another Optuna version
            raise BreakoutSB3Error(f"cannot use the storage {shown_url(url)}: {one_line(str(e))}") from None
    raise AssertionError("not reached: the last attempt raises")


def _engine_kwargs(parsed: sqlalchemy.engine.URL) -> dict[str, Any]:
    """:return: SQLAlchemy's engine arguments for the database (an SQLite file's folder is created)"""
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise BreakoutSB3Error(f"cannot create the folder of {parsed.database}: {e.strerror or e}") from None
        return {}
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a connection dropped between calls: a new one
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return engine_kwargs


def _with_an_installed_driver(url: sqlalchemy.engine.URL) -> sqlalchemy.engine.URL:
    """
    :return: ``url``; for ``postgresql://`` (no driver named) whose default driver is not installed (psycopg from
        SQLAlchemy 2.1, psycopg2 before), the same URL with the PostgreSQL driver that is
    """
    if url.drivername != "postgresql":
        return url
    for candidate in (url, url.set(drivername="postgresql+psycopg"), url.set(drivername="postgresql+psycopg2")):
        try:
            candidate.get_dialect().import_dbapi()
            return candidate
        except ImportError:
            continue
    return url


def check_study_name(name: str) -> None:
    if not name.strip():
        raise BreakoutSB3Error("tune: --study-name is empty")
    if len(name) > MAX_STUDY_NAME:
        raise BreakoutSB3Error(f"tune: --study-name is {len(name)} characters long, at most {MAX_STUDY_NAME}")


def open_study(
    storage: BaseStorage, url: str, name: str, description: dict[str, Any], first_trial: dict[str, Any] | None
) -> bool:
    """
    Create the study, or join it if another worker has.

    :param storage: where it lives
    :param url: the storage's URL, for messages
    :param name: the study's name
    :param description: what the study runs (kind, entry, algorithm, steps per trial, hyperparameters, search space,
        seeds); a worker whose command describes another study is refused
    :param first_trial: parameters queued as the study's first trial, by the worker that creates the study only
    :return: whether this worker created the study
    :raise BreakoutSB3Error: the study exists and runs something else
    """
    where = f"study '{name}' in {shown_url(url)}"
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name)
        created = False
    except sqlalchemy.exc.SQLAlchemyError as e:
        raise BreakoutSB3Error(f"cannot create the {where}: {database_error(e)}") from None
    if created:
        study.set_user_attr(STUDY_ATTR, description)
        if first_trial is not None:
            study.enqueue_trial(first_trial, user_attrs={"queued_as": "the entry's own values"})
        return True
    if study.direction != StudyDirection.MAXIMIZE:
        raise BreakoutSB3Error(f"the {where} minimizes; breakout-sb3 tune maximizes the score")
    existing = _wait_for_description(study)
    if existing is None:
        raise BreakoutSB3Error(f"the {where} was not created by breakout-sb3 tune; choose another --study-name")
    difference = _difference(existing, description)
    if difference:
        raise BreakoutSB3Error(f"the {where} runs {difference}; give this command another --study-name")
    return False


def _wait_for_description(study: optuna.Study) -> dict[str, Any] | None:
    # The worker that created the study writes its description right after creating it.
    deadline = time.monotonic() + DESCRIBE_TIMEOUT_S
    while True:
        description = study.user_attrs.get(STUDY_ATTR)
        if description is not None or study.trials or time.monotonic() > deadline:
            return description
        time.sleep(0.5)


def _difference(existing: dict[str, Any], wanted: dict[str, Any]) -> str:
    """:return: what the existing study runs that this command does not, in words ("" if nothing)"""
    wanted = json.loads(json.dumps(wanted))  # as the storage returns it: tuples become lists
    for key in ("kind", "env", "algo", "entry", "n_timesteps", "seeds"):
        if existing.get(key) != wanted.get(key):
            return f"{key} {existing.get(key)!r}, this command {wanted.get(key)!r}"
    for key in ("hyperparams", "search_space"):
        old, new = existing.get(key) or {}, wanted.get(key) or {}
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            what = "hyperparameters" if key == "hyperparams" else "a search space"
            return f"{what} other than this command's ({', '.join(changed)} differ)"
    return ""
