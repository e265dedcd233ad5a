"""
``breakout-sb3 tune``: rl-zoo3's hyperparameter optimization on the recipe's own search space, and seed sweeps of one
configuration, run by any number of workers on one Optuna study (SQLite on one machine, PostgreSQL on many).

This module is the command: its help, its flags and their checks, and the run of rl-zoo3's ``train`` with the
workers' manager.
"""

from __future__ import annotations

import argparse
import functools
import typing
from dataclasses import dataclass, field

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.evaluate import DEFAULT_EVAL_EPSILON
from breakout_sb3.flags import help_rows, help_usage
from breakout_sb3.ranges import TRAIN_FLAGS, check
from breakout_sb3.settings import TUNE, TUNE_ZOO, Seed
from breakout_sb3.tune.manager import TuneExperimentManager
from breakout_sb3.tune.plan import DEFAULT_TRIAL_STEPS, build_plan
from breakout_sb3.tune.storage import Heartbeat
from breakout_sb3.zoo_args import integer_flag, parse_zoo_flags
from breakout_sb3.zoo_train import zoo_train

# rl-zoo3's choices tune takes
SAMPLERS = typing.get_args(TUNE_ZOO["--sampler"].annotation)
PRUNERS = typing.get_args(TUNE_ZOO["--pruner"].annotation)
TUNE_HELP = f"""\
{help_usage("breakout-sb3 tune", TUNE, "[rl-zoo3 flags]")}

Runs trials of one Optuna study; the same command on several machines (same --storage and --study-name) makes
them workers of that study. Each trial trains -n steps and is scored by its last evaluation (the mean game score
of --eval-episodes games at epsilon {DEFAULT_EVAL_EPSILON}).

{help_rows(TUNE, column=29)}

rl-zoo3's flags pass through, with these defaults:
  --storage URL              sqlite:///<log folder>/tune.db; any URL Optuna accepts (postgresql://user@host/db),
                             or a journal file ending in .log
  --study-name NAME          <env>[-fast]-tune-<n>-steps (required with a server storage)
  -n N                       agent steps per trial: {DEFAULT_TRIAL_STEPS} (a seed sweep: the entry's n_timesteps)
  --n-trials N               trials this worker runs (500, rl-zoo3's; a seed sweep: as many as seeds)
  --sampler {"|".join(SAMPLERS)}, --pruner {"|".join(PRUNERS)}, --n-startup-trials N, --n-evaluations N,
  --eval-episodes N, --max-total-trials N, --n-jobs N, -params key:value (fixed, not searched), -f, --seed,
  --conf-file FILE (the search space is its breakout-sb3-tune section), --device, --num-threads
"""

# rl-zoo3's numeric flags that tune reads
NUMERIC_FLAGS = ("--n-timesteps", "--n-trials", "--max-total-trials", "--n-jobs", "--n-startup-trials",
                 "--n-evaluations", "--eval-episodes", "--seed")  # fmt: skip
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
    db_wait: int = TUNE["--db-wait"].default


def tune(argv: list[str], fast: bool = False, options: TuneOptions | None = None) -> None:
    """
    ``breakout-sb3 tune``: check the command, open the storage, create or join the study, then run rl-zoo3's
    ``train`` in its optimization mode with :class:`~breakout_sb3.tune.manager.TuneExperimentManager`.

    :param argv: rl-zoo3 flags
    :param fast: tune the fast configuration
    :param options: breakout-sb3's own tune flags
    """
    if {"-h", "--help"} & set(argv):
        print(TUNE_HELP)
        return
    options = options or TuneOptions()
    options.heartbeat.check()
    flags = parse_zoo_flags(argv, "tune")
    numbers = check_tune_flags(flags, options.seeds)
    plan, zoo_args = build_plan(argv, flags, numbers, fast, options.seeds, options.heartbeat, options.db_wait)
    manager = functools.partial(
        TuneExperimentManager,
        config_entry=plan.entry_name if fast else None,
        plan=plan,
    )
    zoo_train(manager, zoo_args, prog="breakout-sb3 tune")


def check_tune_flags(flags: argparse.Namespace, seeds: list[int] | None) -> dict[str, int | None]:
    """
    Refuse the rl-zoo3 flags that make no sense for tuning, and check those tune reads.

    :param flags: rl-zoo3 flags, read by :func:`breakout_sb3.zoo_args.parse_zoo_flags`
    :param seeds: a seed sweep's seeds (None: a hyperparameter search)
    :return: the numeric rl-zoo3 flags tune reads, checked (None: not given)
    """
    for name, message in REFUSED_FLAGS.items():
        if getattr(flags, name) is not None:
            raise BreakoutSB3Error(f"tune does not take {message}")
    if seeds is not None:
        _check_seeds(flags, seeds)
    if flags.sampler is not None and flags.sampler not in SAMPLERS:
        raise BreakoutSB3Error(f"tune: --sampler must be one of {', '.join(SAMPLERS)}, got {flags.sampler!r}")
    if flags.pruner is not None and flags.pruner not in PRUNERS:
        raise BreakoutSB3Error(f"tune: --pruner must be one of {', '.join(PRUNERS)}, got {flags.pruner!r}")
    if flags.sampler == "auto":
        try:
            import optunahub  # noqa: F401
        except ImportError:
            raise BreakoutSB3Error("tune: --sampler auto needs optunahub (pip install optunahub)") from None
    numbers = {flag: integer_flag(flag, getattr(flags, flag), "tune") for flag in NUMERIC_FLAGS}
    for flag, value in numbers.items():
        if value is not None:
            check(flag, value, TRAIN_FLAGS[flag], "tune")
    if numbers["--n-timesteps"] == -1:  # rl-zoo3's "the YAML's n_timesteps"
        numbers["--n-timesteps"] = None
    return numbers


def _check_seeds(flags: argparse.Namespace, seeds: list[int]) -> None:
    """Check a seed sweep's seeds, and refuse the search's flags, which do not apply to it."""
    for seed in seeds:
        check("--seeds", seed, Seed, "tune")
    if len(set(seeds)) != len(seeds):
        raise BreakoutSB3Error(f"tune: --seeds lists a seed twice: {' '.join(map(str, seeds))}")
    search_flags = {
        "--sampler": flags.sampler,
        "--pruner": flags.pruner,
        "--n-startup-trials": getattr(flags, "--n-startup-trials"),
        "--max-total-trials": getattr(flags, "--max-total-trials"),
    }
    for flag, value in search_flags.items():
        if value is not None:
            raise BreakoutSB3Error(f"tune: --seeds runs each seed once; {flag} does not apply")
