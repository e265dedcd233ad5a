"""rl-zoo3 command lines: the recipe's defaults, and what rl-zoo3 would only discover with a traceback."""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path
from typing import Any

from rl_zoo3.utils import ALGOS

from breakout_sb3 import ENV_ID
from breakout_sb3.config import check_hyperparams, default_config_path, hyperparams_for, read_config
from breakout_sb3.env import check_env_id
from breakout_sb3.errors import BreakoutSB3Error

# rl-zoo3 flags holding paths: stored absolute so `resume` works from any directory.
PATH_FLAGS = {"-conf", "--conf-file", "-f", "--log-folder", "-tb", "--tensorboard-log", "-i", "--trained-agent"}


def default_train_args() -> list[str]:
    """rl-zoo3 flags that make its defaults the recipe's; any flag the user gives overrides them."""
    return [
        "--algo", "dqn",
        "--env", ENV_ID,
        "--conf-file", str(default_config_path()),
        "--seed", "42",  # tutorial: `seed = 42`
        "--eval-freq", "-1",  # the tutorial does no periodic evaluation; --eval-freq N turns rl-zoo3's on
    ]  # fmt: skip


def check_train_args(argv: list[str], config_entry: str | None = None) -> None:
    """Check what rl-zoo3 would only discover with a traceback: the env id, the YAML, -params, -i."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("-i", "--trained-agent", default="")
    args, _ = parser.parse_known_args(argv)

    check_env_id(args.env)
    if args.algo not in ALGOS:
        raise BreakoutSB3Error(f"unknown algorithm '{args.algo}' (choose from {', '.join(ALGOS)})")
    overrides = parse_zoo_params(args.hyperparams)
    conf = args.conf_file or str(default_config_path())
    if conf.endswith((".yml", ".yaml")):
        hyperparams = hyperparams_for(read_config(conf), config_entry or args.env, conf)
        check_hyperparams(hyperparams, ALGOS[args.algo], conf)
        check_hyperparams(overrides, ALGOS[args.algo], "-params")
    if args.trained_agent:
        check_model_zip(Path(args.trained_agent))


def parse_zoo_params(items: list[str]) -> dict[str, Any]:
    """Read ``-params key:value`` items the way rl-zoo3 does (the value is a Python expression)."""
    params = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise BreakoutSB3Error(f"-params {item}: expected key:value")
        try:
            params[key] = eval(value, {})  # rl-zoo3's StoreDict evaluates the same way
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            raise BreakoutSB3Error(f"-params {item}: cannot read the value {value!r} ({reason})") from None
    return params


def check_model_zip(path: Path) -> None:
    if not path.is_file():
        raise BreakoutSB3Error(f"model not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BreakoutSB3Error(f"{path} is not a model zip (corrupt or another kind of file)")


def absolute_paths(argv: list[str]) -> list[str]:
    result = []
    expects_path = False
    for arg in argv:
        name, sep, inline = arg.partition("=")
        if expects_path:
            arg = os.path.abspath(arg)
        elif sep and name in PATH_FLAGS:
            arg = f"{name}={os.path.abspath(inline)}"
        expects_path = not sep and arg in PATH_FLAGS
        result.append(arg)
    return result
