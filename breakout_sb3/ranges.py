"""
The ranges breakout-sb3 checks, read from the table of every value a user types (:mod:`breakout_sb3.settings`), and
the checks.

Each range is a pydantic-annotated type (``callbacks.validation``, where the callbacks declare theirs too). Values
are checked before a run folder, an env or a model exists; a value out of range is one line naming the key, the
value and the range.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any

from breakout_sb3 import settings
from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.config import atari_wrapper_kwargs
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.flags import scalar_type
from breakout_sb3.settings import Setting
from callbacks.validation import PositiveFloat, PositiveInt, check_value, shown


def ranges_of(table: dict[str, Setting]) -> dict[str, Any]:
    """:return: the annotation of each flag of ``table`` whose value is a number"""
    return {
        name: setting.annotation for name, setting in table.items() if scalar_type(setting.annotation) in (int, float)
    }


def annotations(table: dict[str, Setting]) -> dict[str, Any]:
    """:return: the annotation of each key of ``table``"""
    return {name: setting.annotation for name, setting in table.items()}


# The keys of an rl-zoo3 DQN entry (hyperparams/dqn.yml) and of `-params` whose range is checked: the algorithm's,
# and those of rl-zoo3's own keys that have a range.
_ZOO_RANGES = {
    key: setting.annotation
    for key, setting in settings.ZOO_KEYS.items()
    if typing.get_origin(setting.annotation) is Annotated
}
HYPERPARAMS: dict[str, Any] = {**annotations(settings.DQN_KEYS), **_ZOO_RANGES}
FAST_HYPERPARAMS: dict[str, Any] = {**annotations(settings.FAST_DQN_KEYS), **_ZOO_RANGES}
TRAIN_FREQ_UNITS = ("step", "episode")
ENV_KWARGS: dict[str, Any] = annotations(settings.ENV_KWARGS)
ATARI_WRAPPER_KWARGS: dict[str, Any] = annotations(settings.ATARI_WRAPPER_KWARGS)

# The numeric flags of each command. rl-zoo3's train flags keep rl-zoo3's special values (-1: its default, or off).
TRAIN_FLAGS: dict[str, Any] = {**ranges_of(settings.ZOO_TRAIN), **ranges_of(settings.TRAIN)}
# rl-zoo3's short spellings of the flags above
TRAIN_FLAG_ALIASES = {alias: flag for flag, setting in settings.ZOO_TRAIN.items() for alias in setting.aliases}
RESUME_FLAGS: dict[str, Any] = ranges_of(settings.RESUME)
PLAY_FLAGS: dict[str, Any] = ranges_of(settings.EVALUATE)
RECORD_FLAGS: dict[str, Any] = ranges_of(settings.RECORD)
PLOT_FLAGS: dict[str, Any] = ranges_of(settings.PLOT)
TUNE_FLAGS: dict[str, Any] = ranges_of(settings.TUNE)


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
    atari = AtariSettings.of(hyperparams)
    if not atari.wrapped:
        return None
    frame = int(atari.screen_size) ** 2
    stack = int(hyperparams.get("frame_stack") or settings.ZOO_KEYS["frame_stack"].default)
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
