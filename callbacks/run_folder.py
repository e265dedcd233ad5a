"""Where callbacks write when they are not told: the training env's Monitor folder (rl-zoo3's run folder)."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv


def file_monitor(env: gym.Env) -> Monitor | None:
    """:return: the outermost SB3 ``Monitor`` around ``env`` that writes a ``*.monitor.csv`` file, None if none does"""
    while True:
        if isinstance(env, Monitor) and env.results_writer is not None:
            return env
        if not isinstance(env, gym.Wrapper):
            return None
        env = env.env


def monitor_folder(vec_env: VecEnv) -> Path | None:
    """
    :return: the folder the first env's ``Monitor`` writes its ``*.monitor.csv`` into, or None if there is no
        such file or the envs live in other processes
    """
    base = vec_env.unwrapped
    if not isinstance(base, DummyVecEnv):
        return None
    monitor = file_monitor(base.envs[0])
    if monitor is None:
        return None
    assert monitor.results_writer is not None
    return Path(monitor.results_writer.file_handler.name).parent


def side_path(path: Path, tag: str) -> Path:
    """
    :return: a free name beside ``path`` for rows moved out of it: ``<stem>.<tag>.csv``, else ``<stem>.<tag>.2.csv``,
        ``.3``... (``training_stats.csv``, ``after_episode_9``: ``training_stats.after_episode_9.csv``)
    """
    side = path.with_name(f"{path.stem}.{tag}.csv")
    k = 1
    while side.exists():
        k += 1
        side = path.with_name(f"{path.stem}.{tag}.{k}.csv")
    return side


class RunFolderCallback(BaseCallback):
    """
    Base for callbacks that write files into a run folder.

    :param log_dir: folder to write into. None: the folder of the training env's ``Monitor`` files, which is
        rl-zoo3's run folder (``logs/dqn/<env>_<id>``); failing that, the current working directory.
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    """

    def __init__(self, log_dir: str | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.log_dir = log_dir

    def _init_callback(self) -> None:
        if self.log_dir is None:
            folder = monitor_folder(self.training_env)
            self.log_dir = str(folder) if folder is not None else os.getcwd()
        os.makedirs(self.log_dir, exist_ok=True)
