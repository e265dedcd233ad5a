"""
Checkpoint size, write time and load time with the recipe's replay (100,000 transitions), for SB3's ReplayBuffer
and for breakout_sb3.fast.FrameStackReplayBuffer, filled with real Breakout transitions.

    python -m bench.checkpoint_size                          # about 6 minutes on 2 CPU cores, 12 GB of memory
    python -m bench.checkpoint_size --json bench/results/checkpoint_<machine>.json
    python -m bench.checkpoint_size --transitions 1500       # a quick look (about 1 minute, still 6 GB of disk)

- sb3: the recipe's DQN (NatureCNN, Adam, one gradient step so the zip holds the optimizer's moments) with SB3's
  ReplayBuffer of 100,000 (``optimize_memory_usage`` False: observation and next observation, 56.5 kB per
  transition), filled by random play through SB3's AtariWrapper + VecFrameStack(4) (+ VecTransposeImage, as DQN
  stores them), one env.
- fast: the same DQN on AleVecEnv with 16 envs and FrameStackReplayBuffer of 100,000 (7.2 kB per transition).

At each number of transitions (default 1,500 and the full 100,000), the whole checkpoint is written as
EpisodeCheckpointCallback writes it (model.zip, replay_buffer.zst, rng.pkl, state.json, each flushed to disk), then
its replay buffer is read back (``callbacks.read_replay_buffer``, page cache warm: the file was just written) and
compared with the model's, array by array. For comparison, SB3's own ``save_replay_buffer`` (a plain pickle, what
checkpoints of format 1 held) is timed too, unless ``--no-pickle``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer

from bench.provenance import add_allow_dirty, header, load_average, require_commit, write_result
from breakout_sb3 import ENV_ID

BUFFER_SIZE = 100_000
FAST_ENVS = 16


def make_model(kind: str) -> DQN:
    """The recipe's DQN, on one SB3 Atari env (sb3) or on AleVecEnv with 16 envs and FrameStackReplayBuffer."""
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    import breakout_sb3.env  # noqa: F401  (registers the ALE environments)
    from breakout_sb3.fast import AleVecEnv, FrameStackReplayBuffer

    kwargs: dict[str, Any] = dict(
        buffer_size=BUFFER_SIZE,
        learning_starts=32,
        batch_size=32,
        learning_rate=0.00025,
        gamma=0.99,
        optimize_memory_usage=False,
        policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-7)),
        device="cpu",
        seed=0,
    )
    if kind == "sb3":
        env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=0), 4)
    else:
        env = AleVecEnv(n_envs=FAST_ENVS, seed=0)
        kwargs["replay_buffer_class"] = FrameStackReplayBuffer
    return DQN("CnnPolicy", env, **kwargs)


def fill(model: DQN, transitions: int, state: dict[str, Any]) -> None:
    """Random play into the model's replay buffer (as DQN stores it) until it has received ``transitions``."""
    env = model.get_env()
    if "obs" not in state:
        state["obs"] = env.reset()
        state["rng"] = np.random.default_rng(0)
    replay = model.replay_buffer
    while model.num_timesteps < transitions:
        actions = state["rng"].integers(0, env.action_space.n, size=env.num_envs)
        new_obs, rewards, dones, infos = env.step(actions)
        next_obs = new_obs.copy()
        for i, done in enumerate(dones):
            if done:
                next_obs[i] = infos[i]["terminal_observation"]
        replay.add(state["obs"], next_obs, actions, rewards, dones, infos)
        state["obs"] = new_obs
        model.num_timesteps += env.num_envs


def one_update(model: DQN) -> None:
    """One gradient step, so that the zip holds Adam's moments as a real checkpoint's does."""
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    model.train(gradient_steps=1, batch_size=32)


def same_buffer(a: ReplayBuffer, b: ReplayBuffer) -> bool:
    """Every attribute equal: arrays by dtype, shape and content (as pickled: through ``__getstate__``)."""
    state_a, state_b = a.__getstate__(), b.__getstate__()
    if state_a.keys() != state_b.keys():
        return False
    for key, value in state_a.items():
        other = state_b[key]
        if isinstance(value, np.ndarray):
            if value.dtype != other.dtype or value.shape != other.shape or not np.array_equal(value, other):
                return False
        elif key not in ("device", "observation_space", "action_space") and value != other:
            return False
    return str(a.device) == str(b.device) and a.observation_space == b.observation_space


