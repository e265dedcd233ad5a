"""rl-zoo3 command lines: the recipe's defaults, and what rl-zoo3 would only discover with a traceback."""

from __future__ import annotations

import argparse
import importlib
import zipfile
from pathlib import Path
from typing import Any, NoReturn

from rl_zoo3.utils import ALGOS

from breakout_sb3 import ENV_ID
from breakout_sb3.atari_settings import AtariSettings
from breakout_sb3.config import (
    check_classes,
    check_hyperparams,
    default_config_path,
    entry_names,
    hyperparams_for,
    read_config,
)
from breakout_sb3.devices import check_device
from breakout_sb3.env import FRAMESKIP, STICKY_ACTIONS, atari_env_kwargs, check_env_id, is_atari
from breakout_sb3.errors import BreakoutSB3Error
from breakout_sb3.ranges import (
    TRAIN_FLAG_ALIASES,
    TRAIN_FLAGS,
    check,
    check_hyperparam_ranges,
    check_replay_memory,
)
from breakout_sb3.settings import ATARI_WRAPPER_KWARGS, ZOO_TRAIN
from breakout_sb3.zoo_train import given_train_flags

# rl-zoo3's --algo for the fast configuration's FastDQN (breakout_sb3.manager adds it to rl-zoo3's table)
FAST_ALGO = "fast_dqn"


def default_train_args() -> list[str]:
    """rl-zoo3 flags that make its defaults the recipe's; any flag the user gives overrides them."""
    recipe = [(flag, setting.default) for flag, setting in ZOO_TRAIN.items() if setting.default is not None]
    args = ["--algo", "dqn", "--env", ENV_ID, "--conf-file", str(default_config_path())]
    return args + [str(item) for flag_and_value in recipe for item in flag_and_value]


# rl-zoo3's flags of its hyperparameter search: `breakout-sb3 tune` (or `train -optimize`) takes them
SEARCH_FLAGS = {
    "--optimize-hyperparameters",
    "--n-trials",
    "--max-total-trials",
    "--n-jobs",
    "--sampler",
    "--pruner",
    "--n-startup-trials",
    "--n-evaluations",
    "--storage",
    "--study-name",
    "--optimization-log-path",
    "--no-optim-plots",
}
# rl-zoo3's Weights & Biases flags, which act with --track only
WANDB_FLAGS = {"--wandb-project-name", "--wandb-entity", "--wandb-group", "--wandb-tags"}


def check_train_flags(argv: list[str], fast: bool = False) -> None:
    """
    Refuse, in one line, the rl-zoo3 train flags that ``breakout-sb3 train`` cannot honour (docs/recipe.md sorts
    every flag): those of the hyperparameter search, of HER, of another algorithm, ``--vec-env`` with ``--fast``,
    ``--track`` without wandb and the wandb flags without ``--track``. Flags are read by rl-zoo3's own parser, so
    an unknown flag or a value it refuses is one line too.

    :param argv: the user's rl-zoo3 train flags (without the recipe's defaults)
    :param fast: the fast configuration
    """
    read = parse_zoo_flags(argv, "train")
    # rl-zoo3's parser evaluates these values: a bad one is named in our words first
    parse_zoo_params(read.hyperparams or [])
    parse_zoo_params(read.env_kwargs or [], flag="--env-kwargs")
    parse_zoo_params(read.eval_env_kwargs or [], flag="--eval-env-kwargs")
    given = given_train_flags(argv)
    for flag, value in given.items():
        if flag in SEARCH_FLAGS:
            raise BreakoutSB3Error(
                f"train: {_spelled(flag, value)} is a flag of the hyperparameter search: run breakout-sb3 tune "
                "(or train -optimize)"
            )
        if flag in WANDB_FLAGS and not given.get("--track"):
            raise BreakoutSB3Error(f"train: {flag} acts with --track only (Weights & Biases)")
    if "--trial-id" in given:
        raise BreakoutSB3Error(
            "train: --trial-id reads a trial with the names of rl-zoo3's own DQN sampler, not breakout-sb3's search "
            "space: train the study's best.yml (written by breakout-sb3 tune) with --conf-file"
        )
    if "--truncate-last-trajectory" in given:
        raise BreakoutSB3Error("train: --truncate-last-trajectory applies to HER's replay buffer only, not DQN's")
    algo = FAST_ALGO if fast else "dqn"
    if given.get("--algo", algo) != algo:
        trains = f"train --fast trains {algo} (FastDQN)" if fast else f"train trains dqn (--fast: {FAST_ALGO})"
        raise BreakoutSB3Error(
            f"train: --algo {given['--algo']}: {trains}; leave --algo out, or train another algorithm with "
            "python -m rl_zoo3.train"
        )
    if fast and "--vec-env" in given:
        raise BreakoutSB3Error(
            f"train: --vec-env {given['--vec-env']}: the fast configuration always steps its games in ale-py's "
            "vector env (n_envs games in C++ threads); leave --vec-env out, or train without --fast"
        )
    if given.get("--track"):
        try:
            importlib.import_module("wandb")
        except ImportError:
            raise BreakoutSB3Error("train: --track needs Weights & Biases: pip install wandb") from None


