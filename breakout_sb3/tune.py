"""
``breakout-sb3 tune``: rl-zoo3's hyperparameter optimization on the recipe's own search space, and seed sweeps of one
configuration, run by any number of workers on one Optuna study (SQLite on one machine, PostgreSQL on many).
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import rl_zoo3.train
import sqlalchemy.exc
import yaml
from optuna.exceptions import UpdateFinishedTrialError
from optuna.pruners import NopPruner
from optuna.samplers import GridSampler
from optuna.storages import BaseStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from rl_zoo3.callbacks import TrialEvalCallback
from rl_zoo3.utils import ALGOS, get_callback_list
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path, hyperparams_for, read_config
from breakout_sb3.env import is_atari
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.manager import FAST_ALGO, BreakoutExperimentManager, CheckpointOptions, sb3_logger_folder
from breakout_sb3.ranges import TRAIN_FLAGS, Seed, check
from breakout_sb3.train import _zoo_train_with
from breakout_sb3.tune_loop import TrialLoop, Unrecorded
from breakout_sb3.tune_retry import DEFAULT_DB_WAIT_S, Outage
from breakout_sb3.tune_space import FOLLOW_BATCH_SIZE, SPACE_KEY, SearchSpace
from breakout_sb3.tune_storage import (
    Heartbeat,
    check_study_name,
    database_error,
    is_journal_file,
    is_local,
    open_storage,
    open_study,
    parse_url,
    shown_url,
)
from breakout_sb3.zoo_args import check_train_args, parse_zoo_params
from callbacks.checkpoint import EpisodeCheckpointCallback
from callbacks.nonfinite import NonFiniteTrainingError
from callbacks.run_folder import RunFolderCallback
from callbacks.stop import StopTrainingOnRunningScore

TUNE_HELP = """\
breakout-sb3 tune [--fast] [--seeds S [S ...]] [--heartbeat-interval S] [--grace-period S] [--max-retry N]
                  [--db-wait S] [rl-zoo3 flags]

