"""
A run that plays: the fast configuration trained from scratch for a wall-clock budget, then ``breakout-sb3 evaluate``
over full games at epsilon 0.05, with the learning curve drawn by ``breakout-sb3 plot``.

    python -m bench.learning_run --device cuda --seconds 480 --n-envs 64 --out-dir logs/bench/learning \\
        --json bench/results/learning_h100.json --plot docs/learning_run.png

With ``--steps N`` it trains N agent steps instead (``--seconds`` then only bounds it), and ``--precision bf16`` trains
with bf16 mixed precision: run it twice, float32 and bf16, and compare them with ``python -m bench.precision_compare``.
The TD loss (mean per 5,000 agent steps) and the mean max Q-value of a fixed set of 512 replay states (the first ones
the random policy saw, the same for runs of one seed) are written to the JSON as they evolve.

The recipe's fast entry of hyperparams/dqn.yml (``n_envs`` may be changed, the replay ratio kept: gradient steps
per vector step scale with it), built through the library API with the YAML's callbacks writing into --out-dir
(epsilon schedule, CSV, checkpoints every 100 games without the replay, NaN guard) and a Monitor file of the games.
The YAML's stop rule is left out, so that it cannot end the run before its budget: what it would have judged (its
running score at the end) is printed and written to the JSON. Then the final model is saved (a plain DQN zip) and
played with ``python -m breakout_sb3 evaluate``: the recipe's own env stack (SB3's AtariWrapper), full games.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.callbacks import BaseCallback

from bench.learning_curve import StopAfterSeconds, build_fast, yaml_callbacks
from bench.provenance import add_allow_dirty, header, require_commit, write_result
from breakout_sb3 import ENV_ID
from breakout_sb3.config import default_config_path

FAST_ENTRY = f"{ENV_ID}-fast"
STOP_RULE = "callbacks.StopTrainingOnRunningScore"


def fast_hyperparams(n_envs: int | None) -> dict[str, Any]:
    """:return: the YAML's fast entry, with ``n_envs`` envs and the gradient steps that keep its replay ratio"""
    hyperparams = yaml.safe_load(default_config_path().read_text())[FAST_ENTRY]
    if n_envs is not None and n_envs != hyperparams["n_envs"]:
        steps = hyperparams["gradient_steps"] * n_envs / hyperparams["n_envs"]
        if steps != int(steps):
            raise ValueError(f"--n-envs {n_envs} cannot keep the replay ratio of {hyperparams['n_envs']} envs")
        hyperparams.update(n_envs=n_envs, gradient_steps=int(steps))
    return hyperparams


class WatchedStopRule(BaseCallback):
    """
    The YAML's stop rule, disarmed: it counts the run's episodes and scores as it would, and records the step at
    which it would have stopped the run, but never stops it (nor saves a model).

    :param rule: a ``StopTrainingOnRunningScore``
    """

    def __init__(self, rule: BaseCallback):
        super().__init__()
        self.rule = rule
        self.threshold = rule.threshold
        rule.threshold = float("inf")
        self.would_stop_at: int | None = None

    def _init_callback(self) -> None:
        self.rule.init_callback(self.model)

    def _on_step(self) -> bool:
        self.rule.update_locals(self.locals)
        self.rule.on_step()
        rule = self.rule
        if self.would_stop_at is None and rule.episodes >= rule.min_episodes and rule.running_score > self.threshold:
            self.would_stop_at = self.num_timesteps
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "episodes": self.rule.episodes,
            "running_score": self.rule.running_score,
            "would_have_stopped_at_step": self.would_stop_at,
        }


