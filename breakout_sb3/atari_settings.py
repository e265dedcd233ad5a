"""The Atari stack's settings of an rl-zoo3 entry, read once from its ``env_wrapper`` and ``env_kwargs``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from breakout_sb3.config import atari_wrapper_spec
from breakout_sb3.settings import ATARI_WRAPPER_KWARGS

_WRAPPER_DEFAULTS = {key: setting.default for key, setting in ATARI_WRAPPER_KWARGS.items()}


@dataclass(frozen=True)
class AtariSettings:
    """
    What an entry asks of the Atari stack: SB3's ``AtariWrapper`` (its arguments, their defaults where not given)
    and ale-py's ``AtariEnv`` (the ``env_kwargs``, None where not given: the env id's own).

    :param wrapped: whether ``env_wrapper`` wraps the env in ``AtariWrapper``
    :param noop_max: AtariWrapper's no-op actions after a reset, at most
    :param frame_skip: AtariWrapper's emulator frames per agent step
    :param screen_size: AtariWrapper's observation size
    :param terminal_on_life_loss: AtariWrapper ends the agent's episode at a life lost
    :param clip_reward: AtariWrapper clips rewards to their sign
    :param action_repeat_probability: AtariWrapper's sticky actions
    :param frameskip: the env's own frame skip (``env_kwargs``)
    :param repeat_action_probability: the env's sticky actions (``env_kwargs``)
    :param max_episode_steps: emulator frames after which a game is cut (``env_kwargs``)
    """

    wrapped: bool = False
    noop_max: int = _WRAPPER_DEFAULTS["noop_max"]
    frame_skip: int = _WRAPPER_DEFAULTS["frame_skip"]
    screen_size: int = _WRAPPER_DEFAULTS["screen_size"]
    terminal_on_life_loss: bool = _WRAPPER_DEFAULTS["terminal_on_life_loss"]
    clip_reward: bool = _WRAPPER_DEFAULTS["clip_reward"]
    action_repeat_probability: float = _WRAPPER_DEFAULTS["action_repeat_probability"]
    frameskip: int | tuple[int, int] | None = None
    repeat_action_probability: float | None = None
    max_episode_steps: int | None = None

    @classmethod
    def of(cls, hyperparams: dict[str, Any]) -> AtariSettings:
        """
        :param hyperparams: an rl-zoo3 entry, or a run's saved hyperparameters (its ``env_wrapper`` and
            ``env_kwargs`` are read; keys of neither are left to the checks of :mod:`breakout_sb3.ranges`)
        :return: its Atari settings
        """
        wrapper = atari_wrapper_spec(hyperparams.get("env_wrapper"))
        env_kwargs = hyperparams.get("env_kwargs") or {}
        return cls(
            wrapped=wrapper is not None,
            **{key: value for key, value in (wrapper or {}).items() if key in _WRAPPER_DEFAULTS},
            frameskip=env_kwargs.get("frameskip"),
            repeat_action_probability=env_kwargs.get("repeat_action_probability"),
            max_episode_steps=env_kwargs.get("max_episode_steps"),
        )

    @property
    def wrapper_frame_skip(self) -> int:
        """:return: the emulator frames AtariWrapper repeats each action for: its frame_skip, 1 without it"""
        return self.frame_skip if self.wrapped else 1
