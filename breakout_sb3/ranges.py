"""
The allowed range of every recipe key and every numeric command-line flag, in one place.

Each range is a pydantic-annotated type (``callbacks.validation``, where the callbacks declare theirs too). Values
are checked before a run folder, an env or a model exists; a value out of range is one line naming the key, the
value and the range.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from breakout_sb3.config import atari_wrapper_kwargs, uses_atari_wrapper
from breakout_sb3.errors import BreakoutSB3Error
from callbacks.validation import (
    FiniteFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    check_value,
    shown,
)

# NatureCNN (CnnPolicy) needs at least 36x36 pixels: 8x8/4, 4x4/2 and 3x3/1 convolutions leave 1x1.
ScreenSize = Annotated[int, Field(ge=36, le=1024)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's seeds
EnvCount = Annotated[int, Field(ge=1, le=1024)]
# rl-zoo3 YAMLs often write `n_timesteps: !!float 1e7`
Timesteps = Annotated[float, Field(ge=1, allow_inf_nan=False)]

# The keys of an rl-zoo3 DQN entry (hyperparams/dqn.yml) and of `-params`.
HYPERPARAMS: dict[str, Any] = {
    "learning_rate": PositiveFloat,
    "gamma": Probability,
    "batch_size": PositiveInt,
    "buffer_size": PositiveInt,
    "train_freq": PositiveInt,
    "gradient_steps": PositiveInt | Literal[-1],  # SB3: -1 = as many as the env steps of the rollout
    "target_update_interval": PositiveInt,
    "learning_starts": NonNegativeInt,
    "max_grad_norm": PositiveFloat,
    "tau": Probability,
    "exploration_fraction": Probability,
    "exploration_initial_eps": Probability,
    "exploration_final_eps": Probability,
    "stats_window_size": PositiveInt,
    "n_envs": EnvCount,
    "frame_stack": PositiveInt,
    "n_timesteps": Timesteps,
    "n_steps": PositiveInt,  # n-step returns (SB3's NStepReplayBuffer)
}
# FastDQN launches its gradient steps during the rollout's last env step: a fixed number of them.
FAST_HYPERPARAMS: dict[str, Any] = {
    **HYPERPARAMS,
    "gradient_steps": PositiveInt,
    "n_steps": Literal[1],  # its FrameStackReplayBuffer has no n-step returns (SB3 would only warn and ignore it)
    "overlap_env": bool,
    "cuda_graph": bool,
}
TRAIN_FREQ_UNITS = ("step", "episode")

# `env_kwargs`, and the kwargs of SB3's AtariWrapper in `env_wrapper`.
ENV_KWARGS: dict[str, Any] = {
    "max_episode_steps": PositiveInt,
    "frameskip": PositiveInt | tuple[PositiveInt, PositiveInt],  # ale-py: fixed, or uniform in [low, high)
    "repeat_action_probability": Probability,  # ale-py's sticky actions
}
ATARI_WRAPPER_KWARGS: dict[str, Any] = {
    "noop_max": NonNegativeInt,
    "frame_skip": PositiveInt,
    "screen_size": ScreenSize,
    "terminal_on_life_loss": bool,
    "clip_reward": bool,
    "action_repeat_probability": Probability,
}

# Numeric flags. rl-zoo3's train flags keep rl-zoo3's special values (-1: its default, or off).
TRAIN_FLAGS: dict[str, Any] = {
    "--n-timesteps": PositiveInt | Literal[-1],  # -1: the YAML's n_timesteps
    "--seed": Seed | Literal[-1],  # -1: a random seed
    "--num-threads": PositiveInt | Literal[-1],
    "--log-interval": PositiveInt | Literal[-1, -2],  # in episodes; -1: the algorithm's default, -2: none
    "--eval-freq": PositiveInt | Literal[-1],  # -1: no periodic evaluation
    "--eval-episodes": PositiveInt,
    "--n-eval-envs": EnvCount,
    "--save-freq": PositiveInt | Literal[-1],  # -1: no step checkpoints
    "--n-trials": PositiveInt,
    "--max-total-trials": PositiveInt,
    "--n-jobs": PositiveInt,
    "--n-startup-trials": NonNegativeInt,
    "--n-evaluations": PositiveInt,
    "--verbose": Annotated[int, Field(ge=0, le=2)],
    "--keep-checkpoints": PositiveInt,
}
# rl-zoo3's short spellings of the flags above
TRAIN_FLAG_ALIASES = {"-n": "--n-timesteps"}
RESUME_FLAGS: dict[str, Any] = {"--n-timesteps": PositiveInt, "--refill-steps": NonNegativeInt}
PLAY_FLAGS: dict[str, Any] = {"--episodes": PositiveInt, "--seed": Seed, "--epsilon": Probability}
RECORD_MAX_EPISODES = 20  # each frame is kept in memory until the video is written
RECORD_FLAGS: dict[str, Any] = {**PLAY_FLAGS, "--episodes": Annotated[int, Field(ge=1, le=RECORD_MAX_EPISODES)]}
PLOT_FLAGS: dict[str, Any] = {"--threshold": FiniteFloat}
TUNE_FLAGS: dict[str, Any] = {"--db-wait": NonNegativeInt}  # seconds; 0: a lost database stops the worker at once


def check(name: str, value: Any, annotation: Any, where: str) -> Any:
    """:return: ``value`` if ``annotation`` allows it :raise BreakoutSB3Error: naming ``where``, the key and range"""
    try:
        return check_value(name, value, annotation)
    except ValueError as e:
        raise BreakoutSB3Error(f"{where}: {e}") from None


def check_flags(values: dict[str, Any], ranges: dict[str, Any], where: str) -> None:
    """Checks flag values (None: not given) against ``ranges``."""
    for flag, value in values.items():
        if value is not None and flag in ranges:
            check(flag, value, ranges[flag], where)


def check_hyperparam_ranges(hyperparams: dict[str, Any], where: str, fast: bool = False) -> None:
    """
    Checks the range of every numeric key of an rl-zoo3 entry (also ``env_kwargs`` and AtariWrapper's kwargs), that
    the replay buffer holds at least one batch, and that n-step returns are asked only of SB3's own replay buffer.
    Types and unknown keys are ``config.check_hyperparams``'s job.

    :param hyperparams: the entry, or ``-params``
    :param where: named in the error: the file or flag the values come from
    :param fast: the fast configuration's ranges
    """
    ranges = FAST_HYPERPARAMS if fast else HYPERPARAMS
    for key, value in hyperparams.items():
        if key == "learning_rate" and isinstance(value, str):
            _check_schedule(value, where)
        elif key == "train_freq" and isinstance(value, (list, tuple)):
            _check_train_freq(value, where)
        elif key in ranges:
            check(f"'{key}'", value, ranges[key], where)
    for key, value in (hyperparams.get("env_kwargs") or {}).items():
        if key in ENV_KWARGS:
            check(f"env_kwargs '{key}'", value, ENV_KWARGS[key], where)
    for key, value in atari_wrapper_kwargs(hyperparams.get("env_wrapper")).items():
        if key in ATARI_WRAPPER_KWARGS:
            check(f"AtariWrapper '{key}'", value, ATARI_WRAPPER_KWARGS[key], where)
    batch, buffer = hyperparams.get("batch_size"), hyperparams.get("buffer_size")
    if isinstance(batch, int) and isinstance(buffer, int) and buffer < batch:
        raise BreakoutSB3Error(
            f"{where}: 'buffer_size' must be >= batch_size ({batch}): the replay must hold one batch, got {buffer}"
        )
    n_steps, buffer_class = hyperparams.get("n_steps"), hyperparams.get("replay_buffer_class")
    if isinstance(n_steps, int) and n_steps > 1 and buffer_class is not None:
        # SB3 sets up n-step returns only with its own buffer, and otherwise warns and trains with 1-step returns
        name = buffer_class if isinstance(buffer_class, str) else getattr(buffer_class, "__name__", buffer_class)
        raise BreakoutSB3Error(
            f"{where}: 'n_steps' must be 1 with replay_buffer_class {name} (SB3 builds n-step returns only with "
            f"its own replay buffer), got {n_steps}"
        )


def _check_schedule(value: str, where: str) -> None:
    # rl-zoo3 reads "lin_<initial value>" as a linear schedule
    kind, _, number = value.partition("_")
    try:
        initial = float(number)
    except ValueError:
        initial = None
    if kind != "lin" or initial is None:
        raise BreakoutSB3Error(f"{where}: 'learning_rate' must be a number > 0 or 'lin_<number>', got {value!r}")
    check("'learning_rate'", initial, PositiveFloat, where)


def _check_train_freq(value: list | tuple, where: str) -> None:
    if len(value) != 2 or value[1] not in TRAIN_FREQ_UNITS:
        units = " or ".join(repr(unit) for unit in TRAIN_FREQ_UNITS)
        raise BreakoutSB3Error(f"{where}: 'train_freq' must be an integer >= 1 or [n, {units}], got {shown(value)}")
    check("'train_freq'", value[0], PositiveInt, where)


def replay_bytes_per_transition(hyperparams: dict[str, Any]) -> int | None:
    """
    :return: about how many bytes the replay buffer takes per transition with these hyperparameters, for Atari frames
        (AtariWrapper's ``screen_size`` squared, grey, ``frame_stack`` of them); None when the observations are not
        those or the buffer class is not one this knows
    """
    wrapper = atari_wrapper_kwargs(hyperparams.get("env_wrapper"))
    if not uses_atari_wrapper(hyperparams.get("env_wrapper")):
        return None
    frame = int(wrapper.get("screen_size", 84)) ** 2
    stack = int(hyperparams.get("frame_stack") or 1)
    buffer_class = hyperparams.get("replay_buffer_class")
    name = buffer_class if isinstance(buffer_class, str) else getattr(buffer_class, "__name__", "ReplayBuffer")
    if name.rsplit(".", 1)[-1] == "FrameStackReplayBuffer":
        return frame + 160  # each frame once, with its bookkeeping
    if name.rsplit(".", 1)[-1] != "ReplayBuffer":
        return None
    return frame * stack * (1 if hyperparams.get("optimize_memory_usage") else 2) + 20


def check_replay_memory(hyperparams: dict[str, Any], where: str) -> None:
    """Refuse a replay buffer larger than the memory this machine has available, before a run runs out of it."""
    per_transition = replay_bytes_per_transition(hyperparams)
    buffer_size = hyperparams.get("buffer_size")
    available = available_memory()
    if per_transition is None or not isinstance(buffer_size, int) or available is None:
        return
    needed = per_transition * buffer_size
    if needed > available:
        raise BreakoutSB3Error(
            f"{where}: 'buffer_size' {buffer_size:,} needs about {needed / 1e9:.1f} GB for the replay buffer "
            f"({per_transition:,} bytes per transition); this machine has {available / 1e9:.1f} GB available"
        )


def available_memory() -> int | None:
    """:return: the bytes of memory available to a new process (Linux's MemAvailable), None if unknown"""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
