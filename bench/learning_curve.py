"""
Train the recipe's vanilla or fast configuration for a wall-clock budget and draw its learning curve.

    python -m bench.learning_curve --config fast --device cuda --seconds 300 --out-dir logs/bench/fast
    python -m bench.learning_curve --config fast --device cuda --seconds 300 --compare logs/dqn/vanilla_run

It builds the configuration from hyperparams/dqn.yml (the recipe entry, or its `-fast` entry) through the library
API, with the YAML's callbacks (epsilon schedule, CSV, stop rule, checkpoints, NaN guard) writing into --out-dir,
so it needs neither rl-zoo3 nor a run folder. At the end it plays a few games with the final model (epsilon 0.05),
prints their scores and writes curve.png (overlaid with the --compare runs). It writes no result JSON: the run
folder is the result (its training_stats.csv, 0.monitor.csv and curve.png).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback

from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path

DQN_KEYS = (
    "learning_rate",
    "buffer_size",
    "learning_starts",
    "batch_size",
    "gamma",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "max_grad_norm",
)


class StopAfterSeconds(BaseCallback):
    """Stops training once ``seconds`` of wall-clock time have passed."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def _on_training_start(self) -> None:
        self.deadline = time.time() + self.seconds

    def _on_step(self) -> bool:
        return time.time() < self.deadline


def yaml_callbacks(hyperparams: dict[str, Any], log_dir: Path) -> list[BaseCallback]:
    """The YAML's callbacks (rl-zoo3's ``callback`` list of import paths and kwargs), writing into ``log_dir``."""
    callbacks = []
    for entry in hyperparams["callback"]:
        name, kwargs = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        module, _, cls = name.rpartition(".")
        callback = getattr(importlib.import_module(module), cls)(**kwargs)
        if hasattr(callback, "log_dir"):
            callback.log_dir = str(log_dir)
        if hasattr(callback, "save_replay_buffer"):
            callback.save_replay_buffer = False  # model-only checkpoints: a measurement, not a run to resume
            callback.save_at_end = False  # nor one when learn() returns: throughput.py times learn() in chunks
        callbacks.append(callback)
    return callbacks


def build_fast(
    hyperparams: dict[str, Any], device: str, seed: int, monitor_file: str | None = None, precision: str = "float32"
) -> Any:
    """:return: a ``FastDQN`` of a fast entry's hyperparameters on its ``AleVecEnv`` (the replay on the GPU on CUDA)"""
    from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer

    frame_skip = 4
    env = AleVecEnv(
        n_envs=hyperparams["n_envs"],
        seed=seed,
        max_episode_steps=hyperparams["env_kwargs"]["max_episode_steps"] // frame_skip,
        monitor_file=monitor_file,
    )
    kwargs = {key: hyperparams[key] for key in DQN_KEYS}
    kwargs["policy_kwargs"] = eval(hyperparams["policy_kwargs"])  # the YAML's string, as rl-zoo3 evaluates it
    storage = {"storage_device": device} if device.startswith("cuda") else {}
    return FastDQN(
        "CnnPolicy",
        env,
        replay_buffer_class=FrameStackReplayBuffer,
        replay_buffer_kwargs=storage,
        seed=seed,
        device=device,
        precision=precision,
        **kwargs,
    )


def build(config: str, device: str, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """:return: the configuration's model, its env and its YAML entry (``recipe``: the recipe, ``fast``: ``-fast``)"""
    hyperparams = yaml.safe_load(default_config_path().read_text())
    hyperparams = hyperparams[ENV_ID if config == "recipe" else f"{ENV_ID}-fast"]
    if config == "recipe":
        kwargs = {key: hyperparams[key] for key in DQN_KEYS}
        kwargs["policy_kwargs"] = eval(hyperparams["policy_kwargs"])  # the YAML's string, as rl-zoo3 evaluates it
        import ale_py
        import gymnasium as gym
        from stable_baselines3 import DQN
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=seed, env_kwargs=hyperparams["env_kwargs"]), 4)
        model = DQN("CnnPolicy", env, seed=seed, device=device, **kwargs)
    else:
        model = build_fast(hyperparams, device, seed)
        env = model.get_env()
    return model, env, hyperparams


def play(model: Any, config: str, games: int, seed: int) -> list[float]:
    """:return: the scores of ``games`` full games played by ``model`` at epsilon 0.05, on a fresh env"""
    from stable_baselines3.common.evaluation import evaluate_policy

    if config == "fast":
        from breakout_sb3.fast import AleVecEnv

        env = AleVecEnv(n_envs=min(games, 8), seed=seed + 1000)
    else:
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=seed + 1000), 4)
    model.exploration_rate = 0.05
    scores, _ = evaluate_policy(model, env, n_eval_episodes=games, deterministic=False, return_episode_rewards=True)
    env.close()
    return [float(s) for s in scores]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--config", choices=["recipe", "fast"], default="fast", help="the recipe (SB3's DQN) or its fast entry"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the networks run")
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock training budget")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("logs/bench/learning_curve"),
        help="the run folder: CSV, Monitor file, checkpoints, curve.png (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the run and of the final games")
    parser.add_argument("--games", type=int, default=8, help="games played with the final model")
    parser.add_argument("--compare", nargs="*", default=[], help="run folders or CSVs to overlay on the plot")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    from stable_baselines3.common.utils import set_random_seed

    from breakout_sb3.errors import BreakoutSB3Error
    from breakout_sb3.plot import plot

    set_random_seed(args.seed)
    model, env, hyperparams = build(args.config, args.device, args.seed)
    callbacks = [*yaml_callbacks(hyperparams, args.out_dir), StopAfterSeconds(args.seconds)]
    start = time.perf_counter()
    model.learn(hyperparams["n_timesteps"], callback=callbacks, log_interval=None)
    seconds = time.perf_counter() - start
    env.close()
    print(
        f"{args.config} on {args.device}: {model.num_timesteps} agent steps in {seconds:.0f} s "
        f"({model.num_timesteps / seconds:.0f} steps/s), {model._n_updates} gradient steps "
        f"({model._n_updates / seconds:.0f}/s), {model._episode_num} lives"
    )
    scores = play(model, args.config, args.games, args.seed)
    print(f"final model, epsilon 0.05: {len(scores)} games, mean {np.mean(scores):.1f}, scores {scores}")
    try:
        print(plot([args.out_dir, *args.compare], out=args.out_dir / "curve.png"))
    except BreakoutSB3Error as e:  # a run too short to have finished an episode
        print(f"no plot: {e}")


if __name__ == "__main__":
    main()
