"""``breakout-sb3 train`` and ``resume``: rl-zoo3's ``train``, run with every one of its flags and our manager."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rl_zoo3.train

from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.manager import (
    FAST_ALGO,
    FAST_ENTRY,
    RESUME_FILE,
    BreakoutExperimentManager,
    CheckpointOptions,
    ResumePlan,
)
from breakout_sb3.zoo_args import check_train_args, default_train_args
from callbacks.checkpoint import latest_checkpoint


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
) -> None:
    manager = functools.partial(
        BreakoutExperimentManager,
        train_argv=argv,
        checkpoint_options=checkpoint_options,
        resume=resume,
        config_entry=config_entry,
    )
    with _zoo_train_with(manager, ["breakout-sb3", *argv]):
        rl_zoo3.train.train()


# rl-zoo3's flag for its hyperparameter optimization: `breakout-sb3 train -optimize` runs `breakout-sb3 tune`
OPTIMIZE_FLAGS = {"-optimize", "--optimize-hyperparameters"}


def train(argv: list[str], checkpoint_options: CheckpointOptions | None = None, fast: bool = False) -> None:
    """``breakout-sb3 train``: rl-zoo3's ``train`` with the recipe's defaults, or with its fast configuration."""
    if OPTIMIZE_FLAGS & set(argv):  # rl-zoo3's hyperparameter optimization is `breakout-sb3 tune`
        from breakout_sb3.tune import tune

        tune([arg for arg in argv if arg not in OPTIMIZE_FLAGS], fast=fast)
        return
    args = default_train_args() + (["--algo", FAST_ALGO] if fast else []) + argv
    config_entry = FAST_ENTRY if fast else None
    if not {"-h", "--help"} & set(argv):
        check_train_args(args, config_entry)
    run_zoo_train(args, checkpoint_options or CheckpointOptions(), config_entry=config_entry)


def resume(run_dir: str | Path, n_timesteps: int | None = None, refill_steps: int = 50_000) -> None:
    """``breakout-sb3 resume``: continue a run from its newest complete checkpoint."""
    run_dir = Path(run_dir)
    saved_file = run_dir / RESUME_FILE
    if not saved_file.is_file():
        what = "no run folder" if not run_dir.is_dir() else f"no {RESUME_FILE} (not started by breakout-sb3 train)"
        raise BreakoutSB3Error(f"cannot resume {run_dir}: {what}")
    saved = json.loads(saved_file.read_text())
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise BreakoutSB3Error(f"cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")
    if n_timesteps is None:
        n_timesteps = int(checkpoint.state["total_timesteps"]) - checkpoint.num_timesteps
        if n_timesteps <= 0:
            raise BreakoutSB3Error(f"{run_dir} already reached its {checkpoint.state['total_timesteps']} steps")
    elif n_timesteps <= 0:
        raise BreakoutSB3Error(f"-n must be > 0, got {n_timesteps}")
    print(
        f"Resuming {run_dir} from {checkpoint.path.name}: step {checkpoint.num_timesteps}, "
        f"episode {checkpoint.episodes}; {n_timesteps} more steps"
    )
    argv = [*saved["argv"], "-i", str(checkpoint.model_path), "-n", str(n_timesteps)]
    options = CheckpointOptions(**saved["checkpoint_options"])
    run_zoo_train(argv, options, ResumePlan(checkpoint, run_dir, refill_steps), saved.get("config_entry"))
