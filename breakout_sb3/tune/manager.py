"""
The workers' ExperimentManager of ``breakout-sb3 tune`` and its trial: rl-zoo3's ``hyperparameters_optimization``
and ``objective``, with the evaluation and stop callbacks a trial trains with.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
import yaml
from optuna.exceptions import UpdateFinishedTrialError
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from rl_zoo3.callbacks import TrialEvalCallback
from rl_zoo3.utils import ALGOS, get_callback_list
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.recipe_manager import RecipeExperimentManager, sb3_logger_folder
from breakout_sb3.signals import two_step_stop
from breakout_sb3.tune.loop import TrialLoop
from breakout_sb3.tune.plan import TunePlan
from breakout_sb3.tune.report import report_study
from breakout_sb3.tune.retry import Outage
from breakout_sb3.tune.seeds import StopWhenNoSeedLeft, refuse_duplicate_seed, seed_sampler, seeds_left
from breakout_sb3.tune.space import FOLLOW_BATCH_SIZE
from breakout_sb3.tune.storage import database_error, shown_url
from breakout_sb3.zoo_insides import create_pruner, create_sampler, trained_hyperparams
from callbacks.checkpoint import EpisodeCheckpointCallback
from callbacks.nonfinite import NonFiniteTrainingError
from callbacks.run_folder import RunFolderCallback
from callbacks.stop import StopTrainingOnRunningScore

WORKER = f"{socket.gethostname()}:{os.getpid()}"
# The recipe's callbacks a trial leaves out. A trial is a short run judged by its evaluations: checkpoints (5.7 GB
# each with the replay) would only fill the disk, since a trial whose worker dies is run again from the start; and
# the stop rule would end some trials early, so trials would not all have the same budget.
LEFT_OUT_OF_TRIALS = (EpisodeCheckpointCallback, StopTrainingOnRunningScore)


class TrialInterrupted(KeyboardInterrupt):
    """A trial stopped by SIGINT or SIGTERM before its end (a KeyboardInterrupt, so that Optuna stops the worker)."""


class EvalAtEpsilonCallback(TrialEvalCallback):
    """
    rl-zoo3's ``TrialEvalCallback`` (evaluations reported to the trial, which the pruner may stop), with the games
    played at a fixed epsilon, ``evaluate``'s 0.05, instead of the training schedule's current one: otherwise a trial
    whose epsilon decays faster would be judged on greedier play.

    A trial that the study has as failed (another worker took it for dead) takes no reports: it trains on, unpruned,
    for the worker's report.

    :param epsilon: the probability of a random action during the evaluation games
    """

    def __init__(self, *args: Any, epsilon: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.epsilon = epsilon

    def _on_step(self) -> bool:
        training_epsilon = self.model.exploration_rate
        self.model.exploration_rate = self.epsilon
        try:
            return super()._on_step()
        except UpdateFinishedTrialError:
            return True
        finally:
            self.model.exploration_rate = training_epsilon


class StopWhenAskedCallback(BaseCallback):
    """
    Stops training once ``requests`` is not empty, or once the worker gave up its storage.

    :param requests: the names of the signals received
    :param outage: the storage's outages (None: none)
    """

    def __init__(self, requests: list[str], outage: Outage | None = None):
        super().__init__()
        self.requests = requests
        self.outage = outage

    def _on_step(self) -> bool:
        return not self.requests and (self.outage is None or not self.outage.gave_up.is_set())


class _NoTracebackForStops(logging.Filter):
    """Optuna logs a failed trial with its traceback: none for a trial that SIGINT or SIGTERM stopped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info = None
        return True


