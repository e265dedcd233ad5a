"""``breakout-sb3 train`` and ``resume``: rl-zoo3's ``train``, run with every one of its flags and our manager."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rl_zoo3.train
from stable_baselines3.common.buffers import ReplayBuffer

from breakout_sb3.devices import check_device, device_flag
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.manager import (
    FAST_ALGO,
    RESUME_FILE,
    BreakoutExperimentManager,
    CheckpointOptions,
    ResumePlan,
)
from breakout_sb3.run_lock import RunLock, run_lock
from breakout_sb3.zoo_args import check_train_args, default_train_args
from callbacks.checkpoint import REPLAY_FILE, Checkpoint, complete_checkpoints
from callbacks.replay_io import ReplayBufferFileError, read_replay_buffer


@contextmanager
def _zoo_train_with(manager: Any, argv: list[str]) -> Iterator[None]:
    # rl-zoo3 builds its argument parser inside train(): running train() with its ExperimentManager swapped for
    # ours keeps every rl-zoo3 flag working unchanged.
    saved = rl_zoo3.train.ExperimentManager, sys.argv
    rl_zoo3.train.ExperimentManager, sys.argv = manager, argv
    try:
        yield
    finally:
        rl_zoo3.train.ExperimentManager, sys.argv = saved


def run_zoo_train(
    argv: list[str],
    checkpoint_options: CheckpointOptions,
    resume: ResumePlan | None = None,
    config_entry: str | None = None,
    lock: RunLock | None = None,
) -> None:
    """
    Run rl-zoo3's ``train`` with ``argv`` and our manager, which takes the run folder's lock (:class:`RunLock`)
    before writing there; the lock is released when training ends.

    :param lock: the lock of the run folder, already held (resume), or None (train: a new folder)
    """
    lock = lock or RunLock()
    manager = functools.partial(
        BreakoutExperimentManager,
        train_argv=argv,
        checkpoint_options=checkpoint_options,
        resume=resume,
        config_entry=config_entry,
        run_lock=lock,
    )
    try:
        with _zoo_train_with(manager, ["breakout-sb3", *argv]):
            rl_zoo3.train.train()
    finally:
        lock.release()


PROGRESS_FLAGS = ("-P", "--progress")


def with_progress(argv: list[str], progress: bool) -> list[str]:
    """:return: ``argv`` with rl-zoo3's progress bar flag, or without it"""
    argv = [arg for arg in argv if arg not in PROGRESS_FLAGS]
    return [*argv, "--progress"] if progress else argv


# rl-zoo3's flag for its hyperparameter optimization: `breakout-sb3 train -optimize` runs `breakout-sb3 tune`
OPTIMIZE_FLAGS = {"-optimize", "--optimize-hyperparameters"}


def train(
    argv: list[str], checkpoint_options: CheckpointOptions | None = None, fast: bool = False, progress: bool = True
) -> None:
    """
    ``breakout-sb3 train``: rl-zoo3's ``train`` with the recipe's defaults, or with its fast configuration.

    :param argv: rl-zoo3 train flags
    :param checkpoint_options: breakout-sb3's own checkpoint flags
    :param fast: train the fast configuration (FastDQN on ale-py's vector env)
    :param progress: show SB3's progress bar (steps/s, ETA)
    """
    if OPTIMIZE_FLAGS & set(argv):  # rl-zoo3's hyperparameter optimization is `breakout-sb3 tune`
        from breakout_sb3.tune import tune

        tune([arg for arg in argv if arg not in OPTIMIZE_FLAGS], fast=fast)
        return
    args = default_train_args() + (["--algo", FAST_ALGO] if fast else []) + argv
    args = with_progress(args, progress)
    config_entry = None
    if not {"-h", "--help"} & set(argv):
        entry = check_train_args(args, fast=fast)
        config_entry = entry if fast else None  # rl-zoo3 finds the recipe's entry itself
    run_zoo_train(args, checkpoint_options or CheckpointOptions(), config_entry=config_entry)


def resume(
    run_dir: str | Path, n_timesteps: int | None = None, refill_steps: int = 50_000, progress: bool = True
) -> None:
    """
    ``breakout-sb3 resume``: continue a run from its newest complete checkpoint whose replay buffer reads back
    whole (checksum included), after cutting the run's Monitor files back to that checkpoint.

    :param run_dir: the run folder
    :param n_timesteps: further agent steps (None: up to the run's original total)
    :param refill_steps: transitions collected before training resumes, if the checkpoint has no replay buffer
    :param progress: show SB3's progress bar (steps/s, ETA)
    """
    run_dir = Path(run_dir)
    saved_file = run_dir / RESUME_FILE
    if not saved_file.is_file():
        what = "no run folder" if not run_dir.is_dir() else f"no {RESUME_FILE} (not started by breakout-sb3 train)"
        raise BreakoutSB3Error(f"cannot resume {run_dir}: {what}")
    if n_timesteps is not None and n_timesteps <= 0:
        raise BreakoutSB3Error(f"-n must be > 0, got {n_timesteps}")
    with run_lock(run_dir) as lock:  # before anything in the folder is read or changed
        saved = json.loads(saved_file.read_text())
        check_device(device_flag(saved["argv"]), where=str(saved_file))  # the device the run was started on
        checkpoint, replay = _resume_point(run_dir)
        if n_timesteps is None:
            n_timesteps = int(checkpoint.state["total_timesteps"]) - checkpoint.num_timesteps
            if n_timesteps <= 0:
                raise BreakoutSB3Error(f"{run_dir} already reached its {checkpoint.state['total_timesteps']} steps")
        print(f"Resuming {run_dir} from {checkpoint.path.name}: {checkpoint.describe()}; {n_timesteps} more steps")
        checkpoint.roll_back_monitor_files(run_dir)  # before the resumed run's Monitor opens them to append
        argv = with_progress([*saved["argv"], "-i", str(checkpoint.model_path), "-n", str(n_timesteps)], progress)
        options = CheckpointOptions(**saved["checkpoint_options"])
        plan = ResumePlan(checkpoint, run_dir, refill_steps, replay_buffer=replay)
        run_zoo_train(argv, options, plan, saved.get("config_entry"), lock=lock)


def _resume_point(run_dir: Path) -> tuple[Checkpoint, ReplayBuffer | None]:
    """
    :return: the newest complete checkpoint whose replay buffer reads back whole, and that replay buffer (None if it
        has none, or a format-1 ``replay_buffer.pkl`` that rl-zoo3 loads beside the model)
    """
    for checkpoint in complete_checkpoints(run_dir):
        replay_path = checkpoint.replay_path
        if replay_path is None or replay_path.name != REPLAY_FILE:
            return checkpoint, None
        try:
            return checkpoint, read_replay_buffer(replay_path)
        except ReplayBufferFileError as e:
            warnings.warn(f"skipping checkpoint {checkpoint.path.name}: {e}", stacklevel=2)
    raise BreakoutSB3Error(f"cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")
