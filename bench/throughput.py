"""
Throughput of the recipe: vanilla SB3 DQN against breakout-sb3's fast configuration, at the same replay ratio, with
the recipe's callbacks, and where the learner thread's time goes.

    python -m bench.throughput --device cpu --quick                      # about 3 minutes on 2 CPU cores
    python -m bench.throughput --device cpu --n-envs 16 64 --json bench/results/throughput_<machine>.json
    python -m bench.throughput --device cuda --n-envs 16 64 128 --json bench/results/throughput_h100.json

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

The precision and layout axis (``--variants``): the fast configuration as it ran before channels-last
(``contiguous``: float32, contiguous networks and batches), as it runs now in float32 (``channels-last``, where that
is the device's fastest layout) and with ``--precision bf16`` (``bf16``: bf16 autocast, channels-last). The ceiling
is measured for each variant, interleaved in one process (a round of each, repeated): the ceiling of a precision is
its best layout's update, and each configuration's ``ceiling`` fraction is against its own precision's. The CPU
model and the CPU features torch sees (AVX-512, AVX-512 BF16, AMX) are printed and saved with the figures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.breakdown import CATEGORIES, Clock, TimedCallbackList, instrument, time_update
from bench.learning_curve import yaml_callbacks
from bench.provenance import add_allow_dirty, header, load_average, require_commit, write_result
from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path
from breakout_sb3.settings import ZOO_TRAIN

# The recipe's epsilon schedule reaches 0.1 here (50,000 + 1,000,000 steps)
START_STEP = 1_050_000
AGENT_STEPS_PER_UPDATE = 4
LOG_INTERVAL = ZOO_TRAIN["--log-interval"].default  # episodes between SB3 log tables, as `train` prints them
# The fast configuration's precision and layout variants: (precision, memory layout of networks and batches)
VARIANTS = {
    "contiguous": ("float32", "contiguous"),
    "channels-last": ("float32", "channels_last"),
    "bf16": ("bf16", "channels_last"),
}
VANILLA_VARIANT = ("float32", "contiguous")  # SB3's DQN


def recipe() -> dict[str, Any]:
    return yaml.safe_load(default_config_path().read_text())[ENV_ID]


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
    config: str,
    device: str,
    n_envs: int,
    log_dir: str,
    env_threads: int | None = None,
    overlap_env: bool = True,
    variant: str = "channels-last",
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
    precision, layout = VARIANTS[variant]
    model = FastDQN(
        "CnnPolicy",
        env,
        train_freq=1,
        gradient_steps=n_envs // AGENT_STEPS_PER_UPDATE,
        replay_buffer_class=FrameStackReplayBuffer,
        replay_buffer_kwargs=storage,
        overlap_env=overlap_env,
        precision=precision,
        **kwargs,
    )
    use_layout(model, layout)
    return model


def use_layout(model: Any, layout: str) -> None:
    """Lay ``model``'s networks and update batches out as ``layout`` says, instead of the device's fastest layout."""
    import torch as th

    memory_format = {"contiguous": th.contiguous_format, "channels_last": th.channels_last}[layout]
    model._memory_format = memory_format
    model.policy.to(memory_format=memory_format)


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

    if spec["threads"] > 0:
        th.set_num_threads(spec["threads"])
    device = spec["device"]
    with tempfile.TemporaryDirectory(prefix="bench_") as log_dir:
        variant = spec.get("variant", "channels-last")
        model = build(
            spec["config"], device, spec["n_envs"], log_dir, spec.get("env_threads"), spec["overlap_env"], variant
        )
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
    precision, layout = VANILLA_VARIANT if spec["config"] == "vanilla" else VARIANTS[variant]
    return dict(
        config=spec["config"],
        variant="sb3" if spec["config"] == "vanilla" else variant,
        precision=precision,
        layout=layout,
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
    """
    :return: timings of one update's arithmetic on a batch of 32 (in this process, the configs' threads), for each
        of ``spec["variants"]`` (default: the fast configuration's own), interleaved: a round of each, repeated
    """
    import torch as th

    from breakout_sb3.fast import AleVecEnv, FastDQN

    if spec["threads"] > 0:
        th.set_num_threads(spec["threads"])
    env = AleVecEnv(n_envs=1, seed=0)
    kwargs = dqn_kwargs(recipe(), spec["device"])
    models = {}
    for variant in spec.get("variants", ["channels-last"]):
        precision, layout = VARIANTS[variant]
        models[variant] = FastDQN("CnnPolicy", env, precision=precision, **{**kwargs, "buffer_size": 1_000})
        use_layout(models[variant], layout)
    timings: dict[str, list[float]] = {variant: [] for variant in models}
    for round_ in range(spec["repeats"]):
        for variant, model in models.items():
            timings[variant] += time_update(model, batch_size=kwargs["batch_size"], repeats=1, warmup=3 * (not round_))
    env.close()
    by_variant = {variant: [t * 1e3 for t in times] for variant, times in timings.items()}
    first = next(iter(by_variant.values()))
    return {"update_ms": first, "by_variant_ms": by_variant, "threads": th.get_num_threads()}


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
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=["channels-last"],
        help="precision and layout variants of the fast configuration (default: channels-last, as it trains); "
        "all three side by side: --variants contiguous channels-last bf16",
    )
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
    parser.add_argument("--json", type=Path, help="write the results to this file (fields: bench/README.md)")
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    commit = require_commit(parser.prog, args.allow_dirty) if args.json is not None else None
    on_cpu = args.device == "cpu"
    defaults = {(True, True): (512, 2_048), (True, False): (4_096, 16_384)}
    defaults.update({(False, True): (2_048, 8_192), (False, False): (16_384, 100_000)})
    defaults = defaults[args.quick, on_cpu]
    warmup = args.warmup if args.warmup is not None else defaults[0]
    steps = args.steps or defaults[1]

    from breakout_sb3.precision import bf16_missing

    report = header("throughput", commit or "not recorded", args.device)
    machine = report["machine"]
    print(f"torch {machine['torch']}, stable-baselines3 {machine['stable_baselines3']}, ale-py {machine['ale_py']}")
    print(f"device: {machine['device']}, {machine['cores']} CPUs ({machine['cpu']}), load {load_average()}")
    features = machine["cpu_features"]
    print(
        "CPU features torch sees: " + ", ".join(f"{name} {'yes' if seen else 'no'}" for name, seen in features.items())
    )
    variants = list(dict.fromkeys(args.variants))
    missing = bf16_missing(args.device)
    if "bf16" in variants and missing is not None:
        print(f"bf16 left out: {missing} (breakout-sb3 refuses --precision bf16 here)")
        variants.remove("bf16")
    print(f"warm-up {warmup} agent steps, then {steps} timed agent steps each; epsilon schedule from {START_STEP}")

    ceiling_variants = list(dict.fromkeys([*variants, *(v for v in VARIANTS if v != "bf16" or missing is None)]))
    ceiling_spec = {"device": args.device, "threads": args.threads, "repeats": args.ceiling_repeats}
    ceiling_spec["variants"] = ceiling_variants
    ceilings = [in_process("measure_ceiling", ceiling_spec)]
    if args.stub_networks:
        args.configs = ["fast"]  # SB3's train() samples and updates in one: nothing to stub it by
    specs = [("vanilla", 1, "sb3")] if "vanilla" in args.configs else []
    specs += [("fast", n, v) for n in args.n_envs for v in variants] if "fast" in args.configs else []
    results = []
    for config, n_envs, variant in specs:
        spec = {"config": config, "device": args.device, "n_envs": n_envs, "warmup": warmup, "steps": steps}
        spec["variant"] = variant
        if config == "vanilla":
            spec.update(warmup=args.vanilla_warmup or warmup, steps=args.vanilla_steps or steps)
        spec.update(threads=args.threads, env_threads=args.env_threads, overlap_env=not args.no_overlap)
        spec["stub_networks"] = args.stub_networks
        load_before = load_average()
        result = in_process("run_config", spec)
        result["load"] = [load_before, load_average()]
        results.append(result)
        print(f"  {config} x{n_envs} {variant}: {result['steps_per_s']:.1f} agent steps/s, load {result['load']}")
    ceilings.append(in_process("measure_ceiling", ceiling_spec))

    by_variant = {v: sorted(t for c in ceilings for t in c["by_variant_ms"][v]) for v in ceiling_variants}
    variant_rows = {
        v: {"precision": VARIANTS[v][0], "layout": VARIANTS[v][1], "best_ms": t[0], "median_ms": t[len(t) // 2]}
        for v, t in by_variant.items()
    }
    # The ceiling of each precision: its best layout's update (best and median of that layout's timings)
    precisions: dict[str, dict[str, Any]] = {}
    for row in variant_rows.values():
        best = precisions.get(row["precision"])
        if best is None or row["best_ms"] < best["update_ms_best"]:
            precisions[row["precision"]] = {
                "layout": row["layout"],
                "update_ms_best": row["best_ms"],
                "update_ms_median": row["median_ms"],
                "steps_per_s": AGENT_STEPS_PER_UPDATE * 1e3 / row["best_ms"],
            }
    float32 = precisions["float32"]
    ceiling = {
        **float32,  # the update-bound ceiling: float32's, in its best layout
        "timings_ms": [c["by_variant_ms"] for c in ceilings],
        "threads": ceilings[0]["threads"],
        "by_variant": variant_rows,
    }
    ceiling["by_precision"] = precisions
    for result in results:
        own = precisions.get(result["precision"], ceiling)
        result["fraction_of_ceiling"] = result["steps_per_s"] / own["steps_per_s"]
        # Against the median update: what the machine gave most of the time (a noisy machine's best is an outlier)
        result["fraction_of_median_ceiling"] = (
            result["steps_per_s"] * own["update_ms_median"] / (AGENT_STEPS_PER_UPDATE * 1e3)
        )

    print_table(results, ceiling)
    vanilla = next((r for r in results if r["config"] == "vanilla"), None)
    fastest = max((r for r in results if r["config"] == "fast"), key=lambda r: r["steps_per_s"], default=None)
    speedup = fastest["steps_per_s"] / vanilla["steps_per_s"] if vanilla and fastest else None
    report.update(configs=results, speedup=speedup, ceiling=ceiling)
    if args.json is not None:
        write_result(args.json, report)
    if speedup is not None:
        print(f"speedup: {speedup:.2f}")
    return report


def print_table(results: list[dict[str, Any]], ceiling: dict[str, Any]) -> None:
    print(
        f"update-bound ceiling (float32, {ceiling.get('layout', 'contiguous')}): one update "
        f"{ceiling['update_ms_best']:.1f} ms at best "
        f"(median {ceiling['update_ms_median']:.1f} ms, {ceiling['threads']} torch threads): "
        f"{ceiling['steps_per_s']:.1f} agent steps/s"
    )
    by_precision, by_variant = ceiling.get("by_precision", {}), ceiling.get("by_variant", {})
    for precision, row in by_precision.items():
        print(
            f"ceiling {precision}: its best layout, {row['layout']}: {row['update_ms_best']:.1f} ms per update "
            f"(median {row['update_ms_median']:.1f}): {row['steps_per_s']:.1f} agent steps/s"
        )
    if by_variant:
        base = by_variant.get("contiguous", next(iter(by_variant.values())))["best_ms"]
        print(
            f"{'update of':14} {'precision':9} {'layout':13} {'best ms':>7} {'median':>6} {'speed vs contiguous':>19}"
        )
        for variant, row in by_variant.items():
            print(
                f"{variant:14} {row['precision']:9} {row['layout']:13} {row['best_ms']:>7.1f} "
                f"{row['median_ms']:>6.1f} {base / row['best_ms']:>18.2f}x"
            )
    header = f"{'config':8} {'variant':13} {'envs':>4} {'steps/s':>8} {'grad/s':>7} {'ceiling':>7} {'median':>6}"
    header += f" {'B/trans':>7}"
    print(header + f" {'RSS MB':>6}")
    for r in results:
        print(
            f"{r['config']:8} {r.get('variant', ''):13} {r['n_envs']:>4} {r['steps_per_s']:>8.1f} "
            f"{r['grad_steps_per_s']:>7.1f} "
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
                f"  {r['config']} {r.get('variant', '')} x{r['n_envs']} {clock:4}: python {python:.1f}, "
                f"outside a graph {outside:.1f} "
                f"(timing added {overhead:.1f}); " + ", ".join(cells)
            )


if __name__ == "__main__":
    main()
