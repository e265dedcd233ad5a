"""
Throughput of the recipe: vanilla SB3 DQN against breakout-sb3's fast configuration, at the same replay ratio, with
the recipe's callbacks, and where the learner thread's time goes.

    python bench/throughput.py --device cpu --quick                      # about 3 minutes on 2 CPU cores
    python bench/throughput.py --device cpu --n-envs 16 64 --json bench/results/cpu.json
    python bench/throughput.py --device cuda --n-envs 16 64 128 --json bench/results/h100.json

Each configuration runs in its own process (so peak RSS is its own): the recipe's hyperparameters from
hyperparams/dqn.yml (batch 32, one gradient step per 4 agent steps, replay 100,000, target sync 10,000, ...) and the
YAML's callbacks (epsilon schedule, CSV, stop rule, checkpoints every 100 games without the replay, NaN guard)
writing into a temporary run folder, with a Monitor file as rl-zoo3 writes one. The step count starts at
1,050,000, where the recipe's epsilon schedule has reached 0.1, so that, as in most of a real run, the network
chooses most actions. A warm-up, then the timed agent steps.

- vanilla: SB3's DQN on SB3's AtariWrapper + VecFrameStack(4), one env, SB3's ReplayBuffer, as the recipe runs.
- fast: FastDQN on ale-py's AtariVectorEnv (AleVecEnv) with FrameStackReplayBuffer, n_envs envs, train_freq 1
  and n_envs / 4 gradient steps of 32, so gradient steps x batch per agent step is the recipe's 8.

For each, the learner thread's time per agent step (bench/breakdown.py): env_wait, act, store, sample, update,
callbacks, other, and ``python``: its own Python work (everything but env wait, the networks' arithmetic and the
copying of sampled frames). The update-bound ceiling: the best of a few timings of one update's arithmetic on a
batch of 32 (forward of both networks, backward, clipping, Adam), timed before and after the configurations in
the same run; no configuration can pass 4 agent steps per update time. The last line is ``speedup: X.XX`` (the
fastest fast configuration's agent steps/s over vanilla's).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

ENV_ID = "BreakoutNoFrameskip-v4"
# The recipe's epsilon schedule reaches 0.1 here (50,000 + 1,000,000 steps)
START_STEP = 1_050_000
AGENT_STEPS_PER_UPDATE = 4
LOG_INTERVAL = 100  # episodes between SB3 log tables, as `breakout-sb3 train` prints them
CATEGORIES = ("env_wait", "act", "store", "sample", "update", "callbacks", "other")  # as bench/breakdown.py


def recipe() -> dict[str, Any]:
    return yaml.safe_load((REPO / "hyperparams" / "dqn.yml").read_text())[ENV_ID]


def dqn_kwargs(hyperparams: dict[str, Any], device: str) -> dict[str, Any]:
    """The recipe's DQN arguments."""
    return dict(
        learning_rate=hyperparams["learning_rate"],
        buffer_size=hyperparams["buffer_size"],
        learning_starts=hyperparams["learning_starts"],
        batch_size=hyperparams["batch_size"],
        gamma=hyperparams["gamma"],
        target_update_interval=hyperparams["target_update_interval"],
        max_grad_norm=hyperparams["max_grad_norm"],
        policy_kwargs=eval(hyperparams["policy_kwargs"]),  # the YAML's string, as rl-zoo3 evaluates it
        seed=0,
        device=device,
    )


