"""rl-zoo3's training, run with every one of its flags, plus what breakout-sb3 adds to it."""

from __future__ import annotations

import argparse
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rl_zoo3.train
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from breakout_sb3 import ENV_ID
from breakout_sb3.config import check_hyperparams, default_config_path, hyperparams_for, read_config
from breakout_sb3.env import check_env_id
from breakout_sb3.errors import BreakoutSB3Error
from callbacks._run_folder import RunFolderCallback


def default_train_args() -> list[str]:
    """rl-zoo3 flags that make its defaults the recipe's; any flag the user gives overrides them."""
    return [
        "--algo", "dqn",
        "--env", ENV_ID,
        "--conf-file", str(default_config_path()),
        "--seed", "42",  # tutorial: `seed = 42`
        "--eval-freq", "-1",  # the tutorial does no periodic evaluation; --eval-freq N turns rl-zoo3's on
    ]  # fmt: skip


class BreakoutExperimentManager(ExperimentManager):
    """
    rl-zoo3's ``ExperimentManager`` with two changes: the run-folder callbacks of the YAML write into the run
    folder, and a model continued with ``-i`` keeps counting its steps (so its epsilon schedule continues).
    """

    def setup_experiment(self) -> tuple[BaseAlgorithm, dict[str, Any]] | None:
        results = super().setup_experiment()
        for callback in self.callbacks:
            if isinstance(callback, RunFolderCallback) and callback.log_dir is None:
                callback.log_dir = self.save_path
        return results

    def learn(self, model: BaseAlgorithm) -> None:
        # rl-zoo3's learn(), but with reset_num_timesteps=False for a continued model.
        kwargs: dict[str, Any] = {}
        if self.log_interval > -1:
            kwargs["log_interval"] = self.log_interval
        elif self.log_interval < -1:
            kwargs["log_interval"] = None
        if self.callbacks:
            kwargs["callback"] = self.callbacks
        try:
            model.learn(self.n_timesteps, reset_num_timesteps=not self.continue_training, **kwargs)
        except KeyboardInterrupt:
            pass
        finally:
            if self.callbacks:
                self.callbacks[0].on_training_end()
            assert model.env is not None
            model.env.close()


def check_train_args(argv: list[str]) -> None:
    """Check what rl-zoo3 would only discover with a traceback: the env id, the YAML, -params, -i."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--algo", default="dqn")
    parser.add_argument("--env", default=ENV_ID)
    parser.add_argument("-conf", "--conf-file")
    parser.add_argument("-params", "--hyperparams", nargs="+", default=[])
    parser.add_argument("-i", "--trained-agent", default="")
    parser.add_argument("--gym-packages", nargs="+", default=[])
    args, _ = parser.parse_known_args(argv)

    check_env_id(args.env)
    if args.algo not in ALGOS:
        raise BreakoutSB3Error(f"unknown algorithm '{args.algo}' (choose from {', '.join(ALGOS)})")
    overrides = parse_zoo_params(args.hyperparams)
    conf = args.conf_file or str(default_config_path())
    if conf.endswith((".yml", ".yaml")):
        hyperparams = hyperparams_for(read_config(conf), args.env, conf)
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


@contextmanager
def _zoo_train_with(manager_class: type[ExperimentManager], argv: list[str]):
    # rl-zoo3 builds its argument parser inside train(): running train() with its ExperimentManager swapped for
    # ours keeps every rl-zoo3 flag working unchanged.
    saved = rl_zoo3.train.ExperimentManager, sys.argv
    rl_zoo3.train.ExperimentManager, sys.argv = manager_class, argv
    try:
        yield
    finally:
        rl_zoo3.train.ExperimentManager, sys.argv = saved


def train(argv: list[str]) -> None:
    """``breakout-sb3 train``: rl-zoo3's ``train`` with the recipe's defaults."""
    args = default_train_args() + argv
    if not {"-h", "--help"} & set(argv):
        check_train_args(args)
    with _zoo_train_with(BreakoutExperimentManager, ["breakout-sb3 train", *args]):
        rl_zoo3.train.train()