class TuneExperimentManager(RecipeExperimentManager):
    """
    The workers' ExperimentManager: the recipe's (``breakout_sb3.recipe_manager``), with rl-zoo3's
    ``hyperparameters_optimization`` and ``objective`` changed where breakout-sb3 promises more:

    - the study is the one :func:`tune` created or joined, in a storage with heartbeats, so that the trial of a
      killed worker is failed and run again by the next worker;
    - a trial's hyperparameters and callback arguments come from the YAML's search space (the entry's own values
      first), or, in a seed sweep, the entry is trained as it is with one seed per trial;
    - each trial writes its CSV and Monitor file into its own folder (``trial_<n>`` or ``seed_<s>``), without the
      recipe's checkpoints and stop rule, and is evaluated at epsilon 0.05;
    - SIGINT/SIGTERM stop the trial in progress, record it as failed and queue its parameters again;
    - at the end, the best trial is printed and written as a YAML entry that ``breakout-sb3 train --conf-file``
      trains, beside rl-zoo3's report CSV.

    :param plan: what :func:`~breakout_sb3.tune.plan.build_plan` prepared
    """

    def __init__(self, *args: Any, plan: TunePlan, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.plan = plan
        self._env_lock = threading.Lock()
        self._trial_folder: Path | None = None
        self._stop_requests: list[str] = []
        self._interrupted: list[int] = []

    def create_log_folder(self) -> None:
        """Trials write into their own folders: the study has no rl-zoo3 run folder of its own."""

    def create_callbacks(self) -> None:
        """A trial builds its own callbacks from its entry (:meth:`_trial_callbacks`): the study has none."""

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        # Monitor files go into a trial's folder only (see _trial_env)
        return super().create_envs(n_envs, eval_env, no_log=no_log or self._trial_folder is None)

    def _trial_env(self, seed: int | None, folder: Path | None, eval_env: bool = False) -> VecEnv:
        """:return: an env of the trial, seeded with ``seed`` (the worker's if None), logging into ``folder``"""
        with self._env_lock:  # rl-zoo3 creates envs from the manager's seed and run folder
            saved = self.seed, self.save_path, self._trial_folder
            self.seed = self.seed if seed is None else seed
            self.save_path, self._trial_folder = (str(folder), folder) if folder is not None else (saved[1], None)
            try:
                return self.create_envs(self.n_eval_envs if eval_env else self.n_envs, eval_env=eval_env)
            finally:
                self.seed, self.save_path, self._trial_folder = saved

    # --- one trial ------------------------------------------------------------------------------------------------

    def objective(self, trial: optuna.Trial) -> float:
        seed, entry, folder = self._start_trial(trial)
        callbacks = self._trial_callbacks(entry, folder)
        env = self._trial_env(seed, folder)
        model = ALGOS[self.algo](
            env=env,
            tensorboard_log=None,
            seed=seed,  # a tuning trial is not seeded, as in rl-zoo3 (its envs have the worker's seed)
            verbose=self.verbose if self.verbose >= 2 else 0,
            device=self.device,
            **self._model_kwargs(entry),
        )
        eval_env = self._trial_env(seed, None, eval_env=True)
        eval_callback = self._eval_callback(trial, eval_env)
        callbacks += [eval_callback, StopWhenAskedCallback(self._stop_requests, self.plan.outage)]
        self._learn(trial, model, callbacks, eval_env)
        self._check_trial_end(trial, model, eval_callback)
        if seed is not None:  # a run of its own: the final model, and its config for evaluate and record
            model.save(folder / str(self.env_name))
            (folder / str(self.env_name)).mkdir(exist_ok=True)
            with open(folder / str(self.env_name) / "config.yml", "w") as f:
                yaml.dump(OrderedDict(sorted(entry.items())), f)
        return float(eval_callback.last_mean_reward)

    def _start_trial(self, trial: optuna.Trial) -> tuple[int | None, dict[str, Any], Path]:
        """:return: the trial's seed (None: the worker's), its entry and its new folder"""
        seed = None
        if self.plan.seeds is not None:
            seed = trial.suggest_categorical("seed", self.plan.seeds)
            entry, folder = self.plan.entry, self.plan.output_dir / f"seed_{seed}"
        else:
            assert self.plan.space is not None
            entry = self.plan.space.apply(self.plan.entry, self.plan.space.suggest(trial))
            folder = self.plan.output_dir / f"trial_{trial.number}"
        trial.set_user_attr("worker", WORKER)
        if self._stop_requests:
            self._interrupted.append(trial.number)
            raise TrialInterrupted(f"{self._stop_requests[0]} before the trial started")
        if seed is not None:
            refuse_duplicate_seed(trial, seed)
        if folder.exists():  # an earlier attempt of the same seed, whose trial is recorded as failed: kept aside
            aside = folder.with_name(f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{folder.name}")
            folder.rename(aside)
            print(f"{folder} existed (an earlier attempt): moved to {aside}")
        folder.mkdir(parents=True)
        trial.set_user_attr("folder", str(folder.resolve()))
        return seed, entry, folder

    def _trial_callbacks(self, entry: dict[str, Any], folder: Path) -> list[BaseCallback]:
        """:return: the entry's callbacks, less :data:`LEFT_OUT_OF_TRIALS`, writing into the trial's folder"""
        callbacks = get_callback_list({"callback": entry.get("callback")})
        callbacks = [cb for cb in callbacks if not isinstance(cb, LEFT_OUT_OF_TRIALS)]
        for callback in callbacks:
            if isinstance(callback, RunFolderCallback):
                callback.log_dir = str(folder)
        return callbacks

    def _eval_callback(self, trial: optuna.Trial, eval_env: VecEnv) -> EvalAtEpsilonCallback:
        """:return: the trial's evaluations, ``n_evaluations`` of them, reported to the trial"""
        path = None
        if self.optimization_log_path is not None:
            path = os.path.join(self.optimization_log_path, f"trial_{trial.number!s}")
        return EvalAtEpsilonCallback(
            eval_env,
            trial,
            best_model_save_path=path,
            log_path=path,
            n_eval_episodes=self.n_eval_episodes,
            eval_freq=max(int(self.n_timesteps / self.n_evaluations) // self.n_envs, 1),
            deterministic=self.deterministic_eval,
            verbose=1 if self.verbose >= 1 else 0,
            epsilon=DEFAULT_EVAL_EPSILON,
        )

    def _learn(
        self, trial: optuna.Trial, model: BaseAlgorithm, callbacks: list[BaseCallback], eval_env: VecEnv
    ) -> None:
        """Train the trial's model, closing its envs; a non-finite model prunes the trial."""
        try:
            model.learn(self.n_timesteps, callback=callbacks)
        except NonFiniteTrainingError as e:
            trial.set_user_attr("pruned_because", str(e))
            raise optuna.TrialPruned(str(e)) from e
        except KeyboardInterrupt:
            self._interrupted.append(trial.number)
            raise
        finally:
            assert model.env is not None
            model.env.close()
            eval_env.close()

    def _check_trial_end(self, trial: optuna.Trial, model: BaseAlgorithm, eval_callback: EvalAtEpsilonCallback) -> None:
        """Raise if the trial did not train to its end: the storage lost, a signal, or pruned."""
        if self.plan.outage is not None and self.plan.outage.error is not None:
            raise self.plan.outage.error
        if self._stop_requests and model.num_timesteps < self.n_timesteps:
            self._interrupted.append(trial.number)
            raise TrialInterrupted(f"{self._stop_requests[0]} at step {model.num_timesteps} of {self.n_timesteps}")
        if eval_callback.is_pruned:
            raise optuna.TrialPruned()

    def _model_kwargs(self, entry: dict[str, Any]) -> dict[str, Any]:
        """:return: the algorithm's arguments as rl-zoo3 prepared them, with the trial's searched values"""
        kwargs = copy.deepcopy(trained_hyperparams(self))
        if self.plan.space is not None:
            searched = {p.key for p in self.plan.space.params if p.callback is None}
            for key in searched | set(FOLLOW_BATCH_SIZE):
                if key in entry:
                    kwargs[key] = tuple(entry[key]) if isinstance(entry[key], list) else entry[key]
        return kwargs

    # --- the study ------------------------------------------------------------------------------------------------

    def hyperparameters_optimization(self) -> None:
        plan = self.plan
        if plan.seeds is not None:
            sampler, pruner = seed_sampler(plan.seeds)
        else:
            sampler, pruner = create_sampler(self, self.sampler), create_pruner(self, self.pruner)
        study = optuna.load_study(study_name=plan.study_name, storage=plan.storage, sampler=sampler, pruner=pruner)
        callbacks, n_trials = self._trials_to_run(study)
        if n_trials != 0:
            what = f"up to {n_trials} trials" if n_trials is not None else "trials"
            print(
                f"Worker {WORKER}: {what} of {self.n_timesteps:,} steps each, into {plan.output_dir}/ "
                f"(Ctrl-C stops the trial in progress and queues it again)",
                flush=True,
            )
        # Study.optimize's loop, outliving database outages; a failed trial is recorded with its error, and the
        # worker goes on
        loop = TrialLoop(study, self.objective, plan.storage, plan.outage, callbacks)
        try:
            # SB3's logger of each trial writes nowhere: pointed at the study's folder, it makes no temp folder
            with self._stop_on_signals(), sb3_logger_folder(str(plan.output_dir)):
                if n_trials != 0:
                    loop.run(n_trials, self.n_jobs)
        except KeyboardInterrupt:
            pass  # the trials it stopped are recorded as failed, and queued again below
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise BreakoutSB3Error(f"lost the storage {shown_url(plan.url)}: {database_error(e)}") from None
        self._requeue_interrupted(study)
        report_study(study, plan, self._report_path(), self.n_timesteps, loop.unrecorded)

    def _trials_to_run(self, study: optuna.Study) -> tuple[list[Any], int | None]:
        """:return: the callbacks of the study's loop, and the trials this worker runs (0: none; None: no limit)"""
        plan = self.plan
        callbacks: list[Any] = [self._stop_if_asked]
        n_trials: int | None = self.n_trials
        if plan.seeds is not None:
            callbacks.append(StopWhenNoSeedLeft(plan.seeds))
            if not seeds_left(study, plan.seeds):
                print(f"Every seed of the study '{plan.study_name}' is done or running: nothing to run")
                n_trials = 0
        elif self.max_total_trials is not None:
            counted = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)
            if len(study.get_trials(deepcopy=False, states=counted)) >= self.max_total_trials:
                print(f"The study '{plan.study_name}' has its {self.max_total_trials} trials: nothing to run")
                n_trials = 0
            else:
                callbacks.append(MaxTrialsCallback(self.max_total_trials, states=counted))
                n_trials = None
        return callbacks, n_trials

    def _stop_if_asked(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._stop_requests:
            study.stop()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While active, SIGINT and SIGTERM stop the trial in progress at its next step; a second one at once."""

        def stop_trial(name: str) -> None:
            print(
                f"\n{name}: stopping the trial in progress; it is recorded as failed and queued again "
                "(again to stop at once)",
                flush=True,
            )

        no_traceback = _NoTracebackForStops()
        handlers = logging.getLogger("optuna").handlers
        with two_step_stop(stop_trial, received=self._stop_requests):
            for handler in handlers:
                handler.addFilter(no_traceback)
            try:
                yield
            finally:
                for handler in handlers:
                    handler.removeFilter(no_traceback)

    def _requeue_interrupted(self, study: optuna.Study) -> None:
        """Queue again the parameters of the trials a signal stopped, so that the next worker runs them."""
        for number in self._interrupted:
            trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
            if trial.state == TrialState.RUNNING:
                study.tell(number, state=TrialState.FAIL)
                trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
            if trial.state != TrialState.FAIL:
                continue
            system_attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
            system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
            study.add_trial(
                optuna.create_trial(
                    state=TrialState.WAITING,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs={k: v for k, v in trial.user_attrs.items() if k not in ("worker", "folder")},
                    system_attrs=system_attrs,
                )
            )
            print(f"Trial {number} stopped: recorded as failed, its parameters queued again for the next worker")

    def _report_path(self) -> Path:
        """:return: rl-zoo3's report CSV, named as rl-zoo3 names it"""
        report_name = (
            f"report_{self.env_name}_{self.n_trials}-trials-{self.n_timesteps}"
            f"-{self.sampler}-{self.pruner}_{int(time.time())}"
        )
        return Path(self.log_folder) / self.algo / f"{report_name}.csv"