def build(
    config: str, device: str, n_envs: int, log_dir: str, env_threads: int | None = None, overlap_env: bool = True
) -> Any:
    """:return: the configuration's model (its env attached), its env writing a Monitor file into ``log_dir``"""
    hyperparams = recipe()
    kwargs = dqn_kwargs(hyperparams, device)
    frame_limit = hyperparams["env_kwargs"]["max_episode_steps"]
    if config == "vanilla":
        import ale_py
        import gymnasium as gym
        from stable_baselines3 import DQN
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack

        gym.register_envs(ale_py)
        venv = make_atari_env(
            ENV_ID, n_envs=n_envs, seed=0, monitor_dir=log_dir, env_kwargs={"max_episode_steps": frame_limit}
        )
        env = VecFrameStack(venv, 4)
        return DQN("CnnPolicy", env, train_freq=hyperparams["train_freq"], gradient_steps=1, **kwargs)

    from breakout_sb3.fast import AleVecEnv, FastDQN, FrameStackReplayBuffer

    if n_envs % AGENT_STEPS_PER_UPDATE != 0:
        raise ValueError(f"n_envs must be a multiple of 4 to keep one gradient step per 4 agent steps, not {n_envs}")
    env = AleVecEnv(
        n_envs=n_envs,
        seed=0,
        max_episode_steps=frame_limit // 4,
        num_threads=env_threads,
        monitor_file=os.path.join(log_dir, "0.monitor.csv"),
    )
    storage = {"storage_device": device} if device == "cuda" else {}
    return FastDQN(
        "CnnPolicy",
        env,
        train_freq=1,
        gradient_steps=n_envs // AGENT_STEPS_PER_UPDATE,
        replay_buffer_class=FrameStackReplayBuffer,
        replay_buffer_kwargs=storage,
        overlap_env=overlap_env,
        **kwargs,
    )


def stub_networks(model: Any) -> None:
    """
    Replace the networks' arithmetic with constant-time stand-ins (random actions, no update), so that what is left
    is the learner thread's own work: the Python figure without the arithmetic and without what the arithmetic does
    to the caches the Python code then runs on (on a GPU machine the networks run on the GPU).
    """
    import torch as th

    zero = th.zeros((), device=model.device)
    generator = th.Generator().manual_seed(0)
    n_actions = model.action_space.n
    model._update = lambda *args: zero
    model.policy._predict = lambda obs, deterministic=True: th.randint(0, n_actions, (len(obs),), generator=generator)


