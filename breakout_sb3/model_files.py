"""Find the model zip a user points at (a zip or a run folder), the env id its run trained on, and load it."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.env import env_folder_name, env_id_of_folder
from breakout_sb3.errors import BreakoutSB3Error, first_line
from callbacks.checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    BrokenCheckpointError,
    Checkpoint,
    find_checkpoints,
    latest_checkpoint,
    zip_problem,
)


def resolve_model(path: str | Path, env_id: str) -> tuple[Path, Path | None]:
    """
    :param path: a model zip, a checkpoint folder (``RUN/checkpoints/step_<N>``) or an rl-zoo3 run folder
    :param env_id: the env id the run trained on (its model's file name in the run folder)
    :return: the zip, and the run folder it belongs to (None if it is not in one). In a run folder the final
        model ``<env_id>.zip`` is preferred, then ``solved_model.zip``, then the newest intact checkpoint, then
        rl-zoo3's ``best_model.zip``; a torn or corrupt one is passed over with a note saying so. A checkpoint's
        ``model.zip`` is verified against its ``state.json``.
    :raise BreakoutSB3Error: if there is no intact model there
    """
    path, name = Path(path), env_folder_name(env_id)  # rl-zoo3's name: ALE/Breakout-v5 is ALE-Breakout-v5
    if path.is_dir() and (path / STATE_FILE).is_file():
        return _checked_checkpoint(path).model_path, _run_folder_of(path, name)
    if path.is_dir():
        return _model_of_run(path, name), path
    if not path.exists():
        raise BreakoutSB3Error(f"model not found: {path}")
    if path.name == MODEL_FILE and (path.parent / STATE_FILE).is_file():
        _checked_checkpoint(path.parent)
    return path, _run_folder_of(path, name)


def _run_folder_of(path: Path, name: str) -> Path | None:
    """:return: the run folder holding ``path`` (a zip in it, a checkpoint folder or a checkpoint's zip), or None"""
    return next((folder for folder in path.parents[:3] if (folder / name / "config.yml").is_file()), None)


def _checked_checkpoint(folder: Path) -> Checkpoint:
    try:
        return Checkpoint.read(folder, verify=[MODEL_FILE])
    except BrokenCheckpointError as e:
        raise BreakoutSB3Error(f"checkpoint {folder} is broken: {e.reason}") from None


def _model_of_run(run_dir: Path, name: str) -> Path:
    for zip_path in (run_dir / f"{name}.zip", run_dir / "solved_model.zip"):
        if zip_path.is_file():
            problem = zip_problem(zip_path)
            if problem is None:
                return zip_path
            _note(f"{zip_path} is {problem}: not used")
    checkpoint = latest_checkpoint(
        run_dir, verify=[MODEL_FILE], on_skip=lambda e: _note(f"skipping checkpoint {e.path.name}: {e.reason}")
    )
    if checkpoint is not None:
        _note(f"playing {checkpoint.model_path} (step {checkpoint.num_timesteps}), the newest intact checkpoint")
        return checkpoint.model_path
    best = run_dir / "best_model.zip"
    if best.is_file() and zip_problem(best) is None:
        return best
    found = any(p.is_file() for p in run_dir.glob("*.zip")) or bool(find_checkpoints(run_dir))
    raise BreakoutSB3Error(f"no {'intact ' if found else ''}model zip in {run_dir}")


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def run_env_id(path: str | Path) -> str | None:
    """
    :param path: a run folder, a checkpoint folder, or a model zip in one (a checkpoint's included)
    :return: the env id the run was trained on (the name of rl-zoo3's ``<run>/<env_id>/config.yml`` folder), or None
    """
    path = Path(path)
    if path.is_dir():
        folders = [path.resolve().parents[1]] if (path / STATE_FILE).is_file() else [path]  # RUN/checkpoints/step_N
    else:
        folders = list(path.parents[:3])
    for folder in folders:
        configs = sorted(folder.glob("*/config.yml"))
        if configs:
            return env_id_of_folder(configs[0].parent.name)
    return None


def load_model(path: Path, env: VecEnv, device: str = "auto") -> DQN:
    """Load a DQN zip for playing: with ``env``, and a one-transition replay buffer instead of the trained size."""
    if not zipfile.is_zipfile(path):
        raise BreakoutSB3Error(f"{path} is not a model zip (corrupt or another kind of file)")
    try:
        return DQN.load(path, env=env, device=device, buffer_size=1)
    except Exception as e:  # whatever a damaged or foreign file makes SB3 raise, reported in one line
        raise BreakoutSB3Error(f"cannot load {path}: {first_line(e)}") from None