def _spelled(flag: str, value: Any) -> str:
    """:return: ``flag`` as given: ``--n-trials 0``, ``--no-optim-plots``"""
    if isinstance(value, bool):
        return flag
    values = value if isinstance(value, list) else [value]
    return " ".join([flag, *(str(v) for v in values)])


def check_train_args(argv: list[str], fast: bool = False) -> str:
    """
    Check, before anything runs, what rl-zoo3 would only discover with a traceback or not at all: the env id, the
    device, the numeric flags' ranges, the YAML entry and ``-params`` (types, ranges, the callbacks' arguments), the
    env's frame skip and sticky actions, ``-i``.

    :param argv: rl-zoo3 train flags, the recipe's defaults first
    :param fast: the fast configuration (FastDQN on ale-py's vector env)
    :return: the name of the YAML entry the run trains
    """
    args = parse_zoo_flags(argv, "train")
    args.algo, args.env = args.algo or "dqn", args.env or ENV_ID

    for module in args.gym_packages or []:  # rl-zoo3 imports them to register their envs: so do the checks
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise BreakoutSB3Error(f"--gym-packages {module}: cannot import it ({e})") from None
    check_env_id(args.env)
    atari = is_atari(args.env)
    if fast and not atari:
        raise BreakoutSB3Error(f"--fast trains Atari games only (ale-py's vector env), not {args.env}")
    if args.algo not in ALGOS:
        raise BreakoutSB3Error(f"unknown algorithm '{args.algo}' (choose from {', '.join(ALGOS)})")
    device = check_device(args.device or "auto")
    for flag in TRAIN_FLAGS:
        value = integer_flag(flag, getattr(args, flag), "train")
        if value is not None:
            check(flag, value, TRAIN_FLAGS[flag], "train")
    overrides = parse_zoo_params(args.hyperparams or [])
    env_kwargs = parse_zoo_params(args.env_kwargs or [], flag="--env-kwargs")
    conf = args.conf_file or str(default_config_path())
    entry = entry_names(args.env, atari, fast)[0]
    if conf.endswith((".yml", ".yaml")):
        entry, hyperparams = hyperparams_for(read_config(conf), args.env, conf, atari=atari, fast=fast)
        algo_class = ALGOS[args.algo]
        check_hyperparams(hyperparams, algo_class, conf)
        check_hyperparam_ranges(hyperparams, conf, fast=fast)
        check_hyperparams(overrides, algo_class, "-params")
        check_hyperparam_ranges(overrides, "-params", fast=fast)
        merged = {**hyperparams, **overrides}
        if env_kwargs:
            merged["env_kwargs"] = env_kwargs
        cross_keys = {"batch_size", "buffer_size", "n_steps", "replay_buffer_class"}
        where = "-params" if cross_keys & set(overrides) or env_kwargs else conf
        check_hyperparam_ranges(merged, where, fast=fast)
        check_classes(hyperparams, conf)
        check_classes(overrides, "-params")
        wrapper_where = "-params" if "env_wrapper" in overrides else conf
        env_where = "--env-kwargs" if env_kwargs else "-params" if "env_kwargs" in overrides else wrapper_where
        merged["env_kwargs"] = atari_env_kwargs(args.env, merged, env_where)
        if args.eval_env_kwargs:
            _check_eval_env_kwargs(args.env, merged, parse_zoo_params(args.eval_env_kwargs, "--eval-env-kwargs"))
        if fast:
            check_fast_env(merged, wrapper_where, env_where)
        replay_on_gpu = fast and device.type == "cuda"  # FastDQN keeps it on the GPU
        if not replay_on_gpu:
            check_replay_memory(merged, "-params" if "buffer_size" in overrides else conf)
    if args.trained_agent:
        check_model_zip(Path(args.trained_agent))
    return entry


def _check_eval_env_kwargs(env_id: str, hyperparams: dict[str, Any], eval_env_kwargs: dict[str, Any]) -> None:
    """Check rl-zoo3's ``--eval-env-kwargs`` (its evaluation env's, with ``--eval-freq``) as the env's own."""
    check_hyperparam_ranges({"env_kwargs": eval_env_kwargs}, "--eval-env-kwargs")
    atari_env_kwargs(env_id, {**hyperparams, "env_kwargs": eval_env_kwargs}, "--eval-env-kwargs")


