"""
Throughput of the recipe: vanilla SB3 DQN against breakout-sb3's fast configuration, at the same replay ratio.

    python bench/throughput.py --device cpu --quick      # under 3 minutes on 2 CPU cores
    python bench/throughput.py --device cuda

Each configuration runs in its own process (so peak RSS is its own): the recipe's hyperparameters from
hyperparams/dqn.yml (batch 32, one gradient step per 4 agent steps, replay 100,000, target sync 10,000, ...), a
warm-up of the same number of agent steps, then the same number of timed agent steps. Epsilon is held at 0.1 (the
recipe's value from step 1,050,000 on) so that, as in most of a real run, the network chooses most actions.

- vanilla: SB3's DQN on SB3's AtariWrapper + VecFrameStack(4), one env, SB3's ReplayBuffer, as the recipe runs.
- fast: FastDQN on ale-py's AtariVectorEnv (AleVecEnv) with FrameStackReplayBuffer, n_envs envs, train_freq 1
  and n_envs / 4 gradient steps of 32, so gradient steps x batch per agent step is the recipe's 8.

The last line is ``speedup: X.XX`` (fast agent steps/s over vanilla's).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENV_ID = "BreakoutNoFrameskip-v4"
BENCH_EPSILON = 0.1


def recipe() -> dict[str, Any]:
    return yaml.safe_load((REPO / "hyperparams" / "dqn.yml").read_text())[ENV_ID]


def dqn_kwargs(hyperparams: dict[str, Any], device: str) -> dict[str, Any]:
    """The recipe's DQN arguments, with epsilon held at BENCH_EPSILON (SB3's own schedule, constant)."""
    return dict(
        learning_rate=hyperparams["learning_rate"],
        buffer_size=hyperparams["buffer_size"],
        learning_starts=hyperparams["learning_starts"],
        batch_size=hyperparams["batch_size"],
        gamma=hyperparams["gamma"],
        target_update_interval=hyperparams["target_update_interval"],
        max_grad_norm=hyperparams["max_grad_norm"],
        policy_kwargs=eval(hyperparams["policy_kwargs"]),  # the YAML's string, as rl-zoo3 evaluates it
        exploration_initial_eps=BENCH_EPSILON,
        exploration_final_eps=BENCH_EPSILON,
        seed=0,
        device=device,
    )


def run(config: str, device: str, warmup: int, steps: int, n_envs: int, threads: int, queue: mp.Queue) -> None:
    import torch as th

    if threads > 0:
        th.set_num_threads(threads)
    hyperparams = recipe()
    kwargs = dqn_kwargs(hyperparams, device)
    if config == "vanilla":
        import ale_py
        import gymnasium as gym
        from stable_baselines3 import DQN
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=0, env_kwargs=hyperparams["env_kwargs"]), 4)
        model = DQN("CnnPolicy", env, train_freq=hyperparams["train_freq"], gradient_steps=1, **kwargs)
    else:
        from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer

        assert n_envs % 4 == 0, "n_envs must be a multiple of 4 to keep one gradient step per 4 agent steps"
        env = AleVecEnv(n_envs=n_envs, seed=0)
        storage = {"storage_device": device} if device == "cuda" else {}
        model = FastDQN(
            "CnnPolicy",
            env,
            train_freq=1,
            gradient_steps=n_envs // 4,
            replay_buffer_class=FrameStackReplayBuffer,
            replay_buffer_kwargs=storage,
            **kwargs,
        )
    model.learn(warmup)
    if device == "cuda":
        th.cuda.synchronize()
    updates_before, start = model._n_updates, time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    if device == "cuda":
        th.cuda.synchronize()
    seconds = time.perf_counter() - start
    replay = model.replay_buffer
    replay_bytes = getattr(replay, "nbytes_per_transition", None)
    if replay_bytes is None:
        arrays = (replay.observations, replay.next_observations, replay.actions, replay.rewards, replay.dones)
        replay_bytes = (sum(a.nbytes for a in arrays) + replay.timeouts.nbytes) / (replay.buffer_size * replay.n_envs)
    queue.put(
        dict(
            config=config,
            device=device,
            n_envs=env.num_envs,
            threads=th.get_num_threads(),
            steps=model.num_timesteps - warmup,
            seconds=seconds,
            steps_per_s=(model.num_timesteps - warmup) / seconds,
            grad_steps_per_s=(model._n_updates - updates_before) / seconds,
            replay_bytes_per_transition=replay_bytes,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
    )
    env.close()


def measure(config: str, args: argparse.Namespace, n_envs: int, threads: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=run, args=(config, args.device, args.warmup, args.steps, n_envs, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="short runs (under 3 minutes on 2 CPU cores)")
    parser.add_argument("--steps", type=int, help="timed agent steps per configuration")
    parser.add_argument("--warmup", type=int, help="agent steps before timing")
    parser.add_argument("--n-envs", type=int, help="envs of the fast configuration (default: 16, as the YAML)")
    parser.add_argument("--fast-threads", type=int, default=0, help="torch threads of the fast configuration")
    args = parser.parse_args()
    on_cpu = args.device == "cpu"
    if args.quick:
        defaults = (1_000, 2_000) if on_cpu else (2_000, 5_000)
    else:
        defaults = (5_000, 20_000) if on_cpu else (20_000, 100_000)
    args.warmup = args.warmup or defaults[0]
    args.steps = args.steps or defaults[1]
    n_envs = args.n_envs or 16

    import ale_py
    import stable_baselines3
    import torch

    print(f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, ale-py {ale_py.__version__}")
    if not on_cpu:
        print(f"GPU: {torch.cuda.get_device_name()}")
    print(f"warm-up {args.warmup} agent steps, then {args.steps} timed agent steps each; epsilon {BENCH_EPSILON}")
    results = [measure("vanilla", args, 1, 0), measure("fast", args, n_envs, args.fast_threads)]
    header = f"{'config':8} {'device':6} {'envs':>4} {'thr':>3} {'steps/s':>9} {'grad/s':>8} {'B/transition':>12}"
    print(header + f" {'peak RSS MB':>11}")
    for r in results:
        print(
            f"{r['config']:8} {r['device']:6} {r['n_envs']:>4} {r['threads']:>3} {r['steps_per_s']:>9.1f} "
            f"{r['grad_steps_per_s']:>8.1f} {r['replay_bytes_per_transition']:>12.0f} {r['peak_rss_mb']:>11.0f}"
        )
    print(f"speedup: {results[1]['steps_per_s'] / results[0]['steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