Runs trials of one Optuna study; the same command on several machines (same --storage and --study-name) makes
them workers of that study. Each trial trains -n steps and is scored by its last evaluation (the mean game score
of --eval-episodes games at epsilon 0.05).

  --fast                     tune the fast configuration (FastDQN, the YAML's <env>-fast entry)
  --seeds S [S ...]          a seed sweep instead of a search: one trial per seed, of the entry as it is
  --heartbeat-interval S     a running trial records a heartbeat every S seconds (default 20)
  --grace-period S           a trial without a heartbeat for S seconds is failed and run again (default 120)
  --max-retry N              times a trial whose worker died is run again (default 3)
  --db-wait S                a database server that stops answering is waited for up to S seconds per outage
                             (default 600); past that the worker stops with exit status 75

rl-zoo3's flags pass through, with these defaults:
  --storage URL              sqlite:///<log folder>/tune.db; any URL Optuna accepts (postgresql://user@host/db),
                             or a journal file ending in .log
  --study-name NAME          <env>[-fast]-tune-<n>-steps (required with a server storage)
  -n N                       agent steps per trial: 1000000 (a seed sweep: the entry's n_timesteps)
  --n-trials N               trials this worker runs (500, rl-zoo3's; a seed sweep: as many as seeds)
  --sampler tpe|random|auto, --pruner median|halving|none, --n-startup-trials N, --n-evaluations N,
  --eval-episodes N, --max-total-trials N, --n-jobs N, -params key:value (fixed, not searched), -f, --seed,
  --conf-file FILE (the search space is its breakout-sb3-tune section), --device, --num-threads
"""

WORKER = f"{socket.gethostname()}:{os.getpid()}"
DEFAULT_TRIAL_STEPS = 1_000_000
# rl-zoo3's numeric flags that tune reads
NUMERIC_FLAGS = ("--n-timesteps", "--n-trials", "--max-total-trials", "--n-jobs", "--n-startup-trials",
                 "--n-evaluations", "--eval-episodes", "--seed")  # fmt: skip
SAMPLERS = ("tpe", "random", "auto")
PRUNERS = ("median", "halving", "none")
# The recipe's callbacks a trial leaves out. A trial is a short run judged by its evaluations: checkpoints (5.7 GB
# each with the replay) would only fill the disk, since a trial whose worker dies is run again from the start; and
# the stop rule would end some trials early, so trials would not all have the same budget.
LEFT_OUT_OF_TRIALS = (EpisodeCheckpointCallback, StopTrainingOnRunningScore)
# rl-zoo3 flags that make no sense for tuning
REFUSED_FLAGS = {
    "trained_agent": "-i: each trial trains from scratch",
    "trial_id": "--trial-id: tune runs trials; train the best one with --conf-file <study folder>/best.yml",
}


@dataclass
class TuneOptions:
    """
    breakout-sb3's own tune flags.

    :param seeds: a seed sweep: one trial per seed, of the entry as it is (None: a hyperparameter search)
    :param heartbeat: heartbeats and retries of trials whose worker died
    :param db_wait: seconds an outage of the database server is waited out before the worker stops
    """

    seeds: list[int] | None = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    db_wait: int = DEFAULT_DB_WAIT_S


@dataclass
class TunePlan:
    """What the workers' manager needs, prepared (and checked) before rl-zoo3 starts."""

    storage: BaseStorage
    url: str
    outage: Outage | None  # the database's outages, waited out (None: a journal file)
    study_name: str
    entry_name: str
    entry: dict[str, Any]  # the entry tuned, -params merged in
    export_key: str  # the entry name `train --conf-file` reads
    output_dir: Path  # <log folder>/<algo>/<study>/
    space: SearchSpace | None
    seeds: list[int] | None
    fast: bool


class TrialInterrupted(KeyboardInterrupt):
    """A trial stopped by SIGINT or SIGTERM before its end (a KeyboardInterrupt, so that Optuna stops the worker)."""


def tune(argv: list[str], fast: bool = False, options: TuneOptions | None = None) -> None:
    """
    ``breakout-sb3 tune``: check the command, open the storage, create or join the study, then run rl-zoo3's
    ``train`` in its optimization mode with :class:`TuneExperimentManager`.

    :param argv: rl-zoo3 flags
    :param fast: tune the fast configuration
    :param options: breakout-sb3's own tune flags
    """
    if {"-h", "--help"} & set(argv):
        print(TUNE_HELP)
        return
    options = options or TuneOptions()
    options.heartbeat.check()
    flags = _parse_zoo_flags(argv)
    numbers = _check_flags(flags, options.seeds)
    seeds = options.seeds

    algo = flags.algo or (FAST_ALGO if fast else "dqn")
    env_id = flags.env or ENV_ID
    conf = flags.conf_file or str(default_config_path())
    zoo_args = ["--algo", algo, "--env", env_id, "--conf-file", conf, *argv]
    check_train_args(zoo_args, fast=fast)
    if not conf.endswith((".yml", ".yaml")):
        raise BreakoutSB3Error(f"tune: --conf-file must be a YAML file (its {SPACE_KEY} section is the search space)")
    config = read_config(conf)
    overrides = parse_zoo_params(flags.hyperparams or [])
    entry_name, entry = hyperparams_for(config, env_id, conf, atari=is_atari(env_id), fast=fast)
    entry = {**entry, **overrides}
    space = None
    if seeds is None:
        space = SearchSpace.from_config(config, entry, ALGOS[algo], conf, fixed=set(overrides))

    n_timesteps = numbers["--n-timesteps"]
    if n_timesteps is None:
        n_timesteps = int(entry["n_timesteps"]) if seeds is not None else DEFAULT_TRIAL_STEPS
    log_folder = flags.log_folder or "logs"
    url = flags.storage if flags.storage is not None else f"sqlite:///{(Path(log_folder) / 'tune.db').resolve()}"
    parse_url(url)
    study_name = flags.study_name
    if study_name is None:
        if not is_local(url):
            raise BreakoutSB3Error(
                f"tune: --study-name is needed with the server storage {shown_url(url)}: every worker must name "
                "the same study"
            )
        kind = f"seeds-{'-'.join(map(str, seeds))}" if seeds is not None else "tune"
        study_name = f"{env_id}{'-fast' if fast else ''}-{kind}-{n_timesteps}-steps"
    check_study_name(study_name)

    outage = None if is_journal_file(url) else Outage(shown_url(url), options.db_wait)
    storage = open_storage(url, options.heartbeat, outage)
    description = {
        "kind": "seeds" if seeds is not None else "tune",
        "env": env_id,
        "algo": algo,
        "entry": entry_name,
        "n_timesteps": n_timesteps,
        "seeds": seeds,
        "hyperparams": entry,
        "search_space": config[SPACE_KEY] if space is not None else None,
        "command": " ".join(sys.orig_argv),
    }
    first_trial = space.recipe if space is not None else None
    created = open_study(storage, url, study_name, description, first_trial)
    print(
        f"{'Created' if created else 'Joined'} the study '{study_name}' in {shown_url(url)}"
        + (f" (its first trial: the entry {entry_name}'s own values)" if created and space is not None else "")
    )
    if is_journal_file(url):
        print("Note: a journal file has no heartbeats: a trial whose worker is killed stays RUNNING")

    n_trials = numbers["--n-trials"] or (len(seeds) if seeds is not None else None)
    zoo_args += ["-n", str(n_timesteps), "--storage", url, "--study-name", study_name]
    zoo_args += [*(["--n-trials", str(n_trials)] if n_trials else []), "--optimize-hyperparameters", "--no-optim-plots"]
    plan = TunePlan(
        storage=storage,
        url=url,
        outage=outage,
        study_name=study_name,
        entry_name=entry_name,
        entry=entry,
        export_key=f"{env_id}-fast" if fast else env_id,
        output_dir=Path(log_folder) / algo / _folder_name(study_name),
        space=space,
        seeds=seeds,
        fast=fast,
    )
    manager = functools.partial(
        TuneExperimentManager,
        train_argv=zoo_args,
        checkpoint_options=CheckpointOptions(),
        config_entry=entry_name if fast else None,
        plan=plan,
    )
    with _zoo_train_with(manager, ["breakout-sb3", *zoo_args]):
        rl_zoo3.train.train()


def _check_flags(flags: argparse.Namespace, seeds: list[int] | None) -> dict[str, int | None]:
    """:return: the numeric rl-zoo3 flags tune reads, checked (None: not given)"""
    for name, message in REFUSED_FLAGS.items():
        if getattr(flags, name) is not None:
            raise BreakoutSB3Error(f"tune does not take {message}")
    if seeds is not None:
        for seed in seeds:
            check("--seeds", seed, Seed, "tune")
        if len(set(seeds)) != len(seeds):
            raise BreakoutSB3Error(f"tune: --seeds lists a seed twice: {' '.join(map(str, seeds))}")
        for given in ("sampler", "pruner", "n_startup_trials", "max_total_trials"):
            if getattr(flags, given) is not None:
                raise BreakoutSB3Error(f"tune: --seeds runs each seed once; --{given.replace('_', '-')} does not apply")
    if flags.sampler is not None and flags.sampler not in SAMPLERS:
        raise BreakoutSB3Error(f"tune: --sampler must be one of {', '.join(SAMPLERS)}, got {flags.sampler!r}")
    if flags.pruner is not None and flags.pruner not in PRUNERS:
        raise BreakoutSB3Error(f"tune: --pruner must be one of {', '.join(PRUNERS)}, got {flags.pruner!r}")
    if flags.sampler == "auto":
        try:
            import optunahub  # noqa: F401
        except ImportError:
            raise BreakoutSB3Error("tune: --sampler auto needs optunahub (pip install optunahub)") from None
    numbers = {flag: _integer(flag, getattr(flags, flag.lstrip("-").replace("-", "_"))) for flag in NUMERIC_FLAGS}
    for flag, value in numbers.items():
        if value is not None:
            check(flag, value, TRAIN_FLAGS[flag], "tune")
    if numbers["--n-timesteps"] == -1:  # rl-zoo3's "the YAML's n_timesteps"
        numbers["--n-timesteps"] = None
    return numbers


def _parse_zoo_flags(argv: list[str]) -> argparse.Namespace:
    """:return: the rl-zoo3 flags tune reads itself (None: not given); the others pass through unread"""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo")
    parser.add_argument("--env")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+")
    parser.add_argument("-f", "--log-folder")
    parser.add_argument("-i", "--trained-agent")
    parser.add_argument("--trial-id")
    parser.add_argument("--storage")
    parser.add_argument("--study-name")
    parser.add_argument("--sampler")
    parser.add_argument("--pruner")
    for flag in NUMERIC_FLAGS[1:]:
        parser.add_argument(flag)
    parser.add_argument("-n", "--n-timesteps")
    args, _ = parser.parse_known_args(argv)
    return args


def _integer(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BreakoutSB3Error(f"tune: {flag} must be an integer, got {value!r}") from None


def _folder_name(study_name: str) -> str:
    """:return: ``study_name`` as a folder name"""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip(".") or "study"


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


class TuneExperimentManager(BreakoutExperimentManager):
    """
    The workers' ExperimentManager: rl-zoo3's ``hyperparameters_optimization`` and ``objective``, changed where
    breakout-sb3 promises more:

    - the study is the one :func:`tune` created or joined, in a storage with heartbeats, so that the trial of a
      killed worker is failed and run again by the next worker;
    - a trial's hyperparameters and callback arguments come from the YAML's search space (the entry's own values
      first), or, in a seed sweep, the entry is trained as it is with one seed per trial;
    - each trial writes its CSV and Monitor file into its own folder (``trial_<n>`` or ``seed_<s>``), without the
      recipe's checkpoints and stop rule, and is evaluated at epsilon 0.05;
    - SIGINT/SIGTERM stop the trial in progress, record it as failed and queue its parameters again;
    - at the end, the best trial is printed and written as a YAML entry that ``breakout-sb3 train --conf-file``
      trains, beside rl-zoo3's report CSV.

    :param plan: what :func:`tune` prepared
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
            self._refuse_duplicate_seed(trial, seed)
        if folder.exists():  # an earlier attempt of the same seed, whose trial is recorded as failed: kept aside
            aside = folder.with_name(f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{folder.name}")
            folder.rename(aside)
            print(f"{folder} existed (an earlier attempt): moved to {aside}")
        folder.mkdir(parents=True)
        trial.set_user_attr("folder", str(folder.resolve()))

        callbacks = get_callback_list({"callback": entry.get("callback")})
        callbacks = [cb for cb in callbacks if not isinstance(cb, LEFT_OUT_OF_TRIALS)]
        for callback in callbacks:
            if isinstance(callback, RunFolderCallback):
                callback.log_dir = str(folder)
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
        path = None
        if self.optimization_log_path is not None:
            path = os.path.join(self.optimization_log_path, f"trial_{trial.number!s}")
        eval_callback = EvalAtEpsilonCallback(
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
        callbacks += [eval_callback, StopWhenAskedCallback(self._stop_requests, self.plan.outage)]
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
        if self.plan.outage is not None and self.plan.outage.error is not None:
            raise self.plan.outage.error
        if self._stop_requests and model.num_timesteps < self.n_timesteps:
            self._interrupted.append(trial.number)
            raise TrialInterrupted(f"{self._stop_requests[0]} at step {model.num_timesteps} of {self.n_timesteps}")
        if eval_callback.is_pruned:
            raise optuna.TrialPruned()
        if seed is not None:  # a run of its own: the final model, and its config for evaluate and record
            model.save(folder / str(self.env_name))
            (folder / str(self.env_name)).mkdir(exist_ok=True)
            with open(folder / str(self.env_name) / "config.yml", "w") as f:
                yaml.dump(OrderedDict(sorted(entry.items())), f)
        return float(eval_callback.last_mean_reward)

    def _model_kwargs(self, entry: dict[str, Any]) -> dict[str, Any]:
        """:return: the algorithm's arguments as rl-zoo3 prepared them, with the trial's searched values"""
        kwargs = copy.deepcopy(self._hyperparams)
        if self.plan.space is not None:
            searched = {p.key for p in self.plan.space.params if p.callback is None}
            for key in searched | set(FOLLOW_BATCH_SIZE):
                if key in entry:
                    kwargs[key] = tuple(entry[key]) if isinstance(entry[key], list) else entry[key]
        return kwargs

    def _refuse_duplicate_seed(self, trial: optuna.Trial, seed: int) -> None:
        """
        Prune a trial given a seed that another worker already runs. Optuna's grid gives the first trials one seed
        each; a worker that starts a trial at the moment another takes the last seed gets a seed again.
        """
        trials = trial.study.get_trials(deepcopy=False)
        this = next(t for t in trials if t.number == trial.number)
        if "failed_trial" in this.system_attrs:
            return  # a seed run again after its worker died or was stopped
        earlier = [
            t.number
            for t in trials
            if t.number < trial.number and "failed_trial" not in t.system_attrs and t.params.get("seed") == seed
        ]
        if earlier:
            trial.set_user_attr("duplicate_of", earlier[0])
            trial.study.stop()
            raise optuna.TrialPruned(f"seed {seed} is trial {earlier[0]}'s")

    # --- the study ------------------------------------------------------------------------------------------------

    def hyperparameters_optimization(self) -> None:
        plan = self.plan
        if plan.seeds is not None:
            # The grid's order is shuffled with the sampler's seed: the same on every worker, so that the n-th trial
            # of the study runs the same seed whichever worker takes it.
            sampler: optuna.samplers.BaseSampler = GridSampler({"seed": plan.seeds}, seed=0)
            pruner: optuna.pruners.BasePruner = NopPruner()
        else:
            sampler, pruner = self._create_sampler(self.sampler), self._create_pruner(self.pruner)
        study = optuna.load_study(study_name=plan.study_name, storage=plan.storage, sampler=sampler, pruner=pruner)
        callbacks = [self._stop_if_asked]
        n_trials: int | None = self.n_trials
        if plan.seeds is not None:
            callbacks.append(self._stop_when_no_seed_left)
            if not self._seeds_left(study):
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
        self._report(study, loop.unrecorded)

    def _stop_if_asked(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._stop_requests:
            study.stop()

    def _seeds_left(self, study: optuna.Study) -> bool:
        assert self.plan.seeds is not None
        trials = study.get_trials(deepcopy=False)
        started = [t for t in trials if "failed_trial" not in t.system_attrs]
        return len(started) < len(self.plan.seeds) or any(t.state == TrialState.WAITING for t in trials)

    def _stop_when_no_seed_left(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self._seeds_left(study):
            study.stop()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While active, SIGINT and SIGTERM stop the trial in progress at its next step; a second one at once."""

        def handle(signum: int, frame: Any) -> None:
            name = signal.Signals(signum).name
            if self._stop_requests:
                raise KeyboardInterrupt(f"second signal ({name})")
            self._stop_requests.append(name)
            print(
                f"\n{name}: stopping the trial in progress; it is recorded as failed and queued again "
                "(again to stop at once)",
                flush=True,
            )

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        no_traceback = _NoTracebackForStops()
        handlers = logging.getLogger("optuna").handlers
        for handler in handlers:
            handler.addFilter(no_traceback)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for log_handler in handlers:
                log_handler.removeFilter(no_traceback)

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

    # --- results --------------------------------------------------------------------------------------------------

    def _report(self, study: optuna.Study, unrecorded: list[Unrecorded]) -> None:
        plan = self.plan
        trials = study.get_trials(deepcopy=False)
        states = Counter(t.state.name.lower() for t in trials)
        print(
            f"\nStudy '{plan.study_name}' in {shown_url(plan.url)}: {len(trials)} trials"
            + (f" ({', '.join(f'{n} {state}' for state, n in sorted(states.items()))})" if trials else "")
        )
        report_name = (
            f"report_{self.env_name}_{self.n_trials}-trials-{self.n_timesteps}"
            f"-{self.sampler}-{self.pruner}_{int(time.time())}"
        )
        report = Path(self.log_folder) / self.algo / f"{report_name}.csv"
        write_report(trials, report, unrecorded)
        print(f"Report (rl-zoo3's): {report}")
        if plan.seeds is not None:
            self._report_seeds(trials)
            return
        try:
            best = study.best_trial
        except ValueError:
            print("No trial has completed yet: no best trial to write")
            return
        print(f"Best trial: {best.number}, score {best.value:g} (worker {best.user_attrs.get('worker', '?')})")
        for name, value in best.params.items():
            print(f"    {name}: {value}")
        path = self.write_best(best)
        fast = " --fast" if plan.fast else ""
        print(f"Written as {path}; train it with: breakout-sb3 train{fast} --conf-file {path}")

    def write_best(self, best: FrozenTrial) -> Path:
        """:return: the YAML file holding ``best``'s entry, which ``breakout-sb3 train --conf-file`` trains"""
        plan = self.plan
        assert plan.space is not None
        entry = plan.space.apply(plan.entry, best.params)
        path = plan.output_dir / "best.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        header = [
            f"# The best trial of the Optuna study '{plan.study_name}' ({shown_url(plan.url)}): trial {best.number},",
            f"# score {best.value:g} (mean game score of its last evaluation, epsilon {DEFAULT_EVAL_EPSILON}, after "
            f"{self.n_timesteps:,} steps).",
            f"# The entry {plan.entry_name} with:",
            *[f"#   {name}: {value}" for name, value in best.params.items()],
            f"# Train it: breakout-sb3 train{' --fast' if plan.fast else ''} --conf-file {path}",
        ]
        body = yaml.safe_dump({plan.export_key: entry}, sort_keys=False)
        path.write_text("\n".join(header) + "\n" + body)
        return path

    def _report_seeds(self, trials: list[FrozenTrial]) -> None:
        assert self.plan.seeds is not None
        folders = []
        for seed in self.plan.seeds:
            runs = [t for t in trials if t.params.get("seed") == seed and "duplicate_of" not in t.user_attrs]
            done = [t for t in runs if t.state == TrialState.COMPLETE]
            if done:
                run = done[-1]
                folder = run.user_attrs.get("folder", "?")
                print(f"  seed {seed}: score {run.value:g}, {folder} (worker {run.user_attrs.get('worker', '?')})")
                folders.append(folder)
            else:
                state = runs[-1].state.name.lower() if runs else "not started"
                print(f"  seed {seed}: {state}")
        if folders:
            print(f"Plot them: breakout-sb3 plot --mean {' '.join(folders)}")


def write_report(trials: list[FrozenTrial], path: Path, unrecorded: list[Unrecorded] | None = None) -> None:
    """
    Write the trials as rl-zoo3's report CSV (the columns of Optuna's ``trials_dataframe``), without pandas.

    :param trials: the study's trials
    :param path: the CSV to write
    :param unrecorded: the results of trials this worker finished after the study had them as failed: their value
        replaces the study's (none), and the column ``not_recorded`` says so
    """
    unrecorded_by_number = {u.number: u for u in unrecorded or []}
    columns = ["number", "value", "datetime_start", "datetime_complete", "duration"]
    for attr in ("params", "user_attrs", "system_attrs"):
        names = sorted({name for t in trials for name in getattr(t, attr)})
        columns += [f"{attr}_{name}" for name in names]
    columns.append("state")
    if unrecorded_by_number:
        columns.append("not_recorded")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", *columns])
        for index, t in enumerate(trials):
            row: dict[str, Any] = {
                "number": t.number,
                "value": t.value,
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
                "duration": t.duration,
                "state": t.state.name,
            }
            for attr in ("params", "user_attrs", "system_attrs"):
                row.update({f"{attr}_{name}": value for name, value in getattr(t, attr).items()})
            if t.number in unrecorded_by_number:
                row.update(
                    value=unrecorded_by_number[t.number].value, not_recorded=unrecorded_by_number[t.number].note()
                )
            writer.writerow([index, *("" if row.get(c) is None else row[c] for c in columns)])
