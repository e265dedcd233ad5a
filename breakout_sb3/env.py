"""The environment stack a model was trained on, rebuilt for playing it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import gymnasium as gym
import rl_zoo3.import_envs  # noqa: F401  (registers the ALE environments)
from rl_zoo3.utils import get_saved_hyperparams, get_wrapper_class
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from breakout_sb3.config import default_config_path, hyperparams_for, read_config
from breakout_sb3.errors import BreakoutSB3Error


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise BreakoutSB3Error(f"unknown environment id '{env_id}'{hint}")


def is_atari(env_id: str) -> bool:
    """:return: whether ``env_id`` is an ALE game (rl-zoo3's test: its entry point is ale-py's ``AtariEnv``)"""
    return "AtariEnv" in str(gym.spec(env_id).entry_point)


def run_hyperparams(run_dir: Path | None, env_id: str) -> dict[str, Any]:
    """:return: the hyperparameters rl-zoo3 saved in ``run_dir``, else those of ``hyperparams/dqn.yml``"""
    if run_dir is not None and (run_dir / env_id / "config.yml").is_file():
        hyperparams, _ = get_saved_hyperparams(str(run_dir / env_id))
        return dict(hyperparams)
    path = default_config_path()
    _, hyperparams = hyperparams_for(read_config(path), env_id, path, atari=is_atari(env_id))
    return hyperparams


def make_env(
    env_id: str,
    hyperparams: dict[str, Any],
    n_envs: int = 1,
    seed: int = 0,
    monitor_dir: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """
    The env stack rl-zoo3 builds from ``hyperparams``: the env (with ``env_kwargs``) in a ``Monitor``, then the
    ``env_wrapper`` (``AtariWrapper``), vectorised, then ``frame_stack`` frames stacked.
    """
    check_env_id(env_id)
    hyperparams = dict(hyperparams)
    spec = gym.spec(env_id)

    def make(**kwargs: Any) -> gym.Env:
        return spec.make(**kwargs)

    env = make_vec_env(
        make,
        n_envs=n_envs,
        seed=seed,
        monitor_dir=monitor_dir,
        wrapper_class=get_wrapper_class(hyperparams),
        env_kwargs={**hyperparams.get("env_kwargs", {}), **(env_kwargs or {})},
    )
    if hyperparams.get("frame_stack"):
        env = VecFrameStack(env, hyperparams["frame_stack"])
    return env
