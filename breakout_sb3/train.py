"""``breakout-sb3 train``: rl-zoo3's ``train``, run with every one of its flags and our manager (a new run)."""

from __future__ import annotations

import argparse
import functools

from breakout_sb3.devices import check_device, device_flag
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.manager import CheckpointOptions, ResumePlan, TrainingExperimentManager
from breakout_sb3.precision import FLOAT32, MIXED_ALGO, check_precision
from breakout_sb3.recipe_manager import register_fast_dqn, register_mixed_precision_dqn
from breakout_sb3.run_lock import RunLock
from breakout_sb3.zoo_args import FAST_ALGO, check_train_args, check_train_flags, default_train_args
from breakout_sb3.zoo_train import zoo_train


def run_zoo_train(
    argv: list[str],
    checkpoint_options: CheckpointOptions,
    resume: ResumePlan | None = None,
    config_entry: str | None = None,
    lock: RunLock | None = None,
    precision: str = FLOAT32,
) -> None:
    """
    Run rl-zoo3's ``train`` with ``argv`` and our manager, which takes the run folder's lock (:class:`RunLock`)
    before writing there; the lock is released when training ends.

    :param lock: the lock of the run folder, already held (resume), or None (train: a new folder)
    :param precision: the update's arithmetic (``breakout_sb3.precision``), saved in the run's resume.json
    """
    register_fast_dqn()  # a resumed fast run's saved flags name it
    register_mixed_precision_dqn()  # and a resumed plain DQN run in bf16's
    lock = lock or RunLock()
    manager = functools.partial(
        TrainingExperimentManager,
        train_argv=argv,
        checkpoint_options=checkpoint_options,
        resume=resume,
        config_entry=config_entry,
        run_lock=lock,
        precision=precision,
    )
    try:
        zoo_train(manager, argv)
    finally:
        lock.release()


PROGRESS_FLAGS = ("-P", "--progress")


def with_progress(argv: list[str], progress: bool) -> list[str]:
    """:return: ``argv`` with rl-zoo3's progress bar flag, or without it"""
    argv = [arg for arg in argv if arg not in PROGRESS_FLAGS]
    return [*argv, "--progress"] if progress else argv


def train(
    argv: list[str],
    checkpoint_options: CheckpointOptions | None = None,
    fast: bool = False,
    progress: bool = True,
    precision: str = FLOAT32,
) -> None:
    """
    ``breakout-sb3 train``: rl-zoo3's ``train`` with the recipe's defaults, or with its fast configuration.

    :param argv: rl-zoo3 train flags
    :param checkpoint_options: breakout-sb3's own checkpoint flags
    :param fast: train the fast configuration (FastDQN on ale-py's vector env)
    :param progress: show SB3's progress bar (steps/s, ETA)
    :param precision: the update's arithmetic: ``float32``, or ``bf16`` (mixed precision; plain DQN then trains as
        ``dqn_mixed``, SB3's update with the networks under autocast)
    """
    register_fast_dqn()
    register_mixed_precision_dqn()
    mixed = precision != FLOAT32 and not fast
    args = default_train_args() + (["--algo", FAST_ALGO] if fast else []) + argv
    if mixed and _algo(args) == "dqn":
        args += ["--algo", MIXED_ALGO]
    args = with_progress(args, progress)
    config_entry = None
    if not {"-h", "--help"} & set(argv):
        check_train_flags(argv, fast=fast)
        entry = check_train_args(args, fast=fast)
        config_entry = entry if fast else None  # rl-zoo3 finds the recipe's entry itself
        if precision != FLOAT32 and _algo(args) not in (FAST_ALGO, MIXED_ALGO):
            raise BreakoutSB3Error(f"--precision {precision} trains DQN (--algo dqn, or --fast), not {_algo(args)}")
        check_precision(precision, check_device(device_flag(args)))
    run_zoo_train(args, checkpoint_options or CheckpointOptions(), config_entry=config_entry, precision=precision)


def _algo(argv: list[str]) -> str:
    """:return: the algorithm rl-zoo3 flags ``argv`` ask for (the last ``--algo`` given)"""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo")
    return parser.parse_known_args(argv)[0].algo
