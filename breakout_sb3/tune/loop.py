"""
A tune worker's loop over trials: Optuna's ``Study.optimize`` (optuna/study/_optimize.py), run so that the worker
outlives its database. Heartbeats survive an outage (:class:`TrialHeartbeat`); a finished trial is told once the server
is back; a trial that another worker failed meanwhile, taking it for dead, is said in one line and its result kept for
the worker's report, and the worker goes on. Optuna's own loop raises there (its tell assumes that the storage answers
and that the trial is still running).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from breakout_sb3.tune.optuna_insides import optimize_loop, set_stop_requested, stop_requested, trial_id
from breakout_sb3.tune.retry import Outage, StorageUnreachable, TrialHeartbeat

# Under Optuna's logger, so that trials are logged as Study.optimize logs them.
_logger = optuna.logging.get_logger("optuna.breakout_sb3.tune")

StudyCallback = Callable[[optuna.Study, FrozenTrial], None]


@dataclass(frozen=True)
class Unrecorded:
    """
    A trial this worker finished after the study had recorded it as failed (another worker took it for dead): its
    result, which the study does not have.

    :param number: the trial's number
    :param state: how it ended in this worker
    :param value: its score (None: none)
    :param rerun: the number of the trial that runs its parameters again (None: none)
    """

    number: int
    state: TrialState
    value: float | None
    rerun: int | None

    def note(self) -> str:
        """:return: the report's note on the trial"""
        rerun = f"; run again as trial {self.rerun}" if self.rerun is not None else ""
        return f"{self.state.name} in this worker, not recorded: another worker took it for dead{rerun}"


@dataclass
class _Outcome:
    """What the objective gave: a value (``state`` None: COMPLETE if the value is a number), or an error."""

    value: float | None = None
    state: TrialState | None = None
    error: BaseException | None = None
    exc_info: Any = None

    @property
    def ended(self) -> TrialState:
        return self.state or TrialState.COMPLETE


