"""
The plan of ``breakout-sb3 tune``: the entry tuned and its search space, the study's name, its storage opened and the
study created or joined, all checked before rl-zoo3 starts.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage
from rl_zoo3.utils import ALGOS

from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path, hyperparams_for, read_config
from breakout_sb3.env import is_atari
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.recipe_manager import register_fast_dqn
from breakout_sb3.settings import TUNE, TUNE_ZOO
from breakout_sb3.tune.retry import Outage
from breakout_sb3.tune.space import SPACE_KEY, SearchSpace
from breakout_sb3.tune.storage import (
    Heartbeat,
    check_study_name,
    is_journal_file,
    is_local,
    open_storage,
    open_study,
    parse_url,
    shown_url,
)
from breakout_sb3.zoo_args import FAST_ALGO, check_train_args, parse_zoo_params

DEFAULT_TRIAL_STEPS = TUNE_ZOO["--n-timesteps"].default


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


@dataclass
class _Entry:
    """The YAML entry tuned, read before the storage is opened."""

    config: dict[str, Any]
    name: str
    hyperparams: dict[str, Any]  # -params merged in
    space: SearchSpace | None  # None: a seed sweep


def build_plan(
    argv: list[str],
    flags: argparse.Namespace,
    numbers: dict[str, int | None],
    fast: bool,
    seeds: list[int] | None,
    heartbeat: Heartbeat,
    db_wait: int = TUNE["--db-wait"].default,
) -> tuple[TunePlan, list[str]]:
    """
    Check the command, read the entry and its search space, open the storage and create or join the study.

    :param argv: rl-zoo3 flags
    :param flags: ``argv`` read by :func:`breakout_sb3.zoo_args.parse_zoo_flags`
    :param numbers: the numeric flags tune reads, checked (None: not given)
    :param fast: tune the fast configuration
    :param seeds: a seed sweep's seeds (None: a hyperparameter search)
    :param heartbeat: heartbeats and retries of trials whose worker died
    :param db_wait: seconds an outage of the database server is waited out
    :return: the plan, and the rl-zoo3 flags that run its workers
    """
    register_fast_dqn()
    algo = flags.algo or (FAST_ALGO if fast else "dqn")
    env_id = flags.env or ENV_ID
    conf = flags.conf_file or str(default_config_path())
    zoo_args = ["--algo", algo, "--env", env_id, "--conf-file", conf, *argv]
    check_train_args(zoo_args, fast=fast)
    entry = _read_entry(flags, algo, env_id, conf, fast, seeds)
    n_timesteps = _trial_steps(numbers["--n-timesteps"], entry.hyperparams, seeds)
    log_folder = flags.log_folder or "logs"
    url = flags.storage if flags.storage is not None else f"sqlite:///{(Path(log_folder) / 'tune.db').resolve()}"
    parse_url(url)
    study_name = flags.study_name
    if study_name is None:
        study_name = default_study_name(url, env_id, fast, seeds, n_timesteps)
    check_study_name(study_name)

    outage = None if is_journal_file(url) else Outage(shown_url(url), db_wait)
    storage = open_storage(url, heartbeat, outage)
    description = _study_description(entry, env_id, algo, n_timesteps, seeds)
    _create_or_join(storage, url, study_name, description, entry)

    n_trials = numbers["--n-trials"] or (len(seeds) if seeds is not None else None)
    zoo_args += ["-n", str(n_timesteps), "--storage", url, "--study-name", study_name]
    zoo_args += [*(["--n-trials", str(n_trials)] if n_trials else []), "--optimize-hyperparameters", "--no-optim-plots"]
    plan = TunePlan(
        storage=storage,
        url=url,
        outage=outage,
        study_name=study_name,
        entry_name=entry.name,
        entry=entry.hyperparams,
        export_key=f"{env_id}-fast" if fast else env_id,
        output_dir=Path(log_folder) / algo / folder_name(study_name),
        space=entry.space,
        seeds=seeds,
        fast=fast,
    )
    return plan, zoo_args


def _read_entry(
    flags: argparse.Namespace, algo: str, env_id: str, conf: str, fast: bool, seeds: list[int] | None
) -> _Entry:
    """:return: the YAML entry tuned, ``-params`` merged in, and its search space (None in a seed sweep)"""
    if not conf.endswith((".yml", ".yaml")):
        raise BreakoutSB3Error(f"tune: --conf-file must be a YAML file (its {SPACE_KEY} section is the search space)")
    config = read_config(conf)
    overrides = parse_zoo_params(flags.hyperparams or [])
    entry_name, entry = hyperparams_for(config, env_id, conf, atari=is_atari(env_id), fast=fast)
    entry = {**entry, **overrides}
    space = None
    if seeds is None:
        space = SearchSpace.from_config(config, entry, ALGOS[algo], conf, fixed=set(overrides))
    return _Entry(config, entry_name, entry, space)


def _trial_steps(given: int | None, hyperparams: dict[str, Any], seeds: list[int] | None) -> int:
    """:return: agent steps per trial: ``-n``, else the entry's n_timesteps (a seed sweep) or 1,000,000 (a search)"""
    if given is not None:
        return given
    return int(hyperparams["n_timesteps"]) if seeds is not None else DEFAULT_TRIAL_STEPS


def _study_description(
    entry: _Entry, env_id: str, algo: str, n_timesteps: int, seeds: list[int] | None
) -> dict[str, Any]:
    """:return: what the study records about itself, which every worker joining it must match"""
    return {
        "kind": "seeds" if seeds is not None else "tune",
        "env": env_id,
        "algo": algo,
        "entry": entry.name,
        "n_timesteps": n_timesteps,
        "seeds": seeds,
        "hyperparams": entry.hyperparams,
        "search_space": entry.config[SPACE_KEY] if entry.space is not None else None,
        "command": " ".join(sys.orig_argv),
    }


def default_study_name(url: str, env_id: str, fast: bool, seeds: list[int] | None, n_timesteps: int) -> str:
    """
    :return: the study's name when ``--study-name`` is not given: ``<env>[-fast]-tune-<n>-steps``, or
        ``<env>[-fast]-seeds-<s1>-<s2>...-<n>-steps`` for a seed sweep
    :raise BreakoutSB3Error: with a server storage, where every worker must name the same study
    """
    if not is_local(url):
        raise BreakoutSB3Error(
            f"tune: --study-name is needed with the server storage {shown_url(url)}: every worker must name "
            "the same study"
        )
    kind = f"seeds-{'-'.join(map(str, seeds))}" if seeds is not None else "tune"
    return f"{env_id}{'-fast' if fast else ''}-{kind}-{n_timesteps}-steps"


def folder_name(study_name: str) -> str:
    """:return: ``study_name`` as a folder name"""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip(".") or "study"


def _create_or_join(
    storage: BaseStorage, url: str, study_name: str, description: dict[str, Any], entry: _Entry
) -> None:
    """Create the study (its first trial: the entry's own values) or join it, and say which."""
    first_trial = entry.space.recipe if entry.space is not None else None
    created = open_study(storage, url, study_name, description, first_trial)
    print(
        f"{'Created' if created else 'Joined'} the study '{study_name}' in {shown_url(url)}"
        + (f" (its first trial: the entry {entry.name}'s own values)" if created and entry.space is not None else "")
    )
    if is_journal_file(url):
        print("Note: a journal file has no heartbeats: a trial whose worker is killed stays RUNNING")