# What ale-py's vector env (the fast configuration) computes itself: AtariWrapper's other arguments must be their
# defaults.
FAST_ATARI_WRAPPER = {
    key: ATARI_WRAPPER_KWARGS[key].default
    for key in ("screen_size", "terminal_on_life_loss", "clip_reward", "action_repeat_probability")
}
# The env_kwargs the fast configuration's vector env honours (AleVecEnv's max_episode_steps, frame skip and sticky
# actions); it skips frames with AtariWrapper's frame_skip only.
FAST_ENV_KWARGS = {"max_episode_steps", FRAMESKIP, STICKY_ACTIONS}


def check_fast_env(hyperparams: dict[str, Any], where: str, env_kwargs_where: str | None = None) -> None:
    """
    Refuse AtariWrapper arguments and env_kwargs the fast configuration's vector env cannot honour.

    :param hyperparams: the entry, ``-params`` merged in, with the env_kwargs :func:`atari_env_kwargs` made explicit
    :param where: named in the error: the file or flag the AtariWrapper arguments come from
    :param env_kwargs_where: the same for the env_kwargs (default: ``where``)
    """
    atari = AtariSettings.of(hyperparams)
    for key, allowed in FAST_ATARI_WRAPPER.items():
        value = getattr(atari, key)
        if value != allowed:
            raise BreakoutSB3Error(
                f"{where}: the fast configuration's vector env needs AtariWrapper {key} {allowed!r}, got {value!r}"
            )
    env_kwargs, where = hyperparams.get("env_kwargs") or {}, env_kwargs_where or where
    unknown = sorted(set(env_kwargs) - FAST_ENV_KWARGS)
    if unknown:
        raise BreakoutSB3Error(
            f"{where}: the fast configuration's vector env takes env_kwargs {', '.join(sorted(FAST_ENV_KWARGS))} "
            f"only, got {', '.join(unknown)}"
        )
    if atari.frameskip not in (None, 1):
        raise BreakoutSB3Error(
            f"{where}: the fast configuration's vector env skips frames with AtariWrapper's frame_skip only: the "
            f"env's own frameskip must be 1 (env_kwargs frameskip:1), got {atari.frameskip!r}"
        )


class _OneLineParser(argparse.ArgumentParser):
    """argparse, raising its errors as :class:`BreakoutSB3Error` naming ``command``."""

    def __init__(self, command: str):
        super().__init__(add_help=False)
        self.command = command

    def error(self, message: str) -> NoReturn:
        raise BreakoutSB3Error(f"{self.command}: {message}")


def parse_zoo_flags(argv: list[str], command: str) -> argparse.Namespace:
    """
    Read the rl-zoo3 flags that breakout-sb3 checks or uses itself; the others pass through unread.

    :param argv: rl-zoo3 train flags
    :param command: the command named in errors (``train``, ``tune``)
    :return: the flags, None where not given; the numeric ones (:data:`TRAIN_FLAGS`) as given, as strings, under
        their flag name (``getattr(args, "--n-timesteps")``)
    """
    parser = _OneLineParser(command)
    parser.add_argument("--algo")
    parser.add_argument("--env")
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+")
    parser.add_argument("--env-kwargs", nargs="+")
    parser.add_argument("--eval-env-kwargs", nargs="+")
    parser.add_argument("-i", "--trained-agent")
    parser.add_argument("--device")
    parser.add_argument("-f", "--log-folder")
    parser.add_argument("--trial-id")
    parser.add_argument("--storage")
    parser.add_argument("--study-name")
    parser.add_argument("--sampler")
    parser.add_argument("--pruner")
    parser.add_argument("--gym-packages", nargs="+")
    for flag in TRAIN_FLAGS:
        aliases = [alias for alias, name in TRAIN_FLAG_ALIASES.items() if name == flag]
        parser.add_argument(*aliases, flag, dest=flag)
    args, _ = parser.parse_known_args(argv)
    return args


def integer_flag(flag: str, value: str | None, command: str) -> int | None:
    """:return: the integer ``value`` of ``flag`` (None: not given) :raise BreakoutSB3Error: naming ``command``"""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise BreakoutSB3Error(f"{command}: {flag} must be an integer, got {value!r}") from None


def parse_zoo_params(items: list[str], flag: str = "-params") -> dict[str, Any]:
    """Read ``-params key:value`` items the way rl-zoo3 does (the value is a Python expression)."""
    params = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise BreakoutSB3Error(f"{flag} {item}: expected key:value")
        try:
            params[key] = eval(value, {})  # rl-zoo3's StoreDict evaluates the same way
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            raise BreakoutSB3Error(f"{flag} {item}: cannot read the value {value!r} ({reason})") from None
    return params


def check_model_zip(path: Path) -> None:
    if not path.is_file():
        raise BreakoutSB3Error(f"model not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BreakoutSB3Error(f"{path} is not a model zip (corrupt or another kind of file)")
