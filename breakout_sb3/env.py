"""The environment stack a model was trained on, rebuilt for playing it."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import gymnasium as gym
import rl_zoo3.import_envs  # noqa: F401  (registers the ALE environments)
from huggingface_sb3 import EnvironmentName
from rl_zoo3.utils import get_saved_hyperparams, get_wrapper_class
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.config import default_config_path, hyperparams_for, read_config
from breakout_sb3.errors import BreakoutSB3Error

# ale-py's AtariEnv arguments: the emulator frames per env step, and the probability that the emulator repeats the
# previous action instead of the agent's at each frame (sticky actions). Every ALE id sets both: *NoFrameskip-v4 1
# and 0, gymnasium's ALE/*-v5 4 and 0.25 (Machado et al. 2018's protocol).
FRAMESKIP = "frameskip"
STICKY_ACTIONS = "repeat_action_probability"


def check_env_id(env_id: str) -> None:
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise BreakoutSB3Error(f"unknown environment id '{env_id}'{hint}")


def is_atari(env_id: str) -> bool:
    """:return: whether ``env_id`` is an ALE game (rl-zoo3's test: its entry point is ale-py's ``AtariEnv``)"""
    return "AtariEnv" in str(gym.spec(env_id).entry_point)


def env_folder_name(env_id: str) -> str:
    """:return: the name rl-zoo3 gives ``env_id`` in a run folder (``ALE/Breakout-v5``: ``ALE-Breakout-v5``)"""
    return str(EnvironmentName(env_id))


def env_id_of_folder(name: str) -> str:
    """:return: the env id whose run-folder name is ``name`` (``ALE-Breakout-v5``: ``ALE/Breakout-v5``), or ``name``"""
    if name in gym.registry:
        return name
    return next((env_id for env_id in gym.registry if env_folder_name(env_id) == name), name)


def atari_env_kwargs(env_id: str, hyperparams: dict[str, Any], where: str) -> dict[str, Any]:
    """
    The ``env_kwargs`` of an entry, with an ALE game's frame skip and sticky actions made explicit, so that a run
    folder's ``config.yml`` says what the run played: under AtariWrapper's frame skip the env's own is set to 1
    (gymnasium's ``ALE/*-v5`` ids skip 4 frames themselves: 16 frames per action under AtariWrapper's 4), and
    ``repeat_action_probability`` is the one given, else the env id's own (0.25 for v5 ids, 0 for NoFrameskip-v4).

    :param env_id: the gymnasium id
    :param hyperparams: an rl-zoo3 entry (its ``env_kwargs`` and ``env_wrapper`` are read)
    :param where: named in the error: the file or flag the values come from
    :return: the env's kwargs (those of a non-ALE env as they are)
    :raise BreakoutSB3Error: if the env would skip frames under AtariWrapper's frame skip, or sticky actions were
        asked of both the env and AtariWrapper
    """
    env_kwargs = dict(hyperparams.get("env_kwargs") or {})
    if not is_atari(env_id):
        return env_kwargs
    own = gym.spec(env_id).kwargs
    atari = AtariSettings.of(hyperparams)
    frame_skip = atari.wrapper_frame_skip
    if frame_skip > 1:
        given = 1 if atari.frameskip is None else atari.frameskip
        if given != 1:
            frames = given * frame_skip if isinstance(given, int) else f"{given!r} x {frame_skip}"
            raise BreakoutSB3Error(
                f"{where}: env_kwargs 'frameskip' {given!r} under AtariWrapper's frame_skip {frame_skip} would repeat "
                f"each action {frames} emulator frames; AtariWrapper skips the frames: leave frameskip out (it is set "
                "to 1) or give AtariWrapper frame_skip 1"
            )
    env_frameskip = own[FRAMESKIP] if atari.frameskip is None else atari.frameskip
    env_kwargs[FRAMESKIP] = 1 if frame_skip > 1 else env_frameskip
    sticky = own[STICKY_ACTIONS] if atari.repeat_action_probability is None else atari.repeat_action_probability
    env_kwargs[STICKY_ACTIONS] = sticky
    wrapper_sticky = atari.action_repeat_probability
    if wrapper_sticky > 0 and sticky > 0:
        raise BreakoutSB3Error(
            f"{where}: sticky actions twice: the env's repeat_action_probability {env_kwargs[STICKY_ACTIONS]} and "
            f"AtariWrapper's action_repeat_probability {wrapper_sticky}; set one of them to 0"
        )
    return env_kwargs


def sticky_actions(env: VecEnv) -> float | None:
    """
    :return: the probability that the emulator repeats the previous action instead of the agent's, at each frame,
        read from ``env`` itself (ALE's ``repeat_action_probability``, or AtariWrapper's ``action_repeat_probability``);
        None if ``env`` is not an ALE game
    """
    try:
        ale = env.get_attr("ale")[0]
    except AttributeError:
        return None
    emulator = float(ale.getFloat(STICKY_ACTIONS))
    try:
        wrapper = float(env.get_attr("action_repeat_probability")[0])
    except AttributeError:
        wrapper = 0.0
    return round(max(emulator, wrapper), 6)  # ALE keeps a float32


def run_hyperparams(run_dir: Path | None, env_id: str) -> dict[str, Any]:
    """:return: the hyperparameters rl-zoo3 saved in ``run_dir``, else those of ``hyperparams/dqn.yml``"""
    folder = None if run_dir is None else run_dir / env_folder_name(env_id)
    if folder is not None and (folder / "config.yml").is_file():
        hyperparams, _ = get_saved_hyperparams(str(folder))
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
    where: str = "the run's config.yml",
) -> VecEnv:
    """
    The env stack rl-zoo3 builds from ``hyperparams``: the env (with ``env_kwargs``) in a ``Monitor``, then the
    ``env_wrapper`` (``AtariWrapper``), vectorised, then ``frame_stack`` frames stacked. An ALE game's frame skip and
    sticky actions are those :func:`atari_env_kwargs` makes explicit, as in training.

    :param where: named in an error about the hyperparameters' env_kwargs
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
        env_kwargs={**atari_env_kwargs(env_id, hyperparams, where), **(env_kwargs or {})},
    )
    if hyperparams.get("frame_stack"):
        env = VecFrameStack(env, hyperparams["frame_stack"])
    return env