def measure(model: DQN, folder: Path, with_pickle: bool) -> dict[str, Any]:
    from callbacks import EpisodeCheckpointCallback, read_replay_buffer

    replay = model.replay_buffer
    result: dict[str, Any] = {"transitions": replay.size() * replay.n_envs, "load_before": load_average()}
    checkpoint = EpisodeCheckpointCallback(save_freq_episodes=None, keep_last=None, log_dir=str(folder), verbose=0)
    checkpoint.init_callback(model)
    start = time.perf_counter()
    path = checkpoint.save()
    result["checkpoint_write_s"] = time.perf_counter() - start
    sizes = {p.name: p.stat().st_size for p in path.iterdir()}
    result["checkpoint_bytes"] = sum(sizes.values())
    result["replay_bytes"] = sizes["replay_buffer.zst"]
    result["model_bytes"] = sizes["model.zip"]

    start = time.perf_counter()
    loaded = read_replay_buffer(path / "replay_buffer.zst")
    result["replay_load_s"] = time.perf_counter() - start
    result["loaded_equal"] = same_buffer(replay, loaded)
    del loaded
    gc.collect()

    if with_pickle:
        pickle_path = folder / "replay_buffer.pkl"
        start = time.perf_counter()
        model.save_replay_buffer(pickle_path)
        with open(pickle_path, "rb+") as f:
            os.fsync(f.fileno())
        result["pickle_write_s"] = time.perf_counter() - start
        result["pickle_bytes"] = pickle_path.stat().st_size
        pickle_path.unlink()
    shutil.rmtree(path)
    result["load_after"] = load_average()
    return result


def run(kind: str, points: list[int], folder: Path, with_pickle: bool) -> list[dict[str, Any]]:
    model = make_model(kind)
    state: dict[str, Any] = {}
    results = []
    for transitions in points:
        start = time.perf_counter()
        fill(model, transitions, state)
        if not results:
            one_update(model)
        fill_s = time.perf_counter() - start
        result = {"buffer": kind, "n_envs": model.n_envs, **measure(model, folder, with_pickle)}
        result["fill_s"] = fill_s
        print(row(result), flush=True)
        results.append(result)
    model.get_env().close()
    return results


HEADER = (
    f"{'buffer':<6} {'transitions':>11} {'checkpoint':>11} {'replay':>10} {'write s':>8} {'load s':>7} "
    f"{'equal':>5} {'pickle':>10} {'pickle s':>8}  load avg"
)


def row(r: dict[str, Any]) -> str:
    pickle_size = f"{r['pickle_bytes'] / 1e6:,.1f} MB" if "pickle_bytes" in r else "-"
    pickle_time = f"{r['pickle_write_s']:.2f}" if "pickle_write_s" in r else "-"
    return (
        f"{r['buffer']:<6} {r['transitions']:>11,} {r['checkpoint_bytes'] / 1e6:>8.1f} MB "
        f"{r['replay_bytes'] / 1e6:>7.2f} MB "
        f"{r['checkpoint_write_s']:>8.2f} {r['replay_load_s']:>7.2f} {r['loaded_equal']!s:>5} {pickle_size:>10} "
        f"{pickle_time:>8}  {r['load_before']} -> {r['load_after']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--transitions", type=int, nargs="+", default=[1_500, BUFFER_SIZE], help="fill levels to measure at"
    )
    parser.add_argument(
        "--buffers", nargs="+", choices=["sb3", "fast"], default=["sb3", "fast"], help="replay buffers to measure"
    )
    parser.add_argument("--no-pickle", action="store_true", help="do not time SB3's plain pickle for comparison")
    parser.add_argument("--dir", type=Path, help="where to write the checkpoints (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write the results to this file (fields: bench/README.md)")
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    commit = require_commit(parser.prog, args.allow_dirty) if args.json is not None else "not recorded"
    points = sorted(args.transitions)

    import zstandard

    report = header("checkpoint_size", commit)
    report["machine"].update(zstandard=zstandard.__version__, zstd=zstandard.ZSTD_VERSION)
    report.update(buffer_size=BUFFER_SIZE, results=[])
    print(f"{report['machine']}, load {load_average()}")
    print(HEADER)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for kind in args.buffers:
            report["results"] += run(kind, points, Path(tmp), not args.no_pickle)
            gc.collect()
    if args.json is not None:
        write_result(args.json, report)
    return report


if __name__ == "__main__":
    main()
