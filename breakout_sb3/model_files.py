"""Find the model zip a user points at (a zip or a run folder), the env id its run trained on, and load it."""

from __future__ import annotations

import zipfile
from pathlib import Path

from stable_baselines3 import DQN
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.env import env_folder_name, env_id_of_folder
from breakout_sb3.errors import BreakoutSB3Error, first_line
from callbacks.checkpoint import latest_checkpoint


def resolve_model(path: str | Path, env_id: str) -> tuple[Path, Path | None]:
    """
    :param path: a model zip, or an rl-zoo3 run folder
    :return: the zip, and the run folder it belongs to (None if it is not in one). In a run folder the final
        model ``<env_id>.zip`` is preferred, then ``solved_model.zip``, then the newest complete checkpoint,
        then rl-zoo3's ``best_model.zip``.
    """
    path, name = Path(path), env_folder_name(env_id)  # rl-zoo3's name: ALE/Breakout-v5 is ALE-Breakout-v5
    if path.is_dir():
        final, solved, best = path / f"{name}.zip", path / "solved_model.zip", path / "best_model.zip"
        checkpoint = latest_checkpoint(path)
        for candidate in [final, solved, checkpoint.model_path if checkpoint else None, best]:
            if candidate is not None and candidate.is_file():
                return candidate, path
        raise BreakoutSB3Error(f"no model zip in {path}")
    if not path.exists():
        raise BreakoutSB3Error(f"model not found: {path}")
    # a zip in the run folder, or a checkpoint's run/checkpoints/step_<n>/model.zip
    run_dir = next((folder for folder in path.parents[:3] if (folder / name / "config.yml").is_file()), None)
    return path, run_dir


def run_env_id(path: str | Path) -> str | None:
    """
    :param path: a run folder, or a model zip in one (a checkpoint's included)
    :return: the env id the run was trained on (the name of rl-zoo3's ``<run>/<env_id>/config.yml`` folder), or None
    """
    path = Path(path)
    for folder in [path] if path.is_dir() else list(path.parents[:3]):
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