def replay_bytes_per_transition(replay: Any) -> float:
    if hasattr(replay, "nbytes_per_transition"):
        return replay.nbytes_per_transition
    arrays = (replay.observations, replay.next_observations, replay.actions, replay.rewards, replay.dones)
    return (sum(a.nbytes for a in arrays) + replay.timeouts.nbytes) / (replay.buffer_size * replay.n_envs)


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, warm up and time one configuration (in this process). :return: its results"""
    import torch as th
    from breakdown import Clock, TimedCallbackList, instrument
    from learning_curve import yaml_callbacks

    if spec["threads"] > 0:
        th.set_num_threads(spec["threads"])
    device = spec["device"]
    with tempfile.TemporaryDirectory(prefix="bench_") as log_dir:
        model = build(spec["config"], device, spec["n_envs"], log_dir, spec.get("env_threads"), spec["overlap_env"])
        if spec.get("stub_networks"):
            stub_networks(model)
        clock = Clock()
        instrument(model, clock)
        callback = TimedCallbackList(yaml_callbacks(recipe(), Path(log_dir)), clock)
        model.num_timesteps = START_STEP - spec["warmup"]
        model.learn(spec["warmup"], callback=callback, log_interval=LOG_INTERVAL, reset_num_timesteps=False)
        if device == "cuda":
            th.cuda.synchronize()
        steps_before, updates_before = model.num_timesteps, model._n_updates
        clock.restart()
        start = time.perf_counter()
        model.learn(spec["steps"], callback=callback, log_interval=LOG_INTERVAL, reset_num_timesteps=False)
        if device == "cuda":
            th.cuda.synchronize()
        seconds = time.perf_counter() - start
        clock.stop()
        steps = model.num_timesteps - steps_before
        env = model.get_env()
        env_threads = getattr(getattr(env, "venv", None), "num_threads", None)
        env.close()
    return dict(
        config=spec["config"],
        n_envs=spec["n_envs"],
        steps_per_s=steps / seconds,
        grad_steps_per_s=(model._n_updates - updates_before) / seconds,
        replay_bytes_per_transition=replay_bytes_per_transition(model.replay_buffer),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **clock.breakdown(steps),
        warmup=spec["warmup"],
        steps=steps,
        seconds=seconds,
        gradient_steps=model.gradient_steps,
        threads={"torch": th.get_num_threads(), "env": env_threads},
        overlap_env=getattr(model, "overlap_env", None),
        epsilon=model.exploration_rate,
        stub_networks=bool(spec.get("stub_networks")),
    )


def measure_ceiling(spec: dict[str, Any]) -> dict[str, Any]:
    """:return: timings of one update's arithmetic on a batch of 32 (in this process, the configs' threads)"""
    import torch as th
    from breakdown import time_update

    from breakout_sb3.fast import AleVecEnv, FastDQN

    if spec["threads"] > 0:
        th.set_num_threads(spec["threads"])
    env = AleVecEnv(n_envs=1, seed=0)
    kwargs = dqn_kwargs(recipe(), spec["device"])
    model = FastDQN("CnnPolicy", env, **{**kwargs, "buffer_size": 1_000})
    timings = time_update(model, batch_size=kwargs["batch_size"], repeats=spec["repeats"])
    env.close()
    return {"update_ms": [t * 1e3 for t in timings], "threads": th.get_num_threads()}


def _child(target: str, spec: dict[str, Any], queue: mp.Queue) -> None:
    queue.put(globals()[target](spec))


def in_process(target: str, spec: dict[str, Any]) -> dict[str, Any]:
    """:return: ``target(spec)`` run in a fresh process"""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_child, args=(target, spec, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def device_name(device: str) -> str:
    if device == "cpu":
        return "cpu"
    import torch as th

    return th.cuda.get_device_name()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="short runs (about 3 minutes on 2 CPU cores)")
    parser.add_argument("--steps", type=int, help="timed agent steps per configuration")
    parser.add_argument("--warmup", type=int, help="agent steps before timing")
    parser.add_argument("--vanilla-steps", type=int, help="timed agent steps of vanilla (default: --steps)")
    parser.add_argument("--vanilla-warmup", type=int, help="warm-up agent steps of vanilla (default: --warmup)")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[16], help="envs of the fast configurations")
    parser.add_argument("--configs", nargs="+", choices=["vanilla", "fast"], default=["vanilla", "fast"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--env-threads", type=int, help="ale-py threads of the fast configurations (default: its)")
    parser.add_argument(
        "--no-overlap", action="store_true", help="fast: the updates after the env step, not while it runs"
    )
    parser.add_argument(
        "--stub-networks",
        action="store_true",
        help="fast only: the networks replaced by constant-time stand-ins, to measure the Python work alone",
    )
    parser.add_argument("--ceiling-repeats", type=int, default=5, help="timed updates per ceiling measurement")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    on_cpu = args.device == "cpu"
    defaults = {(True, True): (512, 2_048), (True, False): (4_096, 16_384)}
    defaults.update({(False, True): (2_048, 8_192), (False, False): (16_384, 100_000)})
    defaults = defaults[args.quick, on_cpu]
    warmup = args.warmup if args.warmup is not None else defaults[0]
    steps = args.steps or defaults[1]

    import ale_py
    import stable_baselines3
    import torch

    device = device_name(args.device)
    print(f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}, ale-py {ale_py.__version__}")
    print(f"device: {device}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load {load()}")
    print(f"warm-up {warmup} agent steps, then {steps} timed agent steps each; epsilon schedule from {START_STEP}")

    ceiling_spec = {"device": args.device, "threads": args.threads, "repeats": args.ceiling_repeats}
    ceilings = [in_process("measure_ceiling", ceiling_spec)]
    if args.stub_networks:
        args.configs = ["fast"]  # SB3's train() samples and updates in one: nothing to stub it by
    specs = [("vanilla", 1)] if "vanilla" in args.configs else []
    specs += [("fast", n) for n in args.n_envs] if "fast" in args.configs else []
    results = []
    for config, n_envs in specs:
        spec = {"config": config, "device": args.device, "n_envs": n_envs, "warmup": warmup, "steps": steps}
        if config == "vanilla":
            spec.update(warmup=args.vanilla_warmup or warmup, steps=args.vanilla_steps or steps)
        spec.update(threads=args.threads, env_threads=args.env_threads, overlap_env=not args.no_overlap)
        spec["stub_networks"] = args.stub_networks
        load_before = load()
        result = in_process("run_config", spec)
        result["load"] = [load_before, load()]
        results.append(result)
        print(f"  {config} x{n_envs}: {result['steps_per_s']:.1f} agent steps/s, load {result['load']}")
    ceilings.append(in_process("measure_ceiling", ceiling_spec))

    timings = sorted(t for c in ceilings for t in c["update_ms"])
    update_ms = timings[0]
    ceiling = {
        "update_ms_best": update_ms,
        "update_ms_median": timings[len(timings) // 2],
        "steps_per_s": AGENT_STEPS_PER_UPDATE * 1e3 / update_ms,
        "timings_ms": [c["update_ms"] for c in ceilings],
        "threads": ceilings[0]["threads"],
    }
    for result in results:
        result["fraction_of_ceiling"] = result["steps_per_s"] / ceiling["steps_per_s"]
        # Against the median update: what the machine gave most of the time (a noisy machine's best is an outlier)
        result["fraction_of_median_ceiling"] = (
            result["steps_per_s"] * ceiling["update_ms_median"] / (AGENT_STEPS_PER_UPDATE * 1e3)
        )

    print_table(results, ceiling)
    vanilla = next((r for r in results if r["config"] == "vanilla"), None)
    fastest = max((r for r in results if r["config"] == "fast"), key=lambda r: r["steps_per_s"], default=None)
    speedup = fastest["steps_per_s"] / vanilla["steps_per_s"] if vanilla and fastest else None
    report = {
        "kind": "throughput",
        "device": device,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "configs": results,
        "speedup": speedup,
        "ceiling": ceiling,
        "host": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "versions": {"torch": torch.__version__, "stable_baselines3": stable_baselines3.__version__},
    }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    if speedup is not None:
        print(f"speedup: {speedup:.2f}")
    return report


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def print_table(results: list[dict[str, Any]], ceiling: dict[str, Any]) -> None:
    print(
        f"update-bound ceiling: one update {ceiling['update_ms_best']:.1f} ms at best "
        f"(median {ceiling['update_ms_median']:.1f} ms, {ceiling['threads']} torch threads): "
        f"{ceiling['steps_per_s']:.1f} agent steps/s"
    )
    header = f"{'config':8} {'envs':>4} {'steps/s':>8} {'grad/s':>7} {'ceiling':>7} {'median':>6} {'B/trans':>7}"
    print(header + f" {'RSS MB':>6}")
    for r in results:
        print(
            f"{r['config']:8} {r['n_envs']:>4} {r['steps_per_s']:>8.1f} {r['grad_steps_per_s']:>7.1f} "
            f"{r['fraction_of_ceiling']:>7.0%} {r['fraction_of_median_ceiling']:>6.0%} "
            f"{r['replay_bytes_per_transition']:>7.0f} {r['peak_rss_mb']:>6.0f}"
        )
    print(
        "learner thread, us per agent step, wall-clock (then the thread's CPU time); in brackets: the network's "
        "arithmetic or the frame copying within; python: all but env_wait and the bracketed parts"
    )
    for r in results:
        for clock, prefix in (("wall", ""), ("cpu", "cpu_")):
            b, parts = r[f"{prefix}breakdown_us_per_step"], r[f"{prefix}parts_us_per_step"]
            cells = []
            for name in CATEGORIES:
                part = {"act": "act_net", "sample": "sample_gather", "update": "update_net"}.get(name)
                cells.append(f"{name} {b[name]:.1f}" + (f" [{parts[part]:.1f}]" if part else ""))
            python = r[f"python_{prefix}us_per_step"]
            outside = r[f"python_outside_graph_{prefix}us_per_step"]
            overhead = r[f"clock_overhead_{prefix}us_per_step"]
            print(
                f"  {r['config']} x{r['n_envs']} {clock:4}: python {python:.1f}, outside a graph {outside:.1f} "
                f"(timing added {overhead:.1f}); " + ", ".join(cells)
            )


if __name__ == "__main__":
    main()