class LossAndQProbe(BaseCallback):
    """
    Every ``every`` agent steps: the mean TD loss of the updates since (FastDQN logs each rollout's mean as
    ``train/loss``) and the mean over a fixed set of replay states of their max Q-value (float32, as the policy acts).

    :param every: agent steps between records
    :param n_states: states in the fixed set, taken from the replay when it first holds that many
    """

    def __init__(self, every: int = 5_000, n_states: int = 512):
        super().__init__()
        self.every, self.n_states = every, n_states
        self.states = None
        self.losses: list[float] = []
        self.records: list[dict[str, float]] = []
        self._next = every

    def _on_step(self) -> bool:
        import torch as th

        loss = self.model.logger.name_to_value.get("train/loss")
        if loss is not None and self.model._n_updates:
            self.losses.append(float(loss))
        replay = self.model.replay_buffer
        if self.states is None and replay.size() * replay.n_envs >= self.n_states:
            slots = th.arange(self.n_states) // replay.n_envs
            envs = th.arange(self.n_states) % replay.n_envs
            self.states = replay.samples_at(slots.numpy(), envs.numpy()).observations.clone()
        if self.num_timesteps >= self._next and self.states is not None:
            self._next += self.every
            with th.no_grad():
                q = self.model.policy.q_net(self.states.to(self.model.device)).max(dim=1).values.mean()
            mean_loss = sum(self.losses) / len(self.losses) if self.losses else float("nan")
            self.records.append({"step": self.num_timesteps, "td_loss": mean_loss, "mean_max_q": float(q)})
            self.losses = []
        return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="where the networks and the replay run (default: cuda)")
    parser.add_argument("--seconds", type=float, required=True, help="wall-clock training budget (at most 600)")
    parser.add_argument("--steps", type=int, help="agent steps to train (then --seconds may be up to a day)")
    parser.add_argument(
        "--precision", choices=["float32", "bf16"], default="float32", help="the updates' arithmetic (FastDQN's)"
    )
    parser.add_argument("--num-threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--n-envs", type=int, help="envs per vector step (default: the YAML's)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the run and of the evaluation")
    parser.add_argument("--episodes", type=int, default=10, help="full games played by the evaluation")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("logs/bench/learning_run"),
        help="the run folder: CSV, Monitor file, checkpoints, final model, eval.json (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="the learning result (default: <out-dir>/learning.json)")
    parser.add_argument("--plot", type=Path, help="the learning curve (default: <out-dir>/curve.png)")
    add_allow_dirty(parser)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= (86_400 if args.steps else 600):
        parser.error("--seconds must be in (0, 600], or (0, 86400] with --steps")
    commit = require_commit(parser.prog, args.allow_dirty)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = args.json or args.out_dir / "learning.json"
    plot_path = args.plot or args.out_dir / "curve.png"

    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    from breakout_sb3.errors import BreakoutSB3Error
    from breakout_sb3.plot import plot

    hyperparams = fast_hyperparams(args.n_envs)
    entries = [e for e in hyperparams["callback"] if (e if isinstance(e, str) else next(iter(e))) != STOP_RULE]
    stop_entries = [e for e in hyperparams["callback"] if e not in entries]
    callbacks = yaml_callbacks({**hyperparams, "callback": entries}, args.out_dir)
    stop_rules = yaml_callbacks({**hyperparams, "callback": stop_entries}, args.out_dir)
    watchers = [WatchedStopRule(rule) for rule in stop_rules]

    if args.num_threads:
        th.set_num_threads(args.num_threads)
    set_random_seed(args.seed)
    monitor_file = str(args.out_dir / "0.monitor.csv")
    model = build_fast(hyperparams, args.device, args.seed, monitor_file=monitor_file, precision=args.precision)
    probe = LossAndQProbe()
    print(
        f"fast configuration: {hyperparams['n_envs']} envs, {hyperparams['gradient_steps']} gradient steps of "
        f"{hyperparams['batch_size']} per vector step, on {args.device}, {args.precision}; "
        + (f"{args.steps} agent steps" if args.steps else f"{args.seconds:.0f} s of training")
    )
    start = time.perf_counter()
    model.learn(
        args.steps or hyperparams["n_timesteps"],
        callback=[*callbacks, *watchers, probe, StopAfterSeconds(args.seconds)],
        log_interval=None,
    )
    if args.device.startswith("cuda"):
        th.cuda.synchronize()
    wall_seconds = time.perf_counter() - start
    model.get_env().close()
    steps = model.num_timesteps
    print(
        f"trained {steps} agent steps in {wall_seconds:.0f} s ({steps / wall_seconds:.0f} steps/s), "
        f"{model._n_updates} gradient steps, epsilon {model.exploration_rate:.3f}"
    )
    stop_rule = None
    for watcher in watchers:
        stop_rule = watcher.summary()
        print(f"the stop rule, watched only: {stop_rule}")
    model_path = args.out_dir / "final_model.zip"
    model.save(model_path)

    eval_path = args.out_dir / "eval.json"
    command = [sys.executable, "-m", "breakout_sb3", "evaluate", str(model_path), "--episodes", str(args.episodes)]
    command += ["--epsilon", "0.05", "--seed", str(args.seed), "--device", args.device, "--json", str(eval_path)]
    subprocess.run(command, check=True)
    evaluation = json.loads(eval_path.read_text())
    try:
        print(plot([args.out_dir], out=plot_path))
    except BreakoutSB3Error as e:  # a run too short to have finished an episode
        print(f"no plot: {e}")

    result = header("learning", commit, args.device)
    result |= {
        "wall_seconds": wall_seconds,
        "agent_steps": steps,
        "eval": {"episodes": len(evaluation["scores"]), "epsilon": evaluation["epsilon"]}
        | {key: evaluation[key] for key in ("mean", "std", "min", "max")},
        "eval_scores": evaluation["scores"],
        "n_envs": hyperparams["n_envs"],
        "gradient_steps": hyperparams["gradient_steps"],
        "gradient_steps_done": model._n_updates,
        "final_epsilon": model.exploration_rate,
        "stop_rule_left_out": stop_rule,
        "seed": args.seed,
        "precision": args.precision,
        "torch_threads": th.get_num_threads(),
        "probe": probe.records,
    }
    print(f"evaluation: {result['eval']}")
    write_result(json_path, result)
    return result


if __name__ == "__main__":
    main()
