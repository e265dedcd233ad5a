"""
The base of breakout-sb3's two ExperimentManagers: rl-zoo3's ``ExperimentManager`` that knows the recipe (its
YAML entry, its env's explicit kwargs, ale-py's vector env, FastDQN and ``dqn_mixed`` in rl-zoo3's algorithm table).
The training manager (``breakout_sb3.manager``) and the tuning manager (``breakout_sb3.tune.manager``) build on it.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
from huggingface_sb3 import EnvironmentName
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import get_class_by_name
from stable_baselines3.common.vec_env import VecEnv

from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.devices import check_device
from breakout_sb3.env import atari_env_kwargs
from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer
from breakout_sb3.precision import FLOAT32, MIXED_ALGO, MixedPrecisionDQN
from breakout_sb3.zoo_args import FAST_ALGO
from breakout_sb3.zoo_insides import eval_env_kwargs_flag, register_algorithm


def register_fast_dqn() -> None:
    """
    Add FastDQN to rl-zoo3's algorithm table as ``fast_dqn``: rl-zoo3 looks ``--algo`` up there (its choices),
    and the fast configuration trains with it. Call it before rl-zoo3 parses its flags; calling it again does nothing.
    """
    register_algorithm(FAST_ALGO, FastDQN)


def register_mixed_precision_dqn() -> None:
    """Add plain DQN with a ``precision`` to rl-zoo3's algorithm table as ``dqn_mixed`` (``train --precision bf16``)."""
    register_algorithm(MIXED_ALGO, MixedPrecisionDQN)


class RecipeExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager``, knowing the recipe:

    - ``config_entry`` reads another entry of the YAML than the env id (the fast configuration's), whose
      ``vec_env: ale`` trains on ale-py's vector env and whose ``replay_buffer_class`` may be an import path;
    - the env's frame skip and sticky actions are explicit in its ``env_kwargs`` (and in the run's config.yml);
    - the device is checked (one line for one that is not there), and FastDQN's replay lives on the model's GPU;
    - ``precision`` is the update's arithmetic of FastDQN and ``dqn_mixed`` models (also one continued with ``-i``).

    :param config_entry: the YAML entry to read (None: the env id's, as rl-zoo3 does)
    :param precision: the update's arithmetic (``breakout_sb3.precision``)
    """

    def __init__(self, *args: Any, config_entry: str | None = None, precision: str = FLOAT32, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config_entry = config_entry
        self.precision = precision
        self.vec_env_kind = "sb3"
        # ale-py's vector env appends to the run's 0.monitor.csv instead of starting it anew (a resumed run)
        self.monitor_append = False
        self.atari_settings = AtariSettings()

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.config_entry is None:
            return self._with_explicit_env_kwargs(*super().read_hyperparameters())
        env_name, self.env_name = self.env_name, EnvironmentName(self.config_entry)
        try:
            hyperparams, saved = super().read_hyperparameters()
        finally:
            self.env_name = env_name
        return self._with_explicit_env_kwargs(hyperparams, saved)

    def _with_explicit_env_kwargs(
        self, hyperparams: dict[str, Any], saved: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        :return: the hyperparameters, and those the run's config.yml saves, with the env's frame skip and sticky
            actions explicit in their env_kwargs (:func:`atari_env_kwargs`); the evaluation env gets them too
        """
        env_id = self.env_name.gym_id
        given = hyperparams.get("env_kwargs", self.env_kwargs)  # rl-zoo3: --env-kwargs replaced the YAML's
        env_kwargs = atari_env_kwargs(env_id, {**hyperparams, "env_kwargs": given}, self.config)
        hyperparams["env_kwargs"] = env_kwargs
        eval_flag = eval_env_kwargs_flag(self)
        if eval_flag is None:  # rl-zoo3 would build it without the YAML's env_kwargs
            self.eval_env_kwargs = env_kwargs
        else:
            eval_hyperparams = {**hyperparams, "env_kwargs": eval_flag}
            self.eval_env_kwargs = atari_env_kwargs(env_id, eval_hyperparams, "--eval-env-kwargs")
        return hyperparams, OrderedDict(sorted({**saved, "env_kwargs": env_kwargs}.items()))

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]):
        self.vec_env_kind = hyperparams.pop("vec_env", "sb3")
        self.atari_settings = AtariSettings.of(hyperparams)
        buffer_class = hyperparams.get("replay_buffer_class")
        if isinstance(buffer_class, str) and "." in buffer_class:
            hyperparams["replay_buffer_class"] = get_class_by_name(buffer_class)
        # SB3 prints the device of a model it builds at verbose >= 1 (tune builds its trials' at 2), not of one it loads
        sb3_shows_device = self.verbose >= (2 if self.optimize_hyperparameters else 1) and not self.continue_training
        device = check_device(self.device, announce=not sb3_shows_device)  # resume's saved --device too
        if hyperparams.get("replay_buffer_class") is FrameStackReplayBuffer and device.type == "cuda":
            # the replay on the model's GPU, named with its index (plain "cuda" is whichever GPU is current): sampling
            # gathers there, without host copies, and can be captured with the updates
            replay_kwargs = dict(hyperparams.get("replay_buffer_kwargs") or {})
            replay_kwargs.setdefault("storage_device", str(device))
            hyperparams["replay_buffer_kwargs"] = replay_kwargs
        if self.algo in (FAST_ALGO, MIXED_ALGO):
            hyperparams["precision"] = self.precision  # the zip's own (a model continued with -i) is overridden
        return super()._preprocess_hyperparams(hyperparams)

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        if self.vec_env_kind != "ale" or eval_env:
            return super().create_envs(n_envs, eval_env, no_log)
        # AtariWrapper's no-ops and frame skip, and its frame limit counted in agent steps
        atari = self.atari_settings
        frame_skip, max_frames = atari.frame_skip, atari.max_episode_steps
        return AleVecEnv(
            game=gym.spec(self.env_name.gym_id).kwargs["game"],
            n_envs=n_envs,
            seed=self.seed,
            noop_max=atari.noop_max,
            frame_skip=frame_skip,
            max_episode_steps=max_frames // frame_skip if max_frames else None,
            repeat_action_probability=atari.repeat_action_probability or 0.0,
            env_id=self.env_name.gym_id,
            monitor_file=None if no_log else str(Path(self.save_path) / "0.monitor.csv"),
            monitor_append=self.monitor_append,
        )


@contextlib.contextmanager
def sb3_logger_folder(folder: str) -> Iterator[None]:
    """
    Point SB3's logger at ``folder`` while training: without a TensorBoard folder, SB3's ``configure()`` creates an
    empty ``<tempdir>/SB3-<date>`` folder for a logger that only prints. ``SB3_LOGDIR`` set by the user wins.
    """
    if "SB3_LOGDIR" in os.environ:
        yield
        return
    os.environ["SB3_LOGDIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("SB3_LOGDIR", None)