class TrialLoop:
    """
    Runs trials of ``study`` until ``n_trials`` are done or the study is stopped, as ``Study.optimize`` with
    ``catch=(Exception,)`` and ``gc_after_trial=True`` does, outliving the outages of the study's database.

    :param study: the study
    :param objective: the objective; an exception fails the trial, a KeyboardInterrupt also stops the loop
    :param storage: the study's storage (a :class:`PatientRDBStorage` waits out outages)
    :param outage: the storage's connection state (None: a storage without one, such as a journal file)
    :param callbacks: called with each finished trial, as Study.optimize's
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Callable[[optuna.Trial], float],
        storage: BaseStorage,
        outage: Outage | None,
        callbacks: Sequence[StudyCallback] = (),
    ):
        self.study = study
        self.objective = objective
        self.storage = storage
        self.outage = outage
        self.callbacks = list(callbacks)
        self.unrecorded: list[Unrecorded] = []
        heartbeat = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None
        self.heartbeat_interval = storage.get_heartbeat_interval() if heartbeat else None
        self.grace_period = getattr(storage, "grace_period", None)
        self._left: int | None = None
        self._lock = threading.Lock()

    def run(self, n_trials: int | None, n_jobs: int = 1) -> None:
        """
        :param n_trials: trials to run (None: until the study is stopped)
        :param n_jobs: trials run at once, in threads (-1: as many as CPU cores)
        """
        set_stop_requested(self.study, False)
        self._left = n_trials
        if n_jobs == 1:
            self._sequential(reseed=False)
            return
        n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
        with ThreadPoolExecutor(max_workers=n_jobs) as executor:
            futures = [executor.submit(self._sequential, True) for _ in range(n_jobs)]
            for future in futures:
                future.result()

    def _take(self) -> bool:
        """:return: whether a trial is left to run (then counted as run)"""
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def _sequential(self, reseed: bool) -> None:
        study = self.study
        if reseed:
            study.sampler.reseed_rng()
        # As in Optuna's loop: Study.stop() (its callbacks, the grid sampler) works only inside it.
        with optimize_loop(study):
            try:
                while not stop_requested(study) and self._take():
                    try:
                        frozen = self._run_trial()
                    finally:
                        gc.collect()
                    for callback in self.callbacks:
                        callback(study, copy.deepcopy(frozen))
            except BaseException:
                set_stop_requested(study, True)  # the loop's other threads stop after their trial
                raise
            finally:
                self.storage.remove_session()

    def _run_trial(self) -> FrozenTrial:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        trial = self.study.ask()
        outcome: _Outcome | None = None
        with self._heartbeat(trial):
            try:
                outcome = self._call(trial)
                frozen = self._tell(trial, outcome)
            except StorageUnreachable as e:
                raise self._given_up(trial, outcome, e) from None
        assert outcome is not None
        if isinstance(outcome.error, KeyboardInterrupt):
            raise outcome.error
        return frozen

    def _heartbeat(self, trial: optuna.Trial) -> contextlib.AbstractContextManager:
        if self.heartbeat_interval is None:
            return contextlib.nullcontext()
        return TrialHeartbeat(self.storage, trial_id(trial), self.heartbeat_interval)

    def _call(self, trial: optuna.Trial) -> _Outcome:
        try:
            outcome = _Outcome(value=self.objective(trial))
        except StorageUnreachable:
            raise
        except optuna.TrialPruned as e:
            outcome = _Outcome(state=TrialState.PRUNED, error=e)
        except (Exception, KeyboardInterrupt) as e:
            outcome = _Outcome(state=TrialState.FAIL, error=e, exc_info=sys.exc_info())
        if self.outage is not None and self.outage.error is not None:
            raise self.outage.error  # the worker gave the storage up while the trial ran
        return outcome

    def _tell(self, trial: optuna.Trial, outcome: _Outcome) -> FrozenTrial:
        """:return: the trial as the study has it, once told (or found failed by another worker)"""
        try:
            if self._stored(trial).state != TrialState.RUNNING:
                return self._taken_over(trial, outcome)
            self.study.tell(trial, outcome.value, state=outcome.state)
        except (UpdateFinishedTrialError, ValueError):
            # Failed by another worker between the check and the tell: Optuna refuses to tell a finished trial.
            if self._stored(trial).state == TrialState.RUNNING:
                raise
            return self._taken_over(trial, outcome)
        frozen = self._stored(trial)
        self._log(frozen, outcome)
        return frozen

    def _stored(self, trial: optuna.Trial) -> FrozenTrial:
        return self.storage.get_trial(trial_id(trial))

    def _log(self, frozen: FrozenTrial, outcome: _Outcome) -> None:
        """Logs the trial as Study.optimize does."""
        if frozen.state == TrialState.COMPLETE:
            message = f"Trial {frozen.number} finished with value: {frozen.value} and parameters: {frozen.params}."
            with contextlib.suppress(ValueError):  # no completed trial
                best = self.study.best_trial
                message += f" Best is trial {best.number} with value: {best.value}."
            _logger.info(message)
        elif frozen.state == TrialState.PRUNED:
            _logger.info(f"Trial {frozen.number} pruned. {outcome.error or ''}")
        else:
            why = repr(outcome.error) if outcome.error is not None else f"its value {outcome.value!r}"
            _logger.warning(
                f"Trial {frozen.number} failed with parameters: {frozen.params} because of the following error: {why}.",
                exc_info=outcome.exc_info,
            )

    def _taken_over(self, trial: optuna.Trial, outcome: _Outcome) -> FrozenTrial:
        """The study has the trial as failed: another worker took it for dead. :return: the trial as the study has it"""
        frozen = self._stored(trial)
        trials = self.study.get_trials(deepcopy=False)
        rerun = next((t.number for t in trials if frozen.number in _retry_history(t)), None)
        self.unrecorded.append(Unrecorded(frozen.number, outcome.ended, outcome.value, rerun))
        result = f"score {outcome.value:g}" if outcome.value is not None else outcome.ended.name.lower()
        again = f"its parameters run again as trial {rerun}" if rerun is not None else "not run again (--max-retry)"
        print(
            f"Trial {frozen.number} finished here ({result}, parameters {trial.params}), but the study has it as "
            f"{frozen.state.name}: another worker took it for dead (no heartbeat for {self.grace_period} s). Not "
            f"recorded in the study, kept in this worker's report; {again}",
            flush=True,
        )
        return frozen

    def _given_up(self, trial: optuna.Trial, outcome: _Outcome | None, error: StorageUnreachable) -> StorageUnreachable:
        """:return: the error that stops the worker, saying what becomes of its trial"""
        fate = (
            f"; its trial {trial.number} stays RUNNING until a worker finds its last heartbeat older than "
            f"{self.grace_period} s (--grace-period), fails it and runs it again"
        )
        if outcome is not None and outcome.value is not None:
            fate += f"; its score here, {outcome.value:g} (parameters {trial.params}), is not recorded"
        return StorageUnreachable(f"{error}{fate}")


def _retry_history(trial: FrozenTrial) -> list[int]:
    # RetryHeartbeatStaleTrialCallback's record of the trials a trial runs again
    return trial.system_attrs.get("retry_history", [])
